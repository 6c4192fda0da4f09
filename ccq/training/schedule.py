"""The learning-rate schedule: polynomial decay ``lr * (1 - step / steps) ** power``.

The official code steps it once per epoch of 60 iterations (2500 epochs); ``lr_step="iteration"`` decays
smoothly every iteration instead (better for short runs such as the demo).
"""

from __future__ import annotations

import math

import torch


def poly_lr(base_lr: float, step: int, total_steps: int, power: float = 0.9) -> float:
    """``base_lr * (1 - step / total_steps) ** power``; 0 from ``total_steps`` on."""
    if total_steps <= 0:
        raise ValueError(f"total_steps={total_steps}: expected a positive number of steps")
    frac = min(max(step, 0), total_steps) / total_steps
    return float(base_lr * (1.0 - frac) ** power)


class PolySchedule:
    """LR at an iteration (0-based) for a run of ``iterations``; per epoch of ``epoch_iterations`` or per
    iteration. Stateless: the LR is a function of the iteration alone, so a resumed run needs no state."""

    def __init__(self, base_lr: float, iterations: int, power: float = 0.9, step: str = "iteration",
                 epoch_iterations: int = 60) -> None:
        if step not in ("iteration", "epoch"):
            raise ValueError(f"step={step!r}: expected 'iteration' or 'epoch'")
        self.base_lr, self.iterations, self.power = float(base_lr), int(iterations), float(power)
        self.step, self.epoch_iterations = step, int(epoch_iterations)

    def __call__(self, iteration: int) -> float:
        if self.step == "epoch":
            epochs = math.ceil(self.iterations / self.epoch_iterations)
            return poly_lr(self.base_lr, iteration // self.epoch_iterations, epochs, self.power)
        return poly_lr(self.base_lr, iteration, self.iterations, self.power)

    def apply(self, optimizer: torch.optim.Optimizer, iteration: int) -> float:
        """Set every parameter group's LR for ``iteration``; returns it."""
        lr = self(iteration)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr
