"""`ccq predict`: segment CT volumes (NIfTI or DICOM) with a checkpoint; one label map per task, on the input's grid."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

POSTPROCESS_CHOICES = ("official", "none")


def predict(
    input_path: Annotated[
        Path,
        typer.Option(
            "--input",
            "-i",
            help="A NIfTI CT (.nii.gz/.nii), a folder of them, or a folder holding a DICOM series.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for OUT/CASE/TASK.nii.gz.", show_default=False)
    ],
    model: Annotated[
        Path,
        typer.Option(
            "--model", "-m", help="Checkpoint folder (or a training run folder: its best/).", show_default=False
        ),
    ],
    tasks: Annotated[
        list[str],
        typer.Option("--tasks", help="'all', or task names/ids: comma-separated (liver,kidney) or repeated."),
    ] = ["all"],  # noqa: B006 (typer reads the default; it is never mutated)
    series: Annotated[
        str | None,
        typer.Option(
            "--series", help="SeriesInstanceUID to read when the DICOM folder holds several series.", show_default=False
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N, mps, or auto (a CUDA GPU if any).")] = (
        "auto"
    ),
    tta: Annotated[
        bool | None,
        typer.Option(
            "--tta/--no-tta",
            help="8-way flip test-time augmentation (as the official evaluation). "
            "Default: on with a GPU, off on the CPU (8x the time).",
            show_default=False,
        ),
    ] = None,
    overlap: Annotated[
        float, typer.Option("--overlap", min=0.0, max=0.95, help="Window overlap (a share of the patch).")
    ] = 0.5,
    postprocess: Annotated[
        str,
        typer.Option(
            "--postprocess",
            help="'official': the official task-specific clean-up (largest components, "
            "tumours inside the organ, small tumours dropped; sizes in mL, distances in mm); 'none'.",
        ),
    ] = "official",
    save_probabilities: Annotated[
        bool,
        typer.Option(
            "--save-probabilities",
            help="Also write OUT/CASE/TASK_probabilities.npz: float16 arrays "
            "named by channel (organ, tumor) on the input's grid, before thresholding and clean-up.",
        ),
    ] = False,
    overlays: Annotated[
        bool, typer.Option("--overlays", help="Also write PNG pictures of each structure to OUT/CASE/overlays/.")
    ] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Windows per forward pass.")] = 1,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
) -> None:
    """Write OUT/CASE/TASK.nii.gz for every input and task (each task in its dataset's label convention, with
    exactly the input's shape and affine; for DICOM, the series' grid) and OUT/CASE/labels.json naming the values.

    Existing outputs are never replaced without --overwrite; files are written under a temporary name first.
    """
    from ccq.errors import CCQError

    if postprocess not in POSTPROCESS_CHOICES:
        raise CCQError(f"--postprocess {postprocess!r}: expected one of {', '.join(POSTPROCESS_CHOICES)}")
    from ccq.inference.runner import PredictOptions, run_predict

    run_predict(
        PredictOptions(
            input_path=input_path, output=output, model=model, tasks=tuple(tasks), series=series, device=device,
            tta=tta, overlap=overlap, postprocess=postprocess, save_probabilities=save_probabilities,
            overlays=overlays, batch_size=batch_size, overwrite=overwrite, progress=progress,
        ),
        echo=typer.echo,
    )  # fmt: skip
