"""`evaluate_folder` end to end on tiny phantoms: case discovery, both grids, the summary contract, errors."""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ccq.data import geometry
from ccq.errors import CCQError
from ccq.evaluation import evaluate_folder
from ccq.evaluation.report import REPORT_FILES
from ccq.evaluation.scoring import MOTS_HD_ONE_EMPTY
from tests.evaluation.phantoms import EMPTY_TUMOR_CASE, EvalTree, make_tree, save_label

WORKING = (3.0, 2.25, 2.25)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> EvalTree:
    return make_tree(tmp_path_factory.mktemp("eval"))


@pytest.fixture(scope="module")
def prepared(tree: EvalTree, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ccq.data.prepare_run import prepare_collection
    from ccq.data.preprocessing import PreprocessingConfig

    out = tmp_path_factory.mktemp("prepared") / "prepared"
    summary = prepare_collection(
        tree.collection, None, out, PreprocessingConfig(spacing=WORKING, patch_size=(16, 32, 32))
    )
    assert summary.ok
    return out


def _record(summary: dict, case: str, category: str) -> dict:
    return next(r for r in summary["cases"] if r["case"] == case and r["category"] == category)


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(path))
    return np.asarray(img.dataobj), img.affine


def test_collection_mode_mots_matches_medpy_on_the_working_grid(tree: EvalTree) -> None:
    medpy = pytest.importorskip("medpy.metric.binary")
    summary = evaluate_folder(tree.pred, tree.raw, collection=tree.collection_file, cases="all", spacing=WORKING,
                              write=False)  # fmt: skip
    assert list(summary["categories"]) == ["liver/organ", "liver/tumor", "colon/tumor", "spleen/organ"]
    assert summary["definition"] == "mots" and summary["grid"] == "working" and summary["spacing"] == list(WORKING)
    assert all(v["n"] == 3 for v in summary["categories"].values())
    # One case by hand: both label maps reoriented and resampled (nearest) to the working grid, MedPy's hd95.
    gt, affine = _load(tree.label_file("liver", "liver_001"))
    pred, _ = _load(tree.pred / "liver_001" / "liver.nii.gz")
    canon_gt, info = geometry.to_canonical(gt, affine)
    canon_pred, _ = geometry.to_canonical(pred, affine)
    g = geometry.resample(canon_gt, info.spacing, WORKING, order=0) >= 1
    p = geometry.resample(canon_pred, info.spacing, WORKING, order=0) >= 1
    record = _record(summary, "liver_001", "liver/organ")
    assert record["dice"] == pytest.approx(2 * (p & g).sum() / (p.sum() + g.sum() + 1), abs=1e-12)
    assert abs(record["hd95"] - medpy.hd95(p, g, (1, 1, 1))) <= 1e-6
    # The empty predicted tumor scores the official constant and is averaged in, as the paper's tables are.
    empty = _record(summary, EMPTY_TUMOR_CASE, "liver/tumor")
    assert (empty["hd95"], empty["dice"], empty["status"]) == (MOTS_HD_ONE_EMPTY, 0.0, "pred_empty")
    tumor = summary["categories"]["liver/tumor"]
    hds = [r["hd95"] for r in summary["cases"] if r["category"] == "liver/tumor"]
    assert tumor["hd95"] == pytest.approx(sum(hds) / 3) and tumor["status"]["pred_empty"] == 1
    means = summary["mean"]
    assert means["all"]["dice"] == pytest.approx(np.mean([v["dice"] for v in summary["categories"].values()]))
    assert means["organ"]["n_categories"] == 2 and means["tumor"]["n_categories"] == 2


