"""Replacing a checkpoint directory atomically: assemble aside, then swap it in; recover from a kill at any moment.

`ccq.checkpoint.io.save_checkpoint` writes a hidden sibling directory and calls `swap_in`. On Linux the two
directories are exchanged in one step (renameat2 RENAME_EXCHANGE); elsewhere the previous checkpoint is moved
aside under a fixed name first, and `recover_interrupted` moves it back if the process died in between.
"""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import shutil
import sys
from pathlib import Path

from ccq.utils import fs

_log = logging.getLogger("ccq.checkpoint.io")


def aside_path(path: Path) -> Path:
    return path.parent / f".{path.name}.ccq-previous"


def swap_in(tmp: Path, path: Path) -> None:
    """Move the finished directory `tmp` to `path`, replacing whatever checkpoint is there."""
    if not path.exists():
        os.rename(tmp, path)
        return
    if _exchange(tmp, path):
        # `tmp` now holds the previous checkpoint.
        shutil.rmtree(tmp, ignore_errors=True)
        return
    # No atomic exchange here (not Linux, or a filesystem without RENAME_EXCHANGE): move the old checkpoint
    # aside under a fixed name first. If we are killed before the new one is in place, `recover_interrupted`
    # moves it back the next time anyone opens `path`.
    aside = aside_path(path)
    os.rename(path, aside)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(aside, path)
        raise
    _discard(aside)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories with Linux renameat2(RENAME_EXCHANGE); False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _discard(directory: Path) -> None:
    """Delete a directory, first renaming it so that a half-deleted copy never keeps a meaningful name."""
    trash = directory.parent / f".{directory.name.lstrip('.')}.trash-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.rename(directory, trash)
    except OSError:
        trash = directory
    shutil.rmtree(trash, ignore_errors=True)


def recover_interrupted(path: Path) -> None:
    """Put back a previous checkpoint that a killed `save_checkpoint` had moved aside (see `swap_in`)."""
    aside = aside_path(path)
    if not os.path.lexists(path) and aside.is_dir():
        _log.warning("restoring %s from %s (an earlier save was interrupted)", path, aside)
        os.rename(aside, path)


def remove_stale_siblings(path: Path) -> None:
    """Delete leftovers of saves to `path` that were killed: their temporary and half-deleted directories."""
    prefixes = (f".{path.name}.tmp-", f".{path.name}.ccq-previous.trash-")
    for entry in path.parent.glob(f".{path.name}.*"):
        name = entry.name
        if not entry.is_dir() or not name.startswith(prefixes):
            continue
        pid = name.rsplit("-", 2)[-2]
        if pid.isdigit() and not fs.pid_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)
    aside = aside_path(path)
    if aside.is_dir() and path.is_dir():
        # The new checkpoint landed but the old one was not yet deleted.
        _discard(aside)


def fsync_tree(directory: Path) -> None:
    for entry in directory.rglob("*"):
        if entry.is_file():
            with entry.open("rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(directory)


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (and all of Windows) cannot fsync a directory; the data files are synced
    finally:
        os.close(fd)
