"""The counters of a run (`TrainState`, saved with every checkpoint and restored by ``--resume``) and what
`Trainer.fit` returns (`TrainResult`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainState:
    """Everything that changes while training, besides the weights and the optimizer's buffers."""

    iteration: int = 0
    """Completed iterations."""
    best_score: float | None = None
    best_iteration: int | None = None
    last_validation: dict[str, Any] | None = None
    seconds: float = 0.0
    """Wall-clock seconds spent in `fit` (training and validation), over all sessions of a resumed run."""
    nonfinite_skips: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    state: TrainState
    last: Path
    best: Path | None
    """None when no validation cases could be held out (then only last/ exists)."""
    val_cases: tuple[str, ...] = field(default=())
