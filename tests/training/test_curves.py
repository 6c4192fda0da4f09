"""RUN/curves.png."""

from __future__ import annotations

from pathlib import Path

from ccq.training.curves import plot_curves


def test_curves_png(tmp_path: Path) -> None:
    records = [{"kind": "train", "iteration": i, "loss": 1.0 / i, "dice": 0.5 / i, "bce": 0.5 / i} for i in (1, 2)]
    records.append({"kind": "val", "iteration": 2, "mean_dice": 0.4, "categories": {"liver/organ": 0.4}})
    path = plot_curves(records, tmp_path / "curves.png", title="run")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]
