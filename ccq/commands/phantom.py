"""`ccq phantom`: write a small synthetic, partially labeled CT collection (MSD folders + collection file)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ccq.utils.command_line import flag

DEFAULT_TASKS = ("liver", "kidney", "pancreas", "colon", "spleen")
"""= `ccq.data.phantom.DEFAULT_TASKS` (a test keeps them equal), without importing the phantom generator."""


@dataclass(frozen=True, kw_only=True)
class PhantomOptions:
    """What ``ccq phantom`` was asked (see its --help)."""

    out: Path = flag("--out")
    cases: int = flag("--cases", 8)
    test_cases: int = flag("--test-cases", 2)
    seed: int = flag("--seed", 0)
    tasks: tuple[str, ...] = flag("--tasks", DEFAULT_TASKS, spelling="comma")
    shape: tuple[int, int, int] = flag("--shape", (48, 96, 96), spelling="spread")
    naming: str = flag("--naming", "msd")
    overwrite: bool = flag("--overwrite", False)


def run_phantom(options: PhantomOptions, echo: Callable[..., None] = print):
    """Write the collection; returns it (a `Collection`, its file at ``collection.source``)."""
    from ccq.data.phantom import generate_collection

    o = options
    collection = generate_collection(
        o.out, cases_per_task=o.cases, test_cases_per_task=o.test_cases, seed=o.seed, tasks=tuple(o.tasks),
        shape=tuple(o.shape), overwrite=o.overwrite, naming=o.naming,
    )  # fmt: skip
    root = collection.source.parent if collection.source is not None else o.out
    size = "x".join(map(str, o.shape))
    echo(f"wrote {collection.num_tasks} partially labeled tasks x {o.cases} cases ({size} voxels) to {root}")
    width = max(len(t.name) for t in collection.tasks)
    for task in collection.tasks:
        organ = task.channel_names.get("organ", "-")
        tumor = task.channel_names.get("tumor", "-")
        split = f"{len(task.split.train or ())} train / {len(task.split.test)} test"
        echo(f"  {task.name:<{width}}  {task.folder:<22} organ: {organ:<15} tumor: {tumor:<15} {split}")
    echo(f"collection file: {collection.source}")
    return collection
