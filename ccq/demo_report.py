"""The demo's report: a Table 1-style comparison of the trained models, and ``DIR/report.md`` with that table, the
training curves, overlay pictures, the timings and the commands that produced everything."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ccq.evaluation.table import Method, Numbers, categories_of, label_column, mean_column, pair_columns, render
from ccq.utils import fs

REPORT_FILE = "report.md"


_NUMBERS = Numbers(digits=1, dash="-")


def comparison_table(summaries: Mapping[str, Mapping[str, Any]], markdown: bool = True) -> str:
    """One row per model: Dice (%) and HD95 per category (the paper's Table 1 layout), then the means over organ
    channels, tumor channels and all. ``summaries`` maps a model label to its `ccq evaluate` summary."""
    methods = [Method.of(label, summary) for label, summary in summaries.items()]
    categories = categories_of(methods)
    n = _NUMBERS
    if markdown:
        columns = [label_column("model"), *pair_columns(categories, "{category} Dice/HD95", n),
                   mean_column("organ Dice", "organ", "dice", n), mean_column("tumor Dice", "tumor", "dice", n),
                   mean_column("mean Dice", "all", "dice", n), mean_column("mean HD95", "all", "hd95", n)]  # fmt: skip
        return "\n".join(render(methods, columns, rule="compact"))
    # Plain text for the terminal: one block per model, a line per category.
    out = []
    for method in methods:
        out.append(f"{method.label}: organ Dice {n.percent(method.mean_score('organ', 'dice'))} %, tumor Dice "
                   f"{n.percent(method.mean_score('tumor', 'dice'))} %, mean HD95 "
                   f"{n.plain(method.mean_score('all', 'hd95'))}")  # fmt: skip
        for category in categories:
            cat = method.categories.get(category)
            if cat is not None:
                out.append(f"  {category:<22} Dice {n.percent(cat['dice']):>5} %   HD95 {n.plain(cat['hd95']):>6}")
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
