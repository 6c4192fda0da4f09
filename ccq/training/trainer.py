"""The training loop: iteration-based, one `_step` per batch, validation and checkpoints at fixed intervals.

A run folder holds::

    RUN/config.json     the resolved train + model + preprocessing configuration, seed, split, versions
    RUN/log.jsonl       {"kind": "train", iteration, loss, dice, bce, lr, time, ...} every `log_every`
                        iterations (means over the interval), {"kind": "val", ...} after each validation
    RUN/last/           the latest checkpoint (`ccq.checkpoint` format), every `save_every` iterations
    RUN/best/           the checkpoint with the best mean validation Dice

Everything that changes during training lives in `TrainState` (plus the model, optimizer and loader), and
every update goes through `_step`: the pieces a later exact resume, AMP or DDP need to hook into.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ccq.checkpoint import save_checkpoint
from ccq.data.cache import PreparedDataset
from ccq.data.loader import Batch, PatchLoader
from ccq.data.sampling import PatchSampler
from ccq.errors import CCQError
from ccq.models import build_model, get_preset
from ccq.training.config import TrainConfig
from ccq.training.loss import partial_label_loss
from ccq.training.optim import build_optimizer
from ccq.training.run_log import CONFIG_FILE, LOG_FILE, JsonlLog, Meter, versions
from ccq.training.schedule import PolySchedule
from ccq.training.validation import split_validation, without_cases
from ccq.training.validation import validate as validate_cases
from ccq.utils import fs
from ccq.utils.device import resolve_device

LAST, BEST = "last", "best"


class TrainingDiverged(CCQError):
    """The loss became NaN or infinite; the message names the iteration, the task(s) and the case(s)."""


@dataclass
class TrainState:
    """Everything that changes while training, besides the weights and the optimizer's buffers."""

    iteration: int = 0
    """Completed iterations."""
    best_score: float | None = None
    best_iteration: int | None = None
    last_validation: dict[str, Any] | None = None
    seconds: float = 0.0
    """Wall-clock seconds spent in `fit` (training and validation)."""

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
            f"--out {run_dir}: the folder is not empty; choose a new run folder "
            "(continuing an earlier run is not supported yet)"
        )


def _prepare_run_dir(run_dir: Path) -> None:
    _check_run_dir(run_dir)  # again: the folder may have been filled since `Trainer` was built
    run_dir.mkdir(parents=True, exist_ok=True)


