"""Working grids: axis codes, the reorientation to a grid's axes (against nibabel), its affine, the way back."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from nibabel import orientations as nio

from ccq.data import geometry
from ccq.data import grid as working
from ccq.data.grid import CANONICAL_AXES, Grid, check_axes, entry_grid, group_by_grid
from ccq.errors import CCQError

ALL_AXES = ["".join(p) for pair in itertools.product("LR", "AP", "SI") for p in itertools.permutations(pair)]


def test_there_are_48_axis_codes_and_all_are_accepted() -> None:
    assert len(set(ALL_AXES)) == 48
    assert all(check_axes(a) is None for a in ALL_AXES)


@pytest.mark.parametrize("bad", ["SP", "SPLX", "SSL", "LRS", "SPQ", "", "spl!"])
def test_bad_axis_codes_are_refused(bad: str) -> None:
    assert check_axes(bad) is not None
    with pytest.raises(CCQError, match="grid: axes: expected"):
        Grid(spacing=(1.0, 1.0, 1.0), axes=bad)


def test_grid_reads_and_writes_json() -> None:
    grid = Grid.from_dict({"spacing": [0.76, 0.76, 3], "axes": "ipl"})
    assert grid == Grid(spacing=(0.76, 0.76, 3.0), axes="IPL") and grid.axes == "IPL"
    assert Grid.from_dict(grid.to_dict()) == grid
    assert grid.describe() == "0.76 x 0.76 x 3 mm, axes IPL"
    assert grid.axis_words() == {"D": "superior -> inferior", "H": "anterior -> posterior", "W": "right -> left"}
    assert Grid(spacing=(1.5, 0.8, 0.8)).is_canonical and not grid.is_canonical
    with pytest.raises(CCQError, match=r"grid: spacing: expected three positive numbers"):
        Grid(spacing=(0.0, 1.0, 1.0))


@pytest.mark.parametrize("axes", ALL_AXES)
def test_orient_is_nibabels_orientation_transform(axes: str) -> None:
    """A canonical array (axes S, P, L) reoriented to ``axes`` = nibabel's apply_orientation, and back."""
    canonical = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # a channel axis, then z, y, x
    ours = working.orient(canonical, axes)
    ornt = nio.ornt_transform(nio.axcodes2ornt(tuple(CANONICAL_AXES)), nio.axcodes2ornt(tuple(axes)))
    expected = np.stack([nio.apply_orientation(c, ornt) for c in canonical])
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(working.unorient(ours, axes), canonical)


@pytest.mark.parametrize("axes", ["SPL", "SLP", "IPL", "RAS", "PIR"])
def test_oriented_affine_puts_every_voxel_where_the_canonical_one_is(axes: str) -> None:
    """Index -> world of the reoriented array agrees with the canonical array's, voxel for voxel."""
    file_affine = np.array([[0, 0, -0.9, 10], [0, -0.8, 0, 20], [-2.5, 0, 0, 30], [0, 0, 0, 1]])
    shape = (6, 7, 8)
    canon, info = geometry.to_canonical(np.arange(np.prod(shape), dtype=np.float32).reshape(shape), file_affine)
    grid = Grid(spacing=(1.0, 1.0, 1.0), axes=axes)
    src = working.oriented(info, grid)
    array = working.orient(canon, axes)
    assert array.shape == src.shape
    idx = np.array([[0, 0, 0], [1, 2, 3], [n - 1 for n in array.shape]])
    for point in idx:
        value = array[tuple(point)]
        file_index = np.argwhere(np.arange(np.prod(shape)).reshape(shape) == value)[0]
        np.testing.assert_allclose(src.affine @ [*point, 1], file_affine @ [*file_index, 1], atol=1e-9)
    codes = nio.aff2axcodes(src.affine)
    assert "".join(codes) == axes
    np.testing.assert_allclose(np.linalg.norm(src.affine[:3, :3], axis=0), src.spacing)


@pytest.mark.parametrize("axes", ["SPL", "SLP", "IPL", "ALI"])
def test_labels_go_to_the_working_grid_and_back_exactly(axes: str) -> None:
    """Nearest-neighbour to a grid at half the spacing (each voxel becomes 2x2x2) and back: the same labels."""
    file_affine = np.array([[-2.0, 0, 0, 0], [0, -2.0, 0, 0], [0, 0, 3.0, 0], [0, 0, 0, 1]])
    label = np.random.default_rng(0).integers(0, 3, size=(5, 6, 7)).astype(np.uint8)
    canon, info = geometry.to_canonical(label, file_affine)
    src_spacing = working.oriented(info, Grid(spacing=(1, 1, 1), axes=axes)).spacing
    grid = Grid(spacing=tuple(s / 2 for s in src_spacing), axes=axes)
    on_grid = working.to_working(canon, info, grid, order=0)
    assert on_grid.shape == tuple(2 * n for n in working.oriented(info, grid).shape)
    np.testing.assert_array_equal(working.to_input_grid(on_grid, info, grid, order=0), label)
    world = working.working_affine(info, grid)
    # Voxel (0, 0, 0) of the working grid is the first quarter of the input voxel at the grid's first corner.
    corner = working.oriented(info, grid).affine @ [-0.25, -0.25, -0.25, 1]
    np.testing.assert_allclose(world @ [0, 0, 0, 1], corner, atol=1e-9)


def test_a_spacing_within_float32_noise_of_the_grid_is_not_resampled() -> None:
    """NIfTI stores voxel sizes in float32: 0.76 mm reads back as 0.7599999904... and must count as 0.76."""
    spacing32 = float(np.float32(0.76))
    affine = np.diag([-spacing32, -spacing32, 3.0, 1.0])
    image = np.random.default_rng(1).normal(size=(9, 8, 7)).astype(np.float32)
    canon, info = geometry.to_canonical(image, affine)
    grid = Grid(spacing=(3.0, 0.76, 0.76))
    np.testing.assert_array_equal(working.to_working(canon, info, grid, order=3), canon)


def test_old_prepared_entries_mean_the_canonical_grid() -> None:
    assert entry_grid({"spacing": [1.5, 0.8, 0.8]}) == Grid(spacing=(1.5, 0.8, 0.8), axes="SPL")
    stored = {"spacing": [0.76, 0.76, 3.0], "grid": {"spacing": [0.76, 0.76, 3.0], "axes": "IPL"}}
    assert entry_grid(stored) == Grid(spacing=(0.76, 0.76, 3.0), axes="IPL")


def test_grouping_keeps_the_order_of_first_appearance() -> None:
    a, b = Grid(spacing=(1, 1, 1)), Grid(spacing=(1, 1, 1), axes="IPL")
    grids = {"liver": a, "kidney": b, "spleen": a, "lung": b, "colon": a}
    groups = group_by_grid(list(grids), grids.get)
    assert groups == [(a, ["liver", "spleen", "colon"]), (b, ["kidney", "lung"])]
