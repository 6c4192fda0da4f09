"""A CT volume in memory, however it was read: the array in the file's voxel order, its affine, where it came from.

Every reader in `ccq.io` returns an `ImageVolume`, so prediction never cares whether the CT was a NIfTI file, a DICOM
series or an array handed over in Python: the voxel grid is always ``array`` [X, Y, Z] with ``affine`` mapping voxel
indices to world RAS millimetres (nibabel's convention), and outputs are written on exactly that grid.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

import ccq.limits as limits
from ccq.errors import CCQError

AIR_BELOW_HU = -500.0
"""A CT in Hounsfield units has air (about -1000 HU) around or inside the body: its lowest value is below this."""
DENSE_ABOVE_HU = 100.0
"""... and soft tissue with contrast or bone above this."""


class IntensityWarning(UserWarning):
    """The image's values do not look like CT Hounsfield units (prediction goes on: the user may know better)."""


@dataclass(frozen=True, eq=False)
class ImageVolume:
    """One CT volume: ``array`` float32 [X, Y, Z] in HU, in the file's voxel order; ``affine`` 4x4 voxel -> RAS mm."""

    array: np.ndarray
    affine: np.ndarray
    source: str
    """The file or folder it was read from (``"<array>"`` for one given in memory)."""
    header: Any = None
    """The NIfTI header of the input (outputs copy its qform/sform codes and units); None for DICOM or arrays."""
    modality: str | None = None
    """DICOM Modality (0008,0060) of a series; None for NIfTI files and arrays."""


def check_volume(array: np.ndarray, affine: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A 3D float32 array and an invertible 4x4 float64 affine, or a one-line CCQError naming ``where``.

    A trailing singleton axis (``[X, Y, Z, 1]``, as some converters write) is dropped; a single slice
    (an axis of size 1) is refused: the network segments volumes, not 2D images; so are voxel sizes no CT has
    (`ccq.limits.check_spacing`).
    """
    array = np.asarray(array)
    shape = tuple(array.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise CCQError(f"{where} has shape {tuple(array.shape)}; expected a 3D volume [X, Y, Z]")
    if min(shape) < 2:
        raise CCQError(f"{where} has shape {shape}, a single slice; expected a 3D volume with several slices")
    if array.dtype.kind not in "uifb":
        raise CCQError(f"{where} holds {array.dtype} values; expected numbers (CT intensities in HU)")
    array = array.reshape(shape).astype(np.float32, copy=False)
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise CCQError(f"{where}: affine {affine.tolist()} is not an invertible 4x4 voxel-to-world matrix")
    limits.check_spacing(np.linalg.norm(affine[:3, :3], axis=0), where, "voxel sizes")
    return array, affine


def check_ct_values(array: np.ndarray, where: str) -> tuple[float, float]:
    """(lowest, highest) value; NaN/inf is a CCQError, values that do not look like HU an `IntensityWarning`."""
    lo, hi = float(np.min(array)), float(np.max(array))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise CCQError(f"{where} has {bad} NaN/inf voxels; expected finite CT values in HU")
    if lo > AIR_BELOW_HU or hi < DENSE_ABOVE_HU:
        warnings.warn(
            f"{where}: values range from {lo:g} to {hi:g}, not like a CT in Hounsfield units (air near -1000, "
            f"soft tissue and bone above {DENSE_ABOVE_HU:g}); an MR image or a normalised CT? predicting anyway",
            IntensityWarning,
            stacklevel=2,
        )
    return lo, hi