def test_standard_on_the_native_grid_in_mm(tree: EvalTree) -> None:
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_hausdorff_distance

    summary = evaluate_folder(tree.pred, tree.raw, collection=tree.collection_file, cases="all",
                              definition="standard", write=False)  # fmt: skip
    assert summary["grid"] == "native" and summary["spacing"] is None and summary["units"]["hd95"] == "mm"
    label = tree.label_file("spleen", "spleen_001")
    gt, _ = _load(label)
    pred, _ = _load(tree.pred / "spleen_001" / "spleen.nii.gz")
    zooms = [float(z) for z in nib.load(str(label)).header.get_zooms()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = float(compute_hausdorff_distance(torch.from_numpy(pred == 1)[None, None],
                                                    torch.from_numpy(gt == 1)[None, None], include_background=True,
                                                    percentile=95, spacing=zooms))  # fmt: skip
    record = _record(summary, "spleen_001", "spleen/organ")
    assert abs(record["hd95"] - expected) <= 1e-5  # float32 header spacing, float32 MONAI arithmetic
    assert record["dice"] == pytest.approx(2 * ((pred == 1) & (gt == 1)).sum() / ((pred == 1).sum() + (gt == 1).sum()))
    empty = _record(summary, EMPTY_TUMOR_CASE, "liver/tumor")
    assert empty["dice"] == 0.0 and math.isnan(empty["hd95"]) and empty["status"] == "pred_empty"
    tumor = summary["categories"]["liver/tumor"]
    assert tumor["n"] == 3 and tumor["n_hd95"] == 2 and tumor["n_dice"] == 3  # never averaged in as 0
    others = [r["hd95"] for r in summary["cases"] if r["category"] == "liver/tumor" and r["case"] != EMPTY_TUMOR_CASE]
    assert tumor["hd95"] == pytest.approx(sum(others) / 2)


def test_default_selection_is_the_test_split(tree: EvalTree) -> None:
    summary = evaluate_folder(tree.pred, tree.raw, collection=tree.collection_file, write=False)
    assert sorted({r["case"] for r in summary["cases"]}) == ["colon_002", "liver_002", "spleen_002"]
    assert summary["n_cases"] == 3 and summary["sources"]["cases"] == "test"


def test_single_task_flat_folders(tree: EvalTree, tmp_path: Path) -> None:
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    for case in ("colon_000", "colon_001"):
        shutil.copy(tree.label_file("colon", case), gt_dir / f"{case}.nii.gz")
        shutil.copy(tree.pred / case / "colon.nii.gz", pred_dir / f"{case}.nii.gz")
    summary = evaluate_folder(pred_dir, gt_dir, task="colon", collection=tree.collection_file, out=tmp_path / "r")
    assert list(summary["categories"]) == ["colon/tumor"] and summary["n_cases"] == 2
    # The task's dataset folder works as ground truth too, and gives the same numbers.
    dataset = tree.collection.dataset_dir("colon")
    again = evaluate_folder(tree.pred, dataset, task="colon", collection=tree.collection_file,
                            cases=["colon_000", "colon_001"], write=False)  # fmt: skip
    assert again["categories"]["colon/tumor"]["dice"] == summary["categories"]["colon/tumor"]["dice"]


def test_prepared_ground_truth(tree: EvalTree, prepared: Path) -> None:
    summary = evaluate_folder(tree.perfect, prepared, cases="all", write=False)
    assert summary["spacing"] == list(WORKING) and summary["sources"]["ground_truth"] == "prepared"
    for record in summary["cases"]:  # the prediction resampled exactly as prepare resampled the label
        n = record["gt_voxels"]
        assert record["pred_voxels"] == n and record["hd95"] == 0.0
        assert record["dice"] == pytest.approx(2 * n / (2 * n + 1))
    standard = evaluate_folder(tree.pred, prepared, definition="standard", write=False)
    assert standard["grid"] == "working" and standard["units"]["hd95"] == "mm"
    with pytest.raises(CCQError, match="differs from the spacing"):
        evaluate_folder(tree.perfect, prepared, spacing=(1.0, 1.0, 1.0), write=False)
    with pytest.raises(CCQError, match="differs from the collection .* was prepared with"):
        evaluate_folder(tree.perfect, prepared, collection="mots", write=False)


def test_prepared_overlays_use_the_stored_source_ct(tree: EvalTree, prepared: Path, tmp_path: Path) -> None:
    pytest.importorskip("ccq.viz.overlays")
    evaluate_folder(tree.pred, prepared, task="spleen", cases=["spleen_001"], out=tmp_path, overlays=True)
    assert (tmp_path / "overlays" / "spleen_001" / "spleen" / "spleen_axial.png").is_file()


def test_writes_reports_and_refuses_to_overwrite(tree: EvalTree, tmp_path: Path) -> None:
    out = tmp_path / "report"
    evaluate_folder(tree.pred, tree.raw, collection=tree.collection_file, definition="standard", cases="all",
                    out=out, compare_paper=False)  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)

    def no_nan(token: str):
        raise AssertionError(f"non-JSON token {token}")

    data = json.loads((out / "summary.json").read_text(), parse_constant=no_nan)
    assert _record(data, EMPTY_TUMOR_CASE, "liver/tumor")["hd95"] is None  # NaN is written as null
    assert set(data["cases"][0]) >= {"case", "category", "dice", "hd95"}
    assert f"{EMPTY_TUMOR_CASE},liver,tumor,liver/tumor,0.0,nan,pred_empty,0," in (out / "cases.csv").read_text()
    # liver tumor: 3 cases, 3 Dice values, 2 HD values; 0 both empty, 1 prediction empty, 0 truth empty.
    assert "| 3 | 3 | 2 | 0 | 1 | 0 |" in (out / "table.md").read_text()
    with pytest.raises(CCQError, match="summary.json exists; refusing to overwrite"):
        evaluate_folder(tree.pred, tree.raw, collection=tree.collection_file, out=out)
    evaluate_folder(tree.pred, tree.raw, collection=tree.collection_file, out=out, overwrite=True)
    assert json.loads((out / "summary.json").read_text())["definition"] == "mots"


