"""The official post-processing rules, with thresholds in mL and mm on the output grid."""

from __future__ import annotations

import numpy as np
import pytest

from ccq.errors import CCQError
from ccq.inference.postprocess import PRESETS, TaskRule, apply_rule, get_rules

OFFICIAL = PRESETS["official"]
MM1 = np.eye(4)  # 1 mm voxels: 1 voxel = 0.001 mL


def _box(shape, *ranges) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[tuple(slice(a, b) for a, b in ranges)] = True
    return m


def test_liver_keeps_its_largest_component_and_tumours_inside_it() -> None:
    shape = (40, 40, 20)
    organ = _box(shape, (2, 20), (2, 20), (2, 18)) | _box(shape, (30, 36), (30, 36), (2, 6))
    tumor = _box(shape, (5, 10), (5, 10), (5, 10)) | _box(shape, (31, 33), (31, 33), (3, 5))  # second: in the small
    tumor |= _box(shape, (14, 18), (14, 15), (14, 15))  # 4 voxels = 0.004 mL < 0.048 mL: dropped
    before = organ.copy(), tumor.copy()
    o, t = apply_rule(OFFICIAL["liver"], organ, tumor, MM1, organ_includes_tumor=True)
    np.testing.assert_array_equal(o, _box(shape, (2, 20), (2, 20), (2, 18)))
    np.testing.assert_array_equal(t, _box(shape, (5, 10), (5, 10), (5, 10)))
    np.testing.assert_array_equal(organ, before[0])  # the inputs are left alone
    np.testing.assert_array_equal(tumor, before[1])


def test_small_tumour_rule_is_in_millilitres_and_spares_a_lone_component() -> None:
    shape = (30, 30, 30)
    organ = _box(shape, (0, 30), (0, 30), (0, 30))
    big, small = _box(shape, (2, 12), (2, 12), (2, 12)), _box(shape, (20, 23), (20, 23), (20, 23))  # 27 voxels
    rule = OFFICIAL["pancreas"]
    assert rule.small_tumor_ml == pytest.approx(0.048)
    _, t = apply_rule(rule, organ, big | small, MM1, organ_includes_tumor=True)
    np.testing.assert_array_equal(t, big)  # 0.027 mL: dropped
    _, t = apply_rule(rule, organ, big | small, np.diag([2.0, 2.0, 2.0, 1.0]), organ_includes_tumor=True)
    np.testing.assert_array_equal(t, big | small)  # the same 27 voxels of 8 mm^3 are 0.216 mL: kept
    _, t = apply_rule(rule, organ, small, MM1, organ_includes_tumor=True)
    np.testing.assert_array_equal(t, small)  # the only component stays, however small


def test_kidney_keeps_two_organs_one_tumour_and_drops_a_distant_one() -> None:
    shape = (60, 20, 20)
    left, right = _box(shape, (2, 12), (2, 12), (2, 12)), _box(shape, (40, 48), (2, 10), (2, 10))
    speck = _box(shape, (25, 27), (15, 17), (15, 17))
    t_big, t_small = _box(shape, (4, 8), (4, 8), (4, 8)), _box(shape, (42, 44), (4, 6), (4, 6))
    o, t = apply_rule(OFFICIAL["kidney"], left | right | speck, t_big | t_small, MM1, organ_includes_tumor=True)
    np.testing.assert_array_equal(o, left | right)
    np.testing.assert_array_equal(t, t_big)
    # The largest tumour, 300 mm away from the kidneys' centre, is dropped (rule: 197 mm), before it could count as
    # a kidney component; the next one stays.
    far = np.diag([8.0, 1.0, 1.0, 1.0])  # voxels 8 mm apart along the first axis
    far_tumor = _box(shape, (56, 60), (0, 20), (0, 20))
    o, t = apply_rule(OFFICIAL["kidney"], left | right, far_tumor | t_small, far, organ_includes_tumor=True)
    np.testing.assert_array_equal(t, t_small)


