"""`ccq prepare` on full-size CTs: seconds per case, peak memory, and the cache's bytes per working voxel.

    python benchmarks/prepare_scale.py [--slices 300 1000] [--reference /path/to/older/ccq] [--json]

Writes synthetic CTs of 512 x 512 x N voxels (0.7 x 0.7 x 1.0 mm, int16 .nii.gz as MSD ships them): a body
ellipse filling 36% of each slice (fat, soft tissue, an organ holding a tumour, the spine, lungs in the upper
quarter of the scan, per-voxel noise of 15 HU) on a CT table, surrounded by air. Each case is prepared in a fresh
``python -m ccq prepare --workers 1`` process (the official 1.5 x 0.8 x 0.8 mm grid); its peak resident memory
is the one the kernel reports for that process (``wait4``'s ``ru_maxrss``): the peak RSS of one worker; its CPU
seconds (user + system) are less sensitive to a busy machine than its wall seconds.

``bytes_per_voxel`` = the bytes of the case's folder / the voxels of its whole (uncropped) working grid.

``--reference PATH`` prepares the same CTs with the ccq found at PATH (e.g. a checkout of an older version) in the
same way, one case after the other, and reports its figures beside ours and the largest difference between the
two caches' windowed images, in HU. With ``--json`` the last line printed is a JSON object of all figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

SPACING = (0.7, 0.7, 1.0)  # x, y, z of the file (MSD: slices on the last axis)
LABELS = {"0": "background", "1": "organ", "2": "tumour"}


def synthetic_ct(n_slices: int, seed: int = 0, size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(int16 HU [X, Y, Z], uint8 label [X, Y, Z]) of a CT-like volume in MSD's voxel order."""
    rng = np.random.default_rng(seed)
    c = np.linspace(-1, 1, size, dtype=np.float32)
    x, y = c[:, None], c[None, :]  # x: right-left, y: anterior-posterior
    body = (x / 0.75) ** 2 + (y / 0.61) ** 2 < 1.0  # pi * 0.75 * 0.61 / 4 = 36% of the slice
    inner = (x / 0.70) ** 2 + (y / 0.56) ** 2 < 1.0  # inside the fat layer
    spine = ((x / 0.07) ** 2 + ((y - 0.40) / 0.07) ** 2) < 1.0
    table = (np.abs(x) < 0.9) & (y > 0.66) & (y < 0.70)
    lungs = (((np.abs(x) - 0.33) / 0.25) ** 2 + ((y + 0.05) / 0.40) ** 2) < 1.0
    z = np.linspace(-1, 1, n_slices, dtype=np.float32)
    image = np.empty((size, size, n_slices), dtype=np.int16)
    label = np.zeros((size, size, n_slices), dtype=np.uint8)
    base = np.full((size, size), -1000.0, dtype=np.float32)
    base[table] = 150.0
    base[body] = -100.0
    base[inner] = 40.0
    base[spine] = 700.0
    for k in range(n_slices):  # slice by slice: the benchmark itself stays small too
        organ = ((x + 0.25) / 0.30) ** 2 + ((y + 0.05) / 0.25) ** 2 + (z[k] / 0.35) ** 2 < 1.0
        tumour = ((x + 0.30) / 0.08) ** 2 + ((y + 0.05) / 0.08) ** 2 + ((z[k] - 0.1) / 0.08) ** 2 < 1.0
        hu = base.copy()
        if z[k] > 0.5:
            hu[lungs & inner] = -850.0
        hu[organ] = 60.0
        hu[organ & tumour] = 20.0
        hu += rng.normal(0.0, 15.0, hu.shape).astype(np.float32)
        image[:, :, k] = np.rint(hu)
        label[:, :, k] = organ.astype(np.uint8) + (organ & tumour)
    return image, label


def write_raw(root: Path, n_slices: int, size: int) -> Path:
    """A one-case MSD task folder under ``root``; returns the collection file."""
    image, label = synthetic_ct(n_slices, size=size)
    affine = np.diag([-SPACING[0], -SPACING[1], SPACING[2], 1.0])
    task_dir = root / "Task_Scale"
    for sub, data in (("imagesTr", image), ("labelsTr", label)):
        (task_dir / sub).mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(data, affine), task_dir / sub / f"scale-{n_slices}.nii.gz")
    collection = {"name": "scale", "tasks": [{"name": "scale", "id": 0, "layout": "msd", "folder": "Task_Scale",
                                              "labels": LABELS, "organ": [1, 2], "tumor": [2]}]}  # fmt: skip
    path = root / "collection.json"
    path.write_text(json.dumps(collection))
    return path


