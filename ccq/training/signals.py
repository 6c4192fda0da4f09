"""SIGINT / SIGTERM during training: finish the current step, save, and exit cleanly.

A scheduler (SLURM, Kubernetes) sends SIGTERM before it kills a job, and a user presses Ctrl-C: in both
cases the run should end with a resumable checkpoint rather than lose everything since the last save.
The handler only records the signal; the training loop polls it between steps (in DDP all ranks agree on
the step through one all-reduce). A second Ctrl-C while stopping interrupts at once.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM stopped the run after it saved a checkpoint: not an error (neither the user's input nor a
    bug). The message says how to resume; the command line prints it and exits with 128 + ``signum``."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class StopRequests:
    """Context manager: while active, SIGINT/SIGTERM set `received` instead of killing the process."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():  # signals can only be caught there
            for sig in HANDLED:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now, without the checkpoint
        self.received = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else ""
