"""Training-step speed and peak memory of our models on a CPU, optionally against the authors' code.

    python benchmarks/model_speed.py [--official-src DIR] [--official-dodnet-src FILE_OR_DIR]
        [--preset official] [--patch 32 96 96] [--repeats 5] [--threads 2] [--channels-last]
        [--no-dodnet] [--device cpu|cuda] [--batch 1] [--precision fp32|bf16] [--json]

The measure (the official reference speed, docs/architecture.md): batch 1, input 1x1x32x96x96,
`torch.set_num_threads(2)`, one training step = forward + loss + backward (no optimizer step), the median of
--repeats steps after one warm-up step. The loss is the official Dice + BCE (docs/architecture.md#training) on a
random binary target for both channels: for our models the training loss itself
(`ccq.training.loss.partial_label_loss`, BCE on logits + soft Dice on the sigmoid); for the official DoDNet,
which also returns logits, the same formula written out here; for the official CCQ, which returns
probabilities, BCE + soft Dice on those (mathematically the same loss). Forward-only time (eval mode,
no_grad, the inference path) is measured too.

Every model runs in its own fresh Python process (this script re-invoked with a hidden --worker flag), so
that its peak resident memory (`ru_maxrss`) is its own. Reported per model: the RSS after the imports,
after the model is built, and the peak (the increment is what the training step itself costs). MB = 2**20
bytes. Our CCQ preset (--preset) and DoDNet preset (--dodnet-preset) are always measured; the official
models when their source is given (DIR = the `code/network` folder of github.com/Yang-007/CCQ; DoDNet =
its `a_DynConv/unet3D_DynConv882.py` or that folder), imported at run time (benchmarks/_official.py).
Ratios: time_ratio = official / ours (above 1: ours is faster), memory_ratio = ours / official peak RSS
(below 1: ours uses less).

--channels-last puts our models and their input in torch.channels_last_3d (the official ones stay as they
are). With --json the last line printed is one JSON object (ours_s, ours_peak_mb, official_s, ...).
On a GPU (`--device cuda`) the official code runs as its authors wrote it (no CPU shim), every timed step
ends with `torch.cuda.synchronize()`, the memory figures are the CUDA allocator's (`max_memory_allocated`, MB),
and `--precision bf16` runs forward and loss under `torch.autocast(bfloat16)` for every model (the loss itself in
float32: the official model's probabilities are cast up first). The official GPU recipe (batch 2, 64x192x192) is
`--device cuda --batch 2 --patch 64 192 192`.
Timings on a shared machine are noisy: compare figures of one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULT_TAG = "@@model_speed_result "
WORKER_KINDS = ("ours", "official", "official-dodnet")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--official-src",
        metavar="DIR",
        help="local copy of the `code/network` folder of github.com/Yang-007/CCQ",
    )
    p.add_argument(
        "--official-dodnet-src",
        metavar="FILE_OR_DIR",
        help="the official DoDNet model file unet3D_DynConv882.py, or its folder",
    )
    p.add_argument("--preset", default="official", help="our CCQ model preset (default: official)")
    p.add_argument("--dodnet-preset", default="dodnet", help="our DoDNet model preset (default: dodnet)")
    p.add_argument("--no-dodnet", action="store_true", help="skip the DoDNet models")
    p.add_argument(
        "--patch",
        type=int,
        nargs=3,
        default=(32, 96, 96),
        metavar=("D", "H", "W"),
        help="input size (default: 32 96 96)",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed steps per model (default: 5)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default: 2)")
    p.add_argument("--task", type=int, default=0, help="task id of the input (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, input and target (default: 0)")
    p.add_argument("--channels-last", action="store_true", help="our models and their input in torch.channels_last_3d")
    p.add_argument(
        "--no-recompute",
        action="store_true",
        help="our models keep every activation (plain autograd) instead of recomputing GN/act/upsampling in backward",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run (default: cpu)")
    p.add_argument("--batch", type=int, default=1, help="patches per step (default: 1)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16: autocast (cuda only)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--worker", choices=WORKER_KINDS, help=argparse.SUPPRESS)
    p.add_argument("--worker-model", help=argparse.SUPPRESS)  # a preset name or an official source path
    args = p.parse_args(argv)
    if any(s <= 0 or s % 16 for s in args.patch):
        p.error(f"--patch {' '.join(map(str, args.patch))}: every size must be a positive multiple of 16")
    if args.repeats < 1:
        p.error(f"--repeats {args.repeats}: expected at least 1")
    if args.threads < 1:
        p.error(f"--threads {args.threads}: expected at least 1")
    if args.batch < 1:
        p.error(f"--batch {args.batch}: expected at least 1")
    if args.precision != "fp32" and args.device != "cuda":
        p.error(f"--precision {args.precision}: only with --device cuda (the CPU runs fp32)")
    return args


# ------------------------------------------------------------------------------------------------- worker


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def soft_dice_loss(prob: Any, target: Any) -> Any:
    """The official soft Dice: 1 - 2*sum(p*t)/(sum(p)+sum(t)+1) per sample and channel over the patch, averaged."""
    dims = tuple(range(2, prob.dim()))
    inter = (prob * target).sum(dims)
    return (1 - 2 * inter / (prob.sum(dims) + target.sum(dims) + 1)).mean()


def make_loss(returns_probabilities: bool, project_loss: bool = False) -> Any:
    """loss(output, target) -> scalar; `project_loss`: our training loss (for our models' logits)."""
    import torch
    import torch.nn.functional as F

    if project_loss:
        from ccq.training.loss import partial_label_loss

        return lambda logits, target: partial_label_loss(logits, target).total
    if returns_probabilities:

        def loss(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return F.binary_cross_entropy(prob, target) + soft_dice_loss(prob, target)
    else:

        def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            bce = F.binary_cross_entropy_with_logits(logits, target)
            return bce + soft_dice_loss(torch.sigmoid(logits), target)

    return loss


def build(kind: str, model_arg: str, patch: tuple[int, int, int], cuda: bool) -> tuple[Any, bool, str]:
    """(model, returns probabilities?, description). `cuda`: the official code keeps its own `.cuda()` calls."""
    if kind == "ours":
        from ccq.models import build_model, get_preset

        return build_model(get_preset(model_arg, patch_size=patch)), False, f"ours ({model_arg})"
    from _official import build_official_dodnet, load_official_ccq, load_official_dodnet

    if kind == "official":
        return load_official_ccq(model_arg, on_cuda=cuda)(image_size=patch), True, "official CCQ"
    return build_official_dodnet(load_official_dodnet(model_arg, on_cuda=cuda)), False, "official DoDNet"


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Time and measure one model in this process; returns the figures."""
    import torch

    rss_imports = rss_mb()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    patch = tuple(args.patch)
    cuda = args.device == "cuda"
    device = torch.device(args.device)
    model, returns_prob, label = build(args.worker, args.worker_model, patch, cuda)
    # The official models index a one-hot encoding with a task tensor: one task id per patch.
    task = torch.full((args.batch,), args.task, dtype=torch.long)
    g = torch.Generator().manual_seed(args.seed + 1)
    x = torch.rand(args.batch, 1, *patch, generator=g) * 2 - 1
    target = torch.randint(0, 2, (args.batch, 2, *patch), generator=g).float()
    model, x, target, task = model.to(device), x.to(device), target.to(device), task.to(device)
    if args.channels_last and args.worker == "ours":
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    loss_fn = make_loss(returns_prob, project_loss=args.worker == "ours")
    params = sum(p.numel() for p in model.parameters())
    rss_build = rss_mb()
    if cuda:
        torch.cuda.synchronize()
        gpu_build = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def train_step() -> float:
        model.zero_grad(set_to_none=True)
        sync()
        t0 = time.perf_counter()
        with autocast:
            out = model(x.clone(), task)  # clone: the official code has in-place activations
        loss = loss_fn(out.float(), target)  # float32 loss (BCE on probabilities refuses autocast)
        loss.backward()
        sync()
        return time.perf_counter() - t0

    model.train()
    recompute = contextlib.nullcontext()
    if args.no_recompute and args.worker == "ours":
        from ccq.models.fused import recompute_enabled

        recompute = recompute_enabled(False)
    with recompute:
        train_step()  # warm-up: allocator, oneDNN / cuDNN kernels
        step_times = [train_step() for _ in range(args.repeats)]
    peak_train = peak_rss_mb()
    if cuda:
        gpu_peak = torch.cuda.max_memory_allocated() / 2**20

    model.eval()
    model.zero_grad(set_to_none=True)
    with torch.no_grad():

        def forward() -> float:
            sync()
            t0 = time.perf_counter()
            with autocast:
                model(x.clone(), task)
            sync()
            return time.perf_counter() - t0

        forward()
        forward_times = [forward() for _ in range(args.repeats)]
    if cuda:  # the allocator's figures: what the step costs on the GPU
        peak_train, rss_build, rss_imports = gpu_peak, gpu_build, 0.0
    return {
        "label": label,
        "params": params,
        "s": statistics.median(step_times),
        "times": [round(t, 4) for t in step_times],
        "forward_s": statistics.median(forward_times),
        "import_mb": rss_imports,
        "build_mb": rss_build,
        "peak_mb": peak_train,
        "increment_mb": peak_train - rss_build,
    }


# ------------------------------------------------------------------------------------------------- parent


def run_worker(args: argparse.Namespace, kind: str, model_arg: str) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        kind,
        "--worker-model",
        model_arg,
        "--patch",
        *map(str, args.patch),
        "--repeats",
        str(args.repeats),
        "--threads",
        str(args.threads),
        "--task",
        str(args.task),
        "--seed",
        str(args.seed),
        "--device",
        args.device,
        "--batch",
        str(args.batch),
        "--precision",
        args.precision,
    ]
    if args.channels_last:
        cmd.append("--channels-last")
    if args.no_recompute:
        cmd.append("--no-recompute")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    results = [line[len(RESULT_TAG) :] for line in proc.stdout.splitlines() if line.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not results:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        if proc.returncode == 2 and len(lines) == 1:  # a one-line error (bad preset, bad official source)
            raise SystemExit(lines[0])
        tail = "\n".join(lines[-15:])
        raise SystemExit(f"error: the {kind} worker ({model_arg}) exited with {proc.returncode}:\n{tail}")
    return json.loads(results[-1])


def print_table(rows: list[tuple[str, dict[str, Any]]]) -> None:
    header = (
        f"{'model':<24}{'params':>12}{'step s':>9}{'fwd s':>8}{'import MB':>11}{'built MB':>10}"
        f"{'peak MB':>9}{'step +MB':>10}  steps (s)"
    )
    print(header)
    print("-" * len(header))
    for name, r in rows:
        print(
            f"{name:<24}{r['params']:>12,}{r['s']:>9.3f}{r['forward_s']:>8.3f}{r['import_mb']:>11.0f}"
            f"{r['build_mb']:>10.0f}{r['peak_mb']:>9.0f}{r['increment_mb']:>10.0f}  "
            f"{' '.join(f'{t:.2f}' for t in r['times'])}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        from _official import OfficialSourceError

        from ccq.errors import CCQError

        try:
            result = worker(args)
        except (OfficialSourceError, CCQError) as err:  # a bad source or preset: one line, no traceback
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(RESULT_TAG + json.dumps(result))
        return 0

    from _official import OfficialSourceError, check_ccq_source

    try:
        if args.official_src:
            args.official_src = str(check_ccq_source(args.official_src))
    except OfficialSourceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.official_dodnet_src and not Path(args.official_dodnet_src).exists():
        print(
            f"error: --official-dodnet-src {args.official_dodnet_src}: no such file or directory",
            file=sys.stderr,
        )
        return 2

    jobs = [("ours", "ours", args.preset)]
    if args.official_src:
        jobs.append(("official", "official", args.official_src))
    if not args.no_dodnet:
        jobs.append(("ours_dodnet", "ours", args.dodnet_preset))
        if args.official_dodnet_src:
            jobs.append(("official_dodnet", "official-dodnet", str(Path(args.official_dodnet_src).resolve())))
    import torch

    size = "x".join(map(str, args.patch))
    where = f"{torch.cuda.get_device_name()} (GPU MB = CUDA allocator)" if args.device == "cuda" else "CPU"
    print(
        f"torch {torch.__version__}, {where}, {args.precision}, {args.threads} threads, batch {args.batch}, "
        f"input {args.batch}x1x{size}, task {args.task}, median of {args.repeats} steps after 1 warm-up"
        f"{', channels_last_3d (ours)' if args.channels_last else ''}"
    )
    results: dict[str, dict[str, Any]] = {}
    for key, kind, model_arg in jobs:
        results[key] = run_worker(args, kind, model_arg)
    print_table([(r["label"], r) for r in results.values()])

    summary: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": args.threads,
        "device": args.device,
        "batch": args.batch,
        "precision": args.precision,
        "patch": list(args.patch),
        "repeats": args.repeats,
        "preset": args.preset,
        "channels_last": args.channels_last,
        "recompute": not args.no_recompute,
    }
    for key, r in results.items():
        for field in (
            "s",
            "forward_s",
            "peak_mb",
            "build_mb",
            "import_mb",
            "increment_mb",
            "params",
            "times",
        ):
            summary[f"{key}_{field}"] = r[field]
    for ours, official, prefix in (("ours", "official", ""), ("ours_dodnet", "official_dodnet", "dodnet_")):
        if ours in results and official in results:
            o, f = results[ours], results[official]
            summary[f"{prefix}time_ratio"] = f["s"] / o["s"]
            summary[f"{prefix}forward_time_ratio"] = f["forward_s"] / o["forward_s"]
            summary[f"{prefix}memory_ratio"] = o["peak_mb"] / f["peak_mb"]
            print(
                f"{prefix}time_ratio={summary[f'{prefix}time_ratio']:.2f} (official/ours, training step; "
                f"forward only {summary[f'{prefix}forward_time_ratio']:.2f})  "
                f"{prefix}memory_ratio={summary[f'{prefix}memory_ratio']:.2f} (ours/official, peak RSS)"
            )
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
