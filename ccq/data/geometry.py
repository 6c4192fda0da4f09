"""Voxel geometry: reading NIfTI files, reorienting to the canonical grid, resampling, and mapping back.

Canonical orientation (used everywhere in ccq): arrays are indexed ``[z, y, x]`` where

* ``z`` (axis 0) runs from inferior to superior (towards the head),
* ``y`` (axis 1) runs from anterior to posterior (towards the back),
* ``x`` (axis 2) runs from the patient's right to the patient's left.

That is the DICOM/ITK "LPS" voxel orientation stored z-major, i.e. the array SimpleITK's ``GetArrayFromImage``
returns for an image with identity direction; an axial slice ``a[k]`` displays in the radiological convention.
Orientation and spacing always come from the file's affine (never from assumptions: KiTS19 stores slices on
the first voxel axis, MSD on the last). World coordinates are nibabel's RAS millimetres.

Resampling convention: voxel *edges* of the source and target grids start at the same place, so target voxel
``i`` is centred at source coordinate ``(i + 0.5) * r - 0.5`` with ``r = target_spacing / source_spacing``
(torch's ``align_corners=False``). The target spacing is kept exact; the target shape is the rounded extent.
Cubic and linear resampling are separable, so each axis is one dense matrix product (BLAS); on a 200x512x512
volume this is ~10x faster than ``scipy.ndimage.zoom`` with identical values (see ``resample``). ``ccq prepare``
resamples long scans slab by slab with banded products instead (`resample_slabs`: bounded memory, same values).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.ndimage as ndi
import torch
from nibabel import orientations as nio

import ccq.limits as limits
from ccq.data.nifti_file import read_nifti_file
from ccq.errors import CCQError

CANONICAL_AXCODES = ("L", "P", "S")
"""World directions of the canonical voxel axes before the z-major transpose: i -> L, j -> P, k -> S."""

AFFINE_TOLERANCE_VOXELS = 0.1
"""Image and label grids may differ by at most this many voxels at any corner (header float noise)."""

# (z, y, x) index order <-> (i, j, k) index order of an LPS grid: a pure axis reversal.
_ZYX_FROM_IJK = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


@dataclass(frozen=True)
class CanonicalInfo:
    """How a file's voxel grid maps onto the canonical ``[z, y, x]`` grid (enough to invert it exactly)."""

    original_shape: tuple[int, int, int]
    """Voxel shape as stored in the file."""
    original_affine: tuple[tuple[float, ...], ...]
    """The file's 4x4 voxel -> world (RAS mm) affine."""
    ornt: tuple[tuple[int, int], ...]
    """nibabel orientation transform (file voxel axes -> LPS voxel axes): per file axis, (target, flip)."""
    shape: tuple[int, int, int]
    """Canonical shape (z, y, x), before resampling."""
    spacing: tuple[float, float, float]
    """Canonical spacing (z, y, x) in mm, before resampling."""
    affine: tuple[tuple[float, ...], ...]
    """4x4 canonical (z, y, x) index -> world (RAS mm) affine."""

    @property
    def original_spacing(self) -> tuple[float, float, float]:
        """Spacing along the file's own voxel axes (what the header's pixdim says)."""
        lin = np.asarray(self.original_affine)[:3, :3]
        return tuple(float(v) for v in np.linalg.norm(lin, axis=0))  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        return {
            "original_shape": list(self.original_shape),
            "original_affine": [list(r) for r in self.original_affine],
            "ornt": [list(o) for o in self.ornt],
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "affine": [list(r) for r in self.affine],
            "axes": "z: inferior->superior, y: anterior->posterior, x: right->left (LPS voxel axes, z-major)",
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CanonicalInfo:
        return cls(
            original_shape=tuple(int(v) for v in data["original_shape"]),  # type: ignore[arg-type]
            original_affine=_affine_tuple(np.asarray(data["original_affine"], dtype=np.float64)),
            ornt=tuple((int(a), int(f)) for a, f in data["ornt"]),
            shape=tuple(int(v) for v in data["shape"]),  # type: ignore[arg-type]
            spacing=tuple(float(v) for v in data["spacing"]),  # type: ignore[arg-type]
            affine=_affine_tuple(np.asarray(data["affine"], dtype=np.float64)),
        )


def _affine_tuple(affine: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in row) for row in affine)


