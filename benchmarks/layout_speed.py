"""Speed of the CPU memory layouts, side by side in one process (run by hand).

    python benchmarks/layout_speed.py [--presets demo official] [--rounds 5] [--threads 2]

For each model preset, three layouts of the same weights: ``contiguous`` (NCDHW), ``cl-encoder-contiguous``
(channels-last weights, but weight-standardized convolutions given contiguous standardized weights: after the
one-channel stem, whose output is both layouts at once, the encoder then ran contiguous; what `ccq train
--channels-last` did before issue #18) and ``channels-last`` (today: in training, standardization keeps the
weight's layout, so every level runs channels-last). Timed: one training step (forward + backward of model + loss;
the demo preset at batch 2 with GroupNorm + activation stored, as the demo trains; the others at batch 1 with the
default recomputation) and one inference window (batch 1, no gradient, both branches of one task, as a sliding
window of `ccq predict`; without gradient the standardized weights are contiguous in both channels-last variants,
so their windows differ by noise only). The variants alternate within each round; medians over the rounds, and
each layout's time relative to ``channels-last``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable
from unittest import mock

import torch

import ccq.models.layers as layers
from ccq.models import build_model, get_preset
from ccq.models.fused import recompute_enabled
from ccq.training.loss import partial_label_loss

OFFICIAL_PATCH = (32, 96, 96)
"""The official preset at a CPU-sized patch (as benchmarks/model_speed.py); the others at their own patch."""
BATCH = {"demo": 2}
LAYOUTS = ("contiguous", "cl-encoder-contiguous", "channels-last")


def contiguous_standardized_weights() -> contextlib.AbstractContextManager:
    """Trained standardized weights as they were before: always contiguous, whatever the raw weight's layout."""
    return mock.patch.object(layers, "_in_layout_of", lambda out, weight: out)


def patch_of(preset: str) -> tuple[int, int, int]:
    return OFFICIAL_PATCH if preset == "official" else tuple(get_preset(preset).patch_size)


def timed(run: Callable[[], None], repeats: int) -> float:
    run()  # warm-up: oneDNN primitives, allocator
    began = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - began) / repeats


def measure(preset: str, rounds: int, repeats: int) -> dict[str, dict[str, float]]:
    torch.manual_seed(0)
    patch = patch_of(preset)
    batch = BATCH.get(preset, 1)
    model = build_model(get_preset(preset, patch_size=patch, num_tasks=5))
    image = torch.rand(batch, 1, *patch) * 2 - 1
    target = (torch.rand(batch, 2, *patch) > 0.9).float()
    tasks = torch.arange(batch) % 5
    recompute = preset != "demo"
    times: dict[str, dict[str, list[float]]] = {k: {"train": [], "infer": []} for k in LAYOUTS}
    for _ in range(rounds):
        for layout in LAYOUTS:
            fmt = torch.contiguous_format if layout == "contiguous" else torch.channels_last_3d
            model.to(memory_format=fmt)
            x = image.contiguous(memory_format=fmt)
            old = contiguous_standardized_weights() if layout == "cl-encoder-contiguous" else contextlib.nullcontext()

            def step(x: torch.Tensor = x) -> None:
                model.zero_grad(set_to_none=True)
                partial_label_loss(model(x, tasks), target).total.backward()

            def window(x: torch.Tensor = x) -> None:
                with torch.no_grad():
                    model(x[:1], 0)

            with old, recompute_enabled(recompute):
                model.train()
                times[layout]["train"].append(timed(step, repeats))
                model.eval()
                times[layout]["infer"].append(timed(window, repeats))
    return {k: {part: statistics.median(v) for part, v in parts.items()} for k, parts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["demo", "official"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=0, help="Timed calls per round (default: 8 demo, 2 others).")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, medians of {args.rounds} rounds")
    print("| preset (patch, train batch) | layout | train step (s) | vs channels-last | window (s) | vs c.-l. |")
    print("|---|---|---|---|---|---|")
    for preset in args.presets:
        result = measure(preset, args.rounds, args.repeats or (8 if preset == "demo" else 2))
        ref = result["channels-last"]
        where = f"{preset} ({'x'.join(map(str, patch_of(preset)))}, {BATCH.get(preset, 1)})"
        for layout, t in result.items():
            print(f"| {where} | {layout} | {t['train']:.3f} | {t['train'] / ref['train']:.2f}x "
                  f"| {t['infer']:.3f} | {t['infer'] / ref['infer']:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
