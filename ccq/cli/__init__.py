"""The `ccq` command line. Each subcommand lives in its own module; this one only assembles them."""

from __future__ import annotations

import sys

import typer

from ccq.errors import CCQError
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


def main() -> None:
    """Console entry point: user errors (and OSErrors) become one line on stderr and exit code 2; a training
    stopped by SIGINT/SIGTERM prints how to resume and exits with 128 + the signal's number."""
    try:
        app()
    except TrainingInterrupted as stop:  # `ccq train` handles its own; this one comes from `ccq reproduce`
        print(stop, file=sys.stderr)
        sys.exit(128 + stop.signum)
    except CCQError as err:
        print(f"ccq: error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:  # a read-only or full output location, a vanished input ...: the system's reason
        print(f"ccq: error: {os_error_message(err)}", file=sys.stderr)
        sys.exit(2)
