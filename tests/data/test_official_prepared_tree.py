"""`ccq prepare --folders official`: the authors' prepared MOTS tree (``0123456_spacing_same/``), written here the
way their re_spacing.py writes it (SimpleITK: resampled arrays, the target spacing, the source's origin and
direction), read with each file's geometry from its header as always."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from ccq.cli import app
from ccq.data.cache import PreparedDataset
from ccq.data.collection import read_collection_file
from ccq.data.grid import entry_grid
from ccq.data.preprocessing import official_data_path
from tests.data import official_path as official

COLLECTION = """
name: two-mots-tasks
tasks:
  - {name: liver, id: 0, layout: msd, folder: Task03_Liver, labels: {0: background, 1: liver, 2: liver tumor},
     organ: [1, 2], tumor: [2]}
  - {name: kidney, id: 1, layout: kits, folder: kits19/data, labels: {0: background, 1: kidney, 2: kidney tumor},
     organ: [1, 2], tumor: [2]}
"""
RAW = {  # case -> (task id, file shape, affine): as downloaded (MSD liver, KiTS19 kidney)
    "liver_7": (0, (160, 160, 96), official.msd_affine((0.6, 0.6, 1.0))),
    "case_00003": (1, (40, 96, 128), official.kits_affine((1.52, 0.76, 1.5))),
}


def authors_tree(tmp_path: Path) -> tuple[Path, dict[str, tuple[Path, Path]], dict[str, np.ndarray]]:
    """``0123456_spacing_same/`` with one liver and one kidney case, by the re-implemented re_spacing.py; returns the
    tree, case -> (image, label) in it, and case -> the world centroid (mm) of the organ in the tree's label file,
    by its header. (That is not quite the raw download's: re_spacing.py keeps the origin, the first voxel's centre,
    while the voxels grow or shrink, and its label resampling shifts by up to half a target voxel.)"""
    tree = tmp_path / "0123456_spacing_same"
    files, centroids = {}, {}
    for case, (task_id, shape, affine) in RAW.items():
        hu, label = official.ct_volume(shape, affine)
        raw_image = official.write_nifti(tmp_path / f"{case}_raw.nii.gz", hu, affine)
        raw_label = official.write_nifti(tmp_path / f"{case}_raw_label.nii.gz", label, affine)
        if task_id == 1:
            folder = tree / "1Kidney" / "origin" / case
            image, seg = folder / "imaging.nii.gz", folder / "segmentation.nii.gz"
        else:
            image, seg = (tree / "0Liver" / sub / f"{case}.nii.gz" for sub in ("imagesTr", "labelsTr"))
        image.parent.mkdir(parents=True, exist_ok=True)
        seg.parent.mkdir(parents=True, exist_ok=True)
        official.respace(raw_image, image, task_id, label=False)
        official.respace(raw_label, seg, task_id, label=True)
        files[case] = (image, seg)
        written = nib.load(str(seg))
        voxels = np.argwhere(np.asarray(written.dataobj) >= 1)
        centroids[case] = (written.affine @ np.c_[voxels, np.ones(len(voxels))].T)[:3].mean(axis=1)
    return tree, files, centroids


def prepare(tmp_path: Path, tree: Path, out: Path, *extra: str) -> PreparedDataset:
    collection = tmp_path / "collection.yaml"
    collection.write_text(COLLECTION)
    args = ["prepare", "--raw", str(tree), "--collection", str(collection), "--folders", "official", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, *extra, "--no-progress"])
    assert result.exit_code == 0, result.output
    return PreparedDataset(out)


def test_the_authors_tree_on_the_official_grids_is_their_network_input(tmp_path: Path) -> None:
    """On the official grids every file of the tree is already at its grid's spacing: ccq resamples nothing and
    its prepared arrays are exactly what the official network and loss were given."""
    tree, files, _ = authors_tree(tmp_path)
    collection = tmp_path / "collection.yaml"
    collection.write_text(COLLECTION)
    pre = official_data_path(read_collection_file(collection).tasks).replace(patch_size=(16, 32, 32))
    (tmp_path / "pre.json").write_text(json.dumps(pre.to_dict()))
    dataset = prepare(tmp_path, tree, tmp_path / "prepared", "--preprocessing", str(tmp_path / "pre.json"))
    assert len(dataset) == 2
    for entry in dataset:
        task_id = entry["task_id"]
        image, seg = files[entry["id"]]
        assert entry_grid(entry) == pre.grid(entry["task"])
        theirs = official.network_input(image, task_id, crop=(1, 1, 1))
        np.testing.assert_allclose(dataset.image(entry), theirs, rtol=0, atol=1e-7)  # float32 / 325 vs float64
        np.testing.assert_array_equal(dataset.label(entry), official.network_label(seg, task_id))
        assert entry["source"]["image"] == str(image)


def test_the_authors_tree_on_the_paper_grid_keeps_the_anatomy_in_place(tmp_path: Path) -> None:
    """With the default (paper) preprocessing the tree is resampled like any data, from each file's header: the
    organ's world centroid is where the tree's header puts it, within a voxel of the working grid."""
    tree, _, centroids = authors_tree(tmp_path)
    dataset = prepare(tmp_path, tree, tmp_path / "prepared-paper")
    for entry in dataset:
        assert entry_grid(entry).axes == "SPL" and entry["spacing"] == [1.5, 0.8, 0.8]
        voxels = np.argwhere(np.asarray(dataset.label(entry)) >= 1)
        world = (np.asarray(entry["affine"]) @ np.c_[voxels, np.ones(len(voxels))].T)[:3].mean(axis=1)
        assert np.abs(world - centroids[entry["id"]]).max() < 0.8, (entry["id"], world, centroids[entry["id"]])
