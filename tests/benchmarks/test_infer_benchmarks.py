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
    out = _json_tail(script, "--preset", "tiny", "--shape", "16", "32", "40", "--tasks", "7")
    assert out["windows"] == 2 and out["tasks"] == 7 and out["labeled_channels"] == 11
    assert out["speedup_all_tasks"] > 0 and out["max_abs_diff"] < 1e-4 and 1 < out["flop_ratio"] < 7
    assert out["speedup_labeled"] > 0 and out["max_abs_diff_labeled"] < 1e-4
    assert out["flop_ratio"] < out["flop_ratio_labeled"] < 7


def test_infer_speed_skips_what_mots_does_not_label() -> None:
    from ccq.data.collection import load_collection

    sys.path.insert(0, str(BENCHMARKS))
    try:
        import infer_speed
    finally:
        sys.path.remove(str(BENCHMARKS))
    mots = load_collection("mots")
    labeled = [(t.id, c) for t in mots.tasks for c in range(2) if t.labeled_channels[c]]
    assert infer_speed.labeled_pairs(len(mots.tasks)) == labeled
    assert infer_speed.labeled_pairs(9)[-4:] == [(7, 0), (7, 1), (8, 0), (8, 1)]


def test_infer_memory_reports_the_peak() -> None:
    out = _json_tail(str(BENCHMARKS / "infer_memory.py"), "--stub", "--shape", "64", "64", "24", "--tasks", "liver",
                     "--spacing", "3.0", "2.25", "2.25")  # fmt: skip
    assert out["peak_rss_mb"] >= out["baseline_rss_mb"] > 0 and out["working_shape"] == [12, 23, 23]


def test_infer_memory_times_all_tasks_against_one_by_one() -> None:
    out = _json_tail(str(BENCHMARKS / "infer_memory.py"), "--stub", "--shape", "48", "48", "16", "--tta",
                     "--one-by-one", "--spacing", "3.0", "2.25", "2.25")  # fmt: skip
    assert out["tta"] is True and out["device"] == "cpu" and "peak_gpu_mb" not in out
    assert out["seconds"] > 0 and out["seconds_one_by_one"] > 0


def test_infer_speed_counts_flops_without_computing() -> None:
    out = _json_tail(str(BENCHMARKS / "infer_speed.py"), "--preset", "tiny", "--flops-only")
    assert out["shared_gflop"] > 0 and out["branch_gflop"] > 0
    s, b = out["shared_gflop"], out["branch_gflop"]
    assert abs(out["flop_ratio"] - 7 * (s + 2 * b) / (s + 14 * b)) < 0.01
    assert abs(out["flop_ratio_labeled"] - 7 * (s + 2 * b) / (s + 11 * b)) < 0.01


def test_infer_speed_compares_the_settings_side_by_side() -> None:
    script = str(BENCHMARKS / "infer_speed.py")
    out = _json_tail(script, "--preset", "tiny", "--shape", "16", "32", "32", "--tasks", "2", "--compare-settings")
    assert sorted(out["settings"]) == [
        "channels-last, PyTorch conv choice", "channels-last, oneDNN", "contiguous, PyTorch conv choice",
        "contiguous, oneDNN",
    ]  # fmt: skip
    for figures in out["settings"].values():
        assert figures["max_abs_diff"] < 1e-4 and figures["one_by_one_cpu_s"] > 0
    assert out["contiguous"] is False and out["pytorch_conv_choice"] is False  # the main figures: ccq predict's
