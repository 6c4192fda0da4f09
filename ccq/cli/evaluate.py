"""`ccq evaluate`: Dice and HD95 of predictions against ground truth; summary.json, cases.csv, table.md."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ccq.cli.options import option


def evaluate(
    pred: Annotated[
        Path,
        option(
            "--pred",
            "-p",
            help="Predictions: PRED/CASE/TASK.nii.gz (as `ccq predict` writes them) or, with --task, PRED/CASE.nii.gz.",
        ),
    ],
    gt: Annotated[
        Path,
        option(
            "--gt",
            "-g",
            help="Ground truth: a folder of label maps GT/CASE.nii.gz (with --task), a "
            "dataset folder, the raw root of the collection's datasets, or a prepared folder.",
        ),
    ],
    task: Annotated[
        str | None,
        option("--task", "-t", help="Evaluate this task only; default: every task of the collection."),
    ] = None,
    collection: Annotated[
        str | None,
        option(
            "--collection",
            help="'mots' or a collection file; default mots (a prepared folder's own).",
        ),
    ] = None,
    definition: Annotated[
        str,
        typer.Option(
            "--definition",
            help="mots: the paper's Dice (+1) and MedPy HD95 in voxels of the working "
            "grid; standard: plain Dice and MONAI's HD95 in mm on the native grid, empty masks as NaN.",
        ),
    ] = "mots",
    spacing: Annotated[
        tuple[float, float, float] | None,
        option(
            "--spacing",
            help="Working grid of the mots definition, z y x mm (default 1.5 0.8 0.8, or the prepared folder's).",
        ),
    ] = None,
    preprocessing: Annotated[
        Path | None,
        option(
            "--preprocessing",
            help="Score each task of the mots definition on its own working grid, as a "
            "model works on it: a checkpoint folder (e.g. a converted official one) or a preprocessing "
            "JSON/YAML file; instead of --spacing.",
        ),
    ] = None,
    cases: Annotated[
        str | None,
        option(
            "--cases",
            help="all, test, train (the collection's split) or a comma-separated list of "
            "case ids (default: all with --task, else test).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        option("--out", "-o", help="Folder for summary.json, cases.csv, table.md (default: --pred)."),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier evaluation's files.")] = False,
    compare_paper: Annotated[
        bool, typer.Option("--compare-paper", help="Add the paper's CCQ row (Table 1) to table.md and summary.json.")
    ] = False,
    overlays: Annotated[
        bool,
        typer.Option(
            "--overlays", help="Also write PNGs (CT, prediction and ground-truth outlines) to OUT/overlays/CASE/TASK/."
        ),
    ] = False,
    overlay_cases: Annotated[
        int | None,
        option("--overlay-cases", min=1, help="With --overlays: only the first N cases of each task (default: all)."),
    ] = None,
    images: Annotated[
        Path | None,
        option(
            "--images",
            help="CTs for --overlays: IMAGES/CASE.nii.gz or CASE_0000.nii.gz (default: the raw dataset's imagesTr/).",
        ),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Score predictions against ground truth, per case and per category (task/organ, task/tumor).

    Writes OUT/summary.json, OUT/cases.csv and OUT/table.md (the paper's Table 1 layout). Only the channels a
    task's dataset labels are scored. An earlier evaluation's files are never replaced without --overwrite.
    """
    from ccq.commands.evaluate import EvaluateOptions, run_evaluate

    options = EvaluateOptions(
        pred=pred, gt=gt, collection=collection, task=task, cases=cases, definition=definition,
        spacing=None if spacing is None else tuple(spacing), preprocessing=preprocessing, out=out,
        overwrite=overwrite, compare_paper=compare_paper, overlays=overlays, overlay_cases=overlay_cases,
        images=images, progress=progress,
    )  # fmt: skip
    run_evaluate(options, echo=typer.echo)
