"""Evaluation metrics (Dice under the paper's "mots" definition or the standard one)."""

from ccq.evaluation.metrics import (
    DICE_DEFINITIONS,
    channel_dice,
    dice_from_counts,
    dice_score,
    nanmean,
    overlap_counts,
    summarize_categories,
)

__all__ = [
    "DICE_DEFINITIONS",
    "channel_dice",
    "dice_from_counts",
    "dice_score",
    "nanmean",
    "overlap_counts",
    "summarize_categories",
]
