"""Preparing one case of a dataset that labels several tasks (`ccq.data.collection_dataset`): the image and the
label map are read, resampled and stored once; each task gets its own manifest entry, channels and foreground
from the same prepared label map.

The case folder ``cases/<dataset>/<case>/`` holds the image and label once (:mod:`ccq.data.cache`), the
foreground voxels of each task's channels as ``fg_<task>_<channel>.npy``, and a ``meta.json`` with what all its
tasks share plus ``entries``: one manifest entry per task. Each entry has the keys of any other entry, ``dataset``
(the dataset's name) and the shared ``path``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ccq.data.cache import case_relpath
from ccq.data.collection import TaskSpec
from ccq.data.prepare import MAX_LOCATIONS, PreparedCase, Volume, prepare_case, task_foreground
from ccq.data.preprocessing import PreprocessingConfig
from ccq.errors import CCQError

TASK_KEYS = ("task", "task_id", "channels", "foreground_voxels", "foreground_ml", "foreground_bbox",
             "foreground_locations")  # fmt: skip
"""The keys of a manifest entry that differ between the tasks of one case."""


def location_key(task: str, channel: str) -> str:
    """The key of a task's channel in `PreparedCase.locations` of a shared case (``fg_<key>.npy`` on disk)."""
    return f"{task}_{channel}"


def check_shared_grids(tasks: Sequence[TaskSpec], preprocessing: PreprocessingConfig) -> None:
    """CCQError unless the tasks of one dataset have one working grid (their image is stored once)."""
    first = preprocessing.grid(tasks[0])
    for task in tasks[1:]:
        if preprocessing.grid(task) != first:
            raise CCQError(
                f"preprocessing: tasks {tasks[0].name!r} and {task.name!r} share dataset {task.dataset!r} but have "
                "different working grids; expected one grid for the tasks of a dataset (its images are stored once)"
            )


def task_entry(
    base: Mapping[str, Any], task: TaskSpec, label: np.ndarray, case_id: str, max_locations: int = MAX_LOCATIONS
) -> tuple[dict[str, Any], dict[str, np.ndarray | None]]:
    """(manifest entry, per-channel foreground locations) of ``task`` from the prepared ``label`` [D, H, W]."""
    foreground, locations = task_foreground(task, label, case_id, base["spacing"], max_locations)
    entry = {**base, "task": task.name, "task_id": task.id, **foreground}
    return entry, locations


def prepare_shared_case(
    image: Volume,
    label: Volume,
    tasks: Sequence[TaskSpec],
    preprocessing: PreprocessingConfig,
    *,
    case_id: str = "case",
    split: str = "train",
    max_locations: int = MAX_LOCATIONS,
) -> PreparedCase:
    """One case of a dataset for all ``tasks`` of it (they share folder, labels and grid): the image and label
    prepared once (`ccq.data.prepare.prepare_case`), ``meta["entries"]`` one entry per task, ``locations`` keyed
    by `location_key`."""
    if not tasks or any(t.dataset is None or t.dataset != tasks[0].dataset for t in tasks):
        raise CCQError(f"case {case_id}: expected the tasks of one dataset, got {[t.name for t in tasks]}")
    check_shared_grids(tasks, preprocessing)
    dataset = str(tasks[0].dataset)
    case = prepare_case(image, label, tasks[0], preprocessing, case_id=case_id, split=split, max_locations=1)
    base = {k: v for k, v in case.meta.items() if k not in TASK_KEYS}
    base.update(dataset=dataset, path=case_relpath(dataset, case_id))
    entries = []
    locations: dict[str, np.ndarray | None] = {}
    for task in tasks:
        entry, task_locations = task_entry(base, task, case.label, case_id, max_locations)
        entries.append(entry)
        locations.update({location_key(task.name, c): v for c, v in task_locations.items()})
    meta = {**base, "tasks": [t.name for t in tasks], "entries": entries}
    return dataclasses.replace(case, locations=locations, meta=meta)
