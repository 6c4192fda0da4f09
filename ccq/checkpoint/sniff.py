"""Recognise what a file is from its first bytes, so that nothing offered as a checkpoint is ever unpickled.

PyTorch `.pth`/`.pt` files are pickles (either bare, or inside a zip archive since torch 1.6); unpickling
runs arbitrary code, so a ccq checkpoint never contains one and the loader names the file type instead of
opening it.
"""

from __future__ import annotations

import struct
from pathlib import Path

import ccq.limits as limits
from ccq.errors import CCQError

# Pickle protocols 2-5 start with the PROTO opcode 0x80 followed by the protocol number; torch.save's legacy
# (non-zip) format writes a protocol-2 pickle of a magic number first, so it starts the same way.
_PICKLE_PROTO = 0x80
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
# Protocols 0 and 1 have no header; they usually open with MARK, GLOBAL, EMPTY_LIST or EMPTY_DICT and always
# end with STOP (".").
_OLD_PICKLE_STARTS = (b"(", b"c", b"]", b"}")
# The largest header we accept before trusting a file as safetensors (the format itself caps it at 100 MB).
_MAX_SAFETENSORS_HEADER = 100_000_000


def sniff_file(path: Path) -> str:
    """Return "pickle", "zip", "safetensors", "json", "empty" or "unknown" for the file at `path`."""
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as err:
        raise CCQError(f"{path}: cannot be read ({err.strerror or err}); expected a ccq checkpoint") from err
    if not head:
        return "empty"
    if len(head) >= 9:
        # safetensors: an 8-byte little-endian header length, then a JSON object. Tested first because the
        # length's low bytes can look like a pickle header (640 = 80 02 ...); a pickle's bytes 0-7 read as a
        # length are far larger than its file.
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < header_len <= min(_MAX_SAFETENSORS_HEADER, path.stat().st_size - 8):
            return "safetensors"
    if head[0] == _PICKLE_PROTO and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if head[:1] in _OLD_PICKLE_STARTS and _last_byte(path) == b".":
        return "pickle"
    if head[:4] in _ZIP_MAGICS:
        return "zip"
    if head.lstrip()[:1] == b"{":
        return "json"
    return "unknown"


def _last_byte(path: Path) -> bytes:
    with path.open("rb") as fh:
        fh.seek(-1, 2)
        return fh.read(1)


def describe_foreign_file(path: Path) -> str:
    """One line saying what `path` is and that it is not a ccq checkpoint directory."""
    kind = sniff_file(path)
    if kind in ("pickle", "zip"):
        what = "a PyTorch pickle file" if kind == "pickle" else "a PyTorch pickle file (zip format)"
        return (
            f"{path} is {what}, not a ccq checkpoint directory; ccq never unpickles files: "
            "convert official checkpoints with `ccq convert-official IN.pth OUT`"
        )
    if kind == "safetensors":
        return (
            f"{path} is a bare safetensors file; expected a ccq checkpoint directory holding "
            "model.safetensors and checkpoint.json"
        )
    if kind == "json":
        return f"{path} is a JSON file; expected the ccq checkpoint directory that contains it"
    return f"{path} is a file ({kind} content); expected a ccq checkpoint directory"


def read_json_object(path: Path) -> dict:
    """Parse `path` as a JSON object, refusing pickles and other binary content by their bytes first."""
    kind = sniff_file(path)
    if kind in ("pickle", "zip", "safetensors", "empty"):
        raise CCQError(f"{path}: is {kind} content; expected a JSON object")
    # Within `ccq.limits`: a bounded size, nesting and integers (a 100,000-deep list or a 5000-digit number in a
    # hostile checkpoint.json would otherwise end in a traceback).
    data = limits.parse_json(limits.read_text(path), str(path), "expected a ccq checkpoint description")
    if not isinstance(data, dict):
        raise CCQError(f"{path}: holds a JSON {type(data).__name__}; expected a JSON object")
    return data
