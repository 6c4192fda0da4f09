"""A tiny raw collection (synthetic phantoms) with predictions in `ccq predict`'s layout, for evaluation tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ccq.data.collection import Collection, find_cases
from ccq.data.phantom import generate_collection

TASKS = ("liver", "colon", "spleen")  # organ + tumor, tumor only, organ only
EMPTY_TUMOR_CASE = "liver_000"
"""Its predicted liver tumor is removed (written as liver): an empty prediction against a real tumor."""


@dataclass(frozen=True)
class EvalTree:
    raw: Path
    collection: Collection
    pred: Path
    """PRED/CASE/TASK.nii.gz: every label shifted by one voxel along the first axis."""
    perfect: Path
    """PRED/CASE/TASK.nii.gz: the ground truth itself."""

    @property
    def collection_file(self) -> Path:
        return self.raw / "collection.yaml"

    def label_file(self, task: str, case: str) -> Path:
        spec = self.collection.task(task)
        return next(c.label for c in find_cases(spec, self.collection.dataset_dir(spec)) if c.case_id == case)

    def image_file(self, task: str, case: str) -> Path:
        spec = self.collection.task(task)
        return next(c.image for c in find_cases(spec, self.collection.dataset_dir(spec)) if c.case_id == case)


def save_label(path: Path, label: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(label, dtype=np.uint8), affine), str(path))
    return path


def make_tree(root: Path) -> EvalTree:
    collection = generate_collection(root / "raw", cases_per_task=3, test_cases_per_task=1, seed=3, tasks=TASKS,
                                     shape=(24, 48, 48))  # fmt: skip
    for task in collection.tasks:
        for case in find_cases(task, collection.dataset_dir(task)):
            img = nib.load(str(case.label))
            label = np.asarray(img.dataobj).astype(np.uint8)
            save_label(root / "perfect" / case.case_id / f"{task.name}.nii.gz", label, img.affine)
            shifted = np.roll(label, 1, axis=0)
            if case.case_id == EMPTY_TUMOR_CASE:
                shifted[shifted == 2] = 1
            save_label(root / "pred" / case.case_id / f"{task.name}.nii.gz", shifted, img.affine)
    return EvalTree(raw=root / "raw", collection=collection, pred=root / "pred", perfect=root / "perfect")


def prepared_phantoms(root: Path) -> Path:
    """The smallest prepared folder with a test split: liver, colon and spleen phantoms (24x48x48), two cases per
    task of which one is held out, prepared at 3 x 2.25 x 2.25 mm for the tiny patch 16x32x32."""
    from ccq.data.prepare_run import prepare_collection
    from ccq.data.preprocessing import PreprocessingConfig

    collection = generate_collection(root / "raw", cases_per_task=2, test_cases_per_task=1, seed=0, tasks=TASKS,
                                     shape=(24, 48, 48))  # fmt: skip
    pre = PreprocessingConfig(spacing=(3.0, 2.25, 2.25), patch_size=(16, 32, 32))
    assert prepare_collection(collection, None, root / "prepared", pre).ok
    return root / "prepared"


def torch_threads(n: int) -> Iterator[None]:
    """For a fixture (``yield from torch_threads(1)``): tiny models run fastest on one thread, and far faster than
    on two when other processes share the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    yield
    torch.set_num_threads(before)
