"""`ccq phantom`: writes a loadable collection, prints a summary, refuses a non-empty folder in one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ccq.cli import app, main
from ccq.data.collection import load_collection
from ccq.errors import CCQError

runner = CliRunner()
SMALL = ["--cases", "2", "--test-cases", "1", "--shape", "32", "64", "64"]


def test_phantom_writes_a_collection(tmp_path: Path) -> None:
    out = tmp_path / "ph"
    result = runner.invoke(app, ["phantom", "--out", str(out), "--tasks", "liver, colon,spleen", "--seed", "3", *SMALL])
    assert result.exit_code == 0, result.output
    assert str(out) in result.output and "colon tumor" in result.output and "1 train / 1 test" in result.output
    collection = load_collection(out / "collection.yaml")
    assert collection.task_names == ("liver", "colon", "spleen")
    assert collection.task("colon").organ is None and collection.task("spleen").tumor is None
    assert len(list((out / "Task02_Colon" / "imagesTr").iterdir())) == 2


def test_phantom_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["phantom", "--out", str(tmp_path), "--tasks", "spleen", *SMALL])
    assert result.exit_code != 0 and isinstance(result.exception, CCQError)
    message = str(result.exception)
    assert str(tmp_path) in message and "--overwrite" in message and "\n" not in message
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_main_prints_one_line_and_exits_2(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    monkeypatch.setattr(sys, "argv", ["ccq", "phantom", "--out", str(tmp_path), "--tasks", "spleen", *SMALL])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("ccq: error: phantom: output folder") and err.count("\n") == 1


def test_phantom_unknown_task_suggests(tmp_path: Path) -> None:
    result = runner.invoke(app, ["phantom", "--out", str(tmp_path / "x"), "--tasks", "liver,pancreatic"])
    assert result.exit_code != 0 and "did you mean 'pancreas'" in str(result.exception)
    assert not (tmp_path / "x").exists()


def test_phantom_help_lists_the_options() -> None:
    result = runner.invoke(app, ["phantom", "--help"])
    assert result.exit_code == 0
    for option in ("--out", "--cases", "--test-cases", "--seed", "--tasks", "--overwrite"):
        assert option in result.output
