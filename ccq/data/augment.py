"""Training-time augmentation of one patch (the official list: docs/architecture.md#training), on the CPU.

Each sample first draws a small `AugmentationPlan` (which transforms fire, with which parameters) from its own
random generator, then `apply_plan` executes it. Keeping the two apart makes the stream reproducible from
(seed, rank, sample index) alone, and lets the tests check probabilities on thousands of plans for free.

The random scale is special: the sampler crops a region ``scale`` times the patch and `resize_patch` brings
it back to the patch size (so zooming never reads outside the volume more than a plain crop would).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F

from ccq.utils.config import Config

_PROBS = ("scale_p", "flip_p", "noise_p", "blur_p", "brightness_p", "contrast_p", "lowres_p", "gamma_p")
_RANGES = (
    "scale_range", "noise_variance", "blur_sigma", "brightness_range", "contrast_range", "lowres_zoom",
    "gamma_range",
)  # fmt: skip


@dataclass(frozen=True)
class AugmentationConfig(Config):
    """Probabilities and ranges of the official augmentation; ``enabled=False`` turns all of it off."""

    enabled: bool = True
    scale_p: float = 0.2
    scale_range: tuple[float, float] = (0.7, 1.4)
    """Zoom factor of the crop region (isotropic); > 1 crops more context, i.e. zooms out."""
    flip_p: float = 0.5
    """Per axis, on each of ``flip_axes`` (0 = z, 1 = y, 2 = x)."""
    flip_axes: tuple[int, ...] = (0, 1, 2)
    noise_p: float = 0.1
    noise_variance: tuple[float, float] = (0.0, 0.1)
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    """Gaussian sigma in voxels."""
    brightness_p: float = 0.15
    brightness_range: tuple[float, float] = (0.75, 1.25)
    contrast_p: float = 0.15
    contrast_range: tuple[float, float] = (0.75, 1.25)
    lowres_p: float = 0.25
    lowres_zoom: tuple[float, float] = (0.5, 1.0)
    gamma_p: float = 0.15
    gamma_range: tuple[float, float] = (0.7, 1.5)

    config_name = "augmentation"

    def _validate(self) -> None:
        for name in _PROBS:
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                self._fail(name, "a probability in [0, 1]")
            object.__setattr__(self, name, value)
        for name in _RANGES:
            lo, hi = (float(v) for v in getattr(self, name))
            if not (0.0 <= lo <= hi) or (name != "noise_variance" and lo <= 0):
                self._fail(name, "[low, high] with 0 < low <= high" if name != "noise_variance" else "0 <= low <= high")
            object.__setattr__(self, name, (lo, hi))
        if any(a not in (0, 1, 2) for a in self.flip_axes) or len(set(self.flip_axes)) != len(self.flip_axes):
            self._fail("flip_axes", "distinct axes among 0, 1, 2")
        object.__setattr__(self, "flip_axes", tuple(int(a) for a in self.flip_axes))


@dataclass(frozen=True)
class AugmentationPlan:
    """What happens to one sample; None = that transform does not fire."""

    scale: float | None = None
    noise_sigma: float | None = None
    noise_seed: int = 0
    blur_sigma: float | None = None
    brightness: float | None = None
    contrast: float | None = None
    lowres_zoom: float | None = None
    gamma: float | None = None
    flips: tuple[bool, bool, bool] = (False, False, False)


def draw_plan(rng: np.random.Generator, config: AugmentationConfig) -> AugmentationPlan:
    """Decide every transform for one sample. Always draws the same count of numbers, so a change in one
    probability does not shift the parameters of the others."""
    if not config.enabled:
        return AugmentationPlan()
    u = rng.random(7 + 1 + 3)  # a decision per transform, a coin for gamma's side, one per flip axis
    p = rng.random(7)  # one parameter per transform

    def pick(i: int, prob: float, lo_hi: tuple[float, float]) -> float | None:
        lo, hi = lo_hi
        return lo + (hi - lo) * float(p[i]) if u[i] < prob else None

    variance = pick(1, config.noise_p, config.noise_variance)
    gamma = None
    if u[6] < config.gamma_p:
        # Half the time below 1, half above (when the range straddles 1): gamma does not brighten on average.
        lo, hi = config.gamma_range
        if lo < 1.0 < hi:
            lo, hi = (lo, 1.0) if u[7] < 0.5 else (1.0, hi)
        gamma = lo + (hi - lo) * float(p[6])
    return AugmentationPlan(
        scale=pick(0, config.scale_p, config.scale_range),
        noise_sigma=None if variance is None else float(np.sqrt(variance)),
        noise_seed=int(rng.integers(2**31)),
        blur_sigma=pick(2, config.blur_p, config.blur_sigma),
        brightness=pick(3, config.brightness_p, config.brightness_range),
        contrast=pick(4, config.contrast_p, config.contrast_range),
        lowres_zoom=pick(5, config.lowres_p, config.lowres_zoom),
        gamma=gamma,
        flips=tuple(bool(u[8 + a] < config.flip_p and a in config.flip_axes) for a in range(3)),  # type: ignore[arg-type]
    )


def apply_plan(plan: AugmentationPlan, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intensity transforms on ``image`` [D, H, W], then flips on both ``image`` and ``label`` [..., D, H, W].

    (The scale is not applied here: see `resize_patch`.) Returns new contiguous arrays.
    """
    img = np.array(image, dtype=np.float32, copy=True)
    if plan.noise_sigma is not None:
        noise = np.random.default_rng(plan.noise_seed).standard_normal(img.shape, dtype=np.float32)
        img += noise * np.float32(plan.noise_sigma)
    if plan.blur_sigma is not None:
        img = ndi.gaussian_filter(img, plan.blur_sigma, truncate=3.0)
    if plan.brightness is not None:
        img *= np.float32(plan.brightness)
    if plan.contrast is not None:
        lo, hi, mean = img.min(), img.max(), img.mean()
        img = np.clip((img - mean) * np.float32(plan.contrast) + mean, lo, hi)
    if plan.lowres_zoom is not None:
        img = simulate_low_resolution(img, plan.lowres_zoom)
    if plan.gamma is not None:
        img = _gamma(img, plan.gamma)
    flip_axes = tuple(a for a, f in enumerate(plan.flips) if f)
    if flip_axes:
        img = np.flip(img, flip_axes)
        label = np.flip(label, tuple(label.ndim - 3 + a for a in flip_axes))
    return np.ascontiguousarray(img), np.ascontiguousarray(label)


