"""Validation during training: Dice on the held-out cases, run by rank 0 at the iterations the loop chooses (the
other ranks wait at the loop's barrier), and the best score so far. The result goes to the handlers'
`validated` hook: the metric log records it, the checkpoints keep best/."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from ccq.training.validation import validate

if TYPE_CHECKING:
    from ccq.training.trainer import Trainer


def validation_due(trainer: Trainer) -> bool:
    """Every `val_every` iterations and after the last one, when there are held-out cases."""
    it, cfg = trainer.state.iteration, trainer.config
    return bool(trainer.split.val) and (bool(cfg.val_every and it % cfg.val_every == 0) or it == cfg.iterations)


def run_validation(trainer: Trainer) -> tuple[dict[str, Any], bool]:
    """Validate ``trainer.eval_model`` (the weight average when `ema_decay` is set) now; record the result (and
    a new best) in ``trainer.state``.

    Returns ({"cases", "categories", "mean", "seconds"}, whether the mean is the best so far)."""
    cfg, state = trainer.config, trainer.state
    start = time.perf_counter()
    result = validate(
        trainer.eval_model, trainer.dataset, trainer.split.val, patch_size=trainer.patch_size,
        overlap=cfg.val_overlap, batch_size=cfg.val_batch_size, device=trainer.device,
    )  # fmt: skip
    result["seconds"] = time.perf_counter() - start
    state.last_validation = result
    score = result["mean"]
    improved = math.isfinite(score) and (state.best_score is None or score > state.best_score)
    if improved:
        state.best_score, state.best_iteration = score, state.iteration
    return result, improved
