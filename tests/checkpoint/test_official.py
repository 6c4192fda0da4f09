"""Converted official checkpoints feed every task what the official code fed it.

`ccq convert-official` writes each task's official working grid (or, with --grid paper, the paper's uniform one);
then `ccq predict` on a CT must give the probabilities the official network gives on the official data path's
array (tests/data/official_path.py, an independent re-implementation), mapped back to the CT's voxels. The
"official network" here is ccq's `official` preset holding the same random weights: its parity with the authors'
code is measured by benchmarks/official_parity.py (4e-13 in float64; its --data-path mode runs this comparison
with the authors' network)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ccq.checkpoint import read_checkpoint_meta
from ccq.checkpoint.official import ConvertOptions, convert_official_checkpoint
from ccq.cli import app
from ccq.data.grid import Grid
from ccq.errors import CCQError
from ccq.models import build_model, get_preset
from ccq.models.official import to_official_state_dict
from tests.data import official_path as official

PATCH = (16, 48, 48)
PROBABILITY_TOLERANCE = 2e-3
"""ccq stores probabilities in float16 (a step of 2^-11 = 4.9e-4 near 0.5, half of it by rounding); the two
forward passes (the same float32 arithmetic on the same array) add ~1e-6."""


def run(*args: str) -> None:
    result = CliRunner().invoke(app, list(map(str, args)))
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def official_net(collection) -> torch.nn.Module:
    torch.manual_seed(7)
    return build_model(get_preset("official", patch_size=PATCH, num_tasks=collection.num_tasks)).eval()


@pytest.fixture(scope="module")
def official_pth(official_net, tmp_path_factory) -> Path:
    """The random weights saved as the authors' training saves them (DDP prefix, official names)."""
    path = tmp_path_factory.mktemp("official") / "MOTS_random.pth"
    state = to_official_state_dict(official_net.state_dict(), official_net.config)
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    return path


