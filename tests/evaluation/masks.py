"""A battery of small mask pairs for the metric tests: every case that has tripped HD95 implementations."""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

SHAPE = (20, 24, 18)


def _ball(shape, centre, radius) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float64)
    dist = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, np.broadcast_to(radius, (3,)), strict=True))
    return dist <= 1.0


def _blob(rng: np.random.Generator, shape=SHAPE, fill: float = 0.45, sigma: float = 2.0) -> np.ndarray:
    noise = ndi.gaussian_filter(rng.standard_normal(shape), sigma)
    return noise > np.quantile(noise, 1 - fill)


def battery() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (prediction, ground truth), bool arrays; both masks non-empty (empty cases are tested apart)."""
    rng = np.random.default_rng(7)
    one = np.zeros(SHAPE, dtype=bool)
    one[10, 12, 9] = True
    other = np.zeros(SHAPE, dtype=bool)
    other[3, 20, 2] = True
    border = np.zeros(SHAPE, dtype=bool)
    border[:6, :, :5] = True  # touches four faces of the array
    shifted = np.zeros(SHAPE, dtype=bool)
    shifted[:8, 2:, :4] = True
    full = np.ones(SHAPE, dtype=bool)
    outer = _ball(SHAPE, (10, 12, 9), (8, 9, 7))
    hollow = outer & ~_ball(SHAPE, (10, 12, 9), (5, 6, 4))  # a shell: surface inside and outside
    ball = _ball(SHAPE, (11, 11, 9), (6, 7, 5))
    far = np.zeros(SHAPE, dtype=bool)
    far[0:2, 0:2, 0:2] = True
    far[18:, 22:, 16:] = True  # two specks in opposite corners: a long tail of distances
    return {
        "one_voxel_same": (one, one.copy()),
        "one_voxel_apart": (one, other),
        "one_voxel_in_ball": (one, ball),
        "touching_border": (border, shifted),
        "whole_array": (full, border),
        "hollow_vs_ball": (hollow, ball),
        "hollow_vs_itself": (hollow, hollow.copy()),
        "random_blobs": (_blob(rng), _blob(rng)),
        "random_sparse": (_blob(rng, fill=0.05, sigma=1.0), _blob(rng, fill=0.08, sigma=1.0)),
        "specks_vs_ball": (far, ball),
    }


SPACINGS = {
    "unit": (1.0, 1.0, 1.0),
    "anisotropic": (2.5, 0.7, 0.9),
}
