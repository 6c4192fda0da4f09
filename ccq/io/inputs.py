"""What ``ccq predict -i`` accepts: a NIfTI file, a folder of NIfTI files (a batch), or a DICOM series folder.

Inputs are listed and named first (`find_cases`), before anything is predicted or written, so a wrong path or an
ambiguous DICOM folder fails at once with nothing written; `read_case` then reads one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ccq.errors import CCQError
from ccq.io.dicom import choose_series, read_dicom_series, series_ids
from ccq.io.image import ImageVolume
from ccq.io.nifti import is_nifti_name, nifti_stem, read_nifti

EXPECTED = "expected a NIfTI file (.nii.gz/.nii), a folder of them, or a folder holding one DICOM series"


@dataclass(frozen=True)
class CaseInput:
    """One CT to predict: its output name (``OUT/NAME/``), where it is, and how to read it."""

    name: str
    path: Path
    kind: str
    """``"nifti"`` or ``"dicom"``."""
    series: str | None = None
    """The SeriesInstanceUID of a DICOM series."""


def find_cases(path: str | Path, series: str | None = None) -> list[CaseInput]:
    """The cases ``path`` holds (see the module docstring); ``series`` picks one DICOM series of a folder."""
    path = Path(path).expanduser()
    if path.is_file():
        if not is_nifti_name(path):
            hint = "; for DICOM, give the folder holding the series" if path.suffix.lower() in (".dcm", "") else ""
            raise CCQError(f"-i {path}: not a NIfTI file name{hint}; {EXPECTED}")
        if series is not None:
            raise CCQError(f"--series {series}: -i {path} is a NIfTI file; --series chooses a DICOM series")
        return [CaseInput(nifti_stem(path), path, "nifti")]
    if not path.is_dir():
        raise CCQError(f"-i {path}: no such file or folder; {EXPECTED}")
    niftis = sorted(p for p in path.iterdir() if p.is_file() and is_nifti_name(p))
    if niftis:
        if series is not None:
            raise CCQError(f"--series {series}: -i {path} is a folder of NIfTI files; --series chooses a DICOM series")
        names = [nifti_stem(p) for p in niftis]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise CCQError(f"-i {path}: case name(s) {twice} appear as both .nii and .nii.gz; expected one file each")
        return [CaseInput(n, p, "nifti") for n, p in zip(names, niftis, strict=True)]
    ids = series_ids(path)
    if not ids:
        raise CCQError(f"-i {path}: the folder holds no .nii.gz/.nii files and no DICOM series; {EXPECTED}")
    uid = choose_series(path, series, ids)
    return [CaseInput(path.resolve().name or "dicom", path, "dicom", uid)]


def probe_case(case: CaseInput) -> None:
    """Check what can be checked without reading the voxels (a NIfTI header; a series' slice count)."""
    if case.kind == "dicom":
        import SimpleITK as sitk

        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(case.path), case.series)
        if len(files) < 2:
            raise CCQError(
                f"DICOM series {case.series} in {case.path} has {len(files)} slice; expected a 3D volume with "
                "several slices"
            )
        return
    import nibabel as nib

    try:
        img = nib.load(str(case.path))
    except Exception as err:  # nibabel raises many types for a bad header; the user needs only the file name
        raise CCQError(f"cannot read image {case.path}: {_short(err)}; expected a NIfTI file") from err
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise CCQError(f"image {case.path} is a {type(img).__name__}; expected a NIfTI file")
    shape = tuple(img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise CCQError(f"image {case.path} has shape {tuple(img.shape)}; expected a 3D volume [X, Y, Z]")
    if min(shape) < 2:
        raise CCQError(f"image {case.path} has shape {shape}, a single slice; expected a 3D volume with several slices")


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) < 160 else text[:157] + "..."


def read_case(case: CaseInput) -> ImageVolume:
    """Read one case found by `find_cases`."""
    if case.kind == "dicom":
        return read_dicom_series(case.path, case.series)
    return read_nifti(case.path)
