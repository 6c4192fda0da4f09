"""PreprocessingConfig from JSON/YAML data: a wrongly typed value is a one-line error naming the field."""

from __future__ import annotations

import pytest

from ccq.data.preprocessing import PreprocessingConfig
from ccq.errors import CCQError


def test_json_round_trip() -> None:
    config = PreprocessingConfig(spacing=(3.0, 2.0, 2.0), hu_min=-100, patch_size=(16, 32, 32))
    assert PreprocessingConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"spacing": 1.5}, r"preprocessing: spacing: expected a list of 3 numbers, got 1.5"),
        ({"spacing": [1.5, "0.8", 0.8]}, r"preprocessing: spacing\[1\]: expected a number, got '0.8'"),
        ({"hu_min": "-325"}, r"preprocessing: hu_min: expected a number, got '-325'"),
        ({"hu_min": "-325", "hu_max": "325"}, r"hu_min: expected a number, got '-325'"),  # strings would compare
        ({"patch_size": [16, 32, 32.5]}, r"preprocessing: patch_size\[2\]: expected an integer, got 32.5"),
        ({"image_interpolation_order": True}, r"image_interpolation_order: expected one of 0, 1, 3, got true"),
        ({"spacing": [0, 1, 1]}, r"preprocessing: spacing: expected three positive numbers .*, got \[0, 1, 1\]"),
        ({"pixel": 1}, r"preprocessing: pixel: unknown field; expected one of spacing, hu_min, "),
        ("spacing", r"preprocessing: expected a mapping with fields spacing, hu_min, .*, got 'spacing'"),
    ],
)
def test_bad_values_are_named(data, message) -> None:
    with pytest.raises(CCQError, match=message) as info:
        PreprocessingConfig.from_dict(data)
    assert "\n" not in str(info.value)
