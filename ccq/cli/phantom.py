"""`ccq phantom --out DIR`: write a small synthetic, partially labeled CT collection (MSD folders + file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ccq.errors import CCQError

_DEFAULT_TASKS = "liver,kidney,pancreas,colon,spleen"  # = ccq.data.phantom.DEFAULT_TASKS, without the import


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
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed: the same seed writes the same files.")
    ] = 0,
    tasks: Annotated[
        str,
        typer.Option(
            "--tasks",
            help="Comma-separated tasks, from liver, kidney, hepatic_vessel, pancreas, colon, lung, spleen.",
        ),
    ] = _DEFAULT_TASKS,
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
    from ccq.data.phantom import generate_collection

    names = [t for t in (part.strip() for part in tasks.split(",")) if t]
    if not names:
        raise CCQError(f"--tasks {tasks!r}: expected a comma-separated list of task names")
    collection = generate_collection(
        out,
        cases_per_task=cases,
        test_cases_per_task=test_cases,
        seed=seed,
        tasks=tuple(names),
        shape=tuple(shape),
        overwrite=overwrite,
        naming=naming,
    )
    root = collection.source.parent if collection.source is not None else out
    size = "x".join(map(str, shape))
    print(f"wrote {collection.num_tasks} partially labeled tasks x {cases} cases ({size} voxels) to {root}")
    width = max(len(t.name) for t in collection.tasks)
    for task in collection.tasks:
        organ = task.channel_names.get("organ", "-")
        tumor = task.channel_names.get("tumor", "-")
        split = f"{len(task.split.train or ())} train / {len(task.split.test)} test"
        print(f"  {task.name:<{width}}  {task.folder:<22} organ: {organ:<15} tumor: {tumor:<15} {split}")
    print(f"collection file: {collection.source}")
