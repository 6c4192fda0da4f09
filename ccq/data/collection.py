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

MOTS (the DoDNet/CCQ benchmark) is built in: ``load_collection("mots")``. The shape of a file is checked by
:mod:`ccq.data.collection_schema`; its meaning (unique contiguous ids, channel values present in
``labels`` ...) by the dataclasses here. Splits: :mod:`ccq.data.collection_split`; files, the built-in
collections and case discovery: :mod:`ccq.data.collection_io`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ccq.data.collection_schema import COLLECTION, TASK, FieldError, int_key, validate
from ccq.data.collection_split import Split
from ccq.errors import CCQError

CHANNELS = ("organ", "tumor")
LAYOUTS = ("msd", "kits")
# Task names appear in "task/organ" category names and in comma-separated command-line lists.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class TaskSpec:
    """One partially labeled dataset and its task: two sigmoid channels, organ and tumor.

    ``organ`` / ``tumor`` are the label values that make that channel positive, or None when the dataset does
    not label the channel (it is then ignored in the loss and in evaluation). Mappings are plain dicts so that
    the spec pickles into data-loader workers; treat them as read-only.
    """

    name: str
    id: int
    layout: str
    folder: str
    labels: Mapping[int, str]
    organ: tuple[int, ...] | None
    tumor: tuple[int, ...] | None
    output_values: Mapping[str, int] | None = None
    """Value written per channel when predicting in this dataset's convention; derived when omitted."""
    channel_names: Mapping[str, str] | None = None
    """Human names of the channels for reports; derived from ``labels`` when omitted."""
    split: Split = Split()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise FieldError(
                "name", f"expected letters, digits, '_', '-' or '.' (used in 'task/organ'), got {self.name!r}"
            )
        if self.id < 0:
            raise FieldError("id", f"expected a non-negative integer, got {self.id}")
        if self.layout not in LAYOUTS:
            raise FieldError("layout", f"expected one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if not self.folder:
            raise FieldError("folder", "expected a non-empty path")
        labels = {int(k): str(v) for k, v in self.labels.items()}
        if 0 not in labels:
            raise FieldError("labels", "expected label 0 (background) to be listed")
        if any(k < 0 for k in labels):
            raise FieldError("labels", f"expected non-negative label values, got {min(labels)}")
        object.__setattr__(self, "labels", labels)
        if self.organ is None and self.tumor is None:
            raise FieldError("organ", "organ and tumor are both null: a task must label at least one channel")
        for channel in CHANNELS:
            values = getattr(self, channel)
            if values is None:
                continue
            values = tuple(int(v) for v in values)
            for v in values:
                if v not in labels:
                    raise FieldError(channel, f"value {v} is not in labels ({sorted(labels)})")
                if v == 0:
                    raise FieldError(channel, "value 0 is background and cannot make a channel positive")
            if len(set(values)) != len(values) or not values:
                raise FieldError(channel, f"expected distinct label values, got {list(values)}")
            object.__setattr__(self, channel, values)
        object.__setattr__(self, "output_values", self._checked_output_values())
        names = dict(self.channel_names or {})
        for channel in CHANNELS:
            if getattr(self, channel) is None:
                if names.get(channel) is not None:
                    raise FieldError(f"channel_names.{channel}", f"the {channel} channel is null (not labeled)")
                names.pop(channel, None)
            elif not names.get(channel):
                names[channel] = labels[self.output_values[channel]]
        object.__setattr__(self, "channel_names", names)

    def _checked_output_values(self) -> dict[str, int]:
        given = {k: v for k, v in (self.output_values or {}).items() if v is not None}
        out: dict[str, int] = {}
        tumor = set(self.tumor or ())
        for channel in CHANNELS:
            values = getattr(self, channel)
            where = f"output_values.{channel}"
            if values is None:
                if channel in given:
                    raise FieldError(where, f"the {channel} channel is null (not labeled)")
                continue
            if channel in given:
                value = int(given[channel])
            else:
                # Organ: a value that does not read back as tumor; tumor: its smallest value.
                free = [v for v in values if channel == "tumor" or v not in tumor]
                if not free:
                    raise FieldError("organ", "every organ value is also a tumor value: no organ could be written")
                value = min(free)
            if value not in values:
                raise FieldError(where, f"value {value} does not make the {channel} channel positive ({list(values)})")
            if channel == "organ" and value in tumor:
                raise FieldError(where, f"value {value} is also a tumor value and would read back as tumor")
            out[channel] = value
        return out

    def __hash__(self) -> int:
        return hash((self.name, self.id))

    @property
    def labeled_channels(self) -> tuple[bool, bool]:
        """(organ labeled, tumor labeled): an unlabeled channel is ignored in the loss and in evaluation."""
        return self.organ is not None, self.tumor is not None

    def categories(self) -> list[str]:
        """The labeled channels as ``"task/organ"``, ``"task/tumor"``."""
        return [f"{self.name}/{c}" for c, on in zip(CHANNELS, self.labeled_channels, strict=True) if on]

    def check_label_values(self, label: np.ndarray, where: str = "label map") -> None:
        """CCQError if ``label`` holds a value this dataset does not declare (a wrong file or convention)."""
        label = np.asarray(label)
        if label.size and label.dtype.kind in "uib" and label.min() >= 0 and label.max() < 65536:
            # bincount is linear time: much faster than np.unique's sort on a full CT volume.
            present = np.flatnonzero(np.bincount(label.ravel().astype(np.intp, copy=False)))
        else:
            present = np.unique(label)
        unknown = [int(v) if float(v).is_integer() else float(v) for v in present if v not in self.labels]
        if unknown:
            raise CCQError(
                f"{where}: label value(s) {unknown[:5]} are not among the labels of task {self.name!r} "
                f"{sorted(self.labels)}"
            )

    def channel_targets(
        self, label: np.ndarray, check: bool = True, where: str = "label map"
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(organ mask, tumor mask): bool arrays shaped like ``label``; None for a channel not labeled."""
        label = np.asarray(label)
        if check:
            self.check_label_values(label, where)
        organ = None if self.organ is None else np.isin(label, self.organ)
        tumor = None if self.tumor is None else np.isin(label, self.tumor)
        return organ, tumor

    def to_output_labels(self, organ: np.ndarray | None, tumor: np.ndarray | None) -> np.ndarray:
        """A label map in this dataset's convention from binary channel masks; tumor overrides organ.

        A mask for a channel the task does not label is ignored (the network predicts both channels anyway).
        """
        masks = [m for m in (organ, tumor) if m is not None]
        if not masks:
            raise CCQError(f"task {self.name!r}: to_output_labels needs at least one mask")
        shape = np.shape(masks[0])
        if any(np.shape(m) != shape for m in masks):
            raise CCQError(f"task {self.name!r}: organ and tumor masks differ in shape")
        dtype = np.uint8 if max(self.labels) <= 255 else np.uint16
        out = np.zeros(shape, dtype=dtype)
        for channel, mask in (("organ", organ), ("tumor", tumor)):
            if mask is not None and channel in self.output_values:
                out[np.asarray(mask).astype(bool)] = self.output_values[channel]
        return out

    def split_cases(self, case_ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """(train, test) ids among the cases found on disk; CCQError if a listed case is missing."""
        try:
            return self.split.assign(case_ids)
        except FieldError as err:
            raise CCQError(f"task {self.name!r}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "id": self.id,
            "layout": self.layout,
            "folder": self.folder,
            # String keys, as JSON has them: to_dict() survives a JSON round trip unchanged.
            "labels": {str(k): v for k, v in sorted(self.labels.items())},
            "organ": None if self.organ is None else list(self.organ),
            "tumor": None if self.tumor is None else list(self.tumor),
            "output_values": dict(self.output_values or {}),
            "channel_names": dict(self.channel_names or {}),
        }
        split = self.split.to_dict()
        if split is not None:
            out["split"] = split
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskSpec:
        """Raises FieldError with a path relative to the task (``organ``, ``split.test`` ...)."""
        validate(data, TASK)
        return cls(
            name=data["name"],
            id=data["id"],
            layout=data["layout"],
            folder=data["folder"],
            labels={int_key(k): v for k, v in data["labels"].items()},
            organ=None if data["organ"] is None else tuple(data["organ"]),
            tumor=None if data["tumor"] is None else tuple(data["tumor"]),
            output_values=data.get("output_values"),
            channel_names=data.get("channel_names"),
            split=Split.from_dict(data.get("split")),
        )


@dataclass(frozen=True)
class Collection:
    """K partially labeled datasets, one task each, with ids 0..K-1 (kept sorted by id)."""

    name: str
    tasks: tuple[TaskSpec, ...]
    description: str = ""
    root: str | None = None
    """Raw-data root relative to the collection file (or absolute); None = given when the data is prepared."""
    source: Path | None = field(default=None, compare=False, repr=False)
    """The file this collection was read from (resolves a relative ``root``); not serialised."""

    def __post_init__(self) -> None:
        tasks = tuple(self.tasks)
        if not tasks:
            raise FieldError("tasks", "expected at least one task")
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
        object.__setattr__(self, "tasks", tuple(sorted(tasks, key=lambda t: t.id)))

    def __hash__(self) -> int:
        return hash((self.name, self.task_names))

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

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
        return {
            "name": self.name,
            "description": self.description,
            "root": self.root,
            "tasks": [t.to_dict() for t in self.tasks],
        }

    @classmethod
    def from_dict(cls, data: Any, source: str | Path | None = None) -> Collection:
        """Validate and build; errors name ``source`` (a file or a description) and the field."""
        where = str(source) if source is not None else "collection"
        try:
            validate(data, COLLECTION)
            tasks = []
            for i, item in enumerate(data["tasks"]):
                try:
                    tasks.append(TaskSpec.from_dict(item))
                except FieldError as err:
                    raise err.within(f"tasks[{i}]") from None
            return cls(
                name=data["name"],
                tasks=tuple(tasks),
                description=data.get("description", ""),
                root=data.get("root"),
                source=source if isinstance(source, Path) else None,
            )
        except FieldError as err:
            raise CCQError(f"{where}: {err}") from None

    def save(self, path: str | Path) -> Path:
        """Write as YAML or JSON (by extension); returns the path."""
        from ccq.data.collection_io import write_collection_file

        return write_collection_file(self.to_dict(), Path(path))

    def with_tasks(self, tasks: Sequence[TaskSpec]) -> Collection:
        """The same collection with other tasks (validated again)."""
        return dataclasses.replace(self, tasks=tuple(tasks))


def load_collection(name_or_path: str | Path) -> Collection:
    """A built-in collection by name (``"mots"``) or a collection file (.yaml, .yml, .json).

    A string without a suffix is a built-in name unless a file of that name exists (then the file is read).
    """
    from ccq.data.collection_io import BUILTIN_COLLECTIONS, load_builtin_collection, read_collection_file

    path = Path(name_or_path).expanduser()
    if isinstance(name_or_path, str) and not path.suffix and not path.is_file():
        if not path.is_dir() or name_or_path.lower() in BUILTIN_COLLECTIONS:
            return load_builtin_collection(name_or_path)
    return read_collection_file(path)


# Re-exported so that `ccq.data.collection` is the one import for collections (defined below this module's
# classes because collection_io builds on them).
from ccq.data.collection_io import (  # noqa: E402
    BUILTIN_COLLECTIONS,
    CaseFiles,
    find_cases,
)

__all__ = [
    "BUILTIN_COLLECTIONS",
    "CHANNELS",
    "CaseFiles",
    "Collection",
    "Split",
    "TaskSpec",
    "find_cases",
    "load_collection",
]
