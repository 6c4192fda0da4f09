"""Progress bars that suit both a terminal and a log file.

On a terminal, tqdm redraws its bar in place. Written to a file or a pipe (a batch job's log, ``ccq prepare
... 2> prepare.log``), every redraw would land in the log, so there the bar prints a plain line now and then
(every `LINE_INTERVAL_S` seconds, plus the first and the last state) instead.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm import tqdm

LINE_INTERVAL_S = 30.0
"""Seconds between two lines when the output is not a terminal."""
LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


def progress_bar(iterable: Iterable[Any] | None = None, *, file: TextIO | None = None, **kwargs: Any) -> tqdm:
    """A `tqdm` bar on ``file`` (default: stderr); when ``file`` is not a terminal, one line every
    `LINE_INTERVAL_S` seconds instead of a redraw at every update. ``kwargs`` go to tqdm unchanged."""
    stream = sys.stderr if file is None else file
    if not _is_terminal(stream):
        # miniters=1: the time alone decides (tqdm's monitor thread, which redraws bars it thinks are stuck,
        # then leaves the bar alone and cannot add a second line right after a timed one).
        kwargs = {"mininterval": LINE_INTERVAL_S, "miniters": 1, "bar_format": LINE_FORMAT, **kwargs,
                  "dynamic_ncols": False}  # fmt: skip
        stream = _Lines(stream)
    return tqdm(iterable, file=stream, **kwargs)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class _Lines:
    """A stream for tqdm that turns each in-place redraw (``"\\r" + status + padding``) into one line and drops
    the bare carriage returns, newlines and cursor moves that only make sense on a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        line = text.replace("\x1b[A", "").strip()
        if line:
            self._stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self._stream.flush()
