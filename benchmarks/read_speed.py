"""Reading a CT: ccq's bounded NIfTI reader (`ccq.data.nifti_file`) against nibabel's ``get_fdata``, side by side.

The bounded reader checks the header first and decompresses a ``.nii.gz`` chunk by chunk into an array of the
declared size (nibabel zero-fills the whole declared size first). Both give the same float32 array (asserted here).
Times alternate between the two readers in one process; peak memory (VmHWM) is taken in a fresh process each.

    python benchmarks/read_speed.py                      # 512 x 512 x 160 int16, scaled, .nii.gz
    python benchmarks/read_speed.py --shape 64 64 32 --repeats 1 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

READERS = ("nibabel", "ccq")


def make_ct(path: Path, shape: tuple[int, int, int]) -> Path:
    """A CT-like int16 volume (smooth body, noise: it compresses as real CTs do, about 2-3x) with slope/intercept."""
    rng = np.random.default_rng(0)
    i, j, _ = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij")
    body = (i**2 + j**2 < 0.8).astype(np.float32) * 1040.0  # soft tissue in air, once the intercept is applied
    stored = (body + rng.normal(0, 20, shape).astype(np.float32)).astype(np.int16)
    img = nib.Nifti1Image(stored, np.diag([0.8, 0.8, 1.5, 1.0]))
    img.header.set_slope_inter(1.0, -1024.0)
    nib.save(img, str(path))
    return path


def read(reader: str, path: Path) -> np.ndarray:
    if reader == "nibabel":
        return nib.load(str(path)).get_fdata(dtype=np.float32)
    from ccq.data.nifti_file import read_nifti_file

    return read_nifti_file(path, what="image", as_float=True)[0]


def peak_rss_mib(reader: str, path: Path) -> float:
    """Peak resident memory of a fresh process that reads ``path`` once (MiB; Linux VmHWM, which starts afresh
    at exec, unlike ru_maxrss, which a child inherits from the process that forked it)."""
    code = (
        "import sys; sys.path.insert(0, 'benchmarks'); import read_speed; from pathlib import Path; "
        f"read_speed.read({reader!r}, Path({str(path)!r})); "
        "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(out.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 160), metavar=("X", "Y", "Z"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = make_ct(Path(tmp) / "ct.nii.gz", tuple(args.shape))
        np.testing.assert_array_equal(read("nibabel", path), read("ccq", path))
        times: dict[str, list[float]] = {r: [] for r in READERS}
        for _ in range(args.repeats):
            for reader in READERS:
                start = time.perf_counter()
                read(reader, path)
                times[reader].append(time.perf_counter() - start)
        result = {
            "shape": list(args.shape),
            "file_mib": round(path.stat().st_size / 2**20, 1),
            "median_s": {r: round(statistics.median(t), 3) for r, t in times.items()},
            "ccq_over_nibabel": round(statistics.median(times["ccq"]) / statistics.median(times["nibabel"]), 3),
            "peak_rss_mib": {r: round(peak_rss_mib(r, path), 1) for r in READERS},
        }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{' x '.join(map(str, result['shape']))} int16 .nii.gz ({result['file_mib']} MiB), {args.repeats} repeats")
    for reader in READERS:
        print(f"  {reader:<8} median {result['median_s'][reader]:.3f} s, peak RSS {result['peak_rss_mib'][reader]} MiB")
    print(f"  ccq / nibabel time: {result['ccq_over_nibabel']:.3f}")


if __name__ == "__main__":
    main()
