"""Evaluation speed: ccq's Dice + HD95 of one structure against MONAI's HD95 (and MedPy's on a smaller case).

    python benchmarks/eval_speed.py [--shape 512 512 160] [--repeats 3] [--medpy-shape 256 256 80] [--json]

Synthetic CT-sized masks in file voxel order at 0.8 x 0.8 x 2.5 mm: a large compact organ (liver-like, ~2 M
voxels, the prediction shifted, resized and with a false-positive island), a small tumour, and a tangle of thin
vessels (many surface voxels for their volume). For each structure, the median over ``--repeats`` of

* ``ccq``: `ccq.evaluation.scoring.score_masks` under the "standard" definition (Dice and HD95 in mm, the method
  chosen automatically), and the same forced to each method (``edt``: distance transform of the crop,
  ``kdtree``: nearest surface voxel);
* ``monai``: ``monai.metrics.compute_hausdorff_distance(percentile=95, spacing=...)`` on the same bool masks
  (the four run in turns, so that a shared machine's changing load affects them alike);
* ``medpy`` (on the ``--medpy-shape`` corner of the volume, ~25x slower): ``medpy.metric.binary.hd95`` with
  spacing (1, 1, 1), against ccq's "mots" definition on the same masks.

Then the whole path for one case (``--no-end-to-end`` skips it): the organ pair as a liver label map (organ 1,
tumour 2) in NIfTI files, scored by `ccq.evaluation.evaluate_folder` (reading, label checks, both channels,
writing the reports) under each definition, beside MONAI's HD95 of the organ mask alone.

The values are printed beside the times (ccq and MONAI agree to float32 precision; ccq and MedPy exactly).
``--calibrate`` also prints the per-voxel costs behind ``method="auto"`` (`ccq.evaluation.surface.EDT_COST`,
``KDTREE_COST``). With --json the last line printed is one JSON object
``{"shape": [...], "structures": {name: {"ccq_s": ..., "monai_s": ..., "speedup_vs_monai": ..., ...}},
"end_to_end": {"standard_s": ..., "mots_s": ..., "monai_organ_hd95_s": ...}}``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi

from ccq.evaluation.scoring import score_masks
from ccq.evaluation.surface import surface_mask, union_box

SPACING = (0.8, 0.8, 2.5)


def _ellipsoid(shape, centre, radii) -> np.ndarray:
    # Evaluated on the ellipsoid's own box only: a full-volume ogrid per shape would dominate the set-up time.
    out = np.zeros(shape, dtype=bool)
    box = tuple(
        slice(max(int(c - r) - 1, 0), min(int(c + r) + 2, n)) for c, r, n in zip(centre, radii, shape, strict=True)
    )
    grid = np.ogrid[box]
    inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1.0
    out[box] = inside
    return out


def organ_pair(shape, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x, y, z = shape
    centre = np.array([0.45 * x, 0.45 * y, 0.5 * z])
    radii = np.array([0.21 * x, 0.17 * y, 0.28 * z])
    gt = _ellipsoid(shape, centre, radii)
    gt |= _ellipsoid(shape, centre + [0.12 * x, 0.1 * y, 0.1 * z], radii * 0.55)  # a lobe
    pred = _ellipsoid(shape, centre + rng.uniform(-3, 3, 3), radii * rng.uniform(0.95, 1.05, 3))
    pred |= _ellipsoid(shape, centre + [0.12 * x, 0.1 * y, 0.1 * z], radii * 0.5)
    pred |= _ellipsoid(shape, (0.75 * x, 0.6 * y, 0.4 * z), (8, 8, 3))  # a false-positive island
    return pred, gt


def tumor_pair(shape, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x, y, z = shape
    centre = np.array([0.4 * x, 0.5 * y, 0.5 * z])
    gt = _ellipsoid(shape, centre, (14, 12, 5)) | _ellipsoid(shape, centre + [30, 10, 3], (5, 5, 2))
    pred = _ellipsoid(shape, centre + rng.uniform(-2, 2, 3), (13, 13, 5))
    return pred, gt


def vessel_pair(shape, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Thin tubes (random segments, radius ~2 voxels) in a liver-sized box; the prediction misses some and
    is jittered by a voxel."""
    x, y, z = shape
    lo = np.array([0.25 * x, 0.25 * y, 0.2 * z])
    hi = np.array([0.7 * x, 0.7 * y, 0.8 * z])
    starts = rng.uniform(lo, hi, (60, 3))
    ends = np.clip(starts + rng.normal(0, 40, (60, 3)) * [1, 1, 0.3], lo, hi)
    t = np.linspace(0, 1, 400)[:, None]

    def draw(segments, jitter) -> np.ndarray:
        centre = np.zeros(shape, dtype=bool)
        for a, b in segments:
            points = np.rint(a + t * (b - a) + jitter).astype(int)
            centre[points[:, 0], points[:, 1], points[:, 2]] = True
        return ndi.binary_dilation(centre, iterations=2)

    pairs = list(zip(starts, ends, strict=True))
    gt = draw(pairs, 0.0)
    pred = draw(pairs[:50], rng.integers(-1, 2, 3))
    return pred, gt


