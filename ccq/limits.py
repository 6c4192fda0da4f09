"""Named limits on what ccq reads: sizes and values checked before anything is allocated.

A file's header can declare any size, and a few bytes can declare billions of voxels; a configuration can ask for
any patch or spacing. Every reader checks what it is about to allocate against these limits (and against the
memory this process can have) first, and refuses with one line naming the file, the value and the limit. Each
default is far above what a real CT needs; each can be raised with an environment variable for a rare real case
(README, "Troubleshooting"), e.g. ``CCQ_MAX_VOXELS=4000000000 ccq predict ...``.
"""

from __future__ import annotations

import json
import math
import os
import reprlib
import resource
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ccq.errors import CCQError


@dataclass(frozen=True)
class Limit:
    """One limit: its environment variable, its default and what it bounds."""

    env: str
    default: float
    what: str
    integer: bool = True

    def get(self) -> float:
        """The value in force: the environment variable if set (checked), else the default."""
        text = os.environ.get(self.env, "").strip()
        if not text:
            return self.default
        try:
            value = int(text) if self.integer else float(text)
        except ValueError:
            value = -1
        if not (value > 0 and math.isfinite(value)):
            kind = "a positive integer" if self.integer else "a positive number"
            raise CCQError(f"{self.env}={quote(text)}: expected {kind} ({self.what}; default {self.default:g})")
        return value

    def hint(self) -> str:
        """How to raise it, for messages."""
        return f"raise it with the environment variable {self.env}"


MAX_VOXELS = Limit("CCQ_MAX_VOXELS", 2**30, "voxels in one image, label map or working grid")
"""1.07e9 voxels: a 512 x 512 x 4096 CT; routine CTs have under 2e8 (4 GB as float32 at the limit)."""
MIN_SPACING_MM = Limit("CCQ_MIN_SPACING_MM", 0.01, "smallest voxel size in mm", integer=False)
MAX_SPACING_MM = Limit("CCQ_MAX_SPACING_MM", 100.0, "largest voxel size in mm", integer=False)
MAX_PATCH_VOXELS = Limit("CCQ_MAX_PATCH_VOXELS", 2**25, "voxels in a network patch")
"""33.5e6 voxels (e.g. 128 x 512 x 512); the official patch is 64 x 192 x 192 = 2.4e6."""
MAX_TEXT_BYTES = Limit("CCQ_MAX_TEXT_BYTES", 64 * 2**20, "bytes of a JSON or YAML file")
MAX_NESTING = Limit("CCQ_MAX_NESTING", 64, "nesting depth of a JSON or YAML file")
MAX_INT_DIGITS = Limit("CCQ_MAX_INT_DIGITS", 30, "digits of an integer in a JSON file")
MAX_YAML_EXPANSION = Limit("CCQ_MAX_YAML_EXPANSION", 1_000_000, "values and characters YAML aliases may add to a file")
MEMORY_CHECK_ENV = "CCQ_MEMORY_CHECK"
"""Set to 0 to skip the comparison of a declared size with the memory available (the named limits still hold)."""

LIMITS = (MAX_VOXELS, MIN_SPACING_MM, MAX_SPACING_MM, MAX_PATCH_VOXELS, MAX_TEXT_BYTES, MAX_NESTING,
          MAX_INT_DIGITS, MAX_YAML_EXPANSION)  # fmt: skip

