"""benchmarks/demo_tuning.py: one tiny trial runs end to end and reports the held-out Dice of each labeled channel."""

from __future__ import annotations

import json
import math
import runpy
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "demo_tuning.py"


def test_one_tiny_trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    train = {"iterations": 2, "val_every": 0, "save_every": 2, "log_every": 1}
    args = ["--work", str(tmp_path), "--name", "t", "--cases", "2", "--test-cases", "1", "--shape", "24", "48", "48",
            "--tasks", "liver,colon", "--model", "tiny", "--train", json.dumps(train), "--threads", "1",
            "--log", str(tmp_path / "trials.jsonl")]  # fmt: skip
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *args])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert json.loads((tmp_path / "trials.jsonl").read_text()) == record
    # Each test phantom scored for its own task, on the channels it labels (colon: tumor only).
    assert {task: set(channels) for task, channels in record["dice"].items()} == {
        "liver": {"organ", "tumor"}, "colon": {"tumor"}}  # fmt: skip
    values = [v for channels in record["dice"].values() for v in channels.values()]
    assert all(math.isnan(v) or 0.0 <= v <= 1.0 for v in values)
    tumors = [c["tumor"] for c in record["dice"].values() if c["tumor"] is not None and math.isfinite(c["tumor"])]
    if tumors:
        assert record["means"]["tumor"] == pytest.approx(sum(tumors) / len(tumors))
    assert record["iterations"] == 2


def test_input_grid_scores_as_the_demo_reports(tmp_path: Path, monkeypatch, capsys) -> None:
    """--input-grid gives the Dice `ccq predict --tasks all` + `ccq evaluate --definition standard` give (what `ccq
    demo` prints), to the last digit, for every labeled channel."""
    from ccq.commands.evaluate import EvaluateOptions, run_evaluate
    from ccq.data.collection import load_collection
    from ccq.demo import _link_test_images
    from ccq.inference.runner import PredictOptions, run_predict

    train = {"iterations": 4, "val_every": 0, "save_every": 4, "log_every": 1}
    args = ["--work", str(tmp_path), "--name", "t", "--cases", "2", "--test-cases", "1", "--shape", "24", "48", "48",
            "--tasks", "liver,lung", "--model", "tiny", "--train", json.dumps(train), "--threads", "1",
            "--input-grid"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *args])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["scored_on"] == "input grid"

    (phantom,) = tmp_path.glob("phantom-*")
    collection = load_collection(phantom / "collection.yaml")
    _link_test_images(collection, tmp_path / "test-images")
    run = tmp_path / "runs" / "t"
    model = run / "best" if (run / "best").is_dir() else run / "last"  # the folder the trial scored
    run_predict(PredictOptions(input_path=tmp_path / "test-images", output=tmp_path / "pred", model=model,
                               device="cpu", tta=False, progress=False), echo=lambda *_: None)  # fmt: skip
    evaluate = EvaluateOptions(pred=tmp_path / "pred", gt=phantom, collection=str(phantom / "collection.yaml"),
                               cases="test", definition="standard", progress=False)  # fmt: skip
    summary = run_evaluate(evaluate, echo=lambda *_: None)
    evaluated = {tuple(k.split("/")): v["dice"] for k, v in summary["categories"].items()}
    reported = {(task, channel): v for task, channels in record["dice"].items() for channel, v in channels.items()}
    assert reported.keys() == evaluated.keys() == {("liver", "organ"), ("liver", "tumor"), ("lung", "tumor")}
    for key, value in evaluated.items():
        assert reported[key] == pytest.approx(value, abs=1e-12, nan_ok=True), key


def test_demo_diagnosis_on_a_tiny_demo(tmp_path: Path, monkeypatch, capsys) -> None:
    """benchmarks/demo_diagnosis.py: the grid ceiling of every labeled channel (a label sent to the working grid
    and back scores far above chance, at most 1), train and test Dice, the probability inside each test tumor."""
    from typer.testing import CliRunner

    from ccq.cli import app

    out = tmp_path / "demo"
    tiny = ["--cases", "3", "--test-cases", "1", "--shape", "24", "48", "48", "--tasks", "liver,lung",
            "--model-preset", "tiny", "--iterations", "2", "--no-progress"]  # fmt: skip
    assert CliRunner().invoke(app, ["demo", "--out", str(out), *tiny]).exit_code == 0
    script = SCRIPT.with_name("demo_diagnosis.py")
    monkeypatch.setattr(sys, "argv", [str(script), str(out), "--threads", "1"])
    runpy.run_path(str(script), run_name="__main__")
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.strip().splitlines()[-5:])
    ceiling = json.loads(lines["ceiling"])
    assert set(ceiling) == {"liver/organ", "liver/tumor", "lung/tumor"}
    assert all(0.5 < v <= 1.0 for v in ceiling.values()), ceiling
    assert set(json.loads(lines["train"])) == set(json.loads(lines["test"])) == set(ceiling)
    missed = json.loads(lines["missed"])
    assert set(missed) == {"liver/tumor", "lung/tumor"} and all(0 <= p <= 1 for v in missed.values() for p in v)
