"""Continuing a run folder: its recorded configuration, what may change on resume, and its log up to the
checkpoint (records written after the checkpoint by the interrupted process are dropped, so the log and the
curves show one history)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ccq.limits as limits
from ccq.checkpoint.io import META_NAME
from ccq.errors import CCQError
from ccq.training.config import TrainConfig
from ccq.training.run_log import CONFIG_FILE, LOG_FILE
from ccq.training.state import STATE_FILE
from ccq.utils import fs

LAST = "last"
RESUME_CHANGEABLE = frozenset(
    {"iterations", "num_workers", "val_every", "save_every", "log_every", "keep_last", "tensorboard",
     "max_nonfinite_skips"}
)  # fmt: skip
"""Fields that do not change what the next step computes (``iterations`` extends or shortens the schedule)."""


def read_run_record(run_dir: Path) -> dict[str, Any]:
    """RUN/config.json, checked to belong to a resumable run (RUN/last/ with a training state)."""
    record_path = run_dir / CONFIG_FILE
    if not record_path.is_file():
        raise CCQError(f"--resume {run_dir}: no {CONFIG_FILE}; expected a run folder written by `ccq train`")
    try:
        record = limits.parse_json(limits.read_text(record_path), str(record_path), "cannot resume")
    except OSError as err:
        raise CCQError(f"{record_path}: unreadable ({err}); cannot resume") from None
    if not isinstance(record, dict) or not isinstance(record.get("train"), Mapping):
        raise CCQError(f"{record_path}: no 'train' section; expected the config.json of a `ccq train` run")
    last = run_dir / LAST
    if not (last / META_NAME).is_file() or not (last / STATE_FILE).is_file():
        raise CCQError(
            f"--resume {run_dir}: no complete checkpoint in {last} (the run stopped before its first save); "
            "start it again without --resume in a new folder"
        )
    return record


def resumed_config(record: Mapping[str, Any], changes: Mapping[str, Any]) -> TrainConfig:
    """The recorded training configuration with the allowed ``changes``; any other change is refused, since
    the continued run would no longer be the same run."""
    recorded = TrainConfig.from_dict(record["train"])
    recorded_dict = recorded.to_dict()
    refused = sorted(k for k, v in changes.items() if k not in RESUME_CHANGEABLE and recorded_dict.get(k) != v)
    if refused:
        detail = ", ".join(f"{k} (recorded {recorded_dict.get(k)!r}, given {changes[k]!r})" for k in refused)
        raise CCQError(
            f"--resume: cannot change {detail}; on resume only {', '.join(sorted(RESUME_CHANGEABLE))} may change "
            "(start a new run for other settings)"
        )
    allowed = {k: v for k, v in changes.items() if k in RESUME_CHANGEABLE}
    return recorded.replace(**allowed) if allowed else recorded


def truncate_log(run_dir: Path, iteration: int) -> int:
    """Keep the log records up to ``iteration`` (inclusive); returns how many were dropped."""
    path = run_dir / LOG_FILE
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            it = json.loads(line).get("iteration", 0)
        except ValueError:  # the half-written last line of a killed process
            dropped += 1
            continue
        if isinstance(it, int) and it > iteration:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        fs.write_text_atomic(path, "".join(f"{line}\n" for line in kept))
    return dropped
