"""Numerical parity of our `official` CCQ preset with the authors' public code (run by hand, not in CI).

    python benchmarks/official_parity.py --official-src PATH/TO/CCQ/code/network
    python benchmarks/official_parity.py --official-src PATH/TO/CCQ/code/network --data-path

With --data-path the comparison is end to end instead (benchmarks/_official_data_path.py): `ccq predict` on a
converted checkpoint, against the official network on the official data path's array, on the CT's voxels
(default patch 64x192x192; minutes per forward on a CPU).

DIR is a local copy of the `code/network` folder of https://github.com/Yang-007/CCQ; its code is imported at
run time (see benchmarks/_official.py), never copied here. The script

1. builds the official model (seeded random weights) and saves its state dict to a temporary .pth the way real
   official checkpoints are saved: a DistributedDataParallel state dict, every key prefixed with `module.`;
2. reads that file back with torch.load(weights_only=True) and converts it with our strict converter
   (`ccq.models.official.convert_official_state_dict`); when `ccq.checkpoint` is available the converted model
   also goes through a save_checkpoint / load_checkpoint round trip (safetensors + JSON), as a user's would;
3. runs both models in eval mode on one input for each task id, and compares the organ and tumor probabilities
   (our logits through a sigmoid; the official model returns probabilities), in float32 and in float64.

Parity is decided in float64, where both implementations compute the same mathematics and agree to ~1e-13:
the script exits 1 when the float64 difference exceeds --tolerance, and prints `max_abs_diff=...` (the float64
figure) as its last line. The float32 figures are printed too, beside the official model's own float32 error
(official fp32 against official fp64): with random weight-standardized convolutions the skip gates amplify
rounding, so each implementation alone is ~1e-4 away from exact arithmetic in float32 (measured 0.7e-4 to
1.2e-4), and two float32 implementations can differ by about twice that. The script also fails when the float32
difference exceeds max(--tolerance, 2 x that floor), which would reveal a real discrepancy.

The input imitates a windowed CT patch: a smooth random field in Hounsfield units (tissue-like structures a
few voxels wide plus fine noise), clipped to the official window [-325, 325] HU and divided by 325, so values
lie in [-1, 1] with saturated regions at both ends, like air and bone in real patches. White noise would also
lie in [-1, 1] but gives the GroupNorm and attention layers statistics no CT patch has.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from _official import OfficialSourceError, check_ccq_source, load_official_ccq

CHANNELS = ("organ", "tumor")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--official-src",
        required=True,
        metavar="DIR",
        help="local copy of the `code/network` folder of github.com/Yang-007/CCQ",
    )
    p.add_argument(
        "--patch",
        type=int,
        nargs=3,
        default=None,
        metavar=("D", "H", "W"),
        help="patch size of both models (default: 32 96 96; with --data-path 64 192 192)",
    )
    p.add_argument(
        "--data-path",
        action="store_true",
        help="compare `ccq predict` on a converted checkpoint with the official network on the official data "
        "path's array (one synthetic MSD and one KiTS19-layout case), on the CT's voxels",
    )
    p.add_argument(
        "--tasks",
        type=int,
        nargs="+",
        default=(0, 4),
        metavar="ID",
        help="task ids to compare (default: 0 4, liver and colon)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the input (default: 0)")
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest accepted absolute difference of probabilities (default: 1e-4 in float64; with --data-path "
        "2e-3, ccq's float16 probabilities)",
    )
    args = p.parse_args(argv)
    if args.patch is None:
        args.patch = (64, 192, 192) if args.data_path else (32, 96, 96)
    if args.data_path and args.tolerance == p.get_default("tolerance"):
        args.tolerance = 2e-3  # float16 probabilities
    if any(s <= 0 or s % 16 for s in args.patch):
        p.error(f"--patch {' '.join(map(str, args.patch))}: every size must be a positive multiple of 16")
    return args


def ct_like_patch(patch: tuple[int, int, int], seed: int) -> torch.Tensor:
    """[1, 1, D, H, W] in [-1, 1]: a smooth random HU field, windowed to [-325, 325] and divided by 325."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, 1, *(max(s // 8, 2) for s in patch), generator=g) * 400.0  # HU, structures
    hu = F.interpolate(coarse, size=patch, mode="trilinear", align_corners=False)
    hu = hu + torch.randn(1, 1, *patch, generator=g) * 30.0  # fine texture and scanner noise
    return hu.clamp(-325.0, 325.0) / 325.0


def save_like_official(model: torch.nn.Module, path: Path) -> None:
    """A DistributedDataParallel-style state dict (`module.` prefix), as the official training saves it."""
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)


