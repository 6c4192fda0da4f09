"""`ccq reproduce`: every row of the paper's Table 1 or Table 2, trained, evaluated and tabulated."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def reproduce(
    table: Annotated[str, typer.Argument(help="table1 (methods) or table2 (ablations).", show_default=False)],
    data: Annotated[Path, typer.Option("--data", help="Prepared folder with a test split.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (rerun to continue).", show_default=False)],
    budget: Annotated[
        int | None,
        typer.Option(
            "--budget", min=1, help="Training iterations per row (default: the training preset's).", show_default=False
        ),
    ] = None,
    gpus: Annotated[int, typer.Option("--gpus", min=1, help="GPUs per row (>1: torchrun, DDP).")] = 1,
    size: Annotated[str, typer.Option("--size", help="Model size: official, demo or tiny.")] = "official",
    train_preset: Annotated[
        str, typer.Option("--train-preset", help="Training preset: official or demo.")
    ] = "official",
    rows: Annotated[
        str | None,
        typer.Option(
            "--rows", help="Comma-separated row keys to run (default: all), e.g. official,dodnet.", show_default=False
        ),
    ] = None,
    tta: Annotated[bool, typer.Option("--tta/--no-tta", help="8-way flip test-time augmentation.")] = False,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = "auto",
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
) -> None:
    """Train and evaluate every row of the paper's Table 1 (Multi-Nets, TAL, Multi-Head, DoDNet, Cond-Enc,
    Cond-Dec, CCQ) or Table 2 (CCQ and its ablations) on a prepared folder, and write OUT/table.md with the
    paper's figures beside ours. Finished rows are skipped and interrupted ones resumed on a rerun.

    The paper's setting: `ccq reproduce table1 --data prepared-mots --out repro --gpus 8` (official size and
    training preset). A machinery check on a CPU: `--size demo --train-preset demo --budget 150` on phantoms.
    """
    from ccq.reproduce import reproduce as run

    wanted = [r.strip() for r in rows.split(",") if r.strip()] if rows else None
    result = run(table, data, out, size=size, train_preset=train_preset, budget=budget, gpus=gpus, rows=wanted,
                 tta=tta, device=device, progress=progress, echo=typer.echo)  # fmt: skip
    typer.echo(result["table"])
    typer.echo(f"written: {out / 'table.md'}")
