"""Training iterations per second through the real trainer (data loading included), and the share of the
time spent waiting for data.

    python benchmarks/train_speed.py --preset demo                     # CPU: the demo preset on phantoms
    python benchmarks/train_speed.py --preset official --device cuda   # GPU: 64x192x192, batch 2, fp32 + bf16

``demo`` trains on a small phantom collection prepared as `ccq demo` prepares it. ``official`` trains on
synthetic CT-sized volumes written straight into the prepared format on the official 1.5 x 0.8 x 0.8 mm grid
(`data_speed.write_folder`), with the official preset's loader (2 workers, full augmentation). The first
``--warmup`` iterations are not timed (allocator, cuDNN autotuning, worker start-up); validation is off and
only the final checkpoint is written (not timed). Times come from the trainer's own per-iteration log: the
wait for the next batch and the whole iteration. On CUDA every iteration ends with a host sync (the loss is
read back), so the figures are wall-clock truths, not queueing artefacts.

With ``--json`` the last line printed is one JSON object: ``{"preset", "device", "precision",
"iterations_per_s", "data_wait_fraction", "runs": [...one per precision...]}`` (the top-level figures are
those of the first precision listed).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # data_speed's synthetic folder writer

from data_speed import write_folder  # noqa: E402

from ccq.training.config import get_train_preset  # noqa: E402
from ccq.training.run_log import read_log  # noqa: E402
from ccq.training.trainer import Trainer  # noqa: E402


def demo_data(root: Path, cases: int) -> Path:
    from ccq.data.phantom import generate_collection
    from ccq.data.prepare_run import prepare_collection
    from ccq.data.preprocessing import PreprocessingConfig
    from ccq.demo import SPACING, DemoOptions
    from ccq.models import get_preset

    options = DemoOptions(out=root)
    collection = generate_collection(root / "raw", cases_per_task=cases, test_cases_per_task=0, seed=0,
                                     tasks=options.tasks, shape=options.shape)  # fmt: skip
    patch = get_preset(get_train_preset("demo").model).patch_size
    summary = prepare_collection(
        collection, None, root / "prepared", PreprocessingConfig(spacing=SPACING, patch_size=patch)
    )
    if not summary.ok:
        raise SystemExit(summary.report())
    return root / "prepared"


def run(preset: str, data: Path, out: Path, device: str, precision: str, iterations: int, warmup: int,
        workers: int | None, channels_last: bool) -> dict[str, float | str]:  # fmt: skip
    config = get_train_preset(preset).replace(
        iterations=warmup + iterations, val_fraction=0.0, val_every=0, save_every=10**9, log_every=1,
        tensorboard=False, device=device, precision=precision, channels_last=channels_last,
        **({} if workers is None else {"num_workers": workers}),
    )  # fmt: skip
    trainer = Trainer(config, data, out, progress=False, echo=lambda _: None)
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trainer.device)
    trainer.fit()
    timed = [r for r in read_log(out) if r["kind"] == "train" and r["iteration"] > warmup]
    seconds = sum(1.0 / r["it_s"] for r in timed)
    waited = sum(r["data_s"] for r in timed)
    result: dict[str, float | str] = {
        "precision": trainer.precision.name,
        "iterations_per_s": round(len(timed) / seconds, 4),
        "seconds_per_iteration": round(seconds / len(timed), 4),
        "data_wait_fraction": round(waited / seconds, 4),
        "batch_size": config.batch_size,
        "patch_size": "x".join(map(str, trainer.patch_size)),
        "num_workers": config.num_workers,
    }
    if trainer.device.type == "cuda":
        result["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated(trainer.device) / 2**30, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("demo", "official"), default="demo")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument(
        "--precision",
        nargs="+",
        default=None,
        help="precisions to time (default: fp32 on the CPU; fp32 and bf16 on CUDA)",
    )
    parser.add_argument("--iterations", type=int, default=None, help="timed iterations (demo 20, official 30)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: the preset's)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--cases", type=int, default=4, help="cases (per task for demo) in the synthetic data")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=(96, 256, 256),
        metavar=("D", "H", "W"),
        help="official: synthetic volume shape on the 1.5x0.8x0.8 mm grid",
    )
    parser.add_argument("--data", type=Path, default=None, help="a prepared folder to use instead")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device
    precisions = args.precision or (["fp32", "bf16"] if device.startswith("cuda") else ["fp32"])
    iterations = args.iterations or (20 if args.preset == "demo" else 30)
    tmp = Path(tempfile.mkdtemp(prefix="ccq-train-speed-"))
    try:
        data = args.data
        if data is None:
            start = time.perf_counter()
            if args.preset == "demo":
                data = demo_data(tmp, args.cases)
            else:
                data = tmp / "prepared"
                write_folder(data, args.cases, tuple(args.shape))
            print(f"data: {data} ({time.perf_counter() - start:.0f} s to make)", flush=True)
        cpu_name = f"CPU ({torch.get_num_threads()} threads)"
        name = torch.cuda.get_device_name(0) if device.startswith("cuda") else cpu_name
        runs = []
        for i, precision in enumerate(precisions):
            result = run(args.preset, data, tmp / f"run{i}", device, precision, iterations, args.warmup,
                         args.workers, args.channels_last)  # fmt: skip
            runs.append(result)
            print(f"{args.preset} on {name}, {result['precision']}: {result['iterations_per_s']:.3f} it/s "
                  f"({result['seconds_per_iteration']:.3f} s/it, batch {result['batch_size']} x "
                  f"{result['patch_size']}), waiting for data {100 * result['data_wait_fraction']:.1f}% "
                  f"of the time, {result['num_workers']} workers", flush=True)  # fmt: skip
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of this process: {peak:.0f} MB")
        if args.json:
            first = runs[0]
            print(json.dumps({"preset": args.preset, "device": name, "precision": first["precision"],
                              "iterations_per_s": first["iterations_per_s"],
                              "data_wait_fraction": first["data_wait_fraction"], "runs": runs}))  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
