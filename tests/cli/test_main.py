"""The real entry point: user errors are one line on stderr with exit code 2, no traceback; every --help works."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from ccq.cli import app


def test_user_error_is_one_line_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "ccq", "summary", "--preset", "ofical"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ccq: error: unknown model preset 'ofical'")


def test_os_error_is_one_line_without_traceback(tmp_path):
    """A read-only, full or impossible output location gives the system's reason on one line, exit code 2."""
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "prepared"
    proc = subprocess.run(
        [sys.executable, "-m", "ccq", "prepare", "--out", str(out), "--raw", str(tmp_path), "--no-progress"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"ccq: error: {out}: Not a directory"]


def _commands() -> list[str]:
    import typer.main

    return sorted(typer.main.get_command(app).commands)


def test_the_foundation_commands_are_registered():
    assert {"summary", "convert-official", "phantom", "demo"} <= set(_commands())


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
