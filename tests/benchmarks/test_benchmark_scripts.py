"""Smoke tests of the benchmark scripts that need no copy of the official code."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_script(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=BENCHMARKS.parent
    )


@pytest.fixture()
def model_speed(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("model_speed")


@pytest.mark.parametrize("script", ["official_parity.py", "model_speed.py"])
def test_missing_official_source_is_one_line_error(script: str, tmp_path: Path) -> None:
    proc = run_script(str(BENCHMARKS / script), "--official-src", str(tmp_path / "absent"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "no such directory" in proc.stderr and "Traceback" not in proc.stderr


def test_parity_refuses_directory_without_main(tmp_path: Path) -> None:
    proc = run_script(str(BENCHMARKS / "official_parity.py"), "--official-src", str(tmp_path))
    assert proc.returncode == 2
    assert "has no main.py" in proc.stderr and "Traceback" not in proc.stderr


def test_official_loader_shims(tmp_path: Path) -> None:
    """A stand-in `main.py` using the official code's CUDA calls and timm imports loads and runs on a CPU."""
    (tmp_path / "main.py").write_text(
        textwrap.dedent("""
        import torch
        from timm.models.layers import DropPath, trunc_normal_

        class unet3D(torch.nn.Module):
            def __init__(self, image_size=(32, 96, 96)):
                super().__init__()
                self.w = torch.nn.Parameter(torch.empty(3))
                trunc_normal_(self.w, std=0.02)
                self.drop = DropPath(0.0)

            def forward(self, x, task_id):
                return self.drop(x + torch.zeros(1).cuda())
    """)
    )
    code = (
        f"import sys, torch; sys.path.insert(0, {str(BENCHMARKS)!r}); "
        "from _official import load_official_ccq; "
        f"m = load_official_ccq({str(tmp_path)!r})(image_size=(16, 32, 32)); "
        "print(tuple(m(torch.ones(2), torch.tensor([0])).shape))"
    )
    proc = run_script("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(2,)"


def test_losses_for_logits_and_probabilities_agree(model_speed) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 2, 4, 8, 8, generator=g, dtype=torch.float64) * 3
    target = torch.randint(0, 2, logits.shape, generator=g).double()
    on_logits = model_speed.make_loss(returns_probabilities=False)(logits, target)
    on_probs = model_speed.make_loss(returns_probabilities=True)(torch.sigmoid(logits), target)
    torch.testing.assert_close(on_logits, on_probs)


def test_written_out_loss_is_the_training_loss(model_speed) -> None:
    """The official models' loss (written out in the script) equals ours on a fully labeled target."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 2, 4, 8, 8, generator=g) * 3
    target = torch.randint(0, 2, logits.shape, generator=g).float()
    ours = model_speed.make_loss(returns_probabilities=False, project_loss=True)(logits, target)
    written_out = model_speed.make_loss(returns_probabilities=False)(logits, target)
    torch.testing.assert_close(ours, written_out)


def test_soft_dice_of_perfect_prediction_is_small(model_speed) -> None:
    target = torch.zeros(1, 2, 4, 4, 4)
    target[:, :, :2] = 1
    assert model_speed.soft_dice_loss(target, target).item() == pytest.approx(1 / 65, rel=1e-6)


def run_model_speed(*args: str) -> subprocess.CompletedProcess[str]:
    """benchmarks/model_speed.py on a 16x32x32 patch, one timed step, with ``args``."""
    return run_script(str(BENCHMARKS / "model_speed.py"), "--patch", "16", "32", "32", "--repeats", "1", *args)


def test_model_speed_tiny_json() -> None:
    proc = run_model_speed("--preset", "tiny", "--dodnet-preset", "tiny-dodnet", "--threads", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("ours_s", "ours_peak_mb", "ours_forward_s", "ours_dodnet_s", "ours_dodnet_peak_mb"):
        assert result[key] > 0, key
    assert result["ours_peak_mb"] >= result["ours_build_mb"] >= result["ours_import_mb"]
    assert "official_s" not in result and "time_ratio" not in result
    assert "ours (tiny)" in proc.stdout


def test_model_speed_bad_preset_is_one_line_error() -> None:
    proc = run_model_speed("--preset", "nonsense", "--no-dodnet")
    assert proc.returncode != 0
    assert "unknown model preset" in proc.stderr and "Traceback" not in proc.stderr


def test_layout_speed_smoke(monkeypatch: pytest.MonkeyPatch) -> None:
    proc = run_script(str(BENCHMARKS / "layout_speed.py"), "--presets", "tiny", "--rounds", "1", "--repeats", "1",
                      "--threads", "1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| tiny")]
    assert [row.split("|")[2].strip() for row in rows] == ["contiguous", "cl-encoder-contiguous", "channels-last"]
    assert all(float(row.split("|")[3]) > 0 for row in rows)
    # The old layout is reproduced by the benchmark and undone after it: standardization keeps channels-last again.
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    layout_speed = importlib.import_module("layout_speed")
    from ccq.models.layers import standardize_weight

    w = torch.randn(4, 4, 3, 3, 3).contiguous(memory_format=torch.channels_last_3d).requires_grad_(True)
    with layout_speed.contiguous_standardized_weights():
        assert standardize_weight(w).is_contiguous()
    assert not standardize_weight(w).is_contiguous()


def test_step_overhead_smoke(monkeypatch: pytest.MonkeyPatch) -> None:
    proc = run_script(str(BENCHMARKS / "step_overhead.py"), "--presets", "demo", "--rounds", "1", "--repeats", "1",
                      "--threads", "1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "demo: 35 standardized convolutions" in out and "AdamW step: before" in out and "SGD step: before" in out
    assert "demo training step (batch 2): before" in out and "now decoding every branch" in out
    # The old standardization is reproduced by the benchmark (the same values) and undone after it.
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    step_overhead = importlib.import_module("step_overhead")
    import ccq.models.layers as layers

    w = torch.randn(4, 4, 3, 3, 3, requires_grad=True)
    with step_overhead.old_step_parts():
        assert layers.standardize_weight is step_overhead.old_standardize_weight
    assert layers.standardize_weight is not step_overhead.old_standardize_weight
    old, now = step_overhead.old_standardize_weight(w), layers.standardize_weight(w)
    torch.testing.assert_close(old, now, atol=2e-6, rtol=1e-5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak memory is read from /proc")
def test_read_speed_smoke() -> None:
    proc = run_script(str(BENCHMARKS / "read_speed.py"), "--shape", "24", "20", "8", "--repeats", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["shape"] == [24, 20, 8] and set(result["median_s"]) == {"nibabel", "ccq"}
    assert all(v > 0 for v in result["peak_rss_mib"].values())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak memory is read from wait4 (Linux ru_maxrss)")
def test_prepare_scale_smoke() -> None:
    proc = run_script(str(BENCHMARKS / "prepare_scale.py"), "--slices", "12", "--size", "64", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    case = json.loads(proc.stdout.splitlines()[-1])["cases"]["12"]
    assert case["shape"] == [8, 56, 56] and case["peak_rss_gib"] > 0.05 and case["cpu_seconds"] > 0
    assert 0 < case["bytes_per_voxel"] < 1.5
    assert case["crop_box"][1] != [0, 56] and case["crop_box"][2] != [0, 56]  # the air around the body is cropped


def test_data_speed_smoke() -> None:
    proc = run_script(str(BENCHMARKS / "data_speed.py"), "--cases", "1", "--shape", "40", "80", "80", "--seconds",
                      "1", "--workers", "0", "--cold", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["cold"] is True and result["patches_per_s"]["0"] > 0 and result["cache_mib"] > 0
