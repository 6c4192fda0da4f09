"""The shared parts of every architecture, built from a configuration: encoder, decoder, image transformer."""

from __future__ import annotations

from ccq.models.config import ModelConfig
from ccq.models.decoder import Decoder
from ccq.models.encoder import CNNEncoder
from ccq.models.image_transformer import ImageTransformer


def build_encoder(c: ModelConfig, extra_in_channels: int = 0) -> CNNEncoder:
    """The residual CNN encoder; `extra_in_channels` input channels beside the image (Cond-Enc's task one-hot)."""
    return CNNEncoder(
        c.in_channels + extra_in_channels,
        c.stem_channels,
        c.encoder_channels,
        c.encoder_blocks,
        c.norm_groups,
        c.activation,
        c.negative_slope,
        c.weight_std,
    )


def decoder_arguments(c: ModelConfig) -> tuple:
    """The positional arguments of `Decoder` (and, after the task count, of the baselines' conditioned decoder):
    input channels, skip channels, output channels, skip mode, norm groups, activation, slope, weight standardization.
    """
    skip_channels = c.encoder_channels[:-1]
    return (
        skip_channels[-1],
        skip_channels,
        c.decoder_channels,
        c.skip,
        c.norm_groups,
        c.activation,
        c.negative_slope,
        c.weight_std,
    )


def build_decoder(c: ModelConfig) -> Decoder:
    return Decoder(*decoder_arguments(c))


def build_image_transformer(c: ModelConfig, class_token: bool) -> ImageTransformer:
    return ImageTransformer(c.encoder_channels[-1], c.dim, c.mlp_dim, c.heads, c.image_layers, c.dropout, class_token)
