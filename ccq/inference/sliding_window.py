"""Sliding-window prediction of whole prepared volumes (DESIGN §5): Gaussian-weighted windows at 50% overlap.

Every window runs `model.forward_all_tasks` once, so all requested tasks share one encoder pass. Windows are
stitched as sigmoid probabilities (the official model outputs probabilities and averages those), weighted by
a Gaussian importance map (sigma = patch / 8) so that window borders, which see less context, count less.

Written here rather than with MONAI's `sliding_window_inference` because we need the stitching per task
group, padding with the windowed value of air rather than 0, flip test-time augmentation inside each window,
and to keep `ccq predict` from paying MONAI's multi-second import; the window placement follows nnU-Net
(evenly spaced windows, the last one flush with the volume's end).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ccq.errors import CCQError

FLIP_AXES: tuple[tuple[int, ...], ...] = tuple(
    axes for r in range(4) for axes in itertools.combinations((0, 1, 2), r)
)
"""The 8 flip combinations of (z, y, x) used by test-time augmentation (the identity first)."""


def gaussian_importance(
    patch_size: Sequence[int], sigma_scale: float = 0.125, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """[D, H, W] weights: a separable Gaussian centred on the patch, sigma = sigma_scale * patch per axis,
    scaled to a maximum of 1 and floored at 1e-6 (never exactly zero, so every voxel gets a weight)."""
    if sigma_scale <= 0:
        raise CCQError(f"sigma_scale={sigma_scale}: expected a positive fraction of the patch size")
    axes = []
    for n in patch_size:
        x = torch.arange(int(n), dtype=torch.float64) - (int(n) - 1) / 2.0
        sigma = sigma_scale * int(n)
        axes.append(torch.exp(-0.5 * (x / sigma) ** 2))
    weights = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    weights = weights / weights.max()
    return weights.clamp_min(1e-6).to(dtype)


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start offsets of the windows along one axis: evenly spaced, first at 0, last flush with the end, and
    consecutive windows overlapping by at least ``overlap`` of the patch. ``size`` must be >= ``patch``."""
    if size <= patch:
        return [0]
    step = max(1.0, patch * (1.0 - overlap))
    count = math.ceil((size - patch) / step) + 1
    return sorted({int(round(v)) for v in np.linspace(0, size - patch, count)})


