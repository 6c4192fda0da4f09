"""A stop request is not an error: `TrainingInterrupted` is no `CCQError`, and the `ccq` entry point turns it
into the resume message and exit code 128 + the signal (SIGTERM during training: see test_resume)."""

from __future__ import annotations

import signal
import sys

import pytest

import ccq.cli
from ccq.errors import CCQError
from ccq.training.signals import StopRequests, TrainingInterrupted


def test_an_interruption_is_not_a_user_error() -> None:
    assert not issubclass(TrainingInterrupted, CCQError)


def test_the_entry_point_prints_the_message_and_exits_128_plus_the_signal(monkeypatch, capsys) -> None:
    def interrupted() -> None:  # as `ccq reproduce` sees a Trainer stopped by SIGTERM
        raise TrainingInterrupted("stopped by SIGTERM at iteration 7; Continue with: ccq train --resume", 15)

    monkeypatch.setattr(ccq.cli, "app", interrupted)
    monkeypatch.setattr(sys, "argv", ["ccq", "reproduce"])
    with pytest.raises(SystemExit) as info:
        ccq.cli.main()
    assert info.value.code == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert err == "stopped by SIGTERM at iteration 7; Continue with: ccq train --resume\n"


def test_stop_requests_record_the_signal_and_restore_the_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with StopRequests() as stops:
        signal.raise_signal(signal.SIGTERM)
        assert stops.received == signal.SIGTERM and stops.name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before
