"""The records of a run folder: RUN/config.json (the resolved train + model + preprocessing configuration, seeds,
split, versions, devices) written when a new run starts, and on ``--resume`` one more entry in its "resumed"
list, with the log cut back to the checkpoint (records the interrupted process wrote after it are dropped, so
that log.jsonl and the curves tell one history)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccq.errors import CCQError
from ccq.training.handlers.base import Handler
from ccq.training.resume import truncate_log
from ccq.training.run_log import CONFIG_FILE, versions
from ccq.utils import fs

if TYPE_CHECKING:
    from ccq.training.trainer import Trainer


class RunRecords(Handler):
    """Creates the run folder and its config.json, or records a resume; says what it did through the echo."""

    def started(self, trainer: Trainer) -> None:
        run_dir, it = trainer.run_dir, trainer.state.iteration
        if trainer.resume:
            dropped = truncate_log(run_dir, it)
            trainer.echo(f"resuming {run_dir} at iteration {it}"
                         + (f" ({dropped} log records after it dropped)" if dropped else ""))  # fmt: skip
            append_resume_record(run_dir, trainer.config.to_dict(), it)
        else:
            check_run_dir(run_dir)  # again: the folder may have been filled since `Trainer` was built
            run_dir.mkdir(parents=True, exist_ok=True)
            fs.write_json_atomic(run_dir / CONFIG_FILE, run_record(trainer))
        if not trainer.split.val:
            trainer.echo("note: no validation case could be held out (too few training cases): no best/")


def check_run_dir(run_dir: Path) -> None:
    """Refuse a run folder that is a file or holds anything (checked before the expensive setup)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise CCQError(f"--out {run_dir}: exists and is not a folder")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise CCQError(
            f"--out {run_dir}: the folder is not empty; choose a new run folder, or add --resume to continue "
            "the run it holds"
        )


def run_record(trainer: Trainer) -> dict[str, Any]:
    """The content of config.json."""
    config, dist = trainer.config, trainer.dist
    return {
        "train": config.to_dict(),
        "model": trainer.model_config.to_dict(),
        "preprocessing": trainer.preprocessing.to_dict(),
        "data": str(trainer.dataset.root.resolve()),
        "collection": trainer.collection.to_dict(),
        "seed": config.seed,
        "rank_seeds": {
            "sampler": "each rank draws sample i of the stream (seed, rank, i)",
            "torch": [config.seed + r for r in range(dist.world_size)],
        },
        "world_size": dist.world_size,
        "device": str(trainer.device),
        "precision": trainer.precision.name,
        "split": {
            "rule": "per task, held out = first round(val_fraction * n) train cases ranked by "
            "crc32(f'{val_seed}/{task}/{case}') (at least 1 when n >= 2, never all); the dataset's name for {task} "
            "when tasks share a dataset",
            "val_fraction": config.val_fraction,
            "val_seed": config.val_seed,
            "validation": list(trainer.split.val),
            "train": list(trainer.split.train),
        },
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        **({"init_from": trainer.init_report.to_dict()} if trainer.init_report is not None else {}),
        "versions": versions(),
        "git_commit": git_commit(),
        "command": sys.argv,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def append_resume_record(run_dir: Path, train: dict[str, Any], iteration: int) -> None:
    """Add {iteration, command, train, time} to the "resumed" list of RUN/config.json."""
    path = run_dir / CONFIG_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    data.setdefault("resumed", []).append({
        "iteration": iteration, "command": sys.argv, "train": train,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })  # fmt: skip
    fs.write_json_atomic(path, data)


def git_commit() -> str | None:
    """The commit of the ccq source tree, when it is a git checkout (None for an installed wheel)."""
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
