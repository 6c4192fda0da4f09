"""The summary's aggregation rules, the paper's numbers and the table/CSV renderings."""

from __future__ import annotations

import math

import pytest

from ccq.data.collection import load_collection
from ccq.errors import CCQError
from ccq.evaluation.paper import CCQ_TABLE1, CCQ_TABLE1_AVERAGE
from ccq.evaluation.report import build_summary, cases_csv, markdown_table, paper_comparison

MOTS = load_collection("mots")


def _rec(case: str, category: str, dice: float, hd95: float, status: str = "ok") -> dict:
    task, channel = category.split("/")
    return {"case": case, "task": task, "channel": channel, "category": category, "dice": dice, "hd95": hd95,
            "status": status, "pred_voxels": 10, "gt_voxels": 10}  # fmt: skip


def test_paper_constants_reproduce_the_published_averages() -> None:
    assert list(CCQ_TABLE1) == MOTS.categories()  # the 11 MOTS categories, in task order
    dice = sum(d for d, _ in CCQ_TABLE1.values()) / len(CCQ_TABLE1)
    hd = sum(h for _, h in CCQ_TABLE1.values()) / len(CCQ_TABLE1)
    assert abs(dice - CCQ_TABLE1_AVERAGE[0]) < 0.01 and abs(hd - CCQ_TABLE1_AVERAGE[1]) < 0.01
    paper = paper_comparison(MOTS.categories(), "mots")
    assert paper["mean"]["all"]["dice"] == pytest.approx(CCQ_TABLE1_AVERAGE[0] / 100, abs=1e-4)
    assert paper["mean"]["organ"]["n_categories"] == 5 and paper["mean"]["tumor"]["n_categories"] == 6


def test_means_skip_undefined_values_and_count_them() -> None:
    records = [
        _rec("a", "liver/organ", 0.9, 2.0),
        _rec("b", "liver/organ", 0.7, 4.0),
        _rec("a", "liver/tumor", math.nan, math.nan, "both_empty"),
        _rec("b", "liver/tumor", 0.0, math.nan, "pred_empty"),
        _rec("a", "spleen/organ", 0.8, 1.0),
    ]
    s = build_summary(records, MOTS, definition="standard", grid="native", spacing=None, sources={})
    assert s["categories"]["liver/organ"]["dice"] == pytest.approx(0.8)
    tumor = s["categories"]["liver/tumor"]
    assert tumor["dice"] == 0.0 and tumor["n_dice"] == 1 and math.isnan(tumor["hd95"]) and tumor["n_hd95"] == 0
    assert tumor["status"] == {"ok": 0, "both_empty": 1, "pred_empty": 1, "gt_empty": 0}
    assert s["mean"]["organ"]["dice"] == pytest.approx(0.8) and s["mean"]["organ"]["hd95"] == pytest.approx(2.0)
    assert s["mean"]["all"]["dice"] == pytest.approx((0.8 + 0.0 + 0.8) / 3)
    assert s["mean"]["all"]["hd95"] == pytest.approx(2.0) and s["mean"]["all"]["n_hd95"] == 2
    assert s["n_cases"] == 3 and s["tasks"] == ["liver", "spleen"]  # (task, case) pairs
    assert s["cases"][0] == {k: records[0][k] for k in s["cases"][0]}
    assert "a,liver,tumor,liver/tumor,nan,nan,both_empty,10,10" in cases_csv(records)


def test_table_has_the_paper_row_beside_ours() -> None:
    records = [_rec("a", "liver/organ", 0.95, 3.0), _rec("a", "liver/tumor", 0.6, 20.0)]
    s = build_summary(records, MOTS, definition="mots", grid="working", spacing=(1.5, 0.8, 0.8), sources={},
                      compare_paper=True)  # fmt: skip
    table = markdown_table(s)
    assert "| Method | Average Dice | Average HD | liver Dice organ | liver Dice tumor | liver HD organ |" in table
    assert "| ccq (this evaluation) | 77.50 | 11.50 | 95.00 | 60.00 | 3.00 | 20.00 |" in table
    # The paper over the same 2 categories: (96.71 + 64.32) / 2, (3.73 + 31.22) / 2.
    assert "| CCQ (paper, Table 1) | 80.51 | 17.47 | 96.71 | 64.32 | 3.73 | 31.22 |" in table
    assert "over the same 2 categories as ours (its own, over all 11: 76.41 / 16.80)" in table
    assert "1.5 x 0.8 x 0.8 mm" in table


def test_paper_comparison_errors() -> None:
    with pytest.raises(CCQError, match="none of the evaluated categories"):
        paper_comparison(["brain/organ"], "mots")
    with pytest.raises(CCQError, match="evaluate with --definition mots"):
        paper_comparison(["liver/organ"], "standard")
