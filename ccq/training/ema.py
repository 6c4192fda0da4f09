"""An exponential moving average of the weights (``TrainConfig.ema_decay``; off in the official recipe).

After each optimizer step, ``ema = d * ema + (1 - d) * weights`` with ``d = min(decay, (1 + n) / (10 + n))``
after ``n`` earlier updates: the ramp keeps the randomly initialised weights from dominating a short run (at
``n = 0`` the average is the weights themselves) and lengthens the averaging horizon as training settles.
Validation, best/ and last/'s ``model.safetensors`` use the average, so `ccq predict` does too; the weights
the optimizer trains go into last/'s training state (`online_weights`), so ``--resume`` continues exactly.

The averaged copy lives on rank 0 only (the process that validates and saves); every rank holds the same
weights after each DDP step, so one copy is exact.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ccq.training.handlers.base import Handler

if TYPE_CHECKING:
    from ccq.training.step import StepResult
    from ccq.training.trainer import Trainer


def ema_decay_at(decay: float, updates: int) -> float:
    """The decay of update number ``updates + 1``: ``min(decay, (1 + updates) / (10 + updates))``."""
    return min(float(decay), (1.0 + updates) / (10.0 + updates))


class WeightAverage:
    """A frozen copy of ``model`` whose floating-point parameters and buffers follow the EMA.

    Args:
        model: the trained module (not a DDP or compiled wrapper); its structure and config are copied.
        decay: the EMA's decay, in (0, 1).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay={decay}: expected a value in (0, 1)")
        self.decay = float(decay)
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def _pairs(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor], list[tuple]]:
        """(averaged floats, their sources, (target, source) pairs copied as they are: integer buffers)."""
        mine, theirs = self.model.state_dict(keep_vars=True), model.state_dict(keep_vars=True)
        if mine.keys() != theirs.keys():
            raise ValueError("the EMA and the model have different parameters")
        floats, sources, copies = [], [], []
        for key, target in mine.items():
            # The tensors themselves, never `.data`: an in-place change must bump their version counters, on which
            # eval-mode caches are keyed (the standardized conv weights of `ccq.models.layers.WSConv3d`).
            source = theirs[key].detach()
            if target.is_floating_point():
                floats.append(target)
                sources.append(source)
            else:
                copies.append((target, source))
        return floats, sources, copies

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights (call after each optimizer step)."""
        weight = 1.0 - ema_decay_at(self.decay, self.updates)
        floats, sources, copies = self._pairs(model)
        torch._foreach_lerp_(floats, sources, weight)
        for target, source in copies:
            target.copy_(source)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """The counter (the averaged weights are the checkpoint's model weights)."""
        return {"updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: Mapping[str, Any], weights: Mapping[str, torch.Tensor]) -> None:
        """Restore the counter and the averaged ``weights`` (a state dict of the model)."""
        self.updates = int(state["updates"])
        self.model.load_state_dict(dict(weights), strict=True)


class EMAUpdates(Handler):
    """Updates ``trainer.ema`` after every step that changed the weights (not after a skipped one)."""

    def iteration_completed(self, trainer: Trainer, step: StepResult, lr: float, data_s: float) -> None:
        if trainer.ema is not None and not step.nonfinite:
            trainer.ema.update(trainer.model)
