"""The DoDNet baseline (Zhang et al. 2021) in the same framework, and the Table 2 "Baseline+" variants."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ccq.models.ccq_net import as_task_tensor, channels_from_all_tasks, one_hot_tasks
from ccq.models.decoder import Decoder
from ccq.models.encoder import CNNEncoder
from ccq.models.head import DynamicHead
from ccq.models.image_transformer import ImageTransformer


class DoDNet(nn.Module):
    """Residual 3D U-Net whose bottleneck F feeds the decoder directly, with a dynamic head that outputs both
    channels (organ, tumor) at once from [GAP(F); one-hot task].

    With an image transformer ("Baseline+IMG-Self-Attn"), the decoder starts from the transformed tokens reshaped
    back to the bottleneck grid instead of F.
    """

    def __init__(
        self,
        encoder: CNNEncoder,
        decoder: Decoder,
        head: DynamicHead,
        num_tasks: int,
        image_transformer: ImageTransformer | None = None,
        num_tokens: int = 0,
        dim: int = 0,
    ) -> None:
        super().__init__()
        self.num_tasks = num_tasks
        self.encoder = encoder
        self.image_transformer = image_transformer
        self.pos_embed = nn.Parameter(torch.randn(1, num_tokens, dim)) if image_transformer is not None else None
        self.decoder = decoder
        self.head = head

    def _decode(self, x: torch.Tensor, task_per_group: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; task_per_group: [G, B] -> logits [G, B, 2, D, H, W]."""
        groups, b = task_per_group.shape
        skips, feature = self.encoder(x)
        start = feature
        if self.image_transformer is not None:
            _, tokens = self.image_transformer(feature, self.pos_embed)
            start = tokens.transpose(1, 2).reshape(feature.shape)
        # The decoder does not depend on the task: decode once, condition only the head.
        decoded = self.decoder(start, skips)
        onehot = one_hot_tasks(task_per_group.reshape(-1), self.num_tasks, x.dtype)
        logits = self.head(decoded, feature, onehot)
        return logits.view(groups, b, *logits.shape[1:])

    def forward(self, x: torch.Tensor, task_id: torch.Tensor | int | list[int]) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; task_id: [B] (or one int) -> logits [B, 2, D, H, W] (organ, tumor)."""
        t = as_task_tensor(task_id, x.shape[0], self.num_tasks, x.device)
        return self._decode(x, t.unsqueeze(0))[0]

    def forward_all_tasks(self, x: torch.Tensor, task_ids: torch.Tensor | list[int]) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; task_ids: [T] -> logits [B, T, 2, D, H, W] (encoder once, tasks batched)."""
        tasks = torch.as_tensor(task_ids, dtype=torch.long, device=x.device).reshape(-1)
        as_task_tensor(tasks, tasks.numel(), self.num_tasks, x.device)
        per_group = tasks.unsqueeze(1).expand(-1, x.shape[0])
        return self._decode(x, per_group).transpose(0, 1)

    def forward_channels(self, x: torch.Tensor, pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; pairs: P (task id, channel: 0 organ / 1 tumor) -> logits [B, P, D, H, W]; only
        the tasks some pair asks for are run (the head gives both channels of a task at once)."""
        return channels_from_all_tasks(self.forward_all_tasks, x, pairs, self.num_tasks)
