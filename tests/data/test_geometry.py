"""Geometry: reorientation is exact and invertible, resampling preserves anatomy (volume, position in mm)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import scipy.ndimage as ndi

from ccq.data import geometry
from ccq.data.collection import TaskSpec
from ccq.data.prepare import prepare_case
from ccq.data.preprocessing import PreprocessingConfig
from ccq.errors import CCQError

# Anisotropic 0.7 x 0.7 x 2.5 mm grids in three header conventions; KiTS19 puts the slices on voxel axis 0.
AFFINES = {
    "RAS": (np.array([[0.7, 0, 0, -30], [0, 0.7, 0, -20], [0, 0, 2.5, -40], [0, 0, 0, 1.0]]), (80, 80, 30)),
    "LPS": (np.array([[-0.7, 0, 0, 30], [0, -0.7, 0, 20], [0, 0, 2.5, -40], [0, 0, 0, 1.0]]), (80, 80, 30)),
    "KiTS": (np.array([[0, 0, -0.7, 30], [0, -0.7, 0, 20], [-2.5, 0, 0, 35], [0, 0, 0, 1.0]]), (30, 80, 80)),
}
TASK = TaskSpec(name="ball", id=0, layout="msd", folder="x", labels={0: "bg", 1: "ball"}, organ=(1,), tumor=None)


def world_grid(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(float)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def sphere(affine: np.ndarray, shape: tuple[int, ...], centre: np.ndarray, radius: float) -> np.ndarray:
    return (np.linalg.norm(world_grid(affine, shape) - centre, axis=-1) <= radius).astype(np.uint8)


@pytest.mark.parametrize("name", list(AFFINES))
def test_canonical_round_trip_and_world_positions(name: str) -> None:
    affine, shape = AFFINES[name]
    data = np.random.default_rng(0).random(shape).astype(np.float32)
    zyx, info = geometry.to_canonical(data, affine)
    assert np.array_equal(geometry.from_canonical(zyx, info), data)
    assert info.spacing == pytest.approx((2.5, 0.7, 0.7))
    # Canonical axes point superior, posterior, patient-left (RAS world: +z, -y, -x).
    lin = np.asarray(info.affine)[:3, :3]
    assert lin[2, 0] > 0 and lin[1, 1] < 0 and lin[0, 2] < 0
    # Every voxel keeps its world position.
    w_file = world_grid(affine, shape)
    w_canon = world_grid(np.asarray(info.affine), zyx.shape)
    src = tuple(np.array([3, 5, 7]))
    hit = np.argwhere(np.all(np.isclose(w_canon, w_file[src]), axis=-1))
    assert len(hit) == 1 and zyx[tuple(hit[0])] == data[src]
    # Leading channel axes are carried through the inverse.
    stacked = np.stack([zyx, zyx + 1])
    assert np.array_equal(geometry.from_canonical(stacked, info)[1], data + 1)


def test_cubic_resampling_equals_scipy_spline() -> None:
    vol = np.random.default_rng(1).normal(size=(12, 20, 18)).astype(np.float32)
    spacing, new = (2.5, 0.7, 0.9), (1.5, 0.8, 0.8)
    out = geometry.resample(vol, spacing, new, order=3)
    ratio = np.array(new) / np.array(spacing)
    ref = ndi.affine_transform(
        vol.astype(np.float64),
        ratio,
        offset=0.5 * ratio - 0.5,
        output_shape=out.shape,
        order=3,
        mode="nearest",
    )
    assert out.shape == geometry.target_shape(vol.shape, spacing, new) == (20, 18, 20)
    assert np.allclose(out, ref, atol=1e-4)
    lin = geometry.resample(np.stack([vol, -vol]), spacing, new, order=1)
    assert lin.shape == (2, 20, 18, 20) and np.allclose(lin[0], -lin[1])


@pytest.mark.parametrize("name", list(AFFINES))
def test_sphere_keeps_volume_and_centre(name: str) -> None:
    affine, shape = AFFINES[name]
    radius = 20.0
    centre = (affine @ np.r_[(np.array(shape) - 1) / 2 + 0.3, 1])[:3]
    label = sphere(affine, shape, centre, radius)
    image = label * 300.0 - 100.0 + np.linspace(0, 5, label.size).reshape(shape)
    case = prepare_case((image, affine), (label, affine), TASK, PreprocessingConfig(), case_id=name)
    meta = case.meta
    assert meta["spacing"] == [1.5, 0.8, 0.8] and meta["shape"] == list(case.image.shape)
    true_ml = 4 / 3 * np.pi * radius**3 / 1000
    assert meta["foreground_ml"]["organ"] == pytest.approx(true_ml, rel=0.03)
    assert meta["foreground_voxels"]["tumor"] is None and meta["foreground_bbox"]["tumor"] is None
    aff = np.asarray(meta["affine"])
    got = aff[:3, :3] @ np.argwhere(case.label == 1).mean(axis=0) + aff[:3, 3]
    assert np.all(np.abs(got - centre) < 0.8)  # within one prepared voxel (0.8 mm) on every axis
    assert case.image.dtype == np.float32 and -1.0 <= case.image.min() and case.image.max() <= 1.0


@pytest.mark.parametrize("name", ["LPS", "KiTS"])
def test_prediction_maps_back_onto_the_original_grid(name: str) -> None:
    affine, shape = AFFINES[name]
    centre = (affine @ np.r_[(np.array(shape) - 1) / 2, 1])[:3]
    label = sphere(affine, shape, centre, 18.0)
    case = prepare_case((label * 200.0, affine), (label, affine), TASK, PreprocessingConfig(), case_id=name)
    info = geometry.CanonicalInfo.from_dict(case.meta["canonical"])
    back = geometry.to_original_grid(case.label, info, case.meta["spacing"], order=0)
    assert back.shape == label.shape and back.dtype == np.uint8
    dice = 2 * np.sum(back * label) / (back.sum() + label.sum())
    assert dice > 0.97
    probs = geometry.to_original_grid(
        np.stack([case.label, 1 - case.label]).astype(np.float32), info, case.meta["spacing"], order=1
    )
    assert probs.shape == (2, *shape) and np.allclose(probs.sum(axis=0), 1.0, atol=1e-5)


def test_grid_check_tolerates_float_noise_only() -> None:
    affine, shape = AFFINES["RAS"]
    geometry.check_same_grid(shape, affine, shape, affine + 1e-5, case="c1")
    shifted = affine.copy()
    shifted[0, 3] += 0.5  # 0.7 voxel
    with pytest.raises(CCQError, match=r"case c1: image and label affines differ by 0\.714"):
        geometry.check_same_grid(shape, affine, shape, shifted, case="c1")
    with pytest.raises(CCQError, match=r"case c1: image shape \(80, 80, 30\) != label shape"):
        geometry.check_same_grid(shape, affine, (80, 80, 31), affine, case="c1")
    singular = affine.copy()
    singular[:3, 0] = 0  # pixdim 0 in a header
    with pytest.raises(CCQError, match=r"case c1: image affine .* is singular; expected an invertible"):
        geometry.check_same_grid(shape, singular, shape, singular, case="c1")


def test_load_nifti_refuses_bad_files(tmp_path) -> None:
    affine = np.eye(4)
    ok = tmp_path / "ok.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 1), np.int16), affine), ok)
    data, _ = geometry.load_nifti(ok, what="image", case="c")
    assert data.shape == (4, 5, 6)  # a trailing singleton 4th axis is dropped
    four_d = tmp_path / "4d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 2), np.int16), affine), four_d)
    with pytest.raises(CCQError, match=r"case c: image .*4d.nii.gz has shape \(4, 5, 6, 2\); expected a 3D"):
        geometry.load_nifti(four_d, what="image", case="c")
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"not a nifti file at all")
    with pytest.raises(CCQError, match=r"case c: cannot read label .*junk.nii.gz"):
        geometry.load_nifti(junk, what="label", case="c")


@pytest.mark.parametrize("name", list(AFFINES))
@pytest.mark.parametrize("order", [0, 1, 3])
def test_slab_resampling_equals_the_whole_volume(name: str, order: int) -> None:
    """`resample_slabs` from a reoriented int16 view (no copy) = `resample` of the float32 canonical copy."""
    affine, shape = AFFINES[name]
    stored = np.random.default_rng(1).normal(0, 400, shape).astype(np.int16)
    view, info = geometry.canonical_view(stored, affine)
    copy, same = geometry.to_canonical(stored, affine)
    assert np.shares_memory(view, stored) and np.array_equal(view, copy) and info == same
    new = (1.5, 0.8, 0.8)
    whole = geometry.resample(copy.astype(np.float32) * 2 - 7, info.spacing, new, order=order)
    out = np.full(whole.shape, np.nan, np.float32)
    for z0, slab in geometry.resample_slabs(view, info.spacing, new, order=order, slab=5,
                                            to_float=lambda a: a.astype(np.float32) * 2 - 7):  # fmt: skip
        assert slab.dtype == np.float32 and slab.shape[1:] == whole.shape[1:]
        out[z0 : z0 + len(slab)] = slab
    # float32 rounding of sums of ~30 products of values up to ~3000 (and the dropped weights below 1e-9)
    assert np.abs(out - whole).max() <= (0 if order == 0 else 2e-3)
