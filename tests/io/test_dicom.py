"""DICOM series: HU through rescale slope/intercept, SimpleITK's LPS geometry as a voxel -> RAS affine."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from ccq.errors import CCQError
from ccq.io import IntensityWarning, find_cases, ras_affine, read_dicom_series, series_ids
from tests.io.series import oblique_direction, write_dicom_series


def _hu(shape=(9, 7, 5)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.integers(-1000, 1500, size=shape) + 0.5 * rng.integers(0, 2, size=shape)).astype(np.float64)


def test_values_are_hu_and_the_affine_maps_voxels_to_ras(tmp_path: Path) -> None:
    import SimpleITK as sitk

    hu, direction = _hu(), oblique_direction()
    folder = write_dicom_series(tmp_path / "s", hu, direction=direction, slope=0.5, intercept=-1024)
    volume = read_dicom_series(folder)
    assert volume.array.shape == hu.shape and volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array, hu.astype(np.float32))  # stored / 2 - 1024 read back exactly
    assert volume.modality == "CT" and volume.header is None
    reference = sitk.ReadImage(sorted(str(p) for p in folder.iterdir()))
    for index in [(0, 0, 0), (8, 0, 0), (0, 6, 0), (0, 0, 4), (8, 6, 4), (3, 2, 1)]:
        lps = np.array(reference.TransformIndexToPhysicalPoint(index))
        ras = volume.affine @ np.array([*index, 1.0])
        np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-4)


def test_ras_affine_of_an_axial_series() -> None:
    affine = ras_affine((0.7, 0.8, 2.5), (-100.0, -50.0, 30.0), np.eye(3).ravel())
    expected = np.array([[-0.7, 0, 0, 100], [0, -0.8, 0, 50], [0, 0, 2.5, 30], [0, 0, 0, 1]])
    np.testing.assert_allclose(affine, expected)


def test_several_series_need_a_choice(tmp_path: Path) -> None:
    folder = tmp_path / "two"
    write_dicom_series(folder, _hu(), series_uid="1.2.3.4.1")
    write_dicom_series(folder, _hu((6, 6, 4)) + 1, series_uid="1.2.3.4.2")
    assert sorted(series_ids(folder)) == ["1.2.3.4.1", "1.2.3.4.2"]
    with pytest.raises(CCQError, match=r"holds 2 DICOM series \(1\.2\.3\.4\.1, 1\.2\.3\.4\.2\); choose one with"):
        find_cases(folder)
    [case] = find_cases(folder, series="1.2.3.4.2")
    assert case.kind == "dicom" and case.series == "1.2.3.4.2" and case.name == "two"
    assert read_dicom_series(folder, "1.2.3.4.2").array.shape == (6, 6, 4)
    with pytest.raises(CCQError, match="no DICOM series '9.9'; the folder holds"):
        find_cases(folder, series="9.9")


def test_a_single_slice_is_refused(tmp_path: Path) -> None:
    folder = write_dicom_series(tmp_path / "one", _hu((8, 8, 1)))
    with pytest.raises(CCQError, match="1 slice; expected a 3D volume"):
        read_dicom_series(folder)


def test_other_modality_warns(tmp_path: Path) -> None:
    folder = write_dicom_series(tmp_path / "mr", _hu(), modality="MR")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_dicom_series(folder)
    assert any(issubclass(w.category, IntensityWarning) and "modality 'MR'" in str(w.message) for w in caught)


def test_the_series_size_is_checked_before_its_pixels_are_read(tmp_path: Path, monkeypatch) -> None:
    folder = write_dicom_series(tmp_path / "s", _hu())
    monkeypatch.setenv("CCQ_MAX_VOXELS", "300")
    with pytest.raises(CCQError, match=r"DICOM series .* holds 9 x 7 x 5 = 315 voxels; expected at most 300"):
        read_dicom_series(folder)
    [case] = find_cases(folder)
    from ccq.io.inputs import probe_case

    with pytest.raises(CCQError, match="315 voxels"):
        probe_case(case)  # before anything is predicted or written


def test_a_folder_without_dicom_is_one_line_without_itk_warnings(tmp_path: Path, capfd) -> None:
    (tmp_path / "notes.txt").write_text("no images")
    with pytest.raises(CCQError, match="no .nii.gz/.nii files and no DICOM series"):
        find_cases(tmp_path)
    assert "WARNING" not in capfd.readouterr().err
