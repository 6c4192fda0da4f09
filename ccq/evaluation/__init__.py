"""Evaluation: Dice and HD95 under the paper's "mots" definition or the standard one, and `ccq evaluate`.

`evaluate_folder` scores folders of predictions and writes summary.json / cases.csv / table.md;
`score_masks` scores one pair of masks; `ccq.evaluation.surface` has the surface distances;
`ccq.evaluation.prepared` predicts prepared cases with a model in memory and scores them (training validation,
``ccq reproduce``); `ccq.evaluation.table` draws the Table 1-style tables; `ccq.evaluation.paper` holds the
paper's figures.
"""

from ccq.evaluation.evaluate import evaluate_folder
from ccq.evaluation.metrics import (
    DICE_DEFINITIONS,
    channel_dice,
    dice_from_counts,
    dice_score,
    nanmean,
    overlap_counts,
    summarize_categories,
)
from ccq.evaluation.scoring import DEFINITIONS, MaskScore, score_masks
from ccq.evaluation.surface import hd95_max_directed, hd95_pooled, surface_distances

__all__ = [
    "DEFINITIONS",
    "DICE_DEFINITIONS",
    "MaskScore",
    "channel_dice",
    "dice_from_counts",
    "dice_score",
    "evaluate_folder",
    "hd95_max_directed",
    "hd95_pooled",
    "nanmean",
    "overlap_counts",
    "score_masks",
    "summarize_categories",
    "surface_distances",
]
