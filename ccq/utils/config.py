"""Building the frozen configuration dataclasses from JSON/YAML data, with one-line errors for bad fields.

A field's JSON type is checked against its annotation before the dataclass sees it, so ``spacing: 1.5`` or
``hu_min: "-325"`` is named with what was expected, instead of failing later (or not at all: strings compare).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ccq.errors import CCQError

T = TypeVar("T")

_SCALARS: dict[str, tuple[str, str, Callable[[Any], bool]]] = {
    "float": ("a number", "numbers", lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool)),
    "int": ("an integer", "integers", lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool)),
    "bool": ("true or false", "booleans", lambda v: isinstance(v, bool)),
    "str": ("a string", "strings", lambda v: isinstance(v, str)),
}


def field_rule(annotation: Any) -> tuple[str, Callable[[Any], bool]] | None:
    """(what is expected, check) for a field annotation such as ``"tuple[float, float, float]"`` or
    ``"int | None"``; None for annotations left to the dataclass itself (nested configs, mappings)."""
    text = str(annotation).replace(" ", "")
    if text.endswith("|None"):
        inner = field_rule(text[: -len("|None")])
        if inner is None:
            return None
        return f"{inner[0]} or null", lambda v: v is None or inner[1](v)
    if text in _SCALARS:
        expected, _, check = _SCALARS[text]
        return expected, check
    if text.startswith("tuple[") and text.endswith("]"):
        items = text[len("tuple[") : -1].split(",")
        variadic = len(items) == 2 and items[1] == "..."
        if items[0] not in _SCALARS or not (variadic or len(set(items)) == 1):
            return None
        _, plural, check = _SCALARS[items[0]]
        size = None if variadic else len(items)

        def check_list(v: Any) -> bool:
            return isinstance(v, list | tuple) and (size is None or len(v) == size) and all(map(check, v))

        return (f"a list of {plural}" if size is None else f"a list of {size} {plural}"), check_list
    return None


def from_fields(cls: type[T], data: Any, what: str, *, base: T | None = None) -> T:
    """``cls(**data)`` (or ``base`` with the given fields replaced) for JSON data; every problem is a one-line
    CCQError starting with ``what``: not a mapping, an unknown field, a value of the wrong type. Lists given for
    tuple fields become tuples."""
    if not isinstance(data, Mapping):
        raise CCQError(f"{what}: expected a mapping of fields, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        raise CCQError(f"{what}: unknown field(s) {unknown}; expected some of {sorted(fields)}")
    changes = {}
    for name, value in data.items():
        annotation = str(fields[name].type)
        rule = field_rule(annotation)
        if rule is not None and not rule[1](value):
            raise CCQError(f"{what}: {name}={value!r}: expected {rule[0]}")
        # Lists in JSON, tuples in memory: a config equals its JSON round trip.
        changes[name] = tuple(value) if annotation.startswith("tuple[") and isinstance(value, list) else value
    try:
        return dataclasses.replace(base, **changes) if base is not None else cls(**changes)  # type: ignore[type-var]
    except (TypeError, ValueError) as err:  # a check the field types cannot express
        raise CCQError(f"{what}: invalid value ({err})") from None
