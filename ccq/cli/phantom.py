"""`ccq phantom --out DIR`: write a small synthetic, partially labeled CT collection (MSD folders + file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ccq.commands.phantom import DEFAULT_TASKS, PhantomOptions
from ccq.errors import CCQError


def phantom(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Folder to write (created; must be empty unless --overwrite).",
            show_default=False,
        ),
    ],
    cases: Annotated[int, typer.Option("--cases", min=1, help="Cases per task, test cases included.")] = 8,
    test_cases: Annotated[
        int, typer.Option("--test-cases", min=0, help="Cases per task held out in the test list.")
    ] = 2,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed writes the same files.")] = 0,
    tasks: Annotated[
        str,
        typer.Option(
            "--tasks",
            help="Comma-separated tasks, from liver, kidney, hepatic_vessel, pancreas, colon, lung, spleen.",
        ),
    ] = ",".join(DEFAULT_TASKS),
    shape: Annotated[
        tuple[int, int, int], typer.Option("--shape", metavar="D H W", help="Volume size in voxels (z y x).")
    ] = (48, 96, 96),
    naming: Annotated[
        str,
        typer.Option(
            "--naming",
            help="Image file names: msd (CASE.nii.gz) or nnunet (CASE_0000.nii.gz, v2 dataset.json).",
        ),
    ] = "msd",
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Write into a non-empty folder, replacing only what an earlier phantom wrote there.",
        ),
    ] = False,
) -> None:
    """Write a synthetic partially labeled CT collection, laid out like real data.

    Every image holds all organs; each dataset labels only its own organ and tumor (MOTS conventions).

    Writes MSD folders (imagesTr/, labelsTr/, dataset.json) and OUT/collection.yaml, usable as any collection.
    """
    from ccq.commands.phantom import run_phantom

    names = [t for t in (part.strip() for part in tasks.split(",")) if t]
    if not names:
        raise CCQError(f"--tasks {tasks!r}: expected a comma-separated list of task names")
    options = PhantomOptions(
        out=out, cases=cases, test_cases=test_cases, seed=seed, tasks=tuple(names), shape=tuple(shape),
        naming=naming, overwrite=overwrite,
    )  # fmt: skip
    run_phantom(options, echo=typer.echo)
