"""``ccq.predict``: a path, a nibabel image or an (array, affine) pair in; label maps on the input's grid out."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import ccq
from ccq.errors import CCQError
from ccq.inference import Predictor

AFFINE = np.array([[-1.7, 0, 0, 30], [0, -1.9, 0, -12], [0, 0, 2.2, 40], [0, 0, 0, 1]])


def _ct(shape=(21, 17, 9)) -> np.ndarray:
    hu = np.full(shape, -900, dtype=np.int16)
    hu[3:15, 4:12, 2:7] = 160
    return hu


def test_every_form_of_input_gives_the_same_labels(tiny_checkpoint: Path, tmp_path: Path) -> None:
    hu = _ct()
    img = nib.Nifti1Image(hu, AFFINE)
    path = tmp_path / "ct.nii.gz"
    nib.save(img, str(path))
    predictor = Predictor(tiny_checkpoint, device="cpu")
    from_path = ccq.predict(path, predictor, tasks=["kidney", "lung"])
    assert sorted(from_path) == ["kidney", "lung"]
    assert from_path["kidney"].shape == hu.shape and from_path["kidney"].dtype == np.uint8
    assert set(np.unique(from_path["lung"])) <= {0, 1}
    for other in (img, (hu, AFFINE), (hu.astype(np.float32), nib.load(str(path)).affine)):
        labels = ccq.predict(other, predictor, tasks="kidney,lung")
        for task in ("kidney", "lung"):
            np.testing.assert_array_equal(labels[task], from_path[task])


def test_a_checkpoint_path_with_options(tiny_checkpoint: Path) -> None:
    labels = ccq.predict((_ct(), AFFINE), tiny_checkpoint, tasks="spleen", device="cpu", postprocess="none", tta=False)
    assert list(labels) == ["spleen"] and labels["spleen"].shape == (21, 17, 9)


def test_options_with_a_predictor_are_refused(tiny_checkpoint: Path) -> None:
    predictor = Predictor(tiny_checkpoint, device="cpu")
    with pytest.raises(CCQError, match="overlap, tta given with a Predictor"):
        ccq.predict((_ct(), AFFINE), predictor, tta=True, overlap=0.25)
    with pytest.raises(CCQError, match="expected a 3D volume"):
        ccq.predict((np.zeros((5, 5)), AFFINE), predictor)
    with pytest.raises(CCQError, match="did you mean 'spleen'"):
        ccq.predict((_ct(), AFFINE), predictor, tasks="spleeen")
