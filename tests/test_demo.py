"""The demo pipeline's pieces: claiming the output folder, the Dice table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ccq.demo import MARKER, DemoOptions, _claim_out_dir, format_table, run_demo
from ccq.errors import CCQError


def test_claim_replaces_only_what_a_demo_wrote(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "log.jsonl").write_text("{}")
    (tmp_path / "results.json").write_text("{}")
    (tmp_path / "mine").mkdir()
    (tmp_path / "notes.txt").write_text("keep")
    entries = ["run", "results.json", "notes.txt", "../x"]  # notes.txt: not a demo's name, so never removed
    (tmp_path / MARKER).write_text(json.dumps({"generator": "ccq demo", "entries": entries}))
    _claim_out_dir(tmp_path, ["run", "results.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [MARKER, "mine", "notes.txt"]


def test_claim_refuses_a_foreign_folder_and_a_file(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("1")
    with pytest.raises(CCQError, match="holds no earlier demo"):
        _claim_out_dir(tmp_path, ["run"])
    with pytest.raises(CCQError, match="not a folder"):
        _claim_out_dir(tmp_path / "data.csv", ["run"])
    assert [p.name for p in tmp_path.iterdir()] == ["data.csv"]


def test_table() -> None:
    dice = {"CCQ": {"liver": {"organ": 0.9, "tumor": 0.5}, "colon": {"tumor": 0.25},
                    "spleen": {"organ": 0.8}}}
    lines = format_table(dice, ["liver", "colon", "spleen"]).splitlines()
    assert lines[0].split() == ["task", "CCQ", "organ", "CCQ", "tumor"]
    assert lines[2].split() == ["liver", "0.900", "0.500"] and lines[3].split() == ["colon", "-", "0.250"]
    assert lines[-1].split() == ["mean", "0.850", "0.375"]
    nan_table = format_table({"CCQ": {"liver": {"organ": math.nan}}}, ["liver"])
    assert nan_table.splitlines()[2].split() == ["liver", "-", "-"]


def test_unknown_comparison_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(CCQError, match="--compare 'unet'"):
        run_demo(DemoOptions(out=tmp_path / "d", compare="unet"))
    assert not (tmp_path / "d").exists()
