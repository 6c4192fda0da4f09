"""The architecture registry: one builder per `ModelConfig.arch`, looked up by `build_model`."""

from __future__ import annotations

from typing import get_args

import pytest

from ccq.models import build_model, get_preset
from ccq.models.baselines import CondDec, CondEnc, MultiHead, MultiNets, TALNet
from ccq.models.ccq_net import CCQNet
from ccq.models.config import Arch
from ccq.models.dodnet import DoDNet
from ccq.models.registry import ARCHITECTURES, builder


def test_every_arch_has_exactly_one_builder():
    names = []
    for arg in get_args(Arch):
        names.extend(get_args(arg) or (arg,))
    assert sorted(ARCHITECTURES) == sorted(names)


@pytest.mark.parametrize(
    ("arch", "cls"),
    [
        ("ccq", CCQNet),
        ("dodnet", DoDNet),
        ("multinets", MultiNets),
        ("tal", TALNet),
        ("multihead", MultiHead),
        ("condenc", CondEnc),
        ("conddec", CondDec),
    ],
)
def test_build_model_uses_the_registered_builder(arch, cls):
    config = get_preset("demo").replace(arch=arch, image_transformer=arch == "ccq")
    model = build_model(config)
    assert isinstance(model, cls)
    assert model.config is config


def test_an_unknown_arch_is_named():
    with pytest.raises(ValueError, match="unknown arch 'unet'"):
        builder("unet")
