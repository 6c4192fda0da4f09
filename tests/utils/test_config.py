"""Configuration dataclasses from JSON data: wrongly typed fields are named with what was expected."""

from __future__ import annotations

import pytest

from ccq.errors import CCQError
from ccq.utils.config import field_rule
from ccq.utils.device import resolve_device


@pytest.mark.parametrize(
    ("annotation", "good", "bad", "expected"),
    [
        ("float", [1, -2.5], ["1", True, None], "a number"),
        ("int", [3], [3.0, "3", False], "an integer"),
        ("bool", [True], [1, "yes"], "true or false"),
        ("str", ["x"], [1], "a string"),
        ("float | None", [None, 0.5], ["0.5"], "a number or null"),
        (
            "tuple[float, float, float]",
            [[1, 2, 3.5], (1.0, 2.0, 3.0)],
            [1.5, [1, 2], [1, "2", 3]],
            "a list of 3 numbers",
        ),
        ("tuple[int, ...]", [[], [0, 2]], [[0.5], "01"], "a list of integers"),
    ],
)
def test_field_rules(annotation, good, bad, expected) -> None:
    rule = field_rule(annotation)
    assert rule is not None and rule[0] == expected
    assert all(rule[1](v) for v in good) and not any(rule[1](v) for v in bad)


def test_other_annotations_are_left_to_the_dataclass() -> None:
    assert field_rule("Mapping[str, Any]") is None and field_rule("SamplingConfig") is None


def test_resolve_device() -> None:
    assert resolve_device("cpu").type == "cpu" and resolve_device(None).type in ("cpu", "cuda")
    with pytest.raises(CCQError, match="expected 'cpu', 'cuda'"):
        resolve_device("tpu")
