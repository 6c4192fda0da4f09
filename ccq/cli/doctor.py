"""`ccq doctor`: report the environment and what each feature needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def doctor(
    path: Annotated[Path, typer.Option("--path", help="Where to measure free disk space (e.g. your data).")] = Path(
        "."
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")] = False,
) -> None:
    """Versions, devices, threads, free memory and disk, and for each feature (GPU, mixed precision, multi-GPU,
    torch.compile, DICOM, TensorBoard, ONNX export) whether it is ready here or what it is missing."""
    from ccq.utils.doctor import format_report, report

    data = report(path)
    typer.echo(json.dumps(data) if as_json else format_report(data))
