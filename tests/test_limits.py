"""Named limits (`ccq.limits`): defaults, raising them, and every check a one-line CCQError."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from ccq import limits
from ccq.errors import CCQError


def test_defaults_and_raising_with_the_environment(monkeypatch) -> None:
    assert limits.MAX_VOXELS.get() == 2**30
    monkeypatch.setenv("CCQ_MAX_VOXELS", "5000000000")
    assert limits.MAX_VOXELS.get() == 5_000_000_000
    limits.check_voxels((2000, 2000, 1000), "image x")  # 4e9 voxels: allowed once raised
    monkeypatch.setenv("CCQ_MAX_VOXELS", "lots")
    with pytest.raises(CCQError, match=r"CCQ_MAX_VOXELS='lots': expected a positive integer"):
        limits.MAX_VOXELS.get()
    monkeypatch.setenv("CCQ_MIN_SPACING_MM", "-1")
    with pytest.raises(CCQError, match="CCQ_MIN_SPACING_MM='-1': expected a positive number"):
        limits.MIN_SPACING_MM.get()
    assert {limit.env for limit in limits.LIMITS} >= {"CCQ_MAX_VOXELS", "CCQ_MAX_PATCH_VOXELS", "CCQ_MAX_TEXT_BYTES"}


def test_voxels_over_the_limit_name_the_shape_and_the_variable() -> None:
    assert limits.check_voxels((512, 512, 300), "image a.nii.gz") == 512 * 512 * 300
    with pytest.raises(CCQError, match=r"^image a.nii.gz declares 2000 x 2000 x 2000 = 8e\+09 voxels.*CCQ_MAX_VOXELS"):
        limits.check_voxels((2000, 2000, 2000), "image a.nii.gz")


@pytest.mark.parametrize("spacing,words", [
    ((0.0, 1.0, 1.0), "finite, positive"), ((-1.0, 1.0, 1.0), "finite, positive"),
    ((float("nan"), 1.0, 1.0), "finite, positive"), ((float("inf"), 1.0, 1.0), "finite, positive"),
    ((0.001, 1.0, 1.0), "CCQ_MIN_SPACING_MM"), ((1e6, 1.0, 1.0), "CCQ_MAX_SPACING_MM"),
    (("a", 1, 1), "numbers"),
])  # fmt: skip
def test_implausible_spacings_are_refused(spacing, words) -> None:
    with pytest.raises(CCQError, match=words):
        limits.check_spacing(spacing, "--spacing")
    assert limits.check_spacing((1.5, 0.8, 0.8), "--spacing") == (1.5, 0.8, 0.8)


def test_spacing_bounds_can_be_widened(monkeypatch) -> None:
    monkeypatch.setenv("CCQ_MIN_SPACING_MM", "0.0001")
    assert limits.check_spacing((0.001, 0.001, 0.001), "micro-CT") == (0.001, 0.001, 0.001)


def test_a_grid_over_the_limit_names_both_spacings_and_its_size() -> None:
    limits.check_grid((200, 512, 512), (1.0, 0.7, 0.7), (1.5, 0.8, 0.8), "image ok")
    with pytest.raises(CCQError, match=r"resampling 48 x 96 x 96 voxels of \(50, 50, 50\) mm to \(1\.5, 0\.8, 0\.8\) "
                       r"mm makes a grid of 1600 x 6000 x 6000 = 5\.76e\+10 voxels"):  # fmt: skip
        limits.check_grid((48, 96, 96), (50, 50, 50), (1.5, 0.8, 0.8), "image big")
    with pytest.raises(CCQError, match="no finite grid"):
        limits.check_grid((4, 4, 4), (1.0, 1.0, 1.0), (float("nan"), 1.0, 1.0), "image nan")


def test_memory_check_and_its_switch(monkeypatch) -> None:
    with pytest.raises(CCQError, match=r"need .* GiB of memory, and this process has .* available.*CCQ_MEMORY_CHECK"):
        limits.check_memory(2.0**60, "image x", "its voxels")
    monkeypatch.setenv("CCQ_MEMORY_CHECK", "0")
    limits.check_memory(2.0**60, "image x", "its voxels")


def test_available_memory_respects_the_address_space_limit() -> None:
    script = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (2**31, 2**31)); "
              "from ccq.limits import available_memory; print(available_memory())")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert 0 < int(out) < 2**31


def test_a_cgroup_limit_counts_its_page_cache_as_free(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("8000\n")
    (tmp_path / "memory.current").write_text("5000\n")
    (tmp_path / "memory.stat").write_text("anon 3000\nfile 2000\nkernel 0\n")
    assert limits._cgroup_room(str(tmp_path)) == 8000 - (5000 - 2000)
    (tmp_path / "memory.max").write_text("max\n")
    assert limits._cgroup_room(str(tmp_path)) is None
    assert limits._cgroup_room(str(tmp_path / "absent")) is None


def test_patch_limit() -> None:
    limits.check_patch([64, 192, 192], "checkpoint.json")
    with pytest.raises(CCQError, match=r"patch_size \[4096, 4096, 4096\] = 6\.872e\+10 voxels.*CCQ_MAX_PATCH_VOXELS"):
        limits.check_patch([4096, 4096, 4096], "checkpoint.json")
    with pytest.raises(CCQError, match="three positive integers"):
        limits.check_patch([0, 1, 1], "checkpoint.json")


def test_json_is_strict_and_bounded() -> None:
    assert limits.parse_json('{"a": [1, 2.5, null]}', "x.json") == {"a": [1, 2.5, None]}
    with pytest.raises(CCQError, match=r"^x.json: holds NaN, which is not JSON"):
        limits.parse_json('{"a": NaN}', "x.json")
    with pytest.raises(CCQError, match=r"an integer of 31 digits"):
        limits.parse_json("[" + "1" * 31 + "]", "x.json")
    assert limits.parse_json("[" + "9" * 30 + "]", "x.json") == [int("9" * 30)]
    with pytest.raises(CCQError, match=r"integer of 5000 digits"):  # Python itself refuses to parse these
        limits.parse_json("[" + "1" * 5000 + "]", "x.json")
    with pytest.raises(CCQError, match=r"nested 65\+ levels deep; expected at most 64"):
        limits.parse_json("[" * 65 + "]" * 65, "x.json")
    limits.parse_json("[" * 64 + "]" * 64, "x.json")
    with pytest.raises(CCQError, match="nested too deeply"):
        limits.parse_json("[" * 100_000 + "]" * 100_000, "x.json")
    with pytest.raises(CCQError, match=r"invalid JSON at line 2: Expecting value; expected a thing"):
        limits.parse_json('{"a":\n}', "x.json", "expected a thing")


def test_text_files_are_size_checked_before_reading(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("a: 1\n" * 100)
    assert limits.read_text(path) == "a: 1\n" * 100
    monkeypatch.setenv("CCQ_MAX_TEXT_BYTES", "100")
    with pytest.raises(CCQError, match=r"500 bytes; expected a JSON/YAML file of at most 100 bytes.*MAX_TEXT_BYTES"):
        limits.read_text(path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(CCQError, match="not UTF-8 text"):
        limits.read_text(path)


def test_quote_is_bounded_in_length_and_time() -> None:
    shared: list = ["x"] * 9
    for _ in range(12):  # 9^13 values if printed in full, as an alias-expanded YAML value would be
        shared = [shared] * 9
    start = time.perf_counter()
    texts = [limits.quote(shared), limits.quote("y" * 10_000_000), limits.quote(int("7" * 4000))]
    assert time.perf_counter() - start < 5.0
    assert all(len(t) <= limits.QUOTE_CHARS for t in texts), texts
    assert limits.quote("short") == "'short'"


def test_an_address_space_ceiling_is_what_the_cli_tests_rely_on() -> None:
    """`resource.setrlimit(RLIMIT_AS)` in a child makes a too-large allocation fail there (not here)."""
    script = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30)); "
              "bytearray(2**31)")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode != 0 and "MemoryError" in proc.stderr
