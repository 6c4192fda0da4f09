"""Peak memory of `ccq predict` on a large CT: how many copies of the volume the whole pipeline holds.

    python benchmarks/infer_memory.py [--shape 512 512 300] [--voxel 0.8 0.8 1.5] [--preset demo]
        [--spacing Z Y X] [--overlap 0.5] [--tasks all] [--stub] [--threads 2] [--device cpu] [--tta]
        [--one-by-one] [--json]

A synthetic CT of --shape voxels (int16 HU, --voxel mm, RAS; a body, organs and a spine) is written as .nii.gz,
with a randomly initialised checkpoint of --preset whose preprocessing has --spacing (default: the spacing of
`ccq demo`) and the MOTS tasks. Then, in a fresh Python process, the whole `ccq predict` path runs on it (read,
preprocess, sliding window over all tasks, task by task back to the input's grid, post-processing, writing) and
reports its resident memory after loading the model (baseline) and at its peak (`ru_maxrss`). MB = 2**20 bytes.

`copies` = (peak - baseline) / the size of the volume in float32, the unit of "copies of the volume".

`seconds` is the time of the whole `ccq predict` run, from reading the file to writing every task's label map.
--one-by-one adds the official evaluation's way beside it, in the same process: one `ccq predict` per task
(`seconds_one_by_one`, their sum). On --device cuda the peak GPU memory is reported too (`peak_gpu_mb`).

--stub replaces the network by a pointwise stand-in of the same output shapes, so the memory of the rest of the
pipeline can be measured where the real network would take hours on a CPU (e.g. --spacing 1.5 0.8 0.8, the
official grid, with --preset official for its 64x192x192 patch). With --json the last line printed is one JSON
object of the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULT_TAG = "@@infer_memory_result "


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--shape", type=int, nargs=3, default=(512, 512, 300), metavar=("X", "Y", "Z"))
    p.add_argument("--voxel", type=float, nargs=3, default=(0.8, 0.8, 1.5), metavar=("X", "Y", "Z"),
                   help="voxel size of the CT in mm (default: 0.8 0.8 1.5)")  # fmt: skip
    p.add_argument("--preset", default="demo", help="model preset (default: demo)")
    p.add_argument("--spacing", type=float, nargs=3, default=None, metavar=("Z", "Y", "X"),
                   help="the checkpoint's working spacing (default: ccq demo's, ccq.demo.SPACING)")  # fmt: skip
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--tasks", default="all")
    p.add_argument("--stub", action="store_true", help="a pointwise stand-in for the network (see above)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--tta", action="store_true", help="8-way flip test-time augmentation (default: off)")
    p.add_argument("--one-by-one", action="store_true", help="also predict one task at a time (the official way)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--worker", metavar="DIR", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def write_inputs(folder: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """The CT and the checkpoint the worker predicts with."""
    import nibabel as nib
    import numpy as np
    import torch

    from ccq.checkpoint import save_checkpoint
    from ccq.data.collection import load_collection
    from ccq.data.preprocessing import PreprocessingConfig
    from ccq.demo import SPACING
    from ccq.models import build_model, get_preset

    x, y, z = args.shape
    hu = np.full(args.shape, -1000, dtype=np.int16)
    i, j = np.ogrid[:x, :y]
    body = ((i - x / 2) / (0.42 * x)) ** 2 + ((j - y / 2) / (0.32 * y)) ** 2 < 1
    liver = ((i - 0.35 * x) / (0.12 * x)) ** 2 + ((j - 0.45 * y) / (0.1 * y)) ** 2 < 1
    spine = ((i - x / 2) / (0.04 * x)) ** 2 + ((j - 0.7 * y) / (0.04 * y)) ** 2 < 1
    for k in range(z):
        piece = hu[:, :, k]
        piece[body] = 40
        if 0.3 * z < k < 0.7 * z:
            piece[liver] = 110
        piece[spine] = 700
    affine = np.diag([*args.voxel, 1.0])
    ct = folder / "ct.nii.gz"
    nib.save(nib.Nifti1Image(hu, affine), str(ct))
    del hu
    config = get_preset(args.preset, num_tasks=7)
    spacing = tuple(args.spacing) if args.spacing else SPACING
    torch.manual_seed(0)
    model = build_model(config).eval()
    pre = PreprocessingConfig(spacing=spacing, patch_size=config.patch_size)
    mots = load_collection("mots")
    return ct, save_checkpoint(folder / "model", model, preprocessing=pre, collection=mots, source="bench")


class Stub:
    """A pointwise stand-in with `forward_all_tasks`' output shape, costing next to nothing per window."""

    def __init__(self, patch):
        import torch

        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.config = type("C", (), {"patch_size": patch})()

    def parameters(self):
        return iter([self.weight])

    def eval(self):
        return self

    def forward_all_tasks(self, x, tasks):
        import torch

        organ, tumor = 10 * (x - 0.1), 10 * (x - 0.8)  # [B, 1, D, H, W]
        return torch.stack([organ, tumor], dim=2).expand(-1, len(tasks), -1, -1, -1, -1)


