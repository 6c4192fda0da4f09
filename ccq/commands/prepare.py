"""`ccq prepare`: public CT downloads (MSD / LiTS / KiTS19 folders) -> a resampled, memory-mappable cache."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ccq.errors import CCQError
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
    progress: bool = flag("--progress", True, negative="--no-progress")


def run_prepare(options: PrepareOptions, echo: Callable[..., None] = print):
    """Prepare every train/test case of the collection; prints and returns the run's summary (its ``ok`` is
    False when a case failed under ``keep_going``)."""
    from ccq.data.collection import load_collection
    from ccq.data.prepare_run import prepare_collection, read_folders_file
    from ccq.data.preprocessing import OFFICIAL_PREPROCESSING

    o = options
    tasks = load_collection(o.collection)
    config = OFFICIAL_PREPROCESSING if o.preprocessing is None else read_preprocessing_file(o.preprocessing)
    mapping = None if o.folders is None else read_folders_file(o.folders)
    summary = prepare_collection(
        tasks, o.raw, o.out, config, workers=o.workers, keep_going=o.keep_going, folders=mapping,
        progress=o.progress,
    )  # fmt: skip
    echo(summary.report())
    return summary


def read_preprocessing_file(path: Path):  # -> PreprocessingConfig (import kept lazy for a fast --help)
    import ccq.limits as limits
    from ccq.data.collection_io import parse_collection_text
    from ccq.data.preprocessing import PreprocessingConfig

    path = Path(path).expanduser()
    if not path.is_file():
        raise CCQError(f"--preprocessing {path}: no such file; expected a JSON or YAML PreprocessingConfig")
    suffix = ".json" if path.suffix.lower() == ".json" else ".yaml"
    data = parse_collection_text(limits.read_text(path), suffix, str(path))
    if not isinstance(data, dict):
        raise CCQError(f"{path}: expected a mapping of PreprocessingConfig fields (spacing, hu_min ...)")
    try:
        config = PreprocessingConfig.from_dict(data)
    except CCQError as err:
        raise CCQError(f"{path}: {err}") from None
    limits.check_preprocessing(config, str(path))
    return config
