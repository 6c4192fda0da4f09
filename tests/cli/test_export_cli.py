"""`ccq export` on the command line: a deployable file and its JSON, one-line refusals, nothing overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ccq.cli import app
from ccq.errors import CCQError
from tests.tiny import save_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from ccq.data.preprocessing import PreprocessingConfig

    pre = PreprocessingConfig(spacing=(3.0, 2.5, 2.5), patch_size=(16, 32, 32))
    return save_tiny_checkpoint(tmp_path_factory.mktemp("cli-export") / "ckpt", pre)


def run(*args: str | Path):
    return CliRunner().invoke(app, ["export", *map(str, args)])


def refusal(result) -> str:
    assert result.exit_code != 0 and isinstance(result.exception, CCQError), result.output
    message = str(result.exception)
    assert "\n" not in message
    return message


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_export_writes_the_model_and_its_description_and_respects_existing_files(checkpoint, tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path / "kidney.pt"
        out.write_bytes(b"someone's file")
        assert "kidney.pt already exists; pass --overwrite" in refusal(
            run("--model", checkpoint, "-o", out, "--task", "kidney")
        )
        assert out.read_bytes() == b"someone's file"
        result = run("--model", checkpoint, "-o", out, "--task", "kidney", "--format", "torchscript", "--overwrite")
        assert result.exit_code == 0, result.output
        assert f"-> {out}" in result.output and "task(s) kidney" in result.output
    finally:
        torch.set_num_threads(before)
    spec = json.loads((tmp_path / "kidney.pt.json").read_text())
    assert spec["tasks"][0]["name"] == "kidney" and spec["output"]["shape"] == [1, 2, 16, 32, 32]
    net = torch.jit.load(str(out))
    assert tuple(net(torch.zeros(1, 1, 16, 32, 32)).shape) == (1, 2, 16, 32, 32)


def test_refusals_are_one_line(checkpoint, tmp_path):
    out = tmp_path / "x.onnx"
    assert "did you mean 'pancreas'" in refusal(run("--model", checkpoint, "-o", out, "--task", "pancrea"))
    assert "did you mean 'torchscript'" in refusal(run("--model", checkpoint, "-o", out, "-f", "torchscrip"))
    assert "has no checkpoint.json" in refusal(run("--model", tmp_path, "-o", out))
    assert list(tmp_path.iterdir()) == []
