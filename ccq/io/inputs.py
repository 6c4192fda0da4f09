"""What ``ccq predict -i`` accepts: a NIfTI file, a folder of NIfTI files (a batch), or a DICOM series folder.

Inputs are listed and named first (`find_cases`), before anything is predicted or written, so a wrong path or an
ambiguous DICOM folder fails at once with nothing written; `read_case` then reads one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ccq.data.nifti_file import check_size, open_header
from ccq.errors import CCQError
from ccq.io.dicom import check_series_size, choose_series, read_dicom_series, series_files, series_ids
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
    _refuse_broken_link(path, "-i ")
    if path.is_file():
        if not is_nifti_name(path):
            hint = "; for DICOM, give the folder holding the series" if path.suffix.lower() in (".dcm", "") else ""
            raise CCQError(f"-i {path}: not a NIfTI file name{hint}; {EXPECTED}")
        if series is not None:
            raise CCQError(f"--series {series}: -i {path} is a NIfTI file; --series chooses a DICOM series")
        return [CaseInput(nifti_stem(path), path, "nifti")]
    if not path.is_dir():
        raise CCQError(f"-i {path}: no such file or folder; {EXPECTED}")
    niftis = sorted(p for p in path.iterdir() if is_nifti_name(p) and (p.is_file() or p.is_symlink()))
    for p in niftis:
        _refuse_broken_link(p, f"-i {path}: ")
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


def _refuse_broken_link(path: Path, prefix: str) -> None:
    if path.is_symlink() and not path.exists():
        raise CCQError(f"{prefix}{path} is a broken symbolic link (to {path.readlink()}); {EXPECTED}")


def probe_case(case: CaseInput) -> None:
    """Check what can be checked without reading the voxels (a NIfTI header; a series' slice count)."""
    if case.kind == "dicom":
        files = series_files(case.path, str(case.series))
        where = f"DICOM series {case.series} in {case.path}"
        if len(files) < 2:
            raise CCQError(f"{where} has {len(files)} slice; expected a 3D volume with several slices")
        check_series_size(files, where)
        return
    header = open_header(case.path, what="image")
    check_size(header, as_float=True)
    if min(header.shape) < 2:
        raise CCQError(
            f"image {case.path} has shape {header.shape}, a single slice; expected a 3D volume with several slices"
        )


def read_case(case: CaseInput) -> ImageVolume:
    """Read one case found by `find_cases`."""
    if case.kind == "dicom":
        return read_dicom_series(case.path, case.series)
    return read_nifti(case.path)
