"""Smoke test of benchmarks/grow.py at a tiny size: it trains every run, scores them and keeps its JSON contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_grow_benchmark_reports_its_figures(tmp_path: Path) -> None:
    args = ["--work", str(tmp_path), "--json", "--threads", "1", "--tasks", "liver,lung,spleen", "--new-task", "liver",
            "--cases", "3", "--test-cases", "1", "--shape", "24", "48", "48", "--model", "tiny",
            "--scratch-iterations", "3", "--grow-iterations", "1"]  # fmt: skip
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "grow.py"), *args], capture_output=True, text=True,
                          timeout=900, cwd=BENCHMARKS.parent)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["new_task"] == "liver" and out["iterations_ratio"] == round(1 / 3, 4)
    assert out["iterations"] == {"base": 2, "grow": 1, "scratch": 3}
    for key in ("new_task_dice", "scratch_new_task_dice"):
        assert 0 <= out[key] <= 1
    assert set(out["old_tasks_dice_drop"]) == {"replay", "no_replay", "freeze"}
    # The base model knows the two old tasks (lung: tumor only, spleen: organ only); the others all three.
    assert set(out["dice"]["base"]) == {"lung/tumor", "spleen/organ"}
    assert set(out["dice"]["replay"]) == {"lung/tumor", "spleen/organ", "liver/organ", "liver/tumor"}
    assert set(out["goals"]) == {"new_task_at_least_90pct_of_scratch", "at_most_a_third_of_the_iterations",
                                 "old_tasks_drop_at_most_2_points_with_replay"}  # fmt: skip
    replay_run = json.loads((Path(out["runs"]["replay"]["model"]).parent / "config.json").read_text())
    assert replay_run["init_from"]["added_tasks"] == ["liver"] and replay_run["train"]["replay_share"] == 0.3
