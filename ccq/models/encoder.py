"""The CNN encoder: a residual 3D U-Net encoder (DoDNet's, with a configurable activation)."""

from __future__ import annotations

import torch
from torch import nn

from ccq.models.config import Activation
from ccq.models.fused import GroupNorm
from ccq.models.layers import activation_slope, apply_norm_act_conv, make_activation, make_conv, make_stage


class CNNEncoder(nn.Module):
    """Stem conv, residual stages, then a GN -> act -> 1x1x1 "fusion" conv on the deepest stage.

    Official: stem 1->32, stages (32,1,1), (64,2,2), (128,2,2), (256,2,2), (256,2,2).
    The outputs of all stages but the last are the skips S0..S{n-2}.
    """

    def __init__(
        self,
        in_channels: int = 1,
        stem_channels: int = 32,
        channels: tuple[int, ...] = (32, 64, 128, 256, 256),
        blocks: tuple[int, ...] = (1, 2, 2, 2, 2),
        norm_groups: int = 16,
        activation: Activation = "leaky_relu",
        negative_slope: float = 0.1,
        weight_std: bool = True,
    ) -> None:
        super().__init__()
        if len(channels) != len(blocks):
            raise ValueError(f"channels {channels} and blocks {blocks} must have the same length")
        self.stem = make_conv(in_channels, stem_channels, 3, 1, weight_std)
        stages = []
        previous = stem_channels
        for i, (c, n) in enumerate(zip(channels, blocks, strict=True)):
            stride = 1 if i == 0 else 2
            stages.append(make_stage(previous, c, n, stride, norm_groups, activation, negative_slope, weight_std))
            previous = c
        self.stages = nn.ModuleList(stages)
        self.fusion = nn.Sequential(
            GroupNorm(norm_groups, previous),
            make_activation(activation, negative_slope),
            make_conv(previous, previous, 1, 1, weight_std),
        )
        self.slope = activation_slope(activation, negative_slope)
        self.skip_channels = tuple(channels[:-1])
        self.out_channels = previous

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """x: [B, C_in, D, H, W] -> (skips [S0: [B, c0, D, H, W], ..., S3: [B, c3, D/8, H/8, W/8]],
        F: [B, c4, D/16, H/16, W/16])."""
        x = self.stem(x)
        skips = []
        for stage in self.stages[:-1]:
            x = stage(x)
            skips.append(x)
        x = self.stages[-1](x)
        return skips, apply_norm_act_conv(x, self.fusion[0], self.fusion[2], self.slope)
