"""Which (prediction, ground truth) pairs an evaluation scores (reading them: `ccq.evaluation.loading`).

Ground truth comes in three forms, told apart by what the folder holds:

* a *prepared folder* (``manifest.json``, `ccq.data.cache`): labels already on the working grid;
* a *raw dataset* (MSD ``imagesTr/`` + ``labelsTr/``, KiTS19 ``case_XXXXX/`` folders; for every task at once, the
  root holding the collection's dataset folders);
* a *flat folder* of label maps ``GT/CASE.nii.gz`` (one task).

Predictions are found as ``PRED/CASE/TASK.nii.gz`` (as ``ccq predict`` writes them) or, for one task,
``PRED/CASE.nii.gz``. Both are label maps in the task's own convention (e.g. liver 1, liver tumor 2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccq.data.cache import MANIFEST_FILE, PreparedDataset
from ccq.data.collection import Collection, TaskSpec, find_cases
from ccq.errors import CCQError
from ccq.io.nifti import NIFTI_SUFFIXES, is_nifti_name, nifti_stem

CASE_SELECTIONS = ("all", "test", "train")


@dataclass(frozen=True)
class CaseSource:
    """One case of one task to score: where its prediction, its ground truth and (optionally) its CT are."""

    task: TaskSpec
    case_id: str
    pred: Path
    gt: Path | None = None
    """A label NIfTI on the native grid (raw dataset or flat folder); None when ``entry`` is given."""
    entry: Mapping[str, Any] | None = None
    """A prepared manifest entry (ground truth on the working grid) of ``dataset``."""
    dataset: PreparedDataset | None = None
    image: Path | None = None
    """The CT, for overlays; None when unknown."""

    @property
    def gt_name(self) -> str:
        if self.gt is not None:
            return str(self.gt)
        source = (self.entry or {}).get("source") or {}
        return f"{source.get('label') or 'prepared label'} (prepared: {(self.entry or {}).get('path')})"


# ------------------------------------------------------------------------------------------------ finding


def _nifti_files(folder: Path) -> dict[str, Path]:
    """Visible NIfTI files directly in ``folder``, by stem ("._x" macOS resource forks and temporaries skipped)."""
    out: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not is_nifti_name(path) or path.name.startswith(".") or not path.is_file():
            continue
        stem = nifti_stem(path)
        if stem in out:
            raise CCQError(f"{folder}: case {stem!r} appears as both {out[stem].name} and {path.name}")
        out[stem] = path
    return out


def prediction_path(pred_root: Path, case_id: str, task: str, *, flat: bool) -> Path:
    """``PRED/CASE/TASK.nii.gz`` (or ``.nii``), or with ``flat`` also ``PRED/CASE.nii.gz``; a one-line CCQError
    naming what was looked for when there is none, or when two candidates exist."""
    candidates = [pred_root / case_id / f"{task}{s}" for s in NIFTI_SUFFIXES]
    if flat:
        candidates += [pred_root / f"{case_id}{s}" for s in NIFTI_SUFFIXES]
    found = [p for p in candidates if p.is_file()]
    if len(found) > 1:
        raise CCQError(f"case {case_id}: two predictions {found[0]} and {found[1]}; expected one (remove the other)")
    if not found:
        looked = " or ".join(str(p) for p in candidates[:: len(NIFTI_SUFFIXES)])
        raise CCQError(
            f"case {case_id}: no prediction for task {task!r} (looked for {looked}); predict it with "
            "`ccq predict` or choose the cases with --cases"
        )
    return found[0]


def image_path(images: Path, case_id: str) -> Path | None:
    """``IMAGES/CASE.nii.gz`` or the nnU-Net name ``IMAGES/CASE_0000.nii.gz`` (also ``.nii``)."""
    for stem in (case_id, f"{case_id}_0000"):
        for suffix in NIFTI_SUFFIXES:
            if (images / f"{stem}{suffix}").is_file():
                return images / f"{stem}{suffix}"
    return None


def is_prepared(folder: Path) -> bool:
    return (Path(folder) / MANIFEST_FILE).is_file()


def _is_dataset_folder(folder: Path, task: TaskSpec) -> bool:
    if task.layout == "msd":
        return (folder / "imagesTr").is_dir() and (folder / "labelsTr").is_dir()
    return any(p.is_dir() and p.name.startswith("case_") for p in folder.iterdir())


def select_cases(task: TaskSpec, found: Sequence[str], cases: str | Sequence[str], where: str) -> list[str]:
    """The case ids to score among those with ground truth: "all", the task's "test" / "train" split, or a list
    of ids. Every case the selection names explicitly must have its ground truth in ``found``."""
    found = list(found)
    if isinstance(cases, str) and cases in CASE_SELECTIONS:
        split = task.split
        if cases == "all":
            return found
        if split.test_fraction is not None:
            train, test = task.split_cases(found)  # a hashed split of the cases present
            return test if cases == "test" else train
        if cases == "test":
            listed = list(split.test)
        else:  # no train list = every case that is not a test case
            listed = list(split.train) if split.train is not None else [c for c in found if c not in split.test]
        what = f"the {cases} split"
    else:
        listed = [cases] if isinstance(cases, str) else list(cases)
        what = "--cases"
    missing = sorted(set(listed) - set(found))
    if missing:
        raise CCQError(
            f"task {task.name!r}: {len(missing)} case(s) of {what} have no ground truth in {where}, e.g. {missing[:3]}"
        )
    chosen = set(listed)
    return [c for c in found if c in chosen]


def task_sources(
    task: TaskSpec,
    pred: Path,
    gt: Path,
    cases: str | Sequence[str],
    *,
    flat_predictions: bool,
    images: Path | None = None,
) -> list[CaseSource]:
    """The cases of one task whose ground truth is a raw dataset folder or a flat folder of label maps."""
    gt = Path(gt)
    if not gt.is_dir():
        raise CCQError(f"--gt {gt}: no such folder; expected label maps GT/CASE.nii.gz or a dataset folder")
    labels = _nifti_files(gt)
    ct: dict[str, Path] = {}
    if labels:
        where = str(gt)
    elif _is_dataset_folder(gt, task):
        where = f"{gt} (layout {task.layout!r})"
        found = [c for c in find_cases(task, gt) if c.label is not None]
        labels = {c.case_id: c.label for c in found}
        ct = {c.case_id: c.image for c in found}
    else:
        raise CCQError(
            f"--gt {gt}: holds no label maps (CASE.nii.gz) and is not a {task.layout!r} dataset folder of task "
            f"{task.name!r}"
        )
    if not labels:
        raise CCQError(f"--gt {gt}: no label files for task {task.name!r}")
    chosen = select_cases(task, sorted(labels), cases, where)
    if not chosen:
        raise CCQError(f"task {task.name!r}: no case selected by --cases {cases!r} in {where}")
    out = []
    for case_id in chosen:
        image = image_path(images, case_id) if images is not None else ct.get(case_id)
        pred_file = prediction_path(pred, case_id, task.name, flat=flat_predictions)
        out.append(CaseSource(task, case_id, pred_file, gt=labels[case_id], image=image))
    return out


def prepared_sources(
    dataset: PreparedDataset,
    tasks: Sequence[TaskSpec],
    pred: Path,
    cases: str | Sequence[str],
    *,
    flat_predictions: bool,
    images: Path | None = None,
) -> list[CaseSource]:
    """The cases of ``tasks`` in a prepared folder (ground truth on its working grid)."""
    out = []
    for task in tasks:
        entries = {e["id"]: e for e in dataset.cases(task=task.name)}
        if isinstance(cases, str) and cases in CASE_SELECTIONS:
            chosen = [c for c, e in entries.items() if cases == "all" or e["split"] == cases]
        else:
            chosen = select_cases(task, sorted(entries), cases, str(dataset.root))
        for case_id in sorted(chosen):
            entry = entries[case_id]
            image = image_path(images, case_id) if images is not None else None
            stored = (entry.get("source") or {}).get("image")
            if image is None and images is None and stored and Path(stored).is_file():
                image = Path(stored)
            pred_file = prediction_path(pred, case_id, task.name, flat=flat_predictions)
            out.append(CaseSource(task, case_id, pred_file, entry=entry, dataset=dataset, image=image))
    if not out:
        raise CCQError(f"{dataset.root}: no prepared case selected by --cases {cases!r}")
    return out


def collection_sources(
    collection: Collection,
    tasks: Sequence[TaskSpec],
    pred: Path,
    raw_root: Path,
    cases: str | Sequence[str],
    *,
    images: Path | None = None,
) -> list[CaseSource]:
    """Every selected case of ``tasks`` in a raw collection (``raw_root`` holds the tasks' dataset folders)."""
    out = []
    for task in tasks:
        folder = collection.dataset_dir(task, raw_root)
        out += task_sources(task, pred, folder, cases, flat_predictions=False, images=images)
    return out
