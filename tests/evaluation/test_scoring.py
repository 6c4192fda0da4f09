"""The two named definitions: values, empty-mask rules and statuses (docs/architecture.md#inference-and-evaluation)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ccq.errors import CCQError
from ccq.evaluation.scoring import MOTS_HD_ONE_EMPTY, score_masks
from ccq.evaluation.surface import hd95_max_directed, hd95_pooled
from tests.evaluation.masks import battery

A, B = battery()["random_blobs"]
EMPTY = np.zeros_like(A)


def test_mots_values() -> None:
    score = score_masks(A, B, "mots")
    inter, na, nb = int((A & B).sum()), int(A.sum()), int(B.sum())
    assert score.dice == pytest.approx(2 * inter / (na + nb + 1))
    assert score.hd95 == hd95_pooled(A, B)  # spacing (1, 1, 1): voxels of the working grid
    assert (score.status, score.pred_voxels, score.gt_voxels) == ("ok", na, nb)


def test_standard_values() -> None:
    spacing = (2.5, 0.7, 0.9)
    score = score_masks(A.astype(np.uint8), B, "standard", spacing)
    inter, na, nb = int((A & B).sum()), int(A.sum()), int(B.sum())
    assert score.dice == pytest.approx(2 * inter / (na + nb))
    assert score.hd95 == hd95_max_directed(A, B, spacing)


def test_mots_empty_rules() -> None:
    both = score_masks(EMPTY, EMPTY, "mots")
    assert (both.dice, both.hd95, both.status) == (0.0, 0.0, "both_empty")
    missed = score_masks(EMPTY, B, "mots")
    assert (missed.dice, missed.hd95, missed.status) == (0.0, MOTS_HD_ONE_EMPTY, "pred_empty")
    spurious = score_masks(A, EMPTY, "mots")
    assert (spurious.dice, spurious.hd95, spurious.status) == (0.0, 373.12866, "gt_empty")
    assert spurious.pred_voxels == int(A.sum()) and spurious.gt_voxels == 0


def test_standard_reports_empty_masks_as_undefined() -> None:
    both = score_masks(EMPTY, EMPTY, "standard", (1.0, 1.0, 1.0))
    assert math.isnan(both.dice) and math.isnan(both.hd95) and both.status == "both_empty"
    missed = score_masks(EMPTY, B, "standard")
    assert missed.dice == 0.0 and math.isnan(missed.hd95) and missed.status == "pred_empty"
    spurious = score_masks(A, EMPTY, "standard")
    assert spurious.dice == 0.0 and math.isnan(spurious.hd95) and spurious.status == "gt_empty"


def test_dice_only_leaves_the_distance_undefined() -> None:
    for pred, gt in ((A, B), (EMPTY, EMPTY), (EMPTY, B), (A, EMPTY)):
        for definition in ("mots", "standard"):
            full, fast = score_masks(pred, gt, definition), score_masks(pred, gt, definition, hd95=False)
            assert (fast.status, fast.pred_voxels, fast.gt_voxels) == (full.status, full.pred_voxels, full.gt_voxels)
            assert fast.dice == full.dice or (math.isnan(fast.dice) and math.isnan(full.dice))
            assert math.isnan(fast.hd95)


def test_identical_masks() -> None:
    assert score_masks(A, A, "standard").dice == 1.0 and score_masks(A, A, "standard").hd95 == 0.0
    assert score_masks(A, A, "mots").dice < 1.0  # the +1 in the denominator


def test_errors() -> None:
    with pytest.raises(CCQError, match="expected one of mots, standard"):
        score_masks(A, B, "medpy")
    with pytest.raises(CCQError, match="differs from ground-truth shape"):
        score_masks(A, B[1:])
