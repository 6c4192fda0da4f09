"""Faults: a run killed with SIGKILL resumes to the identical weights; SIGTERM saves and exits cleanly;
non-finite losses are skipped within a budget or stop the run keeping the last good checkpoint."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ccq.checkpoint import load_checkpoint
from ccq.errors import CCQError
from ccq.training.loss import LossTerms
from ccq.training.run_log import read_log
from ccq.training.state import STATE_FILE, load_training_state
from ccq.training.trainer import Trainer, TrainingDiverged

# The tiny model with its transformer dropout on, so a resume that lost the RNG state would differ.
SETTINGS = {"model": "tiny", "model_overrides": {}, "val_every": 3, "save_every": 3, "log_every": 1,
            "val_batch_size": 4, "tensorboard": False}  # fmt: skip


REPO = Path(__file__).resolve().parents[2]


def _python_m(module: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", module, *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _ccq(*args: str) -> subprocess.Popen:
    return _python_m("ccq", *args)


def _train_args(data: Path, out: Path, settings: Path, iterations: int) -> list[str]:
    return ["train", "--preset", "demo", "--config", str(settings), "--data", str(data), "--out", str(out),
            "--iterations", str(iterations), "--no-progress"]  # fmt: skip


def _finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _wait_for_checkpoint(run: Path, iteration: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    meta = run / "last" / "checkpoint.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if meta.is_file() and json.loads(meta.read_text())["extra"]["iteration"] == iteration:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.communicate()}")
        time.sleep(0.1)
    raise AssertionError(f"no checkpoint at iteration {iteration} within {timeout} s")


@pytest.mark.parametrize("ema", [None, 0.9], ids=["plain", "ema"])
def test_sigkill_then_resume_gives_identical_weights(tiny_prepared: Path, tmp_path: Path, ema: float | None) -> None:
    settings = tmp_path / "tiny.json"
    settings.write_text(json.dumps({**SETTINGS, "ema_decay": ema}))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    code, _, err = _finish(_ccq(*_train_args(tiny_prepared, whole, settings, 6)))
    assert code == 0, err

    # The same training with a handler (installed by the script) that hangs once last/ is saved at iteration 3.
    proc = _python_m("tests.training.hang_after_save", str(settings), str(tiny_prepared), str(killed), "6", "3")
    try:
        _wait_for_checkpoint(killed, 3, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(killed / "last").meta.extra["iteration"] == 3

    code, out, err = _finish(_ccq("train", "--out", str(killed), "--resume", "--no-progress"))
    assert code == 0, err
    assert "resuming" in out and "at iteration 3" in out

    a, b = load_file(str(whole / "last" / "model.safetensors")), load_file(str(killed / "last" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    assert load_checkpoint(killed / "last").meta.extra["iteration"] == 6
    if ema is not None:  # the file holds the average; the trained weights and the counter are resumed exactly too
        online = [load_training_state(run / "last")["online_weights"] for run in (whole, killed)]
        assert all(torch.equal(online[0][k], online[1][k]) for k in a)
        assert any(not torch.equal(online[0][k], a[k]) for k in a)
        assert load_training_state(killed / "last")["ema"]["updates"] == 6
    # One history in the log: iterations 1..6 once each, losses as in the uninterrupted run.
    whole_losses = [(r["iteration"], r["loss"]) for r in read_log(whole) if r["kind"] == "train"]
    killed_losses = [(r["iteration"], r["loss"]) for r in read_log(killed) if r["kind"] == "train"]
    assert killed_losses == whole_losses and [i for i, _ in whole_losses] == [1, 2, 3, 4, 5, 6]
    record = json.loads((killed / "config.json").read_text())
    assert record["resumed"][0]["iteration"] == 3
    assert record["train"] == json.loads((whole / "config.json").read_text())["train"]  # the script = `ccq train`
    # The training state is plain data: readable with weights_only=True.
    state = load_training_state(killed / "last")
    assert state["iteration"] == 6 and state["loader"][0]["position"] == 6 and len(state["rng"]) == 1
    assert (killed / "last" / STATE_FILE).is_file() and (killed / "curves.png").is_file()


def test_sigterm_saves_and_exits_with_a_resume_hint(tiny_prepared: Path, tmp_path: Path) -> None:
    settings = tmp_path / "tiny.json"
    settings.write_text(json.dumps({**SETTINGS, "val_every": 0, "save_every": 100000}))
    run = tmp_path / "run"
    proc = _ccq(*_train_args(tiny_prepared, run, settings, 100000))
    try:
        deadline = time.monotonic() + 240
        while not ((run / "log.jsonl").is_file() and (run / "log.jsonl").read_text().count('"train"') >= 2):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        code, _, err = _finish(proc, timeout=120)
    finally:
        proc.kill()
    assert code == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "--resume" in err and "Traceback" not in err
    stop = [r for r in read_log(run) if r["kind"] == "stop"]
    assert len(stop) == 1
    saved = load_checkpoint(run / "last").meta.extra["iteration"]
    assert saved == stop[0]["iteration"] >= 2

    code, out, err = _finish(_ccq("train", "--out", str(run), "--resume", "--iterations", str(saved + 1),
                                  "--no-progress"))  # fmt: skip
    assert code == 0, err
    assert load_checkpoint(run / "last").meta.extra["iteration"] == saved + 1


def test_resume_refuses_a_changed_setting_and_a_run_without_checkpoint(
    tiny_prepared: Path, tiny_config, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from tests.training.test_train_cli import _app

    run = tmp_path / "run"
    Trainer(tiny_config.replace(iterations=2, tensorboard=False), tiny_prepared, run, progress=False,
            echo=lambda _: None).fit()  # fmt: skip
    for args, expected in (
        (["--lr", "0.5"], "cannot change lr"),
        ([], "already finished 2 iterations"),
        (["--preset", "demo"], "drop --preset"),
    ):
        result = CliRunner().invoke(_app(), ["train", "--out", str(run), "--resume", *args])
        assert isinstance(result.exception, CCQError) and expected in str(result.exception), result.output
    result = CliRunner().invoke(_app(), ["train", "--out", str(tmp_path / "nothing"), "--resume"])
    assert isinstance(result.exception, CCQError) and "config.json" in str(result.exception)


def _nan_on_calls(trainer: Trainer, calls: set[int]) -> None:
    criterion, count = trainer.criterion, [0]

    def poisoned(output, target, task_id) -> LossTerms:
        count[0] += 1
        terms = criterion(output, target, task_id)
        if count[0] in calls:
            nan = terms.total * math.nan
            return LossTerms(total=nan, dice=nan, bce=nan)
        return terms

    trainer.criterion = poisoned


def test_nonfinite_losses_are_skipped_within_the_budget(tiny_prepared: Path, tiny_config, tmp_path: Path) -> None:
    config = tiny_config.replace(max_nonfinite_skips=1, tensorboard=False)
    trainer = Trainer(config, tiny_prepared, tmp_path / "run", progress=False, echo=lambda _: None)
    _nan_on_calls(trainer, {2})
    result = trainer.fit()
    assert result.state.iteration == 4 and result.state.nonfinite_skips == 1
    log = read_log(tmp_path / "run")
    assert [r["iteration"] for r in log if r["kind"] == "skip"] == [2]
    assert all(math.isfinite(p.detach().sum()) for p in trainer.model.parameters())


def test_divergence_keeps_the_last_good_checkpoint(tiny_prepared: Path, tiny_config, tmp_path: Path) -> None:
    config = tiny_config.replace(tensorboard=False)
    trainer = Trainer(config, tiny_prepared, tmp_path / "run", progress=False, echo=lambda _: None)
    _nan_on_calls(trainer, {3})
    with pytest.raises(TrainingDiverged, match="iteration 3, task"):
        trainer.fit()
    last = load_checkpoint(tmp_path / "run" / "last")
    assert last.meta.extra["iteration"] == 2
    assert all(torch.isfinite(t).all() for t in last.model.state_dict().values())
