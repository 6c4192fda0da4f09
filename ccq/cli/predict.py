"""`ccq predict`: segment NIfTI CT volumes with a checkpoint; one label map per task, on the input's grid."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def predict(
    input_path: Annotated[
        Path,
        typer.Option("--input", "-i", help="A NIfTI CT (.nii.gz/.nii) or a folder of them.",
                     show_default=False),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for OUT/CASE/TASK.nii.gz.", show_default=False)
    ],
    model: Annotated[
        Path,
        typer.Option("--model", "-m", help="Checkpoint folder (or a training run folder: its best/).",
                     show_default=False),
    ],
    tasks: Annotated[
        str, typer.Option("--tasks", help="'all' or a comma-separated list, e.g. liver,kidney.")
    ] = "all",
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = "cpu",
    overlap: Annotated[
        float, typer.Option("--overlap", min=0.0, max=0.95, help="Window overlap (a share of the patch).")
    ] = 0.5,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
) -> None:
    """Write OUT/CASE/TASK.nii.gz for every input and task (each task in its dataset's label convention, with
    exactly the input's shape and affine) and OUT/CASE/labels.json naming the label values.

    Existing outputs are never replaced without --overwrite; files are written under a temporary name first.
    """
    from tqdm import tqdm

    from ccq.inference.predictor import (
        Predictor,
        case_name,
        check_outputs_free,
        find_inputs,
        output_paths,
        write_case_outputs,
    )

    inputs = find_inputs(input_path)
    # One input: a bar over its windows (minutes on a CPU); several: a bar over the cases.
    predictor = Predictor(model, device=device, overlap=overlap, progress=progress and len(inputs) == 1)
    specs = predictor.resolve_tasks(tasks)
    names = [t.name for t in specs]
    planned = [p for path in inputs for p in output_paths(output, case_name(path), names)]
    check_outputs_free(planned, overwrite)  # before any work
    for path in tqdm(inputs, desc="predict", unit="case", disable=not progress or len(inputs) < 2):
        prediction = predictor.predict(path, names)
        written = write_case_outputs(
            output, case_name(path), prediction, specs, reference=path, overwrite=overwrite,
            extra={"model": str(predictor.path), "threshold": predictor.threshold},
        )  # fmt: skip
        typer.echo(f"{path.name}: {', '.join(names)} -> {written[0].parent}")
