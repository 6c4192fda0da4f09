"""Deployment networks: a ccq model with its task(s) fixed, so that the only input is the image patch.

ONNX and TorchScript graphs take tensors only; the task id of `CCQNet.forward` is a Python value that selects
weights, so it is baked into the exported graph as a constant (one graph per task, or one graph for every task
through `forward_all_tasks`, which runs the encoder once).
"""

from __future__ import annotations

import torch
from torch import nn


class TaskFixedNet(nn.Module):
    """One task of a ccq model (CCQ or DoDNet): image patch -> that task's organ and tumor logits."""

    def __init__(self, model: nn.Module, task_id: int) -> None:
        super().__init__()
        self.model = model
        self.task_id = int(task_id)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image: [1, 1, D, H, W] (windowed CT, D H W = the model's patch) -> logits [1, 2, D, H, W] (organ, tumor)."""
        return self.model(image, self.task_id)


class AllTasksNet(nn.Module):
    """Every task of a ccq model at once (the encoder runs once): image patch -> logits per task."""

    def __init__(self, model: nn.Module, task_ids: list[int]) -> None:
        super().__init__()
        self.model = model
        self.task_ids = [int(t) for t in task_ids]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image: [1, 1, D, H, W] -> logits [1, T, 2, D, H, W]: task (in `task_ids` order), then organ / tumor."""
        return self.model.forward_all_tasks(image, self.task_ids)
