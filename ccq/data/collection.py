"""Task collections as data: which partially labeled datasets form a collection, and how each dataset's label
values map onto the two output channels (organ, tumor) of its task.

A collection file (``.yaml``/``.yml`` or ``.json``) looks like::

    name: mots
    root: null               # raw-data root, relative to this file; null = given when preparing
    tasks:
      - name: liver
        id: 0
        layout: msd          # msd: imagesTr/ labelsTr/ dataset.json; kits: case_XXXXX/ folders (KiTS19)
        folder: Task03_Liver # relative to the raw-data root
        labels: {0: background, 1: liver, 2: liver tumor}
        organ: [1, 2]        # label values that make the organ channel positive; null = channel not labeled
        tumor: [2]
        output_values: {organ: 1, tumor: 2}         # optional: written back in this dataset's convention
        channel_names: {organ: liver, tumor: liver tumor}   # optional: for reports
        split: {train: [liver_1, ...], test: [liver_0, ...]}  # or {test_fraction: 0.2, seed: 0}

MOTS (the DoDNet/CCQ benchmark) is built in: ``load_collection("mots")``. A file is checked against the
dataclasses' field types (:mod:`ccq.utils.config`: ``tasks[2].organ[0]: expected an integer, got '1'``), then
for its meaning (unique contiguous ids, channel values present in ``labels`` ...). Tasks:
:mod:`ccq.data.collection_task`; splits: :mod:`ccq.data.collection_split`; files, the built-in collections'
resources and case discovery: :mod:`ccq.data.collection_io`. This module is the one import for collections.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from ccq.data.collection_dataset import DatasetSpec, compact_tasks, expand_datasets
from ccq.data.collection_io import (
    BUILTIN_COLLECTIONS,
    CaseFiles,
    builtin_collection_data,
    find_cases,
    read_collection_data,
    write_collection_file,
)
from ccq.data.collection_split import Split
from ccq.data.collection_task import CHANNELS, LAYOUTS, TaskSpec
from ccq.errors import CCQError
from ccq.utils.config import Config, FieldError, NonEmpty, from_data


@dataclass(frozen=True)
class Collection(Config):
    """K partially labeled datasets, one task each, with ids 0..K-1 (kept sorted by id)."""

    name: str
    tasks: Annotated[tuple[TaskSpec, ...], NonEmpty]
    description: str = ""
    root: str | None = None
    """Raw-data root relative to the collection file (or absolute); None = given when the data is prepared."""
    datasets: tuple[DatasetSpec, ...] = ()
    """Datasets that label several tasks (`ccq.data.collection_dataset`); their tasks name them."""
    source: Path | None = field(default=None, compare=False, repr=False, metadata={"config": False})
    """The file this collection was read from (resolves a relative ``root``); not data: not read or written."""

    config_name = "collection"

    def _validate(self) -> None:
        tasks = self.tasks
        first_index: dict[Any, int] = {}
        for i, task in enumerate(tasks):
            for key, value in (("id", task.id), ("name", task.name)):
                if (key, value) in first_index:
                    raise FieldError(
                        f"tasks[{i}].{key}",
                        f"duplicate {key} {value!r} (also tasks[{first_index[key, value]}])",
                    )
                first_index[key, value] = i
        ids = sorted(t.id for t in tasks)
        if ids != list(range(len(tasks))):
            gap = next(k for k, v in enumerate(ids) if k != v)
            bad = next(i for i, t in enumerate(tasks) if t.id == ids[gap])
            raise FieldError(
                f"tasks[{bad}].id", f"task ids must be 0..{len(tasks) - 1} without gaps; id {gap} is missing"
            )
        self._validate_datasets()
        object.__setattr__(self, "tasks", tuple(sorted(tasks, key=lambda t: t.id)))

    def _validate_datasets(self) -> None:
        """Each task names a declared dataset and agrees with it; dataset names are unique and no task's name
        (both name a folder under the prepared ``cases/``)."""
        by_name: dict[str, DatasetSpec] = {}
        task_names = set(self.task_names)
        for j, dataset in enumerate(self.datasets):
            if dataset.name in by_name:
                raise FieldError(f"datasets[{j}].name", f"duplicate name {dataset.name!r}")
            if dataset.name in task_names:
                raise FieldError(f"datasets[{j}].name", f"{dataset.name!r} is also a task's name; expected another")
            by_name[dataset.name] = dataset
        for i, task in enumerate(self.tasks):
            if task.dataset is None:
                continue
            dataset = by_name.get(task.dataset)
            if dataset is None:
                known = ", ".join(repr(n) for n in by_name) or "none"
                raise FieldError(f"tasks[{i}].dataset", f"expected one of the datasets ({known}), got {task.dataset!r}")
            differs = dataset.matches(task)
            if differs is not None:
                raise FieldError(
                    f"tasks[{i}].{differs}", f"differs from its dataset {dataset.name!r}; expected the dataset's"
                )

    def __hash__(self) -> int:
        return hash((self.name, self.task_names))

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def dataset_tasks_of(self, dataset: str) -> tuple[TaskSpec, ...]:
        """The tasks of the dataset named ``dataset`` (that labels several tasks), in id order."""
        return tuple(t for t in self.tasks if t.dataset == dataset)

    def dataset_tasks(self, task: str | int | TaskSpec) -> tuple[TaskSpec, ...]:
        """The tasks that share ``task``'s images (its dataset's tasks, in id order); just ``task`` without one."""
        spec = self.task(task)
        if spec.dataset is None:
            return (spec,)
        return self.dataset_tasks_of(spec.dataset)

    def task(self, key: str | int | TaskSpec) -> TaskSpec:
        """A task by name or id; an unknown name suggests the closest one."""
        if isinstance(key, TaskSpec):
            key = key.name
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            if 0 <= key < len(self.tasks):
                return self.tasks[int(key)]
            raise CCQError(f"collection {self.name!r}: task id {key} out of range 0..{len(self.tasks) - 1}")
        for task in self.tasks:
            if task.name == key:
                return task
        close = difflib.get_close_matches(str(key), self.task_names, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise CCQError(f"collection {self.name!r} has no task {key!r}{hint} (tasks: {', '.join(self.task_names)})")

    def categories(self) -> list[str]:
        """Every labeled channel as ``"task/organ"`` / ``"task/tumor"``, in task-id order (MOTS: 11)."""
        return [c for t in self.tasks for c in t.categories()]

    def category_names(self) -> dict[str, str]:
        """``"liver/tumor" -> "liver tumor"``: the human channel names for reports."""
        return {f"{t.name}/{c}": t.channel_names[c] for t in self.tasks for c in CHANNELS if c in t.channel_names}

    def labeled_channels(self) -> np.ndarray:
        """[K, 2] bool: which (organ, tumor) channels each task labels."""
        return np.array([t.labeled_channels for t in self.tasks], dtype=bool)

    def channel_targets(
        self, label: np.ndarray, task: str | int | TaskSpec, check: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        return self.task(task).channel_targets(label, check=check)

    def to_output_labels(
        self, organ: np.ndarray | None, tumor: np.ndarray | None, task: str | int | TaskSpec
    ) -> np.ndarray:
        return self.task(task).to_output_labels(organ, tumor)

    def dataset_dir(self, task: str | int | TaskSpec, raw_root: str | Path | None = None) -> Path:
        """A task's dataset folder: ``raw_root`` (if given) or the collection's ``root``, then its folder."""
        spec = self.task(task)
        folder = Path(spec.folder).expanduser()
        if folder.is_absolute():
            return folder
        return self.raw_root(raw_root) / folder

    def raw_root(self, raw_root: str | Path | None = None) -> Path:
        """The folder that holds the datasets: ``raw_root`` if given, else the collection's ``root`` (relative to
        the collection file)."""
        if raw_root is not None:
            return Path(raw_root).expanduser()
        if self.root is None:
            raise CCQError(f"collection {self.name!r} sets no root (the folder of its datasets): give it with --raw")
        root = Path(self.root).expanduser()
        if not root.is_absolute():
            if self.source is None:
                raise CCQError(f"collection {self.name!r}: root {self.root!r} is relative but no file is known")
            root = self.source.parent / root
        return root

    def to_dict(self) -> dict[str, Any]:
        """As a file holds it; ``datasets`` only when there are any (a task of one omits what it gives)."""
        out: dict[str, Any] = {"name": self.name, "description": self.description, "root": self.root}
        if self.datasets:
            out["datasets"] = [d.to_dict() for d in self.datasets]
        out["tasks"] = compact_tasks([t.to_dict() for t in self.tasks])
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str | Path | None = None) -> Collection:  # type: ignore[override]
        """Validate and build; errors name ``source`` (a file or a description) and the field path."""
        where = str(source) if source is not None else "collection"
        try:
            data = expand_datasets(data)
        except FieldError as err:
            raise err.located(where) from None
        return from_data(cls, data, where=where, source=source if isinstance(source, Path) else None)

    def save(self, path: str | Path) -> Path:
        """Write as YAML or JSON (by extension); returns the path."""
        return write_collection_file(self.to_dict(), Path(path))

    def with_tasks(self, tasks: Sequence[TaskSpec]) -> Collection:
        """The same collection with other tasks (validated again)."""
        return dataclasses.replace(self, tasks=tuple(tasks))


def load_collection(name_or_path: str | Path) -> Collection:
    """A built-in collection by name (``"mots"``) or a collection file (.yaml, .yml, .json).

    A string without a suffix is a built-in name unless a file of that name exists (then the file is read).
    """
    path = Path(name_or_path).expanduser()
    if isinstance(name_or_path, str) and not path.suffix and not path.is_file():
        if not path.is_dir() or name_or_path.lower() in BUILTIN_COLLECTIONS:
            return load_builtin_collection(name_or_path)
    return read_collection_file(path)


def read_collection_file(path: str | Path) -> Collection:
    """A collection file (see `ccq.data.collection_io.read_collection_data`); errors name the file."""
    path = Path(path).expanduser()
    return Collection.from_dict(read_collection_data(path), source=path.resolve())


def load_builtin_collection(name: str) -> Collection:
    """A built-in collection (``mots``), with its published train/test split where it has one."""
    data, split_lists = builtin_collection_data(name)
    where = f"<built-in {name.lower()}>"
    collection = Collection.from_dict(data, where)
    return collection if split_lists is None else with_split_lists(collection, *split_lists)


def with_split_lists(collection: Collection, train: dict[int, list[str]], test: dict[int, list[str]]) -> Collection:
    """The collection with explicit train/test lists per task id (tasks absent from both keep theirs)."""
    unknown = sorted((set(train) | set(test)) - {t.id for t in collection.tasks})
    if unknown:
        raise CCQError(f"split lists name task id(s) {unknown} not in collection {collection.name!r}")
    tasks = [
        dataclasses.replace(t, split=Split(train=tuple(train.get(t.id, ())), test=tuple(test.get(t.id, ()))))
        if t.id in train or t.id in test
        else t
        for t in collection.tasks
    ]
    return collection.with_tasks(tasks)


__all__ = [
    "BUILTIN_COLLECTIONS",
    "CHANNELS",
    "LAYOUTS",
    "CaseFiles",
    "Collection",
    "DatasetSpec",
    "FieldError",
    "Split",
    "TaskSpec",
    "find_cases",
    "load_collection",
    "read_collection_file",
]
