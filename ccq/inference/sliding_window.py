"""Sliding-window prediction of whole prepared volumes: Gaussian-weighted windows at 50% overlap (the official
settings: docs/architecture.md#inference-and-evaluation).

`sliding_window` places the windows and stitches what a window function gives for them (a batch of windows
[N, 1, d, h, w] -> probabilities [N, C, d, h, w], the contract of MONAI's ``sliding_window_inference``): a ccq
model (`model_windows`: every requested task in one pass, so all tasks share one encoder pass, and only the
requested (task, channel) pairs decoded), an exported graph (`ccq.export`), flip test-time augmentation around
either (`flip_tta`). Windows are stitched as sigmoid probabilities (the official model outputs probabilities and
averages those), weighted by a Gaussian importance map (sigma = patch / 8) so that window borders, which see less
context, count less.

Stitching happens on the CPU, whatever device runs the model, and needs little memory: windows go in z-major
order, so once a row of windows (same z start) is done, the slices before the next row's start are final. The
float32 sums are kept only for the slices one row of windows covers (patch depth x the whole H x W); finished
slices go to the output in its own dtype (float16 for `ccq predict`), only for the (task, channel) pairs asked for.

Written here rather than with MONAI's `sliding_window_inference` because we need the rolling stitch (a full
CT's float32 sums of every channel are large), padding with the windowed value of air rather than 0, and to keep
`ccq predict` from paying MONAI's multi-second import; the window placement follows nnU-Net (evenly spaced
windows, the last one flush with the volume's end).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ccq.errors import CCQError

FLIP_AXES: tuple[tuple[int, ...], ...] = tuple(axes for r in range(4) for axes in itertools.combinations((0, 1, 2), r))
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
    if isinstance(image, np.ndarray):
        array = np.asarray(image, dtype=np.float32)
        # Windows are only read (padding builds a new canvas), so a writable array is used as it is; a read-only
        # one (a prepared cache's memory map) is copied, since torch refuses to wrap it.
        t = torch.from_numpy(array if array.flags.writeable else array.copy())
    else:
        t = image
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3:
        raise CCQError(f"predict_volume: image of shape {tuple(t.shape)}; expected [D, H, W] or [1, D, H, W]")
    return t.float()


class _RollingStitch:
    """Weighted sums of the window probabilities over the slices one row of windows covers, flushed into ``out``
    (the unpadded volume) as soon as no later window can touch them."""

    def __init__(self, out: torch.Tensor, padded_shape: tuple[int, ...], before: list[int], depth: int) -> None:
        self.out, self.before, self.depth = out, before, depth
        channels = out.shape[0]
        self.total = torch.zeros((channels, depth, *padded_shape[1:]), dtype=torch.float32)
        self.norm = torch.zeros((depth, *padded_shape[1:]), dtype=torch.float32)
        self.base = 0  # padded z index of self.total[:, 0]

    def add(self, start: tuple[int, int, int], size: tuple[int, int, int], p: torch.Tensor, w: torch.Tensor) -> None:
        """p: [C, d, h, w] weighted probabilities of the window at ``start``; w: its weights [d, h, w]."""
        if start[0] > self.base:
            self.flush(start[0])
        z = start[0] - self.base
        region = (slice(z, z + size[0]), slice(start[1], start[1] + size[1]), slice(start[2], start[2] + size[2]))
        self.total[(slice(None), *region)] += p
        self.norm[region] += w

    def flush(self, upto: int) -> None:
        """Write the final padded slices [base, upto) into ``out`` and slide the sums forward.

        Channel by channel, so the temporaries are one channel's slab, not all channels' (on a full CT at the
        official spacing, a slab of all 11 MOTS channels is about 400 MB)."""
        n = upto - self.base
        d, h, w = self.out.shape[1:]
        bz, by, bx = self.before
        lo, hi = max(self.base, bz), min(upto, bz + d)
        keep = self.depth - n
        for c in range(self.total.shape[0]):
            if hi > lo:
                a, b = lo - self.base, hi - self.base
                part = self.total[c, a:b, by : by + h, bx : bx + w] / self.norm[a:b, by : by + h, bx : bx + w]
                self.out[c, lo - bz : hi - bz] = part
            if keep > 0:
                self.total[c, :keep] = self.total[c, n:].clone()
            self.total[c, max(keep, 0) :] = 0
        if keep > 0:
            self.norm[:keep] = self.norm[n:].clone()
        self.norm[max(keep, 0) :] = 0
        self.base = upto


WindowFunction = Callable[[torch.Tensor], torch.Tensor]
"""A batch of windows [N, 1, d, h, w] -> probabilities [N, C, d, h, w] (any float dtype, on the windows' device):
the contract of MONAI's ``sliding_window_inference`` predictor. C is the same for every call."""


def flip_tta(window_fn: WindowFunction) -> WindowFunction:
    """Test-time augmentation of a window function: the mean of its outputs over the 8 flips of (z, y, x), each
    flipped back (8 calls per batch)."""

    def averaged(x: torch.Tensor) -> torch.Tensor:
        total = None
        for axes in FLIP_AXES:
            dims = [2 + a for a in axes]
            p = window_fn(torch.flip(x, dims)) if dims else window_fn(x)
            p = torch.flip(p, dims) if dims else p
            total = p if total is None else total + p
        return total / len(FLIP_AXES)

    return averaged


def model_windows(
    model: nn.Module,
    task_ids: Sequence[int] | torch.Tensor,
    channels: Sequence[tuple[int, int]] | None = None,
) -> WindowFunction:
    """The window function of a ccq model: sigmoid probabilities of the (index into ``task_ids``, channel 0 organ
    / 1 tumor) pairs ``channels`` (default every pair, task by task), float32 [N, C, d, h, w]. Puts ``model`` in
    eval mode.

    A model with ``forward_channels(x, [(task id, channel), ...])`` (every ccq model) decodes only those pairs;
    one with only ``forward_all_tasks(x, tasks [T]) -> [N, T, 2, ...]`` runs every task and keeps the pairs."""
    tasks = torch.as_tensor(task_ids, dtype=torch.long).reshape(-1)
    if tasks.numel() == 0:
        raise CCQError("predict_volume: no task ids given")
    if channels is None:
        channels = [(t, c) for t in range(tasks.numel()) for c in range(2)]
    pairs = [(int(t), int(c)) for t, c in channels]
    if not pairs or any(not (0 <= t < tasks.numel() and c in (0, 1)) for t, c in pairs):
        raise CCQError(f"channels={list(channels)!r}: expected (task index < {tasks.numel()}, 0 or 1) pairs")
    model.eval()
    if hasattr(model, "forward_channels"):
        requested = [(int(tasks[t]), c) for t, c in pairs]
        return lambda x: torch.sigmoid(model.forward_channels(x, requested).float())
    task_index, channel_index = [t for t, _ in pairs], [c for _, c in pairs]

    def all_tasks(x: torch.Tensor) -> torch.Tensor:
        probs = torch.sigmoid(model.forward_all_tasks(x, tasks.to(x.device)).float())  # [N, T, 2, d, h, w]
        return probs[:, task_index, channel_index]

    return all_tasks


def _check_window_options(overlap: float, batch_size: int, patch_size: Sequence[int]) -> tuple[int, ...]:
    if not 0.0 <= overlap < 1.0:
        raise CCQError(f"overlap={overlap}: expected a fraction in [0, 1)")
    if batch_size < 1:
        raise CCQError(f"batch_size={batch_size}: expected at least 1 window per pass")
    patch = tuple(int(p) for p in patch_size)
    if len(patch) != 3 or min(patch) < 1:
        raise CCQError(f"patch_size={patch_size!r}: expected three positive integers (D, H, W)")
    return patch


@torch.inference_mode()
def sliding_window(
    image: np.ndarray | torch.Tensor,
    window_fn: WindowFunction,
    patch_size: Sequence[int],
    *,
    overlap: float = 0.5,
    sigma_scale: float = 0.125,
    batch_size: int = 1,
    pad_value: float = -1.0,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
) -> torch.Tensor:
    """Run ``window_fn`` over a whole volume window by window and stitch its outputs.

    Args:
        image: the prepared (reoriented, resampled, windowed) volume [D, H, W] (or [1, D, H, W]).
        window_fn: windows [N, 1, d, h, w] -> probabilities [N, C, d, h, w] (`WindowFunction`; see
            `model_windows`, `flip_tta`). Any per-voxel score that may be averaged works the same way.
        patch_size: window size (d, h, w).
        overlap: fraction of a window shared with its neighbour (0.5 official).
        sigma_scale: Gaussian sigma as a fraction of the patch (1/8 official).
        batch_size: windows per call of ``window_fn``.
        pad_value: value of the padding when the volume is smaller than the patch (air after windowing: -1
            for the official HU window).
        device: where the windows are sent before ``window_fn`` (None: stay on the CPU). Stitching happens on
            the CPU.
        dtype: dtype of the result (the sums are float32 either way).
        progress: show a progress bar over the windows.

    Returns:
        CPU tensor [C, D, H, W] of ``dtype``, the spatial shape of ``image``.
    """
    patch = _check_window_options(overlap, batch_size, patch_size)
    volume = _as_volume(image)
    device = torch.device("cpu") if device is None else torch.device(device)

    # Pad (centred) up to the patch where the volume is smaller; cropped off again when flushing.
    shape = tuple(volume.shape)
    padded_shape = tuple(max(n, p) for n, p in zip(shape, patch, strict=True))
    before = [(q - n) // 2 for n, q in zip(shape, padded_shape, strict=True)]
    if padded_shape != shape:
        canvas = torch.full(padded_shape, float(pad_value), dtype=volume.dtype)
        canvas[tuple(slice(b, b + n) for b, n in zip(before, shape, strict=True))] = volume
        volume = canvas

    axes = [window_starts(n, p, overlap) for n, p in zip(padded_shape, patch, strict=True)]
    starts = list(itertools.product(*axes))  # z-major: what the rolling stitch relies on
    weights = gaussian_importance(patch, sigma_scale).to(device)
    weights_cpu = weights.cpu()
    stitch: _RollingStitch | None = None  # made at the first output, which tells the channel count
    bar = tqdm(total=len(starts), desc="windows", unit="win", disable=not progress, leave=False)
    try:
        for first in range(0, len(starts), batch_size):
            chunk = starts[first : first + batch_size]
            x = torch.stack([volume[tuple(slice(s, s + p) for s, p in zip(st, patch, strict=True))] for st in chunk])
            probs = window_fn(x[:, None].to(device))
            if probs.ndim != 5 or probs.shape[0] != len(chunk) or tuple(probs.shape[2:]) != patch:
                raise CCQError(
                    f"sliding_window: the window function gave shape {tuple(probs.shape)} for {len(chunk)} "
                    f"windows of {patch}; expected [N, C, *patch]"
                )
            if stitch is None:
                out = torch.empty((probs.shape[1], *shape), dtype=dtype)
                stitch = _RollingStitch(out, padded_shape, before, patch[0])
            weighted = (probs.float() * weights).cpu()  # [N, C, d, h, w]
            del probs
            for st, p in zip(chunk, weighted, strict=True):
                stitch.add(st, patch, p, weights_cpu)
            bar.update(len(chunk))
    finally:
        bar.close()
    assert stitch is not None  # there is always at least one window
    stitch.flush(stitch.base + patch[0])
    return stitch.out


def predict_channels(
    model: nn.Module,
    image: np.ndarray | torch.Tensor,
    task_ids: Sequence[int] | torch.Tensor,
    channels: Sequence[tuple[int, int]] | None = None,
    patch_size: Sequence[int] | None = None,
    *,
    overlap: float = 0.5,
    sigma_scale: float = 0.125,
    tta: bool = False,
    batch_size: int = 1,
    pad_value: float = -1.0,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
) -> torch.Tensor:
    """Probabilities of chosen (task, channel) pairs for a whole prepared volume: `sliding_window` over
    `model_windows` (wrapped in `flip_tta` with ``tta``).

    Args:
        model: a ccq model: anything with ``forward_channels(x [B, 1, D, H, W], [(task id, channel), ...])``
            returning logits [B, P, D, H, W] (only the requested pairs are decoded), or with
            ``forward_all_tasks(x, tasks [T])`` returning logits [B, T, 2, D, H, W]; it is put in eval mode.
        image: the prepared (reoriented, resampled, windowed) volume [D, H, W].
        task_ids: the T task ids every window is run for (in one pass).
        channels: the (index into ``task_ids``, channel 0 organ / 1 tumor) pairs to keep, in output order;
            default every pair, task by task.
        patch_size: window size (D, H, W); default the model's ``config.patch_size`` (the only size a CCQ
            model accepts).
        overlap: fraction of a window shared with its neighbour (0.5 official).
        sigma_scale: Gaussian sigma as a fraction of the patch (1/8 official).
        tta: average over the 8 flips of the three axes (8x slower).
        batch_size: windows per forward pass.
        pad_value: value of the padding when the volume is smaller than the patch (air after windowing: -1
            for the official HU window).
        device: where the model runs (default: the model's device). Stitching happens on the CPU.
        dtype: dtype of the result (the sums are float32 either way).
        progress: show a progress bar over the windows.

    Returns:
        CPU tensor [C, D, H, W] of ``dtype``, C = len(channels), the spatial shape of ``image``.
    """
    if patch_size is None:
        config = getattr(model, "config", None)
        if config is None:
            raise CCQError("predict_volume: give patch_size (the model has no .config)")
        patch_size = config.patch_size
    _check_window_options(overlap, batch_size, patch_size)
    volume = _as_volume(image)
    window_fn = model_windows(model, task_ids, channels)
    if device is None:
        device = next(model.parameters()).device
    return sliding_window(
        volume, flip_tta(window_fn) if tta else window_fn, patch_size, overlap=overlap, sigma_scale=sigma_scale,
        batch_size=batch_size, pad_value=pad_value, device=device, dtype=dtype, progress=progress,
    )  # fmt: skip


def predict_volume(
    model: nn.Module,
    image: np.ndarray | torch.Tensor,
    task_ids: Sequence[int] | torch.Tensor,
    patch_size: Sequence[int] | None = None,
    **options,
) -> torch.Tensor:
    """Probabilities of every (task, channel): float32 CPU tensor [T, 2, D, H, W] (organ, tumor per task), the
    shape of ``image``. Arguments and ``options`` as `predict_channels`."""
    t = torch.as_tensor(task_ids).numel()
    probs = predict_channels(model, image, task_ids, None, patch_size, **options)
    return probs.view(t, 2, *probs.shape[1:])
