"""Reading a NIfTI CT (the header is kept, so that outputs carry the input's exact geometry codes)."""

from __future__ import annotations

from pathlib import Path

from ccq.data.nifti_file import read_nifti_file
from ccq.io.image import ImageVolume, check_volume

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def is_nifti_name(path: str | Path) -> bool:
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | Path) -> str:
    """``/data/liver_3.nii.gz`` -> ``liver_3``."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def read_nifti(path: str | Path) -> ImageVolume:
    """A 3D NIfTI CT -> `ImageVolume` (float32 HU with the header's scaling applied); one-line CCQError otherwise."""
    path = Path(path)
    array, affine, header = read_nifti_file(path, what="image", case=nifti_stem(path), as_float=True)
    array, affine = check_volume(array, affine, f"image {path}")
    header = header.copy()
    return ImageVolume(array=array, affine=affine, source=str(path), header=header)
