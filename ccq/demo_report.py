"""The demo's report: a Table 1-style comparison of the trained models, and ``DIR/report.md`` with that table, the
training curves, overlay pictures, the timings and the commands that produced everything."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ccq.utils import fs

REPORT_FILE = "report.md"


def _pct(value: Any) -> str:
    return "-" if value is None or not math.isfinite(float(value)) else f"{100 * float(value):.1f}"


def _hd(value: Any) -> str:
    return "-" if value is None or not math.isfinite(float(value)) else f"{float(value):.1f}"


def comparison_table(summaries: Mapping[str, Mapping[str, Any]], markdown: bool = True) -> str:
    """One row per model: Dice (%) and HD95 per category (the paper's Table 1 layout), then the means over organ
    channels, tumor channels and all. ``summaries`` maps a model label to its `ccq evaluate` summary."""
    categories: list[str] = []
    for summary in summaries.values():
        categories += [c for c in summary["categories"] if c not in categories]
    head = ["model", *[f"{c} Dice/HD95" for c in categories], "organ Dice", "tumor Dice", "mean Dice", "mean HD95"]
    rows = []
    for label, summary in summaries.items():
        cells = [label]
        for category in categories:
            cat = summary["categories"].get(category)
            cells.append("-" if cat is None else f"{_pct(cat['dice'])} / {_hd(cat['hd95'])}")
        mean = summary["mean"]
        cells += [_pct(mean["organ"]["dice"]), _pct(mean["tumor"]["dice"]), _pct(mean["all"]["dice"]),
                  _hd(mean["all"]["hd95"])]  # fmt: skip
        rows.append(cells)
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    # Plain text for the terminal: one block per model, a line per category.
    out = []
    for label, summary in summaries.items():
        mean = summary["mean"]
        out.append(f"{label}: organ Dice {_pct(mean['organ']['dice'])} %, tumor Dice {_pct(mean['tumor']['dice'])} %, "
                   f"mean HD95 {_hd(mean['all']['hd95'])}")  # fmt: skip
        for category in categories:
            cat = summary["categories"].get(category)
            if cat is not None:
                out.append(f"  {category:<22} Dice {_pct(cat['dice']):>5} %   HD95 {_hd(cat['hd95']):>6}")
    return "\n".join(out)


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def write_report(
    out: Path,
    *,
    summaries: Mapping[str, Mapping[str, Any]],
    definition: str,
    curves: Mapping[str, Path],
    overlays: Sequence[Path],
    stages: Mapping[str, float],
    seconds: float,
    commands: Sequence[str],
    next_commands: Sequence[str],
) -> Path:
    """Write ``out/report.md`` (paths inside it relative to ``out``, so the folder can be moved)."""
    unit = "voxels of the working grid" if definition == "mots" else "mm"
    lines = [
        "# ccq demo report", "",
        f"Synthetic partially labeled CT (phantoms), held-out test cases, `{definition}` definition: Dice in %, "
        f"HD95 in {unit}. Phantom results check the machinery; they say nothing about accuracy on real CT.", "",
        comparison_table(summaries), "",
        "## Training", "",
    ]  # fmt: skip
    for label, path in curves.items():
        if path.is_file():
            lines += [f"{label}:", "", f"![{label} training curve]({_rel(path, out)})", ""]
    if overlays:
        lines += ["## Predictions (solid) and ground truth (dashed)", ""]
        lines += [f"![{'/'.join(p.parts[-3:-1])}]({_rel(p, out)})" for p in overlays] + [""]
    lines += ["## Time", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {value:.0f} |" for name, value in stages.items()]
    lines += [f"| **total** | **{seconds:.0f}** |", "", "## The commands it ran", "", "```bash", *commands, "```", ""]
    lines += ["## Next", "", "```bash", *next_commands, "```", ""]
    path = out / REPORT_FILE
    fs.write_text_atomic(path, "\n".join(lines))
    return path
