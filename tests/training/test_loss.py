"""The partial-label loss and its averaging over labeled channels (shared with the TAL loss) against
hand-computed values."""

import math

import torch

from ccq.training.loss import IGNORE, masked_channel_mean, partial_label_loss


def test_hand_computed_values_one_channel():
    # one sample, one channel, 4 voxels; logits 0 -> p = 0.5 everywhere
    logits = torch.zeros(1, 1, 1, 1, 4)
    target = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 1, 1, 4)
    terms = partial_label_loss(logits, target)
    # Dice: 1 - 2 * (0.5 + 0.5) / (2 + 2 + 1) = 1 - 2/5 = 0.6 ; BCE: -log(0.5) = ln 2
    assert math.isclose(terms.dice.item(), 0.6, rel_tol=1e-6)
    assert math.isclose(terms.bce.item(), math.log(2), rel_tol=1e-6)
    assert math.isclose(terms.total.item(), 0.6 + math.log(2), rel_tol=1e-6)


def test_ignored_channel_contributes_nothing_not_even_gradient():
    logits = torch.randn(2, 2, 2, 3, 3, requires_grad=True)
    target = (torch.rand(2, 2, 2, 3, 3) > 0.5).float()
    target[1, 1] = IGNORE  # sample 1 does not label channel 1
    terms = partial_label_loss(logits, target)
    terms.total.backward()
    assert torch.all(logits.grad[1, 1] == 0)
    assert logits.grad[0, 1].abs().sum() > 0 and logits.grad[1, 0].abs().sum() > 0
    # Changing the ignored logits changes nothing
    other = logits.detach().clone()
    other[1, 1] = 100.0
    assert torch.allclose(partial_label_loss(other, target).total, terms.total.detach())


def test_averaging_over_labeled_samples_then_channels():
    # channel 0 labeled in both samples, channel 1 only in sample 0
    logits = torch.zeros(2, 2, 1, 1, 2)
    target = torch.zeros(2, 2, 1, 1, 2)
    target[0, 0] = torch.tensor([1.0, 0.0]).view(1, 1, 2)  # dice = 1 - 2*0.5/(1+1+1) = 2/3
    target[1, 0] = torch.tensor([1.0, 1.0]).view(1, 1, 2)  # dice = 1 - 2*1/(1+2+1) = 0.5
    target[0, 1] = 0.0  # dice = 1 - 0/(1+0+1) = 1
    target[1, 1] = IGNORE
    dice = partial_label_loss(logits, target).dice.item()
    expected = ((2 / 3 + 0.5) / 2 + 1.0) / 2
    assert math.isclose(dice, expected, rel_tol=1e-6)


def test_nothing_labeled_gives_zero_with_a_graph():
    logits = torch.randn(1, 2, 1, 2, 2, requires_grad=True)
    target = torch.full((1, 2, 1, 2, 2), IGNORE)
    terms = partial_label_loss(logits, target)
    assert terms.total.item() == 0.0
    terms.total.backward()
    assert torch.all(logits.grad == 0)


def test_stable_for_extreme_half_precision_logits():
    logits = torch.tensor([-60000.0, 60000.0, -60000.0, 60000.0], dtype=torch.float16).view(1, 1, 1, 1, 4)
    target = torch.tensor([0.0, 1.0, 1.0, 0.0]).view(1, 1, 1, 1, 4)
    terms = partial_label_loss(logits, target)
    assert torch.isfinite(terms.total)
    # two confidently wrong voxels out of four: mean BCE = 2 * 60000 / 4
    assert math.isclose(terms.bce.item(), 30000.0, rel_tol=1e-3)


def test_masked_channel_mean_by_hand():
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    labeled = torch.tensor([[True, False], [True, True], [False, False]])
    # channel 0: (1 + 3) / 2 = 2; channel 1: 4; then over the two channels: 3 (sample 2 labels nothing)
    assert masked_channel_mean(values, labeled).item() == 3.0
    assert masked_channel_mean(values[:, :1], labeled.any(dim=1, keepdim=True)).item() == 2.0  # TAL's [B, 1] use
    nothing = masked_channel_mean(values.requires_grad_(), torch.zeros(3, 2, dtype=torch.bool))
    assert nothing.item() == 0.0 and nothing.requires_grad