def _gamma(img: np.ndarray, gamma: float) -> np.ndarray:
    lo, hi = float(img.min()), float(img.max())
    if hi - lo < 1e-7:
        return img
    unit = (img - lo) / (hi - lo)
    return (np.power(unit, np.float32(gamma)) * (hi - lo) + lo).astype(np.float32)


def simulate_low_resolution(img: np.ndarray, zoom: float) -> np.ndarray:
    """Downsample by ``zoom`` (nearest), then back up (linear): the look of a thicker-slice, coarser scan."""
    size = tuple(max(1, int(round(n * zoom))) for n in img.shape)
    t = torch.from_numpy(img)[None, None]
    low = F.interpolate(t, size=size, mode="nearest-exact")
    return F.interpolate(low, size=img.shape, mode="trilinear", align_corners=False)[0, 0].numpy()


def crop_size(patch_size: tuple[int, int, int], scale: float | None) -> tuple[int, int, int]:
    """The region to crop so that resizing it to ``patch_size`` zooms by ``scale``."""
    if scale is None:
        return patch_size
    return tuple(max(1, int(round(p * scale))) for p in patch_size)  # type: ignore[return-value]


def resize_patch(
    image: np.ndarray, label: np.ndarray, patch_size: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Resize a cropped region to ``patch_size``: image linear, label map nearest (same voxel centres)."""
    if tuple(image.shape) == tuple(patch_size):
        return image, label
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    img = F.interpolate(t, size=patch_size, mode="trilinear", align_corners=False)[0, 0].numpy()
    for axis, (n_in, n_out) in enumerate(zip(label.shape, patch_size, strict=True)):
        index = np.clip(np.floor((np.arange(n_out) + 0.5) * n_in / n_out), 0, n_in - 1).astype(np.intp)
        label = np.take(label, index, axis=axis)
    return img, label
