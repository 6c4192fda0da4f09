"""Official CCQ / DoDNet checkpoints: reading the authors' ``.pth`` files, checking them, and converting them into
ccq checkpoints that feed every task what the official code fed it (`convert_official_checkpoint`).

An official ``.pth`` is a pickle: it is read with ``torch.load(weights_only=True)``, which refuses anything but
tensors, so no code it might contain runs. The parameter names are mapped by `ccq.models.official` (strict: every
missing or unexpected name is listed). The converted checkpoint's preprocessing gives each task the working grid
of the official data path (`ccq.data.preprocessing.official_data_path`, docs/official-data-path.md), or with
``grid="paper"`` the paper's uniform 1.5 x 0.8 x 0.8 mm canonical grid.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from ccq.errors import CCQError

GridChoice = Literal["official", "paper"]
GRID_CHOICES: tuple[str, ...] = get_args(GridChoice)
"""official: each task on the grid the official code fed it; paper: every task at 1.5 x 0.8 x 0.8 mm, canonical."""

# Official checkpoints were saved from DistributedDataParallel (`module.`), and an older revision named the
# transformer `CCQ` instead of `CQTr`: the positional embedding may carry any of these names.
_POS_EMBED_KEYS = ("CQTr.pos_embed", "CCQ.pos_embed")
_CONTAINER_KEYS = ("state_dict", "model")


@dataclass(frozen=True)
class ConvertOptions:
    """What `convert_official_checkpoint` converts, and how (the options of ``ccq convert-official``)."""

    checkpoint: Path
    """The official .pth file."""
    out: Path
    """The ccq checkpoint folder to write."""
    preset: str = "official"
    """Model preset of the weights: "official" (CCQ) or "dodnet"."""
    patch: tuple[int, int, int] = (64, 192, 192)
    """Patch size D, H, W the model was trained with (it sizes CCQ's positional embedding)."""
    collection: str = "mots"
    """Task collection the weights were trained on: "mots" or a collection file."""
    grid: GridChoice = "official"
    """The working grids written into the checkpoint (`GRID_CHOICES`)."""
    overwrite: bool = False
    """Replace ``out`` if it is already a ccq checkpoint."""


@dataclass(frozen=True)
class ConvertResult:
    """What a conversion wrote."""

    out: Path
    tensors: int
    parameters: int
    preset: str
    patch: tuple[int, int, int]
    task_names: tuple[str, ...]
    preprocessing: Any
    """The `PreprocessingConfig` written into the checkpoint (its working grids)."""
    code: str
    """Whose data path the grids follow: "ccq" or "dodnet"."""

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def report(self) -> str:
        """One line for the terminal, then one per working grid."""
        pre = self.preprocessing
        lines = [
            f"converted {self.tensors} tensors ({self.parameters:,} parameters) [preset {self.preset}, patch "
            f"{'x'.join(map(str, self.patch))}, {self.num_tasks} tasks] -> {self.out}"
        ]
        groups: dict[str, list[str]] = {}
        for name, grid in pre.grids(self.task_names).items():
            groups.setdefault(grid.describe(), []).append(name)
        code = "DoDNet" if self.code == "dodnet" else "CCQ"
        what = "the paper's uniform grid" if pre.uniform else f"the official {code} data path"
        lines.append(f"working grids ({what}):")
        lines += [f"  {', '.join(names)}: {described}" for described, names in groups.items()]
        return "\n".join(lines)


def code_base(config: Any) -> Literal["ccq", "dodnet"]:
    """Whose data path a model config's official weights were trained with (DoDNet resamples kidney otherwise)."""
    return "dodnet" if config.arch == "dodnet" else "ccq"


def official_preprocessing(collection: Any, config: Any, grid: GridChoice = "official") -> Any:
    """The `PreprocessingConfig` of converted official weights: the official data path's grids (``official``) or
    the paper's uniform canonical grid (``paper``), at the model's patch size."""
    from ccq.data.preprocessing import OFFICIAL_PREPROCESSING, official_data_path

    if grid not in GRID_CHOICES:
        raise CCQError(f"--grid {grid!r}: expected one of {', '.join(GRID_CHOICES)}")
    base = OFFICIAL_PREPROCESSING.replace(patch_size=tuple(config.patch_size))
    if grid == "paper":
        return base
    return official_data_path(collection.tasks, code=code_base(config), base=base)


def convert_official_checkpoint(options: ConvertOptions) -> ConvertResult:
    """Convert an official CCQ (or DoDNet) .pth into a ccq checkpoint folder (safetensors + JSON).

    Every weight must find its place (missing and unexpected names are listed); ``options.out`` is checked before
    the (large) file is read, and nothing is written on any error."""
    from ccq.checkpoint.io import check_replaceable, save_checkpoint
    from ccq.data.collection import load_collection
    from ccq.models import build_model
    from ccq.models.official import convert_official_state_dict
    from ccq.models.presets import get_preset

    checkpoint, out = Path(options.checkpoint), Path(options.out)
    if (out.exists() or out.is_symlink()) and not options.overwrite:
        raise CCQError(f"{out} already exists; pass --overwrite to replace it")
    check_replaceable(out)
    tasks = load_collection(options.collection)
    config = get_preset(options.preset, patch_size=tuple(options.patch), num_tasks=tasks.num_tasks)
    preprocessing = official_preprocessing(tasks, config, options.grid)
    state_dict = load_official_state_dict(checkpoint)
    check_positional_embedding(checkpoint, state_dict, config)
    try:
        converted = convert_official_state_dict(state_dict, config)
    except CCQError as err:
        raise CCQError(f"{checkpoint}: {err}") from err
    model = build_model(config)
    check_shapes(checkpoint, converted, model.state_dict())
    model.load_state_dict(converted, strict=True)
    try:
        save_checkpoint(
            out,
            model,
            preprocessing=preprocessing,
            collection=tasks,
            source=f"converted from {checkpoint.name}",
            extra={
                "converted_from": checkpoint.name,
                "converted_sha256": sha256(checkpoint),
                "grid": options.grid,
                "data_path": code_base(config) if options.grid == "official" else "paper",
            },
        )
    except OSError as err:
        raise CCQError(f"{out}: cannot be written ({err.strerror or err}); expected a writable location") from err
    result = ConvertResult(
        out=out, tensors=len(converted), parameters=sum(p.numel() for p in model.parameters()), preset=options.preset,
        patch=tuple(config.patch_size), task_names=tuple(tasks.task_names), preprocessing=preprocessing,
        code=code_base(config),
    )  # fmt: skip
    return result


def load_official_state_dict(path: Path) -> dict[str, Any]:
    """The tensors of an official .pth file, read without running any code it might contain."""
    import torch

    path = Path(path)
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


def check_shapes(path: Path, converted: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """Every converted tensor has the shape the chosen preset, patch and collection expect."""
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


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
