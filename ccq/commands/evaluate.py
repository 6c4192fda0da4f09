"""`ccq evaluate`: Dice and HD95 of predictions against ground truth; summary.json, cases.csv, table.md."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ccq.utils.command_line import flag


@dataclass(frozen=True, kw_only=True)
class EvaluateOptions:
    """What ``ccq evaluate`` was asked (see its --help); the field order is the order of the flags in a printed
    command line."""

    collection: str | None = flag("--collection", None)
    pred: Path = flag("--pred")
    gt: Path = flag("--gt")
    task: str | None = flag("--task", None)
    cases: str | None = flag("--cases", None)
    """all, test, train or comma-separated case ids."""
    definition: str = flag("--definition", "mots")
    spacing: tuple[float, float, float] | None = flag("--spacing", None, spelling="spread")
    preprocessing: Path | None = flag("--preprocessing", None)
    """Score each task on its own working grid: a checkpoint folder or a preprocessing file (instead of spacing)."""
    out: Path | None = flag("--out", None)
    overwrite: bool = flag("--overwrite", False)
    compare_paper: bool = flag("--compare-paper", False)
    overlays: bool = flag("--overlays", False)
    overlay_cases: int | None = flag("--overlay-cases", None)
    """With --overlays: only the first N cases of each task."""
    images: Path | None = flag("--images", None)
    progress: bool = flag("--progress", True, negative="--no-progress")


def run_evaluate(options: EvaluateOptions, echo: Callable[..., None] = print) -> dict:
    """Score the predictions, write the report files, print the table; returns the summary (summary.json)."""
    from ccq.evaluation.evaluate import evaluate_folder
    from ccq.evaluation.report import REPORT_FILES
    from ccq.limits import check_spacing

    o = options
    spacing = o.spacing
    if spacing is not None:
        spacing = check_spacing(spacing, "--spacing", "voxel sizes")  # type: ignore[assignment]
    selection: str | list[str] | None = o.cases
    if o.cases is not None and "," in o.cases:
        selection = [c.strip() for c in o.cases.split(",") if c.strip()]
    summary = evaluate_folder(
        o.pred, o.gt, task=o.task, collection=o.collection, definition=o.definition, spacing=spacing,
        preprocessing=o.preprocessing, cases=selection, out=o.out, overwrite=o.overwrite,
        compare_paper=o.compare_paper, overlays=o.overlays, overlay_cases=o.overlay_cases,
        images=o.images, progress=o.progress, echo=echo,
    )  # fmt: skip
    echo(format_summary(summary))
    where = o.pred if o.out is None else o.out
    echo(f"wrote {', '.join(str(where / name) for name in REPORT_FILES)}")
    return summary


def format_summary(summary: dict) -> str:
    """A fixed-width table of the categories and the means, for the terminal."""

    def cell(value, pct: bool) -> str:
        if value is None or not math.isfinite(value):
            return "-"
        return f"{100 * value:.2f}" if pct else f"{value:.2f}"

    unit = summary["units"]["hd95"]
    lines = [f"{summary['definition']} definition, {summary['n_cases']} case(s); Dice %, HD95 in {unit}",
             f"{'category':<28}{'Dice':>9}{'HD95':>9}{'cases':>7}  empty (both/pred/gt)"]  # fmt: skip
    for category, v in summary["categories"].items():
        s = v["status"]
        lines.append(f"{category:<28}{cell(v['dice'], True):>9}{cell(v['hd95'], False):>9}{v['n']:>7}  "
                     f"{s['both_empty']}/{s['pred_empty']}/{s['gt_empty']}")  # fmt: skip
    for group, v in summary["mean"].items():
        if v["n_categories"]:
            lines.append(f"{'mean ' + group:<28}{cell(v['dice'], True):>9}{cell(v['hd95'], False):>9}")
    return "\n".join(lines)
