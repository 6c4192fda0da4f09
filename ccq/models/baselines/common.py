"""What the Table 1 baselines share: a plain encoder-decoder-head network, the parts built from a configuration,
and the routing of a batch's samples to their tasks' parameters."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ccq.models.config import ModelConfig
from ccq.models.decoder import SkipDecoder
from ccq.models.encoder import CNNEncoder
from ccq.models.head import PreHead
from ccq.models.parts import build_encoder

__all__ = ["SegmentationNet", "build_encoder", "build_head", "run_per_task", "select", "task_groups"]


def build_head(c: ModelConfig, out_channels: int) -> PreHead:
    """A static segmentation head: GN -> act -> 1x1x1 conv (with bias) to `out_channels` logits."""
    return PreHead(c.decoder_channels[-1], out_channels, c.norm_groups, c.activation, c.negative_slope)


class UNetParts(nn.Module):
    """The parts of a baseline's residual 3D U-Net: encoder, decoder, static head (subclasses say how they run
    and what else they hold)."""

    def __init__(self, encoder: CNNEncoder, decoder: SkipDecoder, head: PreHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.head = head

    def unconditioned(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, D, H, W] -> the head's logits [B, out_channels, D, H, W], the decoder started from the
        bottleneck F (no task input)."""
        skips, feature = self.encoder(x)
        return self.head(self.decoder(feature, skips))


class SegmentationNet(UNetParts):
    """A residual 3D U-Net: encoder, decoder started from the bottleneck F, static head."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, D, H, W] -> logits [B, out_channels, D, H, W]."""
        return self.unconditioned(x)


def task_groups(task_ids: torch.Tensor) -> list[tuple[int, torch.Tensor | None]]:
    """task_ids: [B] -> [(task, indices of its samples [n])], one entry per task present, tasks ascending; the
    indices are None when the whole batch belongs to one task (no gather needed).

    On the meta device (parameter and FLOP counting) ids have no values: the whole batch then goes to task 0,
    which is what the counting asks for (one patch of task 0).
    """
    if task_ids.device.type == "meta":
        return [(0, None)]
    # One device-to-host copy per step (the distinct tasks); the indices stay on the device.
    tasks = torch.unique(task_ids).tolist()
    if len(tasks) == 1:
        return [(tasks[0], None)]
    return [(t, torch.nonzero(task_ids == t).flatten()) for t in tasks]


def run_per_task(
    groups: list[tuple[int, torch.Tensor | None]],
    run: Callable[[int, torch.Tensor | None], torch.Tensor],
) -> torch.Tensor:
    """Apply `run(task, indices)` -> [n, ...] to every group of `task_groups` and put the results back in batch
    order -> [B, ...]."""
    if len(groups) == 1:
        return run(*groups[0])
    outputs = [run(task, index) for task, index in groups]
    order = torch.cat([index for _, index in groups if index is not None])
    # Inverse of the permutation that sorted the batch by task (indexing keeps the autograd graph).
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    return torch.cat(outputs)[inverse]


def select(x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    """x[index] along the batch axis; x itself for None (the whole batch)."""
    return x if index is None else x.index_select(0, index)
