"""Memory-lean "normalize -> activate -> convolve" units for training.

Autograd keeps, for GN -> act -> conv, the GN input, the activation output (for the activation's and the conv's
backward) and whatever the GN needs: two full-size tensors per unit. These units keep only the input and
recompute GN and activation (cheap, memory-bound) during the backward pass, so the conv's input never has to be
stored. Same operations, same order, same float32 arithmetic: the results equal the plain modules' up to the
recomputation, which is bitwise deterministic on the CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F

_RECOMPUTE = True


@contextlib.contextmanager
def recompute_enabled(enabled: bool) -> Iterator[None]:
    """Turn the recomputation on or off (on by default), e.g. to measure what it costs and saves."""
    global _RECOMPUTE
    previous, _RECOMPUTE = _RECOMPUTE, enabled
    try:
        yield
    finally:
        _RECOMPUTE = previous


def _act(x: torch.Tensor, slope: float | None) -> torch.Tensor:
    if slope is None:
        return x
    if slope == 0.0:
        return F.relu(x)
    return F.leaky_relu(x, slope)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Trilinear x2 upsampling as the official decoder (align_corners=False)."""
    return F.interpolate(x, scale_factor=2.0, mode="trilinear", align_corners=False)


def _front(
    x: torch.Tensor,
    gn_weight: torch.Tensor,
    gn_bias: torch.Tensor,
    groups: int,
    eps: float,
    pre_slope: float | None,
    post_slope: float | None,
    upsample: bool,
) -> torch.Tensor:
    if upsample:
        x = upsample2(x)
    return _act(F.group_norm(_act(x, pre_slope), groups, gn_weight, gn_bias, eps), post_slope)


class _Spec(NamedTuple):
    groups: int
    eps: float
    pre_slope: float | None
    post_slope: float | None
    upsample: bool
    stride: tuple[int, int, int]
    padding: tuple[int, int, int]


def _front_spec(x: torch.Tensor, gn_weight: torch.Tensor, gn_bias: torch.Tensor, spec: _Spec) -> torch.Tensor:
    return _front(x, gn_weight, gn_bias, spec.groups, spec.eps, spec.pre_slope, spec.post_slope, spec.upsample)


class _NormActConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gn_weight, gn_bias, conv_weight, conv_bias, spec: _Spec):
        with torch.no_grad():
            y = _front_spec(x, gn_weight, gn_bias, spec)
            z = F.conv3d(y, conv_weight, conv_bias, spec.stride, spec.padding)
        ctx.save_for_backward(x, gn_weight, gn_bias, conv_weight)
        ctx.spec = spec
        ctx.has_bias = conv_bias is not None
        return z

    @staticmethod
    def backward(ctx, grad_z):
        x, gn_weight, gn_bias, conv_weight = ctx.saved_tensors
        spec, has_bias = ctx.spec, ctx.has_bias
        need = ctx.needs_input_grad
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(n) for t, n in zip((x, gn_weight, gn_bias), need[:3], strict=True)]
            y = _front_spec(*leaves, spec)
        grad_y, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad_z,
            y.detach(),
            conv_weight,
            [conv_weight.shape[0]] if has_bias else None,
            list(spec.stride),
            list(spec.padding),
            [1, 1, 1],
            False,
            [0, 0, 0],
            1,
            [any(need[:3]), need[3], has_bias and need[4]],
        )
        grads: list[torch.Tensor | None] = [None, None, None]
        wanted = [leaf for leaf in leaves if leaf.requires_grad]
        if wanted:
            computed = iter(torch.autograd.grad(y, wanted, grad_y))
            grads = [next(computed) if leaf.requires_grad else None for leaf in leaves]
        return (*grads, grad_w if need[3] else None, grad_b if has_bias and need[4] else None, None)


def norm_act_conv(
    x: torch.Tensor,
    norm: torch.nn.GroupNorm | tuple[int, torch.Tensor, torch.Tensor, float],
    conv_weight: torch.Tensor,
    conv_bias: torch.Tensor | None = None,
    stride: int | tuple[int, int, int] = 1,
    padding: int | tuple[int, int, int] = 0,
    pre_slope: float | None = None,
    post_slope: float | None = None,
    upsample: bool = False,
) -> torch.Tensor:
    """conv3d(act_post(GN(act_pre(up(x))))), slopes: None = no activation, 0.0 = ReLU, s = LeakyReLU(s);
    `up` is the trilinear x2 upsampling when `upsample` is set.

    x: [B, C, D, H, W] -> [B, C_out, D', H', W'] (D' = 2D/stride with upsampling). When gradients are recorded,
    only x (not the upsampled, normalised or activated tensors) is kept for the backward pass.
    """
    if isinstance(norm, torch.nn.GroupNorm):
        groups, weight, bias, eps = norm.num_groups, norm.weight, norm.bias, norm.eps
    else:
        groups, weight, bias, eps = norm
    spec = _Spec(
        groups,
        eps,
        pre_slope,
        post_slope,
        upsample,
        (stride,) * 3 if isinstance(stride, int) else tuple(stride),
        (padding,) * 3 if isinstance(padding, int) else tuple(padding),
    )
    tensors = (x, weight, bias, conv_weight, conv_bias)
    if _RECOMPUTE and torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return _NormActConv.apply(x, weight, bias, conv_weight, conv_bias, spec)
    return F.conv3d(_front_spec(x, weight, bias, spec), conv_weight, conv_bias, spec.stride, spec.padding)