def test_hepatic_vessel_tumours_must_be_near_the_vessel() -> None:
    shape = (200, 10, 10)
    vessel = _box(shape, (0, 10), (0, 10), (0, 10))
    near, far = _box(shape, (20, 26), (2, 8), (2, 8)), _box(shape, (150, 156), (2, 8), (2, 8))  # 18 / 148 mm
    rule = OFFICIAL["hepatic_vessel"]
    assert rule.tumor_max_distance_mm == pytest.approx(136.1, abs=0.1)
    _, t = apply_rule(rule, vessel, near | far, MM1, organ_includes_tumor=False)
    np.testing.assert_array_equal(t, near)
    _, t = apply_rule(rule, np.zeros(shape, bool), near | far, MM1, organ_includes_tumor=False)
    assert not t.any()  # no vessel: no tumour is near it (as the official code)
    extra = [_box(shape, (30 + 8 * i, 34 + 8 * i), (2, 8), (2, 8)) for i in range(3)]  # 5 candidates: 3 largest kept
    _, t = apply_rule(rule, vessel, near | extra[0] | extra[1] | extra[2] | _box(shape, (70, 71), (0, 1), (0, 1)),
                      MM1, organ_includes_tumor=False)  # fmt: skip
    assert np.count_nonzero(t) == 6 * 36 + 3 * 4 * 36 - 4 * 36  # near + two of the 4x6x6 blocks


def test_single_channel_tasks_and_the_none_preset() -> None:
    shape = (20, 20, 20)
    a, b = _box(shape, (0, 8), (0, 8), (0, 8)), _box(shape, (12, 14), (12, 14), (12, 14))
    for task in ("colon", "lung"):
        organ, tumor = apply_rule(OFFICIAL[task], None, a | b, MM1, organ_includes_tumor=False)
        assert organ is None
        np.testing.assert_array_equal(tumor, a)
    organ, tumor = apply_rule(OFFICIAL["spleen"], a | b, None, MM1, organ_includes_tumor=False)
    np.testing.assert_array_equal(organ, a)
    assert tumor is None
    assert get_rules("none") == {}
    empty = np.zeros(shape, bool)
    assert apply_rule(OFFICIAL["liver"], empty, empty, MM1, organ_includes_tumor=True)[0] is empty


def test_rule_validation_and_presets() -> None:
    with pytest.raises(CCQError, match="organ_components=0"):
        TaskRule(organ_components=0)
    with pytest.raises(CCQError, match="small_tumor_ml=-1"):
        TaskRule(small_tumor_ml=-1)
    with pytest.raises(CCQError, match="expected one of official, none"):
        get_rules("nnunet")
    assert set(OFFICIAL) == {"liver", "kidney", "hepatic_vessel", "pancreas", "colon", "lung", "spleen"}
    assert OFFICIAL["kidney"].to_dict() == {
        "largest_tumor_max_distance_mm": pytest.approx(197.3, abs=0.01),
        "organ_components": 2,
        "tumor_within_organ": True,
        "tumor_components": 1,
    }


def test_centroids_and_sizes_match_scipy() -> None:
    import scipy.ndimage as ndi

    from ccq.inference.postprocess import _centroid_mm, _component_centroids_mm, _components

    rng = np.random.default_rng(0)
    mask = rng.random((30, 25, 20)) > 0.7
    affine = np.array([[0.8, 0.1, 0, -5], [0, 0.9, 0, 3], [0.05, 0, 2.5, 7], [0, 0, 0, 1]])
    offset = np.array([3.0, 4.0, 5.0])
    labels, sizes = _components(mask)
    expected_labels, n = ndi.label(mask)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_array_equal(sizes, np.bincount(expected_labels.ravel(), minlength=n + 1))
    index = np.arange(1, n + 1)
    voxel = np.array(ndi.center_of_mass(mask, labels, index)) + offset
    np.testing.assert_allclose(
        _component_centroids_mm(labels, index, affine, offset), voxel @ affine[:3, :3].T + affine[:3, 3], atol=1e-9
    )
    whole = np.array(ndi.center_of_mass(mask)) + offset
    np.testing.assert_allclose(_centroid_mm(mask, affine, offset), affine[:3, :3] @ whole + affine[:3, 3], atol=1e-9)
    assert _centroid_mm(np.zeros((3, 3, 3), bool), affine, offset) is None
