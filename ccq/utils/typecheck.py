"""Checking JSON/YAML data against type hints: the engine of `ccq.utils.config` (read that module first).

`convert` checks one value against one annotation and converts it (lists -> tuples, mappings -> dicts or nested
dataclasses, digit-string keys -> integers); `from_data` builds a dataclass from a mapping of its fields. The
first problem is a `FieldError` whose path grows as it travels out (``organ[1]`` -> ``tasks[0].organ[1]``).
Messages quote at most `SHOWN_LIMIT` characters of a value: a hostile file may hold a huge one.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import numbers
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal, NoReturn, TypeVar, Union

from ccq.errors import CCQError

T = TypeVar("T")
SHOWN_LIMIT = 100
"""The most characters of a given value an error message quotes."""


class NonEmpty:
    """``Annotated[tuple[int, ...], NonEmpty]``: a list with at least one item."""


@dataclasses.dataclass(frozen=True)
class FieldsOf:
    """``Annotated[Mapping[str, Any], FieldsOf(ModelConfig)]``: some fields of another config, each checked
    against its type and converted, nothing built (overrides applied later, on top of a preset)."""

    cls: type


class FieldError(CCQError):
    """One bad field: ``where: path: message``, e.g. ``train config: sampling.bbox_margin: expected ...``.

    ``path`` is relative to the object being built; an enclosing object prefixes its own field with `within`,
    and the outermost names the whole (a config's name, or a file) with `located`.
    """

    def __init__(self, path: str, message: str, *, where: str | None = None, mismatch: bool = False) -> None:
        super().__init__(": ".join(part for part in (where, path, message) if part))
        self.path = path
        self.message = message
        self.where = where
        self.mismatch = mismatch
        """True for "expected <type>, got <value>": an enclosing annotation (``X | None``) may describe it."""

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (errors travel back from worker processes)
        return (_field_error, (self.path, self.message, self.where, self.mismatch))

    @property
    def field(self) -> str:
        return self.path

    def within(self, prefix: str) -> FieldError:
        """The same error one level down, e.g. ``organ`` inside ``tasks[2]`` -> ``tasks[2].organ``."""
        return FieldError(_join(prefix, self.path), self.message, mismatch=self.mismatch)

    def located(self, where: str | None) -> FieldError:
        """The same error naming the whole it belongs to (replacing an inner name)."""
        return FieldError(self.path, self.message, where=where, mismatch=self.mismatch)


def _field_error(path: str, message: str, where: str | None, mismatch: bool) -> FieldError:
    return FieldError(path, message, where=where, mismatch=mismatch)


def _join(prefix: str, path: str) -> str:
    if not prefix or not path:
        return prefix or path
    return prefix + path if path.startswith("[") else f"{prefix}.{path}"


# ---------------------------------------------------------------------------------------------- rendering
def shown(value: Any, limit: int = SHOWN_LIMIT) -> str:
    """A wrong value for a one-line message, in JSON/YAML words (null, true), cut to ``limit`` characters: a
    hostile file may hold a huge value, and it is never rendered whole (not even in memory)."""
    text = _render(value, limit + 1)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _render(value: Any, budget: int) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value[:budget])
    if isinstance(value, list | tuple | Mapping):
        items = value.items() if isinstance(value, Mapping) else value
        opening, closing = ("{", "}") if isinstance(value, Mapping) else ("[", "]")
        parts: list[str] = []
        used = 1
        for item in items:
            if used > budget:
                return opening + ", ".join(parts) + ", ..."  # longer than the budget: `shown` cuts it
            if isinstance(value, Mapping):
                key = _render(item[0], budget - used)
                text = f"{key}: {_render(item[1], budget - used - len(key) - 2)}"
            else:
                text = _render(item, budget - used)
            parts.append(text)
            used += len(text) + 2
        return opening + ", ".join(parts) + closing
    return repr(value)[:budget]


def _key_text(key: Any) -> str:
    """A mapping key as a path component: a short printable string or an integer as is, else quoted and cut."""
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    if isinstance(key, str) and key.isprintable() and 0 < len(key) <= 40:
        return key
    return shown(key, 40)


_SCALARS: dict[type, tuple[str, str]] = {
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    bool: ("true or false", "booleans"),
    str: ("a string", "strings"),
}


def _is_instance(value: Any, kind: type) -> bool:
    # bool is an int in Python, but `organ: [true]` or `iterations: yes` is a typo, not 1.
    if kind is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    return isinstance(value, kind)


def _literal_text(value: Any) -> str:
    return repr(value) if isinstance(value, str) else shown(value)


def describe(hint: Any) -> str:
    """What an annotation accepts, in words: ``tuple[float, float]`` -> "a list of 2 numbers"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return "any value"
    if hint in _SCALARS:
        return _SCALARS[hint][0]
    if origin is Literal:
        return "one of " + ", ".join(_literal_text(a) for a in args)
    if origin is Union or origin is types.UnionType:
        others = [a for a in args if a is not type(None)]
        text = " or ".join(describe(a) for a in others)
        return f"null or {text}" if len(others) < len(args) else text
    if origin is Annotated:
        fields_of = next((m for m in args[1:] if isinstance(m, FieldsOf)), None)
        if fields_of is not None:
            return f"a mapping of {fields_of.cls.__name__} fields"
        text = describe(args[0])
        return text.replace("a ", "a non-empty ", 1) if NonEmpty in args[1:] else text
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        if len(set(args)) == 1:
            return f"a list of {len(args)} {_plural(args[0])}"
        return f"a list of {len(args)} items ({', '.join(describe(a) for a in args)})"
    if origin in (Mapping, dict):
        key, value = args or (Any, Any)
        if key is Any and value is Any:
            return "a mapping"
        return f"a mapping of {_noun(key)} -> {_noun(value)}"
    if _is_dataclass_type(hint):
        return "a mapping with fields " + ", ".join(data_fields(hint))
    return f"a {getattr(hint, '__name__', hint)}"


def _plural(hint: Any) -> str:
    if hint in _SCALARS:
        return _SCALARS[hint][1]
    if _is_dataclass_type(hint):
        return "mappings"
    if typing.get_origin(hint) is Literal:
        return "values among " + ", ".join(_literal_text(a) for a in typing.get_args(hint))
    return f"items ({describe(hint)})"


def _noun(hint: Any) -> str:
    return "any value" if hint is Any else describe(hint).removeprefix("a ").removeprefix("an ")


# ---------------------------------------------------------------------------------------------- checking
def _is_dataclass_type(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


@functools.cache
def data_fields(cls: type) -> dict[str, Any]:
    """The data fields of a dataclass and their resolved annotations, in field order (fields marked
    ``metadata={"config": False}`` are not data: they are neither read from nor checked)."""
    resolved = typing.get_type_hints(cls, include_extras=True)
    return {f.name: resolved[f.name] for f in dataclasses.fields(cls) if f.init and f.metadata.get("config", True)}


def _required(cls: type) -> list[str]:
    missing = dataclasses.MISSING
    fields = {f.name: f for f in dataclasses.fields(cls)}
    return [n for n in data_fields(cls) if fields[n].default is missing and fields[n].default_factory is missing]


def _int_key(key: Any) -> int | None:
    """A mapping key as an integer, or None: JSON writes integer keys as strings ("2")."""
    if _is_instance(key, int):
        return int(key)
    digits = key.strip().removeprefix("-") if isinstance(key, str) else ""
    if digits.isascii() and digits.isdigit() and len(digits) <= 18:  # int() refuses very long digit strings
        return int(key)
    return None


def convert(value: Any, hint: Any, path: str = "") -> Any:
    """``value`` checked against ``hint`` and converted (lists -> tuples, mappings -> dicts or nested
    dataclasses, digit-string keys -> integers); FieldError (relative to ``path``) at the first problem."""

    def mismatch() -> NoReturn:
        raise FieldError(path, f"expected {describe(hint)}, got {shown(value)}", mismatch=True)

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if hint in _SCALARS:
        if not _is_instance(value, hint):
            mismatch()
        return value
    if origin is Literal:
        if not any(_same_literal(value, choice) for choice in args):
            mismatch()
        return value
    if origin is Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        for option in others:
            try:
                return convert(value, option, path)
            except FieldError as err:
                # A problem inside the value (an item, a field) is the one to report when only one
                # option was possible; a plain type mismatch is described by the whole annotation.
                if len(others) == 1 and not (err.mismatch and err.path == path):
                    raise
        mismatch()
    if origin is Annotated:
        fields_of = next((m for m in args[1:] if isinstance(m, FieldsOf)), None)
        if fields_of is not None:
            if not isinstance(value, Mapping):
                mismatch()
            try:
                return _field_values(fields_of.cls, value)
            except FieldError as err:
                raise err.within(path) from None
        if NonEmpty in args[1:] and isinstance(value, list | tuple | Mapping) and not value:
            mismatch()
        try:
            return convert(value, args[0], path)
        except FieldError as err:
            if err.mismatch and err.path == path:
                mismatch()
            raise
    if origin is tuple:
        if not isinstance(value, list | tuple):
            mismatch()
        variadic = len(args) == 2 and args[1] is Ellipsis
        if not variadic and len(value) != len(args):
            mismatch()
        kinds = [args[0]] * len(value) if variadic else list(args)
        return tuple(convert(v, k, f"{path}[{i}]") for i, (v, k) in enumerate(zip(value, kinds, strict=True)))
    if origin in (Mapping, dict):
        if not isinstance(value, Mapping):
            mismatch()
        key_hint, value_hint = args or (Any, Any)
        out = {}
        for key, item in value.items():
            checked = _checked_key(key, key_hint, path)  # the key first: its error is the one to report
            out[checked] = convert(item, value_hint, _join(path, _key_text(key)))
        return out
    if _is_dataclass_type(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, Mapping):
            mismatch()
        try:
            return _build(hint, value)
        except FieldError as err:
            raise err.within(path) from None
    if origin is None and isinstance(hint, type):
        if not isinstance(value, hint):
            mismatch()
        return value
    raise TypeError(f"ccq.utils.config: unsupported annotation {hint!r} at {path or 'the top'}")


def _same_literal(value: Any, choice: Any) -> bool:
    # 1 == True and 1 == 1.0 in Python: a choice matches only a value of its own kind.
    return value == choice and type(value) is type(choice)


def _checked_key(key: Any, hint: Any, path: str) -> Any:
    if hint is Any:
        return key
    if hint is int:
        number = _int_key(key)
        if number is not None:
            return number
        expected = "integer keys"
    elif typing.get_origin(hint) is Literal:
        if any(_same_literal(key, choice) for choice in typing.get_args(hint)):
            return key
        expected = "keys among " + ", ".join(_literal_text(a) for a in typing.get_args(hint))
    else:
        try:
            return convert(key, hint, path)
        except FieldError:
            expected = f"keys that are {_plural(hint)}"
    raise FieldError(path, f"expected {expected}, got key {shown(key, 40)}")


def _unknown(key: Any, known: list[str]) -> FieldError:
    close = difflib.get_close_matches(str(key), known, n=1) if isinstance(key, str) else []
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return FieldError(_key_text(key), f"unknown field{hint}; expected one of {', '.join(known)}")


def _build(cls: type[T], data: Any, base: T | None = None, fixed: Mapping[str, Any] | None = None) -> T:
    """``cls`` from a mapping of field values (over ``base``, whose nested dataclasses take a mapping as
    changes to them); FieldError paths are relative to ``cls``."""
    if not isinstance(data, Mapping):
        raise FieldError("", f"expected {describe(cls)}, got {shown(data)}", mismatch=True)
    hints = data_fields(cls)
    for key in data:
        if key not in hints:
            raise _unknown(key, list(hints))
    if base is None:
        for name in _required(cls):
            if name not in data:
                raise FieldError(name, f"missing field; expected {describe(hints[name])}")
    values = {}
    for name, value in data.items():
        hint, current = hints[name], getattr(base, name, None)
        if _is_dataclass_type(hint) and isinstance(value, Mapping) and isinstance(current, hint):
            try:
                values[name] = _build(hint, value, base=current)
            except FieldError as err:
                raise err.within(name) from None
        else:
            values[name] = convert(value, hint, name)
    values.update(fixed or {})
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)  # type: ignore[type-var]
    except FieldError as err:
        raise err.located(None) from None


def from_data(cls: type[T], data: Any, *, where: str | None = None, base: T | None = None, **fixed: Any) -> T:
    """``cls`` built from JSON/YAML data (or ``base`` with the given fields changed; a mapping given for a
    nested dataclass changes only its given fields). ``fixed`` passes fields that are not data (such as the
    file a collection was read from). Every problem is a one-line FieldError named ``where`` (default: the
    class's ``config_name``): not a mapping, a missing or unknown field, a wrong type, a failed check."""
    try:
        return _build(cls, data, base, fixed)
    except FieldError as err:
        raise err.located(where or getattr(cls, "config_name", cls.__name__)) from None


def _field_values(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """Some fields of ``cls``, each name checked to be a field and each value against its type; nothing built."""
    hints = data_fields(cls)
    out = {}
    for key, value in data.items():
        if key not in hints:
            raise _unknown(key, list(hints))
        out[key] = convert(value, hints[key], key)
    return out
