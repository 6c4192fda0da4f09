"""Which loss a model trains with: `build_criterion(model_config)` -> ``criterion(output, target, task_id)``.

The trainer computes ``output = model(image, task_id)`` (through the DDP wrapper when distributed, so the
gradient hooks see every forward) and then ``criterion(output, target, task_id)``. CCQ, DoDNet and most baselines
output sigmoid logits [B, 2, D, H, W] and use the partial-label loss; TAL outputs, in training mode, the logits
of one softmax over every task's classes [B, K, D, H, W] and uses the target adaptive loss below.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from ccq.models.baselines.tal import tal_num_classes, task_class_logits
from ccq.models.config import ModelConfig
from ccq.training.loss import LossTerms, labeled_channels, masked_channel_mean, partial_label_loss

Criterion = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], LossTerms]
"""(output, target [B, 2, D, H, W] with -1 = unlabeled channel, task_id [B]) -> LossTerms."""

# (organ, tumor) channel values of the four groups `task_class_logits` returns: everything outside the task
# (background and the other tasks' classes), organ only, organ and tumor, tumor only.
_GROUP_CHANNELS = ((0, 0), (1, 0), (1, 1), (0, 1))


def _partial(output: torch.Tensor, target: torch.Tensor, task_id: torch.Tensor) -> LossTerms:
    return partial_label_loss(output, target)


def target_adaptive_loss(
    logits: torch.Tensor, target: torch.Tensor, task_id: torch.Tensor, num_tasks: int, smooth: float = 1.0
) -> LossTerms:
    """Marginal cross-entropy + soft Dice for one softmax over all tasks' classes (TAL, Fang and Yan 2020).

    logits: [B, K, D, H, W] with K = 1 + 3 x num_tasks (layout in `ccq.models.baselines.tal`); target:
    [B, 2, D, H, W] (organ, tumor) with values {0, 1}, or IGNORE (-1) in a whole channel the sample's dataset does
    not label; task_id: [B].

    Cross-entropy: at each voxel, the classes consistent with what the sample's dataset labels are merged and
    -log of their summed probability is the loss. For a dataset that labels both channels of its task these are
    one class of its own, or (at its background) the background merged with every other task's classes, which
    that dataset does not label: Fang and Yan's target adaptive loss. A dataset that labels one channel merges
    further (a colon-tumor voxel: "organ and tumor" or "tumor only" of its task). Averaged over voxels, then over
    samples that label something.
    Dice: 1 - 2*sum(p*t)/(sum(p)+sum(t)+smooth) on the marginal probability of each labeled channel of the
    sample's task (P(organ) = P(organ only) + P(organ and tumor) ...), averaged as the partial-label loss does.
    `LossTerms.bce` holds the cross-entropy term.
    """
    expected = tal_num_classes(num_tasks)
    if logits.ndim != target.ndim or logits.shape[1] != expected or logits.shape[2:] != target.shape[2:]:
        raise ValueError(
            f"TAL loss: output {tuple(logits.shape)} and target {tuple(target.shape)}: expected the output of a TAL "
            f"model in training mode, [B, {expected}, D, H, W] for {num_tasks} tasks, and a target [B, 2, D, H, W]"
        )
    if target.shape[:2] != (logits.shape[0], 2) or task_id.shape != (logits.shape[0],):
        raise ValueError(
            f"TAL loss: target {tuple(target.shape)} and task ids {tuple(task_id.shape)} for a batch of "
            f"{logits.shape[0]}: expected [B, 2, D, H, W] and [B]"
        )
    groups = task_class_logits(logits.float().flatten(2), task_id)  # [B, 4, N]
    target = target.float().flatten(2)
    labeled = labeled_channels(target)  # [B, 2]
    positive = target > 0.5  # [B, 2, N]
    channel_of_group = torch.tensor(_GROUP_CHANNELS, dtype=torch.bool, device=logits.device)  # [4, 2]
    # allowed[b, g, n]: group g agrees with every channel sample b labels at voxel n.
    allowed = torch.ones_like(groups, dtype=torch.bool)
    for c in range(2):
        agrees = positive[:, c].unsqueeze(1) == channel_of_group[:, c].view(1, -1, 1)
        allowed &= agrees | ~labeled[:, c].view(-1, 1, 1)
    log_all = torch.logsumexp(groups, dim=1)  # [B, N]
    log_consistent = torch.logsumexp(groups.masked_fill(~allowed, float("-inf")), dim=1)
    ce_per_sample = (log_all - log_consistent).mean(dim=1)  # [B]
    ce = masked_channel_mean(ce_per_sample.unsqueeze(1), labeled.any(dim=1, keepdim=True))

    rest, organ_only, both, tumor_only = groups.unbind(1)
    p = torch.stack(
        [torch.logaddexp(organ_only, both) - log_all, torch.logaddexp(both, tumor_only) - log_all], dim=1
    ).exp()  # [B, 2, N]: marginal probabilities of the task's channels
    t = torch.where(labeled.unsqueeze(-1), positive.float(), torch.zeros_like(target))
    dice = 1.0 - 2.0 * (p * t).sum(-1) / (p.sum(-1) + t.sum(-1) + smooth)
    dice_term = masked_channel_mean(dice, labeled)
    return LossTerms(total=dice_term + ce, dice=dice_term, bce=ce)


def build_criterion(config: ModelConfig) -> Criterion:
    """The loss for a model configuration: the target adaptive loss for arch "tal", otherwise the partial-label
    Dice + BCE of docs/architecture.md#training."""
    if config.arch == "tal":
        return functools.partial(target_adaptive_loss, num_tasks=config.num_tasks)
    return _partial
