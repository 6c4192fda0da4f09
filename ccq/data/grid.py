"""Working grids: the voxel grid a network sees for a task, defined in the patient's world.

A working grid is a voxel spacing for the network's three input axes (D, H, W) and the direction each axis points
in the patient, written as three nibabel axis codes (the direction in which the index grows: ``L``/``R``,
``A``/``P``, ``S``/``I``, one of each pair). ccq's canonical grid is ``SPL``: D from inferior to superior, H from
anterior to posterior, W from the patient's right to the left (`ccq.data.geometry`). The official CCQ / DoDNet
code feeds MSD cases as ``SLP`` (H and W swapped) and KiTS19 cases as ``IPL`` (docs/official-data-path.md).

Because the axes are world directions, not file voxel axes, a CT stored in any voxel order is fed to a network
the same way: the file is reoriented to the canonical ``[z, y, x]`` array (`ccq.data.geometry.to_canonical`),
then permuted and flipped to the grid's axes (`orient`), then resampled to the grid's spacing. Resampling happens
in the grid's axis order, so voxel edges line up at the grid's first voxel (the corner index 0 of every axis), as
when a file stored in the grid's own axis order is resampled along its voxel axes.

Mapping back (`to_input_grid`) inverts each step: resample to the reoriented input's own spacing and shape, undo
the permutation and flips, undo the canonical reorientation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from nibabel import orientations as nio

import ccq.limits as limits
from ccq.data import geometry
from ccq.data.geometry import CanonicalInfo
from ccq.utils.config import Config

CANONICAL_AXES = "SPL"
"""ccq's canonical (D, H, W) = (z, y, x): inferior->superior, anterior->posterior, right->left."""

_PAIRS = ("LR", "AP", "SI")
_WORDS = {
    "L": "right -> left",
    "R": "left -> right",
    "A": "posterior -> anterior",
    "P": "anterior -> posterior",
    "S": "inferior -> superior",
    "I": "superior -> inferior",
}


def check_axes(axes: str) -> str | None:
    """None if ``axes`` is three axis codes with one of each pair (L/R, A/P, S/I), else what is wrong."""
    if not isinstance(axes, str) or len(axes) != 3 or any(c not in _WORDS for c in axes):
        return "three letters from L/R, A/P, S/I (e.g. 'SPL')"
    if any(sum(c in pair for c in axes) != 1 for pair in _PAIRS):
        return "one letter of each pair L/R, A/P, S/I (e.g. 'SPL')"
    return None


@dataclass(frozen=True)
class Grid(Config):
    """A working grid: the spacing along the network's (D, H, W) axes and where each of them points."""

    spacing: tuple[float, float, float]
    """Voxel size in mm along D, H, W."""
    axes: str = CANONICAL_AXES
    """Where D, H and W point: nibabel axis codes, the direction in which each index grows (canonical 'SPL')."""

    config_name = "grid"

    def _validate(self) -> None:
        object.__setattr__(self, "axes", self.axes.upper())
        if any(s <= 0 for s in self.spacing):
            self._fail("spacing", "three positive numbers (D, H, W) in mm")
        problem = check_axes(self.axes)
        if problem:
            self._fail("axes", problem)
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))

    @property
    def is_canonical(self) -> bool:
        return self.axes == CANONICAL_AXES

    def describe(self) -> str:
        """``1.5 x 0.8 x 0.8 mm, axes SPL`` (spacing along D, H, W)."""
        return f"{' x '.join(f'{s:g}' for s in self.spacing)} mm, axes {self.axes}"

    def axis_words(self) -> dict[str, str]:
        """``{"D": "inferior -> superior", ...}``: where each network axis points, in words."""
        return {name: _WORDS[code] for name, code in zip("DHW", self.axes, strict=True)}


def entry_grid(entry: Mapping[str, Any]) -> Grid:
    """The working grid of a prepared case (its meta / manifest entry). Entries written before per-task grids
    have no ``grid`` key: their arrays are canonical at ``spacing``."""
    stored = entry.get("grid")
    if isinstance(stored, Mapping):
        return Grid.from_dict(stored)
    return Grid(spacing=tuple(entry["spacing"]))


# ------------------------------------------------------------------------------------------------ orienting


def _transform(start: str, end: str) -> np.ndarray:
    """nibabel orientation transform from an array whose axes point ``start`` to one whose axes point ``end``."""
    return nio.ornt_transform(nio.axcodes2ornt(tuple(start)), nio.axcodes2ornt(tuple(end)))


