"""Dice and HD95 of one structure in one case, under a named definition (docs/architecture.md#inference-and-evaluation).

``"mots"`` — as the paper's evaluation scores MOTS: Dice ``2|A∩B| / (|A| + |B| + 1)``; HD95 as MedPy's ``hd95``
(`ccq.evaluation.surface.hd95_pooled`) with spacing (1, 1, 1), i.e. in voxels of the working grid (the caller
resamples both masks to it); both masks empty: Dice 0 and HD 0; exactly one empty: HD 373.12866 (the official
code's constant). Every case gets numbers, so category means are over all cases.

``"standard"`` — Dice ``2|A∩B| / (|A| + |B|)``; HD95 as MONAI's ``compute_hausdorff_distance(percentile=95)``
(`ccq.evaluation.surface.hd95_max_directed`) in mm with the voxel spacing of the native grid. Where a value is
undefined it is NaN and the case's ``status`` says why: both empty (Dice and HD NaN), or one empty (Dice 0, HD
NaN). Means skip NaN and report how many cases they cover, so an empty case is never averaged in as 0 or 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ccq.errors import CCQError
from ccq.evaluation.metrics import DICE_DEFINITIONS, DiceDefinition, dice_from_counts
from ccq.evaluation.surface import Method, hd95_max_directed, hd95_pooled, union_box

DEFINITIONS: tuple[str, ...] = DICE_DEFINITIONS
MOTS_HD_ONE_EMPTY = 373.12866
"""The official evaluation's HD when exactly one of prediction and truth is empty (postp_save.py)."""
MOTS_HD_BOTH_EMPTY = 0.0
STATUSES: tuple[str, ...] = ("ok", "both_empty", "pred_empty", "gt_empty")


@dataclass(frozen=True)
class MaskScore:
    """The scores of one structure in one case."""

    dice: float
    hd95: float
    """In the definition's unit (mots: voxels of the working grid; standard: mm); NaN where undefined."""
    status: str
    """"ok", "both_empty", "pred_empty" or "gt_empty" (prediction / ground truth without any voxel)."""
    pred_voxels: int
    gt_voxels: int


def check_definition(definition: str) -> str:
    if definition not in DEFINITIONS:
        raise CCQError(f"definition {definition!r}: expected one of {', '.join(DEFINITIONS)}")
    return definition


def score_masks(
    pred,
    gt,
    definition: DiceDefinition = "mots",
    spacing: float | Sequence[float] | None = None,
    *,
    method: Method = "auto",
    hd95: bool = True,
) -> MaskScore:
    """Dice and HD95 of a predicted mask against the ground truth (same shape; nonzero = inside).

    ``spacing``: voxel size per axis for the HD (default 1 per axis; the "mots" definition's own convention).
    ``hd95`` False: Dice only (``hd95`` NaN), for callers that need no distances (training validation).
    """
    check_definition(definition)
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise CCQError(f"score: prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
    pred = pred if pred.dtype == bool else pred != 0
    gt = gt if gt.dtype == bool else gt != 0
    box = union_box(pred, gt)
    if box is None:
        dice = dice_from_counts(0, 0, 0, definition)
        hd = MOTS_HD_BOTH_EMPTY if definition == "mots" and hd95 else math.nan
        return MaskScore(dice, hd, "both_empty", 0, 0)
    p, g = pred[box], gt[box]  # nothing lies outside the union's box: the counts are the full masks'
    n_pred, n_gt = int(np.count_nonzero(p)), int(np.count_nonzero(g))
    dice = dice_from_counts(int(np.count_nonzero(p & g)), n_pred, n_gt, definition)
    if n_pred == 0 or n_gt == 0:
        hd = MOTS_HD_ONE_EMPTY if definition == "mots" and hd95 else math.nan
        return MaskScore(dice, hd, "pred_empty" if n_pred == 0 else "gt_empty", n_pred, n_gt)
    if not hd95:
        return MaskScore(dice, math.nan, "ok", n_pred, n_gt)
    distance = hd95_pooled if definition == "mots" else hd95_max_directed
    return MaskScore(dice, distance(p, g, spacing, method=method), "ok", n_pred, n_gt)


def case_record(case: str, task: str, channel: str, score: MaskScore) -> dict[str, Any]:
    """One row of an evaluation (`ccq.evaluation.report`: a ``summary["cases"]`` item, a line of cases.csv)."""
    return {
        "case": case, "task": task, "channel": channel, "category": f"{task}/{channel}", "dice": score.dice,
        "hd95": score.hd95, "status": score.status, "pred_voxels": score.pred_voxels, "gt_voxels": score.gt_voxels,
    }  # fmt: skip
