"""Prediction with per-task working grids: tasks grouped by grid (one encoder pass per group), each group on its
own preprocessing, every task mapped back exactly onto the input's voxels."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import ccq.inference.predictor as predictor_module
from ccq.checkpoint import load_checkpoint, save_checkpoint
from ccq.data.collection import load_collection
from ccq.data.grid import Grid
from ccq.data.preprocessing import PreprocessingConfig
from ccq.inference.runner import PredictOptions, run_predict
from tests.data.official_path import write_nifti
from tests.inference.test_predict import AFFINES, ct, expected_liver, threshold_predictor

# The default grid swaps H and W with respect to ccq's canonical axes (as the official MSD path does); kidney has
# its own, slices first and pointing down (as the official KiTS19 path). For the files of AFFINES (voxel sizes
# 2.5 x 2.5 x 3 mm, slices 3 mm) both need no resampling: only permutations and flips, which must come back exactly.
GRIDS = PreprocessingConfig(
    spacing=(3.0, 2.5, 2.5), axes="SLP", patch_size=(16, 32, 32),
    task_grids={"kidney": Grid(spacing=(3.0, 2.5, 2.5), axes="IPL")},
)  # fmt: skip


@pytest.fixture(scope="module")
def grids_checkpoint(tiny_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("grids") / "model"
    return save_checkpoint(path, tiny_model, preprocessing=GRIDS, collection=load_collection("mots"), source="test")


@pytest.mark.parametrize("orientation", sorted(AFFINES))
def test_every_task_comes_back_exactly_through_its_own_grid(grids_checkpoint, tmp_path, orientation) -> None:
    hu = ct()
    path = write_nifti(tmp_path / f"{orientation}.nii.gz", hu, AFFINES[orientation])
    predictor = threshold_predictor(grids_checkpoint, postprocess="none")
    labels = predictor.predict(path, "liver,kidney,pancreas").labels
    for task in ("liver", "kidney", "pancreas"):  # the Threshold model labels every task from the HU alone
        np.testing.assert_array_equal(labels[task], expected_liver(hu), err_msg=task)


def test_tasks_sharing_a_grid_share_one_pass_and_the_others_get_their_own(grids_checkpoint, tmp_path, monkeypatch):
    calls: list[tuple[tuple[int, ...], list[int]]] = []
    original = predictor_module.predict_channels

    def spy(model, image, task_ids, *args, **kwargs):
        calls.append((tuple(image.shape), list(task_ids)))
        return original(model, image, task_ids, *args, **kwargs)

    monkeypatch.setattr(predictor_module, "predict_channels", spy)
    hu = ct()  # file voxels (i, j, k) = (30, 26, 12), LPS: i -> L, j -> P, k -> S
    path = write_nifti(tmp_path / "lps.nii.gz", hu, AFFINES["lps"])
    predictor = threshold_predictor(grids_checkpoint, postprocess="none")
    results = list(predictor.iter_tasks(predictor.prepare(path, tasks="liver,kidney,spleen"),
                                        predictor.resolve_tasks("liver,kidney,spleen")))  # fmt: skip
    # liver and spleen: one pass on the default grid (S, L, P) = (k, i, j); kidney: its own, (I, P, L) = (k, j, i).
    assert calls == [((12, 30, 26), [0, 6]), ((12, 26, 30), [1])]
    assert [r.task.name for r in results] == ["liver", "spleen", "kidney"]  # grouped by grid


def test_the_input_is_kept_only_while_another_grid_needs_it(grids_checkpoint, tmp_path) -> None:
    path = write_nifti(tmp_path / "lps.nii.gz", ct(), AFFINES["lps"])
    predictor = threshold_predictor(grids_checkpoint, postprocess="none")
    assert predictor.prepare(path, tasks="liver,spleen").input_array is None
    assert predictor.prepare(path, tasks="kidney").grid == GRIDS.grid("kidney")
    prepared = predictor.prepare(path)  # every task: two grids
    assert prepared.input_array is not None and prepared.grid == GRIDS.default_grid
    results = predictor.iter_tasks(prepared, predictor.resolve_tasks("all"))
    next(results)
    assert prepared.input_array is not None  # kidney's grid is still to come
    list(results)
    assert prepared.input_array is None and prepared.image is None


def test_labels_json_says_each_tasks_grid(grids_checkpoint, tmp_path) -> None:
    path = write_nifti(tmp_path / "ct.nii.gz", ct(), AFFINES["kits"])
    predictor = threshold_predictor(grids_checkpoint, postprocess="none")
    options = PredictOptions(input_path=path, output=tmp_path / "out", model=grids_checkpoint, tasks=("all",),
                             progress=False)  # fmt: skip
    [case] = run_predict(options, echo=lambda *a, **k: None, predictor=predictor)
    grids = json.loads((case / "labels.json").read_text())["grids"]
    assert grids["kidney"] == {"spacing": [3.0, 2.5, 2.5], "axes": "IPL"}
    assert grids["liver"] == {"spacing": [3.0, 2.5, 2.5], "axes": "SLP"}
    assert nib.load(str(case / "kidney.nii.gz")).shape == ct().shape


def test_a_one_grid_checkpoint_is_written_and_read_as_before(tiny_checkpoint) -> None:
    """checkpoint.json of a model with one canonical grid has exactly the preprocessing keys it always had, and
    labels.json no grids."""
    section = json.loads((tiny_checkpoint / "checkpoint.json").read_text())["preprocessing"]
    assert sorted(section) == sorted(
        ["spacing", "hu_min", "hu_max", "hu_scale", "patch_size", "image_interpolation_order"]
    )
    loaded = load_checkpoint(tiny_checkpoint)
    assert loaded.preprocessing.uniform
    assert "grids" not in threshold_predictor(tiny_checkpoint).settings()
