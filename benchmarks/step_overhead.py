"""The per-parameter parts of a CPU training step, before and after issue #18's work on them (run by hand).

    python benchmarks/step_overhead.py [--presets demo official] [--rounds 5] [--threads 2]

Small operations on the weights cost their calls more than their arithmetic: on the demo model they took a
fifth of a training step. Three measurements, each variant alternating with the other within every round, medians
over the rounds:

1. Weight standardization of every standardized convolution of the model (its forward and backward, with a
   random gradient), channels-last weights as a CPU trains them: ``before`` (the forward in seven operations
   with `torch.var`, the backward by autograd over a recomputation of them), ``autograd`` (the same operations,
   autograd keeping what it needs) and ``now`` (`ccq.models.layers._Standardize`: the variance as a mean square,
   a closed-form backward).
2. One optimizer step over the model's parameters: PyTorch's per-parameter loop (``before``) and its fused kernel
   (``now``, what `ccq.training.optim.build_optimizer` builds), for AdamW and SGD.
3. Whole training steps of the demo model (batch 2, patch 16x48x48, channels-last, GroupNorm + activation stored,
   AdamW: as `ccq demo` trains), over batches whose tasks are drawn as the demo draws them: ``before`` (1 and
   2's before, every branch decoded), ``every branch`` (1 and 2's now) and ``now`` (also decoding only the
   labeled branches, `CCQNet.forward`'s ``labeled``: a lung-tumor or spleen sample needs one of two).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from collections.abc import Callable
from unittest import mock

import torch
from layout_speed import patch_of, timed

import ccq.models.layers as layers
from ccq.models import build_model, get_preset
from ccq.models.fused import recompute_enabled
from ccq.training.loss import IGNORE, partial_label_loss


def _old_rows(weight: torch.Tensor, eps: float) -> torch.Tensor:
    flat = weight.flatten(1)
    centred = flat - flat.mean(dim=1, keepdim=True)
    return (centred / torch.sqrt(centred.var(dim=1, keepdim=True) + eps)).view_as(weight)


class _OldStandardize(torch.autograd.Function):
    """Weight standardization as it was: keep the weight, recompute the forward in backward and let autograd
    differentiate it."""

    @staticmethod
    def forward(ctx, weight, eps):
        ctx.save_for_backward(weight)
        ctx.eps = eps
        with torch.no_grad():
            return layers._in_layout_of(_old_rows(weight, eps), weight)

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        with torch.enable_grad():
            w = weight.detach().requires_grad_(True)
            (grad_w,) = torch.autograd.grad(_old_rows(w, ctx.eps), w, grad)
        return grad_w, None


def old_standardize_weight(weight: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    if torch.is_grad_enabled() and weight.requires_grad:
        return _OldStandardize.apply(weight, eps)
    return _old_rows(weight, eps)


STANDARDIZE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "before": old_standardize_weight,
    "autograd": lambda w: _old_rows(w, 1e-12),
    "now": layers.standardize_weight,
}


def old_step_parts() -> contextlib.AbstractContextManager:
    """Models built or run inside standardize their weights as before."""
    return mock.patch.object(layers, "standardize_weight", old_standardize_weight)


def model_of(preset: str) -> torch.nn.Module:
    torch.manual_seed(0)
    config = get_preset(preset, patch_size=patch_of(preset), num_tasks=5)
    return build_model(config).to(memory_format=torch.channels_last_3d)


def standardization(preset: str, rounds: int, repeats: int) -> dict[str, float]:
    model = model_of(preset)
    weights = [m.weight for m in model.modules() if isinstance(m, layers.WSConv3d)]
    grads = [torch.randn_like(w) for w in weights]
    times: dict[str, list[float]] = {k: [] for k in STANDARDIZE}
    for _ in range(rounds):
        for name, fn in STANDARDIZE.items():

            def run(fn: Callable[[torch.Tensor], torch.Tensor] = fn) -> None:
                torch.autograd.backward([fn(w) for w in weights], grads)
                for w in weights:
                    w.grad = None

            times[name].append(timed(run, repeats))
    print(f"{preset}: {len(weights)} standardized convolutions, {sum(w.numel() for w in weights):,} weights")
    return {k: statistics.median(v) for k, v in times.items()}


def optimizers(preset: str, rounds: int, repeats: int) -> dict[str, float]:
    model = model_of(preset)
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    make = {
        "AdamW before": lambda: torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4),
        "AdamW now": lambda: torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4, fused=True),
        "SGD before": lambda: torch.optim.SGD(params, lr=1e-4, momentum=0.99, nesterov=True, weight_decay=3e-5),
        "SGD now": lambda: torch.optim.SGD(
            params, lr=1e-4, momentum=0.99, nesterov=True, weight_decay=3e-5, fused=True
        ),  # fmt: skip
    }
    built = {k: f() for k, f in make.items()}
    times: dict[str, list[float]] = {k: [] for k in make}
    for _ in range(rounds):
        for name, opt in built.items():
            times[name].append(timed(opt.step, repeats))
    return {k: statistics.median(v) for k, v in times.items()}


DEMO_CHANNELS = ((True, True), (True, True), (True, True), (False, True), (True, False))
"""The labeled (organ, tumor) channels of the demo's tasks: liver, kidney, pancreas, lung tumor, spleen."""


