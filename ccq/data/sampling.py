"""Random training patches from a prepared folder: task and case choice, crop placement, padding, targets.

Sample ``i`` of rank ``r`` is a pure function of ``(seed, r, i)``: its generator is seeded from exactly that
triple. So the stream does not depend on how many loader workers split it, each DDP rank draws its own
stream, and resuming a training run only needs the position ``i`` (see :mod:`ccq.data.loader`).

A crop reads and decompresses only the stored chunks it overlaps (`ccq.data.cache.CaseReader`), never a whole
volume.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ccq.data.augment import (
    AugmentationConfig,
    AugmentationPlan,
    apply_plan,
    crop_size,
    draw_plan,
    resize_patch,
)
from ccq.data.cache import CaseReader, PreparedDataset
from ccq.data.collection import CHANNELS
from ccq.data.prepare import channel_lut
from ccq.errors import CCQError
from ccq.utils.config import Config

ForegroundMode = Literal["bbox", "location"]
TaskWeighting = Literal["cases", "balanced"]


@dataclass(frozen=True)
class SamplingConfig(Config):
    """How patches are drawn (official defaults); the augmentation is nested so one JSON holds both."""

    foreground_fraction: float = 0.8
    """Share of crops placed on foreground; the rest are placed anywhere."""
    foreground_mode: ForegroundMode = "bbox"
    """``bbox`` (official): crop start uniform inside the foreground box, enlarged by ``bbox_margin`` and to
    at least the crop size. ``location`` (nnU-Net style): centred on a stored voxel of a labeled channel."""
    bbox_margin: int = 32
    task_weighting: TaskWeighting = "cases"
    """``cases`` (official): tasks in proportion to their case counts; ``balanced``: all tasks equally."""
    tumor_fraction: float = 0.0
    """Share of crops (of cases whose task labels a tumor and that hold one) placed to contain a random stored
    tumor voxel at a random position in the crop; 0 (official) = none. Small tumors then appear in more
    patches than their share of the foreground box gives them, so their channels start learning earlier."""
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)

    config_name = "sampling"

    def _validate(self) -> None:
        if not 0.0 <= self.foreground_fraction <= 1.0:
            self._fail("foreground_fraction", "a value in [0, 1]")
        if self.bbox_margin < 0:
            self._fail("bbox_margin", "a non-negative integer")
        if not 0.0 <= self.tumor_fraction <= 1.0:
            self._fail("tumor_fraction", "a value in [0, 1]")

    def without_augmentation(self) -> SamplingConfig:
        return dataclasses.replace(self, augmentation=dataclasses.replace(self.augmentation, enabled=False))


@dataclass(frozen=True)
class Sample:
    image: np.ndarray
    """float32 [1, D, H, W]."""
    target: np.ndarray
    """int8 [2, D, H, W]: (organ, tumor) in {0, 1}; -1 everywhere for a channel the task ignores.
    (int8 keeps batches small between processes; `ccq.data.loader.expand` makes the float32 loss target.)"""
    task_id: int
    labeled: tuple[bool, bool]
    case: str
    origin: tuple[int, int, int]
    """Crop start (z, y, x) in the prepared case grid (may be negative: padding)."""
    foreground_crop: bool
    """Whether this crop was placed on foreground (the 80% branch)."""
    plan: AugmentationPlan


def _int8(lut: np.ndarray | None) -> np.ndarray | None:
    return None if lut is None else lut.astype(np.int8)


def _valid_start(n: int, c: int) -> tuple[int, int]:
    """Inclusive range of crop starts along one axis: the crop inside the volume, or the volume inside it."""
    return (0, n - c) if n >= c else (n - c, 0)


class PatchSampler:
    """Draws `Sample`s of ``patch_size`` from the ``split`` cases of a prepared folder.

    Args:
        dataset: the prepared folder.
        patch_size: (D, H, W) voxels.
        config: sampling and augmentation.
        split: "train" (or "test", e.g. for a smoke test).
        tasks: restrict to these task names (default: every task with cases).
        seed, rank: the stream; rank is the DDP rank (each rank draws its own samples).
    """

    def __init__(
        self,
        dataset: PreparedDataset,
        patch_size: tuple[int, int, int],
        config: SamplingConfig,
        *,
        split: str = "train",
        tasks: list[str] | None = None,
        seed: int = 0,
        rank: int = 0,
    ) -> None:
        if len(patch_size) != 3 or any(int(p) <= 0 for p in patch_size):
            raise CCQError(f"patch_size={patch_size!r}: expected three positive integers (D, H, W)")
        if seed < 0 or rank < 0:
            raise CCQError(f"seed={seed}, rank={rank}: expected non-negative integers")
        self.dataset, self.config, self.seed, self.rank = dataset, config, int(seed), int(rank)
        self.patch_size = tuple(int(p) for p in patch_size)
        names = tasks if tasks is not None else list(dataset.collection.task_names)
        self.by_task = {n: dataset.cases(split=split, task=n) for n in names}
        self.by_task = {n: e for n, e in self.by_task.items() if e}
        if not self.by_task:
            raise CCQError(f"{dataset.root}: no {split!r} cases for tasks {names}; prepare the data first")
        counts = np.array([len(e) for e in self.by_task.values()], dtype=np.float64)
        weights = counts if config.task_weighting == "cases" else np.ones_like(counts)
        self.task_probs = weights / weights.sum()
        pre = dataset.preprocessing
        self.image_pad = float(pre.hu_min / pre.hu_scale)  # air after windowing (-1 official)
        self._luts: dict[str, list[np.ndarray | None]] = {
            n: [_int8(channel_lut(e[0]["channels"][c])) for c in CHANNELS] for n, e in self.by_task.items()
        }
        self._open: dict[str, CaseReader] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Each loader worker opens its own readers (they hold only checked headers and chunk indexes).
        state = self.__dict__.copy()
        state["_open"] = {}
        return state

    def _reader(self, entry: dict[str, Any]) -> CaseReader:
        key = entry["path"]
        if key not in self._open:
            if len(self._open) >= 1024:  # bound the kept indexes on huge collections (a few kB each)
                self._open.pop(next(iter(self._open)))
            self._open[key] = self.dataset.reader(entry)
        return self._open[key]

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, self.rank, int(index)]))

    def sample(self, index: int) -> Sample:
        """The ``index``-th sample of this rank's stream (a pure function of seed, rank, index)."""
        rng = self.rng(index)
        names = list(self.by_task)
        task = names[int(rng.choice(len(names), p=self.task_probs))]
        entries = self.by_task[task]
        entry = entries[int(rng.integers(len(entries)))]
        plan = draw_plan(rng, self.config.augmentation)
        size = crop_size(self.patch_size, plan.scale)
        on_fg = bool(rng.random() < self.config.foreground_fraction)
        # Drawn only when asked for, so that the official stream stays what it was.
        on_tumor = self.config.tumor_fraction > 0 and bool(rng.random() < self.config.tumor_fraction)
        if on_tumor and entry["foreground_voxels"].get("tumor"):
            start, on_fg = self._around_tumor(rng, entry, size), True
        else:
            start = self._place(rng, entry, size, on_fg)
        image, label = self._crop(entry, start, size)
        image, label = resize_patch(image, label, self.patch_size)
        image, label = apply_plan(plan, image, label)
        target = np.empty((2, *self.patch_size), dtype=np.int8)
        for c, lut in enumerate(self._luts[task]):
            if lut is None:
                target[c] = -1
            else:
                np.take(lut, label, out=target[c])  # one pass: label value -> 0/1
        labeled = tuple(lut is not None for lut in self._luts[task])
        return Sample(
            image=image[None],
            target=target,
            task_id=int(entry["task_id"]),
            labeled=labeled,  # type: ignore[arg-type]
            case=f"{task}/{entry['id']}",
            origin=start,
            foreground_crop=on_fg,
            plan=plan,
        )

    def _place(
        self, rng: np.random.Generator, entry: dict[str, Any], size: tuple[int, ...], on_fg: bool
    ) -> tuple[int, int, int]:
        shape = entry["shape"]
        valid = [_valid_start(n, c) for n, c in zip(shape, size, strict=True)]
        boxes = [b for b in entry["foreground_bbox"].values() if b]
        if on_fg and boxes:
            if self.config.foreground_mode == "location":
                return self._at_location(rng, entry, size, valid)
            box = np.array(boxes)  # [n_channels, 3, 2]
            starts = []
            for axis, c in enumerate(size):
                b0, b1 = int(box[:, axis, 0].min()), int(box[:, axis, 1].max())
                r0, r1 = b0 - self.config.bbox_margin, b1 + self.config.bbox_margin
                if r1 - r0 < c:  # enlarge symmetrically to at least the crop size
                    r0 -= (c - (r1 - r0)) // 2
                    r1 = r0 + c
                s = int(rng.integers(r0, r1 - c + 1))
                starts.append(int(np.clip(s, *valid[axis])))
            return tuple(starts)  # type: ignore[return-value]
        return tuple(int(rng.integers(a, b + 1)) for a, b in valid)  # type: ignore[return-value]

    def _at_location(
        self, rng: np.random.Generator, entry: dict[str, Any], size: tuple[int, ...], valid: list
    ) -> tuple[int, int, int]:
        channels = [c for c in CHANNELS if entry["foreground_voxels"].get(c)]
        locations = self.dataset.locations(entry, channels[int(rng.integers(len(channels)))])
        assert locations is not None
        centre = np.asarray(locations[int(rng.integers(len(locations)))], dtype=np.int64)
        return tuple(  # type: ignore[return-value]
            int(np.clip(p - c // 2, *v)) for p, c, v in zip(centre, size, valid, strict=True)
        )

    def _around_tumor(self, rng: np.random.Generator, entry: dict[str, Any], size: tuple[int, ...]) -> tuple[int, ...]:
        """A crop start that puts a random stored tumor voxel at a random position inside the crop (kept inside
        the volume where the volume allows)."""
        shape = entry["shape"]
        locations = self.dataset.locations(entry, "tumor")
        assert locations is not None
        point = locations[int(rng.integers(len(locations)))]
        starts = []
        for p, c, n in zip(point, size, shape, strict=True):
            lo, hi = _valid_start(int(n), c)
            s = int(p) - int(rng.integers(c))
            starts.append(int(np.clip(s, lo, hi)))
        return tuple(starts)

    def _crop(
        self, entry: dict[str, Any], start: tuple[int, ...], size: tuple[int, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Read the region [start, start + size) with padding outside the volume (image -1, label 0)."""
        return self._reader(entry).region(start, size)