QUOTE_CHARS = 80
"""The most characters of a value a message quotes."""

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxlist, _repr.maxtuple, _repr.maxdict, _repr.maxset = 3, 6, 6, 6, 6
_repr.maxstring, _repr.maxother, _repr.maxlong = QUOTE_CHARS, QUOTE_CHARS, 40


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)`` bounded in time and length: a bad value of any size is quoted in at most ``limit`` chars."""
    try:
        text = _repr.repr(value)
    except Exception:  # a repr that fails (e.g. an integer of more digits than Python prints)
        text = f"<a {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------------------------------ sizes


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


def shape_text(shape: Sequence[int]) -> str:
    return " x ".join(str(int(n)) for n in shape)


def check_voxels(shape: Sequence[int], where: str, what: str = "declares") -> int:
    """The number of voxels of ``shape``, or a CCQError when it is above `MAX_VOXELS`."""
    voxels = math.prod(int(n) for n in shape)
    limit = MAX_VOXELS.get()
    if voxels > limit:
        raise CCQError(
            f"{where} {what} {shape_text(shape)} = {voxels:.4g} voxels; expected at most {limit:.4g} "
            f"({MAX_VOXELS.hint()})"
        )
    return voxels


def _read_proc(path: str, key: str) -> int | None:
    """A ``key:  N kB`` value of a /proc file, in bytes (None where there is none)."""
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_room(root: str = "/sys/fs/cgroup") -> int | None:
    """Bytes this process's (cgroup v2) memory limit still allows, counting its page cache as free (the kernel
    reclaims it); None without a limit."""
    try:
        with open(f"{root}/memory.max", encoding="ascii") as f:
            text = f.read().strip()
        if text == "max":
            return None
        with open(f"{root}/memory.current", encoding="ascii") as f:
            current = int(f.read().strip())
        cache = 0
        with open(f"{root}/memory.stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("file "):
                    cache = int(line.split()[1])
        return int(text) - (current - cache)
    except (OSError, ValueError, IndexError):
        return None


def available_memory() -> int | None:
    """Bytes this process can still allocate: free memory (with swap), within its cgroup and address-space
    limits; None where it cannot be told (then only the named limits apply)."""
    room = []
    mem = _read_proc("/proc/meminfo", "MemAvailable")
    if mem is not None:
        room.append(mem + (_read_proc("/proc/meminfo", "SwapFree") or 0))
    cgroup = _cgroup_room()
    if cgroup is not None:
        room.append(cgroup)
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        used = _read_proc("/proc/self/status", "VmSize")
        if used is not None:
            room.append(soft - used)
    return max(0, min(room)) if room else None


def check_memory(nbytes: float, where: str, what: str) -> None:
    """CCQError when ``nbytes`` (``what``: e.g. "the voxels as float32") exceed the memory available."""
    if os.environ.get(MEMORY_CHECK_ENV, "").strip() == "0":
        return
    room = available_memory()
    if room is not None and nbytes > room:
        raise CCQError(
            f"{where}: {what} need {gib(nbytes)} of memory, and this process has {gib(room)} available; "
            f"expected an image that fits (free memory, or set {MEMORY_CHECK_ENV}=0 to try anyway)"
        )


# ------------------------------------------------------------------------------------------------ geometry


def check_spacing(spacing: Sequence[Any], where: str, what: str = "spacing") -> tuple[float, ...]:
    """Voxel sizes in mm as floats, each finite and within [`MIN_SPACING_MM`, `MAX_SPACING_MM`]; else a CCQError
    naming them (zero, negative, NaN, inf and sizes no CT has)."""
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise CCQError(f"{where}: {what} {quote(spacing)}; expected voxel sizes in mm (numbers)") from None
    lo, hi = MIN_SPACING_MM.get(), MAX_SPACING_MM.get()
    for v in values:
        if not math.isfinite(v) or v <= 0:
            raise CCQError(f"{where}: {what} {_mm(values)} mm; expected finite, positive voxel sizes in mm")
        if not lo <= v <= hi:
            env = MIN_SPACING_MM.env if v < lo else MAX_SPACING_MM.env
            raise CCQError(
                f"{where}: {what} {_mm(values)} mm; expected voxel sizes from {lo:g} to {hi:g} mm (raise the "
                f"bound with the environment variable {env})"
            )
    return values


def _mm(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def check_grid(shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float], where: str) -> None:
    """Before resampling ``shape`` from ``spacing`` to ``new_spacing`` (mm): the new grid's voxels are within
    `MAX_VOXELS` and its float32 array fits in memory; the message names both spacings and the new size."""
    extent = [int(n) * float(s) / float(t) for n, s, t in zip(shape, spacing, new_spacing, strict=True)]
    if not all(math.isfinite(e) for e in extent):
        raise CCQError(f"{where}: resampling from {_mm(spacing)} mm to {_mm(new_spacing)} mm gives no finite grid")
    new_shape = [max(1, round(e)) for e in extent]
    voxels = math.prod(new_shape)
    limit = MAX_VOXELS.get()
    if voxels > limit:
        raise CCQError(
            f"{where}: resampling {shape_text(shape)} voxels of {_mm(spacing)} mm to {_mm(new_spacing)} mm makes a "
            f"grid of {shape_text(new_shape)} = {voxels:.4g} voxels; expected at most {limit:.4g} "
            f"({MAX_VOXELS.hint()}; check the spacing)"
        )
    check_memory(4.0 * voxels, where, f"the resampled grid of {shape_text(new_shape)} voxels (float32)")


def check_patch(patch_size: Sequence[Any], where: str) -> None:
    """A patch of three positive sizes whose voxels are within `MAX_PATCH_VOXELS` (before a model is built)."""
    try:
        sizes = [int(p) for p in patch_size]
    except (TypeError, ValueError, OverflowError):
        raise CCQError(f"{where}: patch_size {quote(patch_size)}; expected three positive integers") from None
    if len(sizes) != 3 or min(sizes) < 1:
        raise CCQError(f"{where}: patch_size {quote(patch_size)}; expected three positive integers")
    limit = MAX_PATCH_VOXELS.get()
    if math.prod(sizes) > limit:
        raise CCQError(
            f"{where}: patch_size {sizes} = {math.prod(sizes):.4g} voxels; expected at most {limit:.4g} "
            f"({MAX_PATCH_VOXELS.hint()})"
        )


def check_preprocessing(preprocessing: Any, where: str) -> None:
    """A `PreprocessingConfig` from a file: its working spacings plausible, its patch within `MAX_PATCH_VOXELS`."""
    check_spacing(preprocessing.spacing, where, "preprocessing spacing")
    for task, grid in getattr(preprocessing, "task_grids", {}).items():
        check_spacing(grid.spacing, where, f"task_grids.{task} spacing")
    check_patch(preprocessing.patch_size, where)


# ------------------------------------------------------------------------------------------------ text files


def check_text_size(path: os.PathLike[str] | str, where: str | None = None) -> None:
    """CCQError when the file is larger than `MAX_TEXT_BYTES` (checked before it is read)."""
    size = os.stat(path).st_size
    limit = MAX_TEXT_BYTES.get()
    if size > limit:
        raise CCQError(
            f"{where or path}: {size:.4g} bytes; expected a JSON/YAML file of at most {limit:.4g} bytes "
            f"({MAX_TEXT_BYTES.hint()})"
        )


def read_text(path: os.PathLike[str] | str, where: str | None = None) -> str:
    """A UTF-8 text file of at most `MAX_TEXT_BYTES`; one-line CCQErrors for oversized or undecodable files."""
    check_text_size(path, where)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as err:
        raise CCQError(f"{where or path}: not UTF-8 text (byte {err.start}); expected a JSON/YAML file") from None


class _JSONLimit(ValueError):
    pass


def _parse_int(text: str) -> int:
    digits, limit = len(text) - text.startswith("-"), MAX_INT_DIGITS.get()
    if digits > limit:
        raise _JSONLimit(
            f"an integer of {digits} digits ({quote(text, 24)}); expected at most {limit:g} ({MAX_INT_DIGITS.hint()})"
        )
    return int(text)


def _parse_constant(name: str) -> float:
    raise _JSONLimit(f"{name}, which is not JSON; expected finite numbers")


def check_text_length(text: str, where: str) -> None:
    """CCQError when a text to parse is longer than `MAX_TEXT_BYTES` characters."""
    limit = MAX_TEXT_BYTES.get()
    if len(text) > limit:
        raise CCQError(f"{where}: {len(text):.4g} characters; expected at most {limit:.4g} ({MAX_TEXT_BYTES.hint()})")


def parse_json(text: str, where: str, expected: str = "") -> Any:
    """Strict JSON with bounded resources: no NaN/Infinity, no integer over `MAX_INT_DIGITS` digits, no nesting
    deeper than `MAX_NESTING`; every failure one CCQError line naming ``where`` (and ``expected``, if given)."""
    check_text_length(text, where)
    try:
        data = json.loads(text, parse_int=_parse_int, parse_constant=_parse_constant)
    except json.JSONDecodeError as err:
        tail = f"; {expected}" if expected else ""
        raise CCQError(f"{where}: invalid JSON at line {err.lineno}: {err.msg}{tail}") from None
    except _JSONLimit as err:
        raise CCQError(f"{where}: holds {err}") from None
    except RecursionError:
        depth = f"at most {MAX_NESTING.get():g} levels ({MAX_NESTING.env})"
        raise CCQError(f"{where}: JSON nested too deeply; expected {depth}") from None
    check_nesting(data, where)
    return data


def check_nesting(data: Any, where: str) -> None:
    """CCQError when lists/objects nest deeper than `MAX_NESTING` (walked without recursion)."""
    limit = MAX_NESTING.get()
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            raise CCQError(f"{where}: nested {depth:g}+ levels deep; expected at most {limit:g} ({MAX_NESTING.env})")
        stack.extend((child, depth + 1) for child in children)
