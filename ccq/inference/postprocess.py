"""Task-specific clean-up of the thresholded masks: the official CCQ rules (DESIGN §5) as a named preset.

The official evaluation (``postp_save.py`` of the authors' code) works on label maps on the 1.5 x 0.8 x 0.8 mm grid
with thresholds in voxels of that grid. Here each rule is data (`TaskRule`) with its thresholds in millilitres and
millimetres, applied on the output grid (the input's own voxels, whatever their size), so a rule means the same
thing on every scan:

* sizes: the official 50 voxels of 0.96 mm^3 -> 0.048 mL;
* distances between centroids, measured in world millimetres: the official distances are in voxel indices of the
  anisotropic working grid, converted with the geometric mean of its spacing (0.987 mm per voxel): kidney 200
  voxels -> 197 mm, hepatic vessel 138 -> 136 mm.

Connected components are face-connected (6 neighbours in 3D), as the official code's ``skimage.measure.label``
call with ``neighbors=4`` meant (that argument overrides ``connectivity``). The official lung rule also grows the
tumour with nearby components of the organ channel, which the lung dataset does not label (the network's output
there is untrained); that step is left out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.ndimage as ndi

from ccq.errors import CCQError

OFFICIAL_SPACING = (1.5, 0.8, 0.8)
_VOXEL_ML = float(np.prod(OFFICIAL_SPACING)) / 1000.0
_VOXEL_MM = float(np.prod(OFFICIAL_SPACING)) ** (1.0 / 3.0)


@dataclass(frozen=True)
class TaskRule:
    """One task's clean-up; the steps run in the order of the fields, each skipped when None / False."""

    largest_tumor_max_distance_mm: float | None = None
    """Drop the largest tumour component if its centroid is farther than this from the organ's (official kidney)."""
    organ_components: int | None = None
    """Keep the N largest organ components. For a task whose organ label includes its tumour (liver, kidney,
    pancreas) the components are those of organ + tumour, as in a label map."""
    tumor_within_organ: bool = False
    """Drop tumour voxels outside the (cleaned) organ."""
    tumor_components: int | None = None
    """Keep the N largest tumour components."""
    small_tumor_ml: float | None = None
    """Drop tumour components of at most this volume, unless there is only one."""
    tumor_max_distance_mm: float | None = None
    """Keep only tumour components whose centroid is within this distance of the organ's centroid (none if the
    organ is empty)."""

    def __post_init__(self) -> None:
        for name in ("organ_components", "tumor_components"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise CCQError(f"post-processing rule: {name}={value}; expected at least 1 (or None)")
        for name in ("largest_tumor_max_distance_mm", "small_tumor_ml", "tumor_max_distance_mm"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise CCQError(f"post-processing rule: {name}={value}; expected a positive number (or None)")

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()
                if v not in (None, False)}  # fmt: skip


_ORGAN_THEN_SMALL_TUMORS = TaskRule(organ_components=1, tumor_within_organ=True, small_tumor_ml=50 * _VOXEL_ML)

PRESETS: dict[str, Mapping[str, TaskRule]] = {
    "official": {
        "liver": _ORGAN_THEN_SMALL_TUMORS,
        "kidney": TaskRule(
            largest_tumor_max_distance_mm=200 * _VOXEL_MM, organ_components=2, tumor_within_organ=True,
            tumor_components=1,
        ),  # fmt: skip
        "hepatic_vessel": TaskRule(
            tumor_components=3, small_tumor_ml=50 * _VOXEL_ML, tumor_max_distance_mm=138 * _VOXEL_MM
        ),
        "pancreas": _ORGAN_THEN_SMALL_TUMORS,
        "colon": TaskRule(tumor_components=1),
        "lung": TaskRule(tumor_components=1),
        "spleen": TaskRule(organ_components=1),
    },
    "none": {},
}
"""Named post-processing presets: task name -> rule. A task without a rule is left as predicted."""


def get_rules(name: str) -> Mapping[str, TaskRule]:
    if name not in PRESETS:
        raise CCQError(f"post-processing {name!r}: expected one of {', '.join(PRESETS)}")
    return PRESETS[name]


# ------------------------------------------------------------------------------------------------- components


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels int32 of face-connected components, voxel count per label (index 0 = background))."""
    labels, _ = ndi.label(mask)
    return labels, np.bincount(labels.ravel())


def _keep_largest(mask: np.ndarray, n: int) -> np.ndarray:
    labels, sizes = _components(mask)
    if len(sizes) - 1 <= n:
        return mask
    # Stable order on ties (the lower label first) so the result never depends on the sort's whims.
    order = np.argsort(-sizes[1:], kind="stable")[:n] + 1
    keep = np.zeros(len(sizes), dtype=bool)
    keep[order] = True
    return keep[labels]


def _centroid_mm(mask: np.ndarray, affine: np.ndarray, offset: np.ndarray) -> np.ndarray | None:
    if not mask.any():
        return None
    centre = np.asarray(ndi.center_of_mass(mask), dtype=np.float64) + offset
    return affine[:3, :3] @ centre + affine[:3, 3]


def _bbox(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box holding every True voxel (components never reach outside it)."""
    if not mask.any():
        return None
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