def demo_steps(rounds: int, repeats: int) -> dict[str, float]:
    """Mean time of a demo training step over `repeats` batches of two samples whose tasks are drawn as the demo
    draws them (uniformly, seeded): before, now decoding every branch, now decoding the labeled ones."""
    model = model_of("demo")
    patch = tuple(get_preset("demo").patch_size)
    image = (torch.rand(2, 1, *patch) * 2 - 1).contiguous(memory_format=torch.channels_last_3d)
    draw = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(repeats):
        tasks = torch.randint(0, len(DEMO_CHANNELS), (2,), generator=draw)
        labeled = torch.tensor([DEMO_CHANNELS[t] for t in tasks.tolist()])
        target = (torch.rand(2, 2, *patch, generator=draw) > 0.9).float()
        target[~labeled] = IGNORE
        batches.append((tasks, labeled, target))
    variants = {
        "before": torch.optim.AdamW(model.parameters(), lr=1e-5),
        "every branch": torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True),
        "now": torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    model.train()
    for _ in range(rounds):
        for name, opt in variants.items():

            def steps(name: str = name, opt: torch.optim.Optimizer = opt) -> None:
                for tasks, labeled, target in batches:
                    opt.zero_grad(set_to_none=True)
                    with recompute_enabled(False):
                        out = model(image, tasks, labeled if name == "now" else None)
                    partial_label_loss(out, target).total.backward()
                    opt.step()

            with old_step_parts() if name == "before" else contextlib.nullcontext():
                times[name].append(timed(steps, 1) / len(batches))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["demo", "official"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10, help="Timed calls (or demo batches) per round.")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, medians of {args.rounds} rounds (ms)")
    for preset in args.presets:
        ws = standardization(preset, args.rounds, args.repeats)
        print(f"  weight standardization, forward + backward: before {ws['before'] * 1e3:.2f}, "
              f"autograd {ws['autograd'] * 1e3:.2f}, now {ws['now'] * 1e3:.2f} "
              f"({ws['before'] / ws['now']:.2f}x)")  # fmt: skip
        opt = optimizers(preset, args.rounds, args.repeats)
        for kind in ("AdamW", "SGD"):
            before, now = opt[f"{kind} before"], opt[f"{kind} now"]
            print(f"  {kind} step: before {before * 1e3:.2f}, now {now * 1e3:.2f} ({before / now:.2f}x)")
    if "demo" in args.presets:
        steps = demo_steps(args.rounds, args.repeats)
        print(f"demo training step (batch 2): before {steps['before'] * 1e3:.1f}, now decoding every branch "
              f"{steps['every branch'] * 1e3:.1f} ({steps['before'] / steps['every branch']:.2f}x), now "
              f"{steps['now'] * 1e3:.1f} ({steps['before'] / steps['now']:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
