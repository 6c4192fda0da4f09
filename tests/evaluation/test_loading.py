"""The shortcuts of reading a case: the labeled-box crop before resampling, and table lookups for labels."""

from __future__ import annotations

import numpy as np
import pytest

from ccq.data import geometry
from ccq.data.collection import load_collection
from ccq.errors import CCQError
from ccq.evaluation.loading import channel_masks, check_labels, resample_cropped

LIVER = load_collection("mots").task("liver")
HEPATIC_VESSEL = load_collection("mots").task("hepatic_vessel")


def _labels(rng: np.random.Generator, shape, edge: bool) -> list[np.ndarray]:
    out = []
    for _ in range(2):
        label = np.zeros(shape, dtype=np.uint8)
        lo = [int(rng.integers(0, n // 2)) for n in shape]
        box = tuple(slice(0 if edge else a, a + n // 3) for a, n in zip(lo, shape, strict=True))
        label[box] = rng.integers(0, 3, size=label[box].shape)
        out.append(label)
    return out


@pytest.mark.parametrize("edge", [False, True])
@pytest.mark.parametrize(
    ("spacing", "new_spacing"),
    [((2.0, 1.5, 1.5), (1.5, 0.8, 0.8)), ((0.7, 3.0, 1.0), (1.5, 0.8, 1.0)), ((1.0, 1.0, 1.0), (1.0, 1.0, 1.0))],
)
def test_cropped_resampling_equals_resampling_then_cropping(spacing, new_spacing, edge: bool) -> None:
    rng = np.random.default_rng(len(str(spacing)) + edge)
    labels = _labels(rng, (17, 23, 29), edge)
    (a, b), box = resample_cropped(labels, spacing, new_spacing)
    full = [geometry.resample(x, spacing, new_spacing, order=0) for x in labels]
    np.testing.assert_array_equal(a, full[0][box])
    np.testing.assert_array_equal(b, full[1][box])
    outside = [f.copy() for f in full]
    for f in outside:
        f[box] = 0
    assert not any(f.any() for f in outside)  # nothing labeled was cut off


def test_cropped_resampling_with_a_target_shape_and_an_extra_box() -> None:
    label = np.zeros((10, 12, 14), dtype=np.uint8)
    label[4:6, 5:7, 6:8] = 1
    (crop,), box = resample_cropped([label], (2.0, 2.0, 2.0), (1.0, 1.0, 1.0), shape=(21, 23, 27),
                                    extra=(slice(0, 1), slice(20, 23), slice(3, 4)))  # fmt: skip
    full = geometry.resample(label, (2.0, 2.0, 2.0), (1.0, 1.0, 1.0), order=0, shape=(21, 23, 27))
    assert box[0].start == 0 and box[1].stop == 23 and box[2].start <= 2
    np.testing.assert_array_equal(crop, full[box])
    (empty,), none = resample_cropped([np.zeros_like(label)], (1.0, 1.0, 1.0), (2.0, 2.0, 2.0))
    assert none is None and not empty.any()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32])
def test_label_tables_match_the_task_rules(dtype) -> None:
    rng = np.random.default_rng(0)
    label = np.asfortranarray(rng.integers(0, 3, size=(9, 8, 7)).astype(dtype))  # NIfTI arrays are F-ordered
    for task in (LIVER, HEPATIC_VESSEL):
        check_labels(label, task, "x")
        for got, expected in zip(channel_masks(task, label), task.channel_targets(label), strict=True):
            np.testing.assert_array_equal(got, expected)


def test_label_check_names_the_stray_values() -> None:
    label = np.zeros((4, 4, 4), dtype=np.uint8)
    label[1, 1, 1], label[2, 2, 2] = 9, 2
    with pytest.raises(CCQError, match=r"pred.nii.gz: label value\(s\) \[9\] are not among the labels of task"):
        check_labels(label, LIVER, "case a: prediction pred.nii.gz")
    with pytest.raises(CCQError, match=r"\[-1\]"):
        check_labels(np.full((2, 2, 2), -1, dtype=np.int16), LIVER, "x")
