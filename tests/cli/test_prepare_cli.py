"""`ccq prepare`: a phantom collection in, manifest and summary out; failures in one line or listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ccq.cli.prepare import prepare
from ccq.data.phantom import generate_collection
from ccq.errors import CCQError

runner = CliRunner()
# The lead registers the command in ccq.cli; a local app keeps this test independent of that wiring.
app = typer.Typer()
app.command("prepare")(prepare)
app.command("noop")(lambda: None)  # two commands: typer then expects the subcommand name


@pytest.fixture()
def phantom(tmp_path: Path) -> Path:
    generate_collection(tmp_path / "ph", cases_per_task=3, test_cases_per_task=1, tasks=("liver", "spleen"),
                        shape=(24, 48, 48))  # fmt: skip
    (tmp_path / "pre.yaml").write_text("spacing: [3.0, 3.0, 3.0]\npatch_size: [16, 16, 16]\n")
    return tmp_path


def _args(tmp: Path, *extra: str) -> list[str]:
    return ["prepare", "--collection", str(tmp / "ph" / "collection.yaml"), "--out", str(tmp / "out"),
            "--preprocessing", str(tmp / "pre.yaml"), "--no-progress", *extra]  # fmt: skip


def test_prepare_phantom_and_rerun(phantom: Path) -> None:
    result = runner.invoke(app, _args(phantom))
    assert result.exit_code == 0, result.output
    assert "prepared 6 case(s), skipped 0 already prepared, 0 failed" in result.output
    manifest = json.loads((phantom / "out" / "manifest.json").read_text())
    assert [e["split"] for e in manifest["cases"]].count("test") == 2
    assert {e["task"] for e in manifest["cases"]} == {"liver", "spleen"}
    assert json.loads((phantom / "out" / "preprocessing.json").read_text())["spacing"] == [3.0, 3.0, 3.0]
    again = runner.invoke(app, _args(phantom))
    assert again.exit_code == 0 and "prepared 0 case(s), skipped 6 already prepared" in again.output


def test_bad_case_one_line_or_listed_with_keep_going(phantom: Path) -> None:
    bad = next((phantom / "ph").glob("Task*Spleen/imagesTr/*_001.nii.gz"))
    bad.write_bytes(bad.read_bytes()[:300])
    result = runner.invoke(app, _args(phantom))
    assert result.exit_code != 0 and isinstance(result.exception, CCQError)
    message = str(result.exception)
    assert "spleen_001" in message and "\n" not in message
    result = runner.invoke(app, _args(phantom, "--keep-going"))
    assert result.exit_code == 1
    assert "skipped" in result.output and "1 failed" in result.output
    assert "FAILED spleen/spleen_001: case spleen_001: cannot read" in result.output


def test_folders_mapping_and_raw_root(phantom: Path) -> None:
    liver = next((phantom / "ph").glob("Task*Liver"))
    moved = phantom / "downloads" / "my liver"
    moved.parent.mkdir()
    liver.rename(moved)
    spleen = next((phantom / "ph").glob("Task*Spleen"))
    spleen.rename(phantom / "downloads" / spleen.name)
    (phantom / "folders.json").write_text(json.dumps({"liver": "my liver"}))
    result = runner.invoke(app, _args(phantom, "--raw", str(phantom / "downloads")))
    assert result.exit_code != 0 and "task 'liver': no folder" in str(result.exception)
    result = runner.invoke(
        app, _args(phantom, "--raw", str(phantom / "downloads"), "--folders", str(phantom / "folders.json"))
    )
    assert result.exit_code == 0, result.output
    assert "prepared 6 case(s)" in result.output


def test_bad_preprocessing_file_names_it(phantom: Path) -> None:
    (phantom / "pre.yaml").write_text("spacing: [3.0, 3.0]\n")
    result = runner.invoke(app, _args(phantom))
    assert isinstance(result.exception, CCQError)
    assert "pre.yaml" in str(result.exception) and "expected a list of 3 numbers" in str(result.exception)
    (phantom / "pre.yaml").write_text("hu_min: '-325'\n")
    result = runner.invoke(app, _args(phantom))
    assert isinstance(result.exception, CCQError)
    assert str(result.exception) == f"{phantom / 'pre.yaml'}: preprocessing: hu_min: expected a number, got '-325'"


def test_prepare_only_the_tasks_asked_for(phantom: Path) -> None:
    result = runner.invoke(app, _args(phantom, "--tasks", "spleen"))
    assert result.exit_code == 0, result.output
    assert "prepared 3 case(s), skipped 0 already prepared, 0 failed" in result.output
    manifest = json.loads((phantom / "out" / "manifest.json").read_text())
    assert {e["task"] for e in manifest["cases"]} == {"spleen"}
    tasks = json.loads((phantom / "out" / "collection.json").read_text())["tasks"]
    assert [t["name"] for t in tasks] == ["liver", "spleen"]
    empty = runner.invoke(app, _args(phantom, "--tasks", " , "))
    assert isinstance(empty.exception, CCQError) and "--tasks ' , ': expected task names" in str(empty.exception)
