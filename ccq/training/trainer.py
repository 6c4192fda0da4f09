"""The training loop: iteration-based; each iteration is one `train_step`, then the handlers.

A run folder holds::

    RUN/config.json     the resolved configuration, seeds, split, versions, devices (handlers.run_records)
    RUN/log.jsonl       train / val / skip / error / stop / end records (handlers.metric_log)
    RUN/curves.png      loss and validation Dice, redrawn at each validation (handlers.metric_log)
    RUN/tensorboard/    TensorBoard scalars, when tensorboard is installed (handlers.metric_log)
    RUN/last/           the latest checkpoint + training_state.pt, every `save_every` (handlers.checkpoints)
    RUN/best/           the checkpoint with the best mean validation Dice (handlers.checkpoints)
    RUN/checkpoints/    the `keep_last` newest copies of last/, iteration_NNNNNNN/ (handlers.checkpoints)

Started by ``torchrun``, every process runs this loop on its own device and its own sample stream
(``seed``, rank); DDP averages the gradients. The loop holds every collective (the step's all-reduce, the
gathers before a save and at the end, the barrier around rank 0's validation); the handlers run on rank 0
only, and write. `--resume` continues from last/ exactly: weights, optimizer, grad scaler, every RNG and the
loader positions are restored. `--init-from` starts from another model's weights, grown to new tasks, with
``--freeze`` and ``--replay`` against forgetting (`ccq.training.init_from`, `ccq.training.replay`).
"""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from ccq.data.cache import PreparedDataset
from ccq.data.loader import Batch
from ccq.errors import CCQError
from ccq.models import build_model
from ccq.models.ccq_net import CCQNet
from ccq.training import accel, build, init_from
from ccq.training import distributed as dd
from ccq.training.config import TrainConfig
from ccq.training.criteria import build_criterion
from ccq.training.ema import EMAUpdates, WeightAverage
from ccq.training.handlers import Handler
from ccq.training.handlers.checkpoints import BEST, Checkpoints, restore_last
from ccq.training.handlers.metric_log import MetricLog
from ccq.training.handlers.run_records import RunRecords, check_run_dir
from ccq.training.handlers.validation import run_validation, validation_due
from ccq.training.optim import build_optimizer
from ccq.training.resume import LAST
from ccq.training.run_state import TrainResult, TrainState
from ccq.training.schedule import build_schedule
from ccq.training.signals import StopRequests, TrainingInterrupted
from ccq.training.state import capture_rng, restore_rng
from ccq.training.step import StepResult, train_step
from ccq.training.validation import split_validation
from ccq.utils.device import resolve_device

__all__ = ["StepResult", "TrainResult", "TrainState", "Trainer", "TrainingDiverged", "TrainingInterrupted", "train"]


class TrainingDiverged(CCQError):
    """The loss became NaN or infinite; the message names the iteration, the task(s) and the case(s)."""


