"""The partial-label loss: soft Dice + BCE per output channel, over labeled channels only (the official loss:
docs/architecture.md#training)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE = -1.0
"""Target value that marks a whole channel of a sample as not labeled by its dataset."""


def labeled_channels(target: torch.Tensor) -> torch.Tensor:
    """target: [B, C, ...] -> [B, C] bool, which channels of which samples are labeled. A dataset labels a channel
    wholly or not at all, so the first voxel decides (IGNORE there: not labeled)."""
    return target.flatten(2)[:, :, 0] != IGNORE


@dataclass(frozen=True)
class LossTerms:
    total: torch.Tensor
    dice: torch.Tensor
    bce: torch.Tensor


def masked_channel_mean(values: torch.Tensor, labeled: torch.Tensor) -> torch.Tensor:
    """values, labeled: [B, C]. Mean over the labeled samples of each channel, then over channels that have at
    least one labeled sample (as the official code). Zero (with a graph) when nothing is labeled. Every loss of
    `ccq.training.criteria` averages its terms this way."""
    weights = labeled.to(values.dtype)
    count = weights.sum(dim=0)  # [C]
    per_channel = (values * weights).sum(dim=0) / count.clamp_min(1.0)
    has_label = count > 0
    if not bool(has_label.any()):
        return (values * 0.0).sum()
    return per_channel[has_label].mean()


def partial_label_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> LossTerms:
    """Dice + BCE for sigmoid channels where some channels of some samples are not labeled.

    logits: [B, C, D, H, W] (any float dtype; computed in float32, BCE on logits so it is stable under AMP);
    target: [B, C, D, H, W] with values {0, 1}, or IGNORE (-1) everywhere in a channel its dataset does not label.
    Dice per sample and channel: 1 - 2*sum(p*t) / (sum(p) + sum(t) + smooth). Ignored channels contribute nothing,
    also to the gradient.
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
    logits = logits.float().flatten(2)
    target = target.float().flatten(2)
    labeled = labeled_channels(target)  # [B, C]
    t = torch.where(labeled.unsqueeze(-1), target, torch.zeros_like(target))
    p = torch.sigmoid(logits)
    dice = 1.0 - 2.0 * (p * t).sum(-1) / (p.sum(-1) + t.sum(-1) + smooth)
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none").mean(-1)
    dice_term = masked_channel_mean(dice, labeled)
    bce_term = masked_channel_mean(bce, labeled)
    return LossTerms(total=dice_term + bce_term, dice=dice_term, bce=bce_term)
