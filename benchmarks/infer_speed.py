"""All tasks at once against one task at a time: sliding-window prediction of one prepared volume.

    python benchmarks/infer_speed.py [--preset demo] [--shape 48 96 96] [--tasks 7] [--threads 2] [--tta]
        [--overlap 0.5] [--batch-size 1] [--repeats 1] [--contiguous] [--pytorch-conv-choice]
        [--compare-settings] [--flops-only] [--json]

Every way runs the same code (`ccq.inference.predict_channels`, Gaussian-weighted windows stitched on the CPU) on
the same volume with the same randomly initialised model (seed 0; speed does not depend on the weights):

* all tasks, every channel: every window runs the encoder and image transformer once and the organ and tumour
  branches of all tasks in one batched pass (`forward_all_tasks`);
* all tasks, labeled channels: the same, decoding only the (task, channel) pairs that the tasks' datasets label
  (the MOTS datasets' for task ids 0-6: colon's and lung's organ and spleen's tumour channels are skipped; both
  channels for ids above 6): what `ccq predict` does (`forward_channels`);
* one by one: the whole sliding window once per task, both channels (the encoder runs once per task and window),
  as the official evaluation predicts.

Settings: by default those of `ccq predict` on a CPU: channels-last memory layout (`ccq.inference.inference_layout`;
``--contiguous``: the default layout) and one-window convolutions on oneDNN (`ccq.models.fused.conv3d`;
``--pytorch-conv-choice``: PyTorch's own choice, its slow reference convolution for a small batch-1 input, as
before that change). ``--compare-settings`` runs the three ways under all four combinations, in turn, in one run.

The ways (and settings) are timed in turn, ``--repeats`` times; the fastest time of each is kept (other processes
only ever slow a run down). Printed: the times (wall clock and the process's CPU time, the steadier figure on a
shared machine), the speed-ups of the first two ways over the third, the largest absolute difference between their
probabilities and the same channels predicted one by one (they must agree to float32 noise), and the same ratios in
floating-point operations per window (`torch.utils.flop_counter`): the speed-up a device that is bound by
arithmetic alone could reach. In CCQ only the encoder and image transformer are shared; the CNN decoder runs once
per task and branch, which bounds that ratio well below the number of tasks (``--flops-only``: count them on the
meta device, no computation, and stop: for the official model on a CPU). The default volume is 48x96x96 voxels
(the number of windows it makes with the preset's patch is printed). With --json the last line printed is one
JSON object: {"speedup_all_tasks": ..., "speedup_labeled": ..., "max_abs_diff": ..., "all_tasks_s": ...,
"labeled_s": ..., "one_by_one_s": ..., ...} for the settings asked for (``ccq predict``'s with
``--compare-settings``, which adds "settings": {name: figures}). Timings on a shared machine are noisy: compare
figures of one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

MOTS_UNLABELED = {(4, 0), (5, 0), (6, 1)}
"""(task id, channel) pairs no MOTS dataset labels: colon's and lung's organ, spleen's tumour (`ccq.data`'s mots
collection; checked against it in tests/benchmarks)."""

WAYS = ("all tasks, every channel", "all tasks, labeled only", "one task at a time")


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
    p.add_argument("--compare-settings", action="store_true",
                   help="every combination of the two settings above, side by side")  # fmt: skip
    p.add_argument("--flops-only", action="store_true", help="only the FLOP ratios, counted on the meta device")
    p.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    return p.parse_args(argv)


def labeled_pairs(tasks: int) -> list[tuple[int, int]]:
    """(task index, channel) pairs the benchmark's tasks label (see the module docstring)."""
    return [(t, c) for t in range(tasks) for c in range(2) if (t, c) not in MOTS_UNLABELED]


def settings_to_run(args: argparse.Namespace) -> list[tuple[bool, bool]]:
    """(channels-last, oneDNN for one sample) combinations to time; the last one gives the main figures."""
    if args.compare_settings:
        return [(False, False), (True, False), (False, True), (True, True)]
    return [(not args.contiguous, not args.pytorch_conv_choice)]


