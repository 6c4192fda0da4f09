"""Surface distances and the 95th-percentile Hausdorff distance (HD95) between two binary masks.

The *surface* of a mask is the mask minus its erosion by the 6-neighbourhood (connectivity 1), with everything
outside the array counting as background (a mask that touches the array's edge has surface there). That is the
surface both reference libraries use: MedPy's ``hd95`` (``result ^ binary_erosion(result, connectivity-1
structure)``) and MONAI's ``get_mask_edges`` (scipy's ``binary_erosion`` with its default, the same structure).
Every surface voxel of one mask gets the Euclidean distance (in the units of ``spacing``) to the nearest surface
voxel of the other, and HD95 is a 95th percentile (linear interpolation, as numpy and torch compute it) of those:

* `hd95_pooled` — MedPy's ``hd95``: the percentile of both directions' distances pooled together (the paper's
  "mots" definition, used with spacing (1, 1, 1) on the working grid);
* `hd95_max_directed` — MONAI's ``compute_hausdorff_distance(percentile=95)``: the larger of the two directed
  percentiles (the "standard" definition, in mm on the native grid).

Speed: only the bounding box of the union of the masks (+1 voxel) can hold surface, so everything after finding
that box runs on the crop. The nearest distances are exact either way they are computed: a Euclidean distance
transform of the crop (``scipy.ndimage.distance_transform_edt`` with ``sampling=spacing``; its cost grows with the
crop's volume) or a k-d tree over the surface voxels' coordinates (its cost grows with the number of surface
voxels). ``method="auto"`` picks the cheaper one from the sizes (see `choose_method`): a large, compact organ
has few surface voxels in a big box (k-d tree), a thin tangled structure many (distance transform).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import scipy.ndimage as ndi
from scipy.spatial import cKDTree

from ccq.errors import CCQError
from ccq.evaluation.metrics import as_mask

Method = Literal["auto", "edt", "kdtree"]
METHODS: tuple[str, ...] = ("auto", "edt", "kdtree")
PERCENTILE = 95.0

# Relative costs measured on a 2-core x86-64 CPU (benchmarks/eval_speed.py --calibrate prints them): one distance
# transform costs about EDT_COST per voxel of the crop; a k-d tree build plus query about KDTREE_COST per surface
# voxel and level (log2 of the number of surface voxels). Only their ratio matters.
EDT_COST = 0.23
KDTREE_COST = 0.15


def _spacing(spacing: float | Sequence[float] | None, ndim: int) -> np.ndarray:
    if spacing is None:
        return np.ones(ndim)
    values = np.asarray(spacing, dtype=np.float64)
    if values.ndim == 0:  # one number: isotropic
        values = np.full(ndim, float(values))
    if values.shape != (ndim,) or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise CCQError(f"spacing {np.asarray(spacing).tolist()}: expected {ndim} positive numbers (one per axis)")
    return values


def union_box(a: np.ndarray, b: np.ndarray, margin: int = 1) -> tuple[slice, ...] | None:
    """The bounding box of ``a | b`` grown by ``margin`` voxels (clipped to the array); None when both are empty."""
    union = a | b
    box = []
    for axis in range(union.ndim):
        other = tuple(i for i in range(union.ndim) if i != axis)
        hit = np.flatnonzero(union.any(axis=other)) if other else np.flatnonzero(union)
        if hit.size == 0:
            return None
        box.append(slice(max(int(hit[0]) - margin, 0), min(int(hit[-1]) + 1 + margin, union.shape[axis])))
    return tuple(box)


def surface_mask(mask: np.ndarray) -> np.ndarray:
    """The surface voxels of a bool mask: ``mask ^ binary_erosion(mask)`` with the connectivity-1 structure and
    the outside of the array as background (six shifted ANDs instead of a generic erosion: same result, faster)."""
    mask = np.asarray(mask, dtype=bool)
    padded = np.pad(mask, 1)  # the zero layer is the "outside is background" rule
    inner = (slice(1, -1),) * mask.ndim
    core = padded[inner].copy()
    for axis in range(mask.ndim):
        for start in (0, 2):
            shifted = list(inner)
            shifted[axis] = slice(start, start + mask.shape[axis])
            core &= padded[tuple(shifted)]
    return mask & ~core


def choose_method(crop_voxels: int, surface_voxels: int) -> str:
    """The method "edt" or "kdtree", whichever the cost model (`EDT_COST`, `KDTREE_COST`) expects to be faster."""
    edt = 2 * EDT_COST * crop_voxels  # two transforms, one per direction
    kdtree = KDTREE_COST * surface_voxels * math.log2(max(surface_voxels, 2))
    return "kdtree" if kdtree < edt else "edt"


def surface_distances(
    a, b, spacing: float | Sequence[float] | None = None, *, method: Method = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """(distances from each surface voxel of ``a`` to the surface of ``b``, and from ``b`` to ``a``), float64,
    in the units of ``spacing`` (default 1 per axis), surface voxels in C order.

    Both masks must have the same shape and at least one voxel each (CCQError otherwise).
    """
    a, b = as_mask(a, "mask a"), as_mask(b, "mask b")
    if a.shape != b.shape:
        raise CCQError(f"surface distances: mask shapes {a.shape} and {b.shape} differ; expected the same shape")
    if method not in METHODS:
        raise CCQError(f"surface distance method {method!r}: expected one of {', '.join(METHODS)}")
    sampling = _spacing(spacing, a.ndim)
    box = union_box(a, b)
    if box is None or not a[box].any() or not b[box].any():
        raise CCQError("surface distances: a mask is empty; both masks need at least one voxel")
    sa, sb = surface_mask(a[box]), surface_mask(b[box])
    if method == "auto":
        method = choose_method(sa.size, int(np.count_nonzero(sa)) + int(np.count_nonzero(sb)))
    if method == "edt":
        # The transform measures the distance to the nearest zero: the other mask's surface voxels.
        a_to_b = ndi.distance_transform_edt(~sb, sampling=sampling)[sa]
        b_to_a = ndi.distance_transform_edt(~sa, sampling=sampling)[sb]
        return a_to_b, b_to_a
    pa = np.argwhere(sa) * sampling
    pb = np.argwhere(sb) * sampling
    return cKDTree(pb).query(pa, k=1)[0], cKDTree(pa).query(pb, k=1)[0]


def hd95_pooled(a, b, spacing: float | Sequence[float] | None = None, *, method: Method = "auto") -> float:
    """MedPy's ``hd95``: 95th percentile of both directions' surface distances pooled; NaN if a mask is empty."""
    both = _distances_unless_empty(a, b, spacing, method)
    return math.nan if both is None else float(np.percentile(np.concatenate(both), PERCENTILE))


def hd95_max_directed(a, b, spacing: float | Sequence[float] | None = None, *, method: Method = "auto") -> float:
    """MONAI's ``compute_hausdorff_distance(percentile=95)``: the larger of the two directed 95th percentiles;
    NaN if a mask is empty (MONAI gives inf or NaN there)."""
    both = _distances_unless_empty(a, b, spacing, method)
    return math.nan if both is None else float(max(np.percentile(d, PERCENTILE) for d in both))


def _distances_unless_empty(a, b, spacing, method: Method) -> tuple[np.ndarray, np.ndarray] | None:
    """`surface_distances`, or None where a mask is empty (the HD is then undefined); other errors propagate."""
    try:
        return surface_distances(a, b, spacing, method=method)
    except CCQError:
        if _any_empty(a, b):
            return None
        raise


def _any_empty(a, b) -> bool:
    a, b = as_mask(a, "mask a"), as_mask(b, "mask b")
    return a.shape == b.shape and (not a.any() or not b.any())