# ----------------------------------------------------------------------------------------------- reading


def load_nifti(path: str | Path, *, what: str, case: str, as_float: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3D NIfTI file -> (array in file voxel order, 4x4 affine). Every failure is a one-line CCQError.

    ``as_float``: float32 with the header's scaling applied (images); else the stored values (label maps).
    A trailing singleton 4th dimension (written by some converters) is dropped; a real 4D series is refused.
    The header is checked before any voxel is read: sizes within `ccq.limits` and the memory available, no zero
    or implausible voxel size, real values (`ccq.data.nifti_file`).
    """
    array, affine, _ = read_nifti_file(path, what=what, case=case, as_float=as_float)
    return array, affine


def grid_offset_voxels(affine_a: np.ndarray, affine_b: np.ndarray, shape: Sequence[int]) -> float:
    """How far (in voxels of grid a) the corners of grid b (of ``shape``) lie from where grid a puts them: a
    direct, unit-aware measure of misalignment. np.linalg.LinAlgError when ``affine_a`` is singular."""
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(3, -1)
    corners_h = np.vstack([corners, np.ones(corners.shape[1])])
    in_a = np.linalg.solve(np.asarray(affine_a), np.asarray(affine_b) @ corners_h)[:3]
    return float(np.abs(in_a - corners).max())


def check_same_grid(
    shape_a: Sequence[int], affine_a: np.ndarray, shape_b: Sequence[int], affine_b: np.ndarray, *, case: str
) -> None:
    """Refuse an image/label pair whose grids differ (shape, or a corner by > AFFINE_TOLERANCE_VOXELS)."""
    if tuple(shape_a) != tuple(shape_b):
        raise CCQError(f"case {case}: image shape {tuple(shape_a)} != label shape {tuple(shape_b)}; expected equal")
    try:
        err = grid_offset_voxels(affine_a, affine_b, shape_b)
    except np.linalg.LinAlgError:
        raise CCQError(
            f"case {case}: image affine {np.asarray(affine_a).tolist()} is singular; expected an invertible 4x4 "
            "voxel-to-world matrix (check the header's pixdim, qform and sform)"
        ) from None
    if not math.isfinite(err) or err > AFFINE_TOLERANCE_VOXELS:
        raise CCQError(
            f"case {case}: image and label affines differ by {err:.3g} voxels; "
            f"expected the same grid (tolerance {AFFINE_TOLERANCE_VOXELS} voxel)"
        )


# ----------------------------------------------------------------------------------------------- reorienting


def to_canonical(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, CanonicalInfo]:
    """Reorient a file-order 3D array to the canonical ``[z, y, x]`` grid (a permutation/flip, no resampling).

    Oblique affines are snapped to the closest axes (as CT pipelines do); the info keeps the exact affine.
    """
    view, info = canonical_view(array, affine)
    return np.ascontiguousarray(view), info


def canonical_view(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, CanonicalInfo]:
    """As `to_canonical`, but the reoriented array is a view of ``array`` (flips and a transpose, no copy): a
    long scan is then resampled slab by slab (`resample_slabs`) without a reoriented copy of the whole volume."""
    affine = np.asarray(affine, dtype=np.float64)
    if array.ndim != 3:
        raise CCQError(f"to_canonical: array of shape {array.shape}; expected 3D")
    finite = affine.shape == (4, 4) and np.all(np.isfinite(affine))
    invertible = finite and abs(np.linalg.det(affine[:3, :3])) > 0
    if not invertible:
        raise CCQError(f"to_canonical: affine {affine.tolist()} is not an invertible 4x4 matrix")
    ornt = nio.ornt_transform(nio.io_orientation(affine), nio.axcodes2ornt(CANONICAL_AXCODES))
    lps = nio.apply_orientation(array, ornt)
    affine_lps = affine @ nio.inv_ornt_aff(ornt, array.shape)
    zyx = lps.transpose(2, 1, 0)
    affine_zyx = affine_lps @ _ZYX_FROM_IJK
    info = CanonicalInfo(
        original_shape=tuple(int(n) for n in array.shape),  # type: ignore[arg-type]
        original_affine=_affine_tuple(affine),
        ornt=tuple((int(a), int(f)) for a, f in ornt),
        shape=tuple(int(n) for n in zyx.shape),  # type: ignore[arg-type]
        spacing=tuple(float(v) for v in np.linalg.norm(affine_zyx[:3, :3], axis=0)),  # type: ignore[arg-type]
        affine=_affine_tuple(affine_zyx),
    )
    return zyx, info


def from_canonical(array_zyx: np.ndarray, info: CanonicalInfo) -> np.ndarray:
    """Inverse of `to_canonical`: canonical ``[..., z, y, x]`` -> file voxel order ``[..., i, j, k]``.

    Leading axes (e.g. channels) are carried through untouched.
    """
    if tuple(array_zyx.shape[-3:]) != tuple(info.shape):
        raise CCQError(f"from_canonical: array shape {array_zyx.shape[-3:]}; expected {info.shape}")
    lead = array_zyx.ndim - 3
    # Move the spatial axes first (as LPS i, j, k) so nibabel's apply_orientation sees them as axes 0..2.
    lps = np.moveaxis(array_zyx, (lead + 2, lead + 1, lead), (0, 1, 2))
    back = np.zeros((3, 2))
    for axis, (target, flip) in enumerate(info.ornt):  # invert the permutation; a flip is its own inverse
        back[target] = (axis, flip)
    out = nio.apply_orientation(lps, back)
    out = np.moveaxis(out, (0, 1, 2), (lead, lead + 1, lead + 2)) if lead else out
    return np.ascontiguousarray(out)


# ----------------------------------------------------------------------------------------------- resampling


def target_shape(shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float]) -> tuple[int, ...]:
    """Shape covering the same extent at ``new_spacing`` (rounded, at least 1 voxel)."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, new_spacing, strict=True))


def _source_coords(n_out: int, ratio: float) -> np.ndarray:
    return (np.arange(n_out, dtype=np.float64) + 0.5) * ratio - 0.5


def _interp_matrix(n_in: int, n_out: int, ratio: float, order: int) -> np.ndarray:
    """Dense [n_out, n_in] operator of 1D spline interpolation (scipy semantics, mode 'nearest').

    Built by interpolating the identity, so a product with it equals scipy's 1D spline of that order.
    """
    coords = _source_coords(n_out, ratio)
    grid = np.stack(np.broadcast_arrays(coords[:, None], np.arange(n_in, dtype=np.float64)[None, :]))
    return ndi.map_coordinates(np.eye(n_in), grid, order=order, mode="nearest").astype(np.float32)


def nearest_indices(n_in: int, n_out: int, ratio: float) -> np.ndarray:
    """Source index of each of ``n_out`` target voxels under nearest-neighbour resampling (the convention of the
    module docstring), clipped to the ``n_in`` source voxels."""
    return np.clip(np.floor(_source_coords(n_out, ratio) + 0.5), 0, n_in - 1).astype(np.intp)


def resample(
    array: np.ndarray,
    spacing: Sequence[float],
    new_spacing: Sequence[float],
    *,
    order: int,
    shape: Sequence[int] | None = None,
) -> np.ndarray:
    """Resample the last three axes from ``spacing`` to ``new_spacing`` (both (z, y, x) mm).

    ``shape``: the output shape; default `target_shape` (give it explicitly to map back onto an exact grid).
    ``order``: 0 nearest (labels; keeps dtype), 1 linear, 3 cubic spline (float32 out).
    Leading axes (channels) are resampled independently.
    """
    if order not in (0, 1, 3):
        raise CCQError(f"resample: order={order}; expected 0 (nearest), 1 (linear) or 3 (cubic)")
    in_shape = tuple(array.shape[-3:])
    if shape is None:  # callers that know the file check first, naming it (`ccq.limits.check_grid`)
        limits.check_grid(in_shape, spacing, new_spacing, "resample")
    out_shape = target_shape(in_shape, spacing, new_spacing) if shape is None else tuple(map(int, shape))
    limits.check_voxels(out_shape, "resample:", "output grid")
    ratios = [float(t) / float(s) for s, t in zip(spacing, new_spacing, strict=True)]
    if order == 0:
        out = array
        for ax, (n_in, n_out, r) in enumerate(zip(in_shape, out_shape, ratios, strict=True)):
            if n_in != n_out or abs(r - 1.0) > 1e-9:
                out = np.take(out, nearest_indices(n_in, n_out, r), axis=array.ndim - 3 + ax)
        return np.ascontiguousarray(out)
    if array.ndim > 3:
        lead = array.shape[:-3]
        flat = array.reshape((-1, *in_shape))
        res = [resample(a, spacing, new_spacing, order=order, shape=out_shape) for a in flat]
        return np.stack(res).reshape((*lead, *out_shape))
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    # Shrinking axes first keeps the intermediate arrays (and the later products) small.
    for ax in sorted(range(3), key=lambda a: out_shape[a] / in_shape[a]):
        n_in, n_out, r = in_shape[ax], out_shape[ax], ratios[ax]
        if n_in == n_out and abs(r - 1.0) < 1e-9:
            continue
        m = torch.from_numpy(_interp_matrix(n_in, n_out, r, order))
        t = _apply_axis(t, m, ax)
    return t.numpy()


def _apply_axis(t: torch.Tensor, m: torch.Tensor, axis: int) -> torch.Tensor:
    """Apply the [n_out, n_in] matrix ``m`` along ``axis`` of a 3D tensor, without transposing copies."""
    d, h, w = t.shape
    if axis == 2:
        return torch.matmul(t, m.T)
    if axis == 1:
        return torch.matmul(m, t)  # batched over z
    return torch.matmul(m, t.reshape(d, h * w)).reshape(m.shape[0], h, w)


BAND_TOLERANCE = 1e-9
"""Interpolation weights below this are dropped by `resample_slabs` (a cubic spline's weights decay by ~0.27 per
voxel, so only ~16 neighbours per side matter): the dropped weights of an output voxel sum to < 1e-8, i.e. an error
below 1e-4 HU on a CT, against float32 rounding of ~1e-5 relative."""


def _band(m: np.ndarray, r0: int, r1: int) -> tuple[int, int]:
    """The input columns [c0, c1) that rows [r0, r1) of an interpolation matrix weigh above `BAND_TOLERANCE`."""
    cols = np.flatnonzero(np.abs(m[r0:r1]).max(axis=0) > BAND_TOLERANCE)
    return (int(cols[0]), int(cols[-1]) + 1) if cols.size else (r0 * m.shape[1] // m.shape[0],) * 2


def _apply_banded(t: torch.Tensor, m: np.ndarray, axis: int, block: int = 64) -> torch.Tensor:
    """`_apply_axis` by blocks of ``block`` output rows, each over the input band its weights need: ~5x fewer
    products than the dense matrix on a 512-voxel axis, the same values up to `BAND_TOLERANCE`."""
    shape = list(t.shape)
    shape[axis] = m.shape[0]
    out = torch.empty(shape, dtype=torch.float32)
    for r0 in range(0, m.shape[0], block):
        r1 = min(r0 + block, m.shape[0])
        c0, c1 = _band(m, r0, r1)
        part = torch.from_numpy(np.ascontiguousarray(m[r0:r1, c0:c1]))
        out.narrow(axis, r0, r1 - r0).copy_(_apply_axis(t.narrow(axis, c0, c1 - c0), part, axis))
    return out


def resample_slabs(
    array: np.ndarray,
    spacing: Sequence[float],
    new_spacing: Sequence[float],
    *,
    order: int,
    shape: Sequence[int] | None = None,
    to_float: Callable[[np.ndarray], np.ndarray] | None = None,
    slab: int = 32,
) -> Iterator[tuple[int, np.ndarray]]:
    """`resample` of a 3D array, ``slab`` output slices (z) at a time: yields ``(z0, float32 [s, H', W'])``.

    ``array`` may be any view (e.g. a `canonical_view` of the stored int16 voxels): each slab reads only the input
    slices its weights need (`BAND_TOLERANCE`; a cubic spline has global support, so that is ~16 slices beyond
    the slab on each side) and converts them with ``to_float`` (default ``astype(float32)``; e.g. the NIfTI
    header's scaling). Memory: a few float32 slabs, never a float32 copy of the volume. Values equal `resample`'s
    up to float32 rounding and `BAND_TOLERANCE`.
    """
    if order not in (0, 1, 3):
        raise CCQError(f"resample: order={order}; expected 0 (nearest), 1 (linear) or 3 (cubic)")
    in_shape = tuple(array.shape)
    out_shape = target_shape(in_shape, spacing, new_spacing) if shape is None else tuple(map(int, shape))
    limits.check_voxels(out_shape, "resample:", "output grid")
    ratios = [float(t) / float(s) for s, t in zip(spacing, new_spacing, strict=True)]
    convert = to_float or (lambda a: np.asarray(a, dtype=np.float32))
    same = [n == m and abs(r - 1.0) < 1e-9 for n, m, r in zip(in_shape, out_shape, ratios, strict=True)]
    if order == 0:
        index = [np.clip(np.floor(_source_coords(m, r) + 0.5), 0, n - 1).astype(np.intp)  # as resample(order=0)
                 for n, m, r in zip(in_shape, out_shape, ratios, strict=True)]  # fmt: skip
    else:
        mats = [None if s else _interp_matrix(n, m, r, order)
                for s, n, m, r in zip(same, in_shape, out_shape, ratios, strict=True)]  # fmt: skip
    for z0 in range(0, out_shape[0], slab):
        z1 = min(z0 + slab, out_shape[0])
        if order == 0:
            part = np.take(np.take(array[index[0][z0:z1]], index[1], axis=1), index[2], axis=2)
            yield z0, np.ascontiguousarray(convert(part), dtype=np.float32)
            continue
        c0, c1 = (z0, z1) if mats[0] is None else _band(mats[0], z0, z1)
        t = torch.from_numpy(np.ascontiguousarray(convert(array[c0:c1]), dtype=np.float32))
        if mats[0] is not None:
            t = _apply_axis(t, torch.from_numpy(np.ascontiguousarray(mats[0][z0:z1, c0:c1])), 0)
        for axis in sorted((1, 2), key=lambda a: out_shape[a] / in_shape[a]):  # shrinking axes first
            if mats[axis] is not None:
                t = _apply_banded(t, mats[axis], axis)
        yield z0, t.numpy()


def affine_after_resample(affine_zyx: np.ndarray, spacing: Sequence[float], new_spacing: Sequence[float]) -> np.ndarray:
    """The (z, y, x) index -> world affine of the resampled grid (edges aligned, see module doc)."""
    affine_zyx = np.asarray(affine_zyx, dtype=np.float64)
    ratios = np.array([float(t) / float(s) for s, t in zip(spacing, new_spacing, strict=True)])
    scale = np.diag([*ratios, 1.0])
    scale[:3, 3] = 0.5 * ratios - 0.5
    return affine_zyx @ scale


def to_original_grid(array_zyx: np.ndarray, info: CanonicalInfo, spacing: Sequence[float], *, order: int) -> np.ndarray:
    """Map a prepared-grid array (``[..., z, y, x]`` at ``spacing``) back onto the file's exact voxel grid.

    Use order 0 for label maps, 1 for probabilities. The result has shape ``[..., *info.original_shape]`` and
    lines up voxel for voxel with the input file (write it with ``info.original_affine``).
    """
    canon = resample(array_zyx, spacing, info.spacing, order=order, shape=info.shape)
    return from_canonical(canon, info)
