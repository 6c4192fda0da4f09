"""The demo pipeline's pieces: claiming the output folder, refusing bad options (its tables:
tests/evaluation/test_table.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ccq.demo import MARKER, DemoOptions, _claim_out_dir, run_demo
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


def test_unknown_comparison_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(CCQError, match="--compare 'unet'"):
        run_demo(DemoOptions(out=tmp_path / "d", compare="unet"))
    assert not (tmp_path / "d").exists()