def ours_from_official_file(pth: Path, patch: tuple[int, int, int], workdir: Path) -> tuple[torch.nn.Module, str]:
    """Our model loaded from an official .pth, through the checkpoint format when it exists."""
    from ccq.models import build_model, get_preset
    from ccq.models.official import convert_official_state_dict

    config = get_preset("official", patch_size=patch)
    state = torch.load(pth, map_location="cpu", weights_only=True)
    model = build_model(config)
    model.load_state_dict(convert_official_state_dict(state, config), strict=True)
    if importlib.util.find_spec("ccq.checkpoint") is None:
        return model.eval(), "converted in memory (ccq.checkpoint not available)"

    from ccq.checkpoint import load_checkpoint, save_checkpoint
    from ccq.data.collection import load_collection
    from ccq.data.preprocessing import OFFICIAL_PREPROCESSING

    tasks = load_collection("mots")
    if tasks.num_tasks != config.num_tasks:
        raise RuntimeError(f"mots has {tasks.num_tasks} tasks, the official preset {config.num_tasks}")
    preprocessing = dataclasses.replace(OFFICIAL_PREPROCESSING, patch_size=config.patch_size)
    ckpt = save_checkpoint(
        workdir / "converted",
        model,
        preprocessing=preprocessing,
        collection=tasks,
        source=f"official_parity.py, converted from {pth.name}",
    )
    return load_checkpoint(ckpt).model.eval(), "converted, saved and reloaded through ccq.checkpoint"


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


@torch.no_grad()
def probabilities(
    official: torch.nn.Module, ours: torch.nn.Module, x: torch.Tensor, task: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(official, ours) probabilities [1, 2, D, H, W] for one task id."""
    p_off = official(x.clone(), torch.tensor([task]))  # clone: the official code has in-place activations
    p_ours = torch.sigmoid(ours(x.clone(), task))
    if p_off.shape != p_ours.shape:
        raise RuntimeError(f"output shapes differ: official {tuple(p_off.shape)}, ours {tuple(p_ours.shape)}")
    return p_off, p_ours


def max_diff(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Max |a - b| per channel (organ, tumor) and over both."""
    d = (a.double() - b.double()).abs()
    out = {name: d[:, c].max().item() for c, name in enumerate(CHANNELS)}
    out["both"] = max(out.values())
    return out


def run(args: argparse.Namespace) -> int:
    src = check_ccq_source(args.official_src)
    unet3d = load_official_ccq(src)
    patch = tuple(args.patch)
    if args.data_path:
        from _official_data_path import run_data_path

        print(f"official code: {src}")
        return run_data_path(unet3d, patch, args.seed, args.tolerance)
    torch.manual_seed(args.seed)
    official = unet3d(image_size=patch).eval()
    x = ct_like_patch(patch, args.seed + 1)
    print(f"official code: {src}")
    print(
        f"patch {'x'.join(map(str, patch))}, seed {args.seed}, tasks {list(args.tasks)}; input "
        f"{tuple(x.shape)} in [{x.min().item():.2f}, {x.max().item():.2f}], "
        f"{(x.abs() == 1).float().mean().item():.0%} of voxels at the window's edges"
    )

    with tempfile.TemporaryDirectory(prefix="ccq-parity-") as tmp:
        pth = Path(tmp) / "official_random.pth"
        save_like_official(official, pth)
        ours, how = ours_from_official_file(pth, patch, Path(tmp))
    print(f"our model: {how}")

    outputs: dict[str, dict[int, tuple[torch.Tensor, torch.Tensor]]] = {}
    for label, dtype in (("fp32", torch.float32), ("fp64", torch.float64)):
        # The official forward creates its one-hot task encoding with torch.zeros (the default dtype).
        with default_dtype(dtype):
            official.to(dtype)
            ours.to(dtype)
            outputs[label] = {t: probabilities(official, ours, x.to(dtype), t) for t in args.tasks}

    worst = {"fp32": 0.0, "fp64": 0.0, "floor": 0.0}
    for t in args.tasks:
        (off32, ours32), (off64, ours64) = outputs["fp32"][t], outputs["fp64"][t]
        # Official probabilities' spread: a model whose outputs all sat at 0.5 would agree with anything.
        print(
            f"task {t}: official probabilities in [{off32.min().item():.3f}, {off32.max().item():.3f}], "
            f"std {off32.std().item():.3f}"
        )
        for label, (a, b) in {"fp32": (off32, ours32), "fp64": (off64, ours64)}.items():
            d = max_diff(a, b)
            worst[label] = max(worst[label], d["both"])
            print(
                f"  {label} official vs ours: organ max_abs_diff={d['organ']:.3e} tumor max_abs_diff={d['tumor']:.3e}"
            )
        # The official model's own float32 error (against itself in float64): the rounding noise floor.
        floor, own = max_diff(off32, off64), max_diff(ours32, off64)
        worst["floor"] = max(worst["floor"], floor["both"])
        print(
            f"  float32 rounding: official fp32 vs official fp64 {floor['both']:.3e}, "
            f"ours fp32 vs official fp64 {own['both']:.3e}"
        )

    fp32_limit = max(args.tolerance, 2.0 * worst["floor"])
    ok = worst["fp64"] <= args.tolerance and worst["fp32"] <= fp32_limit
    print(
        f"max_abs_diff_fp32={worst['fp32']:.3e} (limit {fp32_limit:.3e}: the official's own float32 error is "
        f"{worst['floor']:.3e})"
    )
    print(f"{'PASS' if ok else 'FAIL'}: float64 tolerance {args.tolerance:g}")
    print(f"max_abs_diff={worst['fp64']:.3e}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except OfficialSourceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
