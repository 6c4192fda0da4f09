"""Checks `ccq.data.prepare_run` makes before preparing anything: the folder's cache format, and the memory that
``--workers N`` would need."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ccq.limits as limits
from ccq.data import cache
from ccq.data.prepare import estimate_memory
from ccq.data.preprocessing import PreprocessingConfig
from ccq.errors import CCQError


def check_format(out_dir: Path) -> None:
    """Refuse to add cases to a folder of another cache format (an older ccq's: its cases could not be read)."""
    meta_path = next((out_dir / cache.CASES_DIR).glob(f"*/*/{cache.META_FILE}"))
    found = cache.read_json(meta_path, "case meta.json")
    found = found.get("format") if isinstance(found, dict) else None
    if found != cache.FORMAT_VERSION:
        raise CCQError(
            f"{out_dir}: its cases are in cache format {limits.quote(found)} ({meta_path}); this ccq writes format "
            f"{cache.FORMAT_VERSION}. Use another --out (or delete the folder)"
        )


def check_workers_memory(jobs: Sequence[Any], preprocessing: PreprocessingConfig, workers: int) -> None:
    """CCQError, before any case is prepared, when ``workers`` processes preparing the largest cases at the same
    time would need more memory than is available (`ccq.data.prepare.estimate_memory`, from the headers); the
    message says how many workers fit. Unreadable headers are left to the case's own one-line error. ``jobs``:
    the cases to prepare (``image``, ``label``, ``task``, ``key``: `ccq.data.prepare_plan`'s jobs)."""
    room = limits.available_memory()
    if room is None or os.environ.get(limits.MEMORY_CHECK_ENV, "").strip() == "0" or not jobs:
        return
    needs = []
    for job in jobs:
        try:
            needs.append((estimate_memory(job.image, job.label, preprocessing, preprocessing.grid(job.task)), job))
        except CCQError:
            continue
    needs.sort(key=lambda n: -n[0])
    total = sum(n for n, _ in needs[:workers])
    if total <= room:
        return
    fits = max(k for k in range(1, workers + 1) if k == 1 or sum(n for n, _ in needs[:k]) <= room)
    largest, job = needs[0]
    raise CCQError(
        f"--workers {workers}: preparing the {min(workers, len(needs))} largest cases at once needs about "
        f"{limits.gib(total)} of memory (the largest, {job.key}, about {limits.gib(largest)}), "
        f"and {limits.gib(room)} is available; expected --workers {fits} or fewer (or set "
        f"{limits.MEMORY_CHECK_ENV}=0 to try anyway)"
    )
