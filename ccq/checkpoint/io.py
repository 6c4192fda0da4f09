"""ccq checkpoints: a directory holding `model.safetensors` (weights) and `checkpoint.json` (everything else).

The JSON carries the model configuration, the preprocessing and the task collection the weights were
trained with, so that weights are never used with the wrong spacing, patch or task list (DoDNet issue #19).
Weights are safetensors and nothing is ever unpickled: a pickle offered as a checkpoint is recognised by its
bytes and refused.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ccq.limits as limits
from ccq.checkpoint.sniff import describe_foreign_file, read_json_object, sniff_file
from ccq.checkpoint.swap import aside_path as _aside_path  # noqa: F401 (where a killed save leaves the old one)
from ccq.checkpoint.swap import fsync_dir as _fsync_dir
from ccq.checkpoint.swap import fsync_tree as _fsync_tree
from ccq.checkpoint.swap import recover_interrupted as _recover_interrupted
from ccq.checkpoint.swap import remove_stale_siblings as _remove_stale_siblings
from ccq.checkpoint.swap import swap_in as _swap_in
from ccq.checkpoint.weights import check_state_dict, check_values
from ccq.checkpoint.weights import tensors_for_saving as _tensors_for_saving
from ccq.checkpoint.weights import unwrap_model as _unwrap
from ccq.errors import CCQError
from ccq.utils import fs

if TYPE_CHECKING:
    import torch

    from ccq.data.collection import Collection
    from ccq.data.preprocessing import PreprocessingConfig
    from ccq.models.config import ModelConfig

CHECKPOINT_FORMAT = "ccq-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
META_NAME = "checkpoint.json"
RUN_CHECKPOINT_NAMES = ("best", "last")
"""Checkpoint sub-directories of a training run directory, in the order `resolve_model_path` prefers them."""

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointMeta:
    """The parsed `checkpoint.json` of a checkpoint directory."""

    path: Path
    model_config: ModelConfig
    preprocessing: PreprocessingConfig
    collection: Collection
    source: str = ""
    created: str = ""
    ccq_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedCheckpoint:
    """A model rebuilt from a checkpoint (weights loaded strictly, eval mode) and what it was trained with."""

    model: torch.nn.Module
    model_config: ModelConfig
    preprocessing: PreprocessingConfig
    collection: Collection
    meta: CheckpointMeta


# ----------------------------------------------------------------------------------------------------- saving


def save_checkpoint(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    *,
    preprocessing: PreprocessingConfig,
    collection: Collection,
    source: str = "",
    extra: Mapping[str, Any] | None = None,
    add_files: Callable[[Path], None] | None = None,
) -> Path:
    """Write `model` (carrying its `ModelConfig` as `model.config`) as a checkpoint directory at `path`.

    The checkpoint is assembled in a hidden sibling directory and swapped in at the end, so a crash or a kill
    at any moment leaves either the previous checkpoint or the new one at `path`, never a mixture. An existing
    checkpoint at `path` is replaced; any other existing file or non-empty directory is refused.
    `add_files(tmp_dir)`, if given, may write further files (say a training state) into the checkpoint before
    the swap, so that they are replaced together with the weights. Returns `path`.
    """
    path = Path(path)
    model = _unwrap(model)
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise TypeError(
            f"save_checkpoint: {type(model).__name__} has no `.config` ModelConfig; build it with build_model"
        )
    _check_consistent(config, preprocessing, collection, where=str(path))
    meta = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": "model",
        "model": config.to_dict(),
        "preprocessing": preprocessing.to_dict(),
        "collection": collection.to_dict(),
        "ccq_version": _ccq_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": str(source),
        "extra": fs.jsonable(dict(extra or {}), "save_checkpoint: extra"),
    }
    # Serialise before touching the disk, so that a non-JSON `extra` fails without leaving anything behind.
    meta_text = fs.json_text(meta)
    tensors = _tensors_for_saving(model.state_dict())

    def write(tmp: Path) -> None:
        from safetensors.torch import save_file

        os.mkdir(tmp)
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "ccq_format": CHECKPOINT_FORMAT})
        # The JSON is written last: a directory that has it is complete.
        (tmp / META_NAME).write_text(meta_text, encoding="utf-8")
        if add_files is not None:
            add_files(tmp)

    return _assemble(path, write)


def copy_checkpoint(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Copy the checkpoint directory `source` to `path` through the same swap as `save_checkpoint`: a kill at
    any moment leaves at `path` the checkpoint it held before or the complete copy. Returns `path`."""
    source = Path(source)
    _require_checkpoint_dir(source)
    return _assemble(Path(path), lambda tmp: shutil.copytree(source, tmp))


