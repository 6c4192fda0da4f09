"""The optimizer named by a TrainConfig: SGD (official: momentum 0.99, Nesterov) or AdamW."""

from __future__ import annotations

import torch
from torch import nn

from ccq.training.config import TrainConfig


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with ``lr``, ``momentum``, ``nesterov``, ``weight_decay``; or AdamW with ``lr`` and
    ``weight_decay`` (betas 0.9, 0.999). The LR itself is set every iteration by the poly schedule."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )  # fmt: skip