STRUCTURES = {"organ": organ_pair, "tumor": tumor_pair, "vessels": vessel_pair}


def timed(fn, repeats: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def timed_together(fns: dict[str, object], repeats: int) -> dict[str, tuple[float, object]]:
    """Median seconds and last value of each function, run in turns (a shared CPU's load hits all alike)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    values: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            values[name] = fn()  # type: ignore[operator]
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), values[name]) for name in fns}


def monai_hd95(pred: np.ndarray, gt: np.ndarray, spacing) -> float:
    import torch
    from monai.metrics import compute_hausdorff_distance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = compute_hausdorff_distance(
            torch.from_numpy(pred)[None, None], torch.from_numpy(gt)[None, None], include_background=True,
            percentile=95, spacing=list(spacing),
        )  # fmt: skip
    return float(value)


def calibration(pred: np.ndarray, gt: np.ndarray, edt_s: float, kdtree_s: float) -> dict[str, float]:
    """Microseconds per crop voxel of one distance transform, and per surface voxel and level of the k-d tree."""
    box = union_box(pred, gt)
    crop = int(np.prod([s.stop - s.start for s in box]))
    n = int(np.count_nonzero(surface_mask(pred[box])) + np.count_nonzero(surface_mask(gt[box])))
    return {
        "crop_voxels": crop,
        "surface_voxels": n,
        "edt_us_per_voxel": 1e6 * edt_s / (2 * crop),
        "kdtree_us_per_point_level": 1e6 * kdtree_s / (n * math.log2(max(n, 2))),
    }


def end_to_end(
    organ: tuple[np.ndarray, np.ndarray], tumor: tuple[np.ndarray, np.ndarray], repeats: int
) -> dict[str, float]:
    """Seconds for `evaluate_folder` on one liver case written as NIfTI (organ 1, tumour 2), per definition."""
    import nibabel as nib

    from ccq.evaluation import evaluate_folder

    affine = np.diag([*SPACING, 1.0])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for folder, o, t in (("pred", *[m[0] for m in (organ, tumor)]), ("gt", *[m[1] for m in (organ, tumor)])):
            label = o.astype(np.uint8)
            label[t] = 2  # a liver label map: the tumour is part of the liver
            (root / folder).mkdir()
            nib.save(nib.Nifti1Image(label, affine), str(root / folder / "case_0.nii.gz"))
        out: dict[str, float] = {}
        for definition in ("standard", "mots"):
            seconds, _ = timed(lambda d=definition: evaluate_folder(
                root / "pred", root / "gt", task="liver", definition=d, out=root / "report", overwrite=True,
            ), repeats)  # fmt: skip
            out[f"{definition}_s"] = seconds
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 160], help="Volume shape (file order).")
    parser.add_argument(
        "--medpy-shape",
        type=int,
        nargs=3,
        default=[256, 256, 80],
        help="Corner of the volume MedPy is timed on (0 0 0 skips MedPy).",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calibrate", action="store_true", help="Print the costs behind method='auto'.")
    parser.add_argument(
        "--end-to-end",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Also time evaluate_folder on one case written as NIfTI.",
    )
    parser.add_argument("--json", action="store_true", help="End with one JSON line of the figures.")
    args = parser.parse_args()
    shape = tuple(args.shape)
    rng = np.random.default_rng(0)
    results: dict[str, dict[str, object]] = {}
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    tiny = np.zeros((8, 8, 8), dtype=bool)
    tiny[2:5, 2:5, 2:5] = True
    monai_hd95(tiny, np.roll(tiny, 1), SPACING)  # imports and first-call set-up out of the timings
    score_masks(tiny, np.roll(tiny, 1), "standard", SPACING)
    print(f"masks {shape} at {SPACING} mm, median of {args.repeats}")
    print(f"{'structure':<10}{'voxels':>10}{'ccq s':>9}{'edt s':>9}{'kdtree s':>10}{'monai s':>9}{'speedup':>9}"
          f"{'ccq hd95':>11}{'monai hd95':>12}")  # fmt: skip
    for name, make in STRUCTURES.items():
        pred, gt = make(shape, rng)
        runs = timed_together({
            "ccq": lambda p=pred, g=gt: score_masks(p, g, "standard", SPACING),
            "edt": lambda p=pred, g=gt: score_masks(p, g, "standard", SPACING, method="edt"),
            "kdtree": lambda p=pred, g=gt: score_masks(p, g, "standard", SPACING, method="kdtree"),
            "monai": lambda p=pred, g=gt: monai_hd95(p, g, SPACING),
        }, args.repeats)  # fmt: skip
        (ccq_s, ours), (edt_s, _), (kd_s, _), (monai_s, theirs) = runs.values()
        row: dict[str, object] = {
            "gt_voxels": int(gt.sum()), "ccq_s": ccq_s, "ccq_edt_s": edt_s, "ccq_kdtree_s": kd_s, "monai_s": monai_s,
            "speedup_vs_monai": monai_s / ccq_s, "ccq_hd95_mm": ours.hd95, "monai_hd95_mm": theirs,
            "ccq_dice": ours.dice,
        }  # fmt: skip
        print(f"{name:<10}{int(gt.sum()):>10}{ccq_s:>9.3f}{edt_s:>9.3f}{kd_s:>10.3f}{monai_s:>9.3f}"
              f"{monai_s / ccq_s:>8.1f}x{ours.hd95:>11.4f}{theirs:>12.4f}")  # fmt: skip
        if args.calibrate:
            row["calibration"] = calibration(pred, gt, edt_s, kd_s)
            print("    " + ", ".join(f"{k} {v:.4g}" for k, v in row["calibration"].items()))
        if min(args.medpy_shape) > 0:
            corner = tuple(slice(0, n) for n in args.medpy_shape)
            p, g = pred[corner], gt[corner]
            if p.any() and g.any():
                from medpy.metric.binary import hd95

                ours_s, mots = timed(lambda p=p, g=g: score_masks(p, g, "mots"), args.repeats)
                medpy_s, ref = timed(lambda p=p, g=g: hd95(p, g, (1, 1, 1)), 1)
                row["medpy"] = {
                    "shape": list(args.medpy_shape),
                    "ccq_s": ours_s,
                    "medpy_s": medpy_s,
                    "speedup": medpy_s / ours_s,
                    "ccq_hd95": mots.hd95,
                    "medpy_hd95": float(ref),
                }
                print(f"    MedPy on {tuple(args.medpy_shape)}: ccq {ours_s:.3f} s, MedPy {medpy_s:.3f} s "
                      f"({medpy_s / ours_s:.0f}x); hd95 {mots.hd95:.6f} vs {float(ref):.6f}")  # fmt: skip
        results[name] = row
        pairs[name] = (pred, gt)
    report: dict[str, object] = {"shape": list(shape), "spacing": list(SPACING), "structures": results}
    if args.end_to_end:
        timings = end_to_end(pairs["organ"], pairs["tumor"], args.repeats)
        timings["monai_organ_hd95_s"] = float(results["organ"]["monai_s"])  # type: ignore[arg-type]
        report["end_to_end"] = timings
        print(
            f"one case from NIfTI (liver + tumour, reports written): standard {timings['standard_s']:.2f} s, "
            f"mots {timings['mots_s']:.2f} s; MONAI's HD95 of the organ mask alone "
            f"{timings['monai_organ_hd95_s']:.2f} s"
        )
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
