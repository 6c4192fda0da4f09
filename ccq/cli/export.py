"""`ccq export`: a checkpoint as an ONNX or TorchScript network for deployment, with its preprocessing JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def export(
    model: Annotated[
        Path,
        typer.Option(
            "--model",
            "-m",
            help="ccq checkpoint directory (or a training run: its best/ checkpoint).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="File to write (e.g. liver.onnx); FILE.json is written beside it.", show_default=False
        ),
    ],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="onnx or torchscript; default: from FILE's suffix (.onnx, .pt, .ts).",
            show_default=False,
        ),
    ] = None,
    task: Annotated[
        str,
        typer.Option("--task", "-t", help="A task name of the checkpoint's collection (e.g. liver), or 'all'."),
    ] = "all",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace FILE and FILE.json if they exist.")] = False,
) -> None:
    """Export a trained network with its task fixed: one window of the preprocessed CT in, logits out.

    One task: image [1, 1, D, H, W] -> logits [1, 2, D, H, W] (organ, tumor); D H W is the model's patch size.

    --task all: logits [1, T, 2, D, H, W], the encoder run once for every task.

    FILE.json beside FILE: preprocessing (orientation, spacing, HU window), sliding window, tasks, label values.

    The exported file is run once (ONNX Runtime / TorchScript) and compared with PyTorch before it is kept.
    """
    from ccq.export import export_model

    result = export_model(model, out, fmt=fmt, task=task, overwrite=overwrite)
    shape = "x".join(map(str, result.input_shape))
    typer.echo(
        f"exported {result.model_format} for task(s) {', '.join(result.tasks)} -> {result.model_file} "
        f"(input {shape}, output {'x'.join(map(str, result.output_shape))}; "
        f"max |difference| from PyTorch {result.max_abs_diff:.2g}) and {result.spec_file}"
    )
