"""Options dataclasses that know their command-line flags, and the command line equivalent to given options.

A command's options (e.g. `ccq.commands.train.TrainOptions`) declare each field with `flag(...)`: the flag that
sets it and how a value is spelled. `command_line` turns options back into the arguments of the `ccq` command
that would produce them, so that `ccq demo` prints the commands a user can copy without writing each one twice
(tests parse every printed line back through the command line and compare the options).
"""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any, Literal

Spelling = Literal["value", "comma", "spread", "repeat"]
"""How a sequence is written: "comma" (--tasks a,b), "spread" (--shape 48 96 96), "repeat" (--set a --set b)."""


def flag(
    name: str,
    default: Any = dataclasses.MISSING,
    *,
    negative: str | None = None,
    spelling: Spelling = "value",
) -> Any:
    """A dataclass field set by the option `name` (e.g. "--out"); `negative` is the flag that turns a boolean off
    (e.g. "--no-progress"). No default: a required option."""
    metadata = {"flag": name, "negative": negative, "spelling": spelling}
    return dataclasses.field(default=default, metadata=metadata)


def _spell(value: Any) -> str:
    return str(value)


def command_line(command: str, options: Any) -> list[str]:
    """The arguments after `ccq` that give `options`: the command, then every flagged field that is required or
    differs from its default, in field order. Raises ValueError for a value no flag can express (a boolean off
    without a negative flag, None where the default is not None)."""
    argv = [command]
    for field in dataclasses.fields(options):
        name = field.metadata.get("flag")
        if name is None:
            continue
        value = getattr(options, field.name)
        if field.default is not dataclasses.MISSING and value == field.default:
            continue
        if value is None:
            raise ValueError(f"{command} {name}: None cannot be written on the command line")
        if isinstance(value, bool):
            negative = field.metadata["negative"]
            if not value and negative is None:
                raise ValueError(f"{command} {name}: False needs a negative flag")
            argv.append(name if value else negative)
            continue
        spelling = field.metadata["spelling"]
        if spelling == "comma":
            argv += [name, ",".join(map(_spell, value))]
        elif spelling == "spread":
            argv += [name, *map(_spell, value)]
        elif spelling == "repeat":
            for item in value:
                argv += [name, _spell(item)]
        else:
            argv += [name, _spell(value)]
    return argv


def quoted(argv: list[str]) -> str:
    """``ccq ARGS``, quoted for a POSIX shell."""
    return "ccq " + shlex.join(argv)
