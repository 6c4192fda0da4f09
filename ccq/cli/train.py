"""`ccq train`: train a model preset on a prepared folder (`ccq prepare`), writing a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def train(
    data: Annotated[
        Path, typer.Option("--data", help="Prepared folder (written by `ccq prepare`).", show_default=False)
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Run folder to create (new or empty).", show_default=False),
    ],
    preset: Annotated[str, typer.Option("--preset", help="Training preset: official or demo.")] = "official",
    config: Annotated[
        Path | None,
        typer.Option("--config", help="JSON/YAML file of training settings applied over the preset "
                     "(a run's config.json works too).", show_default=False),
    ] = None,
    iterations: Annotated[
        int | None,
        typer.Option("--iterations", min=1, help="Override the iteration count.", show_default=False),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", min=0, help="Override the seed.", show_default=False)
    ] = None,
    device: Annotated[
        str | None,
        typer.Option("--device", help="cpu, cuda or auto (default: the preset's).", show_default=False),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Train CCQ on a prepared collection: SGD with poly decay, validation Dice on held-out training cases.

    Writes OUT/config.json (the resolved configuration), OUT/log.jsonl, and the checkpoints OUT/last/ and
    OUT/best/ (use either with `ccq predict --model`).
    """
    from ccq.training.config import get_train_preset, load_train_config
    from ccq.training.trainer import Trainer

    resolved = get_train_preset(preset)
    if config is not None:
        resolved = load_train_config(config, resolved)
    given = (("iterations", iterations), ("seed", seed), ("device", device))
    changes = {k: v for k, v in given if v is not None}
    if changes:
        resolved = resolved.replace(**changes)
    trainer = Trainer(resolved, data, out, progress=progress, echo=typer.echo)
    typer.echo(
        f"training {trainer.model_config.arch} (model preset {resolved.model!r}) for {resolved.iterations} "
        f"iterations on {trainer.device}: {len(trainer.split.train)} training cases, "
        f"{len(trainer.split.val)} held out for validation -> {out}"
    )
    result = trainer.fit()
    state = result.state
    minutes = state.seconds / 60
    typer.echo(f"done: {state.iteration} iterations in {minutes:.1f} min; last checkpoint {result.last}")
    if result.best is not None and state.best_score is not None:
        typer.echo(
            f"best validation Dice {state.best_score:.4f} at iteration {state.best_iteration}: {result.best}"
        )
