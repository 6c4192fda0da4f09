"""Learning-rate schedules: polynomial decay ``lr * (1 - step / steps) ** power`` (official) or a half cosine
``lr * (1 + cos(pi * step / steps)) / 2``, both reaching 0 at the end, optionally after a linear warm-up.

The official code steps the poly decay once per epoch of 60 iterations (2500 epochs); ``lr_step="iteration"``
decays smoothly every iteration instead (better for short runs such as the demo). Every schedule is a function
of the iteration alone, so a resumed run needs no schedule state.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ccq.training.config import TrainConfig


def poly_lr(base_lr: float, step: int, total_steps: int, power: float = 0.9) -> float:
    """``base_lr * (1 - step / total_steps) ** power``; 0 from ``total_steps`` on."""
    if total_steps <= 0:
        raise ValueError(f"total_steps={total_steps}: expected a positive number of steps")
    frac = min(max(step, 0), total_steps) / total_steps
    return float(base_lr * (1.0 - frac) ** power)


def cosine_lr(base_lr: float, step: int, total_steps: int) -> float:
    """``base_lr * (1 + cos(pi * step / total_steps)) / 2``; 0 from ``total_steps`` on."""
    if total_steps <= 0:
        raise ValueError(f"total_steps={total_steps}: expected a positive number of steps")
    frac = min(max(step, 0), total_steps) / total_steps
    return float(base_lr * 0.5 * (1.0 + math.cos(math.pi * frac)))


class _Schedule:
    def __call__(self, iteration: int) -> float:
        raise NotImplementedError

    def apply(self, optimizer: torch.optim.Optimizer, iteration: int) -> float:
        """Set every parameter group's LR for ``iteration``; returns it."""
        lr = self(iteration)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr


class PolySchedule(_Schedule):
    """LR at an iteration (0-based) for a run of ``iterations``; per epoch of ``epoch_iterations`` or per
    iteration."""

    def __init__(self, base_lr: float, iterations: int, power: float = 0.9, step: str = "iteration",
                 epoch_iterations: int = 60) -> None:  # fmt: skip
        if step not in ("iteration", "epoch"):
            raise ValueError(f"step={step!r}: expected 'iteration' or 'epoch'")
        self.base_lr, self.iterations, self.power = float(base_lr), int(iterations), float(power)
        self.step, self.epoch_iterations = step, int(epoch_iterations)

    def __call__(self, iteration: int) -> float:
        if self.step == "epoch":
            epochs = math.ceil(self.iterations / self.epoch_iterations)
            return poly_lr(self.base_lr, iteration // self.epoch_iterations, epochs, self.power)
        return poly_lr(self.base_lr, iteration, self.iterations, self.power)


class CosineSchedule(_Schedule):
    """A half cosine from ``base_lr`` at iteration ``warmup`` to 0 at ``iterations``, after a linear warm-up
    from ``base_lr / warmup`` (iteration 0) to ``base_lr`` (iteration ``warmup - 1``)."""

    def __init__(self, base_lr: float, iterations: int, warmup: int = 0) -> None:
        if not 0 <= warmup < iterations:
            raise ValueError(f"warmup={warmup}: expected 0 <= warmup < iterations ({iterations})")
        self.base_lr, self.iterations, self.warmup = float(base_lr), int(iterations), int(warmup)

    def __call__(self, iteration: int) -> float:
        if iteration < self.warmup:
            return self.base_lr * (iteration + 1) / self.warmup
        return cosine_lr(self.base_lr, iteration - self.warmup, self.iterations - self.warmup)


class WarmupPoly(_Schedule):
    """The per-iteration poly decay from iteration ``warmup`` to 0 at ``iterations``, after a linear warm-up."""

    def __init__(self, base_lr: float, iterations: int, power: float, warmup: int) -> None:
        if not 0 <= warmup < iterations:
            raise ValueError(f"warmup={warmup}: expected 0 <= warmup < iterations ({iterations})")
        self.base_lr, self.iterations, self.power, self.warmup = float(base_lr), int(iterations), power, warmup

    def __call__(self, iteration: int) -> float:
        if iteration < self.warmup:
            return self.base_lr * (iteration + 1) / self.warmup
        return poly_lr(self.base_lr, iteration - self.warmup, self.iterations - self.warmup, self.power)


def build_schedule(config: TrainConfig) -> _Schedule:
    """The schedule a configuration names (``lr_schedule``, ``warmup_iterations``, ``poly_power``, ``lr_step``).
    A warm-up longer than the run is shortened to leave one decaying iteration (a tiny ``--iterations`` test)."""
    warmup = min(config.warmup_iterations, config.iterations - 1)
    if config.lr_schedule == "cosine":
        return CosineSchedule(config.lr, config.iterations, warmup)
    if warmup > 0:
        return WarmupPoly(config.lr, config.iterations, config.poly_power, warmup)
    return PolySchedule(config.lr, config.iterations, config.poly_power, config.lr_step, config.epoch_iterations)
