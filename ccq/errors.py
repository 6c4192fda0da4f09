"""User-facing errors: the command line prints their message on one line, without a traceback."""

from __future__ import annotations


class CCQError(Exception):
    """An error caused by the user's input (a file, a value, an option), not by a bug in ccq.

    The message must name the file or value at fault and say what was expected.
    """


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during a command that can say what it kept and how to go on; the command line prints the
    message on one line and exits with 130. A KeyboardInterrupt still, so nothing that catches Exception stops it.
    """
