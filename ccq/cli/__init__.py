"""The `ccq` command line. Each subcommand lives in its own module; this one only assembles them."""

from __future__ import annotations

import sys

import typer

from ccq.errors import CCQError, Interrupted
from ccq.training.signals import TrainingInterrupted
from ccq.utils.fs import os_error_message

app = typer.Typer(
    name="ccq",
    help=(
        "CCQ: multi-organ and tumor segmentation in CT, learned from partially labeled datasets.\n\n"
        "Start with `ccq demo` (a complete run on synthetic data), then `ccq summary --preset official`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # The order here is the order of `ccq --help`: a tour from a first run to one's own data.
    from ccq.cli import convert, demo, doctor, evaluate, export, phantom, predict, prepare, reproduce, summary, train

    app.command("demo")(demo.demo)
    app.command("phantom")(phantom.phantom)
    app.command("prepare")(prepare.prepare)
    app.command("train")(train.train)
    app.command("predict")(predict.predict)
    app.command("evaluate")(evaluate.evaluate)
    app.command("reproduce")(reproduce.reproduce)
    app.command("summary")(summary.summary)
    app.command("doctor")(doctor.doctor)
    app.command("convert-official")(convert.convert_official)
    app.command("export")(export.export)


_register()


MAX_MESSAGE_CHARS = 2000
"""The longest error line printed (a message quoting a huge value is cut in the middle)."""


def error_line(message: object) -> str:
    """``ccq: error: MESSAGE`` on one line, at most `MAX_MESSAGE_CHARS` characters of the message."""
    text = " ".join(str(message).splitlines()) or "unknown error"
    if len(text) > MAX_MESSAGE_CHARS:
        half = MAX_MESSAGE_CHARS // 2
        text = f"{text[:half]} ... ({len(text) - 2 * half} characters left out) ... {text[-half:]}"
    return f"ccq: error: {text}"


def _interruption(exit_: SystemExit) -> str | None:
    """The line for Ctrl-C, found in the chain of exceptions behind the exit (typer turns KeyboardInterrupt into
    exit code 130): what the command said it kept (`ccq.errors.Interrupted`), or just that it was interrupted.
    None when no KeyboardInterrupt is behind it (a command that reported its own stop, as ``ccq train`` does)."""
    seen: set[int] = set()
    exc: BaseException | None = exit_
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, Interrupted):
            return f"ccq: interrupted: {' '.join(str(exc).splitlines())}"
        if isinstance(exc, KeyboardInterrupt):
            return "ccq: interrupted"
        exc = exc.__cause__ if exc.__cause__ is not None or exc.__suppress_context__ else exc.__context__
    return None


def main() -> None:
    """Console entry point: user errors (and OSErrors) become one line on stderr and exit code 2; Ctrl-C one
    line saying what was kept, exit code 130; a training stopped by SIGINT/SIGTERM prints how to resume and exits
    with 128 + the signal's number."""
    try:
        app()
    except TrainingInterrupted as stop:  # `ccq train` handles its own; this one comes from `ccq reproduce`
        print(stop, file=sys.stderr)
        sys.exit(128 + stop.signum)
    except CCQError as err:
        print(error_line(err), file=sys.stderr)
        sys.exit(2)
    except OSError as err:  # a read-only or full output location, a vanished input ...: the system's reason
        print(error_line(os_error_message(err)), file=sys.stderr)
        sys.exit(2)
    except MemoryError:  # the limits (ccq.limits) keep inputs far below this; the machine may be short anyway
        print(error_line("out of memory; free memory or use a machine with more (README: Troubleshooting)"),
              file=sys.stderr)  # fmt: skip
        sys.exit(2)
    except SystemExit as exit_:
        line = _interruption(exit_) if exit_.code == 130 else None
        if line is not None:
            print(line, file=sys.stderr)
        raise
