"""Where one training step of our model spends its CPU time, by operator or by part (run by hand).

    python benchmarks/profile_step.py [--preset official] [--patch 32 96 96] [--threads 2] [--rows 15]
    python benchmarks/profile_step.py --preset demo --patch 16 48 48 --parts [--batch 2]

One forward+backward of model + loss at batch 1 under torch.profiler, after a warm-up; prints the top operators
by self CPU time and the share of all convolution operators (forward and backward). With ``--parts``: the mean
time of a forward+backward (channels-last, GroupNorm + activation stored, as the demo trains) of the whole model
(both branches), of one branch only (`forward_channels`), and of the encoder alone: how the time divides between
the encoder, each decoded branch and the rest (image transformer, queries, skip gates, head).
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from ccq.models import build_model, get_preset
from ccq.training.loss import partial_label_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="official")
    parser.add_argument("--patch", type=int, nargs=3, default=[32, 96, 96], metavar=("D", "H", "W"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--parts", action="store_true", help="Time whole model / one branch / encoder instead.")
    parser.add_argument("--batch", type=int, default=2, help="Batch size of --parts.")
    parser.add_argument("--repeats", type=int, default=12, help="Timed steps per part with --parts.")
    args = parser.parse_args()
    if args.parts:
        time_parts(args)
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(get_preset(args.preset, patch_size=tuple(args.patch))).train()
    x = torch.rand(1, 1, *args.patch) * 2 - 1
    target = (torch.rand(1, 2, *args.patch) > 0.5).float()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        partial_label_loss(model(x, torch.tensor([0])), target).total.backward()

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    total = sum(e.self_cpu_time_total for e in events)
    conv = sum(e.self_cpu_time_total for e in events if "conv" in e.key.lower() and not e.key.startswith("_"))
    print(f"convolution operators: {conv / total:.0%} of {total / 1e6:.2f} s self CPU time")


def time_parts(args: argparse.Namespace) -> None:
    import time

    from ccq.models.fused import recompute_enabled

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layout = torch.channels_last_3d
    model = (
        build_model(get_preset(args.preset, patch_size=tuple(args.patch), num_tasks=2)).train().to(memory_format=layout)
    )
    x = (torch.rand(args.batch, 1, *args.patch) * 2 - 1).contiguous(memory_format=layout)
    tasks = torch.zeros(args.batch, dtype=torch.long)

    def backward(*outputs: torch.Tensor) -> None:
        sum(o.float().square().mean() for o in outputs).backward()

    def encoder() -> None:
        skips, bottleneck = model.encoder(x)
        backward(*skips, bottleneck)

    parts = {
        "whole model (organ + tumor branches)": lambda: backward(model(x, tasks)),
        "one branch (forward_channels)": lambda: backward(model.forward_channels(x, [(0, 0)])),
        "encoder alone": encoder,
    }
    for name, run in parts.items():
        with recompute_enabled(False):
            for i in range(3 + args.repeats):
                if i == 3:
                    began = time.perf_counter()
                model.zero_grad(set_to_none=True)
                run()
        print(f"{name}: {(time.perf_counter() - began) / args.repeats:.4f} s per forward+backward")


if __name__ == "__main__":
    main()
