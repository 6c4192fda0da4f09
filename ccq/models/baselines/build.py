"""`build_baseline(config)`: the Table 1 baselines from a configuration (called by `ccq.models.build_model`)."""

from __future__ import annotations

from torch import nn

from ccq.models.baselines.common import SegmentationNet, build_encoder, build_head
from ccq.models.baselines.conditioned import CondDec, CondEnc, ConditionedDecoder
from ccq.models.baselines.multihead import MultiHead
from ccq.models.baselines.multinets import MultiNets
from ccq.models.baselines.tal import TALNet, tal_num_classes
from ccq.models.config import BASELINE_ARCHS, ModelConfig
from ccq.models.factory import build_decoder


def build_baseline(c: ModelConfig) -> nn.Module:
    """The model of a baseline arch ("multinets", "tal", "multihead", "condenc", "conddec")."""
    t = c.num_tasks
    if c.arch == "multinets":
        return MultiNets([SegmentationNet(build_encoder(c), build_decoder(c), build_head(c, 2)) for _ in range(t)])
    if c.arch == "tal":
        return TALNet(build_encoder(c), build_decoder(c), build_head(c, tal_num_classes(t)), t)
    if c.arch == "multihead":
        return MultiHead(build_encoder(c), [build_decoder(c) for _ in range(t)], [build_head(c, 2) for _ in range(t)])
    if c.arch == "condenc":
        return CondEnc(build_encoder(c, extra_in_channels=t), build_decoder(c), build_head(c, 2), t)
    if c.arch == "conddec":
        skip_channels = c.encoder_channels[:-1]
        decoder = ConditionedDecoder(
            t,
            skip_channels[-1],
            skip_channels,
            c.decoder_channels,
            c.skip,
            c.norm_groups,
            c.activation,
            c.negative_slope,
            c.weight_std,
        )
        return CondDec(build_encoder(c), decoder, build_head(c, 2), t)
    raise ValueError(f"arch {c.arch!r} is not a baseline: expected one of {BASELINE_ARCHS}")
