"""Workers of ``ccq prepare --workers N`` end with their parent (`ccq.data.workers`); the kill through the real
entry point is `tests/cli/test_hostile_inputs.py::test_workers_end_when_prepare_is_killed`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

LINUX = sys.platform.startswith("linux")


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.mark.skipif(not LINUX, reason="reads process states from /proc")
@pytest.mark.parametrize("platform", ["linux", "darwin"], ids=["prctl", "polling-thread"])
def test_a_worker_ends_when_its_parent_is_killed(platform: str) -> None:
    # The worker fakes the platform: on "darwin" only the portable polling thread can end it.
    worker = ("import os, sys, time; sys.platform = " + repr(platform) + "; from ccq.data import workers; "
              "workers._exit_with_parent(os.getppid()); print('ready', flush=True); time.sleep(120)")  # fmt: skip
    parent = ("import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', " + repr(worker) + "]); "
              "print(c.pid, flush=True); time.sleep(120)")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        child = int(proc.stdout.readline())
        assert proc.stdout.readline().strip() == "ready"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _running(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(child), "the worker outlived its parent"
    finally:
        if proc.poll() is None:
            proc.kill()
        if child and _running(child):
            os.kill(child, signal.SIGKILL)
        proc.stdout.close()
