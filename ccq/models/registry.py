"""The architectures by name: `ModelConfig.arch` -> the function that builds its modules from a configuration.

Every architecture is listed here once; `ccq.models.build_model` looks the builder up. The builders import only
the parts they assemble, so that this registry sits above them in the import graph and nothing imports it back.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ccq.models.baselines.build import BASELINE_BUILDERS
from ccq.models.ccq_net import CCQNet
from ccq.models.config import ModelConfig
from ccq.models.dodnet import DoDNet
from ccq.models.head import BranchedDynamicHead, DynamicHead
from ccq.models.parts import build_decoder, build_encoder, build_image_transformer
from ccq.models.queries import FocusedQuerying, QueryGenerator
from ccq.models.weighting import QueriesToMap, QueryWeighting

Builder = Callable[[ModelConfig], nn.Module]


def _head_arguments(c: ModelConfig) -> tuple:
    """The positional arguments of both dynamic heads: F's channels, tasks, decoder channels, head width, two
    outputs (organ, tumor; CCQ's branches), norm groups, activation, slope."""
    return (
        c.encoder_channels[-1],
        c.num_tasks,
        c.decoder_channels[-1],
        c.head_channels,
        2,
        c.norm_groups,
        c.activation,
        c.negative_slope,
    )


def build_ccq(c: ModelConfig) -> CCQNet:
    """The CCQ network of the paper (Fig. 2): encoder, image transformer, queries, weighting, decoder, head."""
    # Encoder and decoder first: the order of construction fixes which random numbers initialise which weights.
    encoder = build_encoder(c)
    decoder = build_decoder(c)
    return CCQNet(
        encoder=encoder,
        image_transformer=build_image_transformer(c, class_token=True),
        query_generator=QueryGenerator(c.num_queries, c.dim, c.mlp_dim, c.heads, c.query_layers, c.dropout),
        querying=FocusedQuerying(c.dim, c.mlp_dim, c.heads, c.querying_layers, c.dropout, c.query_concat)
        if c.querying
        else None,
        weighting=QueryWeighting(c.dim),
        to_map=QueriesToMap(c.num_queries, c.dim, c.bottleneck_size, c.encoder_channels[-2]),
        decoder=decoder,
        head=BranchedDynamicHead(*_head_arguments(c)),
        num_tasks=c.num_tasks,
        num_tokens=c.num_tokens,
        dim=c.dim,
    )


def build_dodnet(c: ModelConfig) -> DoDNet:
    """DoDNet: the same encoder and decoder, one task-conditioned dynamic head (optionally an image transformer)."""
    encoder = build_encoder(c)
    decoder = build_decoder(c)
    transformer = build_image_transformer(c, class_token=False) if c.image_transformer else None
    head = DynamicHead(*_head_arguments(c))
    return DoDNet(encoder, decoder, head, c.num_tasks, transformer, c.num_tokens, c.dim)


ARCHITECTURES: dict[str, Builder] = {"ccq": build_ccq, "dodnet": build_dodnet, **BASELINE_BUILDERS}


def builder(arch: str) -> Builder:
    """The builder of `arch`; a ValueError naming the known architectures otherwise."""
    try:
        return ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown arch {arch!r}: expected one of {tuple(ARCHITECTURES)}") from None
