"""Dice between binary masks (HD95 is in :mod:`ccq.evaluation.surface`, both together in
:mod:`ccq.evaluation.scoring`).

Two Dice definitions, chosen by name (docs/architecture.md#inference-and-evaluation):

* ``"mots"`` — as the paper's evaluation computes it: ``2|A∩B| / (|A| + |B| + 1)``. The +1 makes two empty
  masks score 0 and pulls every score slightly below the true Dice (by ~1/(|A|+|B|), negligible on organs).
* ``"standard"`` — plain ``2|A∩B| / (|A| + |B|)``; two empty masks have no defined Dice and give NaN, so an
  empty case is reported explicitly (averages skip it with `nanmean`) instead of being scored 0 or 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Literal

import numpy as np

from ccq.errors import CCQError

DiceDefinition = Literal["mots", "standard"]
DICE_DEFINITIONS: tuple[str, ...] = ("mots", "standard")


def as_mask(mask, name: str) -> np.ndarray:
    """A mask (numpy array or torch tensor of any dtype; nonzero = inside) as a bool array; ``name`` says which
    argument in the error for a 0-d value."""
    if hasattr(mask, "detach"):  # a torch tensor, without importing torch here
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim == 0:
        raise CCQError(f"{name}: a 0-d value; expected a mask array")
    return mask if mask.dtype == bool else mask != 0


def overlap_counts(pred, target) -> tuple[int, int, int]:
    """(|A∩B|, |A|, |B|) of two masks of the same shape (any dtype; nonzero = inside)."""
    a, b = as_mask(pred, "pred"), as_mask(target, "target")
    if a.shape != b.shape:
        raise CCQError(f"dice: prediction shape {a.shape} differs from reference shape {b.shape}")
    return int(np.count_nonzero(a & b)), int(np.count_nonzero(a)), int(np.count_nonzero(b))


def dice_from_counts(intersection: int, pred_size: int, target_size: int, definition: DiceDefinition = "mots") -> float:
    """Dice from voxel counts under ``definition`` (see the module docstring)."""
    if definition == "mots":
        return 2.0 * intersection / (pred_size + target_size + 1.0)
    if definition == "standard":
        total = pred_size + target_size
        return math.nan if total == 0 else 2.0 * intersection / total
    raise CCQError(f"dice definition {definition!r}: expected one of {', '.join(DICE_DEFINITIONS)}")


def dice_score(pred, target, definition: DiceDefinition = "mots") -> float:
    """Dice of two binary masks (numpy arrays or tensors of the same shape; nonzero = inside)."""
    if definition not in DICE_DEFINITIONS:
        raise CCQError(f"dice definition {definition!r}: expected one of {', '.join(DICE_DEFINITIONS)}")
    return dice_from_counts(*overlap_counts(pred, target), definition=definition)


def channel_dice(
    pred: Mapping[str, np.ndarray],
    target: Mapping[str, np.ndarray | None],
    definition: DiceDefinition = "mots",
) -> dict[str, float]:
    """Dice per channel for the channels the reference labels (``target[c]`` None = not labeled: skipped)."""
    out: dict[str, float] = {}
    for channel, reference in target.items():
        if reference is None:
            continue
        if channel not in pred:
            raise CCQError(f"dice: no prediction for labeled channel {channel!r} (have {sorted(pred)})")
        out[channel] = dice_score(pred[channel], reference, definition)
    return out


def nanmean(values: Iterable[float]) -> float:
    """Mean of the finite values; NaN when there are none (an all-empty category stays visible)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(finite) / len(finite) if finite else math.nan


def summarize_categories(per_case: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Mean Dice per category over cases: ``[{"liver/organ": 0.9, ...}, ...]`` -> ``{"liver/organ": ...}``."""
    collected: dict[str, list[float]] = {}
    for case in per_case:
        for category, value in case.items():
            collected.setdefault(category, []).append(value)
    return {category: nanmean(values) for category, values in collected.items()}
