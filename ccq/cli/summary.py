"""`ccq summary`: parameter count per part and forward FLOPs of a model preset."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ccq.errors import CCQError


def summary(
    preset: str = typer.Option(
        "official",
        "--preset",
        help="Model preset (the network and its sizes; `ccq train --preset` names a training preset instead): "
        "official, dodnet, demo, tiny, or BASE+ABLATION (e.g. official+no-cat).",
    ),
    patch: tuple[int, int, int] | None = typer.Option(
        None,
        "--patch",
        metavar="D H W",
        help="Patch size in voxels; default: the preset's (official 64 192 192).",
    ),
    config: Path | None = typer.Option(
        None, "--config", help="A model config JSON (as saved beside checkpoints) instead of a preset."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print one JSON object (keys: params, flops, params_by_part; grids for a checkpoint.json).",
    ),  # fmt: skip
) -> None:
    """Print the parameter count (total and per part) and the forward FLOPs for one patch at batch 1; for a
    checkpoint.json (--config), also each task's working grid.

    FLOPs count 2 x the multiply-accumulates of convolutions and matrix products (torch.utils.flop_counter),
    computed on the meta device: nothing is allocated.
    """
    from ccq.models import ModelConfig, get_preset
    from ccq.models.summary import summarize

    if config is not None:
        try:
            data = json.loads(config.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CCQError(f"{config}: cannot read a model config JSON ({err})") from None
        section = data.get("model", data) if isinstance(data, dict) else data
        if not isinstance(section, dict):
            raise CCQError(
                f"{config}: expected a JSON object of ModelConfig fields (or one with a 'model' object, as in a "
                f"checkpoint.json), got a {type(section).__name__}"
            )
        try:
            cfg = ModelConfig.from_dict(section)
        except CCQError as err:
            raise CCQError(f"{config}: {err}") from None
        except (TypeError, ValueError) as err:
            raise CCQError(f"{config}: invalid model config ({err})") from None
        if patch is not None:
            cfg = cfg.replace(patch_size=tuple(patch))
        name = str(config)
        grids = _checkpoint_grids(config, data)
    else:
        cfg = get_preset(preset, patch_size=tuple(patch) if patch is not None else None)
        name, grids = preset, None
    result = summarize(cfg, name)
    if as_json:
        print(json.dumps({**result.to_dict(), **({"grids": grids} if grids else {})}))
        return
    d, h, w = result.patch_size
    print(f"preset {name}  (arch {cfg.arch}, patch {d}x{h}x{w}, {cfg.num_tasks} tasks)")
    width = max(len(k) for k in result.params_by_part)
    for part, count in result.params_by_part.items():
        print(f"  {part:<{width}}  {count:>12,d}  ({count / 1e6:6.2f} M)")
    print(f"  {'total':<{width}}  {result.params:>12,d}  ({result.params / 1e6:6.2f} M)")
    print(f"forward FLOPs per patch: {result.flops:,d}  ({result.flops / 1e12:.3f} TFLOPs)")
    if grids:
        print("working grids (spacing along D x H x W; where D, H, W point):")
        width = max(map(len, grids))
        for task, grid in grids.items():
            print(f"  {task:<{width}}  {' x '.join(f'{v:g}' for v in grid['spacing'])} mm, {grid['axes']}")


def _checkpoint_grids(path: Path, data: object) -> dict[str, dict] | None:
    """Task name -> working grid (as JSON) of a checkpoint.json's preprocessing and collection; None otherwise."""
    if not (isinstance(data, dict) and isinstance(data.get("preprocessing"), dict)):
        return None
    from ccq.data.collection import Collection
    from ccq.data.preprocessing import PreprocessingConfig

    try:
        pre = PreprocessingConfig.from_dict(data["preprocessing"])
        tasks = Collection.from_dict(data.get("collection"), source=f"{path}: collection").tasks
    except CCQError as err:
        raise CCQError(f"{path}: {err}") from None
    return {name: grid.to_dict() for name, grid in pre.grids(tasks).items()}
