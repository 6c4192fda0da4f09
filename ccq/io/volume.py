"""One CT given in any form the Python API accepts -> `ImageVolume`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ccq.errors import CCQError
from ccq.io.image import ImageVolume, check_volume
from ccq.io.inputs import find_cases, read_case

VolumeLike = Any
"""A path (NIfTI file or DICOM series folder), a nibabel image, an ``(array [X, Y, Z] in HU, 4x4 voxel -> RAS
affine)`` pair, or an `ImageVolume`."""


def as_image_volume(volume: VolumeLike, *, series: str | None = None) -> ImageVolume:
    """Read or wrap one CT volume (see `VolumeLike`); a one-line CCQError for anything else."""
    if isinstance(volume, ImageVolume):
        return volume
    if isinstance(volume, str | os.PathLike):
        cases = find_cases(Path(volume), series)
        if len(cases) != 1:
            raise CCQError(f"{volume} holds {len(cases)} NIfTI files; expected one image (predict them one by one)")
        return read_case(cases[0])
    if hasattr(volume, "dataobj") and hasattr(volume, "affine"):  # a nibabel image, without importing nibabel
        filename = getattr(volume, "get_filename", lambda: None)()
        where = f"nibabel image {filename or '<in memory>'}"
        try:
            data = volume.get_fdata(dtype=np.float32)
        except Exception as err:  # nibabel's many error types: the user needs only that it could not be read
            raise CCQError(f"{where}: cannot read its voxels ({err})") from err
        array, affine = check_volume(data, volume.affine, where)
        source = str(filename) if filename else "<nibabel image>"
        return ImageVolume(array=array, affine=affine, source=source, header=volume.header.copy())
    if isinstance(volume, tuple | list) and len(volume) == 2:
        array, affine = check_volume(np.asarray(volume[0]), np.asarray(volume[1]), "image array")
        return ImageVolume(array=array, affine=affine, source="<array>")
    raise CCQError(
        f"image of type {type(volume).__name__}: expected a NIfTI path, a DICOM folder, a nibabel image or an "
        "(array, affine) pair"
    )
