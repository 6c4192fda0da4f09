"""Training: the partial-label loss, the configuration and its presets, the trainer.

Import from the submodules (`ccq.training.trainer`, `ccq.training.config` ...) or lazily from here.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "TrainConfig": "ccq.training.config",
    "get_train_preset": "ccq.training.config",
    "load_train_config": "ccq.training.config",
    "PolySchedule": "ccq.training.schedule",
    "poly_lr": "ccq.training.schedule",
    "Trainer": "ccq.training.trainer",
    "TrainResult": "ccq.training.trainer",
    "TrainingDiverged": "ccq.training.trainer",
    "TrainingInterrupted": "ccq.training.signals",
    "Handler": "ccq.training.handlers",
    "train": "ccq.training.trainer",
    "partial_label_loss": "ccq.training.loss",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # Lazy: `ccq.training.loss` stays importable without pulling in the data pipeline and the checkpoints.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ccq.training' has no attribute {name!r}")
