"""`ccq.data.chunked`: compressed chunks in one file; any box reads back exactly, a damaged file is one line."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from ccq.data.chunked import CODEC, MAGIC, ChunkedArray, write_chunked
from ccq.errors import CCQError


def _array(dtype: str, shape=(37, 70, 90)) -> np.ndarray:
    rng = np.random.default_rng(0)
    if dtype == "uint8":
        return (rng.random(shape) < 0.1).astype(np.uint8) * 3
    return rng.normal(0, 200, shape).astype(np.int16)


@pytest.mark.parametrize("dtype", ["int16", "uint8"])
def test_any_box_reads_back_exactly(tmp_path: Path, dtype: str) -> None:
    array = _array(dtype)
    source = array[:, ::-1, 5:]  # any strides: a reoriented view
    nbytes = write_chunked(tmp_path / "a", source, chunks=(16, 32, 32))
    assert nbytes == (tmp_path / "a").stat().st_size
    stored = ChunkedArray(tmp_path / "a")
    assert stored.shape == source.shape and stored.dtype == np.dtype(dtype) and stored.grid == (3, 3, 3)
    assert np.array_equal(stored.read(), source)
    rng = np.random.default_rng(1)
    for _ in range(20):
        lo = [int(rng.integers(0, n)) for n in source.shape]
        hi = [int(rng.integers(a, n + 1)) for a, n in zip(lo, source.shape, strict=True)]
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        assert np.array_equal(stored.read(box), source[box])
    with pytest.raises(CCQError, match="is outside its shape"):
        stored.read((slice(0, 38), slice(0, 1), slice(0, 1)))


def test_compresses_air_and_labels(tmp_path: Path) -> None:
    image = np.full((64, 128, 128), -325, np.int16)
    image[:, 30:90, 20:100] += np.random.default_rng(0).integers(0, 400, (64, 60, 80), dtype=np.int16)
    label = np.zeros(image.shape, np.uint8)
    label[10:40, 40:60, 40:60] = 1
    assert write_chunked(tmp_path / "i", image) < 0.5 * image.nbytes
    assert write_chunked(tmp_path / "l", label) < 0.02 * label.nbytes


def _rewrite(path: Path, header: dict | None = None, data: bytes | None = None) -> None:
    raw = path.read_bytes()
    (n,) = struct.unpack("<I", raw[8:12])
    body = raw[12 + n :]
    text = json.dumps(header).encode() if header is not None else raw[12 : 12 + n]
    path.write_bytes(MAGIC + struct.pack("<I", len(text)) + text + (body if data is None else data))


def test_damaged_files_are_one_line(tmp_path: Path) -> None:
    array = _array("int16", (20, 30, 40))
    good = tmp_path / "good"
    write_chunked(good, array, chunks=(8, 16, 16))
    header = {"dtype": "int16", "shape": [20, 30, 40], "chunks": [8, 16, 16], "codec": CODEC}

    def fails(path: Path, pattern: str, read: bool = False) -> None:
        with pytest.raises(CCQError, match=pattern) as err:
            stored = ChunkedArray(path)
            if read:
                stored.read()
        assert "\n" not in str(err.value) and str(path) in str(err.value)

    bad = tmp_path / "bad"
    bad.write_bytes(b"\x93NUMPY" + b"\0" * 100)
    fails(bad, "not a ccq chunked array")
    bad.write_bytes(good.read_bytes()[:-10])
    fails(bad, "does not match its .* bytes")
    bad.write_bytes(MAGIC + struct.pack("<I", 1 << 30))
    fails(bad, "header of 1073741824 bytes")
    bad.write_bytes(good.read_bytes())
    _rewrite(bad, {**header, "shape": [4000, 4000, 4000]})
    fails(bad, "declares")  # the voxel limit, before anything is allocated
    bad.write_bytes(good.read_bytes())
    _rewrite(bad, {**header, "dtype": "float64"})
    fails(bad, "expected dtype, shape, chunks, codec")
    raw = bytearray(good.read_bytes())
    raw[-5] ^= 0xFF  # one flipped byte in the last chunk
    bad.write_bytes(bytes(raw))
    fails(bad, r"chunk \(2, 1, 2\) is damaged \(CRC-32 mismatch\)", read=True)
    fails(tmp_path / "missing", "missing from the prepared folder")
