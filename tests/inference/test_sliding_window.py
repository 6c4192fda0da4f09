"""Sliding-window prediction: one window equals a direct forward; padding, stitching, Gaussian weights."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from ccq.errors import CCQError
from ccq.inference.sliding_window import (
    flip_tta,
    gaussian_importance,
    model_windows,
    predict_channels,
    predict_volume,
    sliding_window,
    window_starts,
)


class Pointwise(nn.Module):
    """A fake model whose logits at a voxel depend only on that voxel (and the task): any stitching of its
    windows must reproduce a direct evaluation on the whole volume exactly."""

    def __init__(self, patch=(8, 12, 10)) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.config = type("C", (), {"patch_size": patch})()
        self.seen: list[tuple[int, ...]] = []

    def forward_all_tasks(self, x: torch.Tensor, tasks: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape))
        t = tasks.float().view(1, -1, 1, 1, 1, 1)
        organ = x[:, None] * self.scale + t  # [B, T, 1, D, H, W]
        return torch.cat([organ, -organ], dim=2)


def test_one_window_equals_a_direct_forward(tiny_model) -> None:
    torch.manual_seed(1)
    volume = torch.randn(16, 32, 32)
    probs = predict_volume(tiny_model, volume, [0, 3])
    with torch.no_grad():
        direct = torch.sigmoid(tiny_model.forward_all_tasks(volume[None, None], [0, 3]))[0]
    assert probs.shape == (2, 2, 16, 32, 32)
    torch.testing.assert_close(probs, direct, atol=1e-5, rtol=1e-5)


def test_smaller_volume_is_padded_with_air_and_cropped_back(tiny_model) -> None:
    torch.manual_seed(2)
    volume = torch.randn(10, 20, 30)
    probs = predict_volume(tiny_model, volume, [1], pad_value=-1.0)
    canvas = torch.full((16, 32, 32), -1.0)
    canvas[3:13, 6:26, 1:31] = volume  # centred
    with torch.no_grad():
        direct = torch.sigmoid(tiny_model.forward_all_tasks(canvas[None, None], [1]))[0]
    assert probs.shape == (1, 2, 10, 20, 30)
    torch.testing.assert_close(probs, direct[:, :, 3:13, 6:26, 1:31], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(8, 12, 10), (21, 30, 17), (5, 40, 9)])
def test_stitching_reproduces_a_pointwise_model(shape) -> None:
    model = Pointwise()
    volume = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    probs = predict_volume(model, volume, [0, 2], batch_size=3)
    expected = torch.sigmoid(torch.from_numpy(volume))
    torch.testing.assert_close(probs[0, 0], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(probs[1, 0], torch.sigmoid(torch.from_numpy(volume) + 2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(probs[1, 1], 1 - probs[1, 0], atol=1e-5, rtol=1e-5)
    assert all(s[2:] == (8, 12, 10) for s in model.seen) and all(s[0] <= 3 for s in model.seen)


def _reference_stitch(model, volume: torch.Tensor, tasks, patch, overlap=0.5) -> torch.Tensor:
    """The plain way: one float32 accumulator for the whole volume and every task (no padding needed here)."""
    total = torch.zeros((len(tasks), 2, *volume.shape))
    norm = torch.zeros(volume.shape)
    w = gaussian_importance(patch)
    axes = [window_starts(n, p, overlap) for n, p in zip(volume.shape, patch, strict=True)]
    for z in axes[0]:
        for y in axes[1]:
            for x in axes[2]:
                region = (slice(z, z + patch[0]), slice(y, y + patch[1]), slice(x, x + patch[2]))
                with torch.no_grad():
                    p = torch.sigmoid(model.forward_all_tasks(volume[region][None, None], tasks))[0]
                total[(slice(None), slice(None), *region)] += p * w
                norm[region] += w
    return total / norm


def test_rolling_stitch_of_a_real_model_matches_a_full_accumulator(tiny_model) -> None:
    """Several window rows along every axis (z starts 0, 5, 10: rows overlapping by more than half)."""
    torch.manual_seed(3)
    volume = torch.randn(26, 32, 40)
    expected = _reference_stitch(tiny_model, volume, [2, 5], (16, 32, 32), overlap=0.6)
    probs = predict_volume(tiny_model, volume, [2, 5], overlap=0.6, batch_size=3)
    torch.testing.assert_close(probs, expected, atol=1e-5, rtol=1e-5)
    # Only some (task, channel) pairs, stored in float16: the same values to float16 precision.
    pairs = [(1, 1), (0, 0)]
    half = predict_channels(tiny_model, volume, [2, 5], pairs, overlap=0.6, dtype=torch.float16)
    assert half.shape == (2, 26, 32, 40) and half.dtype == torch.float16
    torch.testing.assert_close(half[0].float(), expected[1, 1], atol=1e-3, rtol=0)
    torch.testing.assert_close(half[1].float(), expected[0, 0], atol=1e-3, rtol=0)
    with pytest.raises(CCQError, match="channels="):
        predict_channels(tiny_model, volume, [2, 5], [(2, 0)])


def test_tta_of_a_pointwise_model_changes_nothing() -> None:
    volume = np.random.default_rng(1).normal(size=(9, 14, 11)).astype(np.float32)
    plain = predict_volume(Pointwise(), volume, [1])
    model = Pointwise()
    flipped = predict_volume(model, volume, [1], tta=True)
    torch.testing.assert_close(plain, flipped, atol=1e-5, rtol=1e-5)
    assert len(model.seen) == 8 * 8  # 8 windows (2 per axis) x 8 flips


def test_gaussian_importance() -> None:
    w = gaussian_importance((9, 17, 33))
    assert w.shape == (9, 17, 33) and float(w.max()) == pytest.approx(1.0) and float(w.min()) > 0
    assert float(w[4, 8, 16]) == pytest.approx(1.0)
    for axis in range(3):  # symmetric along each axis
        assert torch.equal(w, torch.flip(w, [axis]))
    line = w[4, 8, :].double()
    k = torch.arange(33, dtype=torch.float64) - 16
    expected = torch.exp(-0.5 * (k / (33 / 8)) ** 2).clamp_min(1e-6)
    torch.testing.assert_close(line, expected, atol=1e-6, rtol=1e-5)
    assert float(w[0, 0, 0]) == pytest.approx(1e-6)  # the floor: corners are never weightless


def test_window_starts_cover_the_axis_with_the_overlap() -> None:
    assert window_starts(48, 32, 0.5) == [0, 16]
    assert window_starts(96, 64, 0.5) == [0, 32]
    assert window_starts(20, 32, 0.5) == [0]
    for size, patch, overlap in [(100, 32, 0.5), (193, 64, 0.5), (77, 16, 0.25), (50, 49, 0.5)]:
        starts = window_starts(size, patch, overlap)
        assert starts[0] == 0 and starts[-1] == size - patch
        steps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        assert all(0 < s <= math.ceil(patch * (1 - overlap)) for s in steps)


def test_invalid_arguments() -> None:
    with pytest.raises(CCQError, match="overlap"):
        predict_volume(Pointwise(), np.zeros((8, 12, 10)), [0], overlap=1.0)
    with pytest.raises(CCQError, match="expected \\[D, H, W\\]"):
        predict_volume(Pointwise(), np.zeros((2, 8, 12, 10)), [0])


def _old_predict_channels(model, volume: torch.Tensor, tasks, pairs, patch, overlap, tta, pad_value, batch_size):
    """The stitcher as it was before it took a window function: `forward_all_tasks` for every task in each
    window (averaged over the 8 flips with ``tta``), sigmoid, the pairs picked, Gaussian-weighted sums over one
    full-volume accumulator (the same additions in the same order as the rolling stitch), padding cropped off."""
    from ccq.inference.sliding_window import FLIP_AXES

    shape = tuple(volume.shape)
    padded = tuple(max(n, p) for n, p in zip(shape, patch, strict=True))
    before = [(q - n) // 2 for n, q in zip(shape, padded, strict=True)]
    canvas = torch.full(padded, float(pad_value))
    canvas[tuple(slice(b, b + n) for b, n in zip(before, shape, strict=True))] = volume
    total = torch.zeros((len(pairs), *padded))
    norm = torch.zeros(padded)
    w = gaussian_importance(patch)
    ti, ci = torch.tensor([t for t, _ in pairs]), torch.tensor([c for _, c in pairs])
    starts = list(itertools.product(*[window_starts(n, p, overlap) for n, p in zip(padded, patch, strict=True)]))
    for first in range(0, len(starts), batch_size):
        chunk = starts[first : first + batch_size]
        regions = [tuple(slice(s, s + p) for s, p in zip(st, patch, strict=True)) for st in chunk]
        x = torch.stack([canvas[r] for r in regions])[:, None]
        with torch.no_grad():
            probs = None
            for axes in FLIP_AXES if tta else [()]:
                dims = [2 + a for a in axes]
                p = torch.sigmoid(model.forward_all_tasks(torch.flip(x, dims) if dims else x, tasks).float())
                p = torch.flip(p, [3 + a for a in axes]) if dims else p
                probs = p if probs is None else probs + p
            probs = probs / len(FLIP_AXES) if tta else probs
        weighted = probs[:, ti, ci].mul_(w)
        for r, p in zip(regions, weighted, strict=True):
            total[(slice(None), *r)] += p
            norm[r] += w
    out = total / norm
    return out[(slice(None), *(slice(b, b + n) for b, n in zip(before, shape, strict=True)))]


@pytest.mark.parametrize("tta", [False, True])
def test_the_window_function_path_gives_the_old_results(tiny_model, tta: bool) -> None:
    """`predict_volume` (every pair) is bit for bit the old stitcher; `predict_channels` with some pairs decodes
    only those (`forward_channels`: another batch size for the decoder, so float32 rounding may differ)."""
    torch.manual_seed(4)
    volume = torch.randn(12, 40, 36) if tta else torch.randn(26, 20, 45)  # padded on some axes, 2+ windows on others
    tasks, patch = [1, 4, 6], (16, 32, 32)
    every = [(t, c) for t in range(3) for c in range(2)]
    expected = _old_predict_channels(tiny_model, volume, tasks, every, patch, 0.5, tta, -0.8, 2)
    got = predict_volume(tiny_model, volume, tasks, overlap=0.5, tta=tta, pad_value=-0.8, batch_size=2)
    assert got.shape == (3, 2, *volume.shape)
    assert torch.equal(got.view(6, *volume.shape), expected)
    direct = sliding_window(volume, (flip_tta if tta else lambda f: f)(model_windows(tiny_model, tasks)), patch,
                            pad_value=-0.8, batch_size=2)  # fmt: skip
    assert torch.equal(direct, expected)
    pairs = [(2, 0), (0, 1), (1, 1)]  # what MOTS labels of colon, liver and lung: three of the six
    some = predict_channels(tiny_model, volume, tasks, pairs, tta=tta, pad_value=-0.8, batch_size=2)
    torch.testing.assert_close(some, expected[[4, 1, 3]], atol=1e-5, rtol=0)


def test_model_windows_decode_only_the_requested_pairs(tiny_model, monkeypatch) -> None:
    seen: list[list[tuple[int, int]]] = []
    original = tiny_model.forward_channels

    def spy(x, pairs):
        seen.append(list(pairs))
        return original(x, pairs)

    monkeypatch.setattr(tiny_model, "forward_channels", spy)
    out = predict_channels(tiny_model, torch.zeros(16, 32, 32), [4, 6], [(0, 1), (1, 0)])
    assert out.shape == (2, 16, 32, 32) and seen == [[(4, 1), (6, 0)]]


def test_sliding_window_takes_any_window_function() -> None:
    """MONAI's contract: windows [N, 1, d, h, w] -> [N, C, d, h, w]; a wrong shape is a one-line error."""
    volume = torch.from_numpy(np.random.default_rng(2).normal(size=(11, 20, 13)).astype(np.float32))
    calls: list[int] = []

    def three_channels(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return torch.cat([x, 2 * x, x**2], dim=1)

    out = sliding_window(volume, three_channels, (8, 12, 10), batch_size=4)
    torch.testing.assert_close(out, torch.stack([volume, 2 * volume, volume**2]), atol=1e-5, rtol=1e-5)
    assert sum(calls) == 2 * 3 * 2 and max(calls) == 4
    flipped = sliding_window(volume, flip_tta(three_channels), (8, 12, 10), batch_size=4)
    torch.testing.assert_close(flipped, out, atol=1e-5, rtol=1e-5)
    with pytest.raises(CCQError, match=r"window function gave shape \(1, 2, 12, 10\) for 1 windows of \(8, 12, 10\)"):
        sliding_window(volume, lambda x: x[:, :, 0].expand(-1, 2, -1, -1), (8, 12, 10))