def _assemble(path: Path, write: Callable[[Path], object]) -> Path:
    """`write(tmp)` a new checkpoint directory in a hidden sibling of `path`, then swap it in (see `_swap_in`)."""
    _recover_interrupted(path)
    check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_siblings(path)
    tmp = fs.temporary_path(path)
    try:
        write(tmp)
        _fsync_tree(tmp)
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(path.parent)
    return path


def _ccq_version() -> str:
    from ccq._version import __version__

    return __version__


def check_replaceable(path: str | os.PathLike[str]) -> None:
    """Raise CCQError if `path` holds anything but a ccq checkpoint or an empty directory (which a save
    would replace); callers may check early, before expensive work."""
    path = Path(path)
    if path.is_symlink():
        raise CCQError(f"{path} is a symbolic link; refusing to replace it with a checkpoint directory")
    if not path.exists():
        return
    if not path.is_dir():
        raise CCQError(f"{path} exists and is a file, not a ccq checkpoint directory; refusing to replace it")
    if not any(path.iterdir()) or is_checkpoint_dir(path):
        return
    raise CCQError(
        f"{path} exists and is not a ccq checkpoint directory (no {META_NAME} with format "
        f"{CHECKPOINT_FORMAT!r}); refusing to replace it: choose another path or remove it"
    )


# ---------------------------------------------------------------------------------------------------- loading


def is_checkpoint_dir(path: str | os.PathLike[str]) -> bool:
    """True if `path` is a directory whose checkpoint.json declares the ccq checkpoint format."""
    meta = Path(path) / META_NAME
    if not meta.is_file() or sniff_file(meta) != "json":
        return False
    try:
        return read_json_object(meta).get("format") == CHECKPOINT_FORMAT
    except CCQError:
        return False


def read_checkpoint_meta(path: str | os.PathLike[str]) -> CheckpointMeta:
    """Parse and validate a checkpoint's `checkpoint.json`, without building the model or reading weights."""
    path = Path(path)
    _recover_interrupted(path)
    _require_checkpoint_dir(path)
    return _parse_meta(path, read_json_object(path / META_NAME))


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model a checkpoint describes and load its weights strictly; the model is in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ccq.models import build_model

    meta = read_checkpoint_meta(path)
    weights = meta.path / WEIGHTS_NAME
    try:
        tensors = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CCQError(f"{weights}: cannot be read as safetensors ({_first_line(err)}); the file is corrupt") from err
    model = build_model(meta.model_config)
    expected = model.state_dict()
    check_state_dict(weights, tensors, expected)
    check_values(weights, tensors, expected)
    model.load_state_dict(tensors, strict=True)
    model.to(device)
    model.eval()
    return LoadedCheckpoint(
        model=model,
        model_config=meta.model_config,
        preprocessing=meta.preprocessing,
        collection=meta.collection,
        meta=meta,
    )


def resolve_model_path(path: str | os.PathLike[str], *, notify: Callable[[str], None] | None = None) -> Path:
    """The checkpoint directory `path` names: itself, or for a training run directory its `best/`
    (else `last/`). `notify` receives a one-line note when a run directory is mapped to one of its
    checkpoints (default: the log).
    """
    path = Path(path)
    _recover_interrupted(path)
    if path.is_dir() and not (path / META_NAME).exists():
        for name in RUN_CHECKPOINT_NAMES:
            candidate = path / name
            _recover_interrupted(candidate)
            if is_checkpoint_dir(candidate):
                note = f"{path} is a training run directory; using its {name}/ checkpoint {candidate}"
                (notify or _log.info)(note)
                return candidate
    _require_checkpoint_dir(path)
    return path


