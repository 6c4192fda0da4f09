"""The picture of a run: ``RUN/curves.png``, training loss and validation Dice against the iteration (TensorBoard
scalars are written by the metric-log handler, `ccq.training.handlers.metric_log`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ccq.utils import fs

CURVES_FILE = "curves.png"


def plot_curves(records: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """Training loss (with its Dice and BCE terms) and validation Dice against the iteration, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot's first import
    import matplotlib.pyplot as plt

    train = [r for r in records if r.get("kind") == "train"]
    val = [r for r in records if r.get("kind") == "val"]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    its = [r["iteration"] for r in train]
    for key, style in (("loss", "-"), ("dice", "--"), ("bce", ":")):
        ax_loss.plot(its, [r[key] for r in train], style, label={"loss": "loss (Dice + BCE)"}.get(key, key))
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("training loss")
    ax_loss.grid(alpha=0.3)
    if train:
        ax_loss.legend(loc="upper right")
    v_its = [r["iteration"] for r in val]
    ax_val.plot(v_its, [r["mean_dice"] for r in val], "o-", color="black", label="mean")
    categories = sorted({c for r in val for c in r.get("categories", {})})
    for category in categories:
        points = [(r["iteration"], r["categories"][category]) for r in val if category in r.get("categories", {})]
        ax_val.plot([p[0] for p in points], [p[1] for p in points], ".-", alpha=0.6, linewidth=1, label=category)
    ax_val.set_xlabel("iteration")
    ax_val.set_ylabel("validation Dice")
    ax_val.set_ylim(0, 1)
    ax_val.grid(alpha=0.3)
    if val:
        ax_val.legend(loc="lower right", fontsize=7, ncol=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    tmp = fs.temporary_path(path, keep_suffix=True)
    try:
        fig.savefig(tmp, format="png")
        tmp.replace(path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path
