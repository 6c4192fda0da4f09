"""The preprocessing a model was trained with; stored in every checkpoint so weights never meet the wrong spacing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ccq.utils.config import Config


@dataclass(frozen=True)
class PreprocessingConfig(Config):
    """How a CT volume is turned into network input.

    Axes are always (z, y, x) = (D, H, W) of the canonical orientation the data is reoriented to.
    """

    spacing: tuple[float, float, float] = (1.5, 0.8, 0.8)
    """Target voxel spacing in mm, (z, y, x)."""
    hu_min: float = -325.0
    hu_max: float = 325.0
    hu_scale: float = 325.0
    """Intensity: clip HU to [hu_min, hu_max], then divide by hu_scale (official: [-325, 325] / 325 -> [-1, 1])."""
    patch_size: tuple[int, int, int] = (64, 192, 192)
    """Training / sliding-window patch, (D, H, W) voxels."""
    image_interpolation_order: Literal[0, 1, 3] = 3
    """Spline order for images (3 = cubic as official, 1 = linear, 0 = nearest); labels always use nearest
    neighbour."""

    config_name = "preprocessing"

    def _validate(self) -> None:
        if any(s <= 0 for s in self.spacing):
            self._fail("spacing", "three positive numbers (z, y, x) in mm")
        if any(p <= 0 for p in self.patch_size):
            self._fail("patch_size", "three positive integers")
        if not self.hu_min < self.hu_max:
            self._fail("hu_max", f"a number above hu_min={self.hu_min} (the HU window is [hu_min, hu_max])")
        if self.hu_scale <= 0:
            self._fail("hu_scale", "a positive number")
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))


OFFICIAL_PREPROCESSING = PreprocessingConfig()
