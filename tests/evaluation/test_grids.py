"""The mots definition on each task's own working grid: from a preprocessing (a file, a checkpoint folder, a
config) or a prepared folder's cases; prepared folders written before per-task grids score as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ccq.data import geometry
from ccq.data import grid as working
from ccq.data.grid import Grid
from ccq.data.preprocessing import PreprocessingConfig
from ccq.errors import CCQError
from ccq.evaluation import evaluate_folder
from tests.evaluation.phantoms import EvalTree, make_tree
from tests.evaluation.test_evaluate import WORKING, _load

LIVER_GRID = Grid(spacing=(2.25, 2.25, 3.0), axes="IPL")
GRIDS = PreprocessingConfig(spacing=WORKING, patch_size=(16, 32, 32), task_grids={"liver": LIVER_GRID})


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> EvalTree:
    return make_tree(tmp_path_factory.mktemp("eval-grids"))


@pytest.fixture(scope="module")
def prepared(tree: EvalTree, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ccq.data.prepare_run import prepare_collection

    out = tmp_path_factory.mktemp("prepared-grids") / "prepared"
    assert prepare_collection(tree.collection, None, out, GRIDS).ok
    return out


def test_one_canonical_grid_scores_as_the_spacing_does(tree: EvalTree) -> None:
    by_spacing = evaluate_folder(tree.pred, tree.raw, collection=tree.collection_file, spacing=WORKING, write=False)
    uniform = PreprocessingConfig(spacing=WORKING)
    by_grids = evaluate_folder(tree.pred, tree.raw, collection=tree.collection_file, preprocessing=uniform,
                               write=False)  # fmt: skip
    assert by_grids["cases"] == by_spacing["cases"] and by_grids["spacing"] == list(WORKING)
    assert all(g == Grid(spacing=WORKING).to_dict() for g in by_grids["grids"].values())


def test_each_task_is_scored_on_its_own_grid(tree: EvalTree, tmp_path: Path) -> None:
    (tmp_path / "pre.json").write_text(json.dumps(GRIDS.to_dict()))
    summary = evaluate_folder(tree.perfect, tree.raw, collection=tree.collection_file,
                              preprocessing=tmp_path / "pre.json", write=False)  # fmt: skip
    assert summary["grids"]["liver"] == LIVER_GRID.to_dict()
    assert summary["grids"]["spleen"] == Grid(spacing=WORKING).to_dict()
    for record in (r for r in summary["cases"] if r["task"] == "liver"):
        # The liver label on its own grid, by hand: reoriented to I, P, L and resampled (nearest) to 2.25 x 2.25 x 3.
        label, affine = _load(tree.label_file("liver", record["case"]))
        canonical, info = geometry.to_canonical(label, affine)
        on_grid = working.to_working(canonical, info, LIVER_GRID, order=0)
        values = [1, 2] if record["channel"] == "organ" else [2]
        assert record["gt_voxels"] == np.isin(on_grid, values).sum() == record["pred_voxels"]
        assert record["hd95"] == 0.0


def test_a_prepared_folder_scores_each_case_on_its_grid(tree: EvalTree, prepared: Path) -> None:
    summary = evaluate_folder(tree.perfect, prepared, cases="all", write=False)
    assert summary["grids"]["liver"] == LIVER_GRID.to_dict()
    for record in summary["cases"]:  # the prediction resampled exactly as prepare resampled the label
        n = record["gt_voxels"]
        assert record["pred_voxels"] == n and record["hd95"] == 0.0


def test_grid_options_that_cannot_go_together(tree: EvalTree, prepared: Path) -> None:
    with pytest.raises(CCQError, match="give --spacing or --preprocessing, not both"):
        evaluate_folder(tree.pred, tree.raw, collection=tree.collection_file, spacing=WORKING, preprocessing=GRIDS,
                        write=False)  # fmt: skip
    with pytest.raises(CCQError, match="the standard definition measures each file on its own grid"):
        evaluate_folder(tree.pred, tree.raw, collection=tree.collection_file, definition="standard",
                        preprocessing=GRIDS, write=False)  # fmt: skip
    with pytest.raises(CCQError, match="a prepared folder .* scores each case on its own grid"):
        evaluate_folder(tree.pred, prepared, preprocessing=GRIDS, write=False)
    kidney = PreprocessingConfig(task_grids={"kidney": LIVER_GRID})
    with pytest.raises(CCQError, match=r"--preprocessing: task_grids names task\(s\) \['kidney'\]"):
        evaluate_folder(tree.pred, tree.raw, collection=tree.collection_file, preprocessing=kidney, write=False)


def test_a_prepared_folder_written_before_per_task_grids_scores_as_before(tree: EvalTree, tmp_path: Path) -> None:
    """Entries without ``grid`` (canonical arrays at ``spacing``), and a preprocessing.json without its new keys."""
    from ccq.data.prepare_run import prepare_collection

    new = tmp_path / "new"
    assert prepare_collection(tree.collection, None, new, PreprocessingConfig(spacing=WORKING)).ok
    old = tmp_path / "old"
    shutil.copytree(new, old)
    manifest = json.loads((old / "manifest.json").read_text())
    for entry in manifest["cases"]:
        entry.pop("grid")
        meta = old / entry["path"] / "meta.json"
        meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items() if k != "grid"}))
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert set(json.loads((old / "preprocessing.json").read_text())) == {
        "spacing", "hu_min", "hu_max", "hu_scale", "patch_size", "image_interpolation_order"
    }  # fmt: skip
    before = evaluate_folder(tree.pred, old, cases="all", write=False)
    after = evaluate_folder(tree.pred, new, cases="all", write=False)
    assert before["cases"] == after["cases"] and "grids" not in before and "grids" not in after
    assert before["spacing"] == list(WORKING)


def test_scoring_prepared_cases_says_each_tasks_grid(prepared: Path) -> None:
    """Training validation and reproduce score prepared cases through `ccq.evaluation.prepared`: each case on its
    own working grid (its prepared array), and the summary names the grids as ``ccq evaluate`` does."""
    from ccq.data.cache import PreparedDataset
    from ccq.evaluation.prepared import prepared_summary, score_prepared_cases
    from tests.evaluation.test_prepared import Threshold

    dataset = PreparedDataset(prepared)
    entries = dataset.cases()
    results = score_prepared_cases(Threshold(), dataset, entries, hd95=False, patch_size=(16, 32, 32))
    summary = prepared_summary(results, dataset, definition="mots", sources={})
    assert {e["task"] for e in entries} >= {"liver", "spleen"}
    assert summary["grids"]["liver"] == LIVER_GRID.to_dict()
    assert summary["grids"]["spleen"] == Grid(spacing=WORKING).to_dict()
