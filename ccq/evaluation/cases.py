"""Which (prediction, ground truth) pairs an evaluation scores, and reading them onto the evaluation grid.

Ground truth comes in three forms, told apart by what the folder holds:

* a *prepared folder* (``manifest.json``, `ccq.data.cache`): labels already on the working grid;
* a *raw dataset* (MSD ``imagesTr/`` + ``labelsTr/``, KiTS19 ``case_XXXXX/`` folders; for every task at once, the
  root holding the collection's dataset folders);
* a *flat folder* of label maps ``GT/CASE.nii.gz`` (one task).

Predictions are found as ``PRED/CASE/TASK.nii.gz`` (as ``ccq predict`` writes them) or, for one task,
``PRED/CASE.nii.gz``. Both are label maps in the task's own convention (e.g. liver 1, liver tumor 2).

The grid the scores are computed on depends on the definition (`ccq.evaluation.scoring`): "standard" scores the
native grid of the files with their voxel spacing in mm; "mots" reorients and resamples both label maps (nearest
neighbour, exactly as ``ccq prepare`` resamples labels) to the working spacing and measures in its voxels. Against
a prepared folder, the prediction is resampled onto the prepared label's grid (the native label is not stored).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccq.data import geometry
from ccq.data.cache import MANIFEST_FILE, PreparedDataset
from ccq.data.collection import Collection, TaskSpec, find_cases
from ccq.errors import CCQError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
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


@dataclass
class LoadedCase:
    """A case's two label maps on the evaluation grid, and what its distances are measured in."""

    pred: np.ndarray
    gt: np.ndarray
    spacing: tuple[float, ...]
    """Voxel size per axis for the HD: (1, 1, 1) for "mots", mm for "standard"."""
    native_pred: np.ndarray
    """The prediction as stored (file voxel order), for overlays."""
    affine: np.ndarray
    """The prediction's voxel -> RAS mm affine."""
    grid: str = "native"
    """"native" (the files' own grid) or "working" (resampled to the working spacing, or a prepared grid)."""
    native_gt: np.ndarray | None = None
    """The ground truth in file voxel order when it is at hand (raw / flat ground truth)."""


# ------------------------------------------------------------------------------------------------ finding


def nifti_stem(name: str) -> str | None:
    """``liver_3.nii.gz`` -> ``liver_3``; None for anything that is not a NIfTI file name."""
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def _nifti_files(folder: Path) -> dict[str, Path]:
    """Visible NIfTI files directly in ``folder``, by stem ("._x" macOS resource forks and temporaries skipped)."""
    out: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        stem = nifti_stem(path.name)
        if stem is None or path.name.startswith(".") or not path.is_file():
            continue
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


# ------------------------------------------------------------------------------------------------ reading


def _grid_error(affine_a: np.ndarray, affine_b: np.ndarray, shape: Sequence[int]) -> float:
    """How far (in voxels of grid a) the corners of grid b lie from where grid a puts them."""
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(3, -1)
    corners_h = np.vstack([corners, np.ones(corners.shape[1])])
    try:
        in_a = np.linalg.solve(affine_a, affine_b @ corners_h)[:3]
    except np.linalg.LinAlgError:
        return math.inf
    return float(np.abs(in_a - corners).max())


def check_same_grid(
    case: str, pred_name: str, pred_shape, pred_affine, gt_name: str, gt_shape, gt_affine, what: str = "ground truth"
) -> None:
    """Refuse a prediction whose grid is not the ground truth's (shape, or a corner off by > 0.1 voxel)."""
    if tuple(pred_shape) != tuple(gt_shape):
        raise CCQError(
            f"case {case}: prediction {pred_name} has shape {tuple(pred_shape)} but {what} {gt_name} has shape "
            f"{tuple(gt_shape)}; expected the same grid"
        )
    err = _grid_error(np.asarray(gt_affine), np.asarray(pred_affine), pred_shape)
    if not math.isfinite(err) or err > geometry.AFFINE_TOLERANCE_VOXELS:
        raise CCQError(
            f"case {case}: prediction {pred_name} and {what} {gt_name} (both {tuple(pred_shape)}) have affines "
            f"that differ by {err:.3g} voxels; expected the same grid (tolerance "
            f"{geometry.AFFINE_TOLERANCE_VOXELS} voxel)"
        )


