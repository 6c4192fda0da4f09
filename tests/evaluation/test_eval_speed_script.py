"""benchmarks/eval_speed.py runs on a small volume and ends with its one-line JSON (figures agree with MONAI)."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "eval_speed.py"


def test_eval_speed_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("medpy")
    args = ["--shape", "64", "64", "24", "--medpy-shape", "48", "48", "24", "--repeats", "1", "--json"]
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *args])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(data["structures"]) == {"organ", "tumor", "vessels"}
    for row in data["structures"].values():
        assert abs(row["ccq_hd95_mm"] - row["monai_hd95_mm"]) < 1e-5 and row["speedup_vs_monai"] > 0
        if "medpy" in row:
            assert abs(row["medpy"]["ccq_hd95"] - row["medpy"]["medpy_hd95"]) < 1e-9
    assert data["end_to_end"]["standard_s"] > 0 and data["end_to_end"]["mots_s"] > 0
