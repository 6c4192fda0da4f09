"""`ccq prepare --collection mots` on a miniature tree laid out exactly as the public downloads unpack.

Every case of the published MOTS split (920 train + 235 test) is present, as a tiny volume, so that the built-in
collection, its split lists and both raw layouts (MSD folders, KiTS19 case folders) are exercised together.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ccq.cli import app
from ccq.data.collection import load_collection
from tests.data.test_prepare import KITS_AFFINE, MANIFEST_KEYS, _save, _volume

TINY = (4, 4, 4)
CHECKED = {"liver_1": (20, 20, 8), "case_00001": (8, 20, 20), "colon_005": (20, 20, 8)}


def make_mots_tree(raw: Path) -> dict[str, str]:
    """Write every MOTS case; returns case id -> expected split."""
    collection = load_collection("mots")
    expected = {}
    for task in collection.tasks:
        with_tumor = task.organ is not None and task.tumor is not None
        for split in ("train", "test"):
            for case in getattr(task.split, split):
                expected[case] = split
                shape = CHECKED.get(case, TINY)
                image, label = _volume(len(expected), shape, tumor=with_tumor)
                if task.organ is None:  # colon, lung: value 1 is the tumour
                    label = (label > 0).astype(label.dtype)
                if task.layout == "kits":
                    folder = raw / task.folder / case
                    _save(folder / "imaging.nii.gz", image, KITS_AFFINE)
                    _save(folder / "segmentation.nii.gz", label, KITS_AFFINE)
                else:
                    _save(raw / task.folder / "imagesTr" / f"{case}.nii.gz", image)
                    _save(raw / task.folder / "labelsTr" / f"{case}.nii.gz", label)
    return expected


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_prepare_the_whole_mots_tree_with_the_official_preprocessing(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "prepared"
    expected_split = make_mots_tree(raw)
    args = ["prepare", "--collection", "mots", "--raw", str(raw), "--out", str(out), "--workers", "2"]
    result = CliRunner().invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    entries = manifest["cases"] if isinstance(manifest, dict) else manifest
    assert len(entries) == 920 + 235
    assert MANIFEST_KEYS <= set(entries[0])
    by_id = {e["id"]: e for e in entries}
    assert all(by_id[case]["split"] == split for case, split in expected_split.items())
    assert all(e["spacing"] == pytest.approx([1.5, 0.8, 0.8]) for e in entries)
    kidney = by_id["case_00001"]
    assert kidney["task"] == "kidney"
    # KiTS19 keeps its slices on the first voxel axis: the header spacing in the file's own voxel order
    assert kidney["original_spacing"] == pytest.approx([3.0, 1.5, 1.5])
    assert kidney["original_shape"] == [8, 20, 20]
    # ... and it is reoriented like the MSD cases: 8 slices of 3 mm -> 16 of 1.5 mm on the prepared z axis
    assert kidney["shape"][0] == 16
    liver = by_id["liver_1"]
    assert liver["original_spacing"] == pytest.approx([1.5, 1.5, 3.0])
    assert liver["shape"][0] == 16 and abs(liver["shape"][1] - 37.5) <= 1
    assert liver["foreground_voxels"]["organ"] > liver["foreground_voxels"]["tumor"] > 0
    colon = by_id["colon_005"]
    assert colon["foreground_voxels"]["organ"] is None and colon["foreground_voxels"]["tumor"] > 0
    assert by_id["spleen_12"]["foreground_voxels"]["tumor"] is None
