"""User-facing errors: the command line prints their message on one line, without a traceback."""

from __future__ import annotations


class CCQError(Exception):
    """An error caused by the user's input (a file, a value, an option), not by a bug in ccq.

    The message must name the file or value at fault and say what was expected.
    """
