"""`ccq prepare`: public CT downloads (MSD / LiTS / KiTS19 folders) -> a resampled, memory-mappable cache."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ccq.utils.command_line import flag


@dataclass(frozen=True, kw_only=True)
class PrepareOptions:
    """What ``ccq prepare`` was asked (see its --help); the field order is the order of the flags in a printed
    command line."""

    collection: str = flag("--collection", "mots")
    raw: Path | None = flag("--raw", None)
    preprocessing: Path | None = flag("--preprocessing", None)
    out: Path = flag("--out")
    workers: int = flag("--workers", 1)
    keep_going: bool = flag("--keep-going", False)
    folders: Path | None = flag("--folders", None)
    only_tasks: tuple[str, ...] | None = flag("--tasks", None, spelling="comma")
    """Prepare only these tasks of the collection (the folder still records the whole collection)."""
    progress: bool = flag("--progress", True, negative="--no-progress")


def run_prepare(options: PrepareOptions, echo: Callable[..., None] = print):
    """Prepare every train/test case of the collection; prints and returns the run's summary (its ``ok`` is
    False when a case failed under ``keep_going``)."""
    from ccq.data.collection import load_collection
    from ccq.data.dataset_folders import read_folders_file
    from ccq.data.prepare_run import prepare_collection
    from ccq.data.preprocessing import OFFICIAL_PREPROCESSING

    o = options
    tasks = load_collection(o.collection)
    config = OFFICIAL_PREPROCESSING if o.preprocessing is None else read_preprocessing_file(o.preprocessing)
    mapping = None if o.folders is None else read_folders_file(o.folders, tasks)
    summary = prepare_collection(
        tasks, o.raw, o.out, config, workers=o.workers, keep_going=o.keep_going, folders=mapping,
        progress=o.progress, tasks=None if o.only_tasks is None else list(o.only_tasks),
    )  # fmt: skip
    echo(summary.report())
    return summary


def read_preprocessing_file(path: Path):  # -> PreprocessingConfig (import kept lazy for a fast --help)
    """A preprocessing file or a checkpoint folder's preprocessing (`ccq.data.preprocessing.load_preprocessing`)."""
    from ccq.data.preprocessing import load_preprocessing

    return load_preprocessing(path)
