"""`build_model(config)`: the one place where a configuration becomes modules."""

from __future__ import annotations

from torch import nn

from ccq.models.ccq_net import CCQNet
from ccq.models.config import BASELINE_ARCHS, ModelConfig
from ccq.models.decoder import Decoder
from ccq.models.dodnet import DoDNet
from ccq.models.encoder import CNNEncoder
from ccq.models.head import BranchedDynamicHead, DynamicHead
from ccq.models.image_transformer import ImageTransformer
from ccq.models.queries import FocusedQuerying, QueryGenerator
from ccq.models.weighting import QueriesToMap, QueryWeighting


def build_encoder(c: ModelConfig) -> CNNEncoder:
    return CNNEncoder(
        c.in_channels,
        c.stem_channels,
        c.encoder_channels,
        c.encoder_blocks,
        c.norm_groups,
        c.activation,
        c.negative_slope,
        c.weight_std,
    )


def build_decoder(c: ModelConfig) -> Decoder:
    skip_channels = c.encoder_channels[:-1]
    return Decoder(
        skip_channels[-1],
        skip_channels,
        c.decoder_channels,
        c.skip,
        c.norm_groups,
        c.activation,
        c.negative_slope,
        c.weight_std,
    )


def build_image_transformer(c: ModelConfig, class_token: bool) -> ImageTransformer:
    return ImageTransformer(c.encoder_channels[-1], c.dim, c.mlp_dim, c.heads, c.image_layers, c.dropout, class_token)


def build_model(config: ModelConfig) -> nn.Module:
    """A CCQNet (arch "ccq"), DoDNet (arch "dodnet") or Table 1 baseline (`BASELINE_ARCHS`); the config is kept as
    `model.config`."""
    c = config
    if c.arch in BASELINE_ARCHS:
        # Imported here: the baselines build their parts with this module's builders.
        from ccq.models.baselines import build_baseline

        model = build_baseline(c)
        model.config = config
        return model
    encoder = build_encoder(c)
    decoder = build_decoder(c)
    if c.arch == "dodnet":
        transformer = build_image_transformer(c, class_token=False) if c.image_transformer else None
        head = DynamicHead(
            c.encoder_channels[-1],
            c.num_tasks,
            c.decoder_channels[-1],
            c.head_channels,
            2,
            c.norm_groups,
            c.activation,
            c.negative_slope,
        )
        model: nn.Module = DoDNet(encoder, decoder, head, c.num_tasks, transformer, c.num_tokens, c.dim)
    else:
        model = CCQNet(
            encoder=encoder,
            image_transformer=build_image_transformer(c, class_token=True),
            query_generator=QueryGenerator(c.num_queries, c.dim, c.mlp_dim, c.heads, c.query_layers, c.dropout),
            querying=FocusedQuerying(c.dim, c.mlp_dim, c.heads, c.querying_layers, c.dropout, c.query_concat)
            if c.querying
            else None,
            weighting=QueryWeighting(c.dim),
            to_map=QueriesToMap(c.num_queries, c.dim, c.bottleneck_size, c.encoder_channels[-2]),
            decoder=decoder,
            head=BranchedDynamicHead(
                c.encoder_channels[-1],
                c.num_tasks,
                c.decoder_channels[-1],
                c.head_channels,
                2,
                c.norm_groups,
                c.activation,
                c.negative_slope,
            ),
            num_tasks=c.num_tasks,
            num_tokens=c.num_tokens,
            dim=c.dim,
        )
    model.config = config
    return model
