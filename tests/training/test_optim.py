"""The optimizers: PyTorch's fused kernels where it has them, with the per-parameter loop's update."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ccq.training import optim
from ccq.training.config import get_train_preset
from ccq.training.optim import build_optimizer


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(1, 4, 3), nn.GroupNorm(2, 4), nn.Conv3d(4, 2, 1))


@pytest.mark.parametrize("preset", ["official", "demo"])  # SGD with Nesterov momentum; AdamW
def test_cpu_optimizers_are_fused_and_update_as_the_loop(preset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config = get_train_preset(preset)
    fused_model, loop_model = _model(), _model()
    fused = build_optimizer(fused_model, config)
    monkeypatch.setattr(optim, "_fusable", lambda params: False)
    loop = build_optimizer(loop_model, config)
    assert fused.defaults["fused"] is True and loop.defaults["fused"] is None
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        grads = [torch.randn(p.shape, generator=g) for p in fused_model.parameters()]
        for model, opt in ((fused_model, fused), (loop_model, loop)):
            for p, grad in zip(model.parameters(), grads, strict=True):
                p.grad = grad.clone()
            opt.step()
    moved = [not torch.equal(a, b) for a, b in zip(fused_model.parameters(), _model().parameters(), strict=True)]
    assert all(moved)
    for a, b in zip(fused_model.parameters(), loop_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_parameters_without_fused_kernels_use_the_loop() -> None:
    model = copy.deepcopy(_model()).to("meta")
    assert build_optimizer(model, get_train_preset("demo")).defaults["fused"] is None
