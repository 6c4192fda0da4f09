"""Memory-lean "normalize -> activate -> convolve" units for training.

Autograd keeps, for GN -> act -> conv, the GN input, the activation output (for the activation's and the conv's
backward) and whatever the GN needs: two full-size tensors per unit. These units keep only the input and
recompute GN and activation (cheap, memory-bound) during the backward pass, so the conv's input never has to be
stored. Same operations, same order, same float32 arithmetic: the results equal the plain modules' up to the
recomputation, which is bitwise deterministic on the CPU.

Under autocast (mixed-precision training) the backward pass recomputes inside the forward pass's autocast state, so
GN and the activation see the same dtypes as in forward, and the convolution's gradients are taken in the dtype the
forward convolution ran in (then returned in each input's own dtype, as autocast's casts would).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import _python_dispatch

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


def recompute_is_enabled() -> bool:
    """Whether the units now being run recompute GroupNorm + activation in backward (`recompute_enabled`)."""
    return _RECOMPUTE


def _act(x: torch.Tensor, slope: float | None, inplace: bool) -> torch.Tensor:
    if slope is None:
        return x
    if slope == 0.0:
        return F.relu_(x) if inplace else F.relu(x)
    return F.leaky_relu_(x, slope) if inplace else F.leaky_relu(x, slope)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Trilinear x2 upsampling as the official decoder (align_corners=False)."""
    return F.interpolate(x, scale_factor=2.0, mode="trilinear", align_corners=False)


_ONEDNN_ONE_SAMPLE = True


@contextlib.contextmanager
def onednn_for_one_sample(enabled: bool) -> Iterator[None]:
    """Turn `conv3d`'s routing of one-sample CPU convolutions to oneDNN on or off (on by default), e.g. to measure
    what it saves."""
    global _ONEDNN_ONE_SAMPLE
    previous, _ONEDNN_ONE_SAMPLE = _ONEDNN_ONE_SAMPLE, enabled
    try:
        yield
    finally:
        _ONEDNN_ONE_SAMPLE = previous


