"""The class-conditioned baselines: Cond-Enc (the task one-hot enters the encoder input, Chen, Xu and Koltun 2017)
and Cond-Dec (the task modulates the decoder's activations, after Dmitriev and Kaufman 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ccq.models.baselines.common import UNetParts
from ccq.models.ccq_net import as_task_tensor, channels_from_all_tasks, one_hot_tasks
from ccq.models.config import Activation, SkipMode
from ccq.models.decoder import Decoder, SkipDecoder
from ccq.models.encoder import CNNEncoder
from ccq.models.fused import GroupNorm, group_norm
from ccq.models.head import PreHead
from ccq.models.layers import activation_slope, make_conv
from ccq.models.rows import Rows, grouped


def _all_tasks_layout(x: torch.Tensor, task_ids: torch.Tensor | list[int], num_tasks: int) -> torch.Tensor:
    """Requested tasks [T] repeated per sample, group-major: [T*B] (task of group g for every sample)."""
    tasks = torch.as_tensor(task_ids, dtype=torch.long, device=x.device).reshape(-1)
    as_task_tensor(tasks, tasks.numel(), num_tasks, x.device)  # range check
    return tasks.repeat_interleave(x.shape[0])


class CondEnc(UNetParts):
    """A residual 3D U-Net whose input is the image plus T constant channels, the task's one-hot code.

    Every task needs its own pass through the whole network (the conditioning starts at the first layer), so
    `forward_all_tasks` batches the T passes.
    """

    def __init__(self, encoder: CNNEncoder, decoder: Decoder, head: PreHead, num_tasks: int) -> None:
        super().__init__(encoder, decoder, head)
        self.num_tasks = num_tasks

    def _run(self, x: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        """x: [M, C_in, D, H, W]; task_id: [M] -> logits [M, 2, D, H, W]."""
        code = one_hot_tasks(task_id, self.num_tasks, x.dtype)
        code = code.view(*code.shape, 1, 1, 1).expand(-1, -1, *x.shape[2:])
        skips, feature = self.encoder(torch.cat([x, code], dim=1))
        return self.head(self.decoder(feature, skips))

    def forward(self, x: torch.Tensor, task_id: torch.Tensor | int | list[int]) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; task_id: [B] (or one int) -> logits [B, 2, D, H, W] (organ, tumor)."""
        return self._run(x, as_task_tensor(task_id, x.shape[0], self.num_tasks, x.device))

    def forward_all_tasks(self, x: torch.Tensor, task_ids: torch.Tensor | list[int]) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; task_ids: [T] -> logits [B, T, 2, D, H, W] (the T passes as one batch)."""
        per_group = _all_tasks_layout(x, task_ids, self.num_tasks)
        groups = per_group.numel() // x.shape[0]
        out = self._run(x.repeat(groups, 1, 1, 1, 1), per_group)
        return grouped(out, groups).transpose(0, 1)

    def forward_channels(self, x: torch.Tensor, pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; pairs: P (task id, channel: 0 organ / 1 tumor) -> logits [B, P, D, H, W]; only
        the tasks some pair asks for are run (one whole-network pass per requested task)."""
        return channels_from_all_tasks(self.forward_all_tasks, x, pairs, self.num_tasks)


class TaskAffine(nn.Module):
    """Per-task scale and shift of the channels of some normalised activations: y = GN(x) * (1 + s_t) + b_t.

    The conditioning sits between the normalisation and the nonlinearity, where Dmitriev and Kaufman put theirs
    (between the convolution and the nonlinearity): a modulation before a GroupNorm would be normalised away.
    """

    def __init__(self, num_tasks: int, channels: tuple[int, ...], init_std: float = 0.1) -> None:
        super().__init__()
        self.channels = tuple(channels)
        # Random, not zero: the tasks' decoders differ from the first step, as the paper's fixed per-class codes.
        self.scale = nn.Parameter(torch.randn(num_tasks, sum(self.channels)) * init_std)
        self.shift = nn.Parameter(torch.randn(num_tasks, sum(self.channels)) * init_std)

    def forward(self, task_id: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """task_id: [M] -> one (scale [M, C_i], shift [M, C_i]) per modulated activation."""
        scales = torch.split(self.scale.index_select(0, task_id), self.channels, dim=1)
        shifts = torch.split(self.shift.index_select(0, task_id), self.channels, dim=1)
        return list(zip(scales, shifts, strict=True))


def _norm_film_act(
    x: torch.Tensor, norm: nn.GroupNorm, film: tuple[torch.Tensor, torch.Tensor], slope: float
) -> torch.Tensor:
    """act(GN(x) * (1 + scale) + shift), slope 0.0 = ReLU; x: [M, C, D, H, W], scale and shift: [M, C]."""
    scale, shift = (v.view(*v.shape, 1, 1, 1) for v in film)
    y = torch.addcmul(shift, group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps), 1.0 + scale)
    return F.relu(y) if slope == 0.0 else F.leaky_relu(y, slope)


