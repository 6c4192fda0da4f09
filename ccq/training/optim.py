"""The optimizer named by a TrainConfig: SGD (official: momentum 0.99, Nesterov) or AdamW."""

from __future__ import annotations

import torch
from torch import nn

from ccq.training.config import TrainConfig


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with ``lr``, ``momentum``, ``nesterov``, ``weight_decay``; or AdamW with ``lr`` and
    ``weight_decay`` (betas 0.9, 0.999). The LR itself is set every iteration by the poly schedule.

    Both run PyTorch's fused kernels where it has them (float parameters on a CPU or a CUDA device): one call
    for all parameters instead of some ten small operations per parameter, the same update up to float rounding.
    On the demo model's 213 parameters (2 CPU threads) an AdamW step took 4.8 ms in the loop, 1.3 fused; SGD
    2.1 and 0.7 (`benchmarks/step_overhead.py`, BENCHMARKS.md)."""
    params = [p for p in model.parameters() if p.requires_grad]
    fused = _fusable(params) or None
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
        weight_decay=config.weight_decay, fused=fused,
    )  # fmt: skip


def _fusable(params: list[torch.Tensor]) -> bool:
    """Whether PyTorch's fused optimizer kernels take these parameters (one device of a kind it has them for)."""
    devices = {p.device for p in params}
    return (
        len(devices) == 1
        and next(iter(devices)).type in FUSED_DEVICE_TYPES
        and all(p.is_floating_point() for p in params)
    )


FUSED_DEVICE_TYPES = ("cpu", "cuda")
"""Device types with fused AdamW and SGD kernels in every PyTorch this package supports (>= 2.4)."""