def _read_label(path: Path, task: TaskSpec, case: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    array, affine = geometry.load_nifti(path, what=what, case=case, as_float=False)
    if array.dtype.kind == "f":
        rounded = np.rint(array)
        if not np.array_equal(rounded, array):
            raise CCQError(f"case {case}: {what} {path} holds non-integer values; expected a label map")
        array = rounded.astype(np.int32)
    task.check_label_values(array, where=f"case {case}: {what} {path}")
    return array, affine


def _to_working_grid(label: np.ndarray, affine: np.ndarray, spacing: Sequence[float], shape=None) -> np.ndarray:
    canon, info = geometry.to_canonical(label, affine)
    return geometry.resample(canon, info.spacing, spacing, order=0, shape=shape)


def load_case(source: CaseSource, definition: str, spacing: Sequence[float] | None) -> LoadedCase:
    """Read a case's prediction and ground truth onto the evaluation grid (see the module docstring).

    ``spacing``: the working grid (z, y, x mm) of the "mots" definition; with a prepared folder its own.
    """
    case = source.case_id
    pred, pred_affine = _read_label(source.pred, source.task, case, "prediction")
    if source.entry is not None:
        entry = source.entry
        check_same_grid(case, str(source.pred), pred.shape, pred_affine, source.gt_name,
                        entry["original_shape"], entry["original_affine"], what="the prepared case's source")
        assert source.dataset is not None
        gt = np.asarray(source.dataset.label(entry, mmap=False))  # the dataset's values on the working grid
        working = tuple(float(s) for s in entry["spacing"])
        # Through the source's affine, as `ccq prepare` resampled the label: the same orientation and shape.
        pred_working = _to_working_grid(pred, np.asarray(entry["original_affine"]), working, shape=gt.shape)
        hd_spacing = (1.0, 1.0, 1.0) if definition == "mots" else working
        return LoadedCase(pred_working, gt, hd_spacing, native_pred=pred, affine=pred_affine, grid="working")
    assert source.gt is not None
    gt, gt_affine = _read_label(source.gt, source.task, case, "ground truth")
    check_same_grid(case, str(source.pred), pred.shape, pred_affine, str(source.gt), gt.shape, gt_affine)
    if definition == "standard":
        native = tuple(float(v) for v in np.linalg.norm(np.asarray(gt_affine)[:3, :3], axis=0))
        return LoadedCase(pred, gt, native, native_pred=pred, affine=pred_affine, native_gt=gt)
    if spacing is None:
        raise CCQError("the mots definition needs the working spacing (z, y, x mm)")
    # Both maps through the ground truth's affine: the grids agree within tolerance, and one affine keeps the
    # two resampled maps voxel for voxel aligned.
    gt_working = _to_working_grid(gt, gt_affine, spacing)
    pred_working = _to_working_grid(pred, gt_affine, spacing)
    return LoadedCase(pred_working, gt_working, (1.0, 1.0, 1.0), native_pred=pred, affine=pred_affine,
                      grid="working", native_gt=gt)


def native_ground_truth(source: CaseSource, loaded: LoadedCase) -> np.ndarray:
    """The ground truth in the prediction's file voxel order (a prepared label is mapped back, nearest)."""
    if loaded.native_gt is not None:
        return loaded.native_gt
    assert source.entry is not None
    info = geometry.CanonicalInfo.from_dict(source.entry["canonical"])
    return geometry.to_original_grid(loaded.gt, info, source.entry["spacing"], order=0)
