"""Which loss a model trains with: `build_criterion(model_config)` -> ``criterion(output, target, task_id)``.

The trainer computes ``output = model(image, task_id)`` (through the DDP wrapper when distributed, so the
gradient hooks see every forward) and then ``criterion(output, target, task_id)``. CCQ and DoDNet output
sigmoid logits [B, 2, D, H, W] and use the partial-label loss; a model whose training output differs (e.g.
one softmax over all categories) registers its own criterion here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ccq.models.config import ModelConfig
from ccq.training.loss import LossTerms, partial_label_loss

Criterion = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], LossTerms]
"""(output, target [B, 2, D, H, W] with -1 = unlabeled channel, task_id [B]) -> LossTerms."""


def _partial(output: torch.Tensor, target: torch.Tensor, task_id: torch.Tensor) -> LossTerms:
    return partial_label_loss(output, target)


def build_criterion(config: ModelConfig) -> Criterion:
    """The loss for a model configuration (default: the partial-label Dice + BCE of DESIGN §3)."""
    return _partial