def prepare(raw: Path, out: Path, pythonpath: str) -> dict:
    """Run ``ccq prepare --workers 1`` in a fresh process; (seconds, peak RSS, bytes per working voxel)."""
    env = {**os.environ, "PYTHONPATH": pythonpath}
    command = [sys.executable, "-m", "ccq", "prepare", "--collection", str(raw / "collection.json"), "--raw",
               str(raw), "--out", str(out), "--workers", "1", "--no-progress"]  # fmt: skip
    t0 = time.perf_counter()
    # cwd: `python -m` puts the working folder first on sys.path, before PYTHONPATH (a checkout there would win).
    proc = subprocess.Popen(command, env=env, cwd=pythonpath, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    output = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"ccq prepare failed ({proc.returncode}):\n{output}")
    entry = json.loads((out / "manifest.json").read_text())["cases"][0]
    case_dir = out / entry["path"]
    nbytes = sum(f.stat().st_size for f in case_dir.iterdir() if f.is_file())
    voxels = int(np.prod(entry["shape"]))
    return {
        "seconds": round(seconds, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_gib": round(usage.ru_maxrss * 1024 / 2**30, 3),  # Linux: ru_maxrss in KiB
        "bytes_per_voxel": round(nbytes / voxels, 3),
        "cache_mib": round(nbytes / 2**20, 1),
        "shape": entry["shape"],
        "crop_box": entry.get("crop_box"),
    }


def largest_difference_hu(ours: Path, reference: Path) -> float:
    """The largest |difference| of the windowed images of the two caches, in HU (slab by slab)."""
    from ccq.data.cache import PreparedDataset

    data = PreparedDataset(ours)
    entry = data.entries[0]
    ref = np.load(reference / entry["path"] / "image.npy", mmap_mode="r")
    reader = data.reader(entry)
    worst = 0.0
    for z0 in range(0, entry["shape"][0], 64):
        size = (min(64, entry["shape"][0] - z0), *entry["shape"][1:])
        image = reader.region((z0, 0, 0), size, label=False)[0]
        worst = max(worst, float(np.abs(image - ref[z0 : z0 + size[0]]).max()))
    return worst * data.preprocessing.hu_scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, nargs="+", default=(300, 1000), help="slices per synthetic CT")
    parser.add_argument("--size", type=int, default=512, help="voxels along x and y (512 as in CT; less for a test)")
    parser.add_argument("--reference", type=Path, default=None, help="a ccq checkout to prepare the same CTs with")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one, removed)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    ours = str(Path(__file__).resolve().parents[1])
    tmp = Path(tempfile.mkdtemp(prefix="ccq-prepare-scale-")) if args.dir is None else args.dir
    results: dict = {"cases": {}, "reference": {}}
    try:
        for n in args.slices:
            raw = tmp / f"raw-{n}"
            t0 = time.perf_counter()
            write_raw(raw, n, args.size)
            print(f"{args.size}x{args.size}x{n}: synthetic CT written in {time.perf_counter() - t0:.0f} s", flush=True)
            results["cases"][str(n)] = figures = prepare(raw, tmp / f"out-{n}", ours)
            print(f"  ccq prepare: {figures}", flush=True)
            if args.reference is None:
                shutil.rmtree(tmp / f"out-{n}")
            else:
                ref = prepare(raw, tmp / f"ref-{n}", str(args.reference.resolve()))
                ref["max_difference_hu"] = round(largest_difference_hu(tmp / f"out-{n}", tmp / f"ref-{n}"), 4)
                results["reference"][str(n)] = ref
                print(f"  reference ({args.reference}): {ref}", flush=True)
                for name in (f"out-{n}", f"ref-{n}"):
                    shutil.rmtree(tmp / name)
            shutil.rmtree(raw)
        results["load_average"] = [round(v, 1) for v in os.getloadavg()]
        if args.json:
            print(json.dumps(results))
    finally:
        if args.dir is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
