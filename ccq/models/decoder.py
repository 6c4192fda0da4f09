"""The CNN decoder: x2 upsampling, (attentive) skip connections and one residual block per level."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ccq.models.config import Activation, SkipMode
from ccq.models.fused import GroupNorm, norm_act_conv, upsample2
from ccq.models.layers import ResBlock, activation_slope, conv_weight, make_conv
from ccq.models.rows import ONE_GROUP, Rows


class SkipGate(nn.Module):
    """Single-channel spatial gate of a skip connection, computed from [S; U].

    gate = sigmoid(conv(GN(act(conv(GN([S; U])))))), 2C -> C -> 1 channels. "attentive" (official code):
    U + S*gate, 3x3x3 convs. "paper" (Eq. 5 as written): U + S*gate + S, 1x1x1 convs.

    GN over [S; U] with an even number of groups never mixes S and U channels, and a conv over a concatenation
    is the sum of convs over its parts. So the S half is computed once per sample and shared by all the branches
    (organ/tumor, tasks) that decode the same image, instead of once per branch.
    """

    def __init__(
        self,
        channels: int,
        mode: SkipMode = "attentive",
        norm_groups: int = 16,
        activation: Activation = "leaky_relu",
        negative_slope: float = 0.1,
        weight_std: bool = True,
    ) -> None:
        super().__init__()
        if mode not in ("attentive", "paper"):
            raise ValueError(f"SkipGate mode {mode!r}: expected 'attentive' or 'paper'")
        kernel = 3 if mode == "attentive" else 1
        self.mode = mode
        self.channels = channels
        self.norm_groups = norm_groups
        self.norm1 = GroupNorm(norm_groups, 2 * channels)
        self.conv1 = make_conv(2 * channels, channels, kernel, 1, weight_std)
        self.slope = activation_slope(activation, negative_slope)
        self.norm2 = GroupNorm(norm_groups, channels)
        self.conv2 = make_conv(channels, 1, kernel, 1, weight_std)

    def _first_conv(self, skip: torch.Tensor, low: torch.Tensor, up: torch.Tensor, rows: Rows) -> torch.Tensor:
        c = self.channels
        w = conv_weight(self.conv1)
        pad = self.conv1.padding
        norm = self.norm1
        if self.norm_groups % 2:
            # Odd group count: a group straddles S and U, so fall back to the concatenation.
            joined = torch.cat([rows.spread(skip), up], dim=1)
            return norm_act_conv(joined, norm, w, None, 1, pad)
        half = self.norm_groups // 2
        # Contiguous weight halves: oneDNN falls back to a slow convolution for strided weights.
        w_s, w_u = w[:, :c].contiguous(), w[:, c:].contiguous()
        s = norm_act_conv(skip, (half, norm.weight[:c], norm.bias[:c], norm.eps), w_s, None, 1, pad)
        # The upsampled U is recomputed from the 8x smaller low-resolution input in backward, not kept.
        u = norm_act_conv(up, (half, norm.weight[c:], norm.bias[c:], norm.eps), w_u, None, 1, pad, source=low)
        return rows.add(u, s)

    def forward(self, skip: torch.Tensor, low: torch.Tensor, rows: Rows) -> torch.Tensor:
        """skip S: [B, C, D, H, W]; low: [M, C, D/2, H/2, W/2], the decoder state of each row (`rows`) before its
        x2 upsampling U -> U merged with the gated skip of the row's image, [M, C, D, H, W]."""
        up = upsample2(low)
        hidden = self._first_conv(skip, low, up, rows)
        logit = norm_act_conv(
            hidden, self.norm2, conv_weight(self.conv2), None, 1, self.conv2.padding, pre_slope=self.slope
        )
        gate = torch.sigmoid(logit)
        if self.mode == "paper":
            gate = gate + 1.0
        return rows.addcmul(up, skip, gate)


class SkipDecoder(nn.Module):
    """What every U-Net decoder here shares: four times trilinear x2 upsampling, merging the skip (gated or added),
    then one block made by `make_block(in_channels, out_channels)`. Subclasses say how a block is called.

    Channels: the input has as many channels as the deepest skip; each block maps to `out_channels[i]`, which must
    equal the channels of the next (shallower) skip.
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: tuple[int, ...],
        out_channels: tuple[int, ...],
        skip: SkipMode,
        norm_groups: int,
        activation: Activation,
        negative_slope: float,
        weight_std: bool,
        make_block: Callable[[int, int], nn.Module],
    ) -> None:
        super().__init__()
        if len(skip_channels) != len(out_channels):
            raise ValueError(f"skip_channels {skip_channels} and out_channels {out_channels} differ in length")
        self.skip_mode = skip
        gates, blocks = [], []
        current = in_channels
        # Gate and block of a level are made together: the order of construction fixes the initial weights.
        for s_ch, out_ch in zip(reversed(skip_channels), out_channels, strict=True):
            if current != s_ch:
                raise ValueError(f"decoder input of {current} channels cannot merge a skip of {s_ch} channels")
            if skip != "additive":
                gates.append(SkipGate(s_ch, skip, norm_groups, activation, negative_slope, weight_std))
            blocks.append(make_block(current, out_ch))
            current = out_ch
        self.gates = nn.ModuleList(gates)
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = current

    def merge_skip(self, level: int, x: torch.Tensor, skips: list[torch.Tensor], rows: Rows) -> torch.Tensor:
        """x: [M, C, d, h, w], each row's state before level `level` -> upsampled and merged with that level's skip
        [B, C, D, H, W] of the row's image: [M, C, D, H, W]."""
        skip = skips[-1 - level]
        if self.skip_mode == "additive":
            return rows.add(upsample2(x), skip)
        return self.gates[level](skip, x, rows)


class Decoder(SkipDecoder):
    """The CNN decoder of CCQ, DoDNet and the baselines: `SkipDecoder` with one residual block per level."""

    def __init__(
        self,
        in_channels: int = 256,
        skip_channels: tuple[int, ...] = (32, 64, 128, 256),
        out_channels: tuple[int, ...] = (128, 64, 32, 32),
        skip: SkipMode = "attentive",
        norm_groups: int = 16,
        activation: Activation = "leaky_relu",
        negative_slope: float = 0.1,
        weight_std: bool = True,
    ) -> None:
        def make_block(c_in: int, c_out: int) -> nn.Module:
            return ResBlock(c_in, c_out, 1, norm_groups, activation, negative_slope, weight_std)

        super().__init__(
            in_channels, skip_channels, out_channels, skip, norm_groups, activation, negative_slope, weight_std,
            make_block,
        )  # fmt: skip

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor], rows: Rows = ONE_GROUP) -> torch.Tensor:
        """x: [M, C, d, h, w], rows of the images (`rows`); skips: shallow first, [B, c_i, ...] each
        -> [M, c_out, D, H, W]."""
        for level, block in enumerate(self.blocks):
            x = block(self.merge_skip(level, x, skips, rows))
        return x
