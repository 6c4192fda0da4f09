"""The training loop: iteration-based, one `_step` per batch, validation and checkpoints at fixed intervals.

A run folder holds::

    RUN/config.json     the resolved train + model + preprocessing configuration, seeds, split, versions, devices
    RUN/log.jsonl       {"kind": "train", iteration, loss, dice, bce, lr, time, ...} every `log_every`
                        iterations (means over the interval and the ranks), {"kind": "val", ...} after each
                        validation, {"kind": "skip" | "error" | "stop" | "end", ...}
    RUN/curves.png      loss and validation Dice, redrawn at each validation
    RUN/last/           the latest checkpoint (`ccq.checkpoint` format + training_state.pt), every `save_every`
    RUN/best/           the checkpoint with the best mean validation Dice
    RUN/checkpoints/    the `keep_last` previous snapshots of last/ (iteration_NNNNNNN/)
    RUN/tensorboard/    TensorBoard scalars (when tensorboard is installed)

Started by ``torchrun``, every process runs this loop on its own device and its own sample stream
(``seed``, rank); DDP averages the gradients; only rank 0 writes. `--resume` continues from last/ exactly:
weights, optimizer, grad scaler, every RNG and the loader positions are restored.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ccq.checkpoint import load_checkpoint, save_checkpoint
from ccq.data.cache import PreparedDataset
from ccq.data.loader import Batch, PatchLoader
from ccq.data.sampling import PatchSampler
from ccq.errors import CCQError
from ccq.models import build_model, get_preset
from ccq.training import accel
from ccq.training import distributed as dd
from ccq.training.config import TrainConfig
from ccq.training.criteria import build_criterion
from ccq.training.curves import CURVES_FILE, Scalars, plot_curves
from ccq.training.optim import build_optimizer
from ccq.training.resume import LAST, truncate_log
from ccq.training.run_log import CONFIG_FILE, LOG_FILE, JsonlLog, Meter, read_log, versions
from ccq.training.schedule import PolySchedule
from ccq.training.signals import StopRequests
from ccq.training.state import STATE_FILE, capture_rng, load_training_state, restore_rng, save_training_state
from ccq.training.validation import split_validation, without_cases
from ccq.training.validation import validate as validate_cases
from ccq.utils import fs
from ccq.utils.device import resolve_device

BEST, SNAPSHOTS = "best", "checkpoints"
HANG_ENV = "CCQ_TEST_HANG_AFTER_SAVE"
"""Fault injection for the kill-and-resume test: after saving last/ at this iteration, the process sleeps
until it is killed (a stand-in for a machine that dies at that moment)."""


class TrainingDiverged(CCQError):
    """The loss became NaN or infinite; the message names the iteration, the task(s) and the case(s)."""


class TrainingInterrupted(CCQError):
    """SIGINT/SIGTERM: a checkpoint was saved; the message says how to resume. ``signum`` is the signal."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


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


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _check_run_dir(run_dir: Path) -> None:
    """Refuse a run folder that is a file or holds anything (checked before the expensive setup)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise CCQError(f"--out {run_dir}: exists and is not a folder")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise CCQError(
            f"--out {run_dir}: the folder is not empty; choose a new run folder, or add --resume to continue "
            "the run it holds"
        )


class Trainer:
    """Trains a model preset on a prepared folder.

    Args:
        config: the resolved training configuration.
        data: a prepared folder (`ccq prepare`) or an open `PreparedDataset`.
        run_dir: the run folder to create (new or empty), or with ``resume`` the run to continue.
        progress: show a tqdm bar on stderr (rank 0 only).
        echo: where one-line messages go (default: stdout; rank 0 only).
        resume: continue the run in ``run_dir`` from its last/ checkpoint.
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
    ) -> None:
        self.config = config
        self.dist = dd.context_from_env()
        self.run_dir = Path(run_dir).expanduser()
        self.resume = resume
        if not resume:
            _check_run_dir(self.run_dir)  # first: a bad --out must not wait for the data and the model
        self.dataset = data if isinstance(data, PreparedDataset) else PreparedDataset(data)
        self.progress = progress and self.dist.is_main
        self.echo = (echo or print) if self.dist.is_main else (lambda _: None)
        self.device = dd.process_device(self.dist, resolve_device(config.device))
        self.precision = accel.resolve_precision(config.precision, self.device)
        self.collection = self.dataset.collection
        try:
            self.model_config = get_preset(
                config.model, num_tasks=self.collection.num_tasks, **dict(config.model_overrides)
            )
        except (TypeError, ValueError) as err:  # a wrongly typed override, e.g. "dim": "wide"
            overrides = dict(config.model_overrides)
            raise CCQError(f"train config: model_overrides {overrides}: invalid value ({err})") from None
        self.patch_size = self.model_config.patch_size
        self.preprocessing = dataclasses.replace(self.dataset.preprocessing, patch_size=self.patch_size)
        self.split = split_validation(
            self.dataset.entries, config.val_fraction, config.val_seed, config.val_max_per_task
        )
        if not self.split.train:
            raise CCQError(f"{self.dataset.root}: no training cases in the manifest; prepare the data first")
        _seed_everything(config.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
        self.memory_format = accel.memory_format(config.channels_last)
        self.model = build_model(self.model_config).to(self.device, memory_format=self.memory_format)
        if config.activation_checkpointing:
            accel.enable_activation_checkpointing(self.model)
        self.criterion = build_criterion(self.model_config)
        self.optimizer = build_optimizer(self.model, config)
        self.scaler = accel.make_scaler(self.precision, self.device)
        self.schedule = PolySchedule(
            config.lr, config.iterations, config.poly_power, config.lr_step, config.epoch_iterations
        )
        sampler = PatchSampler(
            without_cases(self.dataset, self.split.val), self.patch_size, config.sampling,
            split="train", seed=config.seed, rank=self.dist.rank,
        )  # fmt: skip
        self.loader = PatchLoader(
            sampler, config.batch_size, num_workers=config.num_workers, pin_memory=self.device.type == "cuda",
            expand=False,
        )  # fmt: skip
        self.state = TrainState()
        if resume:
            self._load_last()
        # Joined after every rank has checked its inputs; a long rank-0 validation must not time the others out.
        if self.dist.enabled:
            dd.init_process_group(self.dist, self.device, timeout=timedelta(hours=2))
        self.wrapped = self._wrap(self.model)
        torch.manual_seed(config.seed + self.dist.rank)  # each rank's own dropout stream
        if resume:
            restore_rng(self._resume_state["rng"][self.dist.rank])
        self._log: JsonlLog | None = None
        self._scalars: Scalars | None = None

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DDP (several processes), then torch.compile (if asked): what the training forward calls."""
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(
                model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                # Models that route a sample to its task's own modules leave the others without gradients.
                find_unused_parameters=bool(getattr(model, "task_sparse_parameters", False)),
            )
        return accel.maybe_compile(model, self.config.compile)

    def _load_last(self) -> None:
        """Weights and training state of RUN/last/ (the RNG states are applied once the model is wrapped)."""
        last = self.run_dir / LAST
        loaded = load_checkpoint(last)
        if loaded.model_config != self.model_config:
            raise CCQError(f"--resume: {last} holds another model configuration than the run's config.json")
        self.model.load_state_dict(loaded.model.state_dict(), strict=True)
        state = load_training_state(last)
        if state["world_size"] != self.dist.world_size:
            raise CCQError(
                f"--resume: {last} was written by {state['world_size']} process(es), this run has "
                f"{self.dist.world_size}; resume with the same number (exact continuation needs each rank's stream)"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.loader.load_state_dict(state["loader"][self.dist.rank])
        saved = state["train_state"]
        self.state = TrainState(**{k: saved[k] for k in saved if k != "last_validation"})
        self._resume_state = state
        if self.state.iteration >= self.config.iterations:
            raise CCQError(
                f"--resume: {self.run_dir} already finished {self.state.iteration} iterations; pass --iterations "
                f"N with N > {self.state.iteration} to train longer"
            )

    # ------------------------------------------------------------------------------------------- records
    def run_record(self) -> dict[str, Any]:
        """The content of config.json."""
        return {
            "train": self.config.to_dict(),
            "model": self.model_config.to_dict(),
            "preprocessing": self.preprocessing.to_dict(),
            "data": str(self.dataset.root.resolve()),
            "collection": self.collection.to_dict(),
            "seed": self.config.seed,
            "rank_seeds": {
                "sampler": "each rank draws sample i of the stream (seed, rank, i)",
                "torch": [self.config.seed + r for r in range(self.dist.world_size)],
            },
            "world_size": self.dist.world_size,
            "device": str(self.device),
            "precision": self.precision.name,
            "split": {
                "rule": "per task, held out = first round(val_fraction * n) train cases ranked by "
                "crc32(f'{val_seed}/{task}/{case}') (at least 1 when n >= 2, never all)",
                "val_fraction": self.config.val_fraction,
                "val_seed": self.config.val_seed,
                "validation": list(self.split.val),
                "train": list(self.split.train),
            },
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "versions": versions(),
            "git_commit": _git_commit(),
            "command": sys.argv,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def _save(self, name: str, with_state: bool) -> None:
        """Write RUN/<name>/ (rank 0). ``with_state`` adds the training state, gathered from every rank: so it
        is a collective, and every rank must call it at the same iteration."""
        gathered = dd.all_gather_objects(self.dist, (capture_rng(), self.loader.state_dict())) if with_state else []
        if not self.dist.is_main:
            return
        val = self.state.last_validation
        extra = {
            "iteration": self.state.iteration,
            "train_state": {k: v for k, v in self.state.to_dict().items() if k != "last_validation"},
            "validation": None if val is None else {"mean": val["mean"], "categories": val["categories"]},
            "train_config": self.config.to_dict(),
        }

        def add_state(tmp: Path) -> None:
            save_training_state(tmp / STATE_FILE, {
                "iteration": self.state.iteration, "world_size": self.dist.world_size,
                "optimizer": self.optimizer.state_dict(),
                "scaler": None if self.scaler is None else self.scaler.state_dict(),
                "rng": [g[0] for g in gathered], "loader": [g[1] for g in gathered],
                "train_state": extra["train_state"],
            })  # fmt: skip

        save_checkpoint(
            self.run_dir / name, self.model, preprocessing=self.preprocessing, collection=self.collection,
            source=f"ccq train --preset {self.config.preset}: {self.run_dir.name}/{name} at iteration "
            f"{self.state.iteration}", extra=extra, add_files=add_state if with_state else None,
        )  # fmt: skip

    def _save_last(self) -> None:
        self._save(LAST, with_state=True)
        if self.dist.is_main and self.config.keep_last > 0:
            self._snapshot()
        if os.environ.get(HANG_ENV) == str(self.state.iteration):
            while True:
                time.sleep(60)

    def _snapshot(self) -> None:
        """Copy last/ to checkpoints/iteration_NNNNNNN/ and drop all but the newest `keep_last`."""
        folder = self.run_dir / SNAPSHOTS
        folder.mkdir(exist_ok=True)
        target = folder / f"iteration_{self.state.iteration:07d}"
        tmp = fs.temporary_path(target)
        shutil.copytree(self.run_dir / LAST, tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        snapshots = sorted(p for p in folder.iterdir() if p.name.startswith("iteration_"))
        for old in snapshots[: -self.config.keep_last]:
            shutil.rmtree(old)

    # ------------------------------------------------------------------------------------------- steps
    def _step(self, batch: Batch, lr: float, stop_requested: bool) -> tuple[dict[str, float], bool, bool]:
        """One optimisation step on one batch. Returns (the loss terms averaged over the ranks, whether some
        rank's loss was non-finite (then no update was made), whether some rank was asked to stop)."""
        image = batch["image"].to(self.device, non_blocking=True).float()
        image = image.contiguous(memory_format=self.memory_format)
        target = batch["target"].to(self.device, non_blocking=True).float()
        task_id = batch["task_id"].to(self.device, non_blocking=True)
        with accel.autocast(self.precision, self.device):
            output = self.wrapped(image, task_id)
        terms = self.criterion(output, target, task_id)
        total = terms.total.detach()
        finite = bool(torch.isfinite(total))
        local = torch.stack([
            total if finite else torch.zeros_like(total), terms.dice.detach().float(), terms.bce.detach().float(),
        ]).double().nan_to_num(0.0)  # fmt: skip
        flags = torch.tensor([0.0 if finite else 1.0, 1.0 if stop_requested else 0.0], dtype=torch.float64)
        summed = dd.all_reduce_sum(self.dist, torch.cat([local, flags.to(local.device)])).tolist()
        values = {k: v / self.dist.world_size for k, v in zip(("total", "dice", "bce"), summed[:3], strict=True)}
        any_nonfinite, any_stop = summed[3] > 0, summed[4] > 0
        if any_nonfinite:
            return values, True, any_stop  # every rank skips the backward together (DDP needs all or none)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(terms.total).backward()
            if self.config.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            terms.total.backward()
            if self.config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
        return values, False, any_stop

    def _nonfinite(self, batch: Batch, lr: float) -> None:
        """Skip the step if the budget allows, else stop naming the iteration, the task(s) and the case(s)."""
        iteration = self.state.iteration + 1
        if self.state.nonfinite_skips < self.config.max_nonfinite_skips:
            self.state.nonfinite_skips += 1
            message = (f"non-finite loss at iteration {iteration}: step skipped ({self.state.nonfinite_skips} of "
                       f"{self.config.max_nonfinite_skips} allowed)")  # fmt: skip
            self._write({"kind": "skip", "iteration": iteration, "message": message})
            return
        cases = [c for group in dd.all_gather_objects(self.dist, list(batch["case"])) for c in group]
        tasks = sorted({c.split("/", 1)[0] for c in cases})
        message = (
            f"training diverged: non-finite loss at iteration {iteration}, task(s) {', '.join(tasks)} "
            f"(case(s) {', '.join(cases)}), lr {lr:.3g}; lower the learning rate, allow skips with "
            f"max_nonfinite_skips, or check those cases. The last good checkpoint is {self.run_dir / LAST}"
        )
        self._write({"kind": "error", "iteration": iteration, "message": message})
        raise TrainingDiverged(message)

    def _write(self, record: dict[str, Any]) -> None:
        if self._log is not None:
            self._log.write(record)

    def validate(self) -> dict[str, Any] | None:
        """Dice on the held-out cases (rank 0; the others wait); updates the state and best/ on improvement."""
        result = None
        if self.dist.is_main:
            start = time.perf_counter()
            result = validate_cases(
                self.model, self.dataset, self.split.val, patch_size=self.patch_size,
                overlap=self.config.val_overlap, batch_size=self.config.val_batch_size, device=self.device,
            )  # fmt: skip
            result["seconds"] = time.perf_counter() - start
            self.state.last_validation = result
            score = result["mean"]
            improved = math.isfinite(score) and (self.state.best_score is None or score > self.state.best_score)
            if improved:
                self.state.best_score, self.state.best_iteration = score, self.state.iteration
            self._write({
                "kind": "val", "iteration": self.state.iteration, "mean_dice": score,
                "categories": result["categories"], "cases": result["cases"], "best": improved,
                "seconds": result["seconds"],
            })  # fmt: skip
            if self._scalars is not None:
                self._scalars.add({"val/mean_dice": score, **{f"val/{k}": v for k, v in
                                                              result["categories"].items()}}, self.state.iteration)
            if improved:
                self._save(BEST, with_state=False)
            plot_curves(read_log(self.run_dir), self.run_dir / CURVES_FILE, title=self.run_dir.name)
        dd.barrier(self.dist)
        # The others' copy of the best score (it is saved with their training state too).
        self.state.best_score, self.state.best_iteration = dd.broadcast_object(
            self.dist, (self.state.best_score, self.state.best_iteration)
        )
        return result

    # ------------------------------------------------------------------------------------------- loop
    def _open_outputs(self) -> None:
        if not self.dist.is_main:
            return
        if self.resume:
            dropped = truncate_log(self.run_dir, self.state.iteration)
            self.echo(f"resuming {self.run_dir} at iteration {self.state.iteration}"
                      + (f" ({dropped} log records after it dropped)" if dropped else ""))  # fmt: skip
            _append_resume_record(self.run_dir, self.config, self.state.iteration)
        else:
            _check_run_dir(self.run_dir)  # again: the folder may have been filled since `Trainer` was built
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fs.write_json_atomic(self.run_dir / CONFIG_FILE, self.run_record())
        self._log = JsonlLog(self.run_dir / LOG_FILE)
        # On resume, TensorBoard drops the points the interrupted process wrote after the checkpoint.
        self._scalars = Scalars(self.run_dir, self.config.tensorboard, purge_step=self.state.iteration + 1)
        if not self.split.val:
            self.echo("note: no validation case could be held out (too few training cases): no best/")

    def fit(self) -> TrainResult:
        """Train up to `config.iterations`, validating every `val_every` and at the end."""
        cfg = self.config
        self._open_outputs()
        dd.barrier(self.dist)
        self.model.train()
        meter = Meter()
        session_start = time.perf_counter()
        seconds_before = self.state.seconds
        interval_start = session_start
        bar = tqdm(total=cfg.iterations, initial=self.state.iteration, desc="train", unit="it",
                   disable=not self.progress, dynamic_ncols=True, file=sys.stderr)  # fmt: skip
        batches = iter(self.loader)
        try:
            with StopRequests() as stops:
                while self.state.iteration < cfg.iterations:
                    lr = self.schedule.apply(self.optimizer, self.state.iteration)
                    fetched = time.perf_counter()
                    batch = next(batches)
                    data_s = time.perf_counter() - fetched
                    terms, nonfinite, stop = self._step(batch, lr, stops.received is not None)
                    if nonfinite:
                        self._nonfinite(batch, lr)
                    self.state.iteration += 1
                    self.state.seconds = seconds_before + time.perf_counter() - session_start
                    it = self.state.iteration
                    if not nonfinite:
                        meter.add(loss=terms["total"], dice=terms["dice"], bce=terms["bce"], data_s=data_s)
                    bar.update(1)
                    if meter.count and (it % cfg.log_every == 0 or it == cfg.iterations or stop):
                        self._log_interval(meter, lr, interval_start, bar)
                        interval_start = time.perf_counter()
                    if self.split.val and ((cfg.val_every and it % cfg.val_every == 0) or it == cfg.iterations):
                        result = self.validate()
                        if result is not None:
                            bar.set_postfix_str(f"val dice {result['mean']:.3f}", refresh=False)
                    if it % cfg.save_every == 0 or it == cfg.iterations or stop:
                        self._save_last()
                    if stop:
                        self._stopped(stops.received or 0, stops.name or "a signal from another rank")
            self._finish()
            self._release_ddp()
            dd.barrier(self.dist)  # no rank tears its process group down while another still uses it
        finally:
            batches.close()  # ends the loader's iteration, which stops its worker processes
            bar.close()
            if self._log is not None:
                self._log.close()
                self._log = None
            if self._scalars is not None:
                self._scalars.close()
            self._release_ddp()
            dd.destroy_process_group(self.dist)
        best = self.run_dir / BEST if self.state.best_iteration is not None else None
        return TrainResult(self.run_dir, self.state, self.run_dir / LAST, best, self.split.val)

    def _release_ddp(self) -> None:
        """Free the DDP wrapper (and its reducer, which holds the process group) while the group is alive.

        A reducer freed later, after `destroy_process_group` and once the other ranks had exited, hung in gloo's
        process-group destructor (seen in the two-process CPU test: the run finished, one rank never exited)."""
        if self.wrapped is not self.model and self.dist.enabled:
            self.wrapped = self.model
            gc.collect()  # DDP's hooks form reference cycles: free the reducer now, not at some later collection

    def _stopped(self, signum: int, name: str) -> None:
        message = (
            f"stopped by {name} at iteration {self.state.iteration}; checkpoint saved in {self.run_dir / LAST}. "
            f"Continue with: ccq train --out {self.run_dir} --resume"
        )
        self._write({"kind": "stop", "iteration": self.state.iteration, "message": message})
        raise TrainingInterrupted(message, signum)

    def _finish(self) -> None:
        """Check that the replicas agree (DDP) and record the end of the run."""
        digests = dd.all_gather_objects(self.dist, dd.parameter_digest(self.model))
        record = {"kind": "end", "iteration": self.state.iteration, "seconds": self.state.seconds,
                  "parameter_digests": digests}  # fmt: skip
        self._write(record)
        if len(set(digests)) > 1:
            raise CCQError(f"DDP replicas disagree after {self.state.iteration} iterations: digests {digests}")
        if self.dist.is_main:
            plot_curves(read_log(self.run_dir), self.run_dir / CURVES_FILE, title=self.run_dir.name)

    def _log_interval(self, meter: Meter, lr: float, interval_start: float, bar: tqdm) -> None:
        means = meter.means()
        now = time.perf_counter()
        record = {
            "kind": "train", "iteration": self.state.iteration, "loss": means["loss"], "dice": means["dice"],
            "bce": means["bce"], "lr": lr, "time": self.state.seconds,
            "it_s": meter.count / max(now - interval_start, 1e-9), "data_s": means["data_s"],
            "loader_position": self.loader.position,
        }  # fmt: skip
        self._write(record)
        if self._scalars is not None:
            self._scalars.add({"train/loss": means["loss"], "train/dice": means["dice"], "train/bce": means["bce"],
                               "train/lr": lr, "train/it_s": record["it_s"]}, self.state.iteration)  # fmt: skip
        bar.set_postfix(loss=f"{means['loss']:.4f}", lr=f"{lr:.2e}", refresh=False)
        meter.reset()


def _git_commit() -> str | None:
    """The commit of the ccq source tree, when it is a git checkout (None for an installed wheel)."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _append_resume_record(run_dir: Path, config: TrainConfig, iteration: int) -> None:
    import json

    path = run_dir / CONFIG_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    data.setdefault("resumed", []).append({
        "iteration": iteration, "command": sys.argv, "train": config.to_dict(),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })  # fmt: skip
    fs.write_json_atomic(path, data)


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