def test_compare_paper(tree: EvalTree) -> None:
    summary = evaluate_folder(tree.pred, tree.raw, collection=tree.collection_file, compare_paper=True, write=False)
    paper = summary["paper"]
    assert paper["categories"]["liver/organ"] == {"dice": pytest.approx(0.9671), "hd95": 3.73}
    assert paper["mean"]["all"]["n_categories"] == 4  # the same categories as this evaluation
    with pytest.raises(CCQError, match="evaluate with --definition mots"):
        evaluate_folder(tree.pred, tree.raw, collection=tree.collection_file, compare_paper=True,
                        definition="standard", write=False)  # fmt: skip


def test_overlays(tree: EvalTree, tmp_path: Path) -> None:
    pytest.importorskip("ccq.viz.overlays")
    out = tmp_path / "report"
    evaluate_folder(tree.pred, tree.raw, collection=tree.collection_file, task="liver", cases=["liver_001"],
                    out=out, overlays=True)  # fmt: skip
    pngs = sorted(p.name for p in (out / "overlays" / "liver_001" / "liver").iterdir())
    assert "overview.png" in pngs and any(n.startswith("liver_tumor") for n in pngs), pngs
    with pytest.raises(CCQError, match="no CT for case"):
        evaluate_folder(tree.pred, tree.collection.dataset_dir("liver") / "labelsTr", task="liver",
                        collection=tree.collection_file, overlays=True, write=False)  # fmt: skip


def test_overlay_cases_draws_only_the_first_cases_of_each_task(tree: EvalTree, tmp_path: Path) -> None:
    pytest.importorskip("ccq.viz.overlays")
    out = tmp_path / "report"
    summary = evaluate_folder(tree.pred, tree.raw, collection=tree.collection_file, cases="all", out=out,
                              overlays=True, overlay_cases=1)  # fmt: skip
    drawn = sorted(f"{p.name}/{p.parent.name}" for p in (out / "overlays").glob("*/*") if p.is_dir())  # TASK/CASE
    per_task: dict[str, list[str]] = {}
    for record in summary["cases"]:
        per_task.setdefault(record["task"], []).append(record["case"])
    # every case is scored, only the first of each task is drawn
    assert drawn == sorted(f"{task}/{sorted(cases)[0]}" for task, cases in per_task.items())
    assert all(len(set(cases)) > 1 for cases in per_task.values())
    with pytest.raises(CCQError, match="--overlay-cases 0"):
        evaluate_folder(tree.pred, tree.raw, collection=tree.collection_file, overlays=True, overlay_cases=0,
                        write=False)  # fmt: skip


