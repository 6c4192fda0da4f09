"""The CCQ network, the DoDNet baseline, their configuration and presets."""

from ccq.models.config import ModelConfig
from ccq.models.factory import build_model
from ccq.models.presets import get_preset, preset_names

__all__ = ["ModelConfig", "build_model", "get_preset", "preset_names"]
