"""Worker processes of ``ccq prepare --workers N``: they end when their parent does, and leave Ctrl-C to it.

A worker holds a CT case in memory for minutes; if ``ccq prepare`` is killed (SIGKILL, an out-of-memory kill, a
closed terminal), its workers must not go on preparing queued cases for nobody. On Linux the kernel sends them
SIGKILL when the parent dies (PR_SET_PDEATHSIG); everywhere, a daemon thread also polls the parent's pid.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time


def init_worker(threads: int, parent: int) -> None:
    """Set up a worker: it ends when its parent does, leaves Ctrl-C to the parent, and shares out the CPUs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the pool and says what was kept
    _exit_with_parent(parent)
    import torch

    torch.set_num_threads(threads)


_PR_SET_PDEATHSIG = 1


def _exit_with_parent(parent: int) -> None:
    """End this process when ``parent`` dies (a SIGKILLed ``ccq prepare`` must not leave its workers running):
    Linux's PR_SET_PDEATHSIG, and everywhere a daemon thread that polls the parent pid once a second."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the thread below still does it
    if os.getppid() != parent:  # it died before the kernel was told to watch
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="ccq-parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)