class ConditionedResBlock(nn.Module):
    """The pre-activation residual block of the U-Net (stride 1) with every normalisation task-modulated."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm_groups: int,
        activation: Activation,
        negative_slope: float,
        weight_std: bool,
    ) -> None:
        super().__init__()
        self.slope = activation_slope(activation, negative_slope)
        self.norm1 = GroupNorm(norm_groups, in_channels)
        self.conv1 = make_conv(in_channels, out_channels, 3, 1, weight_std)
        self.norm2 = GroupNorm(norm_groups, out_channels)
        self.conv2 = make_conv(out_channels, out_channels, 3, 1, weight_std)
        self.shortcut_norm: nn.GroupNorm | None = None
        self.shortcut_conv: nn.Conv3d | None = None
        if in_channels != out_channels:
            self.shortcut_norm = GroupNorm(norm_groups, in_channels)
            self.shortcut_conv = make_conv(in_channels, out_channels, 1, 1, weight_std)

    @property
    def modulated_channels(self) -> tuple[int, ...]:
        """Channels of each modulated activation, in the order `forward` takes their (scale, shift)."""
        c_in, c_out = self.norm1.num_channels, self.norm2.num_channels
        return (c_in, c_out) if self.shortcut_norm is None else (c_in, c_out, c_in)

    def forward(self, x: torch.Tensor, films: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """x: [M, C_in, D, H, W]; films: per `modulated_channels`, (scale, shift) [M, C] -> [M, C_out, D, H, W]."""
        out = self.conv1(_norm_film_act(x, self.norm1, films[0], self.slope))
        out = self.conv2(_norm_film_act(out, self.norm2, films[1], self.slope))
        if self.shortcut_conv is None:
            return out + x
        return out + self.shortcut_conv(_norm_film_act(x, self.shortcut_norm, films[2], self.slope))


class ConditionedDecoder(SkipDecoder):
    """The CNN decoder (x2 upsampling, skip merge, one residual block per level) whose residual blocks are
    task-modulated (`TaskAffine`). Skip gates, when the skip mode has them, are not conditioned."""

    def __init__(
        self,
        num_tasks: int,
        in_channels: int,
        skip_channels: tuple[int, ...],
        out_channels: tuple[int, ...],
        skip: SkipMode,
        norm_groups: int,
        activation: Activation,
        negative_slope: float,
        weight_std: bool,
    ) -> None:
        def make_block(c_in: int, c_out: int) -> nn.Module:
            return ConditionedResBlock(c_in, c_out, norm_groups, activation, negative_slope, weight_std)

        super().__init__(
            in_channels, skip_channels, out_channels, skip, norm_groups, activation, negative_slope, weight_std,
            make_block,
        )  # fmt: skip
        self.conditioning = nn.ModuleList(TaskAffine(num_tasks, block.modulated_channels) for block in self.blocks)

    def forward(
        self, x: torch.Tensor, skips: list[torch.Tensor], task_id: torch.Tensor, groups: int = 1
    ) -> torch.Tensor:
        """x: [G*B, C, d, h, w] group-major; skips: shallow first, [B, c_i, ...] each; task_id: [G*B] ->
        [G*B, c_out, D, H, W]."""
        for level, block in enumerate(self.blocks):
            x = block(self.merge_skip(level, x, skips, Rows.grid(groups)), self.conditioning[level](task_id))
        return x


class CondDec(UNetParts):
    """A shared encoder, a task-modulated decoder (`ConditionedDecoder`) and a static head."""

    def __init__(self, encoder: CNNEncoder, decoder: ConditionedDecoder, head: PreHead, num_tasks: int) -> None:
        super().__init__(encoder, decoder, head)
        self.num_tasks = num_tasks

    def _decode(self, x: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; task_id: [G*B] group-major -> logits [G*B, 2, D, H, W] (encoder once)."""
        groups = task_id.numel() // x.shape[0]
        skips, feature = self.encoder(x)
        start = feature if groups == 1 else feature.repeat(groups, 1, 1, 1, 1)
        return self.head(self.decoder(start, skips, task_id, groups))

    def forward(self, x: torch.Tensor, task_id: torch.Tensor | int | list[int]) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; task_id: [B] (or one int) -> logits [B, 2, D, H, W] (organ, tumor)."""
        return self._decode(x, as_task_tensor(task_id, x.shape[0], self.num_tasks, x.device))

    def forward_all_tasks(self, x: torch.Tensor, task_ids: torch.Tensor | list[int]) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; task_ids: [T] -> logits [B, T, 2, D, H, W] (encoder once, decoders batched)."""
        per_group = _all_tasks_layout(x, task_ids, self.num_tasks)
        groups = per_group.numel() // x.shape[0]
        return grouped(self._decode(x, per_group), groups).transpose(0, 1)

    def forward_channels(self, x: torch.Tensor, pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; pairs: P (task id, channel: 0 organ / 1 tumor) -> logits [B, P, D, H, W]; only
        the tasks some pair asks for are run (one decoder pass per requested task)."""
        return channels_from_all_tasks(self.forward_all_tasks, x, pairs, self.num_tasks)
