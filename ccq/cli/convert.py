"""`ccq convert-official IN.pth OUT`: an official CCQ / DoDNet `.pth` state dict -> a ccq checkpoint."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from ccq.errors import CCQError

# Official checkpoints were saved from DistributedDataParallel (`module.`), and an older revision named the
# transformer `CCQ` instead of `CQTr`: the positional embedding may carry any of these names.
_POS_EMBED_KEYS = ("CQTr.pos_embed", "CCQ.pos_embed")
_CONTAINER_KEYS = ("state_dict", "model")


def convert_official(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            help="Official .pth file (a state dict saved by the authors' code).",
            metavar="IN.pth",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Argument(help="ccq checkpoint directory to write.", metavar="OUT", show_default=False)],
    preset: Annotated[str, typer.Option(help="Model preset of the weights (official, dodnet, ...).")] = "official",
    patch: Annotated[
        tuple[int, int, int],
        typer.Option(help="Patch size D H W the model was trained with; it sizes the positional embedding."),
    ] = (64, 192, 192),
    collection: Annotated[
        str, typer.Option(help="Task collection the weights were trained on: 'mots' or a collection file.")
    ] = "mots",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it is already a checkpoint.")] = False,
) -> None:
    """Convert an official CCQ (or DoDNet) checkpoint to a ccq checkpoint directory (safetensors + JSON).

    IN.pth is read with torch.load(weights_only=True), which refuses anything but tensors (no code runs).

    Every weight must find its place: missing and unexpected names are listed, never ignored.
    """
    from ccq.checkpoint.io import check_replaceable, save_checkpoint
    from ccq.data.collection import load_collection
    from ccq.data.preprocessing import OFFICIAL_PREPROCESSING
    from ccq.models import build_model
    from ccq.models.official import convert_official_state_dict
    from ccq.models.presets import get_preset

    # Check OUT first: a refusal should not wait for a 100 MB file to load.
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise CCQError(f"{out} already exists; pass --overwrite to replace it")
    check_replaceable(out)
    tasks = load_collection(collection)
    config = get_preset(preset, patch_size=tuple(patch), num_tasks=tasks.num_tasks)
    state_dict = load_official_state_dict(checkpoint)
    check_positional_embedding(checkpoint, state_dict, config)

    try:
        converted = convert_official_state_dict(state_dict, config)
    except CCQError as err:
        raise CCQError(f"{checkpoint}: {err}") from err
    model = build_model(config)
    _check_shapes(checkpoint, converted, model.state_dict())
    model.load_state_dict(converted, strict=True)

    preprocessing = dataclasses.replace(OFFICIAL_PREPROCESSING, patch_size=config.patch_size)
    try:
        save_checkpoint(
            out,
            model,
            preprocessing=preprocessing,
            collection=tasks,
            source=f"converted from {checkpoint.name}",
            extra={"converted_from": checkpoint.name, "converted_sha256": _sha256(checkpoint)},
        )
    except OSError as err:
        raise CCQError(f"{out}: cannot be written ({err.strerror or err}); expected a writable location") from err
    params = sum(p.numel() for p in model.parameters())
    typer.echo(
        f"converted {len(converted)} tensors ({params:,} parameters) from {checkpoint} "
        f"[preset {preset}, patch {'x'.join(map(str, config.patch_size))}, {tasks.num_tasks} tasks] -> {out}"
    )


def load_official_state_dict(path: Path) -> dict[str, Any]:
    """The tensors of an official .pth file, read without running any code it might contain."""
    import torch

    if not path.exists():
        raise CCQError(f"{path}: no such file; expected an official CCQ .pth checkpoint")
    if path.is_dir():
        from ccq.checkpoint.io import is_checkpoint_dir

        what = "already a ccq checkpoint" if is_checkpoint_dir(path) else "a directory"
        raise CCQError(f"{path} is {what}; expected an official CCQ .pth file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types here (UnpicklingError, RuntimeError, ...)
        raise CCQError(
            f"{path}: refused by torch.load(weights_only=True) ({_torch_load_reason(err)}); expected an "
            "official CCQ .pth state dict holding only tensors"
        ) from err
    if isinstance(obj, Mapping):
        for name in _CONTAINER_KEYS:
            if isinstance(obj.get(name), Mapping):
                obj = obj[name]
                break
    if isinstance(obj, Mapping) and not obj:
        raise CCQError(f"{path}: holds an empty dict; expected a state dict (name -> tensor)")
    if not isinstance(obj, Mapping):
        raise CCQError(
            f"{path}: holds a {type(obj).__name__}; expected a state dict (name -> tensor) or a dict with a "
            f"{' or '.join(repr(k) for k in _CONTAINER_KEYS)} entry"
        )
    not_tensors = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CCQError(f"{path}: entries {not_tensors[:10]} are not tensors; expected a state dict of tensors")
    return dict(obj)


def _torch_load_reason(err: Exception) -> str:
    """The one informative phrase of torch.load's multi-paragraph refusal (e.g. which global was refused)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    match = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n\n|$)", text, re.S)
    if match:
        return " ".join(match.group(1).split())
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0]}" if lines else f"{type(err).__name__}, empty or truncated file"


def check_positional_embedding(path: Path, state_dict: Mapping[str, Any], config: Any) -> None:
    """Say which --patch fits when the official positional embedding was trained for another patch size."""
    key = next(
        (k for k in state_dict if any(k == p or k.endswith("." + p) for p in _POS_EMBED_KEYS)),
        None,
    )
    if key is None or state_dict[key].dim() < 2:
        return  # DoDNet has none; a missing embedding is reported by the name mapping
    tokens = int(state_dict[key].shape[-2])
    if tokens == config.num_tokens:
        return
    factor = config.downsampling
    fits = ", ".join(f"--patch {d} {h} {w}" for d, h, w in fitting_patches(tokens, factor))
    raise CCQError(
        f"{path}: {key} has {tokens} positional tokens but --patch "
        f"{' '.join(map(str, config.patch_size))} gives {config.num_tokens} "
        f"(tokens = (D/{factor})*(H/{factor})*(W/{factor})); patch sizes that fit: "
        f"{fits or 'none with H = W'}"
    )


def fitting_patches(tokens: int, factor: int = 16, limit: int = 4) -> list[tuple[int, int, int]]:
    """Patch sizes (D, H, W) with H = W whose bottleneck has `tokens` voxels, the official 1:3:3 first."""
    found = []
    for d in range(1, tokens + 1):
        if tokens % d:
            continue
        side = math.isqrt(tokens // d)
        if side * side == tokens // d:
            found.append((d * factor, side * factor, side * factor))
    found.sort(key=lambda p: abs(math.log(3 * p[0] / p[1])))
    return found[:limit]


def _check_shapes(path: Path, converted: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    wrong = [
        f"{k} {list(v.shape)} (expected {list(expected[k].shape)})"
        for k, v in converted.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if wrong:
        raise CCQError(
            f"{path}: shape mismatch for {wrong[:20]}; expected the shapes of the chosen --preset, --patch "
            "and --collection"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
