"""`official_parity.py --data-path`: `ccq predict` on a converted official checkpoint against the authors' network
on the official data path's array, for one synthetic MSD case and one synthetic KiTS19-layout case.

For each case (already on the official working grid, which is one patch, so neither code resamples or slides):

1. the official network (random weights, seeded) is saved as a DDP ``.pth`` and converted by ccq's converter
   (`ccq.checkpoint.official.convert_official_checkpoint`, what ``ccq convert-official`` runs: official grids);
2. ``ccq predict --no-tta --postprocess none --save-probabilities`` (`ccq.inference.runner.run_predict`) writes
   float16 probabilities on the CT's voxels;
3. the official path: re_spacing.py's resampling (nothing to do here), the dataset's transposes and HU window
   (tests/data/official_path.py, the tests' independent re-implementation of the authors' scripts), one forward
   of the authors' network in float32, and evaluate.py's transpose back to the file's voxel order;
4. the two are compared: max abs difference per channel; the parity criterion is ``--tolerance`` (2e-3: ccq
   stores float16 probabilities, a step of 2^-11 near 0.5).

The facts this relies on, and how each was checked: docs/official-data-path.md.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = ("organ", "tumor")


def cases(patch: tuple[int, int, int]) -> dict[str, tuple[str, tuple[int, int, int], np.ndarray]]:
    """name -> (task, file shape, affine): each case's official working grid is exactly one ``patch``."""
    from tests.data import official_path as official

    d, h, w = patch
    return {
        # MSD: voxel axes (L, P, S) at (0.8, 0.8, 1.5) mm; the network sees (k, i, j) = (D, H, W).
        "msd-liver": ("liver", (h, w, d), official.msd_affine((0.8, 0.8, 1.5))),
        # KiTS19 layout: voxel axes (I, P, L) at (0.76, 0.76, 3.0) mm; the network sees (i, j, k).
        "kits-kidney": ("kidney", (d, h, w), official.kits_affine((0.76, 0.76, 3.0))),
    }


def run_data_path(unet3d: type[torch.nn.Module], patch: tuple[int, int, int], seed: int, tolerance: float) -> int:
    sys.path.insert(0, str(ROOT))  # tests.data.official_path
    from ccq.checkpoint.official import ConvertOptions, convert_official_checkpoint
    from ccq.data.collection import load_collection
    from ccq.inference.runner import PredictOptions, run_predict
    from tests.data import official_path as official

    torch.manual_seed(seed)
    net = unet3d(image_size=patch).eval()
    mots = load_collection("mots")
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="ccq-data-path-") as tmp:
        work = Path(tmp)
        pth = work / "official_random.pth"
        torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, pth)
        converted = convert_official_checkpoint(ConvertOptions(checkpoint=pth, out=work / "converted", patch=patch))
        print(converted.report())
        for name, (task, shape, affine) in cases(patch).items():
            task_id = mots.task(task).id
            hu, _ = official.ct_volume(shape, affine, seed=seed)
            ct = official.write_nifti(work / f"{name}.nii.gz", hu, affine)
            run_predict(
                PredictOptions(input_path=ct, output=work / "pred", model=work / "converted", tasks=(task,),
                               device="cpu", tta=False, postprocess="none", save_probabilities=True, progress=False),
                echo=lambda *a, **k: None,
            )  # fmt: skip
            saved = np.load(work / "pred" / name / f"{task}_probabilities.npz")
            official.respace(ct, work / f"{name}-respaced.nii.gz", task_id, label=False)
            x = official.network_input(work / f"{name}-respaced.nii.gz", task_id, crop=patch)
            if x.shape != patch:
                raise RuntimeError(f"{name}: the official array is {x.shape}, not one {patch} patch")
            with torch.no_grad():
                probs = net(torch.from_numpy(x)[None, None].clone(), torch.tensor([task_id]))[0].double().numpy()
            expected = official.to_file_order(probs, task_id)
            print(f"{name} (task {task}, file {'x'.join(map(str, shape))}, network {'x'.join(map(str, patch))}):")
            for c, channel in enumerate(CHANNELS):
                ours = saved[channel].astype(np.float64)
                diff = float(np.abs(ours - expected[c]).max())
                flipped = min(float(np.abs(ours - np.flip(expected[c], a)).max()) for a in range(3))
                worst = max(worst, diff)
                print(f"  {channel}: max_abs_diff={diff:.3e} (official probabilities in [{expected[c].min():.3f}, "
                      f"{expected[c].max():.3f}], std {expected[c].std():.3f}; against a flipped axis: "
                      f"{flipped:.3e})")  # fmt: skip
    ok = worst <= tolerance
    print(f"{'PASS' if ok else 'FAIL'}: float16 probabilities on the CT's voxels, tolerance {tolerance:g}")
    print(f"max_abs_diff={worst:.3e}")
    return 0 if ok else 1
