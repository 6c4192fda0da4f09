"""Smoke tests of the inference benchmarks: they run at tiny sizes and keep their JSON contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _json_tail(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, *args, "--json", "--threads", "1"], capture_output=True, text=True, timeout=600,
        cwd=BENCHMARKS.parent,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_infer_speed_reports_the_speedup_and_agreement() -> None:
    script = str(BENCHMARKS / "infer_speed.py")
    out = _json_tail(script, "--preset", "tiny", "--shape", "16", "32", "40", "--tasks", "3")
    assert out["windows"] == 2 and out["tasks"] == 3
    assert out["speedup_all_tasks"] > 0 and out["max_abs_diff"] < 1e-4 and 1 < out["flop_ratio"] < 3


def test_infer_memory_reports_the_peak() -> None:
    out = _json_tail(str(BENCHMARKS / "infer_memory.py"), "--stub", "--shape", "64", "64", "24", "--tasks", "liver",
                     "--spacing", "3.0", "2.25", "2.25")  # fmt: skip
    assert out["peak_rss_mb"] >= out["baseline_rss_mb"] > 0 and out["working_shape"] == [12, 23, 23]
