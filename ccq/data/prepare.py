"""Preparing one case: validate a CT and its label map, reorient, resample, window, crop, find the foreground.

Memory stays bounded on the longest scans: the CT is read as stored (int16 for most: 2 bytes per voxel, never a
float32 copy of it), reoriented as a view and resampled slab by slab (`ccq.data.geometry.resample_slabs`) into
int16 HU, rounded to integers (as the official code stores them) and clipped to the HU window; the window's
scaling is applied when a patch is read (`ccq.data.cache`). The case is cropped to its body: the box of the voxels
above the window's floor or labeled. Every voxel outside that box windows to the floor, exactly what a reader
fills it with, so the crop loses nothing (no margin is needed for that).

The collection-level runner (enumeration, workers, manifest) is :mod:`ccq.data.prepare_run`; the geometry is
:mod:`ccq.data.geometry`; the on-disk format is :mod:`ccq.data.cache`. Inference reuses `preprocess_image`
and `ccq.data.geometry.to_original_grid` so that a CT is treated exactly as the training cases were.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccq.data import geometry, nifti_file
from ccq.data import grid as working
from ccq.data.cache import FORMAT_VERSION, case_relpath
from ccq.data.chunked import CODEC, DEFAULT_CHUNKS
from ccq.data.collection import CHANNELS, TaskSpec
from ccq.data.geometry import CanonicalInfo
from ccq.data.grid import Grid
from ccq.data.preprocessing import PreprocessingConfig
from ccq.errors import CCQError

MAX_LOCATIONS = 10_000
"""Foreground voxels stored per channel for class-location sampling (a random subsample, nnU-Net style)."""

Volume = str | Path | tuple[np.ndarray, np.ndarray]
"""A NIfTI path, or an (array in file voxel order, 4x4 voxel -> RAS mm affine) pair."""


INT16_RANGE = (-32768, 32767)


@dataclass(frozen=True)
class PreparedCase:
    """One case on the prepared grid, ready for `ccq.data.cache.write_case` (which crops it to ``crop_box``)."""

    hu: np.ndarray
    """int16 [D, H, W], the whole working grid: HU rounded to integers and clipped to the window."""
    label: np.ndarray
    """uint8 [D, H, W], the dataset's label values."""
    locations: dict[str, np.ndarray | None]
    """Per channel, int32 [N, 3] (z, y, x) foreground voxels (subsampled); None for an ignored channel."""
    meta: dict[str, Any]
    """The manifest entry (see `ccq.data.cache.PreparedDataset`); ``crop_box`` is the stored box."""
    preprocessing: PreprocessingConfig

    @property
    def image(self) -> np.ndarray:
        """float32 [D, H, W], windowed and scaled: what training reads (a new array)."""
        return normalize_intensity(self.hu, self.preprocessing)


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
    array, affine = _array_volume(volume, what=what, case=case)
    return (array.astype(np.float32) if as_float else array), affine, "<array>"


def _array_volume(volume: tuple[np.ndarray, np.ndarray], *, what: str, case: str) -> tuple[np.ndarray, np.ndarray]:
    array, affine = volume
    array = np.asarray(array)
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise CCQError(f"case {case}: {what} array has shape {array.shape}; expected a 3D volume")
    return array, np.asarray(affine, dtype=np.float64)


def _grid_of(volume: Volume, case: str) -> tuple[tuple[int, ...], np.ndarray]:
    """(shape, affine) of a label, from its header alone for a file."""
    if isinstance(volume, str | Path):
        header = nifti_file.open_header(volume, what="label", case=case)
        return header.shape, np.asarray(header.image.affine, dtype=np.float64)
    array, affine = _array_volume(volume, what="label", case=case)
    return array.shape, affine


Scaling = Callable[[np.ndarray], np.ndarray]


def _read_stored(volume: Volume, case: str) -> tuple[np.ndarray, np.ndarray, str, Scaling]:
    """(voxels as stored, affine, source, their scaling to float32 HU): the image without a float32 copy of it."""
    if isinstance(volume, str | Path):
        header = nifti_file.open_header(volume, what="image", case=case)
        nifti_file.check_size(header, as_float=False)
        array = nifti_file.read_stored(header)
        return array, np.asarray(header.image.affine, np.float64), str(volume), nifti_file.float32_scaling(header)
    array, affine = _array_volume(volume, what="image", case=case)
    return array, affine, "<array>", lambda part: np.asarray(part, dtype=np.float32)


def _check_image(image: np.ndarray, case: str, source: str, scaling: Scaling | None = None) -> tuple[float, float]:
    """(lowest, highest) HU; CCQError for NaN/inf or a constant image. ``scaling``: stored values -> HU."""
    ends = np.array([np.min(image), np.max(image)], dtype=image.dtype)
    if scaling is not None and np.all(np.isfinite(ends)):
        ends = np.sort(scaling(ends.reshape(1, 1, 2)).ravel())
    lo, hi = float(ends[0]), float(ends[-1])
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = _count_not_finite(image, scaling)
        raise CCQError(f"case {case}: image {source} has {bad} NaN/inf voxels; expected finite HU values")
    if lo == hi:
        raise CCQError(f"case {case}: image {source} is constant ({lo:g}); expected a CT with varying HU")
    return lo, hi


