"""`ccq prepare`: public CT downloads (MSD / LiTS / KiTS19 folders) -> a resampled, memory-mappable cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ccq.cli.options import option


def prepare(
    out: Annotated[Path, option("--out", "-o", help="Folder to write the prepared cases into.")],
    raw: Annotated[
        Path | None,
        option(
            "--raw",
            help="Folder holding the downloaded datasets (Task03_Liver, kits19/data, ...). "
            "Optional when the collection file sets `root`.",
        ),
    ] = None,
    collection: Annotated[
        str, typer.Option("--collection", help="Task collection: 'mots' or a collection file (.yaml/.json).")
    ] = "mots",
    workers: Annotated[int, typer.Option("--workers", min=1, help="Cases prepared in parallel (processes).")] = 1,
    keep_going: Annotated[
        bool,
        typer.Option("--keep-going", help="Go on after a bad case; list the failures at the end (exit 1)."),
    ] = False,
    folders: Annotated[
        Path | None,
        option(
            "--folders",
            help="JSON/YAML mapping task name (or the name of a dataset that labels several tasks) -> folder, for "
            "datasets whose folder names differ; 'official': "
            "the authors' prepared MOTS folder (0123456_spacing_same: 0Liver, 1Kidney/origin, ...).",
        ),
    ] = None,
    preprocessing: Annotated[
        Path | None,
        option(
            "--preprocessing",
            help="JSON/YAML PreprocessingConfig (spacing, HU window, per-task grids ...), or a checkpoint folder "
            "(the grids its model works on); default: the paper's (1.5 x 0.8 x 0.8 mm for every task).",
        ),
    ] = None,
    only_tasks: Annotated[
        str | None,
        option(
            "--tasks",
            help="Prepare only these tasks of the collection, comma-separated (e.g. the tasks a collection adds to a "
            "trained model's); the folder still records the whole collection.",
        ),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Reorient, resample (1.5 x 0.8 x 0.8 mm official) and window every train/test case of a collection.

    Writes OUT/manifest.json, OUT/collection.json, OUT/preprocessing.json and one folder per case. Running
    the same command again skips finished cases, so an interrupted run simply resumes.
    """
    from ccq.commands.prepare import PrepareOptions, run_prepare
    from ccq.errors import CCQError

    only = None if only_tasks is None else tuple(name.strip() for name in only_tasks.split(",") if name.strip())
    if only is not None and not only:
        raise CCQError(f"--tasks {only_tasks!r}: expected task names, comma-separated")
    options = PrepareOptions(
        out=out, collection=collection, raw=raw, preprocessing=preprocessing, workers=workers,
        keep_going=keep_going, folders=folders, only_tasks=only, progress=progress,
    )  # fmt: skip
    if not run_prepare(options, echo=typer.echo).ok:
        raise typer.Exit(1)
