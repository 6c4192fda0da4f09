"""Preparing one case: validate a CT and its label map, reorient, resample, window, find the foreground.

The collection-level runner (enumeration, workers, manifest) is :mod:`ccq.data.prepare_run`; the geometry is
:mod:`ccq.data.geometry`; the on-disk format is :mod:`ccq.data.cache`. Inference reuses `preprocess_image`
and `ccq.data.geometry.to_original_grid` so that a CT is treated exactly as the training cases were.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccq.data import geometry
from ccq.data import grid as working
from ccq.data.cache import FORMAT_VERSION, case_relpath
from ccq.data.collection import CHANNELS, TaskSpec
from ccq.data.geometry import CanonicalInfo
from ccq.data.grid import Grid
from ccq.data.preprocessing import PreprocessingConfig
from ccq.errors import CCQError

MAX_LOCATIONS = 10_000
"""Foreground voxels stored per channel for class-location sampling (a random subsample, nnU-Net style)."""

Volume = str | Path | tuple[np.ndarray, np.ndarray]
"""A NIfTI path, or an (array in file voxel order, 4x4 voxel -> RAS mm affine) pair."""


@dataclass(frozen=True)
class PreparedCase:
    """One case on the prepared grid, ready for `ccq.data.cache.write_case`."""

    image: np.ndarray
    """float32 [D, H, W], windowed and scaled."""
    label: np.ndarray
    """uint8 [D, H, W], the dataset's label values."""
    locations: dict[str, np.ndarray | None]
    """Per channel, int32 [N, 3] (z, y, x) foreground voxels (subsampled); None for an ignored channel."""
    meta: dict[str, Any]
    """The manifest entry (see `ccq.data.cache.PreparedDataset`)."""


def normalize_intensity(hu: np.ndarray, preprocessing: PreprocessingConfig) -> np.ndarray:
    """Clip HU to the window and scale (official: [-325, 325] / 325 -> [-1, 1]); float32, in place."""
    out = np.asarray(hu, dtype=np.float32)
    np.clip(out, preprocessing.hu_min, preprocessing.hu_max, out=out)
    out /= np.float32(preprocessing.hu_scale)
    return out


def preprocess_image(
    array: np.ndarray,
    affine: np.ndarray,
    preprocessing: PreprocessingConfig,
    *,
    where: str = "image",
    grid: Grid | None = None,
) -> tuple[np.ndarray, CanonicalInfo]:
    """A CT in file voxel order (HU) -> (network-ready float32 [D, H, W] on ``grid``, how to map results back).

    ``grid``: the working grid (`ccq.data.grid`; default the preprocessing's default grid). Its size is checked
    before resampling (`ccq.limits.check_grid`; ``where`` names the image)."""
    grid = preprocessing.default_grid if grid is None else grid
    canon, info = geometry.to_canonical(np.asarray(array, dtype=np.float32), affine)
    working.check_size(info, grid, where)
    resampled = working.to_working(canon, info, grid, order=preprocessing.image_interpolation_order)
    return normalize_intensity(resampled, preprocessing), info


def _read(volume: Volume, *, what: str, case: str, as_float: bool) -> tuple[np.ndarray, np.ndarray, str]:
    if isinstance(volume, str | Path):
        array, affine = geometry.load_nifti(volume, what=what, case=case, as_float=as_float)
        return array, affine, str(volume)
    array, affine = volume
    array = np.asarray(array)
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise CCQError(f"case {case}: {what} array has shape {array.shape}; expected a 3D volume")
    return (array.astype(np.float32) if as_float else array), np.asarray(affine, dtype=np.float64), "<array>"


def _check_image(image: np.ndarray, case: str, source: str) -> tuple[float, float]:
    lo, hi = float(np.min(image)), float(np.max(image))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = int(np.count_nonzero(~np.isfinite(image)))
        raise CCQError(f"case {case}: image {source} has {bad} NaN/inf voxels; expected finite HU values")
    if lo == hi:
        raise CCQError(f"case {case}: image {source} is constant ({lo:g}); expected a CT with varying HU")
    return lo, hi


def _present_values(label: np.ndarray) -> np.ndarray:
    if label.dtype.kind in "ui" and label.size:
        lo, hi = int(label.min()), int(label.max())
        if hi - lo < 65536:  # bincount is ~20x faster than np.unique on a 512x512x200 label map
            flat = label.ravel().astype(np.int64) - lo if lo else label.ravel()
            return np.flatnonzero(np.bincount(flat)) + lo
    return np.unique(label)


