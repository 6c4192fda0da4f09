"""Reading a case's prediction and ground truth onto the grid its scores are computed on.

The grid depends on the definition (`ccq.evaluation.scoring`):

* "standard": the files' own (native) grid, distances in mm with the voxel spacing of the header;
* "mots": both label maps reoriented and resampled (nearest neighbour, exactly as ``ccq prepare`` resamples
  labels: `ccq.data.grid.to_working`) to the task's working grid, distances in its voxels;
* against a prepared folder: the prediction resampled onto the prepared label's grid (the native label is not
  stored), distances in its voxels ("mots") or in mm at the working spacing ("standard").

Only the bounding box of the voxels in a channel the task scores, in either map (+1 voxel, or the array's edge),
can change a score, so both maps are cropped to it right after reading; for "mots" only that box is resampled.
Scores are exactly those of the whole volumes (the surface rule treats the outside of the array as background,
and the margin holds no scored voxel), at a fraction of the cost: a 512x512x160 volume shrinks to one organ's box.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

import ccq.limits as limits
from ccq.data import geometry
from ccq.data import grid as working
from ccq.data.collection import TaskSpec
from ccq.data.grid import Grid
from ccq.errors import CCQError
from ccq.evaluation.cases import CaseSource
from ccq.evaluation.surface import union_box

_LOOKUP_LIMIT = 65536


@dataclass
class LoadedCase:
    """A case's two label maps on the evaluation grid (cropped), and what its distances are measured in."""

    pred: np.ndarray
    gt: np.ndarray
    spacing: tuple[float, ...]
    """Voxel size per axis for the HD: (1, 1, 1) for "mots", mm for "standard"."""
    grid: str
    """"native" (the files' own grid) or "working" (the working spacing, or a prepared folder's grid)."""
    native_pred: np.ndarray
    """The prediction as stored (file voxel order, whole volume), for overlays."""
    affine: np.ndarray
    """The prediction's voxel -> RAS mm affine."""
    native_gt: np.ndarray | None = None
    """The ground truth as stored, when it was read from a NIfTI file."""
    working_gt: np.ndarray | None = None
    """The whole prepared label (working grid), when the ground truth is a prepared folder."""


# ------------------------------------------------------------------------------------------------ grids


def check_same_grid(
    case: str, pred_name: str, pred_shape, pred_affine, gt_name: str, gt_shape, gt_affine, what: str = "ground truth"
) -> None:
    """Refuse a prediction whose grid is not the ground truth's (shape, or a corner off by > 0.1 voxel)."""
    if tuple(pred_shape) != tuple(gt_shape):
        raise CCQError(
            f"case {case}: prediction {pred_name} has shape {tuple(pred_shape)} but {what} {gt_name} has shape "
            f"{tuple(gt_shape)}; expected the same grid"
        )
    try:
        err = geometry.grid_offset_voxels(gt_affine, pred_affine, pred_shape)
    except np.linalg.LinAlgError:
        err = math.inf
    if not math.isfinite(err) or err > geometry.AFFINE_TOLERANCE_VOXELS:
        raise CCQError(
            f"case {case}: prediction {pred_name} and {what} {gt_name} (both {tuple(pred_shape)}) have affines "
            f"that differ by {err:.3g} voxels; expected the same grid (tolerance "
            f"{geometry.AFFINE_TOLERANCE_VOXELS} voxel)"
        )


def _labeled_box(*labels: np.ndarray, margin: int) -> tuple[slice, ...] | None:
    """The box of the voxels labeled (nonzero) in any of one or two same-shape label maps, + ``margin``."""
    first = labels[0] != 0
    return union_box(first, labels[1] != 0 if len(labels) > 1 else first, margin=margin)


