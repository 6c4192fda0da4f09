"""Surface distances and HD95 against MedPy (pooled, the "mots" HD) and MONAI (max of directed, "standard"),
and against a brute-force reference written here from the definition (for installs without MedPy)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.ndimage as ndi
from scipy.spatial.distance import cdist

from ccq.errors import CCQError
from ccq.evaluation.surface import (
    choose_method,
    hd95_max_directed,
    hd95_pooled,
    surface_distances,
    surface_mask,
    union_box,
)
from tests.evaluation.masks import SPACINGS, battery

BATTERY = battery()
CASES = [(name, spacing) for name in BATTERY for spacing in SPACINGS]
TOL = 1e-6


def _brute_force(a: np.ndarray, b: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Every surface voxel against every other: distances from the definition, no distance transform."""
    sa = a & ~ndi.binary_erosion(a, ndi.generate_binary_structure(a.ndim, 1))
    sb = b & ~ndi.binary_erosion(b, ndi.generate_binary_structure(b.ndim, 1))
    pa, pb = np.argwhere(sa) * np.asarray(spacing), np.argwhere(sb) * np.asarray(spacing)
    d = cdist(pa, pb)
    return d.min(axis=1), d.min(axis=0)


@pytest.mark.parametrize("name", list(BATTERY))
def test_surface_is_mask_minus_its_erosion(name: str) -> None:
    for mask in BATTERY[name]:
        expected = mask ^ ndi.binary_erosion(mask)  # scipy's default: connectivity 1, outside = background
        np.testing.assert_array_equal(surface_mask(mask), expected)


@pytest.mark.parametrize("method", ["edt", "kdtree"])
@pytest.mark.parametrize(("name", "spacing"), CASES)
def test_against_medpy(name: str, spacing: str, method: str) -> None:
    binary = pytest.importorskip("medpy.metric.binary")
    a, b = BATTERY[name]
    sp = SPACINGS[spacing]
    expected = binary.hd95(a, b, sp)
    assert abs(hd95_pooled(a, b, sp, method=method) - expected) <= TOL
    assert abs(hd95_pooled(b, a, sp, method=method) - expected) <= TOL  # symmetric


@pytest.mark.parametrize("method", ["edt", "kdtree"])
@pytest.mark.parametrize(("name", "spacing"), CASES)
def test_against_monai(name: str, spacing: str, method: str) -> None:
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_hausdorff_distance

    a, b = BATTERY[name]
    sp = SPACINGS[spacing]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = float(compute_hausdorff_distance(
            torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None], include_background=True,
            percentile=95, spacing=list(sp),
        ))  # fmt: skip
    # MONAI computes in float32: its value carries a rounding error of ~1e-7 relative.
    assert abs(hd95_max_directed(a, b, sp, method=method) - expected) <= TOL


@pytest.mark.parametrize(("name", "spacing"), CASES)
def test_against_brute_force(name: str, spacing: str) -> None:
    a, b = BATTERY[name]
    sp = SPACINGS[spacing]
    ab, ba = _brute_force(a, b, sp)
    for method in ("edt", "kdtree"):
        got_ab, got_ba = surface_distances(a, b, sp, method=method)
        np.testing.assert_allclose(got_ab, ab, atol=1e-9)
        np.testing.assert_allclose(got_ba, ba, atol=1e-9)
    assert hd95_pooled(a, b, sp) == pytest.approx(np.percentile(np.concatenate([ab, ba]), 95), abs=1e-9)
    expected = max(np.percentile(ab, 95), np.percentile(ba, 95))
    assert hd95_max_directed(a, b, sp) == pytest.approx(expected, abs=1e-9)


def test_hand_value_and_definitions_differ() -> None:
    """A 1-voxel prediction 4 voxels from a 3x1x1 bar: pooled and directed percentiles disagree."""
    a = np.zeros((9, 3, 3), dtype=bool)
    b = np.zeros_like(a)
    a[8, 1, 1] = True
    b[0:3, 1, 1] = True  # bar surface: voxels 0, 1, 2 (a 1-wide bar is all surface)
    # a -> b: [6]; b -> a: [8, 7, 6]. Pooled [6, 8, 7, 6] -> 95th percentile 7.85; directed max(6, 7.9) = 7.9.
    assert hd95_pooled(a, b) == pytest.approx(7.85)
    assert hd95_max_directed(a, b) == pytest.approx(7.9)
    assert hd95_max_directed(a, b, (2.0, 1.0, 1.0)) == pytest.approx(15.8)


def test_two_dimensional_masks() -> None:
    a = np.zeros((12, 10), dtype=bool)
    b = np.zeros_like(a)
    a[2:7, 3:8] = True
    b[4:11, 1:6] = True
    ab, ba = _brute_force(a, b, (1.5, 0.5))
    assert hd95_pooled(a, b, (1.5, 0.5)) == pytest.approx(np.percentile(np.concatenate([ab, ba]), 95))


def test_cropping_does_not_change_the_result() -> None:
    a, b = BATTERY["hollow_vs_ball"]
    big_a = np.zeros((40, 50, 30), dtype=bool)
    big_b = np.zeros_like(big_a)
    big_a[10:30, 5:29, 6:24] = a
    big_b[10:30, 5:29, 6:24] = b
    assert union_box(big_a, big_b) is not None
    sp = SPACINGS["anisotropic"]
    assert hd95_pooled(big_a, big_b, sp) == hd95_pooled(a, b, sp)
    assert hd95_max_directed(big_a, big_b, sp) == hd95_max_directed(a, b, sp)


def test_empty_masks() -> None:
    a, _ = BATTERY["random_blobs"]
    empty = np.zeros_like(a)
    assert union_box(empty, empty) is None
    for fn in (hd95_pooled, hd95_max_directed):
        assert math.isnan(fn(a, empty)) and math.isnan(fn(empty, a)) and math.isnan(fn(empty, empty))
    with pytest.raises(CCQError, match="a mask is empty"):
        surface_distances(a, empty)


def test_bad_input() -> None:
    a, b = BATTERY["random_blobs"]
    with pytest.raises(CCQError, match="differ; expected the same shape"):
        surface_distances(a, b[:5])
    with pytest.raises(CCQError, match="expected 3 positive numbers"):
        hd95_pooled(a, b, (1.0, 0.0, 1.0))
    with pytest.raises(CCQError, match="expected one of auto, edt, kdtree"):
        surface_distances(a, b, method="fast")
    with pytest.raises(CCQError, match="^mask b: a 0-d value"):
        hd95_pooled(a, np.float64(1.0))


def test_auto_picks_the_cheaper_method() -> None:
    assert choose_method(crop_voxels=5_000_000, surface_voxels=150_000) == "kdtree"  # a liver in its box
    assert choose_method(crop_voxels=20_000, surface_voxels=15_000) == "edt"  # speckle filling its box
