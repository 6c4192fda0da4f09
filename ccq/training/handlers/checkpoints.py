"""The checkpoints of a run: RUN/last/ (weights + training state) when the loop saves, RUN/best/ when validation
improves, and the `keep_last` newest copies of last/ in RUN/checkpoints/iteration_NNNNNNN/; and, for
``--resume``, reading last/ back. With `ema_decay` set, the weights saved as the model are the weight average
(`ccq.training.ema`) and last/'s training state also holds the trained weights. Every folder is written
through `ccq.checkpoint`'s swap: a kill at any moment leaves the previous checkpoint or the new one, never a
mixture or nothing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccq.checkpoint import copy_checkpoint, load_checkpoint, save_checkpoint
from ccq.errors import CCQError
from ccq.training.handlers.base import Handler
from ccq.training.resume import LAST
from ccq.training.state import STATE_FILE, load_training_state, save_training_state
from ccq.utils import fs

if TYPE_CHECKING:
    from ccq.training.trainer import Trainer

BEST, SNAPSHOTS = "best", "checkpoints"
SNAPSHOT_PREFIX = "iteration_"


class Checkpoints(Handler):
    """Writes last/ at each save, best/ on a better validation, and the snapshots of last/."""

    def validated(self, trainer: Trainer, result: dict[str, Any], improved: bool) -> None:
        if improved:
            save(trainer, BEST)

    def checkpoint(self, trainer: Trainer, rank_states: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> None:
        save(trainer, LAST, rank_states)
        if trainer.config.keep_last > 0:
            snapshot(trainer.run_dir, trainer.state.iteration, trainer.config.keep_last)


def save(trainer: Trainer, name: str, rank_states: Sequence[tuple[dict[str, Any], Any]] | None = None) -> Path:
    """Write RUN/<name>/; with ``rank_states`` (every rank's RNG and loader state) add the training state that
    ``--resume`` needs."""
    state, run_dir = trainer.state, trainer.run_dir
    val = state.last_validation
    extra = {
        "iteration": state.iteration,
        "train_state": {k: v for k, v in state.to_dict().items() if k != "last_validation"},
        "validation": None if val is None else {"mean": val["mean"], "categories": val["categories"]},
        "train_config": trainer.config.to_dict(),
    }

    def add_state(tmp: Path) -> None:
        averaged = {}
        if trainer.ema is not None:  # the model file holds the average; the trained weights go here
            averaged = {"online_weights": trainer.model.state_dict(), "ema": trainer.ema.state_dict()}
        save_training_state(tmp / STATE_FILE, {
            "iteration": state.iteration, "world_size": trainer.dist.world_size,
            "optimizer": trainer.optimizer.state_dict(),
            "scaler": None if trainer.scaler is None else trainer.scaler.state_dict(),
            "rng": [r[0] for r in rank_states or ()], "loader": [r[1] for r in rank_states or ()],
            "train_state": extra["train_state"], **averaged,
        })  # fmt: skip

    return save_checkpoint(
        run_dir / name, trainer.eval_model, preprocessing=trainer.preprocessing, collection=trainer.collection,
        source=f"ccq train --preset {trainer.config.preset}: {run_dir.name}/{name} at iteration {state.iteration}",
        extra=extra, add_files=add_state if rank_states is not None else None,
    )  # fmt: skip


def snapshot(run_dir: Path, iteration: int, keep: int) -> Path:
    """Copy RUN/last/ to RUN/checkpoints/iteration_NNNNNNN/ and drop all but the newest ``keep`` copies."""
    folder = run_dir / SNAPSHOTS
    target = copy_checkpoint(run_dir / LAST, folder / f"{SNAPSHOT_PREFIX}{iteration:07d}")
    for name in os.listdir(folder):  # what a process killed while dropping a snapshot left
        owner = fs.temporary_owner(name)
        if owner is not None and name.startswith(f".{SNAPSHOT_PREFIX}") and not fs.pid_alive(owner):
            shutil.rmtree(folder / name, ignore_errors=True)
    snapshots = sorted(p for p in folder.iterdir() if p.name.startswith(SNAPSHOT_PREFIX))
    for old in snapshots[:-keep]:
        # Renamed first: a kill while deleting must not leave a broken checkpoint under a snapshot's name.
        doomed = fs.temporary_path(old)
        old.rename(doomed)
        shutil.rmtree(doomed)
    return target


def restore_last(trainer: Trainer) -> dict[str, Any]:
    """Load RUN/last/ into the trainer's model, optimizer, grad scaler and loader, checking that it continues
    this run; returns the training state, whose counters and per-rank RNG states the trainer applies."""
    last = trainer.run_dir / LAST
    loaded = load_checkpoint(last)
    if loaded.model_config != trainer.model_config:
        raise CCQError(f"--resume: {last} holds another model configuration than the run's config.json")
    state = load_training_state(last)
    if trainer.config.ema_decay is None:
        trainer.model.load_state_dict(loaded.model.state_dict(), strict=True)
    else:  # model.safetensors holds the weight average; the trained weights are in the training state
        if "online_weights" not in state or "ema" not in state:
            raise CCQError(f"--resume: {last} holds no weight average (ema_decay is set in the run's config.json)")
        trainer.model.load_state_dict(state["online_weights"], strict=True)
        if trainer.ema is not None:
            trainer.ema.load_state_dict(state["ema"], loaded.model.state_dict())
    world_size = trainer.dist.world_size
    if state["world_size"] != world_size:
        raise CCQError(
            f"--resume: {last} was written by {state['world_size']} process(es), this run has {world_size}; "
            "resume with the same number (exact continuation needs each rank's stream)"
        )
    trainer.optimizer.load_state_dict(state["optimizer"])
    if trainer.scaler is not None and state["scaler"] is not None:
        trainer.scaler.load_state_dict(state["scaler"])
    trainer.loader.load_state_dict(state["loader"][trainer.dist.rank])
    done = state["train_state"]["iteration"]
    if done >= trainer.config.iterations:
        raise CCQError(
            f"--resume: {trainer.run_dir} already finished {done} iterations; pass --iterations N with N > {done} "
            "to train longer"
        )
    return state
