"""One optimisation step: the forward pass under autocast, the loss, one all-reduce of the loss terms and of the
flags every rank must agree on, then backward and the optimizer step (unless some rank's loss is not finite)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ccq.data.loader import Batch
from ccq.models.fused import recompute_enabled
from ccq.training import accel
from ccq.training import distributed as dd
from ccq.training.loss import labeled_channels

if TYPE_CHECKING:
    from ccq.training.trainer import Trainer


@dataclass(frozen=True)
class StepResult:
    """What one step tells the loop; the loss terms are means over the ranks (a rank whose loss was not finite
    adds 0 to the loss)."""

    loss: float
    dice: float
    bce: float
    nonfinite: bool
    """Some rank's loss was NaN or infinite: no rank updated its weights."""
    stop: bool
    """Some rank was asked to stop (SIGINT/SIGTERM): every rank saves and stops after this step."""


def train_step(trainer: Trainer, batch: Batch, stop_requested: bool) -> StepResult:
    """One step of ``trainer`` (its wrapped model, criterion, optimizer, grad scaler) on one batch.

    ``batch``: image [B, 1, D, H, W], target [B, 2, D, H, W] (-1 = channel not labeled), task_id [B].
    A collective: every rank calls it once per iteration."""
    device, cfg = trainer.device, trainer.config
    image = batch["image"].to(device, non_blocking=True).float()
    image = image.contiguous(memory_format=trainer.memory_format)
    target = batch["target"].to(device, non_blocking=True).float()
    task_id = batch["task_id"].to(device, non_blocking=True)
    # Only the branches the loss will use are decoded (`CCQNet.forward`).
    labeled = {"labeled": labeled_channels(target)} if trainer.decode_labeled_only else {}
    with accel.autocast(trainer.precision, device), recompute_enabled(cfg.recompute_norm_act):
        output = trainer.wrapped(image, task_id, **labeled)
    terms = trainer.criterion(output, target, task_id)
    total = terms.total.detach()
    finite = bool(torch.isfinite(total))
    local = torch.stack([
        total if finite else torch.zeros_like(total), terms.dice.detach().float(), terms.bce.detach().float(),
    ]).double().nan_to_num(0.0)  # fmt: skip
    flags = torch.tensor([0.0 if finite else 1.0, 1.0 if stop_requested else 0.0], dtype=torch.float64)
    summed = dd.all_reduce_sum(trainer.dist, torch.cat([local, flags.to(local.device)])).tolist()
    loss, dice, bce = (v / trainer.dist.world_size for v in summed[:3])
    result = StepResult(loss=loss, dice=dice, bce=bce, nonfinite=summed[3] > 0, stop=summed[4] > 0)
    if result.nonfinite:
        return result  # every rank skips the backward together (DDP needs all or none)
    optimizer, scaler = trainer.optimizer, trainer.scaler
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(terms.total).backward()
        if cfg.grad_clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        terms.total.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), cfg.grad_clip)
        optimizer.step()
    return result
