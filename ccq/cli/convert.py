"""`ccq convert-official IN.pth OUT`: an official CCQ / DoDNet `.pth` state dict -> a ccq checkpoint.

Only parses and calls: loading and checking official checkpoints is `ccq.checkpoint.official`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def convert_official(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            help="Official .pth file (a state dict saved by the authors' code).",
            metavar="IN.pth",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Argument(help="ccq checkpoint directory to write.", metavar="OUT", show_default=False)],
    preset: Annotated[str, typer.Option(help="Model preset of the weights (official, dodnet, ...).")] = "official",
    patch: Annotated[
        tuple[int, int, int],
        typer.Option(help="Patch size D H W the model was trained with; it sizes the positional embedding."),
    ] = (64, 192, 192),
    collection: Annotated[
        str, typer.Option(help="Task collection the weights were trained on: 'mots' or a collection file.")
    ] = "mots",
    grid: Annotated[
        str,
        typer.Option(
            help="Working grids written into the checkpoint. official: each task on the grid the official code fed "
            "it (MSD tasks 1.5 x 0.8 x 0.8 mm with H and W swapped; kidney 0.76 x 0.76 x 3 mm for CCQ, 0.8 x 0.8 x "
            "1.5 mm for DoDNet, slices first); paper: every task at 1.5 x 0.8 x 0.8 mm, ccq's canonical axes."
        ),
    ] = "official",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it is already a checkpoint.")] = False,
) -> None:
    """Convert an official CCQ (or DoDNet) checkpoint to a ccq checkpoint directory (safetensors + JSON).

    IN.pth is read with torch.load(weights_only=True), which refuses anything but tensors (no code runs).

    Every weight must find its place: missing and unexpected names are listed, never ignored.
    """
    from ccq.checkpoint.official import ConvertOptions, convert_official_checkpoint

    options = ConvertOptions(
        checkpoint=checkpoint, out=out, preset=preset, patch=tuple(patch), collection=collection,
        grid=grid,  # type: ignore[arg-type]  (checked by the library, with a one-line error)
        overwrite=overwrite,
    )  # fmt: skip
    typer.echo(convert_official_checkpoint(options).report())
