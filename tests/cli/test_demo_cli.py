"""`ccq demo`: help, a whole tiny run (seconds) through the real command line, refusal of a user's folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ccq.checkpoint import load_checkpoint
from ccq.cli import app
from ccq.errors import CCQError

runner = CliRunner()
# A tiny model on the smallest phantoms: the whole path (phantom, prepare, train, predict, Dice) in seconds.
TINY = ["--cases", "3", "--test-cases", "1", "--shape", "24", "48", "48", "--tasks", "liver,colon",
        "--model-preset", "tiny", "--iterations", "2", "--no-progress"]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_demo_help() -> None:
    result = runner.invoke(app, ["demo", "--help"])
    assert result.exit_code == 0
    for option in ("--out", "--seed", "--iterations", "--compare", "--device"):
        assert option in result.output
    assert "--model-preset" not in result.output and "--shape" not in result.output  # testing knobs


def test_tiny_demo_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "Held-out test phantoms" in text and "finished in" in text
    # The same commands a user runs, printed as they run.
    for command in ("$ ccq phantom", "$ ccq prepare", "$ ccq train --preset demo", "$ ccq predict -i",
                    "$ ccq evaluate --collection"):  # fmt: skip
        assert command in text, command
    for category in ("liver/organ", "liver/tumor", "colon/tumor"):
        assert category in text, category
    assert f"ccq predict -i {out / 'test-images'}" in text and f"--model {out / 'model'}" in text
    loaded = load_checkpoint(out / "model")
    # The model is the run's last weights (not best/), without the optimizer state.
    assert sorted(p.name for p in (out / "model").iterdir()) == ["checkpoint.json", "model.safetensors"]
    last = out / "run" / "last" / "model.safetensors"
    assert (out / "model" / "model.safetensors").read_bytes() == last.read_bytes()
    assert loaded.collection.task_names == ("liver", "colon")
    assert loaded.model_config.patch_size == (16, 32, 32)
    # Every test case predicted for every task; the summary in the evaluate format (keys outside checks read).
    assert (out / "predictions" / "liver_002" / "liver.nii.gz").is_file()
    assert (out / "predictions" / "liver_002" / "colon.nii.gz").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["categories"]) == {"liver/organ", "liver/tumor", "colon/tumor"}
    assert {"organ", "tumor", "all"} <= set(summary["mean"]) and summary["cases"][0].keys() >= {"case", "dice"}
    report = (out / "report.md").read_text()
    assert "| CCQ |" in report and "run/curves.png" in report and "overlays/" in report
    for link in [line.split("](")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]:
        assert (out / link).is_file(), link  # every picture the report shows exists
    shown = [line for line in report.splitlines() if line.startswith("![") and "overview.png" in line]
    assert [line.split("/")[-2] for line in shown] == ["liver", "colon"]  # one picture per task, in task order
    # The demo trains without flips: its predictions must not average flipped windows (TTA is on by default on GPUs).
    assert "--no-tta" in text
    assert (out / "results.json").is_file() and (out / "run" / "log.jsonl").is_file()

    (out / "my-notes.txt").write_text("mine")  # a rerun replaces the demo's entries, nothing else
    again = runner.invoke(app, ["demo", "--out", str(out), *TINY])
    assert again.exit_code == 0, again.output
    assert (out / "my-notes.txt").read_text() == "mine"


def test_demo_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("mine")
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), *TINY])
    assert result.exit_code != 0 and isinstance(result.exception, CCQError)
    assert "not empty" in str(result.exception) and "\n" not in str(result.exception)
    assert [p.name for p in tmp_path.iterdir()] == ["thesis.tex"]
