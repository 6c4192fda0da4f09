"""ONNX translations that keep ONNX Runtime as accurate as PyTorch on CT-sized volumes.

torch's TorchScript-based exporter writes ``GroupNorm`` as ``InstanceNormalization`` over ``[N, G, C/G*D*H*W]``.
ONNX Runtime's CPU kernel (and its ``ReduceMean``) sums such a row in plain float32: on the official model's
64x192x192 decoder (4.7 million values per group) one GroupNorm is off by 6e-4 where PyTorch is within 1e-6 of
float64, and through the ~40 GroupNorms of CCQ the logits drift by 0.035 (measured with onnxruntime 1.32).

`accurate_group_norm` exports GroupNorm instead as means taken one axis at a time over ``[N, G, C/G*D, H, W]``
(no single sum is longer than the largest of C/G*D, H, W, so rounding stays at PyTorch's level), with the variance
from the centred values (two passes, no E[x^2] - E[x]^2 cancellation). Same function, same weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.onnx import symbolic_helper

_GROUP_NORM = "aten::group_norm"
_MAX_OPSET = 17
"""ReduceMean takes ``axes`` as an attribute up to opset 17 (an input from 18 on)."""


def _mean_over(g, x, axes: list[int]):
    # One axis at a time: each ReduceMean sums a short row, so float32 rounding does not build up.
    for axis in axes:
        x = g.op("ReduceMean", x, axes_i=[axis], keepdims_i=1)
    return x


@symbolic_helper.parse_args("v", "i", "v", "v", "f", "i")
def _group_norm(g, x, num_groups: int, weight, bias, eps: float, cudnn_enabled: int):
    sizes = symbolic_helper._get_tensor_sizes(x)
    if not sizes or any(s is None for s in sizes) or len(sizes) < 3:
        # Unknown sizes (a dynamic axis): one flat row per group, as torch's own translation.
        grouped_shape = [0, num_groups, -1]
        axes = [2]
        channels = symbolic_helper._get_tensor_dim_size(x, 1)
        rank = symbolic_helper._get_tensor_rank(x)
    else:
        n, channels, *spatial = sizes
        grouped_shape = [n, num_groups, channels // num_groups * spatial[0], *spatial[1:]]
        axes = list(range(len(grouped_shape) - 1, 1, -1))
        rank = len(sizes)
    if channels is None or rank is None:
        raise torch.onnx.errors.SymbolicValueError("group_norm: unknown channel count or rank", x)
    grouped = g.op("Reshape", x, g.op("Constant", value_t=torch.tensor(grouped_shape, dtype=torch.long)))
    centred = g.op("Sub", grouped, _mean_over(g, grouped, axes))
    variance = _mean_over(g, g.op("Mul", centred, centred), axes)
    std = g.op("Sqrt", g.op("Add", variance, g.op("Constant", value_t=torch.tensor(eps, dtype=torch.float32))))
    out = g.op("Reshape", g.op("Div", centred, std), g.op("Shape", x))
    affine_shape = g.op("Constant", value_t=torch.tensor([channels] + [1] * (rank - 2), dtype=torch.long))
    if not symbolic_helper._is_none(weight):
        out = g.op("Mul", out, g.op("Reshape", weight, affine_shape))
    if not symbolic_helper._is_none(bias):
        out = g.op("Add", out, g.op("Reshape", bias, affine_shape))
    return out


@contextmanager
def accurate_group_norm(opset: int) -> Iterator[None]:
    """Within the block, torch.onnx.export (``dynamo=False``) writes GroupNorm the accurate way (see above)."""
    if opset > _MAX_OPSET:
        raise ValueError(f"accurate_group_norm supports opsets up to {_MAX_OPSET}, not {opset}")
    torch.onnx.register_custom_op_symbolic(_GROUP_NORM, _group_norm, opset)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic(_GROUP_NORM, opset)