def reorient(array: np.ndarray, start: str, end: str) -> np.ndarray:
    """The last three axes of ``array`` (pointing ``start``) permuted and flipped to point ``end`` (a view).

    Leading axes (channels) are carried through; no value changes."""
    if start == end:
        return array
    ornt = _transform(start, end)
    lead = array.ndim - 3
    flips = [lead + i for i, (_, flip) in enumerate(ornt) if flip < 0]
    out = np.flip(array, flips) if flips else array
    source_of = np.argsort(ornt[:, 0])  # output axis t is input axis source_of[t]
    return out.transpose([*range(lead), *(lead + int(s) for s in source_of)])


def orient(canonical: np.ndarray, axes: str) -> np.ndarray:
    """A canonical ``[..., z, y, x]`` array as the grid's ``[..., D, H, W]`` (a view, no resampling)."""
    return reorient(canonical, CANONICAL_AXES, axes)


def unorient(array: np.ndarray, axes: str) -> np.ndarray:
    """Inverse of `orient`: the grid's ``[..., D, H, W]`` back to canonical ``[..., z, y, x]`` (a view)."""
    return reorient(array, axes, CANONICAL_AXES)


@dataclass(frozen=True)
class Oriented:
    """The input's voxels reoriented to a grid's axes, before resampling: enough to resample and to go back."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    affine: np.ndarray
    """4x4 (D, H, W) index -> world (RAS mm) affine of the reoriented input."""


SAME_SPACING = 1e-6
"""Relative difference below which an input's spacing counts as the grid's own (NIfTI stores voxel sizes as float32,
so a file written at 0.76 mm reads back as 0.7599999904...): resampling is then the identity, exactly."""


def oriented(info: CanonicalInfo, grid: Grid) -> Oriented:
    """The shape, spacing and affine of the input reoriented to ``grid``'s axes (from its canonical info); a
    spacing within `SAME_SPACING` of the grid's is taken as the grid's."""
    axes = grid.axes
    source_of = np.argsort(_transform(CANONICAL_AXES, axes)[:, 0])
    shape = tuple(int(info.shape[s]) for s in source_of)
    spacing = tuple(
        t if abs(float(info.spacing[s]) - t) <= SAME_SPACING * t else float(info.spacing[s])
        for s, t in zip(source_of, grid.spacing, strict=True)
    )
    affine = np.asarray(info.affine, dtype=np.float64)
    if axes != CANONICAL_AXES:
        affine = affine @ nio.inv_ornt_aff(_transform(CANONICAL_AXES, axes), info.shape)
    return Oriented(shape, spacing, affine)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ resampling


def check_size(info: CanonicalInfo, grid: Grid, where: str) -> None:
    """Before resampling: the working grid's size within `ccq.limits` (`ccq.limits.check_grid`)."""
    src = oriented(info, grid)
    limits.check_grid(src.shape, src.spacing, grid.spacing, where)


def to_working(
    canonical: np.ndarray, info: CanonicalInfo, grid: Grid, *, order: int, shape: Sequence[int] | None = None
) -> np.ndarray:
    """A canonical ``[..., z, y, x]`` array on the working grid ``[..., D, H, W]`` (`ccq.data.geometry.resample`
    in the grid's axis order; ``shape`` as there). Callers check the size first (`check_size`)."""
    src = oriented(info, grid)
    return geometry.resample(orient(canonical, grid.axes), src.spacing, grid.spacing, order=order, shape=shape)


def working_affine(info: CanonicalInfo, grid: Grid) -> np.ndarray:
    """The working grid's 4x4 (D, H, W) index -> world (RAS mm) affine."""
    src = oriented(info, grid)
    return geometry.affine_after_resample(src.affine, src.spacing, grid.spacing)


def to_input_grid(array: np.ndarray, info: CanonicalInfo, grid: Grid, *, order: int) -> np.ndarray:
    """Map a working-grid array ``[..., D, H, W]`` back onto the input file's exact voxel grid (its voxel order and
    shape); order 0 for label maps, 1 for probabilities. Inverse of `to_working` up to interpolation."""
    src = oriented(info, grid)
    back = geometry.resample(array, grid.spacing, src.spacing, order=order, shape=src.shape)
    return geometry.from_canonical(np.ascontiguousarray(unorient(back, grid.axes)), info)


# ------------------------------------------------------------------------------------------------ grouping


def group_by_grid(items: Sequence[Any], grid_of: Any) -> list[tuple[Grid, list[Any]]]:
    """``items`` grouped by ``grid_of(item)``, groups in the order of their first item, items in their order."""
    groups: dict[Grid, list[Any]] = {}
    for item in items:
        groups.setdefault(grid_of(item), []).append(item)
    return list(groups.items())
