"""Atomic writes, strict JSON and pid-named temporaries (`ccq.utils.fs`)."""

from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from ccq.errors import CCQError
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


@pytest.mark.parametrize("name,problem", [
    ("..", "names a folder itself"), (".", "names a folder itself"), ("", "is empty"), ("a/b", "path separator"),
    ("a\0b", "path separator"), (".hidden", "starts with '.'"), ("x" * 300, "300 bytes long"),
])  # fmt: skip
def test_names_from_user_data_must_be_plain(name: str, problem: str) -> None:
    with pytest.raises(CCQError, match=problem) as info:
        fs.check_name(name, "case name", "input /data/x.nii.gz")
    assert "(from input /data/x.nii.gz)" in str(info.value) and len(str(info.value)) < 250
    assert fs.check_name("liver_0", "case name") == "liver_0"


def test_a_child_path_stays_inside_its_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert fs.child_path(out, "case", "case name") == out / "case"
    (out / "inside").symlink_to(out / "case")  # a link within the folder is fine
    assert fs.child_path(out, "inside", "case name") == out / "inside"
    (out / "escape").symlink_to(tmp_path)
    with pytest.raises(CCQError, match=r"out/escape is a symbolic link to .*, outside .*out; refusing"):
        fs.child_path(out, "escape", "case name")
    with pytest.raises(CCQError, match=r"case name '\.\.'"):
        fs.child_path(out, "..", "case name")


def test_os_errors_name_the_users_path(tmp_path: Path) -> None:
    final = tmp_path / "case" / "liver.nii.gz"
    tmp = fs.temporary_path(final, keep_suffix=True)
    assert fs.final_path(tmp) == final and fs.final_path(fs.temporary_path(final)) == final
    err = IsADirectoryError(errno.EISDIR, "Is a directory", str(tmp), None, str(final))
    expected = f"{final} is a folder; expected a file there (remove it or choose another output)"
    assert fs.os_error_message(err) == expected
    (tmp_path / "a-file").write_text("")
    deep = tmp_path / "a-file" / "x" / "y"
    err = NotADirectoryError(errno.ENOTDIR, "Not a directory", str(deep))
    assert fs.os_error_message(err) == (f"{deep}: Not a directory ({tmp_path / 'a-file'} is a file, not a folder; "
                                        "choose another path)")  # fmt: skip
    err = NotADirectoryError(errno.ENOTDIR, "Not a directory", str(tmp_path / "a-file" / "x"))
    assert fs.os_error_message(err) == f"{tmp_path / 'a-file' / 'x'}: Not a directory"  # the parent: already plain


def test_an_output_folder_with_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    fs.check_output_folder(tmp_path / "new" / "out", "-o")
    with pytest.raises(CCQError, match=r"^-o .*f exists and is a file; expected a folder"):
        fs.check_output_folder(tmp_path / "f", "-o")
    with pytest.raises(CCQError, match=r"^-o .*f/out: .*f is a file, not a folder"):
        fs.check_output_folder(tmp_path / "f" / "out", "-o")
