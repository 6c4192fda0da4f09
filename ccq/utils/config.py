"""One typed mechanism for every configuration dataclass: checked against the fields' type hints.

The model, training, preprocessing, sampling and augmentation configurations and the task collections are
frozen dataclasses whose annotations say what a field accepts. `Config` checks those annotations whenever an
instance is made (from JSON/YAML data, in Python, or by ``replace``), converts JSON's lists into tuples and
mappings into nested dataclasses, and reports the first problem as one line naming the field path::

    train config: sampling.augmentation.scale_range: expected a list of 2 numbers, got 2
    data/mots.yaml: tasks[2].organ[0]: expected an integer, got '1'

Understood annotations (`ccq.utils.typecheck` does the checking): ``int``, ``float`` (integers accepted),
``bool``, ``str``, ``Literal[...]`` (the one place a field's choices are written: where a tuple of them is
needed, it is ``typing.get_args`` of the Literal), ``tuple[T, ...]`` and ``tuple[T1, T2]``, ``Mapping[K, V]``
(integer keys may come as digit strings, as JSON writes them), ``X | None``, nested dataclasses (a mapping in
the data), ``Annotated[T, NonEmpty]``, ``Annotated[Mapping[str, Any], FieldsOf(OtherConfig)]`` and ``Any``.
Checks the types cannot express (ranges, relations between fields) go in a class's ``_validate`` and fail
through `Config._fail`, so that they read the same way. A field with ``metadata={"config": False}`` is not
data (neither read, written nor checked).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, NoReturn, TypeVar

from ccq.utils.typecheck import FieldError, FieldsOf, NonEmpty, convert, data_fields, from_data, shown

T = TypeVar("T")

__all__ = ["Config", "FieldError", "FieldsOf", "NonEmpty", "from_data", "shown", "to_data"]


def to_data(value: Any) -> Any:
    """JSON data of a config: dataclasses as mappings of their data fields, tuples as lists, mapping keys as
    strings (as JSON has them), so that ``from_data(cls, to_data(c)) == c``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: to_data(getattr(value, name)) for name in data_fields(type(value))}
    if isinstance(value, list | tuple):
        return [to_data(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_data(v) for k, v in value.items()}
    return value


_GIVEN = object()


class Config:
    """Base of the frozen configuration dataclasses: every instance has its fields checked and converted
    against their annotations (then ``_validate``), however it was made; errors name ``config_name``.

    Subclasses put checks the types cannot express in ``_validate`` (never in ``__post_init__``), failing
    with `_fail`.
    """

    config_name: ClassVar[str] = "config"

    def __post_init__(self) -> None:
        try:
            for name, hint in data_fields(type(self)).items():
                value = getattr(self, name)
                converted = convert(value, hint, name)
                if converted is not value:
                    object.__setattr__(self, name, converted)
            self._validate()
        except FieldError as err:
            raise err.located(self.config_name) from None

    def _validate(self) -> None:
        """Checks beyond the field types; raise through `_fail`."""

    def _fail(self, field: str, expected: str, value: Any = _GIVEN) -> NoReturn:
        """``field: expected <expected>, got <value>`` (default: the field's value)."""
        got = getattr(self, field) if value is _GIVEN else value
        raise FieldError(field, f"expected {expected}, got {shown(got)}")

    def to_dict(self) -> dict[str, Any]:
        return to_data(self)

    @classmethod
    def from_dict(cls: type[T], data: Any, base: T | None = None) -> T:
        """From JSON/YAML data; with ``base``, only the given fields change (a nested mapping changes only
        the fields it gives)."""
        return from_data(cls, data, base=base)

    def replace(self: T, **changes: Any) -> T:
        """A copy with ``changes`` (checked like data: an unknown field or a wrong type is a FieldError)."""
        return from_data(type(self), changes, base=self)
