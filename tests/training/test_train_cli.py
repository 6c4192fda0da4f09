"""`ccq train` through typer: preset + config file + overrides, and the run folder it leaves."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from ccq.cli.train import train
from ccq.errors import CCQError


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(train)
    app.command("noop")(lambda: None)  # two commands: typer then expects the command name
    return app


def test_train_cli(tiny_prepared: Path, tmp_path: Path) -> None:
    settings = tmp_path / "tiny.json"
    settings.write_text(json.dumps({"model": "tiny", "model_overrides": {}, "val_every": 0, "log_every": 1}))
    out = tmp_path / "run"
    args = ["train", "--preset", "demo", "--config", str(settings), "--data", str(tiny_prepared), "--out",
            str(out), "--iterations", "2", "--seed", "4", "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert "held out for validation" in result.output and "best validation Dice" in result.output
    record = json.loads((out / "config.json").read_text())
    assert record["train"]["preset"] == "demo" and record["train"]["model"] == "tiny"
    assert record["train"]["iterations"] == 2 and record["seed"] == 4 and record["train"]["val_every"] == 0
    assert (out / "best").is_dir() and (out / "last").is_dir()  # validated once, at the end

    again = CliRunner().invoke(_app(), args)
    assert again.exit_code != 0 and isinstance(again.exception, CCQError)


def test_train_cli_names_a_bad_config(tmp_path: Path) -> None:
    settings = tmp_path / "bad.yaml"
    settings.write_text("iterations: 10\nlearning_rate: 3\n")
    result = CliRunner().invoke(
        _app(), ["train", "--config", str(settings), "--data", str(tmp_path), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code != 0 and "learning_rate" in str(result.exception)
    assert str(settings) in str(result.exception)


def test_train_cli_refuses_a_used_run_folder_before_reading_anything(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    args = ["train", "--preset", "demo", "--data", str(tmp_path / "not-prepared"), "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(_app(), args)
    assert isinstance(result.exception, CCQError) and "the folder is not empty" in str(result.exception)


def test_set_overrides_any_field_and_nested_ones(tiny_prepared: Path, tmp_path: Path) -> None:
    from ccq.commands.train import parse_set as _parse_set

    assert _parse_set(["batch_size=4", "sampling.foreground_fraction=0.5", "grad_clip=null"]) == {
        "batch_size": 4, "sampling": {"foreground_fraction": 0.5}, "grad_clip": None,
    }  # fmt: skip
    # YAML 1.1 reads 1e-3 (no dot) as a string: a learning rate written so is still a number.
    assert _parse_set(["lr=1e-3", "weight_decay=+2E-5", "preset=1e3x"]) == {"lr": 0.001, "weight_decay": 2e-05,
                                                                            "preset": "1e3x"}  # fmt: skip
    out = tmp_path / "run"
    args = ["train", "--preset", "demo", "--data", str(tiny_prepared), "--out", str(out), "--iterations", "1",
            "--set", "model=tiny", "--set", "val_every=0", "--set", "sampling.foreground_fraction=0.25",
            "--no-channels-last", "--precision", "fp32", "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "config.json").read_text())
    assert record["train"]["sampling"]["foreground_fraction"] == 0.25 and record["precision"] == "fp32"
    bad = CliRunner().invoke(_app(), ["train", "--data", str(tiny_prepared), "--out", str(tmp_path / "r2"),
                                      "--set", "no_equals_sign"])  # fmt: skip
    assert isinstance(bad.exception, CCQError) and "KEY=VALUE" in str(bad.exception)


def test_train_cli_grows_a_model_with_replay_and_freezing(
    tiny_prepared: Path, old_prepared: Path, old_run: Path, tmp_path: Path
) -> None:
    settings = tmp_path / "tiny.json"
    settings.write_text(json.dumps({"model": "tiny", "model_overrides": {}, "val_every": 0, "tensorboard": False}))
    out = tmp_path / "run"
    args = ["train", "--preset", "demo", "--config", str(settings), "--data", str(tiny_prepared), "--out", str(out),
            "--iterations", "2", "--no-progress", "--init-from", str(old_run), "--replay", str(old_prepared),
            "--replay-share", "0.4", "--freeze", "encoder, image_transformer"]  # fmt: skip
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert f"init from {(old_run / 'best').resolve()}: 2 task(s) kept, added: spleen" in result.output
    assert f"replay: 40% of the samples from {old_prepared.resolve()}" in result.output
    assert "frozen: encoder, image_transformer (" in result.output
    record = json.loads((out / "config.json").read_text())
    train = record["train"]
    assert train["init_from"] == str(old_run.resolve()) and train["replay"] == str(old_prepared.resolve())
    assert train["replay_share"] == 0.4 and train["freeze"] == ["encoder", "image_transformer"]
    assert record["init_from"]["frozen"]["parts"] == ["encoder", "image_transformer"]


def test_train_cli_growth_options_need_their_partners(tiny_prepared: Path, old_prepared: Path, tmp_path: Path) -> None:
    base = ["train", "--preset", "demo", "--data", str(tiny_prepared), "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(_app(), [*base, "--replay-share", "0.5"])
    assert isinstance(result.exception, CCQError) and "--replay-share: needs --replay" in str(result.exception)
    result = CliRunner().invoke(_app(), [*base, "--freeze", "encoder"])
    assert isinstance(result.exception, CCQError)
    assert "train config: freeze: needs init_from" in str(result.exception)
    result = CliRunner().invoke(_app(), [*base, "--replay", str(old_prepared)])
    assert isinstance(result.exception, CCQError) and "needs init_from" in str(result.exception)
    assert not (tmp_path / "run").exists()


def test_a_conflicting_checkpoint_is_one_line_through_the_entry_point(
    tiny_prepared: Path, old_run: Path, tmp_path: Path
) -> None:
    """A shape change that is not a task-count change: `ccq: error:` naming the tensor, exit 2, no run folder."""
    import subprocess
    import sys

    settings = tmp_path / "wider.json"
    settings.write_text(json.dumps({"model": "tiny", "model_overrides": {"mlp_dim": 48}, "tensorboard": False}))
    out = tmp_path / "run"
    args = ["train", "--preset", "demo", "--config", str(settings), "--data", str(tiny_prepared), "--out", str(out),
            "--iterations", "2", "--no-progress", "--init-from", str(old_run)]  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "ccq", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"ccq: error: --init-from {old_run / 'best'}: tensor ")
    assert "in the checkpoint but" in lines[0] and "mlp_dim 32 -> 48" in lines[0]
    assert not out.exists()
