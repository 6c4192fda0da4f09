"""What a run reports while it trains: RUN/log.jsonl, TensorBoard scalars under RUN/tensorboard/, the progress
bar on stderr, and RUN/curves.png (redrawn at each validation and at the end).

log.jsonl holds {"kind": "train", iteration, loss, dice, bce, lr, time, it_s, data_s, loader_position} every
`log_every` iterations (means over the interval and the ranks; skipped steps excluded), {"kind": "val", ...}
after each validation, and the {"kind": "init_from" | "skip" | "error" | "stop" | "end", ...} records the loop
sends.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccq.training.curves import CURVES_FILE, plot_curves
from ccq.training.handlers.base import Handler
from ccq.training.run_log import LOG_FILE, JsonlLog, Meter, read_log
from ccq.utils.progress import progress_bar

if TYPE_CHECKING:
    from ccq.training.step import StepResult
    from ccq.training.trainer import Trainer

TENSORBOARD_DIR = "tensorboard"


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


class Scalars:
    """TensorBoard scalars under RUN/tensorboard/ (a no-op object when tensorboard is not installed)."""

    def __init__(self, run_dir: Path, enabled: bool, purge_step: int | None = None) -> None:
        self._writer = None
        if enabled and tensorboard_available():
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR), purge_step=purge_step)

    @property
    def active(self) -> bool:
        return self._writer is not None

    def add(self, values: Mapping[str, float], step: int) -> None:
        if self._writer is not None:
            for tag, value in values.items():
                self._writer.add_scalar(tag, value, step)
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class MetricLog(Handler):
    """log.jsonl, TensorBoard, the progress bar (when ``progress``) and curves.png."""

    def __init__(self, progress: bool) -> None:
        self.progress = progress
        self._log: JsonlLog | None = None
        self._scalars: Scalars | None = None
        self._bar: Any = None
        self._meter = Meter()
        self._interval_start = 0.0

    def started(self, trainer: Trainer) -> None:
        run_dir, it = trainer.run_dir, trainer.state.iteration
        self._log = JsonlLog(run_dir / LOG_FILE)
        # On resume, TensorBoard drops the points the interrupted process wrote after the checkpoint.
        self._scalars = Scalars(run_dir, trainer.config.tensorboard, purge_step=it + 1)
        self._bar = progress_bar(total=trainer.config.iterations, initial=it, desc="train", unit="it",
                                 disable=not self.progress, dynamic_ncols=True, file=sys.stderr)  # fmt: skip
        self._interval_start = time.perf_counter()

    def iteration_completed(self, trainer: Trainer, step: StepResult, lr: float, data_s: float) -> None:
        it, cfg, meter = trainer.state.iteration, trainer.config, self._meter
        if not step.nonfinite:
            meter.add(loss=step.loss, dice=step.dice, bce=step.bce, data_s=data_s)
        self._bar.update(1)
        if not (meter.count and (it % cfg.log_every == 0 or it == cfg.iterations or step.stop)):
            return
        means = meter.means()
        record = {
            "kind": "train", "iteration": it, "loss": means["loss"], "dice": means["dice"], "bce": means["bce"],
            "lr": lr, "time": trainer.state.seconds,
            "it_s": meter.count / max(time.perf_counter() - self._interval_start, 1e-9), "data_s": means["data_s"],
            "loader_position": trainer.loader.position,
        }  # fmt: skip
        self.record(trainer, record)
        self._add_scalars({"train/loss": means["loss"], "train/dice": means["dice"], "train/bce": means["bce"],
                           "train/lr": lr, "train/it_s": record["it_s"]}, it)  # fmt: skip
        self._bar.set_postfix(loss=f"{means['loss']:.4f}", lr=f"{lr:.2e}", refresh=False)
        meter.reset()
        self._interval_start = time.perf_counter()

    def validated(self, trainer: Trainer, result: dict[str, Any], improved: bool) -> None:
        it, score = trainer.state.iteration, result["mean"]
        self.record(trainer, {
            "kind": "val", "iteration": it, "mean_dice": score, "categories": result["categories"],
            "cases": result["cases"], "best": improved, "seconds": result["seconds"],
        })  # fmt: skip
        self._add_scalars({"val/mean_dice": score, **{f"val/{k}": v for k, v in result["categories"].items()}}, it)
        self._plot(trainer)
        self._bar.set_postfix_str(f"val dice {score:.3f}", refresh=False)

    def record(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if self._log is not None:
            self._log.write(record)

    def completed(self, trainer: Trainer) -> None:
        self._plot(trainer)

    def closed(self, trainer: Trainer) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._scalars is not None:
            self._scalars.close()

    def _add_scalars(self, values: Mapping[str, float], step: int) -> None:
        if self._scalars is not None:
            self._scalars.add(values, step)

    @staticmethod
    def _plot(trainer: Trainer) -> None:
        plot_curves(read_log(trainer.run_dir), trainer.run_dir / CURVES_FILE, title=trainer.run_dir.name)
