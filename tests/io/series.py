"""Synthetic DICOM series written with SimpleITK, for the tests of the readers and of predict."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_dicom_series(
    folder: Path,
    hu: np.ndarray,
    *,
    spacing=(0.7, 0.9, 2.5),
    origin=(-10.0, 20.0, 30.0),
    direction=np.eye(3),
    series_uid: str = "1.2.826.0.1.3680043.2.1125.7.1",
    slope: float = 0.5,
    intercept: float = -1024.0,
    modality: str = "CT",
) -> Path:
    """``hu`` [i, j, k] (x, y, slice) as a CT series: one file per slice k, stored value = (HU - intercept) / slope
    (so the reader must apply the rescale tags to get HU back). ``direction``: columns = the i, j, k axes in LPS."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.ascontiguousarray(hu.transpose(2, 1, 0), dtype=np.float64))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    d = np.asarray(direction, dtype=np.float64)
    image.SetDirection(tuple(d.ravel()))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    orientation = "\\".join(f"{v:.6f}" for v in [*d[:, 0], *d[:, 1]])
    for k in range(hu.shape[2]):
        piece = image[:, :, k]
        position = "\\".join(f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k)))
        tags = {
            "0008|0060": modality,
            "0020|000d": "1.2.826.0.1.3680043.2.1125.7",
            "0020|000e": series_uid,
            "0020|0032": position,
            "0020|0037": orientation,
            "0020|0013": str(k + 1),
            "0028|1052": f"{intercept:g}",
            "0028|1053": f"{slope:g}",
            # 16-bit signed storage: GDCM turns the float voxels into stored values with the rescale above.
            "0028|0100": "16",
            "0028|0101": "16",
            "0028|0102": "15",
            "0028|0103": "1",
        }
        for tag, value in tags.items():
            piece.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{series_uid.rsplit('.', 1)[-1]}_{k:03d}.dcm"))
        writer.Execute(piece)
    return folder


def oblique_direction(degrees: float = 20.0) -> np.ndarray:
    """A rotation about the slice axis, then a small tilt: an oblique (gantry-tilt-like) orientation."""
    a, b = np.radians(degrees), np.radians(7.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx
