"""All tasks at once against one task at a time: sliding-window prediction of one prepared volume.

    python benchmarks/infer_speed.py [--preset demo] [--shape 48 96 96] [--tasks 7] [--threads 2] [--tta]
        [--overlap 0.5] [--batch-size 1] [--json]

Both ways run the same code (`ccq.inference.predict_volume`, Gaussian-weighted windows stitched on the CPU) on the
same volume with the same randomly initialised model (seed 0; speed does not depend on the weights):

* all tasks: every window runs the encoder and image transformer once and the organ and tumour branches of all
  tasks in one batched pass (`forward_all_tasks`, what `ccq predict` does);
* one by one: the whole sliding window once per task (the encoder runs once per task and window).

Printed: both wall times, their ratio (the speed-up of predicting all tasks at once), the largest absolute
difference between the two sets of probabilities (they must agree to float32 noise), and the same ratio in
floating-point operations per window (`torch.utils.flop_counter`): the speed-up a compute-bound device could reach.
In CCQ only the encoder and image transformer are shared; the whole CNN decoder runs once per task and branch,
which bounds that ratio well below the number of tasks. The default volume is 48x96x96 voxels (the number of
windows it makes with the preset's patch is printed). With --json the last line printed is one JSON object:
{"speedup_all_tasks": ..., "max_abs_diff": ..., "all_tasks_s": ..., "one_by_one_s": ..., ...}.
Timings on a shared machine are noisy: compare figures of one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


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
    p.add_argument("--tta", action="store_true", help="8-way flip test-time augmentation in both ways")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    return p.parse_args(argv)


def _flop_ratio(model, window, tasks: list[int]) -> float:
    """FLOPs of one window for every task one by one, over the FLOPs of all tasks in one pass."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    def flops(ids: list[int]) -> int:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:  # (FlopCounterMode's module tracking does not work under inference_mode)
            model.forward_all_tasks(window, ids)
        return counter.get_total_flops()

    return len(tasks) * flops(tasks[:1]) / flops(tasks)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from ccq.errors import CCQError
    from ccq.inference import inference_device, predict_volume, window_starts
    from ccq.models import build_model, get_preset

    try:
        device = inference_device(args.device)
        config = get_preset(args.preset, num_tasks=args.tasks)
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
    options = {"overlap": args.overlap, "tta": args.tta, "batch_size": args.batch_size, "device": device}

    def timed(fn):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out, time.perf_counter() - start

    window = volume[None, None, : config.patch_size[0], : config.patch_size[1], : config.patch_size[2]].to(device)
    with torch.inference_mode():  # one window of warm-up: allocator, oneDNN kernels
        model.forward_all_tasks(window, tasks)
    flop_ratio = _flop_ratio(model, window, tasks)
    size = "x".join(map(str, args.shape))
    print(f"{args.preset} preset, patch {'x'.join(map(str, config.patch_size))}, volume {size} = {windows} windows, "
          f"{args.tasks} tasks, {device}, {args.threads} threads{', TTA' if args.tta else ''}", flush=True)  # fmt: skip
    together, t_all = timed(lambda: predict_volume(model, volume, tasks, **options))
    print(f"all tasks at once : {t_all:8.2f} s", flush=True)
    parts, t_each = timed(lambda: torch.cat([predict_volume(model, volume, [t], **options) for t in tasks]))
    print(f"one task at a time: {t_each:8.2f} s", flush=True)
    diff = float((together - parts).abs().max())
    speedup = t_each / t_all
    print(f"speed-up {speedup:.2f}x, max abs difference of the probabilities {diff:.2e}; "
          f"FLOPs one by one / all at once: {flop_ratio:.2f}")  # fmt: skip
    if args.json:
        print(json.dumps({
            "speedup_all_tasks": round(speedup, 3), "max_abs_diff": diff, "all_tasks_s": round(t_all, 3),
            "one_by_one_s": round(t_each, 3), "windows": windows, "tasks": args.tasks, "preset": args.preset,
            "shape": list(args.shape), "threads": args.threads, "device": str(device), "tta": args.tta,
            "flop_ratio": round(flop_ratio, 3),
        }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
