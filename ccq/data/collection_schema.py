"""A small hand-written, JSON-Schema-like validator for task-collection files.

It checks the *shape* of the parsed JSON/YAML (types, missing and unknown fields) and reports the first
problem as one line naming the field path (``tasks[2].organ``) and what was expected. Meaning (duplicate ids,
values that are not in ``labels`` ...) is checked by the dataclasses in :mod:`ccq.data.collection`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ccq.errors import CCQError


class FieldError(CCQError):
    """A problem with one field; the caller prefixes the file (and the task) it came from."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message

    def within(self, prefix: str) -> FieldError:
        """The same error one level down, e.g. ``organ`` inside ``tasks[2]`` -> ``tasks[2].organ``."""
        field = f"{prefix}.{self.field}" if self.field else prefix
        return FieldError(field, self.message)


# Schema nodes: a Python type (str, int, float), or one of the small classes below.
@dataclass(frozen=True)
class Nullable:
    node: Any


@dataclass(frozen=True)
class ListOf:
    node: Any
    min_len: int = 0


@dataclass(frozen=True)
class MapOf:
    """A mapping whose keys are integers (YAML writes them as ints, JSON as digit strings)."""

    node: Any


@dataclass(frozen=True)
class OneOf:
    values: tuple[str, ...]


@dataclass(frozen=True)
class Obj:
    """A mapping with named fields: ``{name: (node, required)}``; any other key is an error."""

    fields: dict[str, tuple[Any, bool]]


def describe(node: Any) -> str:
    """What a node accepts, in words, for error messages."""
    if node is str:
        return "a string"
    if node is int:
        return "an integer"
    if node is float:
        return "a number"
    if isinstance(node, Nullable):
        return f"null or {describe(node.node)}"
    if isinstance(node, ListOf):
        inner = "mapping" if isinstance(node.node, Obj) else describe(node.node).split(" ", 1)[1]
        return f"a {'non-empty ' if node.min_len else ''}list of {inner}s"
    if isinstance(node, MapOf):
        return f"a mapping of integer -> {describe(node.node).removeprefix('a ').removeprefix('an ')}"
    if isinstance(node, OneOf):
        return "one of " + ", ".join(repr(v) for v in node.values)
    if isinstance(node, Obj):
        return "a mapping with fields " + ", ".join(node.fields)
    raise TypeError(f"unknown schema node {node!r}")


def _shown(value: Any) -> str:
    """A short rendering of a wrong value (long lists would make the one-line message unreadable)."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def is_int(value: Any) -> bool:
    # bool is a subclass of int, but `organ: [true]` is a typo, not label 1.
    return isinstance(value, int) and not isinstance(value, bool)


def int_key(key: Any) -> int | None:
    """A mapping key as an integer label value, or None when it is not one ('2' from JSON counts)."""
    if is_int(key):
        return key
    if isinstance(key, str) and key.strip().lstrip("-").isdigit():
        return int(key)
    return None


def validate(value: Any, node: Any, path: str = "") -> None:
    """Raise FieldError at the first place where ``value`` does not match ``node``."""

    def fail(expected: str) -> None:
        raise FieldError(path, f"expected {expected}, got {_shown(value)}")

    if node is str:
        if not isinstance(value, str):
            fail("a string")
    elif node is int:
        if not is_int(value):
            fail("an integer")
    elif node is float:
        if not (is_int(value) or isinstance(value, float)):
            fail("a number")
    elif isinstance(node, Nullable):
        if value is not None:
            try:
                validate(value, node.node, path)
            except FieldError as err:
                if err.field != path:
                    raise
                fail(describe(node))
    elif isinstance(node, OneOf):
        if value not in node.values:
            fail(describe(node))
    elif isinstance(node, ListOf):
        if not isinstance(value, list) or len(value) < node.min_len:
            fail(describe(node))
        for i, item in enumerate(value):
            validate(item, node.node, f"{path}[{i}]")
    elif isinstance(node, MapOf):
        if not isinstance(value, dict):
            fail(describe(node))
        for key, item in value.items():
            if int_key(key) is None:
                raise FieldError(path, f"expected integer keys (label values), got key {_shown(key)}")
            validate(item, node.node, f"{path}.{key}" if path else str(key))
    elif isinstance(node, Obj):
        if not isinstance(value, dict):
            fail(describe(node))
        prefix = f"{path}." if path else ""
        unknown = [k for k in value if k not in node.fields]
        if unknown:
            raise FieldError(
                f"{prefix}{unknown[0]}", f"unknown field; expected one of {', '.join(node.fields)}"
            )
        for name, (child, required) in node.fields.items():
            if name in value:
                validate(value[name], child, f"{prefix}{name}")
            elif required:
                raise FieldError(f"{prefix}{name}", f"missing field ({describe(child)})")
    else:
        raise TypeError(f"unknown schema node {node!r}")


LABEL_VALUES = Nullable(ListOf(int, min_len=1))
TWO_CHANNELS_INT = Obj({"organ": (Nullable(int), False), "tumor": (Nullable(int), False)})
TWO_CHANNELS_STR = Obj({"organ": (Nullable(str), False), "tumor": (Nullable(str), False)})
SPLIT = Nullable(
    Obj(
        {
            "train": (ListOf(str), False),
            "test": (ListOf(str), False),
            "test_fraction": (float, False),
            "seed": (int, False),
        }
    )
)
TASK = Obj(
    {
        "name": (str, True),
        "id": (int, True),
        "layout": (OneOf(("msd", "kits")), True),
        "folder": (str, True),
        "labels": (MapOf(str), True),
        "organ": (LABEL_VALUES, True),
        "tumor": (LABEL_VALUES, True),
        "output_values": (TWO_CHANNELS_INT, False),
        "channel_names": (TWO_CHANNELS_STR, False),
        "split": (SPLIT, False),
    }
)
COLLECTION = Obj(
    {
        "name": (str, True),
        "description": (str, False),
        "root": (Nullable(str), False),
        "tasks": (ListOf(TASK, min_len=1), True),
    }
)
