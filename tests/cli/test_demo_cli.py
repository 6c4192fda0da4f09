"""`ccq demo`: help, a whole tiny run (seconds) through the real command line, refusal of a user's folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ccq.checkpoint import load_checkpoint
from ccq.cli import app
from ccq.errors import CCQError

runner = CliRunner()
# A tiny model on the smallest phantoms: the whole path (phantom, prepare, train, predict, Dice) in seconds.
TINY = ["--cases", "3", "--test-cases", "1", "--shape", "24", "48", "48", "--tasks", "liver,colon",
        "--model-preset", "tiny", "--iterations", "2", "--no-progress"]  # fmt: skip


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
    assert "Dice on the held-out test phantoms" in text and "finished in" in text
    for row in ("liver", "colon", "mean"):
        assert any(line.startswith(row) for line in text.splitlines()), row
    assert f"ccq predict -i {out / 'phantom'}" in text and f"--model {out / 'model'}" in text
    loaded = load_checkpoint(out / "model")
    assert loaded.collection.task_names == ("liver", "colon")
    assert loaded.model_config.patch_size == (16, 32, 32)
    assert (out / "predictions" / "liver_002" / "liver.nii.gz").is_file()
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