def _require_checkpoint_dir(path: Path) -> None:
    """Raise a one-line CCQError unless `path` looks like a checkpoint directory; never opens a pickle."""
    expected = f"expected a ccq checkpoint directory holding {WEIGHTS_NAME} and {META_NAME}"
    if not path.exists():
        raise CCQError(f"{path}: no such file or directory; {expected}")
    if not path.is_dir():
        raise CCQError(describe_foreign_file(path))
    if not (path / META_NAME).is_file():
        runs = [n for n in RUN_CHECKPOINT_NAMES if (path / n / META_NAME).is_file()]
        if runs:
            options = " or ".join(str(path / n) for n in runs)
            raise CCQError(f"{path} is a training run directory, not a checkpoint; use {options}")
        raise CCQError(f"{path}: has no {META_NAME}; {expected}")
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        raise CCQError(f"{weights}: missing; {expected}")
    kind = sniff_file(weights)
    if kind in ("pickle", "zip"):
        raise CCQError(
            f"{weights} is a PyTorch pickle file, not safetensors; ccq never unpickles files: "
            "convert official checkpoints with `ccq convert-official IN.pth OUT`"
        )
    if kind != "safetensors":
        raise CCQError(f"{weights}: is not a safetensors file ({kind} content); {expected}")


def _parse_meta(path: Path, raw: dict[str, Any]) -> CheckpointMeta:
    from ccq.data.collection import Collection
    from ccq.data.preprocessing import PreprocessingConfig
    from ccq.models.config import ModelConfig

    where = path / META_NAME
    if raw.get("format") != CHECKPOINT_FORMAT:
        raise CCQError(f"{where}: format={limits.quote(raw.get('format'))}; expected {CHECKPOINT_FORMAT!r}")
    version = raw.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CCQError(f"{where}: format_version={limits.quote(version)}; expected the integer {FORMAT_VERSION}")
    if version > FORMAT_VERSION:
        raise CCQError(
            f"{where}: format_version={version} was written by a newer ccq; this ccq reads version "
            f"{FORMAT_VERSION}: upgrade ccq"
        )
    if version != FORMAT_VERSION:
        raise CCQError(f"{where}: format_version={version}; expected {FORMAT_VERSION}")
    if raw.get("kind") != "model":
        raise CCQError(f"{where}: kind={limits.quote(raw.get('kind'))}; expected 'model'")

    def section(name: str, parse: Callable[[dict[str, Any]], Any]) -> Any:
        value = raw.get(name)
        if not isinstance(value, dict):
            got = "missing" if value is None else f"a {type(value).__name__}"
            raise CCQError(f"{where}: field {name!r} is {got}; expected a JSON object")
        try:
            return parse(value)
        except CCQError as err:
            text = str(err)
            raise CCQError(text if text.startswith(str(where)) else f"{where}: {name}: {text}") from err
        except (TypeError, ValueError, KeyError) as err:
            raise CCQError(f"{where}: {name}: invalid ({_first_line(err)})") from err

    model_config = section("model", ModelConfig.from_dict)
    preprocessing = section("preprocessing", PreprocessingConfig.from_dict)
    # A string source names the field in errors without making a relative `root` resolve against the
    # checkpoint's directory.
    collection = section("collection", lambda d: Collection.from_dict(d, source=f"{where}: collection"))
    limits.check_patch(model_config.patch_size, str(where))  # before a model of that size is built
    limits.check_preprocessing(preprocessing, str(where))
    _check_consistent(model_config, preprocessing, collection, where=str(where))

    extra = raw.get("extra", {})
    if not isinstance(extra, dict):
        raise CCQError(f"{where}: field 'extra' is a {type(extra).__name__}; expected a JSON object")
    for name in ("source", "created", "ccq_version"):
        if not isinstance(raw.get(name, ""), str):
            raise CCQError(f"{where}: field {name!r}={limits.quote(raw[name])}; expected a string")
    return CheckpointMeta(
        path=path,
        model_config=model_config,
        preprocessing=preprocessing,
        collection=collection,
        source=raw.get("source", ""),
        created=raw.get("created", ""),
        ccq_version=raw.get("ccq_version", ""),
        extra=extra,
    )


def _check_consistent(model_config: Any, preprocessing: Any, collection: Any, *, where: str) -> None:
    """The three configurations must describe the same network input and the same tasks."""
    model_patch = tuple(int(p) for p in model_config.patch_size)
    if model_patch != tuple(preprocessing.patch_size):
        raise CCQError(
            f"{where}: model patch_size {list(model_patch)} differs from preprocessing patch_size "
            f"{list(preprocessing.patch_size)}; expected the same patch (the positional embedding is sized "
            "for it)"
        )
    if int(model_config.num_tasks) != int(collection.num_tasks):
        raise CCQError(
            f"{where}: model num_tasks={model_config.num_tasks} but the task collection has "
            f"{collection.num_tasks} tasks; expected equal"
        )
    preprocessing.check_tasks(collection.task_names, f"{where}: preprocessing")  # per-task grids name real tasks


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
