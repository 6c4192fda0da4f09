"""Task-specific clean-up of the thresholded masks: the official CCQ rules as a named preset.

The rules, and where they come from: docs/architecture.md#inference-and-evaluation.

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
            largest_tumor_max_distance_mm=200 * _VOXEL_MM,
            organ_components=2,
            tumor_within_organ=True,
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


# Full-size temporaries are what costs memory on a whole CT: sizes and centroids are computed without the int64
# copy `np.bincount` makes of a whole label array, nor the float64 index grids of `ndi.center_of_mass`.
_CHUNK = 1 << 22


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels int32 of face-connected components, voxel count per label (index 0 = background))."""
    labels, n = ndi.label(mask)
    flat = labels.reshape(-1)
    sizes = np.zeros(n + 1, dtype=np.int64)
    for start in range(0, flat.size, _CHUNK):
        sizes += np.bincount(flat[start : start + _CHUNK], minlength=n + 1)
    return labels, sizes


def _keep_largest(mask: np.ndarray, n: int) -> np.ndarray:
    labels, sizes = _components(mask)
    if len(sizes) - 1 <= n:
        return mask
    # Stable order on ties (the lower label first) so the result never depends on the sort's whims.
    order = np.argsort(-sizes[1:], kind="stable")[:n] + 1
    keep = np.zeros(len(sizes), dtype=bool)
    keep[order] = True
    return keep[labels]


def _centre(mask: np.ndarray) -> np.ndarray | None:
    """Mean voxel index of a bool mask, from its projections on each axis; None if empty."""
    total = int(np.count_nonzero(mask))
    if total == 0:
        return None
    axes = range(mask.ndim)
    counts = [np.count_nonzero(mask, axis=tuple(b for b in axes if b != a)) for a in axes]
    return np.array([float(np.dot(np.arange(len(c)), c)) / total for c in counts])


def _to_world(index: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return affine[:3, :3] @ index + affine[:3, 3]


def _centroid_mm(mask: np.ndarray, affine: np.ndarray, offset: np.ndarray) -> np.ndarray | None:
    """World (mm) centroid of ``mask`` (a box whose corner is voxel ``offset``); None if empty."""
    centre = _centre(mask)
    return None if centre is None else _to_world(centre + offset, affine)


def _component_centroids_mm(labels: np.ndarray, index, affine: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """[N, 3] world centroids of the components ``index`` of ``labels``, each within its own bounding box."""
    boxes = ndi.find_objects(labels)
    out = []
    for k in index:
        box = boxes[int(k) - 1]
        corner = np.array([s.start for s in box], dtype=np.float64)
        out.append(_to_world(_centre(labels[box] == k) + corner + offset, affine))
    return np.array(out).reshape(-1, 3)


def _spans(mask: np.ndarray) -> list[tuple[int, int]] | None:
    spans = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if not hit.size:
            return None
        spans.append((int(hit[0]), int(hit[-1]) + 1))
    return spans


def _bbox(masks: list[np.ndarray]) -> tuple[slice, ...] | None:
    """The smallest box holding every True voxel of the masks (components never reach outside it)."""
    spans = [s for s in map(_spans, masks) if s is not None]
    if not spans:
        return None
    return tuple(slice(min(s[a][0] for s in spans), max(s[a][1] for s in spans)) for a in range(len(spans[0])))


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
    task does not label. The inputs are never modified (an unchanged mask may be returned as it is).

    Works inside the masks' bounding box and never holds more than a few box-sized arrays at once: on a full
    CT the masks are the size of the volume."""
    box = _bbox([m for m in (organ, tumor) if m is not None])
    if box is None:
        return organ, tumor
    offset = np.array([s.start for s in box], dtype=np.float64)
    o = None if organ is None else organ[box]  # views: every step below makes new arrays
    t = None if tumor is None else tumor[box]
    views = (o, t)
    affine = np.asarray(affine, dtype=np.float64)
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    # Centroid of the "organ" voxels as the official label map has them (value 1: organ, not tumour), taken
    # before any clean-up, for the distance rules.
    needs_centre = rule.largest_tumor_max_distance_mm is not None or rule.tumor_max_distance_mm is not None
    c_organ = None
    if needs_centre and o is not None:
        c_organ = _centroid_mm(o & ~t if t is not None else o, affine, offset)

    if rule.largest_tumor_max_distance_mm is not None and c_organ is not None and t is not None and t.any():
        labels, sizes = _components(t)
        largest = int(np.argmax(sizes[1:])) + 1
        c_tumor = _component_centroids_mm(labels, [largest], affine, offset)[0]
        if np.linalg.norm(c_organ - c_tumor) > rule.largest_tumor_max_distance_mm:
            t = labels != largest
            t &= labels > 0
        del labels
    if rule.organ_components is not None and o is not None:
        o = _keep_largest(o | t if organ_includes_tumor and t is not None else o, rule.organ_components)
    if rule.tumor_within_organ and o is not None and t is not None:
        t = t & o
    if t is not None and rule.tumor_components is not None:
        t = _keep_largest(t, rule.tumor_components)
    if t is not None and rule.small_tumor_ml is not None:
        labels, sizes = _components(t)
        if len(sizes) > 2:  # more than one component: the only one is kept whatever its size
            keep = sizes * voxel_ml > rule.small_tumor_ml
            keep[0] = False
            t = keep[labels]
        del labels
    if t is not None and rule.tumor_max_distance_mm is not None and o is not None:
        labels, sizes = _components(t)
        keep = np.zeros(len(sizes), dtype=bool)
        if c_organ is not None and len(sizes) > 1:
            centres = _component_centroids_mm(labels, range(1, len(sizes)), affine, offset)
            keep[1:] = np.linalg.norm(centres - c_organ, axis=1) < rule.tumor_max_distance_mm
        t = keep[labels]
        del labels

    def paste(full: np.ndarray | None, part: np.ndarray | None) -> np.ndarray | None:
        if full is None or part is None or any(part is v for v in views):
            return full  # unchanged
        out = np.zeros(full.shape, dtype=bool)
        out[box] = part
        return out

    return paste(organ, o), paste(tumor, t)
