"""Display geometry of overlay pictures: which slice to show and how to orient it on screen.

Every volume is first brought to ccq's canonical ``[z, y, x]`` grid (`ccq.data.geometry.to_canonical`: z inferior ->
superior, y anterior -> posterior, x patient-right -> patient-left), whatever the file's own axis order, so one file
stored in RAS and the same anatomy stored in LPS give the same picture. On that grid the radiological display
convention is a matter of indexing:

* axial ``a[k]``: rows anterior (top) -> posterior, columns patient-right (image left) -> patient-left (image right);
* coronal ``a[:, j]`` with its rows reversed: rows superior (top) -> inferior, columns as in the axial view.

The reorientation is a permutation and flips of the axes, so it is taken as numpy *views*: drawing a 512x512x300
CT with a dozen structures copies no volume, only the slices shown.

Pixels are not square on most CT grids (0.8 mm in-plane, 1.5-5 mm between slices); a `Panel` carries the spacing
of its rows and columns so the picture is drawn in millimetres, with the true aspect ratio.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from nibabel import orientations as nio

from ccq.data.geometry import CANONICAL_AXCODES
from ccq.errors import CCQError

VIEWS = ("axial", "coronal")
"""The slice orientations written for every structure, in the order of the files."""

_VIEW_AXIS = {"axial": 0, "coronal": 1}
"""Canonical axis a view cuts across: axial slices are z-planes, coronal slices y-planes."""

# Anatomical names of the screen edges (top, bottom, left, right) in radiological convention.
_EDGES = {"axial": ("A", "P", "R", "L"), "coronal": ("S", "I", "R", "L")}


@dataclass(frozen=True)
class Volume:
    """A CT and its masks on the canonical ``[z, y, x]`` grid."""

    ct: np.ndarray
    """[Z, Y, X] HU (a view of the caller's array, in its dtype)."""
    masks: dict[str, np.ndarray]
    """Label name -> [Z, Y, X] bool (the prediction; views of the caller's arrays)."""
    reference: dict[str, np.ndarray]
    """Label name -> [Z, Y, X] bool (ground truth); empty when none was given."""
    spacing: tuple[float, float, float]
    """(z, y, x) voxel size in mm."""
    affine: np.ndarray
    """4x4 canonical index (z, y, x) -> world RAS mm."""

    @property
    def names(self) -> list[str]:
        """Every structure, prediction order first, then those only the reference has."""
        return list(self.masks) + [n for n in self.reference if n not in self.masks]

    def union(self, name: str) -> np.ndarray:
        """[Z, Y, X] bool: where the prediction or the reference has the structure (no copy if only one has it)."""
        parts = [group[name] for group in (self.masks, self.reference) if name in group]
        return parts[0] if len(parts) == 1 else parts[0] | parts[1]


@dataclass(frozen=True)
class Panel:
    """One 2D picture, oriented for display: row 0 is the top of the screen, column 0 its left edge."""

    ct: np.ndarray
    """[rows, cols] HU."""
    masks: dict[str, np.ndarray]
    """Label name -> [rows, cols] bool (prediction)."""
    reference: dict[str, np.ndarray]
    """Label name -> [rows, cols] bool (ground truth)."""
    row_mm: float
    """Height of a pixel in mm."""
    col_mm: float
    """Width of a pixel in mm."""
    edges: tuple[str, str, str, str]
    """Anatomical direction at the top, bottom, left and right edges (e.g. A, P, R, L)."""
    caption: str
    """Which slice this is, e.g. ``axial 12/40, S -35.2 mm``."""


def _as_masks(masks: Mapping[str, np.ndarray] | None, shape: tuple[int, ...], what: str) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, mask in (masks or {}).items():
        arr = np.asarray(mask)
        if arr.shape != shape:
            raise CCQError(f"write_overlays: {what} {name!r} has shape {arr.shape}; expected the image's {shape}")
        out[str(name)] = arr if arr.dtype == bool else arr != 0
    return out


def canonical_volume(
    image: np.ndarray,
    affine: np.ndarray,
    masks: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray] | None = None,
) -> Volume:
    """Reorient a file-order image ``[X, Y, Z]`` and its masks (same shape) to the canonical grid, as views.

    The same axis permutation and flips as `ccq.data.geometry.to_canonical` (oblique affines snap to the closest
    axes). Raises CCQError for a non-3D image, a mask of another shape, or an affine that is not an invertible 4x4.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise CCQError(f"write_overlays: image of shape {image.shape}; expected a 3D CT volume")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) == 0:
        raise CCQError(f"write_overlays: affine {affine.tolist()}; expected an invertible 4x4 voxel -> RAS matrix")
    pred = _as_masks(masks, image.shape, "mask")
    ref = _as_masks(reference, image.shape, "reference mask")
    ornt = nio.ornt_transform(nio.io_orientation(affine), nio.axcodes2ornt(CANONICAL_AXCODES))

    def view(a: np.ndarray) -> np.ndarray:
        return nio.apply_orientation(a, ornt).transpose(2, 1, 0)  # flips and a transpose: a view, no copy

    # LPS voxel (i, j, k) -> world, then the z-major axis order (z, y, x) = (k, j, i).
    affine_zyx = (affine @ nio.inv_ornt_aff(ornt, image.shape))[:, [2, 1, 0, 3]]
    spacing = tuple(float(v) for v in np.linalg.norm(affine_zyx[:3, :3], axis=0))
    return Volume(
        ct=view(image),
        masks={n: view(m) for n, m in pred.items()},
        reference={n: view(m) for n, m in ref.items()},
        spacing=spacing,  # type: ignore[arg-type]
        affine=affine_zyx,
    )


def area_profiles(volume: Volume) -> dict[str, dict[str, np.ndarray]]:
    """Per structure and view: how many voxels of it (prediction or reference) each slice holds."""
    out = {}
    for name in volume.names:
        union = volume.union(name)
        out[name] = {view: union.sum(axis=tuple(a for a in range(3) if a != axis)) for view, axis in _VIEW_AXIS.items()}
    return out


def best_slice(profile: np.ndarray) -> int | None:
    """The slice with the most voxels (the first of ties) of a structure's area profile; None if it is empty."""
    return int(np.argmax(profile)) if profile.any() else None