def _as_volume(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    # A copy: prepared volumes are read-only memory maps, and padding writes into the tensor.
    t = torch.from_numpy(np.array(image, dtype=np.float32)) if isinstance(image, np.ndarray) else image
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3:
        raise CCQError(f"predict_volume: image of shape {tuple(t.shape)}; expected [D, H, W] or [1, D, H, W]")
    return t.float()


def _window_probabilities(model: nn.Module, x: torch.Tensor, tasks: torch.Tensor, tta: bool) -> torch.Tensor:
    """x: [N, 1, d, h, w] -> probabilities [N, T, 2, d, h, w] (averaged over the 8 flips with ``tta``)."""
    if not tta:
        return torch.sigmoid(model.forward_all_tasks(x, tasks).float())
    total = None
    for axes in FLIP_AXES:
        dims = [2 + a for a in axes]
        xi = torch.flip(x, dims) if dims else x
        p = torch.sigmoid(model.forward_all_tasks(xi, tasks).float())
        p = torch.flip(p, [3 + a for a in axes]) if dims else p  # output has the extra T axis
        total = p if total is None else total + p
    return total / len(FLIP_AXES)


@torch.inference_mode()
def predict_volume(
    model: nn.Module,
    image: np.ndarray | torch.Tensor,
    task_ids: Sequence[int] | torch.Tensor,
    patch_size: Sequence[int] | None = None,
    *,
    overlap: float = 0.5,
    sigma_scale: float = 0.125,
    tta: bool = False,
    batch_size: int = 1,
    pad_value: float = -1.0,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Probabilities of every (task, channel) for a whole prepared volume.

    Args:
        model: a CCQNet / DoDNet: anything with ``forward_all_tasks(x [B, 1, D, H, W], tasks [T])`` returning
            logits [B, T, 2, D, H, W]; it is put in eval mode.
        image: the prepared (reoriented, resampled, windowed) volume [D, H, W].
        task_ids: the T task ids to predict.
        patch_size: window size (D, H, W); default the model's ``config.patch_size`` (the only size a CCQ
            model accepts).
        overlap: fraction of a window shared with its neighbour (0.5 official).
        sigma_scale: Gaussian sigma as a fraction of the patch (1/8 official).
        tta: average over the 8 flips of the three axes (8x slower).
        batch_size: windows per forward pass.
        pad_value: value of the padding when the volume is smaller than the patch (air after windowing: -1
            for the official HU window).
        device: where the model runs (default: the model's device). Stitching happens on the CPU.
        progress: show a progress bar over the windows.

    Returns:
        float32 CPU tensor [T, 2, D, H, W] (organ, tumor probabilities per task), the shape of ``image``.
    """
    if not 0.0 <= overlap < 1.0:
        raise CCQError(f"overlap={overlap}: expected a fraction in [0, 1)")
    if batch_size < 1:
        raise CCQError(f"batch_size={batch_size}: expected at least 1 window per pass")
    if patch_size is None:
        config = getattr(model, "config", None)
        if config is None:
            raise CCQError("predict_volume: give patch_size (the model has no .config)")
        patch_size = config.patch_size
    patch = tuple(int(p) for p in patch_size)
    if len(patch) != 3 or min(patch) < 1:
        raise CCQError(f"patch_size={patch_size!r}: expected three positive integers (D, H, W)")
    volume = _as_volume(image)
    if device is None:
        device = next(model.parameters()).device
    tasks = torch.as_tensor(task_ids, dtype=torch.long).reshape(-1)
    if tasks.numel() == 0:
        raise CCQError("predict_volume: no task ids given")

    # Pad (centred) up to the patch where the volume is smaller; cropped off again at the end.
    shape = tuple(volume.shape)
    padded_shape = tuple(max(n, p) for n, p in zip(shape, patch, strict=True))
    before = [(q - n) // 2 for n, q in zip(shape, padded_shape, strict=True)]
    if padded_shape != shape:
        canvas = torch.full(padded_shape, float(pad_value), dtype=volume.dtype)
        canvas[tuple(slice(b, b + n) for b, n in zip(before, shape, strict=True))] = volume
        volume = canvas

    starts = list(itertools.product(*(window_starts(n, p, overlap) for n, p in zip(padded_shape, patch,
                                                                                    strict=True))))
    weights = gaussian_importance(patch, sigma_scale)
    total = torch.zeros((tasks.numel(), 2, *padded_shape), dtype=torch.float32)
    norm = torch.zeros(padded_shape, dtype=torch.float32)
    model.eval()
    tasks_dev = tasks.to(device)
    bar = tqdm(total=len(starts), desc="windows", unit="win", disable=not progress, leave=False)
    try:
        for first in range(0, len(starts), batch_size):
            chunk = starts[first:first + batch_size]
            regions = [tuple(slice(s, s + p) for s, p in zip(st, patch, strict=True)) for st in chunk]
            x = torch.stack([volume[r] for r in regions])[:, None].to(device)
            probs = _window_probabilities(model, x, tasks_dev, tta).cpu()  # [N, T, 2, d, h, w]
            for region, p in zip(regions, probs, strict=True):
                total[(slice(None), slice(None), *region)] += p * weights
                norm[region] += weights
            bar.update(len(chunk))
    finally:
        bar.close()
    total /= norm
    crop = tuple(slice(b, b + n) for b, n in zip(before, shape, strict=True))
    return total[(slice(None), slice(None), *crop)].contiguous()
