"""``ccq.predict``: segment one CT in memory and get the label maps back, no files written."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ccq.errors import CCQError
from ccq.inference.predictor import Predictor


def predict(
    image: Any,
    model: str | Path | Any,
    tasks: str | Sequence[str | int] | None = "all",
    *,
    series: str | None = None,
    device: str | None = None,
    tta: bool | None = None,
    overlap: float | None = None,
    postprocess: str | None = None,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> dict[str, np.ndarray]:
    """Label maps of one CT: ``{task name: array}``, each on the input's exact voxel grid (shape and voxel order)
    and in its task's label convention (e.g. liver: 0 background, 1 liver, 2 liver tumor).

    Args:
        image: a NIfTI path, a DICOM series folder, a nibabel image, or an ``(array [X, Y, Z] in HU, 4x4 voxel ->
            RAS affine)`` pair.
        model: a checkpoint folder (or a training run folder), a `ccq.checkpoint.LoadedCheckpoint`, or a
            `ccq.inference.Predictor` (loaded once, for many calls; it brings its own settings).
        tasks: "all", a task name or id, a list of them, or a comma-separated string.
        series: the SeriesInstanceUID to read from a DICOM folder holding several series.
        device, tta, overlap, postprocess, batch_size, progress: as `Predictor` (None: its defaults: "auto",
            TTA on a GPU only, 0.5, "official", 1, no progress bar).

    Example::

        import ccq
        labels = ccq.predict("ct.nii.gz", "runs/demo/best", tasks=["liver", "kidney"])
        labels["liver"]  # uint8 array shaped like the CT: 1 liver, 2 liver tumor
    """
    options = {
        "device": device, "tta": tta, "overlap": overlap, "postprocess": postprocess, "batch_size": batch_size,
        "progress": progress,
    }  # fmt: skip
    given = {k: v for k, v in options.items() if v is not None}
    if isinstance(model, Predictor):
        if given:
            raise CCQError(
                f"ccq.predict: {', '.join(sorted(given))} given with a Predictor, which has its own settings; "
                "set them when building the Predictor"
            )
        predictor = model
    else:
        predictor = Predictor(model, **given)
    return predictor.predict(image, tasks, series=series).labels
