"""Multi-Head (Chen, Ma and Zheng 2019): a shared encoder and one decoder and head per task."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ccq.models.baselines.common import run_per_task, select, task_groups
from ccq.models.ccq_net import as_task_tensor, channels_from_all_tasks
from ccq.models.decoder import Decoder
from ccq.models.encoder import CNNEncoder
from ccq.models.head import PreHead


class MultiHead(nn.Module):
    """One encoder for all tasks; task t's samples are decoded by decoder t and head t only."""

    task_sparse_parameters = True
    """A step only reaches the decoders and heads of the tasks in its batch (DDP needs find_unused_parameters)."""

    def __init__(self, encoder: CNNEncoder, decoders: list[Decoder], heads: list[PreHead]) -> None:
        super().__init__()
        if len(decoders) != len(heads):
            raise ValueError(f"{len(decoders)} decoders but {len(heads)} heads: expected one of each per task")
        self.num_tasks = len(decoders)
        self.encoder = encoder
        self.decoders = nn.ModuleList(decoders)
        self.heads = nn.ModuleList(heads)

    def _decode(self, task: int, feature: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """feature F: [n, C, d, h, w]; skips: shallow first, [n, c_i, ...] -> logits [n, 2, D, H, W]."""
        return self.heads[task](self.decoders[task](feature, skips))

    def forward(self, x: torch.Tensor, task_id: torch.Tensor | int | list[int]) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; task_id: [B] (or one int) -> logits [B, 2, D, H, W] (organ, tumor)."""
        t = as_task_tensor(task_id, x.shape[0], self.num_tasks, x.device)
        skips, feature = self.encoder(x)

        def run(task: int, index: torch.Tensor | None) -> torch.Tensor:
            return self._decode(task, select(feature, index), [select(s, index) for s in skips])

        return run_per_task(task_groups(t), run)

    def forward_all_tasks(self, x: torch.Tensor, task_ids: torch.Tensor | list[int]) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; task_ids: [T] -> logits [B, T, 2, D, H, W] (encoder once, one decoder per task)."""
        tasks = torch.as_tensor(task_ids, dtype=torch.long).reshape(-1)
        as_task_tensor(tasks, tasks.numel(), self.num_tasks, tasks.device)  # range check
        skips, feature = self.encoder(x)
        return torch.stack([self._decode(t, feature, skips) for t in tasks.tolist()], dim=1)

    def forward_channels(self, x: torch.Tensor, pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; pairs: P (task id, channel: 0 organ / 1 tumor) -> logits [B, P, D, H, W]; only
        the tasks some pair asks for are run (one decoder and head per requested task)."""
        return channels_from_all_tasks(self.forward_all_tasks, x, pairs, self.num_tasks)
