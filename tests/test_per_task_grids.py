"""Per-task working grids end to end on phantoms, through the command line: a collection whose two tasks work on
two grids (different spacings, different axes) is prepared, trained a few iterations, predicted (every task, one
pass per grid) and evaluated (the mots definition on each task's own grid)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from ccq.cli import app
from ccq.data.cache import PreparedDataset
from ccq.data.grid import Grid, entry_grid

PREPROCESSING = {  # liver on the canonical axes; kidney slices first, pointing down, left-right last, finer
    "spacing": [3.0, 2.25, 2.25],
    "patch_size": [16, 32, 32],
    "task_grids": {"kidney": {"spacing": [2.25, 2.25, 2.5], "axes": "IPL"}},
}
LIVER = Grid(spacing=(3.0, 2.25, 2.25), axes="SPL")
KIDNEY = Grid(spacing=(2.25, 2.25, 2.5), axes="IPL")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ccq(*args: object) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_two_grids_prepare_train_predict_evaluate(tmp_path: Path) -> None:
    raw, prepared, run = tmp_path / "raw", tmp_path / "prepared", tmp_path / "run"
    ccq("phantom", "--out", raw, "--tasks", "liver,kidney", "--cases", 3, "--test-cases", 1, "--shape", 24, 48, 48)
    (tmp_path / "pre.json").write_text(json.dumps(PREPROCESSING))
    ccq("prepare", "--collection", raw / "collection.yaml", "--preprocessing", tmp_path / "pre.json", "--out",
        prepared, "--no-progress")  # fmt: skip

    dataset = PreparedDataset(prepared)
    for entry in dataset:
        grid = entry_grid(entry)
        assert grid == (KIDNEY if entry["task"] == "kidney" else LIVER)
        # The case's extent (mm) along S/I, A/P, L/R, in the grid's axis order, over the grid's spacing.
        canonical = entry["canonical"]
        extent = [n * s for n, s in zip(canonical["shape"], canonical["spacing"], strict=True)]  # z, y, x
        along = {"S": extent[0], "I": extent[0], "P": extent[1], "A": extent[1], "L": extent[2], "R": extent[2]}
        expected = [round(along[a] / s) for a, s in zip(grid.axes, grid.spacing, strict=True)]
        assert entry["shape"] == expected and list(dataset.image(entry).shape) == expected
        assert entry["grid"] == grid.to_dict()

    settings = tmp_path / "train.json"
    settings.write_text(json.dumps({"model": "tiny", "model_overrides": {}, "val_every": 0, "log_every": 1}))
    ccq("train", "--preset", "demo", "--config", settings, "--data", prepared, "--out", run, "--iterations", 3,
        "--seed", 0, "--no-progress")  # fmt: skip
    model = run / "best"
    meta = json.loads((model / "checkpoint.json").read_text())
    assert meta["preprocessing"]["task_grids"] == PREPROCESSING["task_grids"]  # the grids travel with the weights

    tests = [e for e in dataset.cases(split="test")]
    images = tmp_path / "test-images"
    images.mkdir()
    for entry in tests:
        (images / f"{entry['id']}.nii.gz").symlink_to(entry["source"]["image"])
    ccq("predict", "-i", images, "-o", tmp_path / "pred", "--model", model, "--tasks", "all", "--device", "cpu",
        "--no-progress")  # fmt: skip
    for entry in tests:
        labels = json.loads((tmp_path / "pred" / entry["id"] / "labels.json").read_text())
        assert labels["grids"] == {"liver": LIVER.to_dict(), "kidney": KIDNEY.to_dict()}
        for task in ("liver", "kidney"):
            written = nib.load(str(tmp_path / "pred" / entry["id"] / f"{task}.nii.gz"))
            source = nib.load(entry["source"]["image"])
            assert written.shape == source.shape and np.allclose(written.affine, source.affine)

    # Against the raw labels: each task on the grid the model works on (--preprocessing MODEL) ...
    ccq("evaluate", "--pred", tmp_path / "pred", "--gt", raw, "--collection", raw / "collection.yaml",
        "--preprocessing", model, "--out", tmp_path / "eval-raw", "--no-progress")  # fmt: skip
    raw_summary = json.loads((tmp_path / "eval-raw" / "summary.json").read_text())
    assert raw_summary["grids"] == {"liver": LIVER.to_dict(), "kidney": KIDNEY.to_dict()}
    assert "each task's own working grid" in (tmp_path / "eval-raw" / "table.md").read_text()
    # ... and against the prepared folder (its cases' own grids): the same labels on the same grids, same scores.
    ccq("evaluate", "--pred", tmp_path / "pred", "--gt", prepared, "--cases", "test", "--out",
        tmp_path / "eval-prepared", "--no-progress")  # fmt: skip
    prepared_summary = json.loads((tmp_path / "eval-prepared" / "summary.json").read_text())
    assert prepared_summary["grids"] == raw_summary["grids"]
    for category, scores in raw_summary["categories"].items():
        assert prepared_summary["categories"][category]["dice"] == pytest.approx(scores["dice"], abs=1e-9)