def _label_values(label: np.ndarray, task: TaskSpec, case: str, source: str) -> np.ndarray:
    """The label map as uint8 after checking every value is an integer the task declares."""
    values = _present_values(label)
    if not np.all(np.isfinite(values)) or not np.all(np.equal(np.round(values), values)):
        odd = [float(v) for v in values if not (np.isfinite(v) and float(v).is_integer())][:3]
        raise CCQError(f"case {case}: label {source} has non-integer values {odd}; expected label values")
    task.check_label_values(values, where=f"case {case}: label {source}")
    if max(task.labels) > 255:
        raise CCQError(
            f"case {case}: task {task.name!r} declares label value {max(task.labels)} > 255; "
            "expected values up to 255 (the prepared cache stores uint8)"
        )
    return label.astype(np.uint8, copy=False)


def channel_lut(values: Sequence[int] | None) -> np.ndarray | None:
    """A 256-entry table: ``lut[label]`` is the channel mask (None for an ignored channel)."""
    if values is None:
        return None
    lut = np.zeros(256, dtype=bool)
    lut[list(values)] = True
    return lut


def _foreground(mask: np.ndarray, max_locations: int, seed: int) -> tuple[int, list | None, np.ndarray]:
    """(voxel count, end-exclusive bbox or None, int32 [N, 3] subsample of foreground voxels)."""
    flat = np.flatnonzero(mask)
    if flat.size == 0:
        return 0, None, np.zeros((0, 3), dtype=np.int32)
    zyx = np.stack(np.unravel_index(flat, mask.shape), axis=1)
    bbox = [[int(lo), int(hi) + 1] for lo, hi in zip(zyx.min(axis=0), zyx.max(axis=0), strict=True)]
    if flat.size > max_locations:
        keep = np.sort(np.random.default_rng(seed).choice(flat.size, max_locations, replace=False))
        zyx = zyx[keep]
    return int(flat.size), bbox, zyx.astype(np.int32)


def prepare_case(
    image: Volume,
    label: Volume | None,
    task: TaskSpec,
    preprocessing: PreprocessingConfig,
    *,
    case_id: str = "case",
    split: str = "train",
    max_locations: int = MAX_LOCATIONS,
) -> PreparedCase:
    """Validate, reorient, resample and window one case. Every input problem is a one-line CCQError naming it.

    ``label`` None gives an all-background label map (e.g. for an image-only case).
    """
    img, img_affine, img_src = _read(image, what="image", case=case_id, as_float=True)
    lo, hi = _check_image(img, case_id, img_src)
    if label is not None:
        lab, lab_affine, lab_src = _read(label, what="label", case=case_id, as_float=False)
        geometry.check_same_grid(img.shape, img_affine, lab.shape, lab_affine, case=case_id)
        lab = _label_values(lab, task, case_id, lab_src)
    else:
        lab, lab_src = np.zeros(img.shape, dtype=np.uint8), None

    grid = preprocessing.grid(task)  # the task's working grid: the default one unless the preprocessing gives its own
    prepared, info = preprocess_image(
        img, img_affine, preprocessing, where=f"case {case_id}: image {img_src}", grid=grid
    )
    del img
    lab_canon, _ = geometry.to_canonical(lab, img_affine)
    lab_prepared = working.to_working(lab_canon, info, grid, order=0, shape=prepared.shape)

    seed = zlib.crc32(f"{task.name}/{case_id}".encode())
    voxel_ml = float(np.prod(grid.spacing)) / 1000.0
    counts: dict[str, int | None] = {}
    bboxes: dict[str, list | None] = {}
    locations: dict[str, np.ndarray | None] = {}
    for channel in CHANNELS:
        lut = channel_lut(getattr(task, channel))
        if lut is None:
            counts[channel] = bboxes[channel] = locations[channel] = None
            continue
        counts[channel], bboxes[channel], locations[channel] = _foreground(lut[lab_prepared], max_locations, seed)

    shape = [int(n) for n in prepared.shape]
    meta: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "id": case_id,
        "task": task.name,
        "task_id": task.id,
        "split": split,
        "path": case_relpath(task.name, case_id),
        "source": {"image": img_src, "label": lab_src},
        "original_shape": list(info.original_shape),
        "original_spacing": list(info.original_spacing),
        "original_affine": [list(r) for r in info.original_affine],
        "canonical": info.to_dict(),
        "grid": grid.to_dict(),
        "spacing": list(grid.spacing),
        "shape": shape,
        "affine": working.working_affine(info, grid).round(6).tolist(),
        # No cropping: the whole prepared grid is kept (random crops need the context); recorded for readers.
        "crop_box": [[0, n] for n in shape],
        "image_dtype": str(prepared.dtype),
        "hu_range": [lo, hi],
        "channels": {c: (None if getattr(task, c) is None else list(getattr(task, c))) for c in CHANNELS},
        "foreground_voxels": counts,
        "foreground_ml": {c: None if n is None else round(n * voxel_ml, 4) for c, n in counts.items()},
        "foreground_bbox": bboxes,
        "foreground_locations": {c: None if v is None else len(v) for c, v in locations.items()},
    }
    return PreparedCase(image=prepared, label=lab_prepared, locations=locations, meta=meta)
