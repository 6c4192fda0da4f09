"""What -i accepts, and the one-line errors for what it does not; in-memory volumes for the Python API."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ccq.errors import CCQError
from ccq.io import IntensityWarning, as_image_volume, check_ct_values, find_cases, read_nifti
from ccq.io.inputs import probe_case

AFFINE = np.diag([0.8, 0.8, 2.0, 1.0])


def _nifti(path: Path, shape=(6, 5, 4), affine=AFFINE) -> Path:
    nib.save(nib.Nifti1Image(np.full(shape, -100, dtype=np.int16), affine), str(path))
    return path


def test_a_file_a_folder_of_files_and_their_names(tmp_path: Path) -> None:
    a, b = _nifti(tmp_path / "b_case.nii.gz"), _nifti(tmp_path / "a_case.nii")
    (tmp_path / "notes.txt").write_text("x")
    assert [(c.name, c.kind) for c in find_cases(a)] == [("b_case", "nifti")]
    assert [c.path for c in find_cases(tmp_path)] == [b, a]
    _nifti(tmp_path / "a_case.nii.gz")
    with pytest.raises(CCQError, match="appear as both .nii and .nii.gz"):
        find_cases(tmp_path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "absent.nii.gz", "no such file or folder"),
        (lambda d: (d / "ct.png").write_bytes(b"\x89PNG") and d / "ct.png", "not a NIfTI file name"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "no .nii.gz/.nii files and no DICOM series"),
    ],
)
def test_what_is_not_an_input(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(CCQError, match=message):
        find_cases(make(tmp_path))


def test_unreadable_2d_4d_and_single_slice_files(tmp_path: Path) -> None:
    (tmp_path / "junk.nii.gz").write_bytes(b"not a nifti at all")
    cases = {
        "junk.nii.gz": "cannot read image",
        "flat.nii.gz": "has shape \\(6, 5\\); expected a 3D volume",
        "series.nii.gz": "has shape \\(6, 5, 4, 3\\); expected a 3D volume",
        "slice.nii.gz": "a single slice",
    }
    nib.save(nib.Nifti1Image(np.zeros((6, 5), np.int16), AFFINE), str(tmp_path / "flat.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 4, 3), np.int16), AFFINE), str(tmp_path / "series.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 1), np.int16), AFFINE), str(tmp_path / "slice.nii.gz"))
    for name, message in cases.items():
        [case] = find_cases(tmp_path / name)
        with pytest.raises(CCQError, match=message):
            probe_case(case)
        with pytest.raises(CCQError, match=message):
            read_nifti(tmp_path / name)


def test_a_trailing_singleton_axis_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "x.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(120, dtype=np.int16).reshape(6, 5, 4, 1), AFFINE), str(path))
    volume = read_nifti(path)
    assert volume.array.shape == (6, 5, 4) and volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.affine, nib.load(str(path)).affine)
    assert int(volume.header["sform_code"]) == int(nib.load(str(path)).header["sform_code"])


def test_in_memory_forms(tmp_path: Path) -> None:
    data = np.arange(120, dtype=np.int16).reshape(6, 5, 4)
    img = nib.Nifti1Image(data, AFFINE)
    path = _nifti(tmp_path / "c.nii")
    for volume in (as_image_volume(img), as_image_volume((data, AFFINE)), as_image_volume(path)):
        assert volume.array.shape == (6, 5, 4)
        np.testing.assert_allclose(volume.affine, AFFINE, atol=1e-6)  # a file stores float32
    with pytest.raises(CCQError, match="expected a 3D volume"):
        as_image_volume((np.zeros((4, 4)), AFFINE))
    with pytest.raises(CCQError, match="not an invertible 4x4"):
        as_image_volume((data, np.zeros((4, 4))))
    with pytest.raises(CCQError, match="expected a NIfTI path, a DICOM folder"):
        as_image_volume(42)


def test_intensities_that_are_not_hu_warn_and_nan_fails() -> None:
    ct = np.array([-1000.0, 0.0, 400.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_ct_values(ct, "ct") == (-1000.0, 400.0)  # no warning
    for values in (np.array([0.0, 0.5, 1.0]), np.array([0.0, 200.0, 255.0]), np.array([-1000.0, -900.0])):
        with pytest.warns(IntensityWarning, match="not like a CT in Hounsfield units"):
            check_ct_values(values, "ct")
    with pytest.raises(CCQError, match="1 NaN/inf voxels"):
        check_ct_values(np.array([0.0, np.nan]), "ct")
