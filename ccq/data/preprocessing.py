"""The preprocessing a model was trained with; stored in every checkpoint so weights never meet the wrong spacing."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ccq.errors import CCQError
from ccq.utils.config import from_fields


@dataclass(frozen=True)
class PreprocessingConfig:
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
    image_interpolation_order: int = 3
    """Spline order for images (3 = cubic as official, 1 = linear); labels always use nearest neighbour."""

    def __post_init__(self) -> None:
        if len(self.spacing) != 3 or any(float(s) <= 0 for s in self.spacing):
            raise CCQError(f"preprocessing.spacing={self.spacing!r}: expected three positive numbers (z, y, x) in mm")
        if len(self.patch_size) != 3 or any(int(p) <= 0 for p in self.patch_size):
            raise CCQError(f"preprocessing.patch_size={self.patch_size!r}: expected three positive integers")
        if not self.hu_min < self.hu_max:
            raise CCQError(f"preprocessing HU window [{self.hu_min}, {self.hu_max}]: expected hu_min < hu_max")
        if self.hu_scale <= 0:
            raise CCQError(f"preprocessing.hu_scale={self.hu_scale}: expected a positive number")
        if self.image_interpolation_order not in (0, 1, 3):
            raise CCQError(
                f"preprocessing.image_interpolation_order={self.image_interpolation_order}: expected 0, 1 or 3"
            )
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessingConfig:
        """From JSON data; an unknown field or a wrongly typed value is a CCQError naming it."""
        return from_fields(cls, data, "preprocessing")


OFFICIAL_PREPROCESSING = PreprocessingConfig()
