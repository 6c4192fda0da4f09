"""`evaluate_folder` on a real CT with TotalSegmentator labels ($CCQ_TEST_DATA/real-ct; skipped when absent):
real headers, a label map with
dozens of values, the working-grid resampling of a full abdomen, and overlays on the real image."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import scipy.ndimage as ndi

from ccq.evaluation import evaluate_folder

REAL_CT = Path(os.environ.get("CCQ_TEST_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")) / "real-ct"
CT = REAL_CT / "example_ct.nii.gz"
SEG = REAL_CT / "example_seg_fast_force_split.nii.gz"

pytestmark = pytest.mark.skipif(
    not (CT.is_file() and SEG.is_file()), reason=f"{REAL_CT} is absent (set CCQ_TEST_DATA to the shared data folder)"
)


def _collection(path: Path) -> Path:
    names = dict(line.split("\t") for line in (REAL_CT / "label_map_total_v2.tsv").read_text().splitlines() if line)
    labels = {"0": "background", **{k: v.strip() for k, v in names.items()}}
    task = {
        "name": "abdomen",
        "id": 0,
        "layout": "msd",
        "folder": "unused",
        "labels": labels,
        "organ": [5],
        "tumor": [2, 3],
    }  # liver as "organ", both kidneys as a second channel
    path.write_text(json.dumps({"name": "totalseg", "tasks": [task]}))
    return path


def test_real_ct(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_hausdorff_distance

    img = nib.load(str(SEG))
    gt = np.asarray(img.dataobj)
    pred = gt.copy()
    liver = gt == 5
    pred[liver & ~ndi.binary_erosion(liver, iterations=2)] = 0  # a liver 2 voxels too small
    pred[np.roll(gt == 2, 3, axis=2) & (gt == 0)] = 2  # the right kidney smeared upwards
    for folder, label in (("gt", gt), ("pred", pred)):
        (tmp_path / folder).mkdir()
        nib.save(nib.Nifti1Image(label, img.affine, img.header), str(tmp_path / folder / "ct.nii.gz"))
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "ct_0000.nii.gz").symlink_to(CT)
    collection = _collection(tmp_path / "totalseg.json")

    standard = evaluate_folder(tmp_path / "pred", tmp_path / "gt", task="abdomen", collection=collection,
                               definition="standard", out=tmp_path / "standard", overlays=True,
                               images=tmp_path / "images")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = float(compute_hausdorff_distance(torch.from_numpy(pred == 5)[None, None],
                                                    torch.from_numpy(gt == 5)[None, None], include_background=True,
                                                    percentile=95, spacing=[3.0, 3.0, 3.0]))  # fmt: skip
    assert abs(standard["categories"]["abdomen/organ"]["hd95"] - expected) <= 1e-5
    assert standard["categories"]["abdomen/organ"]["hd95"] >= 6.0  # two 3 mm voxels of erosion
    pngs = sorted(p.name for p in (tmp_path / "standard" / "overlays" / "ct" / "abdomen").iterdir())
    assert pngs == ["kidney_right_axial.png", "kidney_right_coronal.png", "liver_axial.png", "liver_coronal.png",
                    "overview.png"]  # channel names default to the label of the written value  # fmt: skip

    mots = evaluate_folder(tmp_path / "pred", tmp_path / "gt", task="abdomen", collection=collection, write=False)
    organ = mots["categories"]["abdomen/organ"]
    # 3 mm voxels on a 1.5 x 0.8 x 0.8 mm grid: the 6 mm erosion spans 4 to 7.5 working voxels.
    assert mots["grid"] == "working" and 4.0 <= organ["hd95"] <= 8.0 and 0.6 < organ["dice"] < 0.95
