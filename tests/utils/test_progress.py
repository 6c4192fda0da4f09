"""Progress bars: redrawn in place on a terminal, a line now and then in a log file."""

from __future__ import annotations

import io

from ccq.utils.progress import LINE_INTERVAL_S, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_every_interval_not_every_update() -> None:
    out = io.StringIO()
    clock = [0.0]
    bar = progress_bar(total=100, desc="train", unit="it", file=out)
    bar._time = lambda: clock[0]  # tqdm's clock, so that the test does not wait
    bar.start_t = bar.last_print_t = 0.0
    for i in range(100):
        clock[0] += LINE_INTERVAL_S / 10
        bar.update(1)
        if i == 50:
            bar.set_postfix(loss="0.5", refresh=False)
    bar.close()
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and text.endswith("\n")
    # The first state, one line per interval (100 updates over 10 intervals), the last state.
    assert 8 <= len(lines) <= 12, lines
    assert lines[0].startswith("train: 0/100") and lines[-1].startswith("train: 100/100")
    assert "loss=0.5" in lines[-1]


def test_a_terminal_gets_the_redrawn_bar() -> None:
    out = _Terminal()
    for _ in progress_bar(range(3), desc="predict", file=out, mininterval=0):
        pass
    assert out.getvalue().count("\r") >= 3 and "predict" in out.getvalue()


def test_a_disabled_bar_writes_nothing() -> None:
    out = io.StringIO()
    for _ in progress_bar(range(3), file=out, disable=True):
        pass
    assert out.getvalue() == ""
