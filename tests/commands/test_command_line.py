"""Options -> the `ccq` command line (`ccq.utils.command_line`): every printed command parses back, through the
real typer app, into the same options."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

import ccq.commands.evaluate
import ccq.commands.phantom
import ccq.commands.prepare
import ccq.commands.train
import ccq.inference.runner
from ccq.cli import app
from ccq.commands.evaluate import EvaluateOptions
from ccq.commands.phantom import PhantomOptions
from ccq.commands.prepare import PrepareOptions
from ccq.commands.train import TrainOptions
from ccq.inference.runner import PredictOptions
from ccq.utils.command_line import command_line, quoted

runner = CliRunner()

# (command, module holding the library function, its name, options: the defaults, then every field changed)
CASES = [
    ("phantom", ccq.commands.phantom, "run_phantom", PhantomOptions(out=Path("ph"))),
    ("phantom", ccq.commands.phantom, "run_phantom", PhantomOptions(
        out=Path("my phantoms"), cases=5, test_cases=1, seed=3, tasks=("liver", "lung"), shape=(24, 48, 40),
        naming="nnunet", overwrite=True)),
    ("prepare", ccq.commands.prepare, "run_prepare", PrepareOptions(out=Path("prep"))),
    ("prepare", ccq.commands.prepare, "run_prepare", PrepareOptions(
        out=Path("prep"), collection="c.yaml", raw=Path("raw"), preprocessing=Path("p.yaml"), workers=3,
        keep_going=True, folders=Path("f.json"), only_tasks=("liver", "lung"), progress=False)),
    ("train", ccq.commands.train, "run_train", TrainOptions(out=Path("run"))),
    ("train", ccq.commands.train, "run_train", TrainOptions(
        out=Path("run"), preset="demo", config=Path("c.yaml"),
        set_fields=("model=demo", "sampling.foreground_fraction=0.5"),
        data=Path("prep"), resume=True, iterations=7, batch_size=3, lr=0.002, seed=4, device="cpu",
        precision="fp32", channels_last=True, compile_model=False, activation_checkpointing=True, num_workers=0,
        init_from=Path("old/best"), freeze=("encoder", "image_transformer"), replay=Path("old-prepared"),
        replay_share=0.25, progress=False)),
    ("train", ccq.commands.train, "run_train", TrainOptions(
        out=Path("run"), channels_last=False, compile_model=True, activation_checkpointing=False)),
    ("predict", ccq.inference.runner, "run_predict", PredictOptions(
        input_path=Path("ct.nii.gz"), output=Path("out"), model=Path("m"))),
    ("predict", ccq.inference.runner, "run_predict", PredictOptions(
        input_path=Path("ct dir"), output=Path("out"), model=Path("m"), tasks=("liver,kidney", "7"), series="1.2.3",
        device="cpu", tta=False, overlap=0.25, postprocess="none", save_probabilities=True, overlays=True,
        batch_size=2, overwrite=True, progress=False)),
    ("predict", ccq.inference.runner, "run_predict", PredictOptions(
        input_path=Path("ct"), output=Path("out"), model=Path("m"), tta=True)),
    ("evaluate", ccq.commands.evaluate, "run_evaluate", EvaluateOptions(pred=Path("pred"), gt=Path("gt"))),
    ("evaluate", ccq.commands.evaluate, "run_evaluate", EvaluateOptions(
        pred=Path("pred"), gt=Path("gt"), collection="mots", task="liver", cases="a,b", definition="standard",
        spacing=(1.5, 0.8, 0.75), preprocessing=Path("model"), out=Path("ev"), overwrite=True, compare_paper=True,
        overlays=True, images=Path("im"), progress=False)),
]  # fmt: skip


@pytest.mark.parametrize(("command", "module", "function", "options"), CASES)
def test_the_command_line_parses_back_to_the_same_options(command, module, function, options, monkeypatch):
    received = []

    def record(given, echo=print):
        received.append(given)
        return SimpleNamespace(ok=True)  # what `ccq prepare` reads of its summary

    monkeypatch.setattr(module, function, record)
    argv = command_line(command, options)
    assert argv[0] == command
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, (argv, result.output, result.exception)
    assert received == [options]


def test_defaults_are_left_out_and_values_quoted():
    argv = command_line("phantom", PhantomOptions(out=Path("my phantoms"), seed=2))
    assert argv == ["phantom", "--out", "my phantoms", "--seed", "2"]
    assert quoted(argv) == "ccq phantom --out 'my phantoms' --seed 2"


def test_a_value_no_flag_can_write_is_refused():
    from dataclasses import dataclass

    from ccq.utils.command_line import flag

    @dataclass(frozen=True)
    class Options:
        on: bool = flag("--on", True)

    with pytest.raises(ValueError, match="--on: False needs a negative flag"):
        command_line("x", Options(on=False))


def test_the_phantom_tasks_default_is_the_generators():
    from ccq.data.phantom import DEFAULT_TASKS

    assert PhantomOptions(out=Path("x")).tasks == DEFAULT_TASKS
