"""Atomic writes, strict JSON and pid-named temporaries (`ccq.utils.fs`)."""

from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from ccq.utils import fs

DEAD_PID = 2**22 + 12345  # above the default pid_max, so no such process


def test_json_is_strict_nan_becomes_null(tmp_path: Path) -> None:
    data = {"dice": {"liver": math.nan, "spleen": np.float32(0.5)}, "n": np.int64(3), "shape": (1, 2),
            "path": tmp_path, "inf": -math.inf}  # fmt: skip
    path = fs.write_json_atomic(tmp_path / "r.json", data)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"dice": {"liver": None, "spleen": 0.5}, "n": 3, "shape": [1, 2],
                                "path": str(tmp_path), "inf": None}  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    with pytest.raises(TypeError, match=r"where\['bad'\] is a object"):
        fs.json_text({"bad": object()}, where="where")


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    with pytest.raises(OSError):
        fs.replace_atomically(path, broken)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    fs.write_text_atomic(path, "new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_temporary_names_carry_the_pid(tmp_path: Path) -> None:
    plain = fs.temporary_path(tmp_path / "manifest.json")
    kept = fs.temporary_path(tmp_path / "liver.nii.gz", keep_suffix=True)
    assert plain.parent == tmp_path and plain.name.startswith(".manifest.json.tmp-")
    assert kept.name.startswith(".tmp-") and kept.name.endswith(".liver.nii.gz")
    assert fs.temporary_owner(plain.name) == fs.temporary_owner(kept.name) == os.getpid()
    assert fs.temporary_owner("manifest.json") is None and fs.temporary_owner(".x.tmp-1a2b3c4d") is None
    assert fs.pid_alive(os.getpid()) and not fs.pid_alive(DEAD_PID)


def test_os_error_message_is_one_line() -> None:
    assert fs.os_error_message(OSError(errno.EROFS, "Read-only file system", "/out/x")) == (
        "/out/x: Read-only file system"
    )
    assert fs.os_error_message(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device"
