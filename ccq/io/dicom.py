"""Reading a CT DICOM series with SimpleITK, on the voxel grid and world coordinates nibabel would give it.

SimpleITK describes a series in DICOM's LPS world with ``origin``, ``spacing`` and a ``direction`` matrix, its array
indexed ``[k, j, i]``. ccq's pipeline takes an array in voxel order ``[i, j, k]`` and a voxel -> RAS affine, so a
series becomes ``array[i, j, k]`` with ``affine = diag(-1, -1, 1, 1) @ [[direction @ diag(spacing), origin], [0, 1]]``
(RAS = LPS with the first two axes negated). A label map saved as NIfTI with that affine lies on the series' grid
in any viewer. Rescale slope and intercept are applied by the reader (GDCM), so values are HU.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

import ccq.limits as limits
from ccq.errors import CCQError
from ccq.io.image import ImageVolume, IntensityWarning, check_volume

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
MODALITY_TAG = "0008|0060"


def _short(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[-1] if lines else type(err).__name__  # ITK puts the reason on the last line
    return text if len(text) < 160 else text[:157] + "..."


@contextlib.contextmanager
def quiet_itk() -> Iterator[None]:
    """ITK's warnings off (it prints several lines for a folder without DICOM): ccq says what is wrong itself."""
    import SimpleITK as sitk

    before = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(before)


def series_ids(folder: str | Path) -> list[str]:
    """The DICOM SeriesInstanceUIDs of the files directly in ``folder`` (empty: no DICOM series there)."""
    import SimpleITK as sitk

    try:
        with quiet_itk():
            return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    except RuntimeError as err:
        raise CCQError(f"{folder}: cannot scan for DICOM series: {_short(err)}") from err


def ras_affine(spacing, origin, direction) -> np.ndarray:
    """4x4 voxel (i, j, k) -> RAS mm affine from SimpleITK's LPS geometry (direction as 9 numbers, row-major)."""
    lin = np.asarray(direction, dtype=np.float64).reshape(3, 3) @ np.diag(np.asarray(spacing, dtype=np.float64))
    lps = np.eye(4)
    lps[:3, :3] = lin
    lps[:3, 3] = np.asarray(origin, dtype=np.float64)
    return _LPS_TO_RAS @ lps


def choose_series(folder: str | Path, series: str | None, ids: list[str] | None = None) -> str:
    """The one series of ``folder`` to read: ``series`` if given (and present), else the only one there.
    ``ids``: the folder's series when already scanned (`series_ids`)."""
    ids = series_ids(folder) if ids is None else ids
    if not ids:
        raise CCQError(f"{folder}: no DICOM series found in the folder; expected DICOM files of one CT series")
    if series is not None:
        if series not in ids:
            raise CCQError(f"{folder}: no DICOM series {series!r}; the folder holds {', '.join(ids)}")
        return series
    if len(ids) > 1:
        raise CCQError(
            f"{folder} holds {len(ids)} DICOM series ({', '.join(ids)}); choose one with --series UID "
            "(series=UID in Python)"
        )
    return ids[0]


def read_dicom_series(folder: str | Path, series: str | None = None) -> ImageVolume:
    """One DICOM series of ``folder`` -> `ImageVolume` (HU, voxel order [i, j, k], RAS affine)."""
    import SimpleITK as sitk

    folder = Path(folder)
    uid = choose_series(folder, series)
    reader = sitk.ImageSeriesReader()
    files = series_files(folder, uid)
    where = f"DICOM series {uid} in {folder}"
    if len(files) < 2:
        raise CCQError(f"{where} has {len(files)} slice; expected a 3D volume with several slices")
    check_series_size(files, where)
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        with quiet_itk():
            image = reader.Execute()
    except RuntimeError as err:
        raise CCQError(f"cannot read {where}: {_short(err)}") from err
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise CCQError(
            f"{where} is a {image.GetDimension()}D image with {image.GetNumberOfComponentsPerPixel()} values per "
            "voxel; expected a 3D greyscale CT"
        )
    modality = reader.GetMetaData(0, MODALITY_TAG).strip() if reader.HasMetaDataKey(0, MODALITY_TAG) else None
    if modality and modality.upper() != "CT":
        warnings.warn(f"{where}: modality {modality!r}, not 'CT'; predicting anyway", IntensityWarning, stacklevel=2)
    array = sitk.GetArrayViewFromImage(image).transpose(2, 1, 0)  # [k, j, i] -> [i, j, k]
    affine = ras_affine(image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    array, affine = check_volume(np.ascontiguousarray(array, dtype=np.float32), affine, where)
    return ImageVolume(array=array, affine=affine, source=str(folder), modality=modality)


def series_files(folder: str | Path, uid: str) -> list[str]:
    """The files of series ``uid`` in ``folder``, in slice order."""
    import SimpleITK as sitk

    with quiet_itk():
        return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))


def check_series_size(files: list[str], where: str) -> None:
    """The series' voxels (its first file's rows x columns x frames, times the files) within `ccq.limits` and
    the memory available, read from one header before any pixel data."""
    import SimpleITK as sitk

    info = sitk.ImageFileReader()
    info.SetFileName(files[0])
    try:
        with quiet_itk():
            info.ReadImageInformation()
    except RuntimeError as err:
        raise CCQError(f"cannot read {where}: {files[0]}: {_short(err)}") from err
    size = [*info.GetSize(), 1][:3]
    shape = (int(size[0]), int(size[1]), int(size[2]) * len(files))
    limits.check_voxels(shape, where, "holds")
    # GDCM returns at most float64 voxels (rescaled), which become a float32 array [i, j, k]: 12 bytes a voxel.
    limits.check_memory(math.prod(shape) * 12, where, f"its {limits.shape_text(shape)} voxels")
