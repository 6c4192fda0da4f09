"""Whole-case prediction: outputs on the input's exact grid (shape, affine, orientation), not overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import typer
from torch import nn
from typer.testing import CliRunner

from ccq.cli.predict import predict
from ccq.errors import CCQError
from ccq.inference.predictor import Predictor, predict_case

# File voxel axes (i, j, k) with spacing 2.5, 2.5, 3.0 mm = the checkpoint's (z, y, x) spacing (3, 2.5, 2.5):
# preparing resamples nothing, so a pointwise model's output must come back exactly onto the file's voxels.
AFFINES = {
    "ras": np.array([[2.5, 0, 0, -30], [0, 2.5, 0, 12], [0, 0, 3.0, 40], [0, 0, 0, 1]]),
    "lps": np.array([[-2.5, 0, 0, 30], [0, -2.5, 0, -12], [0, 0, 3.0, 40], [0, 0, 0, 1]]),
    # KiTS19-like: slices on the first voxel axis, pointing inferior.
    "kits": np.array([[0, 0, -2.5, 30], [0, -2.5, 0, 12], [-3.0, 0, 0, 40], [0, 0, 0, 1]]),
}


def _ct(shape=(30, 26, 12)) -> np.ndarray:
    """HU volume in file voxel order: air, an asymmetric 'organ' block (200 HU) holding a 'tumor' (320 HU)."""
    hu = np.full(shape, -800, dtype=np.int16)
    hu[2:11, 14:24, 1:6] = 200
    hu[3:6, 15:18, 2:4] = 320
    hu[20:28, 3:9, 7:11] = 200
    return hu


def _write(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))
    return path


class Threshold(nn.Module):
    """organ logit > 0 where the windowed HU > 0.3 (97.5 HU), tumor where > 0.9 (292.5 HU): voxelwise."""

    def __init__(self, patch) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.config = type("C", (), {"patch_size": patch})()

    def forward_all_tasks(self, x: torch.Tensor, tasks: torch.Tensor) -> torch.Tensor:
        organ, tumor = 40 * (x - 0.3), 40 * (x - 0.9)
        out = torch.stack([organ, tumor], dim=1)[:, None]  # [B, 1, 2, 1, D, H, W]
        return out[:, :, :, 0].expand(-1, tasks.numel(), -1, -1, -1, -1)


@pytest.mark.parametrize("orientation", sorted(AFFINES))
def test_labels_land_on_the_input_voxels(tiny_checkpoint: Path, tmp_path: Path, orientation: str) -> None:
    hu = _ct()
    path = _write(tmp_path / f"{orientation}.nii.gz", hu, AFFINES[orientation])
    predictor = Predictor(tiny_checkpoint)
    predictor.model = Threshold(predictor.model_config.patch_size)
    prediction = predictor.predict(path, "liver,colon")
    liver, colon = prediction.labels["liver"], prediction.labels["colon"]
    expected_liver = np.where(hu > 292.5, 2, np.where(hu > 97.5, 1, 0))
    assert liver.shape == hu.shape and liver.dtype == np.uint8
    np.testing.assert_array_equal(liver, expected_liver)
    np.testing.assert_array_equal(colon, (hu > 292.5).astype(np.uint8))  # colon labels its tumor as 1
    np.testing.assert_array_equal(prediction.affine, nib.load(str(path)).affine)


def test_predict_case_with_a_real_model_keeps_the_shape(tiny_checkpoint: Path, tmp_path: Path) -> None:
    affine = np.array([[-1.7, 0, 0, 30], [0, -1.9, 0, -12], [0, 0, 2.2, 40], [0, 0, 0, 1]])  # resampled
    path = _write(tmp_path / "case.nii.gz", _ct((21, 17, 9)), affine)
    labels = predict_case(tiny_checkpoint, path, tasks=["spleen", 0])
    assert set(labels) == {"spleen", "liver"}
    assert labels["spleen"].shape == (21, 17, 9) and set(np.unique(labels["spleen"])) <= {0, 1}
    assert set(np.unique(labels["liver"])) <= {0, 1, 2}


def test_unknown_task_is_a_one_line_error(tiny_checkpoint: Path) -> None:
    with pytest.raises(CCQError, match="did you mean 'liver'"):
        Predictor(tiny_checkpoint).resolve_tasks("livr")


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(predict)
    app.command("noop")(lambda: None)  # two commands: typer then expects the command name
    return app


def test_predict_cli_writes_outputs_like_the_inputs(tiny_checkpoint: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("ras", "lps"):
        _write(inputs / f"{name}_case.nii.gz", _ct((20, 18, 8)), AFFINES[name])
    out = tmp_path / "out"
    runner = CliRunner()
    args = ["predict", "-i", str(inputs), "-o", str(out), "--model", str(tiny_checkpoint), "--tasks",
            "liver,colon", "--no-progress"]  # fmt: skip
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    for name in ("ras", "lps"):
        source = nib.load(str(inputs / f"{name}_case.nii.gz"))
        for task in ("liver", "colon"):
            written = nib.load(str(out / f"{name}_case" / f"{task}.nii.gz"))
            assert written.shape == source.shape
            np.testing.assert_array_equal(written.affine, source.affine)
            assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(source.affine)
            assert int(written.header["sform_code"]) == 1 and written.get_data_dtype() == np.uint8
        labels = json.loads((out / f"{name}_case" / "labels.json").read_text())
        assert labels["tasks"]["liver"]["labels"] == {"0": "background", "1": "liver", "2": "liver tumor"}
        assert labels["tasks"]["colon"]["labels"] == {"0": "background", "1": "colon tumor"}
    assert not [p for p in out.rglob(".tmp-*")]

    before = (out / "ras_case" / "liver.nii.gz").stat().st_mtime_ns
    again = runner.invoke(_app(), args)
    assert again.exit_code != 0 and isinstance(again.exception, CCQError)
    assert "--overwrite" in str(again.exception)
    assert (out / "ras_case" / "liver.nii.gz").stat().st_mtime_ns == before
    assert runner.invoke(_app(), [*args, "--overwrite"]).exit_code == 0


def test_predict_cli_refuses_a_missing_input(tiny_checkpoint: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        _app(), ["predict", "-i", str(tmp_path / "nope.nii.gz"), "-o", str(tmp_path / "o"), "--model",
                 str(tiny_checkpoint)],
    )  # fmt: skip
    assert result.exit_code != 0 and "no such file" in str(result.exception)
