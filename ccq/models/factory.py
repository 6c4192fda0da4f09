"""`build_model(config)`: the one place where a configuration becomes modules."""

from __future__ import annotations

from torch import nn

from ccq.models.config import ModelConfig
from ccq.models.parts import build_decoder, build_encoder, build_image_transformer
from ccq.models.registry import builder

__all__ = ["build_decoder", "build_encoder", "build_image_transformer", "build_model"]


def build_model(config: ModelConfig) -> nn.Module:
    """The model of `config.arch` (CCQNet "ccq", DoDNet "dodnet" or a Table 1 baseline, see
    `ccq.models.registry`); the config is kept as `model.config`."""
    model = builder(config.arch)(config)
    model.config = config
    return model
