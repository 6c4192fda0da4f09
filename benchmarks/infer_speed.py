"""All tasks at once against one task at a time: sliding-window prediction of one prepared volume.

    python benchmarks/infer_speed.py [--preset demo] [--shape 48 96 96] [--tasks 7] [--threads 2] [--tta]
        [--overlap 0.5] [--batch-size 1] [--repeats 1] [--contiguous] [--pytorch-conv-choice] [--flops-only] [--json]

Every way runs the same code (`ccq.inference.predict_channels`, Gaussian-weighted windows stitched on the CPU) on
the same volume with the same randomly initialised model (seed 0; speed does not depend on the weights), in the
memory layout `ccq predict` uses (`ccq.inference.inference_layout`: channels-last on the CPU; ``--contiguous``: the
default layout) and with one-window convolutions on oneDNN (`ccq.models.fused.conv3d`; ``--pytorch-conv-choice``:
PyTorch's own choice, its slow reference convolution for a small batch-1 input, as before that change):

* all tasks: every window runs the encoder and image transformer once and the organ and tumour branches of all
  tasks in one batched pass (`forward_all_tasks`);
* labeled channels: the same, decoding only the (task, channel) pairs that the tasks' datasets label (the MOTS
  datasets' for task ids 0-6: colon's and lung's organ and spleen's tumour channels are skipped; both channels for
  ids above 6): what `ccq predict` does (`forward_channels`);
* one by one: the whole sliding window once per task, both channels (the encoder runs once per task and window),
  as the official evaluation predicts.

The three ways are timed in turn, ``--repeats`` times (the fastest time of each is kept: other processes only ever
slow a run down). Printed: the times (wall clock and the process's CPU time), the speed-ups of the first two ways
over the third, the largest absolute difference between their probabilities and the same channels predicted one
by one (they must agree to float32 noise), and the same ratios in floating-point operations per window
(`torch.utils.flop_counter`): the speed-up a device that is bound by arithmetic alone could reach. In CCQ only the
encoder and image transformer are shared; the CNN decoder runs once per task and branch, which bounds that ratio
well below the number of tasks (``--flops-only``: count them on the meta device, no computation, and stop: for
the official model on a CPU). The default volume is 48x96x96 voxels (the number of windows it makes with the
preset's patch is printed). With --json the last line printed is one JSON object: {"speedup_all_tasks": ...,
"speedup_labeled": ..., "max_abs_diff": ..., "all_tasks_s": ..., "labeled_s": ..., "one_by_one_s": ..., ...}.
Timings on a shared machine are noisy: compare figures of one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

MOTS_UNLABELED = {(4, 0), (5, 0), (6, 1)}
"""(task id, channel) pairs no MOTS dataset labels: colon's and lung's organ, spleen's tumour (`ccq.data`'s mots
collection; checked against it in tests/benchmarks)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="demo", help="model preset (default: demo)")
    p.add_argument("--shape", type=int, nargs=3, default=(48, 96, 96), metavar=("D", "H", "W"),
                   help="prepared volume size in voxels (default: 48 96 96)")  # fmt: skip
    p.add_argument("--tasks", type=int, default=7, help="number of tasks, ids 0..N-1 (default: 7, MOTS)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    p.add_argument("--overlap", type=float, default=0.5, help="window overlap (default: 0.5)")
    p.add_argument("--batch-size", type=int, default=1, help="windows per forward pass (default: 1)")
    p.add_argument("--tta", action="store_true", help="8-way flip test-time augmentation in every way")
    p.add_argument("--repeats", type=int, default=1, help="times each way is timed; the fastest counts (default: 1)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--contiguous", action="store_true", help="keep the default memory layout (not channels-last)")
    p.add_argument("--pytorch-conv-choice", action="store_true",
                   help="leave batch-1 CPU convolutions to PyTorch's heuristic (not oneDNN)")  # fmt: skip
    p.add_argument("--flops-only", action="store_true", help="only the FLOP ratios, counted on the meta device")
    p.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    return p.parse_args(argv)


def labeled_pairs(tasks: int) -> list[tuple[int, int]]:
    """(task index, channel) pairs the benchmark's tasks label (see the module docstring)."""
    return [(t, c) for t in range(tasks) for c in range(2) if (t, c) not in MOTS_UNLABELED]


def _flops(model, window, pairs: list[tuple[int, int]]) -> int:
    """Floating-point operations of one window decoding ``pairs`` (task id, channel)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:  # (FlopCounterMode's module tracking does not work under inference_mode)
        model.forward_channels(window, pairs)
    return counter.get_total_flops()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from ccq.errors import CCQError
    from ccq.inference import inference_device
    from ccq.models import get_preset
    from ccq.models.fused import onednn_for_one_sample

    try:
        device = inference_device(args.device)
        config = get_preset(args.preset, num_tasks=args.tasks)
        if args.repeats < 1:
            raise CCQError(f"--repeats {args.repeats}: expected at least 1")
    except CCQError as err:
        print(f"infer_speed: error: {err}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    with onednn_for_one_sample(not args.pytorch_conv_choice):
        return measure(args, config, device)


def measure(args: argparse.Namespace, config, device) -> int:
    """Time the three ways (or count their FLOPs) and print the figures; 0."""
    import torch

    from ccq.inference import inference_layout, predict_channels, window_starts
    from ccq.models import build_model

    torch.manual_seed(0)
    model = build_model(config).eval().to(device)
    if not args.contiguous:
        inference_layout(model, device)
    volume = torch.rand(tuple(args.shape), generator=torch.Generator().manual_seed(1)) * 2 - 1
    windows = 1
    for n, p in zip(args.shape, config.patch_size, strict=True):
        windows *= len(window_starts(max(n, p), p, args.overlap))
    tasks = list(range(args.tasks))
    every = [(t, c) for t in tasks for c in range(2)]
    labeled = labeled_pairs(args.tasks)
    options = {"overlap": args.overlap, "tta": args.tta, "batch_size": args.batch_size, "device": device}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    ways = {
        "all tasks, every channel": lambda: predict_channels(model, volume, tasks, every, **options),
        "all tasks, labeled only": lambda: predict_channels(model, volume, tasks, labeled, **options),
        "one task at a time": lambda: torch.cat([predict_channels(model, volume, [t], **options) for t in tasks]),
    }
    window = volume[None, None, : config.patch_size[0], : config.patch_size[1], : config.patch_size[2]].to(device)
    if args.flops_only:
        model, window = model.to("meta"), torch.zeros((1, 1, *config.patch_size), device="meta")
    else:
        with torch.inference_mode():  # one window of warm-up: allocator, oneDNN kernels
            model.forward_all_tasks(window, tasks)
    one_task, all_tasks = _flops(model, window, every[:2]), _flops(model, window, every)
    flop_ratio = len(tasks) * one_task / all_tasks
    flop_ratio_labeled = len(tasks) * one_task / _flops(model, window, labeled)
    # one task = shared + 2 branches, all tasks = shared + 2T branches: the two parts of the cost.
    branch = (all_tasks - one_task) / max(1, 2 * len(tasks) - 2)
    shared = one_task - 2 * branch
    flop_line = (
        f"FLOPs per window: shared (encoder, image transformer) {shared / 1e9:.2f} G, per (task, channel) branch "
        f"{branch / 1e9:.2f} G; one by one / all at once: every channel {flop_ratio:.2f}, labeled channels only "
        f"({len(labeled)}) {flop_ratio_labeled:.2f}"
    )
    if args.flops_only:
        print(f"{args.preset} preset, patch {'x'.join(map(str, config.patch_size))}, {args.tasks} tasks")
        print(flop_line)
        if args.json:
            print(json.dumps({
                "preset": args.preset, "tasks": args.tasks, "shared_gflop": round(shared / 1e9, 3),
                "branch_gflop": round(branch / 1e9, 3),
                "flop_ratio": round(flop_ratio, 3), "flop_ratio_labeled": round(flop_ratio_labeled, 3),
            }))  # fmt: skip
        return 0
    size = "x".join(map(str, args.shape))
    print(f"{args.preset} preset, patch {'x'.join(map(str, config.patch_size))}, volume {size} = {windows} windows, "
          f"{args.tasks} tasks ({len(labeled)} labeled channels), {device}, {args.threads} threads, batch "
          f"{args.batch_size}{', TTA' if args.tta else ''}{', contiguous' if args.contiguous else ''}"
          f"{', PyTorch conv choice' if args.pytorch_conv_choice else ''}, "
          f"fastest of {args.repeats}", flush=True)  # fmt: skip
    wall = {k: float("inf") for k in ways}
    cpu = {k: float("inf") for k in ways}
    outputs = {}
    for _ in range(args.repeats):
        for name, run in ways.items():
            sync()
            start, start_cpu = time.perf_counter(), time.process_time()
            outputs[name] = run()
            sync()
            took, took_cpu = time.perf_counter() - start, time.process_time() - start_cpu
            wall[name], cpu[name] = min(wall[name], took), min(cpu[name], took_cpu)
            print(f"{name:26s}: {took:8.2f} s wall, {took_cpu:8.2f} s CPU", flush=True)
    a, b, c = ways
    parts = outputs[c]
    diff = float((outputs[a] - parts).abs().max())
    diff_labeled = float((outputs[b] - parts[[2 * t + ch for t, ch in labeled]]).abs().max())
    speedup, speedup_labeled = wall[c] / wall[a], wall[c] / wall[b]
    if args.repeats > 1:
        print("fastest: " + ", ".join(f"{k} {wall[k]:.2f} s wall / {cpu[k]:.2f} s CPU" for k in ways))
    print(f"speed-up, every channel {speedup:.2f}x (CPU time {cpu[c] / cpu[a]:.2f}x), labeled channels only "
          f"{speedup_labeled:.2f}x (CPU time {cpu[c] / cpu[b]:.2f}x); max abs difference of the probabilities "
          f"{diff:.2e} / {diff_labeled:.2e}")  # fmt: skip
    print(flop_line)
    if args.json:
        print(json.dumps({
            "speedup_all_tasks": round(speedup, 3), "speedup_labeled": round(speedup_labeled, 3),
            "max_abs_diff": diff, "max_abs_diff_labeled": diff_labeled, "all_tasks_s": round(wall[a], 3),
            "labeled_s": round(wall[b], 3), "one_by_one_s": round(wall[c], 3), "all_tasks_cpu_s": round(cpu[a], 3),
            "labeled_cpu_s": round(cpu[b], 3), "one_by_one_cpu_s": round(cpu[c], 3), "windows": windows,
            "tasks": args.tasks, "labeled_channels": len(labeled), "preset": args.preset, "shape": list(args.shape),
            "threads": args.threads, "batch_size": args.batch_size, "repeats": args.repeats, "device": str(device),
            "tta": args.tta, "contiguous": args.contiguous, "pytorch_conv_choice": args.pytorch_conv_choice,
            "flop_ratio": round(flop_ratio, 3),
            "flop_ratio_labeled": round(flop_ratio_labeled, 3),
            "shared_gflop": round(shared / 1e9, 3), "branch_gflop": round(branch / 1e9, 3),
        }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
