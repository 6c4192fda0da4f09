"""Bounded NIfTI reading (`ccq.data.nifti_file`): the same arrays as nibabel, header checks before any voxel."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ccq.data import nifti_file
from ccq.data.nifti_file import read_nifti_file
from ccq.errors import CCQError

AFFINE = np.diag([0.8, 0.8, 2.5, 1.0])


def _save(path: Path, array: np.ndarray, *, slope=None, inter=None, big_endian=False, affine=AFFINE) -> Path:
    img = nib.Nifti1Image(array, affine)
    if big_endian:
        img.header.set_data_dtype(array.dtype.newbyteorder(">"))
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    nib.save(img, str(path))
    return path


CASES = {
    "int16 scaled": (np.arange(-500, 500, dtype=np.int16), {"slope": 0.5, "inter": -1024.0}),
    "uint8": (np.arange(0, 250, dtype=np.uint8), {}),
    "float32": (np.linspace(-1000, 1000, 1000, dtype=np.float32), {}),
    "float64": (np.linspace(-1000, 1000, 1000, dtype=np.float64), {}),
    "int16 big-endian": (np.arange(-500, 500, dtype=np.int16), {"big_endian": True}),
    "int32 scaled": (np.arange(-500, 500, dtype=np.int32), {"slope": 2.0, "inter": 1.0}),
}


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
@pytest.mark.parametrize("kind", list(CASES))
def test_the_same_values_and_types_as_nibabel(tmp_path: Path, kind: str, suffix: str, monkeypatch) -> None:
    monkeypatch.setattr(nifti_file, "_SLAB_VOXELS", 100)  # scaled in 8 slabs of one 10 x 9 slice each
    values, options = CASES[kind]
    rng = np.random.default_rng(0)
    array = rng.choice(values, size=(10, 9, 8))
    path = _save(tmp_path / f"x{suffix}", array, **options)
    reference = nib.load(str(path))
    floats, stored = reference.get_fdata(dtype=np.float32), np.asanyarray(reference.dataobj)
    for as_float, expected in ((True, floats), (False, stored)):
        got, affine, header = read_nifti_file(path, what="image", case="x", as_float=as_float)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert got.flags.f_contiguous == expected.flags.f_contiguous  # the same memory layout
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(affine, reference.affine)
        assert header["sform_code"] == reference.header["sform_code"]


def test_a_trailing_singleton_axis_is_dropped(tmp_path: Path) -> None:
    path = _save(tmp_path / "x.nii.gz", np.ones((4, 5, 6, 1), np.int16))
    assert read_nifti_file(path, what="image")[0].shape == (4, 5, 6)


def test_a_truncated_gz_names_what_is_missing(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(-1000, 1000, (20, 20, 20)).astype(np.int16)  # compresses little
    raw = _save(tmp_path / "x.nii", noise).read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(gzip.compress(raw[:-4000]))  # a complete stream, too short
    with pytest.raises(CCQError, match=r"cannot read the voxels of image .*cut.nii.gz: the file is truncated .*"
                       r"16000 bytes, and the compressed stream ends after 12000"):  # fmt: skip
        read_nifti_file(tmp_path / "cut.nii.gz", what="image")
    (tmp_path / "broken.nii.gz").write_bytes(gzip.compress(raw)[:-30])  # the stream itself cut
    with pytest.raises(CCQError, match=r"cannot read the voxels of image .*broken.nii.gz: .*truncated"):
        read_nifti_file(tmp_path / "broken.nii.gz", what="image")


def test_a_short_nii_is_refused_from_its_size(tmp_path: Path) -> None:
    path = _save(tmp_path / "x.nii", np.ones((20, 20, 20), np.int16))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CCQError, match=r"the file is truncated \(its header declares 20 x 20 x 20 int16 voxels, "
                       r"16000 bytes from byte 352, and the file holds 16252 bytes\)"):  # fmt: skip
        read_nifti_file(path, what="label", case="c")


def _zero_pixdim(path: Path, *, sform: bool) -> Path:
    raw = bytearray(path.read_bytes())
    raw[80:84] = np.float32(0).tobytes()  # pixdim[1]
    raw[252:256] = np.array([1, 1 if sform else 0], dtype=np.int16).tobytes()
    path.write_bytes(bytes(raw))
    return path


def test_a_zero_pixdim_is_refused_unless_an_sform_gives_the_geometry(tmp_path: Path, capfd) -> None:
    path = _zero_pixdim(_save(tmp_path / "x.nii", np.ones((4, 5, 6), np.int16)), sform=False)
    with pytest.raises(CCQError, match=r"header voxel sizes \(pixdim\) \(0, 0.8, 2.5\) with no sform"):
        read_nifti_file(path, what="image")
    path = _zero_pixdim(_save(tmp_path / "y.nii", np.ones((4, 5, 6), np.int16)), sform=True)
    _, affine, _ = read_nifti_file(path, what="image")
    np.testing.assert_allclose(affine, AFFINE)  # the sform's geometry, as written
    assert "pixdim" not in capfd.readouterr().err  # nibabel's repair notices are not printed


def test_values_that_are_not_one_real_number_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.complex64), np.eye(4)), str(path))
    with pytest.raises(CCQError, match=r"holds complex values \(complex64\); expected real numbers"):
        read_nifti_file(path, what="image")
    rgb = np.zeros((4, 4, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(tmp_path / "rgb.nii.gz"))
    with pytest.raises(CCQError, match="holds RGB values; expected one number per voxel"):
        read_nifti_file(tmp_path / "rgb.nii.gz", what="image")


def test_implausible_voxel_sizes_are_refused(tmp_path: Path) -> None:
    path = _save(tmp_path / "x.nii.gz", np.ones((4, 5, 6), np.int16), affine=np.diag([1e6, 1e6, 1e6, 1.0]))
    with pytest.raises(CCQError, match=r"case c: image .*x.nii.gz: voxel sizes \(1e\+06, 1e\+06, 1e\+06\) mm"):
        read_nifti_file(path, what="image", case="c")


def test_a_broken_link_is_named(tmp_path: Path) -> None:
    (tmp_path / "gone.nii.gz").symlink_to(tmp_path / "nowhere.nii.gz")
    with pytest.raises(CCQError, match=r"gone.nii.gz is a broken symbolic link \(to .*nowhere.nii.gz\)"):
        read_nifti_file(tmp_path / "gone.nii.gz", what="image")


def test_the_voxel_limit_applies_before_reading(tmp_path: Path, monkeypatch) -> None:
    path = _save(tmp_path / "x.nii.gz", np.ones((10, 10, 10), np.int16))
    monkeypatch.setenv("CCQ_MAX_VOXELS", "999")
    with pytest.raises(CCQError, match=r"declares 10 x 10 x 10 = 1000 voxels; expected at most 999.*CCQ_MAX_VOXELS"):
        read_nifti_file(path, what="image")