def setting_name(channels_last: bool, onednn: bool) -> str:
    layout = "channels-last" if channels_last else "contiguous"
    return f"{layout}, {'oneDNN' if onednn else 'PyTorch conv choice'}"


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
    from ccq.inference import inference_device, predict_channels, window_starts
    from ccq.models import build_model, get_preset
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
    torch.manual_seed(0)
    model = build_model(config).eval().to(device)
    volume = torch.rand(tuple(args.shape), generator=torch.Generator().manual_seed(1)) * 2 - 1
    windows = 1
    for n, p in zip(args.shape, config.patch_size, strict=True):
        windows *= len(window_starts(max(n, p), p, args.overlap))
    tasks = list(range(args.tasks))
    every = [(t, c) for t in tasks for c in range(2)]
    labeled = labeled_pairs(args.tasks)
    options = {"overlap": args.overlap, "tta": args.tta, "batch_size": args.batch_size, "device": device}

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
    flops = {
        "flop_ratio": round(flop_ratio, 3), "flop_ratio_labeled": round(flop_ratio_labeled, 3),
        "shared_gflop": round(shared / 1e9, 3), "branch_gflop": round(branch / 1e9, 3),
    }  # fmt: skip
    flop_line = (
        f"FLOPs per window: shared (encoder, image transformer) {shared / 1e9:.2f} G, per (task, channel) branch "
        f"{branch / 1e9:.2f} G; one by one / all at once: every channel {flop_ratio:.2f}, labeled channels only "
        f"({len(labeled)}) {flop_ratio_labeled:.2f}"
    )
    if args.flops_only:
        print(f"{args.preset} preset, patch {'x'.join(map(str, config.patch_size))}, {args.tasks} tasks")
        print(flop_line)
        if args.json:
            print(json.dumps({"preset": args.preset, "tasks": args.tasks, **flops}))
        return 0

    settings = settings_to_run(args)
    size = "x".join(map(str, args.shape))
    print(f"{args.preset} preset, patch {'x'.join(map(str, config.patch_size))}, volume {size} = {windows} windows, "
          f"{args.tasks} tasks ({len(labeled)} labeled channels), {device}, {args.threads} threads, batch "
          f"{args.batch_size}{', TTA' if args.tta else ''}, fastest of {args.repeats}", flush=True)  # fmt: skip
    runs = {
        WAYS[0]: lambda: predict_channels(model, volume, tasks, every, **options),
        WAYS[1]: lambda: predict_channels(model, volume, tasks, labeled, **options),
        WAYS[2]: lambda: torch.cat([predict_channels(model, volume, [t], **options) for t in tasks]),
    }
    wall = {(s, w): float("inf") for s in settings for w in WAYS}
    cpu = dict(wall)
    outputs = {}
    for _ in range(args.repeats):
        for setting in settings:
            channels_last, onednn = setting
            layout = torch.channels_last_3d if channels_last and device.type == "cpu" else torch.contiguous_format
            model.to(memory_format=layout)  # (what `ccq.inference.inference_layout` does on the CPU)
            with onednn_for_one_sample(onednn):
                for way in WAYS:
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    start, start_cpu = time.perf_counter(), time.process_time()
                    outputs[setting, way] = runs[way]()
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    took, took_cpu = time.perf_counter() - start, time.process_time() - start_cpu
                    wall[setting, way], cpu[setting, way] = (
                        min(wall[setting, way], took),
                        min(cpu[setting, way], took_cpu),
                    )
                    print(f"{setting_name(*setting):34s} {way:26s}: {took:8.2f} s wall, {took_cpu:8.2f} s CPU",
                          flush=True)  # fmt: skip

    figures = {}
    for setting in settings:
        a, b, c = ((setting, w) for w in WAYS)
        parts = outputs[c]
        diff = float((outputs[a] - parts).abs().max())
        diff_labeled = float((outputs[b] - parts[[2 * t + ch for t, ch in labeled]]).abs().max())
        speedup, speedup_labeled = wall[c] / wall[a], wall[c] / wall[b]
        print(f"{setting_name(*setting)}: fastest " + ", ".join(f"{w} {wall[setting, w]:.2f} s wall / "
              f"{cpu[setting, w]:.2f} s CPU" for w in WAYS))  # fmt: skip
        print(f"  speed-up, every channel {speedup:.2f}x (CPU time {cpu[c] / cpu[a]:.2f}x), labeled channels only "
              f"{speedup_labeled:.2f}x (CPU time {cpu[c] / cpu[b]:.2f}x); max abs difference of the probabilities "
              f"{diff:.2e} / {diff_labeled:.2e}")  # fmt: skip
        figures[setting_name(*setting)] = {
            "speedup_all_tasks": round(speedup, 3), "speedup_labeled": round(speedup_labeled, 3),
            "speedup_all_tasks_cpu": round(cpu[c] / cpu[a], 3), "speedup_labeled_cpu": round(cpu[c] / cpu[b], 3),
            "max_abs_diff": diff, "max_abs_diff_labeled": diff_labeled, "all_tasks_s": round(wall[a], 3),
            "labeled_s": round(wall[b], 3), "one_by_one_s": round(wall[c], 3), "all_tasks_cpu_s": round(cpu[a], 3),
            "labeled_cpu_s": round(cpu[b], 3), "one_by_one_cpu_s": round(cpu[c], 3),
            "contiguous": not setting[0], "pytorch_conv_choice": not setting[1],
        }  # fmt: skip
    print(flop_line)
    if args.json:
        main_figures = figures[setting_name(*settings[-1])]
        print(json.dumps({
            **main_figures, "windows": windows, "tasks": args.tasks, "labeled_channels": len(labeled),
            "preset": args.preset, "shape": list(args.shape), "threads": args.threads, "batch_size": args.batch_size,
            "repeats": args.repeats, "device": str(device), "tta": args.tta, **flops,
            **({"settings": figures} if args.compare_settings else {}),
        }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
