"""`ccq evaluate`: the files and keys outside checks read, --compare-paper, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ccq.cli import app
from ccq.errors import CCQError
from tests.evaluation.phantoms import EvalTree, make_tree

runner = CliRunner()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> EvalTree:
    return make_tree(tmp_path_factory.mktemp("eval-cli"))


def test_collection_mode_writes_the_contract(tree: EvalTree, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--pred",
            str(tree.pred),
            "--gt",
            str(tree.raw),
            "--collection",
            str(tree.collection_file),
            "--cases",
            "all",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "mean all" in result.output and str(out / "summary.json") in result.output
    summary = json.loads((out / "summary.json").read_text())
    for category in ("liver/organ", "liver/tumor", "colon/tumor", "spleen/organ"):
        assert set(summary["categories"][category]) >= {"dice", "hd95"}
    for group in ("organ", "tumor", "all"):
        assert 0.0 < summary["mean"][group]["dice"] < 1.0 and summary["mean"][group]["hd95"] > 0.0
    assert len(summary["cases"]) == 12 and set(summary["cases"][0]) >= {"case", "category", "dice", "hd95"}
    assert (out / "cases.csv").read_text().count("\n") == 13 and (out / "table.md").is_file()


def test_single_task_with_a_case_list_and_the_paper_row(tree: EvalTree, tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "-p", str(tree.pred), "-g", str(tree.raw), "--task", "liver",
                                 "--collection", str(tree.collection_file), "--cases", "liver_000, liver_001",
                                 "--compare-paper", "-o", str(tmp_path), "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert sorted({c["case"] for c in summary["cases"]}) == ["liver_000", "liver_001"]
    assert "| CCQ (paper, Table 1) |" in (tmp_path / "table.md").read_text()
    again = runner.invoke(app, ["evaluate", "-p", str(tree.pred), "-g", str(tree.raw), "--task", "liver",
                                "--collection", str(tree.collection_file), "-o", str(tmp_path)])  # fmt: skip
    assert again.exit_code != 0 and isinstance(again.exception, CCQError)
    assert "refusing to overwrite" in str(again.exception)


def test_user_error_is_one_line_with_exit_code_2(tree: EvalTree, tmp_path: Path) -> None:
    pred = tmp_path / "pred"
    shutil.copytree(tree.pred, pred)
    (pred / "spleen_002" / "spleen.nii.gz").unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "ccq", "evaluate", "--pred", str(pred), "--gt", str(tree.raw), "--collection",
         str(tree.collection_file), "--no-progress"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ccq: error: case spleen_002: no prediction for task 'spleen'")
    assert not (pred / "summary.json").exists()
