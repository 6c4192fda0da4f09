"""Multi-Nets: one separate network per task (Table 1's first row)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ccq.models.baselines.common import SegmentationNet, run_per_task, select, task_groups
from ccq.models.ccq_net import as_task_tensor, channels_from_all_tasks


class MultiNets(nn.Module):
    """T independent residual 3D U-Nets; network t sees only task t's samples and outputs its two channels.

    Trained jointly here (one optimiser, one sampler over all tasks), which is equivalent to training the T
    networks separately on their own datasets up to the batch composition: no parameter is shared.
    """

    task_sparse_parameters = True
    """A step only reaches the networks of the tasks in its batch (DDP needs find_unused_parameters)."""

    def __init__(self, nets: list[SegmentationNet]) -> None:
        super().__init__()
        self.num_tasks = len(nets)
        self.nets = nn.ModuleList(nets)

    def forward(self, x: torch.Tensor, task_id: torch.Tensor | int | list[int]) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; task_id: [B] (or one int) -> logits [B, 2, D, H, W] (organ, tumor)."""
        t = as_task_tensor(task_id, x.shape[0], self.num_tasks, x.device)
        return run_per_task(task_groups(t), lambda task, index: self.nets[task](select(x, index)))

    def forward_all_tasks(self, x: torch.Tensor, task_ids: torch.Tensor | list[int]) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; task_ids: [T] -> logits [B, T, 2, D, H, W] (one full network per task)."""
        tasks = torch.as_tensor(task_ids, dtype=torch.long).reshape(-1)
        as_task_tensor(tasks, tasks.numel(), self.num_tasks, tasks.device)  # range check
        return torch.stack([self.nets[t](x) for t in tasks.tolist()], dim=1)

    def forward_channels(self, x: torch.Tensor, pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; pairs: P (task id, channel: 0 organ / 1 tumor) -> logits [B, P, D, H, W]; only
        the tasks some pair asks for are run (one network per requested task)."""
        return channels_from_all_tasks(self.forward_all_tasks, x, pairs, self.num_tasks)