def worker(folder: Path, args: argparse.Namespace) -> None:
    import torch

    from ccq.inference.predictor import Predictor
    from ccq.inference.runner import PredictOptions, run_predict

    torch.set_num_threads(args.threads)
    options = PredictOptions(
        input_path=folder / "ct.nii.gz", output=folder / "out", model=folder / "model", tasks=(args.tasks,),
        device=args.device, overlap=args.overlap, tta=args.tta, progress=False, overwrite=True,
    )  # fmt: skip
    predictor = Predictor(options.model, device=args.device, overlap=args.overlap, tta=args.tta, progress=False)
    if args.stub:
        predictor.model = Stub(predictor.model_config.patch_size)
    baseline = _rss_mb()
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run_predict(options, echo=lambda *a, **k: None, predictor=predictor)
    seconds = time.perf_counter() - start
    figures = {"seconds": seconds}
    if cuda:
        figures["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if args.one_by_one:
        # The official evaluation's way: every task on its own, the whole path (reading to writing) each time.
        start = time.perf_counter()
        for task in predictor.collection.task_names:
            run_predict(dataclasses.replace(options, tasks=(task,)), echo=lambda *a, **k: None, predictor=predictor)
        figures["seconds_one_by_one"] = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    print(RESULT_TAG + json.dumps({"baseline_mb": baseline, "peak_mb": peak, **figures}), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(Path(args.worker), args)
        return 0
    import numpy as np

    from ccq.data.geometry import target_shape
    from ccq.demo import SPACING
    from ccq.inference import window_starts
    from ccq.models import get_preset

    volume_mb = float(np.prod(args.shape)) * 4 / 2**20
    spacing = tuple(args.spacing) if args.spacing else SPACING
    working = target_shape(args.shape[::-1], args.voxel[::-1], spacing)  # (z, y, x)
    patch = get_preset(args.preset).patch_size
    counts = [len(window_starts(max(n, p), p, args.overlap)) for n, p in zip(working, patch, strict=True)]
    windows = int(np.prod(counts))
    with tempfile.TemporaryDirectory(prefix="ccq-infer-memory-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        write_inputs(folder, args)
        print(f"CT {'x'.join(map(str, args.shape))} at {args.voxel} mm ({volume_mb:.0f} MB as float32), written in "
              f"{time.perf_counter() - start:.0f} s; working grid {'x'.join(map(str, working))} at {spacing} mm, "
              f"{windows} windows of {'x'.join(map(str, patch))} ({args.preset}{', stub' if args.stub else ''})",
              flush=True)  # fmt: skip
        cmd = [sys.executable, __file__, "--worker", tmp, *(argv if argv is not None else sys.argv[1:])]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_TAG)]
        if proc.returncode != 0 or not lines:
            print(proc.stderr[-4000:], file=sys.stderr)
            return 1
        result = json.loads(lines[-1][len(RESULT_TAG) :])
    copies = (result["peak_mb"] - result["baseline_mb"]) / volume_mb
    print(
        f"baseline (imports + model) {result['baseline_mb']:.0f} MB, peak {result['peak_mb']:.0f} MB: "
        f"{copies:.2f} copies of the float32 volume above the baseline; predicted in {result['seconds']:.0f} s"
    )
    if "seconds_one_by_one" in result:
        print(
            f"one task at a time (the official way): {result['seconds_one_by_one']:.0f} s, "
            f"{result['seconds_one_by_one'] / result['seconds']:.2f}x the time of all tasks at once"
        )
    if args.json:
        print(json.dumps({
            "peak_rss_mb": round(result["peak_mb"], 1), "baseline_rss_mb": round(result["baseline_mb"], 1),
            "volume_mb": round(volume_mb, 1), "copies": round(copies, 2), "seconds": round(result["seconds"], 3),
            "shape": list(args.shape), "voxel_mm": list(args.voxel), "working_shape": list(working),
            "spacing": list(spacing), "windows": windows, "preset": args.preset, "stub": args.stub,
            "threads": args.threads, "tasks": args.tasks, "device": args.device, "tta": args.tta,
            **{k: round(result[k], 3) for k in ("seconds_one_by_one", "peak_gpu_mb") if k in result},
        }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