def _one_sample_on_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `conv3d` sends this convolution to oneDNN itself (see there)."""
    return (
        _ONEDNN_ONE_SAMPLE
        and x.shape[0] == 1
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and tuple(weight.shape[2:]) != (1, 1, 1)
        and not torch.is_grad_enabled()
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and _python_dispatch._get_current_dispatch_mode() is None  # FLOP counters, fake tensors: the public op
    )


def conv3d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, int, int],
    padding: tuple[int, int, int],
) -> torch.Tensor:
    """F.conv3d; x: [B, C_in, D, H, W] -> [B, C_out, D', H', W'].

    Except for one sample on the CPU (a sliding window of batch 1) when no gradient is recorded: PyTorch's
    heuristic sends such an input with few voxels per channel (B * C * D * H <= 20480) to its reference
    im2col convolution, which measured 8-16x slower than oneDNN on the demo model's 3x3x3 convolutions
    (BENCHMARKS.md, all-task prediction); those go to oneDNN directly. 1x1x1 kernels keep the heuristic's choice.
    """
    if _one_sample_on_onednn(x, weight):
        return torch.ops.aten.mkldnn_convolution(x, weight, bias, list(padding), list(stride), [1, 1, 1], 1)
    return F.conv3d(x, weight, bias, stride, padding)


class _Spec(NamedTuple):
    groups: int
    eps: float
    pre_slope: float | None
    post_slope: float | None
    stride: tuple[int, int, int]
    padding: tuple[int, int, int]


def group_norm(
    x: torch.Tensor, groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """F.group_norm; x: [B, C, ...] -> the same shape.

    PyTorch's CPU GroupNorm backward crashes the process (a segmentation fault, torch 2.13) for a channels-last
    input that needs no gradient while the weight does: a frozen part's output (`--freeze decoder`, say) entering a
    trained GroupNorm under channels-last. Such an input is normalised in the contiguous layout instead: the same
    values, one copy, only in that case."""
    if (
        x.device.type == "cpu"
        and not x.requires_grad
        and not x.is_contiguous()
        and torch.is_grad_enabled()
        and any(p is not None and p.requires_grad for p in (weight, bias))
    ):
        x = x.contiguous()
    return F.group_norm(x, groups, weight, bias, eps)


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm (same parameters and state-dict keys) through `group_norm`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, ...] -> the same shape."""
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


def _front(x: torch.Tensor, gn_weight: torch.Tensor, gn_bias: torch.Tensor, spec: _Spec) -> torch.Tensor:
    # The activation after GN runs in place on GN's fresh output (GN's backward needs its input, not its output):
    # a new full-size tensor costs more in page faults than the activation itself.
    h = _act(x, spec.pre_slope, inplace=False)
    return _act(group_norm(h, spec.groups, gn_weight, gn_bias, spec.eps), spec.post_slope, inplace=True)


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast dtype if autocast is on for this device type, else None."""
    try:
        on = torch.is_autocast_enabled(device_type)
    except RuntimeError:  # a device type autocast does not know
        return None
    return torch.get_autocast_dtype(device_type) if on else None


class _NormActConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gn_weight, gn_bias, conv_weight, conv_bias, source, spec: _Spec):
        ctx.autocast_dtype = _autocast_dtype(x.device.type)
        with torch.no_grad():
            z = F.conv3d(_front(x, gn_weight, gn_bias, spec), conv_weight, conv_bias, spec.stride, spec.padding)
        # With a source, x == upsample2(source): keep the 8x smaller source and upsample again in backward.
        ctx.save_for_backward(x if source is None else source, gn_weight, gn_bias, conv_weight)
        ctx.from_source = source is not None
        ctx.spec = spec
        ctx.has_bias = conv_bias is not None
        return z

    @staticmethod
    def backward(ctx, grad_z):
        kept, gn_weight, gn_bias, conv_weight = ctx.saved_tensors
        spec, has_bias = ctx.spec, ctx.has_bias
        need = ctx.needs_input_grad
        if ctx.from_source:
            with torch.no_grad():
                kept = upsample2(kept)
        same_autocast = contextlib.nullcontext()
        if ctx.autocast_dtype is not None:
            same_autocast = torch.autocast(kept.device.type, dtype=ctx.autocast_dtype)
        with torch.enable_grad(), same_autocast:
            leaves = [t.detach().requires_grad_(n) for t, n in zip((kept, gn_weight, gn_bias), need[:3], strict=True)]
            y = _front(*leaves, spec)
        # The forward convolution ran in grad_z's dtype (autocast's choice); its gradients are taken in that dtype.
        dtype = grad_z.dtype
        grad_y, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad_z,
            y.detach().to(dtype),
            conv_weight.to(dtype),
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
            computed = iter(torch.autograd.grad(y, wanted, grad_y.to(y.dtype)))
            grads = [next(computed) if leaf.requires_grad else None for leaf in leaves]
        grad_w = grad_w.to(conv_weight.dtype) if need[3] else None
        grad_b = grad_b.to(conv_weight.dtype) if has_bias and need[4] else None  # bias and weight share a dtype
        return (*grads, grad_w, grad_b, None, None)


def norm_act_conv(
    x: torch.Tensor,
    norm: torch.nn.GroupNorm | tuple[int, torch.Tensor, torch.Tensor, float],
    conv_weight: torch.Tensor,
    conv_bias: torch.Tensor | None = None,
    stride: int | tuple[int, int, int] = 1,
    padding: int | tuple[int, int, int] = 0,
    pre_slope: float | None = None,
    post_slope: float | None = None,
    source: torch.Tensor | None = None,
) -> torch.Tensor:
    """conv3d(act_post(GN(act_pre(x)))), slopes: None = no activation, 0.0 = ReLU, s = LeakyReLU(s).

    x: [B, C, D, H, W] -> [B, C_out, D', H', W']. When gradients are recorded, only x (not the normalised or
    activated tensors) is kept for the backward pass; or only `source` when given, which must satisfy
    x == upsample2(source) (x is then recomputed from it).
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
        (stride,) * 3 if isinstance(stride, int) else tuple(stride),
        (padding,) * 3 if isinstance(padding, int) else tuple(padding),
    )
    tensors = (x, weight, bias, conv_weight, conv_bias)
    if _RECOMPUTE and torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return _NormActConv.apply(x, weight, bias, conv_weight, conv_bias, source, spec)
    return conv3d(_front(x, weight, bias, spec), conv_weight, conv_bias, spec.stride, spec.padding)