class Trainer:
    """Trains a model preset on a prepared folder.

    Args:
        config: the resolved training configuration.
        data: a prepared folder (`ccq prepare`) or an open `PreparedDataset`.
        run_dir: the run folder to create (new or empty), or with ``resume`` the run to continue.
        progress: show a progress bar on stderr (rank 0 only).
        echo: where one-line messages go (default: stdout; rank 0 only).
        resume: continue the run in ``run_dir`` from its last/ checkpoint.
        handlers: more `Handler`s, called after the built-in ones (run records, metric log, checkpoints), on
            rank 0 only.
    """

    def __init__(
        self,
        config: TrainConfig,
        data: str | Path | PreparedDataset,
        run_dir: str | Path,
        *,
        progress: bool = True,
        echo: Callable[[str], None] | None = None,
        resume: bool = False,
        handlers: Sequence[Handler] = (),
    ) -> None:
        self.config, self.resume = config, resume
        self.dist = dd.context_from_env()
        self.run_dir = Path(run_dir).expanduser()
        if not resume:
            check_run_dir(self.run_dir)  # first: a bad --out must not wait for the data and the model
        self.dataset = data if isinstance(data, PreparedDataset) else PreparedDataset(data)
        self.echo = (echo or print) if self.dist.is_main else (lambda _: None)
        self.device = dd.process_device(self.dist, resolve_device(config.device))
        self.precision = accel.resolve_precision(config.precision, self.device)
        self.collection = self.dataset.collection
        self.model_config = build.model_config(config, self.collection.num_tasks)
        self.patch_size = self.model_config.patch_size
        self.preprocessing = dataclasses.replace(self.dataset.preprocessing, patch_size=self.patch_size)
        self.split = split_validation(
            self.dataset.entries, config.val_fraction, config.val_seed, config.val_max_per_task
        )
        if not self.split.train:
            raise CCQError(f"{self.dataset.root}: no training cases in the manifest; prepare the data first")
        build.seed_everything(config.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
        self.memory_format = accel.memory_format(config.channels_last)
        self.model = build_model(self.model_config).to(self.device, memory_format=self.memory_format)
        self.init_report = init_from.start_from(self, resume)  # --init-from, --freeze; None without
        if config.activation_checkpointing:
            accel.enable_activation_checkpointing(self.model)
        self.criterion = build_criterion(self.model_config)
        self.optimizer = build_optimizer(self.model, config)
        self.scaler = accel.make_scaler(self.precision, self.device)
        self.schedule = build_schedule(config)
        # The weight average lives where validation and saving happen (rank 0); see ccq.training.ema.
        use_ema = config.ema_decay is not None and self.dist.is_main
        self.ema = WeightAverage(self.model, config.ema_decay) if use_ema else None
        self.loader = build.patch_loader(self.dataset, self.split, self.patch_size, config, self.dist.rank,
                                         self.device)  # fmt: skip
        resumed = restore_last(self) if resume else None
        saved = resumed["train_state"] if resumed is not None else {}
        self.state = TrainState(**{k: v for k, v in saved.items() if k != "last_validation"})
        # Joined after every rank has checked its inputs; a long rank-0 validation must not time the others out.
        if self.dist.enabled:
            dd.init_process_group(self.dist, self.device, timeout=timedelta(hours=2))
        self.wrapped = build.wrap_model(self.model, self.dist, self.device, config.compile)
        self.decode_labeled_only = (
            config.decode_labeled_only and isinstance(self.model, CCQNet) and not self.dist.enabled
            and not config.compile
        )  # fmt: skip
        torch.manual_seed(config.seed + self.dist.rank)  # each rank's own dropout stream
        if resumed is not None:
            restore_rng(resumed["rng"][self.dist.rank])
        builtin = [EMAUpdates(), RunRecords(), MetricLog(progress), Checkpoints()]
        self.handlers: list[Handler] = [*builtin, *handlers] if self.dist.is_main else []

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights that are validated and saved as the model: the EMA's when `ema_decay` is set."""
        return self.ema.model if self.ema is not None else self.model

    def fit(self) -> TrainResult:
        """Train up to `config.iterations`; validate every `val_every` and at the end; save last/ every
        `save_every`, at the end, and when SIGINT/SIGTERM asks to stop (then raise `TrainingInterrupted`)."""
        cfg, state = self.config, self.state
        batches = iter(self.loader)
        try:
            self._emit("started")
            if self.init_report is not None:
                self._emit("record", init_from.as_record(self.init_report))
            dd.barrier(self.dist)  # rank 0 has made the run folder
            self.model.train()
            session_start, seconds_before = time.perf_counter(), state.seconds
            with StopRequests() as stops:
                while state.iteration < cfg.iterations:
                    lr = self.schedule.apply(self.optimizer, state.iteration)
                    fetched = time.perf_counter()
                    batch = next(batches)
                    data_s = time.perf_counter() - fetched
                    step = train_step(self, batch, stops.received is not None)  # one all-reduce
                    if step.nonfinite:
                        self._nonfinite(batch, lr)
                    state.iteration += 1
                    state.seconds = seconds_before + time.perf_counter() - session_start
                    self._emit("iteration_completed", step, lr, data_s)
                    if validation_due(self):
                        self.validate()
                    if state.iteration % cfg.save_every == 0 or state.iteration == cfg.iterations or step.stop:
                        rank_states = dd.all_gather_objects(self.dist, (capture_rng(), self.loader.state_dict()))
                        self._emit("checkpoint", rank_states)
                    if step.stop:
                        self._stopped(stops.received or 0, stops.name or "a signal from another rank")
            digests = dd.all_gather_objects(self.dist, dd.parameter_digest(self.model))
            self._emit("record", {"kind": "end", "iteration": state.iteration, "seconds": state.seconds,
                                  "parameter_digests": digests})  # fmt: skip
            dd.check_replicas_agree(digests, state.iteration)
            self._emit("completed")
            self._release_ddp()
            dd.barrier(self.dist)  # no rank tears its process group down while another still uses it
        finally:
            batches.close()  # ends the loader's iteration, which stops its worker processes
            self._emit("closed")
            self._release_ddp()
            dd.destroy_process_group(self.dist)
        best = self.run_dir / BEST if state.best_iteration is not None else None
        return TrainResult(self.run_dir, state, self.run_dir / LAST, best, self.split.val)

    def validate(self) -> dict[str, Any] | None:
        """Dice on the held-out cases: rank 0 validates (its handlers log it and keep best/) while the others
        wait; then every rank holds the best score (it is saved with their training state too)."""
        result = None
        if self.dist.is_main:
            result, improved = run_validation(self)
            self._emit("validated", result, improved)
        dd.barrier(self.dist)
        best = dd.broadcast_object(self.dist, (self.state.best_score, self.state.best_iteration))
        self.state.best_score, self.state.best_iteration = best
        return result

    def _emit(self, hook: str, *args: Any) -> None:
        """Call ``hook`` (a `Handler` method) of every handler, in order."""
        for handler in self.handlers:
            getattr(handler, hook)(self, *args)

    def _nonfinite(self, batch: Batch, lr: float) -> None:
        """Skip the step if the budget allows, else stop naming the iteration, the task(s) and the case(s)."""
        iteration, allowed = self.state.iteration + 1, self.config.max_nonfinite_skips
        if self.state.nonfinite_skips < allowed:
            self.state.nonfinite_skips += 1
            message = (f"non-finite loss at iteration {iteration}: step skipped ({self.state.nonfinite_skips} of "
                       f"{allowed} allowed)")  # fmt: skip
            self._emit("record", {"kind": "skip", "iteration": iteration, "message": message})
            return
        cases = [c for group in dd.all_gather_objects(self.dist, list(batch["case"])) for c in group]
        tasks = sorted({c.split("/", 1)[0] for c in cases})
        message = (
            f"training diverged: non-finite loss at iteration {iteration}, task(s) {', '.join(tasks)} "
            f"(case(s) {', '.join(cases)}), lr {lr:.3g}; lower the learning rate, allow skips with "
            f"max_nonfinite_skips, or check those cases. The last good checkpoint is {self.run_dir / LAST}"
        )
        self._emit("record", {"kind": "error", "iteration": iteration, "message": message})
        raise TrainingDiverged(message)

    def _stopped(self, signum: int, name: str) -> None:
        message = (
            f"stopped by {name} at iteration {self.state.iteration}; checkpoint saved in {self.run_dir / LAST}. "
            f"Continue with: ccq train --out {self.run_dir} --resume"
        )
        self._emit("record", {"kind": "stop", "iteration": self.state.iteration, "message": message})
        raise TrainingInterrupted(message, signum)

    def _release_ddp(self) -> None:
        """Free the DDP wrapper (and its reducer, which holds the process group) while the group is alive.

        A reducer freed later, after `destroy_process_group` and once the other ranks had exited, hung in gloo's
        process-group destructor (seen in the two-process CPU test: the run finished, one rank never exited)."""
        if self.wrapped is not self.model and self.dist.enabled:
            self.wrapped = self.model
            gc.collect()  # DDP's hooks form reference cycles: free the reducer now, not at some later collection


def train(
    config: TrainConfig,
    data: str | Path | PreparedDataset,
    run_dir: str | Path,
    *,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
    resume: bool = False,
) -> TrainResult:
    """Build a `Trainer` and run it (the function behind `ccq train`)."""
    return Trainer(config, data, run_dir, progress=progress, echo=echo, resume=resume).fit()