def resample_cropped(
    labels: Sequence[np.ndarray],
    spacing: Sequence[float],
    new_spacing: Sequence[float],
    *,
    shape: Sequence[int] | None = None,
    mask: np.ndarray | None = None,
    extra: tuple[slice, ...] | None = None,
) -> tuple[list[np.ndarray], tuple[slice, ...] | None]:
    """Nearest-neighbour resampling of same-grid label maps, restricted to the target box around the voxels that
    matter (+1 voxel); equal to `ccq.data.geometry.resample(order=0)` followed by that crop.

    ``mask``: the source voxels that matter (default: those labeled, nonzero, in any map); ``shape``: the target
    shape (default `geometry.target_shape`); ``extra``: a box in target coordinates that the crop must also
    cover. Returns the crops and the box (None when nothing matters).
    """
    in_shape = labels[0].shape
    out_shape = geometry.target_shape(in_shape, spacing, new_spacing) if shape is None else tuple(shape)
    source_box = _labeled_box(*labels, margin=0) if mask is None else union_box(mask, mask, margin=0)
    if source_box is None and extra is None:
        return [np.zeros((1, 1, 1), dtype=label.dtype) for label in labels], None
    indices, box = [], []
    for axis, (n_in, n_out) in enumerate(zip(in_shape, out_shape, strict=True)):
        idx = geometry.nearest_indices(n_in, n_out, float(new_spacing[axis]) / float(spacing[axis]))
        lo, hi = n_out, 0
        if source_box is not None:  # the target voxels that read from inside the source box (idx is sorted)
            lo = int(np.searchsorted(idx, source_box[axis].start, "left"))
            hi = int(np.searchsorted(idx, source_box[axis].stop, "left"))
        if extra is not None:
            lo, hi = min(lo, extra[axis].start), max(hi, extra[axis].stop)
        lo, hi = max(min(lo, hi) - 1, 0), min(max(hi, lo) + 1, n_out)
        box.append(slice(lo, hi))
        indices.append(idx[lo:hi])
    crops = []
    for label in labels:
        for axis, idx in enumerate(indices):
            label = np.take(label, idx, axis=axis)
        crops.append(np.ascontiguousarray(label))
    return crops, tuple(box)


# ------------------------------------------------------------------------------------------------ labels


# NIfTI arrays come in Fortran order: anything that flattens them in C order (ravel, np.isin) copies the whole
# volume first. Table lookups keep the memory order and cost one pass.
def _lookup_size(label: np.ndarray) -> int | None:
    """Entries a lookup table over ``label``'s values needs; None when they are not small non-negative integers."""
    if label.dtype.kind not in "ui" or label.size == 0:
        return None
    lo, hi = int(label.min()), int(label.max())
    return hi + 1 if lo >= 0 and hi < _LOOKUP_LIMIT else None


def _table(values, size: int) -> np.ndarray:
    table = np.zeros(size, dtype=bool)
    table[[v for v in values if 0 <= v < size]] = True
    return table


def check_labels(label: np.ndarray, task: TaskSpec, where: str) -> None:
    """CCQError (the task's own message) if ``label`` holds a value the task does not declare."""
    size = _lookup_size(label)
    if size is None:
        task.check_label_values(label, where=where)
        return
    known = _table(task.labels, size)[label]
    if not known.all():
        task.check_label_values(np.unique(label[~known]), where=where)


def scored_voxels(task: TaskSpec, label: np.ndarray) -> np.ndarray:
    """Bool mask of the voxels in any channel the task labels (organ or tumor values): all a score depends on."""
    values = [*(task.organ or ()), *(task.tumor or ())]
    size = _lookup_size(label)
    return np.isin(label, values) if size is None else _table(values, size)[label]


