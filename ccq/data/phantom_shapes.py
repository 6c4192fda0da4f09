"""Shapes of the synthetic anatomy, in millimetres on a voxel grid: ellipsoids with a wobbly surface, tubes along
a path, and the helpers that place lesions inside them (`ccq.data.phantom_anatomy` assembles the organs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Grid:
    """Voxel centres in mm, (z, y, x), centred on the volume."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    @property
    def half(self) -> np.ndarray:
        return np.array(self.shape, float) * np.array(self.spacing) / 2.0

    def mm(self, fractions: Sequence[float]) -> np.ndarray:
        """A point or size given as fractions of the half-extents, in mm."""
        return np.asarray(fractions, float) * self.half

    def box(self, center: np.ndarray, radius: np.ndarray) -> tuple[slice, slice, slice]:
        """Index slices covering center +- radius (mm), clipped to the volume."""
        out = []
        for c, r, n, s in zip(center, radius, self.shape, self.spacing, strict=True):
            lo = int(np.floor((c - r) / s + (n - 1) / 2.0)) - 1
            hi = int(np.ceil((c + r) / s + (n - 1) / 2.0)) + 2
            out.append(slice(min(max(lo, 0), n), min(max(hi, 0), n)))
        return tuple(out)

    def axes(self, box: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable mm coordinates of the voxels in ``box``: [d,1,1], [1,h,1], [1,1,w]."""
        coords = []
        for axis, (sl, n, s) in enumerate(zip(box, self.shape, self.spacing, strict=True)):
            idx = np.arange(sl.start, sl.stop, dtype=np.float32)
            shape = [1, 1, 1]
            shape[axis] = idx.size
            coords.append(((idx - (n - 1) / 2.0) * s).reshape(shape))
        return coords[0], coords[1], coords[2]


def ellipsoid(
    grid: Grid,
    center: np.ndarray,
    radii: np.ndarray,
    angle: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Bool mask of an ellipsoid (mm), rotated by ``angle`` (radians) in the axial plane.

    With ``rng`` the surface gets a smooth random wobble, so organs are not perfect ellipsoids.
    """
    wobble = 0.18 if rng is not None else 0.0
    reach = np.full(3, radii.max()) * np.sqrt(1.0 + 2.0 * wobble)
    box = grid.box(center, reach)
    z, y, x = grid.axes(box)
    dz, dy0, dx0 = z - center[0], y - center[1], x - center[2]
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    u = (dz / radii[0]).astype(np.float32)
    v = (cos * dy0 - sin * dx0) / np.float32(radii[1])
    w = (sin * dy0 + cos * dx0) / np.float32(radii[2])
    f = u * u + v * v + w * w
    threshold: np.ndarray | float = 1.0
    if rng is not None:
        k = rng.normal(0.0, 2.0, size=(2, 3)).astype(np.float32)
        phase = rng.uniform(0, 2 * np.pi, size=2).astype(np.float32)
        threshold = 1.0 + wobble / 2 * sum(np.sin(k[i, 0] * u + k[i, 1] * v + k[i, 2] * w + phase[i]) for i in range(2))
    mask = np.zeros(grid.shape, bool)
    mask[box] = f < threshold
    return mask


def tube(grid: Grid, points: Sequence[np.ndarray], radius: float) -> tuple[np.ndarray, np.ndarray]:
    """(mask, distance to the centre line in mm) of a tube of ``radius`` mm along a polyline."""
    mask = np.zeros(grid.shape, bool)
    dist = np.full(grid.shape, np.inf, np.float32)
    for a, b in zip(points[:-1], points[1:], strict=True):
        box = grid.box((a + b) / 2, np.abs(b - a) / 2 + radius)
        z, y, x = grid.axes(box)
        ab = (b - a).astype(np.float32)
        t = ((z - a[0]) * ab[0] + (y - a[1]) * ab[1] + (x - a[2]) * ab[2]) / max(float(ab @ ab), 1e-6)
        t = np.clip(t, 0.0, 1.0)
        d = np.sqrt((z - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 + (x - a[2] - t * ab[2]) ** 2)
        dist[box] = np.minimum(dist[box], d)
    mask = dist < radius
    return mask, dist


def bbox(mask: np.ndarray) -> tuple[slice, ...]:
    """Index slices of the smallest box holding ``mask`` (the whole volume when it is empty)."""
    out = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        out.append(slice(int(hit[0]), int(hit[-1]) + 1) if hit.size else slice(None))
    return tuple(out)


def inner_distance(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distance (mm) from each voxel of ``mask`` to the nearest voxel outside it (the edge is outside)."""
    box = bbox(mask)  # the transform only needs the organ's box: much faster than the whole volume
    out = np.zeros(mask.shape, np.float64)
    out[box] = ndimage.distance_transform_edt(np.pad(mask[box], 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    return out
