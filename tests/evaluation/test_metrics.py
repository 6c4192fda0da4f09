"""Dice by hand: the paper's "mots" definition (+1 in the denominator) and the standard one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ccq.errors import CCQError
from ccq.evaluation.metrics import channel_dice, dice_score, nanmean, overlap_counts, summarize_categories


def _masks() -> tuple[np.ndarray, np.ndarray]:
    a = np.zeros((2, 3, 4), dtype=bool)
    b = np.zeros((2, 3, 4), dtype=bool)
    a.flat[[0, 1, 2, 3]] = True  # |A| = 4
    b.flat[[1, 2, 3, 5, 7, 9]] = True  # |B| = 6, |A∩B| = 3
    return a, b


def test_hand_values() -> None:
    a, b = _masks()
    assert overlap_counts(a, b) == (3, 4, 6)
    assert dice_score(a, b) == pytest.approx(6 / 11)  # mots: 2*3 / (4 + 6 + 1)
    assert dice_score(a, b, "standard") == pytest.approx(6 / 10)
    assert dice_score(a, a, "standard") == 1.0 and dice_score(a, a) == pytest.approx(8 / 9)


def test_empty_masks() -> None:
    a, _ = _masks()
    empty = np.zeros_like(a)
    assert dice_score(empty, empty) == 0.0  # mots: both empty score 0
    assert math.isnan(dice_score(empty, empty, "standard"))  # undefined, reported rather than hidden
    assert dice_score(a, empty) == 0.0 and dice_score(empty, a, "standard") == 0.0


def test_any_dtype_and_tensors() -> None:
    a, b = _masks()
    assert dice_score(a.astype(np.uint8) * 2, torch.from_numpy(b)) == pytest.approx(6 / 11)


def test_errors() -> None:
    a, _ = _masks()
    with pytest.raises(CCQError, match="differs from reference shape"):
        dice_score(a, a[0])
    with pytest.raises(CCQError, match="expected one of mots, standard"):
        dice_score(a, a, "medpy")
    with pytest.raises(CCQError, match="^target: a 0-d value; expected a mask array$"):
        dice_score(a, np.True_)


def test_channel_dice_skips_unlabeled_channels_and_summaries() -> None:
    a, b = _masks()
    scores = channel_dice({"organ": a, "tumor": a}, {"organ": b, "tumor": None})
    assert scores == {"organ": pytest.approx(6 / 11)}
    with pytest.raises(CCQError, match="no prediction"):
        channel_dice({}, {"organ": b})
    assert nanmean([1.0, math.nan, 0.5]) == 0.75 and math.isnan(nanmean([]))
    summary = summarize_categories([{"liver/organ": 1.0}, {"liver/organ": 0.5, "liver/tumor": 0.2}])
    assert summary == {"liver/organ": 0.75, "liver/tumor": 0.2}