# ------------------------------------------------------------------------------------------------------ apply


def apply_rule(
    rule: TaskRule,
    organ: np.ndarray | None,
    tumor: np.ndarray | None,
    affine: np.ndarray,
    *,
    organ_includes_tumor: bool,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Clean one task's (organ, tumour) bool masks ([X, Y, Z], the grid of ``affine``); None = a channel the
    task does not label. Returns new arrays (the inputs are not modified)."""
    present = [m for m in (organ, tumor) if m is not None]
    if not present:
        return organ, tumor
    union = present[0] if len(present) == 1 else present[0] | present[1]
    box = _bbox(union)
    if box is None:
        return organ, tumor
    offset = np.array([s.start for s in box], dtype=np.float64)
    o = None if organ is None else organ[box].copy()
    t = None if tumor is None else tumor[box].copy()
    # "Organ" voxels as the official label map has them (value 1: organ, not tumour), before any clean-up.
    organ_only = None if o is None else (o & ~t if t is not None else o)
    affine = np.asarray(affine, dtype=np.float64)
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0

    if rule.largest_tumor_max_distance_mm is not None and o is not None and t is not None and t.any():
        labels, sizes = _components(t)
        largest = labels == (int(np.argmax(sizes[1:])) + 1)
        c_organ = _centroid_mm(organ_only, affine, offset)
        c_tumor = _centroid_mm(largest, affine, offset)
        if c_organ is not None and np.linalg.norm(c_organ - c_tumor) > rule.largest_tumor_max_distance_mm:
            t &= ~largest
    if rule.organ_components is not None and o is not None:
        region = o | t if organ_includes_tumor and t is not None else o
        o = _keep_largest(region, rule.organ_components)
    if rule.tumor_within_organ and o is not None and t is not None:
        t &= o
    if t is not None and rule.tumor_components is not None:
        t = _keep_largest(t, rule.tumor_components)
    if t is not None and rule.small_tumor_ml is not None:
        labels, sizes = _components(t)
        if len(sizes) > 2:  # more than one component: the only one is kept whatever its size
            small = sizes * voxel_ml <= rule.small_tumor_ml
            small[0] = False
            t = t & ~small[labels]
    if t is not None and rule.tumor_max_distance_mm is not None and o is not None:
        c_organ = _centroid_mm(organ_only, affine, offset)
        labels, sizes = _components(t)
        keep = np.zeros(len(sizes), dtype=bool)
        if c_organ is not None and len(sizes) > 1:
            index = np.arange(1, len(sizes))
            centres = np.asarray(ndi.center_of_mass(t, labels, index), dtype=np.float64).reshape(-1, 3) + offset
            world = centres @ affine[:3, :3].T + affine[:3, 3]
            keep[1:] = np.linalg.norm(world - c_organ, axis=1) < rule.tumor_max_distance_mm
        t = keep[labels]

    def paste(full: np.ndarray | None, part: np.ndarray | None) -> np.ndarray | None:
        if full is None or part is None:
            return full
        out = np.zeros_like(full, dtype=bool)
        out[box] = part
        return out

    return paste(organ, o), paste(tumor, t)
