"""Convolutional building blocks of the 3D residual U-Net shared by CCQ and DoDNet."""

from __future__ import annotations

import torch
from torch import nn

from ccq.models.config import Activation
from ccq.models.fused import GroupNorm, conv3d, norm_act_conv


def make_activation(kind: Activation, negative_slope: float = 0.1) -> nn.Module:
    """In-place activations: autograd then keeps one tensor (the result) instead of two."""
    if kind == "relu":
        return nn.ReLU(inplace=True)
    return nn.LeakyReLU(negative_slope, inplace=True)


def _standardized_rows(weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """weight [O, ...] -> (standardized filters [O, n], their std [O, 1]); the variance is unbiased (the official
    code's `torch.var`), taken as the mean square of the centred filter: `torch.var` reduces a row in Welford's
    slower way, 280 us for a 64x64x3x3x3 weight against 14 for a product and a sum (2 CPU threads, a scratch
    timing)."""
    flat = weight.flatten(1)
    centred = flat - flat.mean(dim=1, keepdim=True)
    var = (centred * centred).sum(dim=1, keepdim=True) / (flat.shape[1] - 1)
    std = torch.sqrt(var + eps)
    return centred / std, std


def _standardize(weight: torch.Tensor, eps: float) -> torch.Tensor:
    return _standardized_rows(weight, eps)[0].view_as(weight)


def _in_layout_of(out: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``out`` channels-last if ``weight`` is (5-D), else as it is."""
    if weight.dim() == 5 and not weight.is_contiguous() and weight.is_contiguous(memory_format=torch.channels_last_3d):
        return out.contiguous(memory_format=torch.channels_last_3d)
    return out


class _Standardize(torch.autograd.Function):
    """Weight standardization with a closed-form backward. Autograd's would run the backward of each of the
    forward's seven small operations; on the demo model's 35 standardized convolutions (weights of 2-110 thousand
    elements, where each operation costs its call more than its arithmetic) forward and backward took 16-18 ms of
    a 128-131 ms training step on 2 CPU cores, now 5-7 (`benchmarks/step_overhead.py`, BENCHMARKS.md). For one
    filter w of n elements, centred c = w - mean(w), sigma = sqrt(sum(c^2) / (n - 1) + eps) and y = c / sigma,
    the gradient of a loss with dL/dy = g is

        dL/dc = (g - y * sum(g * y) / (n - 1)) / sigma,    dL/dw = dL/dc - mean(dL/dc)

    (the same value autograd computes, up to float rounding). Kept for backward: y and sigma, one copy of the
    weights (about 3.5 MB for the demo model, 88 MB for the official one: little beside the activations).

    The result keeps a channels-last weight's layout. A convolution whose input and weight are both contiguous
    answers contiguous, so contiguous standardized weights after the one-channel stem (whose output is both layouts
    at once) ran a channels-last model's whole encoder contiguous: 1.12x slower training steps of the demo model
    (BENCHMARKS.md, "Memory layouts on a CPU"). Only here, in training: without gradient the weights stay
    contiguous, and prediction keeps its encoder contiguous, because PyTorch's channels-last GroupNorm kernel sums
    less exactly (an official-size network's probabilities moved by up to 3e-3) for a 1.08x faster window."""

    @staticmethod
    def forward(ctx, weight, eps):
        """weight [O, I, k, k, k] -> standardized, the same shape (and layout)."""
        with torch.no_grad():
            flat, std = _standardized_rows(weight, eps)
        ctx.save_for_backward(flat, std)
        return _in_layout_of(flat.view_as(weight), weight)

    @staticmethod
    def backward(ctx, grad):
        """grad [O, I, k, k, k] (of the standardized weight) -> the raw weight's gradient, in grad's layout."""
        flat, std = ctx.saved_tensors
        g = grad.reshape(flat.shape)
        projection = (g * flat).sum(dim=1, keepdim=True) / (flat.shape[1] - 1)
        grad_centred = torch.addcmul(g, flat, projection, value=-1.0).div_(std)
        grad_w = grad_centred.sub_(grad_centred.mean(dim=1, keepdim=True))
        return _in_layout_of(grad_w.view_as(grad), grad), None


def standardize_weight(weight: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Weight standardization per output filter: (w - mean) / sqrt(var + eps), var unbiased as the official code.
    When it is trained, a channels-last weight gives a channels-last result (see `_Standardize`)."""
    if torch.is_grad_enabled() and weight.requires_grad:
        return _Standardize.apply(weight, eps)
    return _standardize(weight, eps)


class WSConv3d(nn.Conv3d):
    """Conv3d with weight standardization (Qiao et al. 2019), no bias by default.

    In training the standardized weight is recomputed at each call (it is part of the graph). In eval mode it
    is cached and reused until the raw weight changes (tracked through the tensor's version counter), which saves
    the recomputation at every sliding window.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        bias: bool = False,
    ) -> None:
        if padding is None:
            padding = kernel_size // 2
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self._cache: tuple[tuple[int, int, torch.device, torch.dtype], torch.Tensor] | None = None

    def standardized_weight(self) -> torch.Tensor:
        """The standardized weight [out, in, k, k, k], cached while gradients are off and the weight unchanged."""
        if self.training or torch.is_grad_enabled():
            self._cache = None
            return standardize_weight(self.weight)
        key = (self.weight._version, self.weight.data_ptr(), self.weight.device, self.weight.dtype)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, standardize_weight(self.weight))
        return self._cache[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, D, H, W] -> [B, C_out, D', H', W']."""
        return conv3d(x, self.standardized_weight(), self.bias, self.stride, self.padding)


def make_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 1,
    weight_std: bool = True,
) -> nn.Conv3d:
    """A bias-free 3D conv, weight-standardized or plain."""
    if weight_std:
        return WSConv3d(in_channels, out_channels, kernel_size, stride=stride)
    return nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)


def activation_slope(kind: Activation, negative_slope: float = 0.1) -> float:
    """The negative slope that encodes an activation for `norm_act_conv`: 0.0 is ReLU."""
    return 0.0 if kind == "relu" else negative_slope


def conv_weight(conv: nn.Conv3d) -> torch.Tensor:
    """The weight a conv actually applies (standardized for WSConv3d)."""
    return conv.standardized_weight() if isinstance(conv, WSConv3d) else conv.weight


def apply_norm_act_conv(x: torch.Tensor, norm: nn.GroupNorm, conv: nn.Conv3d, slope: float | None) -> torch.Tensor:
    """conv(act(norm(x))) through the memory-lean unit; x: [B, C, D, H, W] -> [B, C_out, D', H', W']."""
    return norm_act_conv(x, norm, conv_weight(conv), conv.bias, conv.stride, conv.padding, post_slope=slope)


class ResBlock(nn.Module):
    """Pre-activation residual block: GN -> act -> conv(stride) -> GN -> act -> conv, plus a shortcut.

    The shortcut is GN -> act -> 1x1x1 conv (stride) when the stride or the channel count changes.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        norm_groups: int = 16,
        activation: Activation = "leaky_relu",
        negative_slope: float = 0.1,
        weight_std: bool = True,
    ) -> None:
        super().__init__()
        self.slope = activation_slope(activation, negative_slope)
        self.norm1 = GroupNorm(norm_groups, in_channels)
        self.conv1 = make_conv(in_channels, out_channels, 3, stride, weight_std)
        self.norm2 = GroupNorm(norm_groups, out_channels)
        self.conv2 = make_conv(out_channels, out_channels, 3, 1, weight_std)
        self.shortcut: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                GroupNorm(norm_groups, in_channels),
                make_activation(activation, negative_slope),
                make_conv(in_channels, out_channels, 1, stride, weight_std),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, D, H, W] -> [B, C_out, D/stride, H/stride, W/stride]."""
        out = apply_norm_act_conv(x, self.norm1, self.conv1, self.slope)
        out = apply_norm_act_conv(out, self.norm2, self.conv2, self.slope)
        if self.shortcut is None:
            return out.add_(x)
        return out.add_(apply_norm_act_conv(x, self.shortcut[0], self.shortcut[2], self.slope))


def make_stage(
    in_channels: int,
    out_channels: int,
    blocks: int,
    stride: int,
    norm_groups: int,
    activation: Activation,
    negative_slope: float,
    weight_std: bool,
) -> nn.Sequential:
    """`blocks` residual blocks; the first one changes stride and channels."""
    layers = [ResBlock(in_channels, out_channels, stride, norm_groups, activation, negative_slope, weight_std)]
    for _ in range(1, blocks):
        layers.append(ResBlock(out_channels, out_channels, 1, norm_groups, activation, negative_slope, weight_std))
    return nn.Sequential(*layers)
