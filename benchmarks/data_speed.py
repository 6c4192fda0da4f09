"""Augmented training patches per second from the prepared cache, with 0, 1 and 2 loader workers.

    python benchmarks/data_speed.py [--cases 4] [--shape 200 512 512] [--seconds 15] [--cold] [--json]

Writes a synthetic prepared folder of realistic size (default 4 cases of 200 x 512 x 512 voxels on the
official 1.5 x 0.8 x 0.8 mm grid, a body in air with per-voxel noise) with `ccq.data.prepare.prepare_case` and
`ccq.data.cache.write_case` (compressed int16 chunks, cropped to the body), then draws official-preset batches
(64 x 192 x 192, batch 2, full augmentation) through `ccq.data.loader.PatchLoader`. The first batch of each
run is not timed (worker start-up).

By default the files sit in the page cache after writing, as on a training machine with enough memory. With
``--cold`` every sample first evicts every file of the folder from the page cache (``posix_fadvise(DONTNEED)``,
which drops a file's clean cached pages), so each patch reads its chunks from the disk: the first pass over a
collection larger than memory, at every step. With --json the last line printed is
``{"patches_per_s": {"0": ..., "1": ..., "2": ...}, "cold": ..., "cache_mib": ..., "load_average": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ccq.data import cache
from ccq.data.collection import Collection
from ccq.data.loader import PatchLoader
from ccq.data.prepare import prepare_case
from ccq.data.preprocessing import OFFICIAL_PREPROCESSING
from ccq.data.sampling import PatchSampler, SamplingConfig

LABELS = {0: "background", 1: "organ", 2: "tumor"}


def synthetic_case(seed: int, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """An abdomen-like volume in HU (body ellipse, an organ with a tumor) and its label map, (z, y, x)."""
    rng = np.random.default_rng(seed)
    d, h, w = shape
    z, y, x = (np.linspace(-1, 1, n, dtype=np.float32) for n in shape)
    body = (y[:, None] / 0.8) ** 2 + (x[None, :] / 0.95) ** 2 < 1.0  # [H, W], the same on every slice
    image = np.full(shape, -1000.0, np.float32)
    image[:, body] = 40.0
    cz, cy, cx = rng.uniform(-0.3, 0.3, 3)
    organ = ((z[:, None, None] - cz) / 0.5) ** 2 + ((y[None, :, None] - cy) / 0.3) ** 2
    organ = organ + ((x[None, None, :] - cx) / 0.3) ** 2 < 1.0
    tumor = ((z[:, None, None] - cz) / 0.12) ** 2 + ((y[None, :, None] - cy) / 0.06) ** 2
    tumor = tumor + ((x[None, None, :] - cx - 0.1) / 0.06) ** 2 < 1.0
    label = organ.astype(np.uint8)
    label[tumor & organ] = 2
    image[organ] = 100.0
    image[tumor & organ] = 60.0
    for k in range(d):  # per-voxel noise, as a CT has (it is what makes compressed chunks large)
        image[k] += rng.normal(0.0, 15.0, size=(h, w)).astype(np.float32)
    return image, label


def write_folder(root: Path, n_cases: int, shape: tuple[int, int, int]) -> None:
    task = {"name": "organ", "id": 0, "layout": "msd", "folder": "x", "labels": LABELS, "organ": [1, 2],
            "tumor": [2]}  # fmt: skip
    collection = Collection.from_dict({"name": "speed", "tasks": [task]})
    sz, sy, sx = OFFICIAL_PREPROCESSING.spacing
    # Voxel axes already (z, y, x) on the target grid: preparing reorients nothing and resamples nothing.
    affine = np.array([[0, 0, -sx, 0], [0, -sy, 0, 0], [sz, 0, 0, 0], [0, 0, 0, 1.0]])
    entries = []
    for i in range(n_cases):
        image, label = synthetic_case(i, shape)
        case = prepare_case((image, affine), (label, affine), collection.task(0), OFFICIAL_PREPROCESSING,
                            case_id=f"case_{i}")  # fmt: skip
        del image, label
        cache.write_case(root, "organ", f"case_{i}", image=case.hu, label=case.label,
                         locations=case.locations, meta=case.meta)  # fmt: skip
        entries.append(case.meta)
    cache.write_index(root, collection, OFFICIAL_PREPROCESSING, entries)


def evict(files: list[Path]) -> None:
    """Drop the files' pages from the page cache (they are clean: `ccq.data.chunked` fsyncs what it writes)."""
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


