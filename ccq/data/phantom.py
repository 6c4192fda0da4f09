"""Synthetic partially labeled CT collections, written like real ones: MSD folders + a collection file.

Every image holds all organs (the anatomy is shared), but each dataset's label files mark only its own organ
and the tumor inside it, in the MOTS conventions of the built-in collection (liver: 1 liver, 2 tumor; colon:
1 tumor; spleen: 1 spleen ...). So the collection is partially labeled in exactly the way MOTS is, yet small
enough (48x96x96 voxels by default) for a tiny model to learn on a CPU.

The output folder looks like::

    OUT/collection.yaml                 tasks, label conventions, train/test lists; folders relative to OUT
    OUT/Task01_Liver/dataset.json       MSD style (or nnU-Net v2 style with naming="nnunet")
    OUT/Task01_Liver/imagesTr/liver_000.nii.gz   int16 HU (liver_000_0000.nii.gz with naming="nnunet")
    OUT/Task01_Liver/labelsTr/liver_000.nii.gz   uint8
    OUT/.ccq-phantom.json               what was written here, so that overwrite=True removes only that

The anatomy itself is in :mod:`ccq.data.phantom_anatomy`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ccq.data.collection import Collection, Split, TaskSpec, load_collection
from ccq.data.phantom_anatomy import ANATOMY, PhantomCase, check_geometry, make_case
from ccq.errors import CCQError
from ccq.utils import fs

ALL_TASKS = ("liver", "kidney", "hepatic_vessel", "pancreas", "colon", "lung", "spleen")
"""Every task the phantom can make, in MOTS order."""
DEFAULT_TASKS = ("liver", "kidney", "pancreas", "colon", "spleen")
"""Organ+tumor (liver, kidney, pancreas), tumor only (colon), organ only (spleen)."""
COLLECTION_FILE = "collection.yaml"
MARKER_FILE = ".ccq-phantom.json"
_FOLDER_NAMES = {
    "liver": "Liver",
    "kidney": "Kidney",
    "hepatic_vessel": "HepaticVessel",
    "pancreas": "Pancreas",
    "colon": "Colon",
    "lung": "Lung",
    "spleen": "Spleen",
}

# Per task, (label value, anatomy structures) in the MOTS convention of that dataset.
TASK_LABELS: dict[str, tuple[tuple[int, tuple[str, ...]], ...]] = {
    "liver": ((1, ("liver", "hepatic_vessel", "liver_tumor")), (2, ("liver_tumor",))),
    "kidney": ((1, ("kidney", "kidney_tumor")), (2, ("kidney_tumor",))),
    "hepatic_vessel": ((1, ("hepatic_vessel",)), (2, ("liver_tumor",))),
    "pancreas": ((1, ("pancreas", "pancreas_tumor")), (2, ("pancreas_tumor",))),
    "colon": ((1, ("colon_tumor",)),),
    "lung": ((1, ("lung_tumor",)),),
    "spleen": ((1, ("spleen",)),),
}

__all__ = [
    "ALL_TASKS",
    "DEFAULT_TASKS",
    "PhantomCase",
    "case_rng",
    "generate_collection",
    "make_case",
    "phantom_tasks",
    "task_label_map",
]


def check_task_names(tasks: Sequence[str]) -> tuple[str, ...]:
    """The task names, validated: known, distinct, at least one."""
    tasks = tuple(t.strip() for t in tasks)
    if not tasks or any(not t for t in tasks):
        raise CCQError(f"phantom: expected one or more task names from {', '.join(ALL_TASKS)}, got {list(tasks)}")
    for task in tasks:
        if task not in ALL_TASKS:
            close = difflib.get_close_matches(task, ALL_TASKS, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise CCQError(f"phantom: unknown task {task!r}{hint} (expected some of {', '.join(ALL_TASKS)})")
    duplicates = sorted({t for t in tasks if tasks.count(t) > 1})
    if duplicates:
        raise CCQError(f"phantom: task(s) {duplicates} given twice")
    return tasks


def phantom_tasks(tasks: Sequence[str] = DEFAULT_TASKS) -> list[TaskSpec]:
    """The TaskSpecs of a phantom collection: MOTS label conventions, MSD layout, ids in the order given."""
    mots = load_collection("mots")
    return [
        dataclasses.replace(
            mots.task(name),
            id=i,
            layout="msd",
            folder=f"Task{i + 1:02d}_{_FOLDER_NAMES[name]}",
            split=Split(),
        )
        for i, name in enumerate(check_task_names(tasks))
    ]


def task_label_map(anatomy: np.ndarray, task: str) -> np.ndarray:
    """The label map a dataset of ``task`` would ship: only its own organ and tumor, MOTS conventions."""
    if task not in TASK_LABELS:
        raise CCQError(f"phantom: unknown task {task!r}; expected one of {', '.join(TASK_LABELS)}")
    out = np.zeros(anatomy.shape, np.uint8)
    for value, names in TASK_LABELS[task]:  # later entries override (tumor over organ)
        out[np.isin(anatomy, [ANATOMY[n] for n in names])] = value
    return out


def case_rng(seed: int, task: str, index: int) -> np.random.Generator:
    """The generator of case ``index`` of ``task``: regenerate any written case in memory with make_case."""
    # Keyed by the task's fixed position in ALL_TASKS: a case does not change when other tasks are added.
    return np.random.default_rng([int(seed), ALL_TASKS.index(task), int(index)])


def _save_nifti(array_zyx: np.ndarray, affine: np.ndarray, path: Path) -> None:
    import nibabel as nib

    # NIfTI voxel axes are (x, y, z); the arrays here are (z, y, x).
    image = nib.Nifti1Image(np.ascontiguousarray(array_zyx.transpose(2, 1, 0)), affine)
    image.header.set_xyzt_units("mm", "sec")
    image.set_qform(affine, code=1)  # 1 = scanner coordinates, as a CT scanner's export
    image.set_sform(affine, code=1)
    nib.save(image, str(path))


def _dataset_json(task: TaskSpec, case_ids: Sequence[str], naming: str) -> dict:
    description = f"ccq synthetic phantom: {task.name} (labels only this dataset's organ and tumor)"
    if naming == "nnunet":
        return {
            "name": f"Phantom{_FOLDER_NAMES[task.name]}",
            "description": description,
            "channel_names": {"0": "CT"},
            "labels": {name: value for value, name in sorted(task.labels.items())},
            "numTraining": len(case_ids),
            "file_ending": ".nii.gz",
        }
    return {
        "name": f"Phantom{_FOLDER_NAMES[task.name]}",
        "description": description,
        "reference": "generated by ccq (ccq.data.phantom)",
        "licence": "CC0",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {str(value): name for value, name in sorted(task.labels.items())},
        "numTraining": len(case_ids),
        "numTest": 0,
        "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in case_ids],
        "test": [],
    }


def _previous_entries(out_dir: Path) -> set[str]:
    """Names an earlier phantom wrote into ``out_dir`` (from its marker); plain names only, never paths."""
    marker = out_dir / MARKER_FILE
    if not marker.is_file():
        return set()
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        entries = data.get("entries") if data.get("generator") == "ccq phantom" else None
    except (ValueError, AttributeError):
        entries = None
    if not isinstance(entries, list):
        return set()  # not our marker: everything in the folder counts as the user's
    plain = {e for e in entries if isinstance(e, str) and e not in ("", ".", "..") and not set(e) & set("/\\")}
    return plain | {MARKER_FILE}


def _prepare_out_dir(out_dir: Path, entries: Sequence[str], overwrite: bool) -> None:
    """Refuse a non-empty folder unless ``overwrite``; even then, replace only what a phantom wrote there."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CCQError(f"phantom: {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise CCQError(
                f"phantom: output folder {out_dir} is not empty; choose a new folder, or pass --overwrite "
                "to replace an earlier phantom there"
            )
        previous = _previous_entries(out_dir)
        foreign = [name for name in entries if (out_dir / name).exists() and name not in previous]
        if foreign:
            raise CCQError(
                f"phantom: {out_dir / foreign[0]} exists and was not written by ccq phantom; "
                "refusing to replace it (move it away or choose another folder)"
            )
        fs.remove_entries(out_dir, previous)
    out_dir.mkdir(parents=True, exist_ok=True)


def generate_collection(
    out_dir: str | Path,
    cases_per_task: int = 8,
    test_cases_per_task: int = 2,
    seed: int = 0,
    tasks: Sequence[str] = DEFAULT_TASKS,
    shape: tuple[int, int, int] = (48, 96, 96),
    spacing: tuple[float, float, float] = (2.0, 1.5, 1.5),
    overwrite: bool = False,
    naming: str = "msd",
) -> Collection:
    """Write a synthetic partially labeled collection to ``out_dir`` and return it (read from its file).

    Each task gets ``cases_per_task`` cases, the last ``test_cases_per_task`` of which form its test list.
    Same arguments, same bytes. ``naming``: "msd" (CASE.nii.gz) or "nnunet" (CASE_0000.nii.gz images).
    """
    if isinstance(tasks, str):  # "liver,kidney" as on the command line
        tasks = tasks.split(",")
    task_specs = phantom_tasks(tasks)
    if int(seed) < 0:
        raise CCQError(f"phantom: seed {seed}; expected a non-negative integer")
    if cases_per_task < 1:
        raise CCQError(f"phantom: cases per task = {cases_per_task}; expected at least 1")
    if not 0 <= test_cases_per_task < cases_per_task:
        raise CCQError(
            f"phantom: test cases per task = {test_cases_per_task}; expected 0 to {cases_per_task - 1} "
            f"(fewer than the {cases_per_task} cases per task, so that some remain for training)"
        )
    if naming not in ("msd", "nnunet"):
        raise CCQError(f"phantom: naming {naming!r}; expected 'msd' or 'nnunet'")
    check_geometry(shape, spacing)  # before anything is written
    out_dir = Path(out_dir).expanduser()
    entries = [t.folder for t in task_specs] + [COLLECTION_FILE]
    _prepare_out_dir(out_dir, entries + [MARKER_FILE], overwrite)
    # The marker goes first: if generation is interrupted, a rerun with overwrite=True can still clean up.
    marker = {
        "generator": "ccq phantom",
        "entries": entries,
        "seed": seed,
        "tasks": [t.name for t in task_specs],
    }
    (out_dir / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")

    image_suffix = "_0000.nii.gz" if naming == "nnunet" else ".nii.gz"
    specs = []
    for spec in task_specs:
        folder = out_dir / spec.folder
        (folder / "imagesTr").mkdir(parents=True)
        (folder / "labelsTr").mkdir()
        case_ids = [f"{spec.name}_{n:03d}" for n in range(cases_per_task)]
        tumor_tasks = () if spec.tumor is None else (spec.name,)
        for n, case_id in enumerate(case_ids):
            case = make_case(case_rng(seed, spec.name, n), shape, spacing, tumor_tasks)
            _save_nifti(case.image, case.affine, folder / "imagesTr" / f"{case_id}{image_suffix}")
            _save_nifti(
                task_label_map(case.anatomy, spec.name),
                case.affine,
                folder / "labelsTr" / f"{case_id}.nii.gz",
            )
        dataset = _dataset_json(spec, case_ids, naming)
        (folder / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n", encoding="utf-8")
        n_train = cases_per_task - test_cases_per_task
        specs.append(dataclasses.replace(spec, split=Split(train=case_ids[:n_train], test=case_ids[n_train:])))

    collection = Collection(
        name="phantom",
        description=(
            f"ccq synthetic phantom: {len(specs)} partially labeled tasks x {cases_per_task} cases, "
            f"seed {seed}, shape {'x'.join(map(str, shape))}"
        ),
        tasks=tuple(specs),
        root=".",
    )
    path = collection.save(out_dir / COLLECTION_FILE)
    return dataclasses.replace(collection, source=path.resolve())
