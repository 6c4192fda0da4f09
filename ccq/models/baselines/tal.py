"""TAL (target adaptive loss, Fang and Yan 2020): one softmax head over the classes of every task.

Class layout (K = 1 + 3T): class 0 is background; task t owns the three classes

- ``1 + 3t`` "organ only": organ channel on, tumor channel off (liver without tumor, the hepatic vessel);
- ``2 + 3t`` "organ and tumor": both channels on (liver tumor, which the liver channel includes);
- ``3 + 3t`` "tumor only": tumor channel on, organ channel off (a hepatic-vessel tumor, which the vessel channel
  excludes; colon and lung tumors, whose datasets label no organ).

Three classes per task, not two, because a collection's organ channel may include its tumor (MOTS liver:
``organ: [1, 2]``) or exclude it (MOTS hepatic vessel: ``organ: [1]``); the model configuration does not know
which, and this layout represents both. A class no dataset ever makes positive (the liver's "tumor only") only
ever learns to be absent.

The probability of a task's channel is the sum of its classes': P(organ) = P(organ only) + P(organ and tumor),
P(tumor) = P(organ and tumor) + P(tumor only). In eval mode the network returns these as logits
log P - log (1 - P), computed from log-sum-exps (never from a difference of probabilities).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ccq.models.baselines.common import UNetParts
from ccq.models.ccq_net import as_task_tensor, channels_from_all_tasks
from ccq.models.decoder import Decoder
from ccq.models.encoder import CNNEncoder
from ccq.models.head import PreHead

CLASSES_PER_TASK = 3
ORGAN_ONLY, ORGAN_AND_TUMOR, TUMOR_ONLY = 0, 1, 2
"""Offsets of a task's classes within its block."""


def tal_num_classes(num_tasks: int) -> int:
    """K: background plus three classes per task."""
    return 1 + CLASSES_PER_TASK * num_tasks


def task_class_logits(logits: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
    """The softmax logits regrouped around each sample's task.

    logits: [B, K, N] (K = 1 + 3T, N voxels); task_id: [B] -> [B, 4, N]: log-sum-exp of every class outside the
    task (background and the other tasks' classes), then the task's organ-only, organ-and-tumor and tumor-only
    logits. The four groups partition the K classes, so a softmax over them gives the same probabilities.
    """
    b, k, n = logits.shape
    num_tasks = (k - 1) // CLASSES_PER_TASK
    if k != tal_num_classes(num_tasks):
        raise ValueError(f"TAL logits with {k} classes: expected 1 + 3 x num_tasks")
    blocks = logits[:, 1:].reshape(b, num_tasks, CLASSES_PER_TASK, n)
    own = blocks[torch.arange(b, device=logits.device), task_id]  # [B, 3, N]
    # Per-block log-sum-exps, then one over background and every block but the sample's own.
    per_block = torch.cat([logits[:, :1], torch.logsumexp(blocks, dim=2)], dim=1)  # [B, 1 + T, N]
    own_block = task_id.unsqueeze(1) + 1 == torch.arange(1 + num_tasks, device=logits.device)  # [B, 1 + T]
    rest = torch.logsumexp(per_block.masked_fill(own_block.unsqueeze(-1), float("-inf")), dim=1)
    return torch.cat([rest.unsqueeze(1), own], dim=1)


def channel_logits(grouped: torch.Tensor) -> torch.Tensor:
    """grouped: [B, 4, ...] from `task_class_logits` -> [B, 2, ...] logits of P(organ) and P(tumor)."""
    rest, organ_only, both, tumor_only = grouped.unbind(1)
    organ = torch.logaddexp(organ_only, both) - torch.logaddexp(rest, tumor_only)
    tumor = torch.logaddexp(both, tumor_only) - torch.logaddexp(rest, organ_only)
    return torch.stack([organ, tumor], dim=1)


class TALNet(UNetParts):
    """One residual 3D U-Net with a softmax head over K = 1 + 3T classes (see the module docstring).

    The output depends on the mode, as nnU-Net's deep-supervision outputs do: in training mode `forward` returns
    the K class logits [B, K, D, H, W] that the TAL criterion (`ccq.training.criteria`) needs; in eval mode it
    returns each sample's task channels [B, 2, D, H, W] as sigmoid logits, like every other model.
    `forward_all_tasks` returns channels in both modes.
    """

    def __init__(self, encoder: CNNEncoder, decoder: Decoder, head: PreHead, num_tasks: int) -> None:
        super().__init__(encoder, decoder, head)
        self.num_tasks = num_tasks
        self.num_classes = tal_num_classes(num_tasks)

    def class_logits(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, D, H, W] -> softmax logits [B, K, D, H, W]."""
        return self.unconditioned(x)

    def _channels(self, logits: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        """logits: [B, K, D, H, W]; task_id: [B] -> [B, 2, D, H, W] (float32: log-sum-exps lose bits in half)."""
        b, k, *spatial = logits.shape
        grouped = task_class_logits(logits.float().reshape(b, k, -1), task_id)
        return channel_logits(grouped).reshape(b, 2, *spatial)

    def forward(self, x: torch.Tensor, task_id: torch.Tensor | int | list[int]) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; task_id: [B] (or one int) -> training mode: class logits [B, K, D, H, W];
        eval mode: logits [B, 2, D, H, W] (organ, tumor) of the sample's task."""
        t = as_task_tensor(task_id, x.shape[0], self.num_tasks, x.device)
        logits = self.class_logits(x)
        return logits if self.training else self._channels(logits, t)

    def forward_all_tasks(self, x: torch.Tensor, task_ids: torch.Tensor | list[int]) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; task_ids: [T] -> logits [B, T, 2, D, H, W]; the network runs once."""
        tasks = torch.as_tensor(task_ids, dtype=torch.long, device=x.device).reshape(-1)
        as_task_tensor(tasks, tasks.numel(), self.num_tasks, x.device)  # range check
        logits = self.class_logits(x)
        b = x.shape[0]
        return torch.stack([self._channels(logits, t.expand(b)) for t in tasks], dim=1)

    def forward_channels(self, x: torch.Tensor, pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; pairs: P (task id, channel: 0 organ / 1 tumor) -> logits [B, P, D, H, W]; only
        the tasks some pair asks for are run (the network runs once; only the regrouping of its classes is per task)."""
        return channels_from_all_tasks(self.forward_all_tasks, x, pairs, self.num_tasks)
