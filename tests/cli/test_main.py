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


def _main_with(monkeypatch, capsys, app) -> tuple[int, str]:
    import ccq.cli

    monkeypatch.setattr(ccq.cli, "app", app)
    with pytest.raises(SystemExit) as exit_info:
        ccq.cli.main()
    return exit_info.value.code, capsys.readouterr().err


def test_every_error_is_one_bounded_line(monkeypatch, capsys):
    from ccq.errors import CCQError

    def huge():
        raise CCQError("first line\nsecond " + "x" * 1_000_000)

    code, err = _main_with(monkeypatch, capsys, huge)
    assert code == 2 and err.count("\n") == 1 and len(err) < 2200
    assert err.startswith("ccq: error: first line second xxx") and "characters left out" in err

    def out_of_memory():
        raise MemoryError

    code, err = _main_with(monkeypatch, capsys, out_of_memory)
    assert code == 2 and err.startswith("ccq: error: out of memory") and err.count("\n") == 1


def _typer_like(raise_inside):
    """What typer does with a KeyboardInterrupt: Exit(130) from it, then sys.exit(130)."""
    import typer

    def app():
        try:
            try:
                raise_inside()
            except KeyboardInterrupt as err:
                raise typer.Exit(130) from err
        except typer.Exit as exit_:
            sys.exit(exit_.exit_code)

    return app


def test_ctrl_c_is_one_line_saying_what_was_kept(monkeypatch, capsys):
    import typer

    from ccq.errors import Interrupted

    def kept():
        raise Interrupted("3 case(s) kept; run it again")

    expected = (130, "ccq: interrupted: 3 case(s) kept; run it again\n")
    assert _main_with(monkeypatch, capsys, _typer_like(kept)) == expected

    def plain():
        raise KeyboardInterrupt

    assert _main_with(monkeypatch, capsys, _typer_like(plain)) == (130, "ccq: interrupted\n")

    def reported():  # a command that says itself why it stopped (ccq train saves, then exits 130)
        raise typer.Exit(130) from None

    assert _main_with(monkeypatch, capsys, _typer_like(reported)) == (130, "")
