"""Option declarations shared by the `ccq` subcommands."""

from __future__ import annotations

from typing import Any

import typer


def option(*flags: str, help: str, **kwargs: Any) -> Any:
    """A typer option whose default typer does not print: its help text says what happens when it is not given
    (None: the preset's value, the file's, or nothing), which says more than "None"."""
    return typer.Option(*flags, help=help, show_default=False, **kwargs)
