"""Reading CT volumes: NIfTI files and DICOM series, into one in-memory form (`ImageVolume`)."""

from ccq.io.dicom import ras_affine, read_dicom_series, series_ids
from ccq.io.image import ImageVolume, IntensityWarning, check_ct_values, check_volume
from ccq.io.inputs import CaseInput, find_cases, read_case
from ccq.io.nifti import is_nifti_name, nifti_stem, read_nifti
from ccq.io.volume import as_image_volume

__all__ = [
    "CaseInput",
    "ImageVolume",
    "IntensityWarning",
    "as_image_volume",
    "check_ct_values",
    "check_volume",
    "find_cases",
    "is_nifti_name",
    "nifti_stem",
    "ras_affine",
    "read_case",
    "read_dicom_series",
    "read_nifti",
    "series_ids",
]
