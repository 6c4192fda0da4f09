"""Checkpoints: a directory of `model.safetensors` + `checkpoint.json` (model, preprocessing, tasks).

Nothing here ever unpickles a file; official `.pth` checkpoints are converted once with
`ccq convert-official`.
"""

from __future__ import annotations

from ccq.checkpoint.io import (
    CHECKPOINT_FORMAT,
    FORMAT_VERSION,
    META_NAME,
    WEIGHTS_NAME,
    CheckpointMeta,
    LoadedCheckpoint,
    check_replaceable,
    copy_checkpoint,
    is_checkpoint_dir,
    load_checkpoint,
    read_checkpoint_meta,
    resolve_model_path,
    save_checkpoint,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "FORMAT_VERSION",
    "META_NAME",
    "WEIGHTS_NAME",
    "CheckpointMeta",
    "LoadedCheckpoint",
    "check_replaceable",
    "copy_checkpoint",
    "is_checkpoint_dir",
    "load_checkpoint",
    "read_checkpoint_meta",
    "resolve_model_path",
    "save_checkpoint",
]