def channel_masks(task: TaskSpec, label: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(organ, tumor) bool masks of a checked label map, as `TaskSpec.channel_targets` (None = not labeled)."""
    size = _lookup_size(label)
    if size is None:
        return task.channel_targets(label, check=False)
    organ = None if task.organ is None else _table(task.organ, size)[label]
    tumor = None if task.tumor is None else _table(task.tumor, size)[label]
    return organ, tumor


def _read_label(path, case: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    array, affine = geometry.load_nifti(path, what=what, case=case, as_float=False)
    if array.dtype.kind == "f":
        rounded = np.rint(array)
        if not np.array_equal(rounded, array):
            raise CCQError(f"case {case}: {what} {path} holds non-integer values; expected a label map")
        array = rounded.astype(np.int32)
    return array, affine


# ------------------------------------------------------------------------------------------------ cases


def load_case(source: CaseSource, definition: str, spacing: Sequence[float] | Grid | None) -> LoadedCase:
    """Read a case's prediction and ground truth onto the evaluation grid, cropped (see the module docstring).

    ``spacing``: the working grid of the "mots" definition: a `Grid`, or a spacing (z, y, x mm) on the canonical
    axes (a prepared folder has its own).
    """
    case, task = source.case_id, source.task
    pred, pred_affine = _read_label(source.pred, case, "prediction")
    if source.entry is not None:
        return _load_prepared(source, definition, pred, pred_affine)
    assert source.gt is not None
    gt, gt_affine = _read_label(source.gt, case, "ground truth")
    check_same_grid(case, str(source.pred), pred.shape, pred_affine, str(source.gt), gt.shape, gt_affine)
    check_labels(pred, task, f"case {case}: prediction {source.pred}")  # the whole maps, before any crop
    check_labels(gt, task, f"case {case}: ground truth {source.gt}")
    scored = scored_voxels(task, pred) | scored_voxels(task, gt)
    if definition == "standard":
        box = union_box(scored, scored, margin=1)
        p, g = (pred[box], gt[box]) if box is not None else (pred[:1, :1, :1] * 0, gt[:1, :1, :1] * 0)
        hd_spacing = tuple(float(v) for v in np.linalg.norm(np.asarray(gt_affine)[:3, :3], axis=0))
        return LoadedCase(p, g, hd_spacing, "native", native_pred=pred, affine=pred_affine, native_gt=gt)
    if spacing is None:
        raise CCQError("the mots definition needs the working spacing (z, y, x mm)")
    if isinstance(spacing, Grid):
        grid = spacing
        limits.check_spacing(grid.spacing, "the working grid of the mots definition", "spacing")
    else:
        grid = Grid(spacing=limits.check_spacing(spacing, "the working grid of the mots definition", "spacing"))
    # Both maps through the ground truth's affine: the grids agree within tolerance, and one affine keeps the two
    # resampled maps voxel for voxel aligned. Reoriented to the grid's axes, then resampled as `ccq prepare` does.
    canon_pred, info = geometry.to_canonical(pred, gt_affine)
    canon_gt, _ = geometry.to_canonical(gt, gt_affine)
    canon_scored, _ = geometry.to_canonical(scored, gt_affine)
    src = working.oriented(info, grid)
    limits.check_grid(src.shape, src.spacing, grid.spacing, f"case {case}: ground truth {source.gt}")
    (p, g), _ = resample_cropped(
        [working.orient(canon_pred, grid.axes), working.orient(canon_gt, grid.axes)], src.spacing, grid.spacing,
        mask=working.orient(canon_scored, grid.axes),
    )  # fmt: skip
    return LoadedCase(p, g, (1.0, 1.0, 1.0), "working", native_pred=pred, affine=pred_affine, native_gt=gt)


def _load_prepared(source: CaseSource, definition: str, pred: np.ndarray, pred_affine: np.ndarray) -> LoadedCase:
    entry, case = source.entry, source.case_id
    assert entry is not None and source.dataset is not None
    check_same_grid(case, str(source.pred), pred.shape, pred_affine, source.gt_name,
                    entry["original_shape"], entry["original_affine"], what="the prepared case's source")  # fmt: skip
    check_labels(pred, source.task, where=f"case {case}: prediction {source.pred}")
    gt = np.asarray(source.dataset.label(entry, mmap=True))  # the dataset's values, checked when prepared
    grid = working.entry_grid(entry)
    spacing = limits.check_spacing(grid.spacing, f"case {case}: prepared entry", "spacing")
    # Through the source's affine, as `ccq prepare` resampled the label: the same orientation and shape.
    canon_pred, info = geometry.to_canonical(pred, np.asarray(entry["original_affine"]))
    oriented_pred = working.orient(canon_pred, grid.axes)
    gt_scored = scored_voxels(source.task, gt)
    (p,), box = resample_cropped([oriented_pred], working.oriented(info, grid).spacing, spacing,
                                 shape=gt.shape, mask=scored_voxels(source.task, oriented_pred),
                                 extra=union_box(gt_scored, gt_scored, margin=0))  # fmt: skip
    g = np.ascontiguousarray(gt[box]) if box is not None else np.zeros((1, 1, 1), dtype=gt.dtype)
    hd_spacing = (1.0, 1.0, 1.0) if definition == "mots" else spacing
    return LoadedCase(p, g, hd_spacing, "working", native_pred=pred, affine=pred_affine, working_gt=gt)


def native_ground_truth(source: CaseSource, loaded: LoadedCase) -> np.ndarray:
    """The ground truth in the prediction's file voxel order (a prepared label is mapped back, nearest)."""
    if loaded.native_gt is not None:
        return loaded.native_gt
    assert source.entry is not None and loaded.working_gt is not None
    info = geometry.CanonicalInfo.from_dict(source.entry["canonical"])
    grid = working.entry_grid(source.entry)
    return working.to_input_grid(np.asarray(loaded.working_gt), info, grid, order=0)
