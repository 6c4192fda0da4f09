"""The Table 1 baselines' builders, one per arch (listed in `ccq.models.registry`)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ccq.models.baselines.common import SegmentationNet, build_head
from ccq.models.baselines.conditioned import CondDec, CondEnc, ConditionedDecoder
from ccq.models.baselines.multihead import MultiHead
from ccq.models.baselines.multinets import MultiNets
from ccq.models.baselines.tal import TALNet, tal_num_classes
from ccq.models.config import BASELINE_ARCHS, ModelConfig
from ccq.models.parts import build_decoder, build_encoder, decoder_arguments

# The order of construction inside each builder fixes which random numbers initialise which weights: keep it.


def build_multinets(c: ModelConfig) -> MultiNets:
    t = c.num_tasks
    return MultiNets([SegmentationNet(build_encoder(c), build_decoder(c), build_head(c, 2)) for _ in range(t)])


def build_tal(c: ModelConfig) -> TALNet:
    t = c.num_tasks
    return TALNet(build_encoder(c), build_decoder(c), build_head(c, tal_num_classes(t)), t)


def build_multihead(c: ModelConfig) -> MultiHead:
    t = c.num_tasks
    return MultiHead(build_encoder(c), [build_decoder(c) for _ in range(t)], [build_head(c, 2) for _ in range(t)])


def build_condenc(c: ModelConfig) -> CondEnc:
    t = c.num_tasks
    return CondEnc(build_encoder(c, extra_in_channels=t), build_decoder(c), build_head(c, 2), t)


def build_conddec(c: ModelConfig) -> CondDec:
    t = c.num_tasks
    decoder = ConditionedDecoder(t, *decoder_arguments(c))
    return CondDec(build_encoder(c), decoder, build_head(c, 2), t)


BASELINE_BUILDERS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "multinets": build_multinets,
    "tal": build_tal,
    "multihead": build_multihead,
    "condenc": build_condenc,
    "conddec": build_conddec,
}


def build_baseline(c: ModelConfig) -> nn.Module:
    """The model of a baseline arch ("multinets", "tal", "multihead", "condenc", "conddec")."""
    if c.arch not in BASELINE_BUILDERS:
        raise ValueError(f"arch {c.arch!r} is not a baseline: expected one of {BASELINE_ARCHS}")
    return BASELINE_BUILDERS[c.arch](c)
