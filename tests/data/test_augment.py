"""Augmentation: official probabilities, parameters within range, image and label stay aligned."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ccq.data.augment import (
    AugmentationConfig,
    AugmentationPlan,
    apply_plan,
    crop_size,
    draw_plan,
    resize_patch,
)
from ccq.errors import CCQError

CONFIG = AugmentationConfig()


def _image_and_label(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = np.zeros((12, 20, 24), np.uint8)
    label[2:6, 3:9, 4:15] = 1
    label[7:10, 12:18, 16:22] = 2
    image = (label * 0.4 - 0.5 + rng.normal(0, 0.01, label.shape)).astype(np.float32)
    return image, label


def test_probabilities_match_the_official_list() -> None:
    rng = np.random.default_rng(0)
    plans = [draw_plan(rng, CONFIG) for _ in range(20000)]
    expected = {
        "scale": 0.2, "noise_sigma": 0.1, "blur_sigma": 0.2, "brightness": 0.15, "contrast": 0.15,
        "lowres_zoom": 0.25, "gamma": 0.15,
    }  # fmt: skip
    for name, p in expected.items():
        assert np.mean([getattr(plan, name) is not None for plan in plans]) == pytest.approx(p, abs=0.012), name
    flips = np.array([plan.flips for plan in plans])
    assert flips.mean(axis=0) == pytest.approx([0.5, 0.5, 0.5], abs=0.015)
    # Parameters stay inside their ranges; gamma is below 1 about half the time.
    scales = [p.scale for p in plans if p.scale is not None]
    assert 0.7 <= min(scales) and max(scales) <= 1.4
    sigmas = [p.blur_sigma for p in plans if p.blur_sigma is not None]
    assert 0.5 <= min(sigmas) and max(sigmas) <= 1.0
    gammas = np.array([p.gamma for p in plans if p.gamma is not None])
    assert gammas.min() >= 0.7 and gammas.max() <= 1.5 and np.mean(gammas < 1) == pytest.approx(0.5, abs=0.05)
    noise = [p.noise_sigma for p in plans if p.noise_sigma is not None]
    assert max(noise) <= np.sqrt(0.1) + 1e-9


def test_disabled_draws_nothing() -> None:
    off = dataclasses.replace(CONFIG, enabled=False)
    plan = draw_plan(np.random.default_rng(1), off)
    assert plan == AugmentationPlan()
    image, label = _image_and_label()
    out_image, out_label = apply_plan(plan, image, label)
    assert np.array_equal(out_image, image) and np.array_equal(out_label, label)


@pytest.mark.parametrize("flips", [(True, False, False), (False, True, True), (True, True, True)])
def test_flips_keep_image_and_label_aligned(flips: tuple[bool, bool, bool]) -> None:
    image, label = _image_and_label()
    target = np.stack([label > 0, label == 2]).astype(np.float32)  # a [2, D, H, W] target flips the same way
    out_image, out_target = apply_plan(AugmentationPlan(flips=flips), image, target)
    axes = tuple(a for a, f in enumerate(flips) if f)
    assert np.array_equal(out_image, np.flip(image, axes))
    assert np.array_equal(np.rint((out_image + 0.5) / 0.4) > 0, out_target[0] > 0)
    assert np.array_equal(np.rint((out_image + 0.5) / 0.4) == 2, out_target[1] > 0)


@pytest.mark.parametrize("scale", [0.7, 1.0, 1.4])
def test_scale_crop_and_resize_keep_alignment(scale: float) -> None:
    patch = (12, 20, 24)
    size = crop_size(patch, scale)
    assert size == tuple(round(p * scale) for p in patch)
    label = np.zeros(size, np.uint8)
    label[tuple(slice(n // 4, 3 * n // 4) for n in size)] = 1
    image = label.astype(np.float32)
    out_image, out_label = resize_patch(image, label, patch)
    assert out_image.shape == out_label.shape == patch
    agree = np.mean((out_image > 0.5) == (out_label > 0))
    assert agree > 0.98
    # The box keeps its relative place (voxel centres map as (i + 0.5) * out / in - 0.5).
    centre_in = np.argwhere(label).mean(axis=0)
    expected = (centre_in + 0.5) * np.array(patch) / np.array(size) - 0.5
    assert np.allclose(np.argwhere(out_label).mean(axis=0), expected, atol=0.5)


def test_intensity_transforms_do_what_they_say() -> None:
    image, label = _image_and_label()
    noisy, _ = apply_plan(AugmentationPlan(noise_sigma=0.2, noise_seed=3), image, label)
    assert np.std(noisy - image) == pytest.approx(0.2, rel=0.05)
    blurred, _ = apply_plan(AugmentationPlan(blur_sigma=1.0), image, label)
    assert np.abs(np.diff(blurred, axis=2)).mean() < np.abs(np.diff(image, axis=2)).mean()
    brighter, _ = apply_plan(AugmentationPlan(brightness=1.2), image, label)
    assert np.allclose(brighter, image * 1.2, atol=1e-6)
    contrast, _ = apply_plan(AugmentationPlan(contrast=1.25), image, label)
    assert contrast.min() >= image.min() - 1e-6 and contrast.max() <= image.max() + 1e-6
    assert contrast.std() > image.std()
    lowres, same_label = apply_plan(AugmentationPlan(lowres_zoom=0.5), image, label)
    assert lowres.shape == image.shape and np.array_equal(same_label, label)
    assert np.abs(lowres - image).max() > 0.05
    gamma, _ = apply_plan(AugmentationPlan(gamma=1.5), image, label)
    assert gamma.min() == pytest.approx(image.min(), abs=1e-5) and gamma.max() == pytest.approx(image.max(), abs=1e-5)
    assert gamma.mean() < image.mean()  # gamma > 1 darkens the mid-tones


def test_config_validation_and_json() -> None:
    assert AugmentationConfig.from_dict(CONFIG.to_dict()) == CONFIG
    with pytest.raises(CCQError, match=r"augmentation: blur_p: expected a probability in \[0, 1\], got 1.5"):
        AugmentationConfig(blur_p=1.5)
    with pytest.raises(CCQError, match=r"augmentation: scale_range: expected .*, got \[1.4, 0.7\]"):
        AugmentationConfig(scale_range=(1.4, 0.7))
    with pytest.raises(CCQError, match="unknown field"):
        AugmentationConfig.from_dict({"rotation_p": 0.2})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"flip_p": "0.5"}, r"augmentation: flip_p: expected a number, got '0.5'"),
        ({"scale_range": 1.2}, r"augmentation: scale_range: expected a list of 2 numbers, got 1.2"),
        ({"scale_range": [0.7]}, r"augmentation: scale_range: expected a list of 2 numbers, got \[0.7\]"),
        ({"flip_axes": "xy"}, r"augmentation: flip_axes: expected a list of integers, got 'xy'"),
        ({"enabled": "no"}, r"augmentation: enabled: expected true or false, got 'no'"),
    ],
)
def test_wrongly_typed_values_are_named(data, message) -> None:
    with pytest.raises(CCQError, match=message):
        AugmentationConfig.from_dict(data)
