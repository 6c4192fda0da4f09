"""The official key mapping: names, strictness, the old `CCQ.` prefix, shapes."""

import pytest
import torch

from ccq.errors import CCQError
from ccq.models import build_model, get_preset
from ccq.models.official import convert_official_state_dict, official_name, to_official_state_dict


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = get_preset("tiny")
    return config, build_model(config).state_dict()


def test_round_trip_through_official_names(tiny):
    config, ours = tiny
    official = {f"module.{k}": v for k, v in to_official_state_dict(ours, config).items()}
    back = convert_official_state_dict(official, config)
    assert set(back) == set(ours)
    assert all(torch.equal(back[k], ours[k]) for k in ours)


def test_known_names():
    assert official_name("encoder.stem.weight") == "conv1.weight"
    assert official_name("encoder.stages.1.0.shortcut.2.weight") == "layer1.0.downsample.2.weight"
    assert official_name("decoder.gates.0.norm1.weight") == "skip3_attn.gn1.weight"
    assert official_name("decoder.blocks.3.conv2.weight") == "x1_resb.0.conv2.weight"
    assert official_name("querying.blocks.2.attn.norm_k.bias") == "CQTr.decoder.blocks.blocks.2.attn.normk.bias"
    assert official_name("head.branch_controllers.1.bias") == "contro_tumor.bias"


def test_old_ccq_prefix_is_accepted(tiny):
    config, ours = tiny
    official = {k.replace("CQTr.", "CCQ."): v for k, v in to_official_state_dict(ours, config).items()}
    assert set(convert_official_state_dict(official, config)) == set(ours)


def test_missing_and_unexpected_keys_are_all_named(tiny):
    config, ours = tiny
    official = to_official_state_dict(ours, config)
    official.pop("CQTr.query")
    official.pop("skip0_attn.gn2.bias")
    official["CQTr.extra.weight"] = torch.zeros(1)
    with pytest.raises(CCQError) as err:
        convert_official_state_dict(official, config)
    message = str(err.value)
    assert "CQTr.query" in message and "skip0_attn.gn2.bias" in message and "CQTr.extra.weight" in message


def test_same_size_tensor_of_another_shape_is_refused(tiny):
    config, ours = tiny
    official = to_official_state_dict(ours, config)
    w = official["CQTr.make_weights.proj3.1.weight"]  # a non-square Linear [dim, 2*dim]
    official["CQTr.make_weights.proj3.1.weight"] = w.t().contiguous()
    with pytest.raises(CCQError, match="proj3.1.weight"):
        convert_official_state_dict(official, config)
