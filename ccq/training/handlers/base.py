"""The hooks of a training run. Handlers run on rank 0 only (the process that writes files) and never
communicate with the other ranks: every collective is in the loop, which calls the hooks in this order:

    started                     the run folder may be written (new run or resume), before the first step
    record                      an "init_from" record, when a new run starts from a checkpoint (--init-from)
    record                      a "skip" record (non-finite loss), before the iteration's other hooks
    iteration_completed         after each step (the state already counts it)
    validated                   after a validation, when one is due
    checkpoint                  when last/ is due (every `save_every`, at the end, on a stop request)
    record                      a "stop", "error" or "end" record
    completed                   after the last iteration, the replicas checked to agree
    closed                      always last, also after an error: release files and bars

Within a hook, handlers run in the order the trainer holds them: run records, metric log, checkpoints, then
the handlers given to `Trainer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ccq.training.step import StepResult
    from ccq.training.trainer import Trainer


class Handler:
    """Base class: every hook does nothing; a handler overrides the ones it needs."""

    def started(self, trainer: Trainer) -> None:
        """The run starts (or resumes at ``trainer.state.iteration``)."""

    def iteration_completed(self, trainer: Trainer, step: StepResult, lr: float, data_s: float) -> None:
        """``trainer.state.iteration`` steps are done; ``lr`` was this step's learning rate, ``data_s`` the
        seconds spent waiting for its batch."""

    def validated(self, trainer: Trainer, result: dict[str, Any], improved: bool) -> None:
        """``result``: {"cases", "categories", "mean", "seconds"} (see `ccq.training.validation.validate`);
        ``improved``: the mean is the best so far (``trainer.state`` already holds it)."""

    def checkpoint(self, trainer: Trainer, rank_states: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> None:
        """Save time; ``rank_states``: every rank's (RNG state, loader state), in rank order."""

    def record(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """An event for the log: {"kind": "init_from" | "skip" | "error" | "stop" | "end", "iteration": ...}."""

    def completed(self, trainer: Trainer) -> None:
        """Every iteration is done."""

    def closed(self, trainer: Trainer) -> None:
        """The run ends (normally or not)."""
