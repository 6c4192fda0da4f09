"""A dataset that labels several tasks: one folder of images and label maps, declared once in a collection.

A fully labeled set (BTCV, AMOS, TotalSegmentator-style label maps) is one source of several tasks, each with its
own organ/tumor values. A collection file declares it under ``datasets`` and its tasks name it::

    datasets:
      - name: totalseg          # a plain name; not a task's name (its cases are stored under cases/<name>/)
        layout: msd
        folder: TotalSeg
        labels: {0: background, 1: spleen, 2: kidney_right, 3: kidney_left, 5: liver, ...}
        split: {test_fraction: 0.2, seed: 0}   # optional; one split for every task of the dataset
    tasks:
      - {name: liver, id: 0, dataset: totalseg, organ: [5], tumor: null}
      - {name: kidney, id: 1, dataset: totalseg, organ: [2, 3], tumor: null}

A task that names a dataset takes its ``layout``, ``folder``, ``labels`` and ``split`` from it (giving them on the
task as well is an error). `expand_datasets` turns such a file into the plain form (every task complete, with
``dataset`` kept); `compact_tasks` writes it back. The image of a case is prepared and stored once for all the
dataset's tasks (:mod:`ccq.data.prepare`, :mod:`ccq.data.cache`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ccq.data.collection_split import Split
from ccq.data.collection_task import _NAME_RE, Layout
from ccq.utils.config import Config, FieldError, from_data, shown

SHARED_FIELDS = ("layout", "folder", "labels", "split")
"""The task fields a dataset gives every task that names it."""


@dataclass(frozen=True)
class DatasetSpec(Config):
    """One folder of images and label maps that provides the labels of several tasks."""

    name: str
    layout: Layout
    folder: str
    labels: Mapping[int, str]
    split: Split | None = None
    """None = every case trains: ``Split()``; one split for all the dataset's tasks (a case is train or test)."""

    config_name = "dataset"

    def _validate(self) -> None:
        if not _NAME_RE.match(self.name):
            self._fail("name", "letters, digits, '_', '-' or '.' (the folder of its prepared cases)")
        if not self.folder:
            self._fail("folder", "a non-empty path")
        if 0 not in self.labels:
            raise FieldError("labels", "expected label 0 (background) to be listed")
        if self.split is None:
            object.__setattr__(self, "split", Split())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "layout": self.layout,
            "folder": self.folder,
            "labels": {str(k): v for k, v in sorted(self.labels.items())},  # string keys, as JSON has them
        }
        split = self.split.to_dict()
        if split is not None:
            out["split"] = split
        return out

    def task_fields(self) -> dict[str, Any]:
        """The fields every task of this dataset takes (as data; ``split`` None = every case trains)."""
        out = {k: v for k, v in self.to_dict().items() if k in SHARED_FIELDS}
        out.setdefault("split", None)
        return out

    def matches(self, task: Any) -> str | None:
        """The first shared field on which ``task`` (a TaskSpec) differs from this dataset, or None."""
        for key in ("layout", "folder"):
            if getattr(task, key) != getattr(self, key):
                return key
        if dict(task.labels) != dict(self.labels):
            return "labels"
        return None if task.split == self.split else "split"


def expand_datasets(data: Any) -> Any:
    """Collection data with every task that names a dataset completed from it (``layout``, ``folder``,
    ``labels``, ``split``); data without ``datasets`` is returned as it is. Errors are FieldErrors with the path
    (``tasks[2].folder: ...``), checked before the tasks themselves."""
    if not isinstance(data, Mapping) or not isinstance(data.get("tasks"), list | tuple):
        return data
    named = any(isinstance(t, Mapping) and t.get("dataset") is not None for t in data["tasks"])
    if "datasets" not in data and not named:
        return data  # the plain form: every task with its own folder
    raw = data.get("datasets")
    if raw is None:
        raw = []
    if not isinstance(raw, list | tuple):
        raise FieldError("datasets", f"expected a list of datasets, got {shown(raw)}")
    datasets: dict[str, DatasetSpec] = {}
    for j, item in enumerate(raw):
        try:
            spec = item if isinstance(item, DatasetSpec) else from_data(DatasetSpec, item)
        except FieldError as err:
            raise err.within(f"datasets[{j}]") from None
        if spec.name in datasets:
            raise FieldError(f"datasets[{j}].name", f"duplicate name {spec.name!r}")
        datasets[spec.name] = spec
    tasks = []
    for i, task in enumerate(data["tasks"]):
        name = task.get("dataset") if isinstance(task, Mapping) else None
        if name is None:
            tasks.append(task)
            continue
        if name not in datasets:
            known = ", ".join(repr(n) for n in datasets) or "none"
            raise FieldError(f"tasks[{i}].dataset", f"expected one of the datasets ({known}), got {shown(name)}")
        given = [k for k in SHARED_FIELDS if k in task]
        if given:
            raise FieldError(
                f"tasks[{i}].{given[0]}", f"given by dataset {name!r}; expected it only in the dataset (datasets)"
            )
        tasks.append({**task, **datasets[name].task_fields()})
    return {**data, "datasets": [d.to_dict() for d in datasets.values()], "tasks": tasks}


def compact_tasks(tasks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Task data as a file writes it: a task of a dataset without the fields the dataset gives it."""
    return [{k: v for k, v in t.items() if k not in SHARED_FIELDS} if t.get("dataset") else t for t in tasks]
