"""`ccq demo`: synthetic CT -> prepare -> train -> predict -> evaluate -> report, in minutes on a CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ccq.demo import DemoOptions
from ccq.errors import CCQError


def demo(
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Folder for everything: new, empty, or an earlier demo's."),
    ] = Path("ccq-demo"),
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the phantoms and of training.")] = 0,
    iterations: Annotated[
        int | None,
        typer.Option(
            "--iterations", min=1, help="Training iterations (default: the demo preset's).", show_default=False
        ),
    ] = None,
    compare: Annotated[
        str | None,
        typer.Option(
            "--compare", help="Also train this baseline at the same size and compare: dodnet.", show_default=False
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = "cpu",
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
    # Testing knobs: a whole demo in seconds (tiny model, few small phantoms). Hidden from --help.
    cases: Annotated[int, typer.Option("--cases", min=2, hidden=True)] = DemoOptions.cases,
    test_cases: Annotated[int, typer.Option("--test-cases", min=1, hidden=True)] = DemoOptions.test_cases,
    shape: Annotated[tuple[int, int, int], typer.Option("--shape", hidden=True)] = (48, 96, 96),
    tasks: Annotated[str, typer.Option("--tasks", hidden=True)] = ",".join(DemoOptions.tasks),
    model: Annotated[str, typer.Option("--model-preset", hidden=True)] = "demo",
) -> None:
    """Run CCQ end to end on synthetic CT with the commands a user runs (each printed): make a partially
    labeled phantom collection (ccq phantom), prepare it (ccq prepare), train the small `demo` model (ccq train),
    predict every task on the held-out test phantoms (ccq predict) and score them (ccq evaluate).

    Writes OUT/report.md (table, training curve, pictures, commands) and OUT/summary.json, and leaves a model at
    OUT/model, usable with `ccq predict --model OUT/model`.
    An existing non-empty folder is refused unless an earlier demo wrote it.
    """
    from ccq.demo import run_demo

    names = tuple(t for t in (part.strip() for part in tasks.split(",")) if t)
    if not names:
        raise CCQError(f"--tasks {tasks!r}: expected a comma-separated list of task names")
    options = DemoOptions(
        out=out, seed=seed, iterations=iterations, compare=compare, cases=cases, test_cases=test_cases,
        shape=tuple(shape), tasks=names, model=model, device=device, progress=progress,
    )  # fmt: skip
    run_demo(options, echo=typer.echo)
