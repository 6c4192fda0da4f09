"""DoDNet-style dynamic segmentation heads: 1x1x1 convs whose weights come from a controller."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ccq.models.config import Activation
from ccq.models.fused import GroupNorm
from ccq.models.layers import activation_slope, apply_norm_act_conv, make_activation
from ccq.models.rows import Rows


def dynamic_param_sizes(channels: int, out_channels: int, layers: int = 3) -> tuple[list[int], list[int]]:
    """Numbers of weights and biases of `layers` 1x1x1 convs channels -> ... -> channels -> out_channels."""
    weights = [channels * channels] * (layers - 1) + [channels * out_channels]
    biases = [channels] * (layers - 1) + [out_channels]
    return weights, biases


def apply_dynamic_convs(
    features: torch.Tensor,
    params: torch.Tensor,
    channels: int,
    out_channels: int,
    activation: Activation,
    negative_slope: float = 0.1,
    layers: int = 3,
) -> torch.Tensor:
    """Per-sample 1x1x1 convs as batched matrix products.

    features: [M, channels, D, H, W]; params: [M, P] laid out as (all weights, then all biases), each conv's
    weight row-major [out, in] -> [M, out_channels, D, H, W].
    """
    m, c, *spatial = features.shape
    weights, biases = dynamic_param_sizes(channels, out_channels, layers)
    chunks = torch.split(params, weights + biases, dim=1)
    x = features.reshape(m, c, -1)
    for i in range(layers):
        out = channels if i < layers - 1 else out_channels
        w = chunks[i].view(m, out, -1)
        b = chunks[layers + i].view(m, out, 1)
        x = torch.baddbmm(b, w, x)
        if i < layers - 1:
            # In place: the activation and the next product then keep one tensor between them.
            x = F.relu_(x) if activation == "relu" else F.leaky_relu_(x, negative_slope)
    return x.view(m, out_channels, *spatial)


class _Conditioning(nn.Module):
    """GAP(act(GN(F))) concatenated with the one-hot task: the controllers' input. DoDNet and the official CCQ both
    use ReLU here, whatever the network's activation."""

    def __init__(self, feature_channels: int, norm_groups: int) -> None:
        super().__init__()
        self.norm = GroupNorm(norm_groups, feature_channels)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        """feature: [B, C, d, h, w] -> [B, C]."""
        return F.relu(self.norm(feature)).mean(dim=(2, 3, 4))


