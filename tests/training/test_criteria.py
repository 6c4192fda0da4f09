"""The criterion hook, and the target adaptive loss (TAL) against hand-computed values on a few voxels."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ccq.models import get_preset
from ccq.training.criteria import build_criterion, target_adaptive_loss
from ccq.training.loss import IGNORE, partial_label_loss


def _volume(values: list[list[float]]) -> torch.Tensor:
    """[C][N] nested lists -> [1, C, 1, 1, N]."""
    return torch.tensor(values).view(1, len(values), 1, 1, -1)


def test_build_criterion_picks_the_loss_of_the_arch():
    logits = torch.randn(2, 2, 2, 4, 4)
    target = (torch.rand(2, 2, 2, 4, 4) > 0.5).float()
    tasks = torch.tensor([0, 1])
    for preset in ("tiny", "tiny-dodnet", "tiny-multinets", "tiny-multihead", "tiny-condenc", "tiny-conddec"):
        terms = build_criterion(get_preset(preset))(logits, target, tasks)
        assert torch.equal(terms.total, partial_label_loss(logits, target).total), preset
    tal = build_criterion(get_preset("tiny-tal", num_tasks=2))
    assert math.isfinite(float(tal(torch.randn(2, 7, 2, 4, 4), target, tasks).total))


def test_uniform_logits_both_channels_labeled_hand_computed():
    # One task (K = 4 classes: background, organ only, organ and tumor, tumor only), all logits 0: p = 1/4 each.
    # Voxels: background, organ, tumor inside the organ.
    logits = torch.zeros(1, 4, 1, 1, 3)
    target = _volume([[0, 1, 1], [0, 0, 1]])
    terms = target_adaptive_loss(logits, target, torch.tensor([0]), num_tasks=1)
    # Every voxel's consistent set is one class: CE = -log(1/4).
    assert math.isclose(terms.bce.item(), math.log(4), rel_tol=1e-6)
    # P(organ) = P(tumor) = 1/2 everywhere. organ: 1 - 2*1/(1.5 + 2 + 1); tumor: 1 - 2*0.5/(1.5 + 1 + 1).
    organ, tumor = 1 - 2 / 4.5, 1 - 1 / 3.5
    assert math.isclose(terms.dice.item(), (organ + tumor) / 2, rel_tol=1e-6)
    assert math.isclose(terms.total.item(), terms.dice.item() + math.log(4), rel_tol=1e-6)


def test_other_tasks_classes_are_merged_into_background():
    # Two tasks (K = 7). The sample is task 1 and labels only the tumor channel (as colon).
    # Voxel 0: tumor -> consistent {task 1 organ-and-tumor, task 1 tumor-only}.
    # Voxel 1: no tumor -> consistent {background, task 0's three classes, task 1 organ-only}.
    logits = torch.zeros(1, 7, 1, 1, 2)
    logits[0, 2, 0, 0, 1] = math.log(3.0)  # voxel 1: task 0's organ-and-tumor has weight 3 (the rest 1)
    target = _volume([[IGNORE, IGNORE], [1, 0]])
    terms = target_adaptive_loss(logits, target, torch.tensor([1]), num_tasks=2)
    ce0 = -math.log(2 / 7)
    ce1 = -math.log(7 / 9)  # weights: background 1, task 0: 1 + 3 + 1, task 1 organ-only 1 -> 7 of 9
    assert math.isclose(terms.bce.item(), (ce0 + ce1) / 2, rel_tol=1e-6)
    # Tumor channel only: P(tumor) = 2/7 at voxel 0, 2/9 at voxel 1; target [1, 0].
    p0, p1 = 2 / 7, 2 / 9
    assert math.isclose(terms.dice.item(), 1 - 2 * p0 / (p0 + p1 + 1 + 1), rel_tol=1e-6)


def test_equals_plain_cross_entropy_when_everything_is_labeled():
    # One task whose dataset labels both channels: the marginal CE is the ordinary CE over its 4 classes.
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 2, 3, 3)
    classes = torch.randint(0, 4, (2, 2, 3, 3))  # 0 bg, 1 organ only, 2 organ and tumor, 3 tumor only
    organ = ((classes == 1) | (classes == 2)).float()
    tumor = ((classes == 2) | (classes == 3)).float()
    target = torch.stack([organ, tumor], dim=1)
    terms = target_adaptive_loss(logits, target, torch.tensor([0, 0]), num_tasks=1)
    assert math.isclose(terms.bce.item(), F.cross_entropy(logits, classes).item(), rel_tol=1e-5)


def test_merged_classes_are_interchangeable_and_unlabeled_samples_add_nothing():
    torch.manual_seed(1)
    logits = torch.randn(2, 7, 2, 3, 3, requires_grad=True)
    target = (torch.rand(2, 2, 2, 3, 3) > 0.5).float()
    target[1] = IGNORE  # sample 1 labels nothing
    tasks = torch.tensor([0, 1])
    terms = target_adaptive_loss(logits, target, tasks, num_tasks=2)
    terms.total.backward()
    assert torch.all(logits.grad[1] == 0)
    # For the task-0 sample, background and task 1's classes always share one group: swapping them changes nothing.
    swapped = logits.detach().clone()
    swapped[0, [0, 4, 5, 6]] = swapped[0, [5, 6, 0, 4]]
    again = target_adaptive_loss(swapped, target, tasks, num_tasks=2)
    assert torch.allclose(again.total, terms.total.detach(), atol=1e-6)
    # ... but moving weight into the sample's own classes does.
    own = logits.detach().clone()
    own[0, 1] += 2.0
    assert not torch.allclose(target_adaptive_loss(own, target, tasks, num_tasks=2).total, terms.total.detach())


def test_eval_mode_output_is_refused_with_a_message():
    with pytest.raises(ValueError, match=r"TAL model in training mode, \[B, 7, D, H, W\] for 2 tasks"):
        target_adaptive_loss(torch.zeros(1, 2, 1, 1, 3), torch.zeros(1, 2, 1, 1, 3), torch.tensor([0]), num_tasks=2)


def test_a_tal_model_trains_validates_and_reloads(tiny_prepared, tiny_config, tmp_path):
    """Through the trainer: the criterion hook feeds the TAL loss its class logits, validation reads channels."""
    from ccq.checkpoint import load_checkpoint
    from ccq.training.run_log import read_log
    from ccq.training.trainer import Trainer

    config = tiny_config.replace(model="tiny-tal", iterations=2, val_every=2, save_every=2)
    Trainer(config, tiny_prepared, tmp_path / "run", progress=False, echo=lambda _: None).fit()
    log = read_log(tmp_path / "run")
    losses = [r["loss"] for r in log if r["kind"] == "train"]
    assert len(losses) == 2 and all(math.isfinite(v) and v > 0 for v in losses)
    (val,) = [r for r in log if r["kind"] == "val"]
    assert set(val["categories"]) == {"liver/organ", "liver/tumor", "colon/tumor", "spleen/organ"}
    loaded = load_checkpoint(tmp_path / "run" / "last")
    assert loaded.model_config.arch == "tal" and not loaded.model.training
    with torch.no_grad():
        out = loaded.model(torch.zeros(1, 1, *loaded.model_config.patch_size), 1)
    assert out.shape == (1, 2, *loaded.model_config.patch_size)
