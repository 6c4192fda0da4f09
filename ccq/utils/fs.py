"""File-system helpers shared by every writer: strict JSON, atomic replacement, temporaries named by their pid.

A file is written under a hidden temporary sibling and renamed into place (``os.replace`` is atomic on one
file system), so a file with its final name is always complete. Temporary names carry the writer's pid, so a
cleanup can tell the leftovers of a killed process from the live temporaries of a concurrent one.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"
_TMP_RE = re.compile(r"\.tmp-(\d+)-[0-9a-f]+")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def temporary_path(path: str | os.PathLike[str], *, keep_suffix: bool = False) -> Path:
    """A hidden sibling of ``path`` named ``.NAME.tmp-PID-RANDOM`` (in the same folder, so a rename is atomic).

    ``keep_suffix``: ``.tmp-PID-RANDOM.NAME`` instead, which still ends like ``path`` (nibabel picks the file
    format from the end of the name).
    """
    path = Path(path)
    tag = f"{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
    return path.with_name(f"{tag}.{path.name}" if keep_suffix else f".{path.name}{tag}")


def temporary_owner(name: str) -> int | None:
    """The pid in a name made by `temporary_path`; None for a name without one."""
    match = _TMP_RE.search(name)
    return int(match.group(1)) if match else None


def jsonable(value: Any, where: str = "value") -> Any:
    """``value`` as strict JSON data: tuples become lists, numpy / 0-d tensor scalars numbers, paths strings, and
    non-finite floats null (``json`` would write ``NaN``, which is not JSON; a NaN score must not fail a run).

    Raises TypeError naming ``where`` (e.g. ``extra['bad']``) for anything else.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        return jsonable(item(), where)
    raise TypeError(f"{where} is a {type(value).__name__}; expected JSON data")


def json_text(data: Any, *, indent: int | None = 2, where: str = "value") -> str:
    """Strict JSON text of ``data`` (see `jsonable`), ending in a newline when indented."""
    text = json.dumps(jsonable(data, where), indent=indent, allow_nan=False)
    return text + "\n" if indent is not None else text


def replace_atomically(
    path: str | os.PathLike[str], write: Callable[[Path], object], *, keep_suffix: bool = False
) -> Path:
    """``write(tmp)`` a temporary sibling, flush it to disk, then rename it over ``path``; returns ``path``.

    On any failure the temporary is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = temporary_path(path, keep_suffix=keep_suffix)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 text atomically (see `replace_atomically`)."""
    return replace_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, indent: int = 2) -> Path:
    """Write strict JSON (NaN -> null, see `jsonable`) atomically; the text is built before the disk is touched."""
    return write_text_atomic(path, json_text(data, indent=indent, where=Path(path).name))


def check_name(name: str, what: str, source: object = None) -> str:
    """``name`` if it is one plain path component (a case id, a task name, a series UID ... from user data):
    not empty, not ``.``/``..``, no separator or NUL, not starting with ``.`` (ccq's temporaries are hidden
    names), at most 255 bytes; else a one-line CCQError naming it and, if given, where it came from."""
    from ccq.errors import CCQError
    from ccq.limits import quote

    problem = None
    if not isinstance(name, str) or not name:
        problem = "is empty" if isinstance(name, str) else f"is a {type(name).__name__}"
    elif name in (".", ".."):
        problem = "names a folder itself"
    elif any(c and c in name for c in ("/", os.sep, os.altsep, "\0")):
        problem = "holds a path separator (or NUL)"
    elif name.startswith("."):
        problem = "starts with '.' (hidden names are ccq's temporaries)"
    elif len(os.fsencode(name)) > 255:
        problem = f"is {len(os.fsencode(name))} bytes long"
    if problem is None:
        return name
    origin = f" (from {source})" if source is not None else ""
    raise CCQError(f"{what} {quote(name)}{origin} {problem}; expected a plain file or folder name: rename it")


def child_path(folder: str | os.PathLike[str], name: str, what: str, source: object = None) -> Path:
    """``folder / name`` for a ``name`` derived from user data, checked to be a plain name (`check_name`) and to
    stay inside ``folder`` (an existing symbolic link there that leads outside is refused)."""
    from ccq.errors import CCQError

    folder = Path(folder)
    path = folder / check_name(name, what, source)
    if path.is_symlink():
        base, final = folder.resolve(), path.resolve()
        if not final.is_relative_to(base):
            raise CCQError(f"{path} is a symbolic link to {final}, outside {folder}; refusing to write through it")
    return path


_TMP_NAME_RE = re.compile(r"^(?:\.tmp-\d+-[0-9a-f]+\.(?P<a>.+)|\.(?P<b>.+)\.tmp-\d+-[0-9a-f]+)$")


def final_path(path: str | os.PathLike[str]) -> Path:
    """The path a temporary made by `temporary_path` stands for (any other path as it is)."""
    path = Path(path)
    match = _TMP_NAME_RE.match(path.name)
    return path.with_name(match.group("a") or match.group("b")) if match else path


def _file_in_the_way(path: Path) -> Path | None:
    """The first part of ``path`` that exists and is not a folder (what makes "Not a directory")."""
    for part in reversed([path, *path.parents]):
        if part.exists() and not part.is_dir():
            return part
    return None


def os_error_message(err: OSError) -> str:
    """One line for an OSError: ``FILE: reason`` (e.g. ``/out/x.json: No space left on device``), naming the
    user's path rather than a temporary, and saying which part of it is a file where a folder was expected."""
    reason = err.strerror or str(err) or type(err).__name__
    names = [n for n in (err.filename, getattr(err, "filename2", None)) if n is not None]
    if not names:
        return reason
    path = final_path(os.fsdecode(names[0]))
    if len(names) > 1 and path != Path(os.fsdecode(names[0])):  # a rename of our temporary onto the user's path
        path = Path(os.fsdecode(names[1]))
    if err.errno == errno.ENOTDIR:
        blocker = _file_in_the_way(path)
        if blocker is not None and blocker != path.parent:  # else "PATH: Not a directory" says it already
            return f"{path}: {reason} ({blocker} is a file, not a folder; choose another path)"
    if err.errno == errno.EEXIST and path.exists() and not path.is_dir():  # the system's words kept last
        return f"a file is where a folder is expected (remove it or choose another path): {path}: {reason}"
    if err.errno == errno.EISDIR:
        return f"{path} is a folder; expected a file there (remove it or choose another output)"
    return f"{path}: {reason}"


def check_output_folder(path: str | os.PathLike[str], option: str) -> None:
    """Before any work: ``path`` (named by ``option``, e.g. ``-o``) can be a folder (it is one, or nothing on the
    way to it is a file); else a one-line CCQError naming the file in the way."""
    from ccq.errors import CCQError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CCQError(f"{option} {path} exists and is a file; expected a folder (new, or one ccq wrote)")
    blocker = _file_in_the_way(path)
    if blocker is not None:
        raise CCQError(f"{option} {path}: {blocker} is a file, not a folder; expected a folder there")


def remove_entries(folder: Path, names: list[str] | set[str]) -> None:
    """Delete the named files and folders of `folder` (a symbolic link is removed, never followed)."""
    for name in sorted(names):
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