class PreHead(nn.Sequential):
    """GN -> act -> 1x1x1 conv (with bias) to the head's channel count."""

    def __init__(
        self,
        in_channels: int,
        head_channels: int,
        norm_groups: int,
        activation: Activation,
        negative_slope: float,
    ) -> None:
        super().__init__(
            GroupNorm(norm_groups, in_channels),
            make_activation(activation, negative_slope),
            nn.Conv3d(in_channels, head_channels, 1),
        )
        self.slope = activation_slope(activation, negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, D, H, W] -> [B, head_channels, D, H, W]."""
        return apply_norm_act_conv(x, self[0], self[2], self.slope)


class _HeadBase(nn.Module):
    """What both dynamic heads share: the controllers, applied to [GAP(F); one-hot task], and the pre-head conv."""

    def __init__(
        self,
        feature_channels: int,
        decoder_channels: int,
        channels: int,
        norm_groups: int,
        activation: Activation,
        negative_slope: float,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.activation, self.negative_slope = activation, negative_slope
        self.conditioning = _Conditioning(feature_channels, norm_groups)
        self.pre = PreHead(decoder_channels, channels, norm_groups, activation, negative_slope)

    def control(
        self, controller: nn.Linear, pooled: torch.Tensor, task_onehot: torch.Tensor, image: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`controller` applied to its input [GAP(F); one-hot task], as two products.

        pooled GAP(F): [B, C]; task_onehot: [M, K], one row per decoded row; image: [M] the image of each row,
        or None for group-major rows ([G*B]) -> [M, out]. The task part multiplies a one-hot
        row, so each of its outputs is one weight plus exact zeros, whatever the order of the sum: a model
        grown with more tasks (more columns, `ccq.models.growth`) gives its old tasks bit-identical parameters.
        One product over the concatenated input would not: its summation order depends on the input's width.
        """
        c = pooled.shape[1]
        image_part = F.linear(pooled, controller.weight[:, :c], controller.bias)
        task_part = F.linear(task_onehot, controller.weight[:, c:])
        rows = Rows.grid(task_onehot.shape[0] // pooled.shape[0]) if image is None else Rows.subsets([image])
        return rows.spread(image_part) + task_part

    def convolve(self, pre: torch.Tensor, params: torch.Tensor, out_channels: int) -> torch.Tensor:
        return apply_dynamic_convs(pre, params, self.channels, out_channels, self.activation, self.negative_slope)


class DynamicHead(_HeadBase):
    """DoDNet's head: one controller gives all the parameters of convs channels -> channels -> channels -> out."""

    def __init__(
        self,
        feature_channels: int,
        num_tasks: int,
        decoder_channels: int,
        channels: int = 8,
        out_channels: int = 2,
        norm_groups: int = 16,
        activation: Activation = "relu",
        negative_slope: float = 0.1,
    ) -> None:
        super().__init__(feature_channels, decoder_channels, channels, norm_groups, activation, negative_slope)
        self.out_channels = out_channels
        w, b = dynamic_param_sizes(channels, out_channels)
        self.controller = nn.Linear(feature_channels + num_tasks, sum(w) + sum(b))

    def forward(self, decoded: torch.Tensor, feature: torch.Tensor, task_onehot: torch.Tensor) -> torch.Tensor:
        """decoded: [B, C_dec, D, H, W] (task-independent); feature F: [B, C, d, h, w]; task_onehot: [G*B, K]
        (group-major) -> logits [G*B, out_channels, D, H, W]."""
        params = self.control(self.controller, self.conditioning(feature), task_onehot)
        pre = self.pre(decoded)
        groups = task_onehot.shape[0] // feature.shape[0]
        if groups > 1:
            pre = pre.repeat(groups, 1, 1, 1, 1)
        return self.convolve(pre, params, self.out_channels)


class BranchedDynamicHead(_HeadBase):
    """The official CCQ head: organ and tumor branches share the weights of all three convs and the first bias
    (a shared controller) and differ only in their last two biases (one small controller per branch)."""

    def __init__(
        self,
        feature_channels: int,
        num_tasks: int,
        decoder_channels: int,
        channels: int = 8,
        branches: int = 2,
        norm_groups: int = 16,
        activation: Activation = "leaky_relu",
        negative_slope: float = 0.1,
    ) -> None:
        super().__init__(feature_channels, decoder_channels, channels, norm_groups, activation, negative_slope)
        w, b = dynamic_param_sizes(channels, 1)
        self.branch_size = b[1] + b[2]
        self.controller = nn.Linear(feature_channels + num_tasks, sum(w) + b[0])
        self.branch_controllers = nn.ModuleList(
            nn.Linear(feature_channels + num_tasks, self.branch_size) for _ in range(branches)
        )

    def forward(
        self,
        decoded: torch.Tensor,
        feature: torch.Tensor,
        task_onehot: torch.Tensor,
        branch_of_group: list[int],
        rows: Rows,
    ) -> torch.Tensor:
        """decoded: [M, C_dec, D, H, W], the rows of the images (`rows`); feature F: [B, C, d, h, w];
        task_onehot: [M, K]; branch_of_group: the branch (0 organ, 1 tumor) of each of the rows' G groups
        -> logits [M, 1, D, H, W]."""
        pooled = self.conditioning(feature)
        groups = zip(rows.slices(feature.shape[0]), branch_of_group, strict=True)
        specific = torch.cat([
            self.control(self.branch_controllers[br], pooled, task_onehot[part], rows.images_of(g))
            for g, (part, br) in enumerate(groups)
        ])  # fmt: skip
        params = torch.cat([self.control(self.controller, pooled, task_onehot, rows.image), specific], dim=1)
        return self.convolve(self.pre(decoded), params, 1)
