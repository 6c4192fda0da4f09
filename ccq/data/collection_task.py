"""One task of a collection: a partially labeled dataset, its label values and its two output channels."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

import numpy as np

from ccq.data.collection_split import Split
from ccq.errors import CCQError
from ccq.utils.config import Config, FieldError, NonEmpty

Channel = Literal["organ", "tumor"]
Layout = Literal["msd", "kits"]
"""msd: imagesTr/ labelsTr/ dataset.json; kits: case_XXXXX/ folders (KiTS19)."""
CHANNELS: tuple[Channel, ...] = get_args(Channel)
LAYOUTS: tuple[Layout, ...] = get_args(Layout)
# Task names appear in "task/organ" category names and in comma-separated command-line lists.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
LabelValues = Annotated[tuple[int, ...], NonEmpty]


@dataclass(frozen=True)
class TaskSpec(Config):
    """One partially labeled dataset and its task: two sigmoid channels, organ and tumor.

    ``organ`` / ``tumor`` are the label values that make that channel positive, or None when the dataset does
    not label the channel (it is then ignored in the loss and in evaluation). Mappings are plain dicts so that
    the spec pickles into data-loader workers; treat them as read-only.
    """

    name: str
    id: int
    layout: Layout
    folder: str
    labels: Mapping[int, str]
    organ: LabelValues | None
    tumor: LabelValues | None
    output_values: Mapping[Channel, int | None] | None = None
    """Value written per channel when predicting in this dataset's convention; derived when omitted."""
    channel_names: Mapping[Channel, str | None] | None = None
    """Human names of the channels for reports; derived from ``labels`` when omitted."""
    split: Split | None = None
    """None (``split: null`` in a file) = every case trains: ``Split()``."""
    dataset: str | None = None
    """The collection's dataset (`ccq.data.collection_dataset`) this task takes its images and label maps from,
    shared with its other tasks; None = the task's own folder."""

    config_name = "task"

    def _validate(self) -> None:
        if not _NAME_RE.match(self.name):
            self._fail("name", "letters, digits, '_', '-' or '.' (used in 'task/organ')")
        if self.id < 0:
            self._fail("id", "a non-negative integer")
        if not self.folder:
            self._fail("folder", "a non-empty path")
        labels = self.labels
        if 0 not in labels:
            raise FieldError("labels", "expected label 0 (background) to be listed")
        if any(k < 0 for k in labels):
            raise FieldError("labels", f"expected non-negative label values, got {min(labels)}")
        if self.organ is None and self.tumor is None:
            raise FieldError("organ", "organ and tumor are both null: a task must label at least one channel")
        for channel in CHANNELS:
            values = getattr(self, channel)
            if values is None:
                continue
            for v in values:
                if v not in labels:
                    raise FieldError(channel, f"value {v} is not in labels ({sorted(labels)})")
                if v == 0:
                    raise FieldError(channel, "value 0 is background and cannot make a channel positive")
            if len(set(values)) != len(values):
                raise FieldError(channel, f"expected distinct label values, got {list(values)}")
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
        if self.split is None:
            object.__setattr__(self, "split", Split())

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
        if self.dataset is not None:
            out["dataset"] = self.dataset
        return out

    @property
    def storage_name(self) -> str:
        """The folder of this task's prepared cases under ``cases/``: its dataset's (shared), else its own name."""
        return self.dataset if self.dataset is not None else self.name
