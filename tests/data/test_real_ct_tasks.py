"""The documented example collection (docs/examples/totalseg-abdomen.yaml) on the real CT: one TotalSegmentator
label map as the source of liver, kidney, pancreas and spleen tasks, each task's organ volume against the map."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ccq.data import cache
from ccq.data.cache import PreparedDataset
from ccq.data.collection import load_collection
from ccq.data.prepare_run import prepare_collection
from ccq.data.preprocessing import PreprocessingConfig

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "totalseg-abdomen.yaml"
REAL_CT = Path(os.environ.get("CCQ_TEST_DATA", REPO.parent / "shared" / "data")) / "real-ct"
ABSENT = f"{REAL_CT} is absent (set CCQ_TEST_DATA to the shared data folder)"
pytestmark = pytest.mark.skipif(not (REAL_CT / "example_seg_fast_force_split.nii.gz").is_file(), reason=ABSENT)


def test_the_documented_collection_prepares_the_real_ct_once_with_each_tasks_volume(tmp_path: Path) -> None:
    raw = tmp_path / "raw" / "TotalSeg"
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    os.symlink(REAL_CT / "example_ct.nii.gz", raw / "imagesTr" / "ct_0.nii.gz")
    os.symlink(REAL_CT / "example_seg_fast_force_split.nii.gz", raw / "labelsTr" / "ct_0.nii.gz")
    collection = load_collection(EXAMPLE)
    pre = PreprocessingConfig(spacing=(2.5, 1.6, 1.6))  # coarser than official: keeps the test fast
    out = tmp_path / "prepared"
    summary = prepare_collection(collection, tmp_path / "raw", out, pre)
    assert summary.ok and summary.done == ["totalseg/ct_0"]
    assert [p.parent.name for p in out.glob(f"cases/*/*/{cache.IMAGE_FILE}")] == ["ct_0"]  # stored once

    seg_file = nib.load(REAL_CT / "example_seg_fast_force_split.nii.gz")
    seg = np.asarray(seg_file.dataobj)
    voxel_ml = float(np.prod(seg_file.header.get_zooms()[:3])) / 1000  # 3 mm isotropic: 0.027 mL
    data = PreparedDataset(out)
    assert [e["task"] for e in data] == ["liver", "kidney", "pancreas", "spleen"]
    expected_values = {"liver": [5], "kidney": [2, 3], "pancreas": [7], "spleen": [1]}
    volumes = {}
    for entry in data:
        values = expected_values[entry["task"]]
        assert entry["channels"] == {"organ": values, "tumor": None} and entry["path"] == "cases/totalseg/ct_0"
        source_ml = np.isin(seg, values).sum() * voxel_ml
        volumes[entry["task"]] = (round(source_ml, 1), entry["foreground_ml"]["organ"])
        assert entry["foreground_ml"]["organ"] == pytest.approx(source_ml, rel=0.05), entry["task"]
        assert entry["foreground_voxels"]["tumor"] is None
        organ = np.isin(np.asarray(data.label(entry)), values)
        assert organ.sum() == entry["foreground_voxels"]["organ"]
    # From the label map (3 mm voxels): liver 1125.7, kidney 330.0 (192.6 right + 137.4 left), pancreas 18.8,
    # spleen 261.0 mL.
    assert {k: v[0] for k, v in volumes.items()} == {"liver": 1125.7, "kidney": 330.0, "pancreas": 18.8,
                                                     "spleen": 261.0}  # fmt: skip
