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
        ({"spacing": 1.5}, r"preprocessing: spacing=1.5: expected a list of 3 numbers"),
        ({"spacing": [1.5, "0.8", 0.8]}, r"spacing=\[1.5, '0.8', 0.8\]: expected a list of 3 numbers"),
        ({"hu_min": "-325"}, r"preprocessing: hu_min='-325': expected a number"),
        ({"hu_min": "-325", "hu_max": "325"}, r"hu_min='-325': expected a number"),  # strings would compare
        ({"patch_size": [16, 32, 32.5]}, r"patch_size=\[16, 32, 32.5\]: expected a list of 3 integers"),
        ({"image_interpolation_order": True}, r"image_interpolation_order=True: expected an integer"),
        ({"spacing": [0, 1, 1]}, r"preprocessing.spacing=\(0, 1, 1\): expected three positive numbers"),
        ({"pixel": 1}, r"preprocessing: unknown field\(s\) \['pixel'\]"),
        ("spacing", r"preprocessing: expected a mapping of fields, got str"),
    ],
)
def test_bad_values_are_named(data, message) -> None:
    with pytest.raises(CCQError, match=message) as info:
        PreprocessingConfig.from_dict(data)
    assert "\n" not in str(info.value)
