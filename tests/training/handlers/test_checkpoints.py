"""The checkpoints handler: snapshots of last/ go through `ccq.checkpoint`'s swap, so a failure (or a kill) while
one is written leaves the previous snapshot intact; only the newest `keep_last` stay."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ccq.checkpoint import CHECKPOINT_FORMAT, META_NAME, WEIGHTS_NAME
from ccq.training.handlers.checkpoints import SNAPSHOTS, snapshot


def _write_last(run: Path, value: float) -> None:
    """A stand-in for RUN/last/ (what the snapshot copies is opaque to it, except the checkpoint marker)."""
    last = run / "last"
    shutil.rmtree(last, ignore_errors=True)
    last.mkdir(parents=True)
    save_file({"w": torch.full((4,), value)}, str(last / WEIGHTS_NAME))
    (last / META_NAME).write_text(json.dumps({"format": CHECKPOINT_FORMAT}))
    (last / "training_state.pt").write_bytes(b"state %f" % value)


def _value(folder: Path) -> float:
    return float(load_file(str(folder / WEIGHTS_NAME))["w"][0])


def test_snapshots_keep_the_newest(tmp_path: Path) -> None:
    for iteration in (3, 6, 9):
        _write_last(tmp_path, iteration)
        snapshot(tmp_path, iteration, keep=2)
    folder = tmp_path / SNAPSHOTS
    assert sorted(p.name for p in folder.iterdir()) == ["iteration_0000006", "iteration_0000009"]
    assert _value(folder / "iteration_0000009") == 9.0
    assert (folder / "iteration_0000009" / "training_state.pt").read_bytes() == b"state 9.000000"


def test_a_failed_copy_leaves_the_previous_snapshot(tmp_path: Path, monkeypatch) -> None:
    _write_last(tmp_path, 1.0)
    snapshot(tmp_path, 5, keep=3)
    _write_last(tmp_path, 2.0)
    real_copytree = shutil.copytree

    def copy_then_die(src, dst, *args, **kwargs):
        real_copytree(src, dst, *args, **kwargs)
        (Path(dst) / WEIGHTS_NAME).unlink()  # half written ...
        raise KeyboardInterrupt  # ... when the process is stopped

    monkeypatch.setattr(shutil, "copytree", copy_then_die)
    with pytest.raises(KeyboardInterrupt):
        snapshot(tmp_path, 5, keep=3)
    monkeypatch.setattr(shutil, "copytree", real_copytree)
    folder = tmp_path / SNAPSHOTS
    assert [p.name for p in folder.iterdir()] == ["iteration_0000005"]  # no temporary left
    assert _value(folder / "iteration_0000005") == 1.0  # the previous snapshot, whole

    snapshot(tmp_path, 5, keep=3)  # the same iteration again (a resumed run): replaced by the new last/
    assert _value(folder / "iteration_0000005") == 2.0


def test_a_failed_move_into_place_keeps_a_whole_snapshot(tmp_path: Path, monkeypatch) -> None:
    """Deleting the old snapshot, then renaming the copy, would lose both if the rename failed (or the process
    died between the two); the swap leaves a complete snapshot at every moment."""
    _write_last(tmp_path, 1.0)
    snapshot(tmp_path, 5, keep=3)
    _write_last(tmp_path, 2.0)
    real_rename = os.rename

    def rename(src, dst, *args, **kwargs):
        if ".tmp-" in Path(src).name:  # the finished copy moving to its name
            raise OSError("killed")
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(Path, "rename", lambda self, target: rename(self, target))
    try:
        snapshot(tmp_path, 5, keep=3)
    except OSError:
        pass
    folder = tmp_path / SNAPSHOTS
    assert [p.name for p in folder.iterdir()] == ["iteration_0000005"]
    assert _value(folder / "iteration_0000005") in (1.0, 2.0)  # the old or the new one, complete


def test_leftovers_of_a_killed_process_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = tmp_path / SNAPSHOTS
    leftover = folder / f".iteration_0000002.tmp-{dead.pid}-0123abcd"
    leftover.mkdir(parents=True)
    (leftover / WEIGHTS_NAME).write_bytes(b"half")
    _write_last(tmp_path, 4.0)
    snapshot(tmp_path, 4, keep=1)
    assert [p.name for p in folder.iterdir()] == ["iteration_0000004"]
