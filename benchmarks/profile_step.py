"""Where one training step of our model spends its CPU time, by operator (run by hand).

    python benchmarks/profile_step.py [--preset official] [--patch 32 96 96] [--threads 2] [--rows 15]

One forward+backward of model + loss at batch 1 under torch.profiler, after a warm-up; prints the top operators
by self CPU time and the share of all convolution operators (forward and backward).
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
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