@pytest.fixture(scope="module")
def converted(official_pth, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("converted") / "ccq-official"
    run("convert-official", official_pth, out, "--patch", *PATCH)
    return out


def test_the_converter_writes_the_official_grids(converted, collection) -> None:
    meta = read_checkpoint_meta(converted)
    grids = meta.preprocessing.grids(collection.tasks)
    assert grids.pop("kidney") == Grid(spacing=(0.76, 0.76, 3.0), axes="IPL")
    assert set(grids.values()) == {Grid(spacing=(1.5, 0.8, 0.8), axes="SLP")}
    assert meta.preprocessing.patch_size == PATCH and meta.extra["grid"] == "official"
    raw = json.loads((converted / "checkpoint.json").read_text())["preprocessing"]
    assert raw["axes"] == "SLP" and raw["task_grids"] == {"kidney": {"spacing": [0.76, 0.76, 3.0], "axes": "IPL"}}


def test_paper_grid_and_dodnet_grids(tmp_path, collection) -> None:
    torch.manual_seed(0)
    model = build_model(get_preset("tiny", patch_size=(16, 32, 32), num_tasks=collection.num_tasks))
    pth = tmp_path / "tiny.pth"
    torch.save(to_official_state_dict(model.state_dict(), model.config), pth)
    paper = convert_official_checkpoint(
        ConvertOptions(checkpoint=pth, out=tmp_path / "paper", preset="tiny", patch=(16, 32, 32), grid="paper")
    )
    assert paper.preprocessing.uniform and paper.preprocessing.spacing == (1.5, 0.8, 0.8)
    assert "paper's uniform grid" in paper.report()
    assert read_checkpoint_meta(tmp_path / "paper").preprocessing == paper.preprocessing

    torch.manual_seed(0)
    dodnet = build_model(get_preset("dodnet", patch_size=(16, 32, 32), num_tasks=collection.num_tasks))
    torch.save(to_official_state_dict(dodnet.state_dict(), dodnet.config), pth)
    result = convert_official_checkpoint(
        ConvertOptions(checkpoint=pth, out=tmp_path / "dodnet", preset="dodnet", patch=(16, 32, 32))
    )
    assert result.preprocessing.grid("kidney") == Grid(spacing=(0.8, 0.8, 1.5), axes="IPL")
    assert "kidney: 0.8 x 0.8 x 1.5 mm, axes IPL" in result.report()


def test_an_unknown_grid_choice_is_one_line_and_writes_nothing(official_pth, tmp_path) -> None:
    result = CliRunner().invoke(app, ["convert-official", str(official_pth), str(tmp_path / "x"), "--grid", "nnunet"])
    assert isinstance(result.exception, CCQError) and result.exit_code != 0
    assert str(result.exception) == "--grid 'nnunet': expected one of official, paper"
    assert not (tmp_path / "x").exists()


CASES = {
    # name: (task, file shape, affine): a case already on the official grid, its working grid one patch.
    "msd": ("liver", (48, 48, 16), official.msd_affine((0.8, 0.8, 1.5))),
    "kits": ("kidney", (16, 48, 48), official.kits_affine((0.76, 0.76, 3.0))),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_predict_gives_the_official_networks_probabilities_on_the_official_array(
    converted, official_net, collection, tmp_path, name
) -> None:
    task, shape, affine = CASES[name]
    task_id = collection.task(task).id
    hu, _ = official.ct_volume(shape, affine)
    ct = official.write_nifti(tmp_path / f"{name}.nii.gz", hu, affine)
    run("predict", "-i", ct, "-o", tmp_path / "out", "--model", converted, "--tasks", task, "--no-tta",
        "--postprocess", "none", "--save-probabilities", "--device", "cpu", "--no-progress")  # fmt: skip
    saved = np.load(tmp_path / "out" / name / f"{task}_probabilities.npz")

    # The official path: re_spacing.py (nothing to resample), the dataset's transposes and window, one forward.
    official.respace(ct, tmp_path / "respaced.nii.gz", task_id, label=False)
    x = official.network_input(tmp_path / "respaced.nii.gz", task_id, crop=PATCH)
    assert x.shape == PATCH  # one window: the sliding windows of both codes are a single forward
    with torch.no_grad():
        probs = torch.sigmoid(official_net(torch.from_numpy(x)[None, None], torch.tensor([task_id])))[0].numpy()
    expected = official.to_file_order(probs, task_id)  # [2, *file shape], as evaluate.py saves predictions
    for c, channel in enumerate(("organ", "tumor")):
        assert saved[channel].shape == shape
        assert np.abs(saved[channel].astype(np.float64) - expected[c]).max() <= PROBABILITY_TOLERANCE, channel
        # Random weights still give varied probabilities: a flipped axis would be seen (measured: >= 0.11).
        flipped = [np.abs(saved[channel] - np.flip(expected[c], a)).max() for a in range(3)]
        assert min(flipped) > 20 * PROBABILITY_TOLERANCE


RESAMPLED = {
    # name: (task, file shape, affine): both need resampling to the official grid (as tests/data's cases).
    "msd": ("liver", (160, 160, 96), official.msd_affine((0.6, 0.6, 1.0))),
    "kits": ("kidney", (40, 96, 128), official.kits_affine((1.52, 0.76, 1.5))),
}


@pytest.mark.parametrize("name", sorted(RESAMPLED))
def test_a_prediction_on_the_official_grid_lands_on_the_right_voxels(converted, tmp_path, name) -> None:
    """The way back with resampling: a voxelwise stand-in network (organ where the windowed CT > 0.3, i.e. the
    bright blob) predicts on the official working grid; the label map ccq writes covers the blob on the CT's own
    voxels, up to a voxel at its border."""
    from tests.inference.test_predict import dice, threshold_predictor

    task, shape, affine = RESAMPLED[name]
    hu, _ = official.ct_volume(shape, affine)
    ct = official.write_nifti(tmp_path / f"{name}.nii.gz", hu, affine)
    predictor = threshold_predictor(converted, postprocess="none")
    label = predictor.predict(ct, task).labels[task]
    assert label.shape == shape
    blob = hu > 97.5
    assert dice(label >= 1, blob) > 0.97
    assert all(dice(label >= 1, np.flip(blob, a)) < 0.5 for a in range(3))
