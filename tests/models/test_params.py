"""Parameter counts of the official-size presets match the official implementation exactly (the counts:
docs/architecture.md#the-network)."""

import pytest

from ccq.models import get_preset
from ccq.models.summary import summarize

OFFICIAL_COUNTS = [
    ("official", (64, 192, 192), 28_321_433),
    ("official", (32, 96, 96), 28_062_881),
    ("dodnet", (64, 192, 192), 17_329_528),
]


@pytest.mark.parametrize("preset,patch,expected", OFFICIAL_COUNTS)
def test_parameter_count_matches_official(preset, patch, expected):
    summary = summarize(get_preset(preset, patch_size=patch), preset)
    assert summary.params == expected


def test_parts_match_design_breakdown():
    parts = summarize(get_preset("official"), "official").params_by_part
    # docs/architecture.md#the-network, in millions (rounded to 2 decimals there).
    assert round(parts["cnn_encoder"] / 1e6, 2) == 15.44
    assert round(parts["image_transformer"] / 1e6, 2) == 2.18
    assert round(parts["querying"] / 1e6, 2) == 2.24
    assert round(parts["weighting"] / 1e6, 2) == 0.64
    assert round(parts["attentive_skips"] / 1e6, 2) == 4.72
    assert round(parts["decoder_blocks"] / 1e6, 2) == 1.84
    assert round(parts["heads"] / 1e6, 2) == 0.04
    assert sum(parts.values()) == 28_321_433


def test_flops_scale_with_patch_volume():
    small = summarize(get_preset("official", patch_size=(32, 96, 96))).flops
    large = summarize(get_preset("official")).flops
    # Convolutions dominate and scale with the voxel count (x8); the token part grows faster, so a bit more.
    assert 7.5 < large / small < 9.0
    assert summarize(get_preset("dodnet")).flops < large


def test_every_named_preset_builds():
    import torch

    from ccq.models import build_model
    from ccq.models.presets import preset_names

    for name in preset_names():
        with torch.device("meta"):
            model = build_model(get_preset(name))
        assert sum(p.numel() for p in model.parameters()) > 0, name


def test_decoder_widths_must_match_the_skips():
    from ccq.errors import CCQError

    with pytest.raises(CCQError, match="decoder_channels"):
        get_preset("tiny", decoder_channels=(8, 8, 8, 8))
