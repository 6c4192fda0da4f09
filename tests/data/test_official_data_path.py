"""ccq's working arrays for the official grids against an independent re-implementation of the official data path
(tests/data/official_path.py): SimpleITK, scikit-image's resize with the official arguments, the official
transposes, padding and HU window. docs/official-data-path.md says what each step is and how it was checked.

The synthetic cases have an off-centre blob defined in world millimetres: a swapped or flipped axis moves it by
tens of voxels, which the assertions would see (each test also checks that they do)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ccq.data.collection import load_collection
from ccq.data.geometry import load_nifti
from ccq.data.prepare import preprocess_image
from ccq.data.preprocessing import official_data_path
from tests.data import official_path as official

MOTS = load_collection("mots")
OFFICIAL = official_data_path(MOTS.tasks)
RESAMPLING_TOLERANCE = 0.01
"""Windowed units (1 = 325 HU): 3.25 HU. Where both paths resample, they differ by the official rounding to whole
HU (0.5 HU), scikit-image's anti-aliasing Gaussian (sigma = (factor - 1) / 2 voxels on every shrinking axis),
which ccq does not apply, and the boundary mode at the array's edges ('constant' 0 HU / 'reflect' against ccq's
'nearest'; air saturates the window there). Measured: at most 0.002 (MSD) and 0.0052 (KiTS19) on these cases."""

CASES = {
    # name: (task id, file shape, affine, official network array D x H x W). "same": already on the official grid
    # (no resampling on either path: exact); "resampled": both paths resample (whole ratios, so shapes agree).
    "msd-same": (0, (192, 192, 64), official.msd_affine((0.8, 0.8, 1.5))),
    "msd-resampled": (0, (160, 160, 96), official.msd_affine((0.6, 0.6, 1.0))),
    "kits-same": (1, (64, 192, 192), official.kits_affine((0.76, 0.76, 3.0))),
    "kits-resampled": (1, (40, 96, 128), official.kits_affine((1.52, 0.76, 1.5))),
}
EXPECTED_SHAPES = {
    "msd-same": (64, 192, 192),
    "msd-resampled": (64, 120, 120),
    "kits-same": (64, 192, 192),
    "kits-resampled": (80, 96, 64),
}


def arrays(tmp_path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(the official network array, ccq's working array) of one synthetic case."""
    task_id, shape, affine = CASES[name]
    hu, _ = official.ct_volume(shape, affine)
    raw = official.write_nifti(tmp_path / f"{name}.nii.gz", hu, affine)
    official.respace(raw, tmp_path / f"{name}-respaced.nii.gz", task_id, label=False)
    theirs = official.network_input(tmp_path / f"{name}-respaced.nii.gz", task_id, crop=(1, 1, 1))  # no padding
    array, file_affine = load_nifti(raw, what="image", case=name)
    ours, _ = preprocess_image(array, file_affine, OFFICIAL, grid=OFFICIAL.grid(MOTS.task(task_id)))
    return theirs, ours


def assert_discriminating(theirs: np.ndarray, ours: np.ndarray) -> None:
    """A flipped or swapped axis would have failed: the blob lands elsewhere (differences of ~0.5)."""
    for axis in range(3):
        assert np.abs(theirs - np.flip(ours, axis)).max() > 0.3, axis
    if ours.shape[1] == ours.shape[2]:
        assert np.abs(theirs - ours.transpose(0, 2, 1)).max() > 0.3


@pytest.mark.parametrize("name", ["msd-same", "kits-same"])
def test_without_resampling_the_working_array_is_the_official_one(tmp_path: Path, name: str) -> None:
    theirs, ours = arrays(tmp_path, name)
    assert ours.shape == theirs.shape == EXPECTED_SHAPES[name]
    np.testing.assert_array_equal(ours, theirs)  # the same HU, the same window: exactly the same floats
    assert_discriminating(theirs, ours)


@pytest.mark.parametrize("name", ["msd-resampled", "kits-resampled"])
def test_with_resampling_the_working_array_is_the_official_one_within_interpolation(tmp_path: Path, name) -> None:
    theirs, ours = arrays(tmp_path, name)
    assert ours.shape == theirs.shape == EXPECTED_SHAPES[name]
    assert np.abs(ours - theirs).max() <= RESAMPLING_TOLERANCE
    assert_discriminating(theirs, ours)


def test_the_kidney_grid_puts_3_mm_on_an_in_plane_axis(tmp_path: Path) -> None:
    """The official kidney resampling, run on a KiTS19-layout file: the slice axis (voxel i, inferior) ends at
    0.76 mm and the left-right axis (voxel k) at 3 mm, and the header says so (the reading this grid is built on)."""
    import nibabel as nib

    task_id, shape, affine = CASES["kits-resampled"]
    hu, _ = official.ct_volume(shape, affine)
    raw = official.write_nifti(tmp_path / "kits.nii.gz", hu, affine)
    official.respace(raw, tmp_path / "respaced.nii.gz", task_id, label=False)
    written = nib.load(str(tmp_path / "respaced.nii.gz"))
    assert nib.aff2axcodes(written.affine) == ("I", "P", "L")
    np.testing.assert_allclose(np.linalg.norm(written.affine[:3, :3], axis=0), (0.76, 0.76, 3.0), rtol=1e-6)
    assert written.shape == (80, 96, 64)