class Trainer:
    """Trains a model preset on a prepared folder.

    Args:
        config: the resolved training configuration.
        data: a prepared folder (`ccq prepare`) or an open `PreparedDataset`.
        run_dir: the run folder to create (must be new or empty).
        progress: show a tqdm bar on stderr.
        echo: where one-line messages go (default: stdout).
    """

    def __init__(
        self,
        config: TrainConfig,
        data: str | Path | PreparedDataset,
        run_dir: str | Path,
        *,
        progress: bool = True,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir).expanduser()
        _check_run_dir(self.run_dir)  # first: a bad --out must not wait for the data and the model
        self.dataset = data if isinstance(data, PreparedDataset) else PreparedDataset(data)
        self.progress = progress
        self.echo = echo or print
        self.device = resolve_device(config.device)
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
        _seed_everything(config.seed)
        self.model = build_model(self.model_config).to(self.device)
        self.optimizer = build_optimizer(self.model, config)
        self.schedule = PolySchedule(
            config.lr, config.iterations, config.poly_power, config.lr_step, config.epoch_iterations
        )
        sampler = PatchSampler(
            without_cases(self.dataset, self.split.val), self.patch_size, config.sampling,
            split="train", seed=config.seed, rank=0,
        )  # fmt: skip
        self.loader = PatchLoader(
            sampler, config.batch_size, num_workers=config.num_workers, pin_memory=self.device.type == "cuda"
        )
        self.state = TrainState()
        self._log: JsonlLog | None = None

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
            "device": str(self.device),
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
            "command": sys.argv,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def save(self, name: str) -> Path:
        """Write RUN/<name>/ (a checkpoint loadable by `ccq.checkpoint.load_checkpoint`)."""
        val = self.state.last_validation
        extra = {
            "iteration": self.state.iteration,
            "train_state": {k: v for k, v in self.state.to_dict().items() if k != "last_validation"},
            "validation": None if val is None else {"mean": val["mean"], "categories": val["categories"]},
            "train_config": self.config.to_dict(),
        }
        return save_checkpoint(
            self.run_dir / name, self.model, preprocessing=self.preprocessing, collection=self.collection,
            source=f"ccq train --preset {self.config.preset}: {self.run_dir.name}/{name} at iteration "
            f"{self.state.iteration}", extra=extra,
        )  # fmt: skip

    # ------------------------------------------------------------------------------------------- steps
    def _step(self, batch: Batch, lr: float) -> dict[str, float]:
        """One optimisation step on one batch; returns the loss terms as floats."""
        image = batch["image"].to(self.device, non_blocking=True)
        target = batch["target"].to(self.device, non_blocking=True)
        task_id = batch["task_id"].to(self.device, non_blocking=True)
        logits = self.model(image, task_id)
        terms = partial_label_loss(logits, target)
        if not bool(torch.isfinite(terms.total.detach())):
            self._diverged(batch, logits.detach(), target, float(terms.total.detach()), lr)
        self.optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return {name: float(getattr(terms, name).detach()) for name in ("total", "dice", "bce")}

    def _diverged(self, batch: Batch, logits: torch.Tensor, target: torch.Tensor, value: float, lr: float) -> None:
        bad = []
        for i, case in enumerate(batch["case"]):
            sample = partial_label_loss(logits[i : i + 1], target[i : i + 1]).total
            if not bool(torch.isfinite(sample)) or not bool(torch.isfinite(batch["image"][i]).all()):
                bad.append(case)
        bad = bad or list(batch["case"])
        tasks = sorted({c.split("/", 1)[0] for c in bad})
        iteration = self.state.iteration + 1
        message = (
            f"training diverged: non-finite loss ({value}) at iteration {iteration}, task(s) "
            f"{', '.join(tasks)} (case(s) {', '.join(bad)}), lr {lr:.3g}; lower the learning rate or check "
            f"those cases. The last saved checkpoint (if any) is in {self.run_dir / LAST}"
        )
        if self._log is not None:
            self._log.write({"kind": "error", "iteration": iteration, "message": message})
        raise TrainingDiverged(message)

    def validate(self) -> dict[str, Any]:
        """Dice on the held-out cases; updates the state (and best/ when the mean improves)."""
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
        if self._log is not None:
            self._log.write({
                "kind": "val", "iteration": self.state.iteration, "mean_dice": score,
                "categories": result["categories"], "cases": result["cases"], "best": improved,
                "seconds": result["seconds"],
            })  # fmt: skip
        if improved:
            self.save(BEST)
        return result

    # ------------------------------------------------------------------------------------------- loop
    def fit(self) -> TrainResult:
        """Train for `config.iterations`, validating every `val_every` and at the end."""
        cfg = self.config
        _prepare_run_dir(self.run_dir)
        fs.write_json_atomic(self.run_dir / CONFIG_FILE, self.run_record())
        self._log = JsonlLog(self.run_dir / LOG_FILE)
        if not self.split.val:
            self.echo("note: no validation case could be held out (too few training cases): no best/")
        self.model.train()
        meter = Meter()
        start = time.perf_counter()
        interval_start = start
        bar = tqdm(total=cfg.iterations, initial=self.state.iteration, desc="train", unit="it",
                   disable=not self.progress, dynamic_ncols=True, file=sys.stderr)  # fmt: skip
        batches = iter(self.loader)
        try:
            while self.state.iteration < cfg.iterations:
                lr = self.schedule.apply(self.optimizer, self.state.iteration)
                fetched = time.perf_counter()
                batch = next(batches)
                data_s = time.perf_counter() - fetched
                terms = self._step(batch, lr)
                self.state.iteration += 1
                meter.add(loss=terms["total"], dice=terms["dice"], bce=terms["bce"], data_s=data_s)
                bar.update(1)
                it = self.state.iteration
                if it % cfg.log_every == 0 or it == cfg.iterations:
                    self._log_interval(meter, lr, start, interval_start, bar)
                    interval_start = time.perf_counter()
                if self.split.val and ((cfg.val_every and it % cfg.val_every == 0) or it == cfg.iterations):
                    result = self.validate()
                    bar.set_postfix_str(f"val dice {result['mean']:.3f}", refresh=False)
                if it % cfg.save_every == 0 or it == cfg.iterations:
                    self.state.seconds = time.perf_counter() - start
                    self.save(LAST)
        finally:
            batches.close()  # ends the loader's iteration, which stops its worker processes
            bar.close()
            self.state.seconds = time.perf_counter() - start
            self._log.close()
            self._log = None
        best = self.run_dir / BEST if self.state.best_iteration is not None else None
        return TrainResult(self.run_dir, self.state, self.run_dir / LAST, best, self.split.val)

    def _log_interval(self, meter: Meter, lr: float, start: float, interval_start: float, bar: tqdm) -> None:
        means = meter.means()
        now = time.perf_counter()
        record = {
            "kind": "train", "iteration": self.state.iteration, "loss": means["loss"], "dice": means["dice"],
            "bce": means["bce"], "lr": lr, "time": now - start,
            "it_s": meter.count / max(now - interval_start, 1e-9), "data_s": means["data_s"],
            "loader_position": self.loader.position,
        }  # fmt: skip
        assert self._log is not None
        self._log.write(record)
        bar.set_postfix(loss=f"{means['loss']:.4f}", lr=f"{lr:.2e}", refresh=False)
        meter.reset()


def train(
    config: TrainConfig,
    data: str | Path | PreparedDataset,
    run_dir: str | Path,
    *,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> TrainResult:
    """Build a `Trainer` and run it (the function behind `ccq train`)."""
    return Trainer(config, data, run_dir, progress=progress, echo=echo).fit()