class ColdSampler(PatchSampler):
    """Every sample starts with nothing of the folder in the page cache."""

    def __init__(self, *args, files: list[Path], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.files = files

    def sample(self, index: int):
        evict(self.files)
        return super().sample(index)


def measure(root: Path, workers: int, seconds: float, batch_size: int, half_image: bool, cold: bool) -> float:
    data = cache.PreparedDataset(root)
    args = (data, OFFICIAL_PREPROCESSING.patch_size, SamplingConfig())
    if cold:
        files = sorted(p for p in (root / cache.CASES_DIR).rglob("*") if p.is_file())
        sampler = ColdSampler(*args, seed=0, files=files)
    else:
        sampler = PatchSampler(*args, seed=0)
    loader = PatchLoader(sampler, batch_size, num_workers=workers, prefetch_factor=4, half_image=half_image)
    patches, start, cpu, disk = 0, None, 0.0, 0
    for batch in loader:
        if start is None:  # the first batch pays for worker start-up
            start, cpu, disk = time.perf_counter(), time.process_time(), disk_bytes_read()
            continue
        patches += batch["image"].shape[0]
        if time.perf_counter() - start >= seconds:
            break
    rate = patches / (time.perf_counter() - start)
    if workers == 0:  # CPU time per patch: what the 2-worker rate approaches on 2 idle cores (x2)
        print(f"  main-process CPU per patch: {1000 * (time.process_time() - cpu) / patches:.0f} ms, "
              f"read from the disk per patch: {(disk_bytes_read() - disk) / patches / 2**20:.2f} MiB")  # fmt: skip
    return rate


def disk_bytes_read() -> int:
    """Bytes this process made the kernel fetch from storage (Linux ``/proc/self/io``; 0 elsewhere)."""
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in text.splitlines() if line.startswith("read_bytes:")), 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--shape", type=int, nargs=3, default=(200, 512, 512), metavar=("D", "H", "W"))
    parser.add_argument("--seconds", type=float, default=15.0, help="timed seconds per worker count")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=(0, 1, 2))
    parser.add_argument("--dir", type=Path, default=None, help="prepared folder to (re)use; default: a temp dir")
    parser.add_argument("--half-image", action="store_true", help="carry images as float16 between processes")
    parser.add_argument("--cold", action="store_true", help="every sample reads its chunks from the disk")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    tmp = None
    root = args.dir
    if root is None:
        tmp = Path(tempfile.mkdtemp(prefix="ccq-data-speed-"))
        root = tmp / "prepared"
    try:
        if not (root / cache.MANIFEST_FILE).is_file():
            t0 = time.perf_counter()
            write_folder(root, args.cases, tuple(args.shape))
            took = time.perf_counter() - t0
            print(f"wrote {args.cases} cases of {tuple(args.shape)} in {took:.1f} s -> {root}")
        rates = {}
        for workers in args.workers:
            rate = measure(root, workers, args.seconds, args.batch_size, args.half_image, args.cold)
            rates[str(workers)] = round(rate, 2)
            print(f"workers={workers}: {rates[str(workers)]:.2f} augmented 64x192x192 patches/s", flush=True)
        size = sum(p.stat().st_size for p in (root / cache.CASES_DIR).rglob("*") if p.is_file())
        if args.json:
            print(json.dumps({"patches_per_s": rates, "cold": args.cold, "cache_mib": round(size / 2**20, 1),
                              "load_average": [round(v, 1) for v in os.getloadavg()]}))  # fmt: skip
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
