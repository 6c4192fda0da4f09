"""`torchrun --nproc_per_node 2 -m ccq train` on the CPU (gloo): the replicas stay identical, each rank draws
its own sample stream, and only rank 0 writes the run folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ccq.checkpoint import load_checkpoint
from ccq.errors import CCQError
from ccq.training.distributed import ReplicasDisagree, check_replicas_agree, context_from_env, parameter_digest
from ccq.training.run_log import read_log
from ccq.training.state import load_training_state


def test_context_from_env() -> None:
    assert not context_from_env({}).enabled
    ctx = context_from_env({"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"})
    assert ctx.enabled and ctx.rank == 1 and not ctx.is_main


def test_torchrun_two_cpu_processes(tiny_prepared: Path, tmp_path: Path) -> None:
    settings = tmp_path / "tiny.json"
    settings.write_text(json.dumps({"model": "tiny", "model_overrides": {}, "val_every": 2, "save_every": 2,
                                    "log_every": 1, "val_batch_size": 4, "tensorboard": False}))  # fmt: skip
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "ccq", "train", "--preset", "demo", "--config", str(settings), "--data", str(tiny_prepared),
        "--out", str(run), "--iterations", "3", "--no-progress",
    ]  # fmt: skip
    # Its own session, so that on a timeout the ranks go down with torchrun (they would wait for each other).
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    assert stdout.count("held out for validation") == 1  # only rank 0 speaks

    log = read_log(run)
    # One writer: every iteration logged once, one end record carrying both ranks' parameter digests.
    assert [r["iteration"] for r in log if r["kind"] == "train"] == [1, 2, 3]
    assert [r["iteration"] for r in log if r["kind"] == "val"] == [2, 3]
    (end,) = [r for r in log if r["kind"] == "end"]
    assert len(end["parameter_digests"]) == 2 and len(set(end["parameter_digests"])) == 1
    assert end["parameter_digests"][0] == parameter_digest(load_checkpoint(run / "last").model)
    assert sorted(p.name for p in run.iterdir()) == ["best", "config.json", "curves.png", "last", "log.jsonl"]
    assert not [p for p in run.rglob("*") if ".tmp-" in p.name]

    record = json.loads((run / "config.json").read_text())
    assert record["world_size"] == 2 and record["rank_seeds"]["torch"] == [0, 1]
    state = load_training_state(run / "last")
    assert state["world_size"] == 2 and [s["rank"] for s in state["loader"]] == [0, 1]
    assert all(s["position"] == 3 for s in state["loader"])
    assert len(state["rng"]) == 2 and not bool((state["rng"][0]["torch"] == state["rng"][1]["torch"]).all())


def test_disagreeing_replicas_are_no_user_error() -> None:
    check_replicas_agree(["a", "a"], 3)
    with pytest.raises(ReplicasDisagree, match="after 3 iterations") as info:
        check_replicas_agree(["a", "b"], 3)
    assert not isinstance(info.value, CCQError)