# ------------------------------------------------------------------------------------------------ errors


def _one_case_dirs(tree: EvalTree, tmp_path: Path, pred: np.ndarray, affine: np.ndarray) -> tuple[Path, Path]:
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    shutil.copy(tree.label_file("liver", "liver_001"), gt_dir / "liver_001.nii.gz")
    save_label(tmp_path / "pred" / "liver_001.nii.gz", pred, affine)
    return tmp_path / "pred", gt_dir


def test_missing_prediction_names_the_case(tree: EvalTree, tmp_path: Path) -> None:
    (tmp_path / "pred").mkdir()
    with pytest.raises(CCQError, match=r"case liver_002: no prediction for task 'liver' \(looked for .*liver_002"):
        evaluate_folder(tmp_path / "pred", tree.raw, collection=tree.collection_file, write=False)


def test_grid_mismatch_names_both_files_and_shapes(tree: EvalTree, tmp_path: Path) -> None:
    gt, affine = _load(tree.label_file("liver", "liver_001"))
    pred_dir, gt_dir = _one_case_dirs(tree, tmp_path, gt[:, :, :-1], affine)
    with pytest.raises(CCQError) as err:
        evaluate_folder(pred_dir, gt_dir, task="liver", collection=tree.collection_file, write=False)
    message = str(err.value)
    assert str(pred_dir / "liver_001.nii.gz") in message and str(gt_dir / "liver_001.nii.gz") in message
    assert f"{gt[:, :, :-1].shape}" in message and f"{gt.shape}" in message and "\n" not in message
    moved = affine.copy()
    moved[:3, 3] += 5.0
    save_label(pred_dir / "liver_001.nii.gz", gt, moved)
    with pytest.raises(CCQError, match="affines that differ by"):
        evaluate_folder(pred_dir, gt_dir, task="liver", collection=tree.collection_file, write=False)


def test_labels_outside_the_convention(tree: EvalTree, tmp_path: Path) -> None:
    gt, affine = _load(tree.label_file("liver", "liver_001"))
    bad = gt.copy()
    bad[0, 0, 0] = 7
    pred_dir, gt_dir = _one_case_dirs(tree, tmp_path, bad, affine)
    with pytest.raises(CCQError, match=r"prediction .*liver_001.nii.gz: label value\(s\) \[7\] are not among"):
        evaluate_folder(pred_dir, gt_dir, task="liver", collection=tree.collection_file, write=False)


def test_option_errors(tree: EvalTree, tmp_path: Path) -> None:
    with pytest.raises(CCQError, match="did you mean 'spleen'"):
        evaluate_folder(tree.pred, tree.raw, task="spleeen", collection=tree.collection_file, write=False)
    with pytest.raises(CCQError, match="the standard definition measures each file on its own grid"):
        evaluate_folder(tree.pred, tree.raw, definition="standard", spacing=WORKING,
                        collection=tree.collection_file, write=False)  # fmt: skip
    with pytest.raises(CCQError, match="expected one of mots, standard"):
        evaluate_folder(tree.pred, tree.raw, definition="medpy", write=False)
    with pytest.raises(CCQError, match="--pred .*no such folder"):
        evaluate_folder(tmp_path / "absent", tree.raw, write=False)
    with pytest.raises(CCQError, match=r"case\(s\) of --cases have no ground truth"):
        evaluate_folder(tree.pred, tree.raw, collection=tree.collection_file, task="liver", cases=["liver_9"],
                        write=False)  # fmt: skip