def _count_not_finite(image: np.ndarray, scaling: Scaling | None) -> int:
    count = 0
    for part in np.array_split(image, max(1, image.shape[0] // 16), axis=0):  # bounded temporaries
        values = part if scaling is None else scaling(part)
        count += int(np.count_nonzero(~np.isfinite(values)))
    return count


def _check_window(preprocessing: PreprocessingConfig) -> None:
    """CCQError if the HU window does not fit int16 (the stored values)."""
    if not (INT16_RANGE[0] <= preprocessing.hu_min and preprocessing.hu_max <= INT16_RANGE[1]):
        raise CCQError(
            f"preprocessing HU window [{preprocessing.hu_min:g}, {preprocessing.hu_max:g}]: expected within "
            f"[{INT16_RANGE[0]}, {INT16_RANGE[1]}] (the prepared cache stores int16 HU)"
        )


def _resample_image(
    stored: np.ndarray,
    affine: np.ndarray,
    scaling: Scaling,
    preprocessing: PreprocessingConfig,
    grid: Grid,
    where: str,
) -> tuple[np.ndarray, CanonicalInfo, np.ndarray, np.ndarray]:
    """(int16 HU on the working grid ``grid`` [D, H, W], canonical info, D rows and (H, W) plane above the
    window's floor). The stored voxels are only viewed (reoriented without a copy) and resampled slab by slab."""
    canon, info = geometry.canonical_view(stored, affine)
    working.check_size(info, grid, where)
    src = working.oriented(info, grid)
    view = working.orient(canon, grid.axes)
    shape = geometry.target_shape(src.shape, src.spacing, grid.spacing)
    hu = np.empty(shape, dtype=np.int16)
    rows = np.zeros(shape[0], dtype=bool)
    plane = np.zeros(shape[1:], dtype=bool)
    order = preprocessing.image_interpolation_order
    for z0, slab in geometry.resample_slabs(view, src.spacing, grid.spacing, order=order, to_float=scaling):
        above = slab > preprocessing.hu_min  # not air: windows above the floor
        np.clip(slab, preprocessing.hu_min, preprocessing.hu_max, out=slab)
        hu[z0 : z0 + len(slab)] = np.rint(slab, out=slab)
        rows[z0 : z0 + len(slab)] = above.any(axis=(1, 2))
        plane |= above.any(axis=0)
    return hu, info, rows, plane


def crop_box(rows: np.ndarray, plane: np.ndarray, label: np.ndarray) -> list[list[int]]:
    """The box (end-exclusive, (z, y, x)) of the voxels above the window's floor (``rows``/``plane``: their
    projections) or labeled; one voxel at the origin when there is none (an all-air, unlabeled case)."""
    for z0 in range(0, label.shape[0], 64):  # the label's projections in slabs: no full-size temporary
        labeled = label[z0 : z0 + 64] != 0
        rows[z0 : z0 + 64] |= labeled.any(axis=(1, 2))
        plane |= labeled.any(axis=0)
    if not rows.any():
        return [[0, 1], [0, 1], [0, 1]]
    ends = [np.flatnonzero(mask) for mask in (rows, plane.any(axis=1), plane.any(axis=0))]
    return [[int(e[0]), int(e[-1]) + 1] for e in ends]


def _present_values(label: np.ndarray) -> np.ndarray:
    if label.dtype.kind in "ui" and label.size:
        lo, hi = int(label.min()), int(label.max())
        if hi - lo < 65536:  # bincount is ~20x faster than np.unique on a 512x512x200 label map
            # By slabs along the axis slowest in memory: bincount copies its input as int64 (8 bytes per voxel).
            axis = int(np.argmax(np.abs(label.strides)))
            step = max(1, (1 << 22) * label.shape[axis] // label.size)
            counts = np.zeros(hi - lo + 1, dtype=np.int64)
            for a in range(0, label.shape[axis], step):
                part = label[(slice(None),) * axis + (slice(a, a + step),)]
                counts += np.bincount(part.ravel(order="K").astype(np.int64) - lo, minlength=hi - lo + 1)
            return np.flatnonzero(counts) + lo
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


BASE_MEMORY = 550 * 2**20
"""Resident memory of a worker besides its case (Python, numpy, torch, buffers), from ``ccq prepare`` runs."""


def estimate_memory(
    image: Path, label: Path | None, preprocessing: PreprocessingConfig, grid: Grid | None = None
) -> int:
    """Peak bytes `prepare_case` needs for this case on ``grid`` (default: the preprocessing's default grid), from
    the headers alone (no voxel is read).

    The image phase holds the image as stored, int16 HU on the working grid of W voxels (2 W) and the float32
    slabs of `ccq.data.geometry.resample_slabs`; the label phase (the image freed) the HU, the label as stored and
    as uint8, and up to ~3 W while it is resampled and its foreground found. Set against ``ccq prepare --workers
    1`` on 512 x 512 x 300 and x 1000 CTs (BENCHMARKS.md): 20-30% above the measured peaks.
    """
    image_header = nifti_file.open_header(image, what="image")
    label_bytes = 0
    if label is not None:
        header = nifti_file.open_header(label, what="label")
        itemsize = header.image.get_data_dtype().itemsize
        label_bytes = math.prod(header.shape) * (itemsize + (1 if itemsize > 1 else 0))
    dummy = np.broadcast_to(np.zeros((), np.int8), image_header.shape)  # a view of one byte: the geometry only
    _, info = geometry.canonical_view(dummy, np.asarray(image_header.image.affine, np.float64))
    src = working.oriented(info, preprocessing.default_grid if grid is None else grid)
    out = geometry.target_shape(src.shape, src.spacing, (preprocessing.default_grid if grid is None else grid).spacing)
    voxels = math.prod(out)
    slab_slices = 32 * src.shape[0] / out[0] + 40  # input slices of one output slab (`resample_slabs`)
    slabs = 2 * 4 * slab_slices * src.shape[1] * src.shape[2]
    stored = math.prod(image_header.shape) * image_header.image.get_data_dtype().itemsize
    return int(BASE_MEMORY + max(stored + 2 * voxels + slabs, 2 * voxels + label_bytes + 3 * voxels))


def task_foreground(
    task: TaskSpec, label: np.ndarray, case_id: str, spacing: Sequence[float], max_locations: int = MAX_LOCATIONS
) -> tuple[dict[str, Any], dict[str, np.ndarray | None]]:
    """(the manifest's per-channel keys, per-channel foreground locations) of ``task`` from a prepared label map
    [D, H, W] on a grid of ``spacing`` mm: ``channels``, ``foreground_voxels``, ``foreground_ml``,
    ``foreground_bbox`` and ``foreground_locations`` (None for a channel the task does not label)."""
    seed = zlib.crc32(f"{task.name}/{case_id}".encode())
    voxel_ml = float(np.prod(spacing)) / 1000.0
    counts: dict[str, int | None] = {}
    bboxes: dict[str, list | None] = {}
    locations: dict[str, np.ndarray | None] = {}
    for channel in CHANNELS:
        lut = channel_lut(getattr(task, channel))
        if lut is None:
            counts[channel] = bboxes[channel] = locations[channel] = None
            continue
        counts[channel], bboxes[channel], locations[channel] = _foreground(lut[label], max_locations, seed)
    fields = {
        "channels": {c: (None if getattr(task, c) is None else list(getattr(task, c))) for c in CHANNELS},
        "foreground_voxels": counts,
        "foreground_ml": {c: None if n is None else round(n * voxel_ml, 4) for c, n in counts.items()},
        "foreground_bbox": bboxes,
        "foreground_locations": {c: None if v is None else len(v) for c, v in locations.items()},
    }
    return fields, locations


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
    _check_window(preprocessing)
    stored, img_affine, img_src, scaling = _read_stored(image, case_id)
    lo, hi = _check_image(stored, case_id, img_src, scaling)
    if label is not None:  # the grids first (headers only): the label's voxels are read once the image is done
        lab_shape, lab_affine = _grid_of(label, case_id)
        geometry.check_same_grid(stored.shape, img_affine, lab_shape, lab_affine, case=case_id)

    where = f"case {case_id}: image {img_src}"
    grid = preprocessing.grid(task)  # the task's working grid: the default one unless the preprocessing gives its own
    hu, info, rows, plane = _resample_image(stored, img_affine, scaling, preprocessing, grid, where)
    del stored
    if label is not None:
        lab, _, lab_src = _read(label, what="label", case=case_id, as_float=False)
        lab = _label_values(lab, task, case_id, lab_src)
    else:
        lab, lab_src = np.zeros(info.original_shape, dtype=np.uint8), None
    lab_canon, _ = geometry.canonical_view(lab, img_affine)
    lab_prepared = working.to_working(lab_canon, info, grid, order=0, shape=hu.shape)
    del lab, lab_canon
    box = crop_box(rows, plane, lab_prepared)

    foreground, locations = task_foreground(task, lab_prepared, case_id, grid.spacing, max_locations)

    shape = [int(n) for n in hu.shape]
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
        # The stored box (see the module docstring); readers fill the rest with the window's floor and label 0.
        "crop_box": box,
        "image_dtype": "int16",
        "storage": {"codec": CODEC, "chunks": list(DEFAULT_CHUNKS)},
        "hu_range": [lo, hi],
        **foreground,
    }
    return PreparedCase(hu=hu, label=lab_prepared, locations=locations, meta=meta, preprocessing=preprocessing)