def overview_slice(profiles: dict[str, dict[str, np.ndarray]], view: str, n_slices: int) -> int:
    """The ``view`` slice that cuts the most structures (ties: the most foreground); the middle one if all are empty."""
    present = np.zeros(n_slices, dtype=np.int64)
    area = np.zeros(n_slices, dtype=np.int64)
    for per_view in profiles.values():
        present += per_view[view] > 0
        area += per_view[view]
    if not area.any():
        return n_slices // 2
    # Lexicographic: structures first, then area (area <= max area, so the weight keeps the two apart).
    key = present * (int(area.max()) + 1) + area
    return int(np.argmax(key))


def n_slices(volume: Volume, view: str) -> int:
    """How many ``view`` slices the volume has."""
    return volume.ct.shape[_VIEW_AXIS[view]]


def _world_along(volume: Volume, view: str, index: int) -> str:
    # The slice's position in world mm (RAS: S is +z, A is +y), at the centre of the slice.
    centre = (np.asarray(volume.ct.shape, dtype=np.float64) - 1) / 2
    centre[_VIEW_AXIS[view]] = index
    world = volume.affine[:3, :3] @ centre + volume.affine[:3, 3]
    return f"S {world[2]:.1f} mm" if view == "axial" else f"A {world[1]:.1f} mm"


def panel(volume: Volume, view: str, index: int, names: list[str]) -> Panel:
    """The ``view`` slice ``index`` of ``volume`` with the masks of ``names``, oriented for display."""
    if view not in _VIEW_AXIS:
        raise ValueError(f"view {view!r}; expected one of {VIEWS}")
    sz, sy, sx = volume.spacing
    if view == "axial":

        def cut(a: np.ndarray) -> np.ndarray:
            return a[index]

        row_mm = sy
    else:

        def cut(a: np.ndarray) -> np.ndarray:
            return a[::-1, index, :]  # superior at the top of the screen

        row_mm = sz
    n = volume.ct.shape[_VIEW_AXIS[view]]
    return Panel(
        ct=np.ascontiguousarray(cut(volume.ct), dtype=np.float32),
        masks={k: np.ascontiguousarray(cut(volume.masks[k])) for k in names if k in volume.masks},
        reference={k: np.ascontiguousarray(cut(volume.reference[k])) for k in names if k in volume.reference},
        row_mm=float(row_mm),
        col_mm=float(sx),
        edges=_EDGES[view],
        caption=f"{view} {index + 1}/{n}, {_world_along(volume, view, index)}",
    )


def crop_box(
    mask2d: np.ndarray, row_mm: float, col_mm: float, *, margin_mm: float = 30.0, min_field_mm: float = 100.0
) -> tuple[slice, slice]:
    """Rows and columns around a 2D mask's bounding box, with a margin, at least ``min_field_mm`` wide and high
    (context to recognise the anatomy), clipped to the slice; the whole slice if the mask is empty."""
    if not mask2d.any():
        return slice(None), slice(None)
    out = []
    for axis, mm in ((0, row_mm), (1, col_mm)):
        hit = np.flatnonzero(mask2d.any(axis=1 - axis))
        lo, hi = int(hit[0]), int(hit[-1]) + 1
        pad = margin_mm / mm
        half = max((hi - lo) / 2 + pad, min_field_mm / mm / 2)
        mid = (lo + hi) / 2
        n = mask2d.shape[axis]
        out.append(slice(max(0, int(np.floor(mid - half))), min(n, int(np.ceil(mid + half)))))
    return out[0], out[1]


def crop(p: Panel, rows: slice, cols: slice) -> Panel:
    """The part ``[rows, cols]`` of a panel."""
    return Panel(
        ct=p.ct[rows, cols],
        masks={k: m[rows, cols] for k, m in p.masks.items()},
        reference={k: m[rows, cols] for k, m in p.reference.items()},
        row_mm=p.row_mm,
        col_mm=p.col_mm,
        edges=p.edges,
        caption=p.caption,
    )
