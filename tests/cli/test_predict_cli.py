"""`ccq predict`: NIfTI files, folders and DICOM series in; label maps on the input's grid, labels.json,
probabilities and pictures out; one-line errors with nothing written; nothing replaced without --overwrite."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from ccq.cli import app
from ccq.data.preprocessing import PreprocessingConfig
from ccq.errors import CCQError
from tests.io.series import write_dicom_series
from tests.tiny import save_tiny_checkpoint

PRE = PreprocessingConfig(spacing=(3.0, 2.5, 2.5), patch_size=(16, 32, 32))
RAS = np.array([[2.5, 0, 0, -30], [0, 2.5, 0, 12], [0, 0, 3.0, 40], [0, 0, 0, 1]])
LPS = np.array([[-2.5, 0, 0, 30], [0, -2.5, 0, -12], [0, 0, 3.0, 40], [0, 0, 0, 1]])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "model", PRE, source="test")


def ct(shape=(20, 18, 8)) -> np.ndarray:
    hu = np.full(shape, -800, dtype=np.int16)
    hu[2:11, 4:14, 1:6] = 200
    hu[3:6, 5:8, 2:4] = 320
    return hu


def write(path: Path, data: np.ndarray, affine: np.ndarray = RAS) -> Path:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))
    return path


def run(*args: str):
    return CliRunner().invoke(app, ["predict", *args, "--no-progress"])


def test_a_folder_of_niftis(checkpoint: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, affine in (("ras", RAS), ("lps", LPS)):
        write(inputs / f"{name}_case.nii.gz", ct(), affine)
    out = tmp_path / "out"
    args = ["-i", str(inputs), "-o", str(out), "--model", str(checkpoint), "--tasks", "liver,colon"]
    result = run(*args)
    assert result.exit_code == 0, result.output
    for name in ("ras", "lps"):
        source = nib.load(str(inputs / f"{name}_case.nii.gz"))
        for task in ("liver", "colon"):
            written = nib.load(str(out / f"{name}_case" / f"{task}.nii.gz"))
            assert written.shape == source.shape and written.get_data_dtype() == np.uint8
            np.testing.assert_allclose(written.affine, source.affine, atol=1e-4)
            assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(source.affine)
            assert int(written.header["sform_code"]) == 1
        labels = json.loads((out / f"{name}_case" / "labels.json").read_text())
        assert labels["tasks"]["liver"]["labels"] == {"0": "background", "1": "liver", "2": "liver tumor"}
        assert labels["tasks"]["colon"]["labels"] == {"0": "background", "1": "colon tumor"}
        assert labels["tasks"]["liver"]["postprocess"]["organ_components"] == 1
        assert labels["postprocess"] == "official" and labels["tta"] is False and labels["device"] == "cpu"
        assert labels["input"] == str(inputs / f"{name}_case.nii.gz")
    assert not [p for p in out.rglob("*.tmp-*")]

    before = (out / "ras_case" / "liver.nii.gz").stat().st_mtime_ns
    again = run(*args)
    assert again.exit_code != 0 and isinstance(again.exception, CCQError)
    assert "--overwrite" in str(again.exception)
    assert (out / "ras_case" / "liver.nii.gz").stat().st_mtime_ns == before
    assert run(*args, "--overwrite").exit_code == 0


def test_a_dicom_series_and_its_choice(checkpoint: Path, tmp_path: Path) -> None:
    from ccq.io import read_dicom_series

    folder = tmp_path / "study"
    hu = ct().astype(np.float64)
    write_dicom_series(folder, hu, spacing=(2.5, 2.5, 3.0), series_uid="1.2.3.9.1")
    write_dicom_series(folder, hu[:10], spacing=(2.0, 2.0, 3.0), series_uid="1.2.3.9.2")
    out = tmp_path / "out"
    result = run("-i", str(folder), "-o", str(out), "--model", str(checkpoint), "--tasks", "spleen")
    assert isinstance(result.exception, CCQError)
    assert "1.2.3.9.1, 1.2.3.9.2" in str(result.exception) and "--series" in str(result.exception)
    assert not out.exists()
    result = run("-i", str(folder), "-o", str(out), "--model", str(checkpoint), "--tasks", "spleen",
                 "--series", "1.2.3.9.2", "--postprocess", "none")  # fmt: skip
    assert result.exit_code == 0, result.output
    written = nib.load(str(out / "study" / "spleen.nii.gz"))
    assert written.shape == (10, 18, 8)
    np.testing.assert_allclose(written.affine, read_dicom_series(folder, "1.2.3.9.2").affine, atol=1e-4)
    assert json.loads((out / "study" / "labels.json").read_text())["series"] == "1.2.3.9.2"


def test_probabilities_and_overlays(checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("ccq.viz.overlays", reason="the overlay renderer is not there yet")
    path = write(tmp_path / "case.nii.gz", ct())
    out = tmp_path / "out"
    result = run("-i", str(path), "-o", str(out), "-m", str(checkpoint), "--tasks", "liver", "--tasks", "lung",
                 "--save-probabilities", "--overlays", "--postprocess", "none")  # fmt: skip
    assert result.exit_code == 0, result.output
    with np.load(out / "case" / "liver_probabilities.npz") as npz:
        assert sorted(npz.files) == ["affine", "organ", "tumor"]
        assert npz["organ"].shape == (20, 18, 8) and npz["organ"].dtype == np.float16
        np.testing.assert_allclose(npz["affine"], RAS)
        # The label map is the thresholded probabilities (no post-processing here).
        label = np.asarray(nib.load(str(out / "case" / "liver.nii.gz")).dataobj)
        np.testing.assert_array_equal(label >= 1, (npz["organ"] > 0.5) | (npz["tumor"] > 0.5))
    with np.load(out / "case" / "lung_probabilities.npz") as npz:
        assert sorted(npz.files) == ["affine", "tumor"]  # lung labels only its tumour
    labels = json.loads((out / "case" / "labels.json").read_text())
    assert labels["tasks"]["liver"]["probabilities"]["file"] == "liver_probabilities.npz"
    assert labels["overlays"] and all((out / "case" / p).is_file() for p in labels["overlays"])
    assert (out / "case" / "overlays" / "overview.png").is_file()


def test_non_ct_intensities_warn_and_go_on(checkpoint: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "mr.nii.gz", (ct() + 800).astype(np.int16) // 4)  # 0..280: no air
    result = run("-i", str(path), "-o", str(tmp_path / "out"), "-m", str(checkpoint), "--tasks", "spleen")
    assert result.exit_code == 0, result.output
    assert "ccq: warning: image" in result.output and "not like a CT in Hounsfield units" in result.output
    assert (tmp_path / "out" / "mr" / "spleen.nii.gz").is_file()


def _bad_inputs(tmp_path: Path, checkpoint: Path) -> dict[str, tuple[list[str], str]]:
    good = write(tmp_path / "good.nii.gz", ct())
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "fake.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    nib.save(nib.Nifti1Image(np.zeros((8, 8), np.int16), RAS), str(tmp_path / "flat.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4, 2), np.int16), RAS), str(tmp_path / "series.nii.gz"))
    with open(tmp_path / "model.pth", "wb") as fh:
        pickle.dump({"state_dict": {}}, fh)
    (tmp_path / "not-a-checkpoint").mkdir()
    model = ["-m", str(checkpoint)]
    return {
        "text file": (["-i", str(tmp_path / "notes.txt"), *model], "not a NIfTI file name"),
        "unreadable": (["-i", str(tmp_path / "fake.nii.gz"), *model], "cannot read image"),
        "2D": (["-i", str(tmp_path / "flat.nii.gz"), *model], "expected a 3D volume"),
        "4D": (["-i", str(tmp_path / "series.nii.gz"), *model], "expected a 3D volume"),
        "unknown task": (["-i", str(good), *model, "--tasks", "liver,pancreatic"], "did you mean 'pancreas'?"),
        "pickle model": (["-i", str(good), "-m", str(tmp_path / "model.pth")], "ccq never unpickles"),
        "other folder": (["-i", str(good), "-m", str(tmp_path / "not-a-checkpoint")], "has no checkpoint.json"),
        "bad preset": (["-i", str(good), *model, "--postprocess", "best"], "expected one of official, none"),
    }


def test_bad_inputs_are_one_line_errors_with_nothing_written(checkpoint: Path, tmp_path: Path) -> None:
    for what, (args, message) in _bad_inputs(tmp_path, checkpoint).items():
        out = tmp_path / f"out-{what.replace(' ', '-')}"
        result = run(*args, "-o", str(out))
        assert isinstance(result.exception, CCQError), (what, result.output)
        assert message in str(result.exception) and "\n" not in str(result.exception), what
        assert not out.exists(), what


def test_the_real_command_line_exits_2_with_one_line(checkpoint: Path, tmp_path: Path) -> None:
    args, message = _bad_inputs(tmp_path, checkpoint)["unknown task"]
    proc = subprocess.run(
        [sys.executable, "-m", "ccq", "predict", *args, "-o", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ccq: error: ") and message in lines[0]
    assert not (tmp_path / "out").exists()
