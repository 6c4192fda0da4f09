"""`ccq evaluate`: Dice and HD95 of predictions against ground truth; summary.json, cases.csv, table.md."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer


def evaluate(
    pred: Annotated[
        Path,
        typer.Option("--pred", "-p", help="Predictions: PRED/CASE/TASK.nii.gz (as `ccq predict` writes them) or, "
                     "with --task, PRED/CASE.nii.gz.", show_default=False),
    ],
    gt: Annotated[
        Path,
        typer.Option("--gt", "-g", help="Ground truth: a folder of label maps GT/CASE.nii.gz (with --task), a "
                     "dataset folder, the raw root of the collection's datasets, or a prepared folder.",
                     show_default=False),
    ],
    task: Annotated[
        str | None,
        typer.Option("--task", "-t", help="Evaluate this task only; default: every task of the collection.",
                     show_default=False),
    ] = None,
    collection: Annotated[
        str | None,
        typer.Option("--collection", help="'mots' or a collection file; default mots (a prepared folder's own).",
                     show_default=False),
    ] = None,
    definition: Annotated[
        str,
        typer.Option("--definition", help="mots: the paper's Dice (+1) and MedPy HD95 in voxels of the working "
                     "grid; standard: plain Dice and MONAI's HD95 in mm on the native grid, empty masks as NaN."),
    ] = "mots",
    spacing: Annotated[
        tuple[float, float, float] | None,
        typer.Option("--spacing", help="Working grid of the mots definition, z y x mm (default 1.5 0.8 0.8, or "
                     "the prepared folder's).", show_default=False),
    ] = None,
    preprocessing: Annotated[
        Path | None,
        typer.Option("--preprocessing", help="Score each task of the mots definition on its own working grid, as a "
                     "model works on it: a checkpoint folder (e.g. a converted official one) or a preprocessing "
                     "JSON/YAML file; instead of --spacing.", show_default=False),
    ] = None,
    cases: Annotated[
        str | None,
        typer.Option("--cases", help="all, test, train (the collection's split) or a comma-separated list of "
                     "case ids (default: all with --task, else test).", show_default=False),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder for summary.json, cases.csv, table.md (default: --pred).",
                     show_default=False),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier evaluation's files.")] = False,
    compare_paper: Annotated[
        bool, typer.Option("--compare-paper", help="Add the paper's CCQ row (Table 1) to table.md and summary.json.")
    ] = False,
    overlays: Annotated[
        bool,
        typer.Option("--overlays", help="Also write PNGs (CT, prediction and ground-truth outlines) to "
                     "OUT/overlays/CASE/TASK/."),
    ] = False,
    images: Annotated[
        Path | None,
        typer.Option("--images", help="CTs for --overlays: IMAGES/CASE.nii.gz or CASE_0000.nii.gz (default: the "
                     "raw dataset's imagesTr/).", show_default=False),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Score predictions against ground truth, per case and per category (task/organ, task/tumor).

    Writes OUT/summary.json, OUT/cases.csv and OUT/table.md (the paper's Table 1 layout). Only the channels a
    task's dataset labels are scored. An earlier evaluation's files are never replaced without --overwrite.
    """
    from ccq.evaluation.evaluate import evaluate_folder
    from ccq.evaluation.report import REPORT_FILES
    from ccq.limits import check_spacing

    if spacing is not None:
        spacing = check_spacing(spacing, "--spacing", "voxel sizes")  # type: ignore[assignment]
    selection: str | list[str] | None = cases
    if cases is not None and "," in cases:
        selection = [c.strip() for c in cases.split(",") if c.strip()]
    summary = evaluate_folder(
        pred, gt, task=task, collection=collection, definition=definition, spacing=spacing,
        preprocessing=preprocessing, cases=selection,
        out=out, overwrite=overwrite, compare_paper=compare_paper, overlays=overlays, images=images,
        progress=progress, echo=typer.echo,
    )  # fmt: skip
    typer.echo(format_summary(summary))
    where = pred if out is None else out
    typer.echo(f"wrote {', '.join(str(where / name) for name in REPORT_FILES)}")


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
