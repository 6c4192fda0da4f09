"""Checking data against type hints: each kind of annotation, its words, its conversions and its errors."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pytest

from ccq.errors import CCQError
from ccq.utils.typecheck import SHOWN_LIMIT, FieldError, FieldsOf, NonEmpty, convert, describe, from_data, shown

Color = Literal["red", "green"]


@dataclass(frozen=True)
class Inner:
    size: int
    ratio: float = 0.5


@dataclass(frozen=True)
class Outer:
    name: str
    items: Annotated[tuple[Inner, ...], NonEmpty]
    color: Color = "red"
    inner: Inner = field(default_factory=lambda: Inner(1))
    note: str | None = None
    origin: Path | None = field(default=None, metadata={"config": False})
    """Not data: neither read from the data nor checked."""


@pytest.mark.parametrize(
    ("hint", "good", "bad", "expected"),
    [
        (float, [1, -2.5, np.float32(0.5)], ["1", True, None], "a number"),
        (int, [3, np.int64(3)], [3.0, "3", False], "an integer"),
        (bool, [True, False], [1, "yes", None], "true or false"),
        (str, ["x", ""], [1, None, b"x"], "a string"),
        (Any, [None, object()], [], "any value"),
        (Color, ["red"], ["blue", 0, None], "one of 'red', 'green'"),
        (Literal[0, 1, 3], [0, 3], [2, True, 1.0, "1"], "one of 0, 1, 3"),
        (float | None, [None, 0.5], ["0.5"], "null or a number"),
        (tuple[float, float, float], [[1, 2, 3.5], (1.0, 2.0, 3.0)], [1.5, [1, 2], "abc"], "a list of 3 numbers"),
        (tuple[int, ...], [[], [0, 2]], ["01", {"a": 1}], "a list of integers"),
        (tuple[int, str], [[1, "a"]], [[1, 2], ["a", 1]], "a list of 2 items (an integer, a string)"),
        (Annotated[tuple[int, ...], NonEmpty], [[1]], [[], ()], "a non-empty list of integers"),
        (Annotated[tuple[int, ...], NonEmpty] | None, [None, [1]], [[], "x"], "null or a non-empty list of integers"),
        (Mapping[int, str], [{}, {1: "a", "2": "b", "-3": "c"}], [[], {"x": "a"}, {True: "a"}], "a mapping of"),
        (Mapping[str, Any], [{"a": object()}], [{1: 2}, "a"], "a mapping of string -> any value"),
        (Mapping[Color, int | None], [{"red": None}], [{"blue": 1}, {"red": "1"}], "a mapping of one of"),
        (Inner, [{"size": 2}, Inner(2)], [{"size": 2.5}, {}, 3], "a mapping with fields size, ratio"),
        (Annotated[Mapping[str, Any], FieldsOf(Inner)], [{}, {"ratio": 1}], [{"size": "1"}, {"x": 1}, []], "a map"),
    ],
)
def test_each_kind_of_annotation(hint, good, bad, expected) -> None:
    assert describe(hint).startswith(expected)
    for value in good:
        convert(value, hint, "f")
    for value in bad:
        with pytest.raises(FieldError) as info:
            convert(value, hint, "f")
        assert str(info.value).startswith("f") and "\n" not in str(info.value), info.value


def test_describe_words() -> None:
    assert describe(Mapping[int, str]) == "a mapping of integer -> string"
    assert describe(Annotated[Mapping[str, Any], FieldsOf(Inner)]) == "a mapping of Inner fields"
    assert describe(Outer).startswith("a mapping with fields name, items, color, inner, note")  # not origin
    assert describe(tuple[Color, ...]) == "a list of values among 'red', 'green'"


def test_conversions_make_json_data_hashable_and_typed() -> None:
    assert convert([1, 2], tuple[int, ...]) == (1, 2) and isinstance(convert([1.5], tuple[float, ...]), tuple)
    assert convert({"0": "bg", 1: "x", "-1": "y"}, Mapping[int, str]) == {0: "bg", 1: "x", -1: "y"}
    assert convert({"size": 3}, Inner) == Inner(3)
    assert convert({"items": [{"size": 1}], "name": "o"}, Outer).items == (Inner(1),)
    assert convert({"items": [{"size": 4}]}, Annotated[Mapping[str, Any], FieldsOf(Outer)]) == {"items": (Inner(4),)}
    assert convert(-325, float) == -325 and type(convert(-325, float)) is int  # values are kept, not recast


@pytest.mark.parametrize(
    ("value", "hint", "message"),
    [
        ([1, "2"], tuple[int, ...], "f[1]: expected an integer, got '2'"),
        ([[1], [2, "x"]], tuple[tuple[int, ...], ...], "f[1][1]: expected an integer, got 'x'"),
        ("liver", Annotated[tuple[int, ...], NonEmpty] | None, "f: expected null or a non-empty list of integers"),
        ([1, "2"], Annotated[tuple[int, ...], NonEmpty] | None, "f[1]: expected an integer"),  # the item, not f
        ({"tumor": 1}, Mapping[int, str], "f: expected integer keys, got key 'tumor'"),
        ({"blue": 1}, Mapping[Color, int], "f: expected keys among 'red', 'green', got key 'blue'"),
        ({1: 2}, Mapping[str, int], "f: expected keys that are strings, got key 1"),
        ({"1": "a", "2": 3}, Mapping[int, str], "f.2: expected a string, got 3"),
        ({"size": 1, "ratoi": 2}, Inner, "f.ratoi: unknown field (did you mean 'ratio'?); expected one of size, ratio"),
        ({"ratio": 2}, Inner, "f.size: missing field; expected an integer"),
        ({"size": "9"}, Annotated[Mapping[str, Any], FieldsOf(Inner)], "f.size: expected an integer, got '9'"),
        ({"sise": 9}, Annotated[Mapping[str, Any], FieldsOf(Inner)], "f.sise: unknown field (did you mean 'size'?)"),
    ],
)
def test_errors_name_the_path_the_expectation_and_the_value(value, hint, message) -> None:
    with pytest.raises(FieldError) as info:
        convert(value, hint, "f")
    assert str(info.value).startswith(message), str(info.value)


def test_from_data_names_the_whole_and_the_path() -> None:
    data = {"name": "o", "items": [{"size": 1}, {"size": 2, "ratio": "x"}]}
    with pytest.raises(CCQError, match=r"^my.yaml: items\[1\].ratio: expected a number, got 'x'$"):
        from_data(Outer, data, where="my.yaml")
    with pytest.raises(CCQError, match=r"^Outer: items: expected a non-empty list of mappings, got \[\]$"):
        from_data(Outer, {"name": "o", "items": []})
    with pytest.raises(CCQError, match=r"^Outer: expected a mapping with fields name, items, .*, got \['o'\]$"):
        from_data(Outer, ["o"])
    with pytest.raises(CCQError, match=r"^Outer: origin: unknown field"):  # not data: not read from a file
        from_data(Outer, {"name": "o", "items": [{"size": 1}], "origin": "x"})
    built = from_data(Outer, {"name": "o", "items": [{"size": 1}]}, origin=Path("here"))
    assert built.origin == Path("here") and built.items == (Inner(1),)


def test_from_data_over_a_base_changes_only_the_given_nested_fields() -> None:
    base = Outer("o", (Inner(1),), inner=Inner(7, ratio=0.25))
    changed = from_data(Outer, {"inner": {"ratio": 0.75}, "color": "green"}, base=base)
    assert changed == Outer("o", (Inner(1),), color="green", inner=Inner(7, ratio=0.75))
    assert from_data(Outer, {"inner": Inner(2)}, base=base).inner == Inner(2)  # an instance replaces


def test_shown_never_renders_a_huge_value_whole() -> None:
    huge = list(range(10**6))
    text = shown(huge)
    assert len(text) == SHOWN_LIMIT and text.startswith("[0, 1, 2") and text.endswith("...")
    assert len(shown("x" * 10**6)) == SHOWN_LIMIT and len(shown({str(i): i for i in range(10**4)})) == SHOWN_LIMIT
    assert shown([None, True, "a\nb", (1, 2)]) == "[null, true, 'a\\nb', [1, 2]]"
    with pytest.raises(FieldError) as info:
        convert({"k" * 500: huge}, Mapping[str, int], "f")
    message = str(info.value)
    assert "\n" not in message and len(message) < 2 * SHOWN_LIMIT and "..." in message
    with pytest.raises(FieldError) as info:
        convert({"a\nb": 1}, Inner, "f")  # an unknown key is a path component: quoted, on one line
    assert str(info.value).startswith("f.'a\\nb': unknown field")


def test_long_digit_keys_are_not_integers() -> None:
    with pytest.raises(FieldError, match="expected integer keys"):
        convert({"9" * 5000: "x"}, Mapping[int, str])  # int() itself would raise ValueError here
    with pytest.raises(FieldError, match="expected integer keys"):
        convert({"²": "x"}, Mapping[int, str])  # a digit to str.isdigit, not to int()


def test_field_errors_pickle() -> None:
    err = FieldError("a.b", "expected x, got y", where="file.json", mismatch=True)
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) == "file.json: a.b: expected x, got y" and back.mismatch


def test_unsupported_annotation_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="unsupported annotation"):
        convert(1, list[int])
