"""Scoring folders of predictions against ground truth: what ``ccq evaluate`` runs, callable from Python.

    from ccq.evaluation import evaluate_folder
    summary = evaluate_folder("predictions", "raw", collection="mots")            # every task, test split
    summary = evaluate_folder("pred/liver", "labels", task="liver", definition="standard", out="report")
    summary["mean"]["all"]["dice"]

Two ways to call it: with ``task`` (one task; ground truth a flat folder of label maps, that task's dataset folder
or a prepared folder; predictions ``PRED/CASE.nii.gz`` or ``PRED/CASE/TASK.nii.gz``), or without (every task of
the collection; ground truth the raw root holding the datasets, or a prepared folder; predictions
``PRED/CASE/TASK.nii.gz``, as ``ccq predict`` writes them). ``cases``: "all", "test", "train" (the collection's
split; a prepared folder's own) or a list of case ids; default "all" with ``task``, "test" without.
Writes ``summary.json``, ``cases.csv`` and ``table.md`` (`ccq.evaluation.report`) into ``out`` (default: the
predictions folder), refusing to replace an earlier evaluation's files unless ``overwrite``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ccq.data import geometry
from ccq.data.collection import CHANNELS, Collection, TaskSpec, load_collection
from ccq.data.grid import Grid, entry_grid
from ccq.data.preprocessing import OFFICIAL_PREPROCESSING, PreprocessingConfig, load_preprocessing
from ccq.errors import CCQError
from ccq.evaluation.cases import (
    CaseSource,
    collection_sources,
    is_prepared,
    prepared_sources,
    task_sources,
)
from ccq.evaluation.loading import LoadedCase, channel_masks, check_same_grid, load_case, native_ground_truth
from ccq.evaluation.report import build_summary, check_reports_free, paper_comparison, write_reports
from ccq.evaluation.scoring import case_record, check_definition, score_masks
from ccq.io.nifti import is_nifti_name
from ccq.utils import fs

OVERLAYS_DIR = "overlays"


def _collection(collection: str | Path | Collection | None) -> Collection:
    if isinstance(collection, Collection):
        return collection
    return load_collection("mots" if collection is None else collection)


def _same_tasks(given: Collection, stored: Collection, where: Path) -> None:
    """A collection named next to a prepared folder must describe the same tasks and labels."""

    def key(c: Collection):
        return [(t.name, t.id, dict(t.labels), t.organ, t.tumor) for t in c.tasks]

    if key(given) != key(stored):
        raise CCQError(
            f"--collection {given.name!r} differs from the collection {where} was prepared with ({stored.name!r}: "
            f"tasks {', '.join(stored.task_names)}); leave --collection out to use the stored one"
        )


def _working_spacing(spacing: Sequence[float] | None, definition: str, prepared: Any) -> tuple[float, ...] | None:
    given = None if spacing is None else tuple(float(s) for s in spacing)
    if given is not None and (len(given) != 3 or any(not s > 0 for s in given)):
        raise CCQError(f"--spacing {list(given)}: expected three positive numbers (z, y, x) in mm")
    if prepared is not None:
        stored = tuple(prepared.preprocessing.spacing)
        if given is not None and not np.allclose(given, stored):
            raise CCQError(
                f"--spacing {list(given)} differs from the spacing {list(stored)} of the prepared folder "
                f"{prepared.root}; leave --spacing out"
            )
        return stored
    if definition == "standard":
        if given is not None:
            raise CCQError(
                "--spacing sets the working grid of the mots definition; the standard definition measures each "
                "file on its own grid (leave --spacing out)"
            )
        return None
    return given if given is not None else tuple(OFFICIAL_PREPROCESSING.spacing)


def _working_grids(
    preprocessing: str | Path | PreprocessingConfig | None,
    spacing: Sequence[float] | None,
    definition: str,
    prepared: Any,
    tasks: Sequence[TaskSpec],
    collection: Collection,
) -> tuple[dict[str, Grid] | None, PreprocessingConfig | None]:
    """(task name -> working grid of the mots definition, the preprocessing that gave them); (None, None) for the
    standard definition and for one canonical grid at the working spacing. A prepared folder's grids are its
    cases'; ``preprocessing`` (a file, a checkpoint folder or a `PreprocessingConfig`) gives each task the grid a
    model works on."""
    if preprocessing is None:
        if prepared is None or prepared.preprocessing.uniform:
            return None, None
        names = {t.name for t in tasks}
        return {e["task"]: entry_grid(e) for e in prepared.entries if e["task"] in names}, prepared.preprocessing
    what = "--preprocessing"
    if prepared is not None:
        raise CCQError(f"{what}: a prepared folder ({prepared.root}) scores each case on its own grid; leave {what} "
                       "out")  # fmt: skip
    if definition != "mots":
        raise CCQError(f"{what} sets the working grids of the mots definition; the standard definition measures each "
                       f"file on its own grid (leave {what} out)")  # fmt: skip
    if spacing is not None:
        raise CCQError(f"give --spacing or {what}, not both (the preprocessing has its own spacings)")
    pre = preprocessing if isinstance(preprocessing, PreprocessingConfig) else load_preprocessing(preprocessing)
    pre.check_tasks(collection.task_names, what)
    return pre.grids(tasks), pre


def find_sources(
    pred: Path,
    gt: Path,
    collection: Collection,
    tasks: Sequence[TaskSpec],
    cases: str | Sequence[str],
    *,
    single_task: bool,
    prepared: Any,
    images: Path | None,
) -> list[CaseSource]:
    """The cases to score: from a prepared folder, one task's folder, or every task of a raw collection root."""
    if prepared is not None:
        return prepared_sources(prepared, tasks, pred, cases, flat_predictions=single_task, images=images)
    if single_task:
        folder = gt
        if not any(is_nifti_name(p) for p in gt.iterdir()):  # not label maps: perhaps the collection's raw root
            try:
                candidate = collection.dataset_dir(tasks[0], gt)
            except CCQError:
                candidate = None
            if candidate is not None and candidate.is_dir():
                folder = candidate
        return task_sources(tasks[0], pred, folder, cases, flat_predictions=True, images=images)
    return collection_sources(collection, tasks, pred, gt, cases, images=images)


def score_case(source: CaseSource, loaded: LoadedCase, definition: str) -> list[dict[str, Any]]:
    """One record per channel the task labels: case, task, channel, category, dice, hd95, status, voxel counts."""
    task = source.task
    pred = channel_masks(task, loaded.pred)
    gt = channel_masks(task, loaded.gt)
    records = []
    for channel, p, g in zip(CHANNELS, pred, gt, strict=True):
        if g is None:  # a channel the dataset does not label is not evaluated
            continue
        score = score_masks(p, g, definition, loaded.spacing)  # type: ignore[arg-type]
        records.append(case_record(source.case_id, task.name, channel, score))
    return records


# ------------------------------------------------------------------------------------------------ overlays


def _overlay_dir(out: Path, source: CaseSource) -> Path:
    case_dir = fs.child_path(out / OVERLAYS_DIR, source.case_id, "case id")  # case ids come from file names
    return fs.child_path(case_dir, source.task.name, "task name")


def _structure_names(task: TaskSpec) -> list[str]:
    return [task.channel_names[c] for c in CHANNELS if c in task.channel_names]


def _plan_overlays(sources: Sequence[CaseSource], out: Path, overwrite: bool) -> None:
    """Before any work: every case has its CT, and no overlay would replace a file without ``overwrite``."""
    try:
        from ccq.viz.overlays import overlay_files
    except ImportError as err:  # pragma: no cover - the module ships with ccq; guards a partial install
        raise CCQError(f"--overlays: the overlay renderer is not available ({err})") from None
    for source in sources:
        if source.image is None:
            raise CCQError(
                f"--overlays: no CT for case {source.case_id} (task {source.task.name!r}); give the folder of the "
                "CTs with --images (CASE.nii.gz or CASE_0000.nii.gz)"
            )
        if not overwrite:
            taken = [p for p in overlay_files(_structure_names(source.task), _overlay_dir(out, source)) if p.exists()]
            if taken:
                raise CCQError(f"{taken[0]} exists; refusing to overwrite it: choose another --out or pass --overwrite")


def _first_per_task(sources: Sequence[CaseSource], per_task: int | None) -> set[int]:
    """Indices of the sources that get overlays: the first ``per_task`` of each task (all when None)."""
    counts: dict[str, int] = {}
    chosen = set()
    for index, source in enumerate(sources):
        counts[source.task.name] = counts.get(source.task.name, 0) + 1
        if per_task is None or counts[source.task.name] <= per_task:
            chosen.add(index)
    return chosen


def write_case_overlays(source: CaseSource, loaded: LoadedCase, out: Path) -> list[Path]:
    """PNGs of the CT with the prediction (solid) and the ground truth (dashed) of each labeled channel."""
    from ccq.viz.overlays import write_overlays

    assert source.image is not None
    image, affine = geometry.load_nifti(source.image, what="image", case=source.case_id, as_float=True)
    check_same_grid(source.case_id, str(source.pred), loaded.native_pred.shape, loaded.affine, str(source.image),
                    image.shape, affine, what="CT")  # fmt: skip
    task = source.task
    pred = channel_masks(task, loaded.native_pred)
    gt = channel_masks(task, native_ground_truth(source, loaded))
    masks: dict[str, np.ndarray] = {}
    reference: dict[str, np.ndarray] = {}
    for channel, p, g in zip(CHANNELS, pred, gt, strict=True):
        if g is None or p is None:
            continue
        masks[task.channel_names[channel]] = p
        reference[task.channel_names[channel]] = g
    return write_overlays(image, affine, masks, _overlay_dir(out, source), reference=reference)


# ------------------------------------------------------------------------------------------------ entry point


def evaluate_folder(
    pred: str | Path,
    gt: str | Path,
    *,
    task: str | None = None,
    collection: str | Path | Collection | None = None,
    definition: str = "mots",
    spacing: Sequence[float] | None = None,
    preprocessing: str | Path | PreprocessingConfig | None = None,
    cases: str | Sequence[str] | None = None,
    out: str | Path | None = None,
    write: bool = True,
    overwrite: bool = False,
    compare_paper: bool = False,
    overlays: bool = False,
    overlay_cases: int | None = None,
    images: str | Path | None = None,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score every selected case and return the summary dict (`ccq.evaluation.report`); see the module docstring.

    ``collection``: a name, a file or a `Collection` (default "mots"; with a prepared folder, the one stored
    there). ``spacing``: the working grid (z, y, x mm) of the "mots" definition (default the official
    1.5 x 0.8 x 0.8; a prepared folder's own). ``preprocessing``: instead, each task's own working grid (a
    preprocessing file, a checkpoint folder or a `PreprocessingConfig`: the grids a model works on, e.g. a
    converted official checkpoint's). ``write`` False returns the summary without writing anything.
    ``overlays``: also write PNGs to ``OUT/overlays/CASE/TASK/`` (the CTs from ``images`` or the raw dataset);
    ``overlay_cases``: only for the first N scored cases of each task (None: every case).
    """
    if overlay_cases is not None and overlay_cases < 1:
        raise CCQError(f"--overlay-cases {overlay_cases}: expected a positive number of cases per task")
    check_definition(definition)
    pred_dir, gt_dir = Path(pred).expanduser(), Path(gt).expanduser()
    if not pred_dir.is_dir():
        raise CCQError(f"--pred {pred_dir}: no such folder; expected the predictions (PRED/CASE/TASK.nii.gz)")
    if not gt_dir.is_dir():
        raise CCQError(f"--gt {gt_dir}: no such folder; expected the ground truth (a dataset or prepared folder)")
    images_dir = None if images is None else Path(images).expanduser()
    if images_dir is not None and not images_dir.is_dir():
        raise CCQError(f"--images {images_dir}: no such folder; expected the CTs (CASE.nii.gz or CASE_0000.nii.gz)")
    prepared = None
    if is_prepared(gt_dir):
        from ccq.data.cache import PreparedDataset

        prepared = PreparedDataset(gt_dir)
        if collection is not None:
            _same_tasks(_collection(collection), prepared.collection, gt_dir)
        tasks_from = prepared.collection
    else:
        tasks_from = _collection(collection)
    working = _working_spacing(spacing, definition, prepared)
    tasks = [tasks_from.task(task)] if task is not None else list(tasks_from.tasks)
    task_grids, grids_from = _working_grids(preprocessing, spacing, definition, prepared, tasks, tasks_from)
    if grids_from is not None:
        working = tuple(grids_from.spacing)  # the default grid's spacing (the summary's "spacing")
    selection = cases if cases is not None else ("all" if task is not None else "test")
    if compare_paper:  # fails now, not after the work, if the paper has nothing to compare with
        paper_comparison([c for t in tasks for c in t.categories()], definition)
    out_dir = pred_dir if out is None else Path(out).expanduser()
    if write:
        check_reports_free(out_dir, overwrite)
    sources = find_sources(pred_dir, gt_dir, tasks_from, tasks, selection, single_task=task is not None,
                           prepared=prepared, images=images_dir)  # fmt: skip
    drawn: set[int] = set()
    if overlays:
        drawn = _first_per_task(sources, overlay_cases)
        _plan_overlays([sources[i] for i in sorted(drawn)], out_dir, overwrite)

    from tqdm import tqdm

    records: list[dict[str, Any]] = []
    grids: set[str] = set()
    for index, source in enumerate(tqdm(sources, desc="evaluate", unit="case", disable=not progress)):
        loaded = load_case(source, definition, working if task_grids is None else task_grids[source.task.name])
        grids.add(loaded.grid)
        records += score_case(source, loaded, definition)
        if index in drawn:
            written = write_case_overlays(source, loaded, out_dir)
            if echo is not None:
                echo(f"{source.case_id} ({source.task.name}): {len(written)} overlay(s) in {written[0].parent}")
    summary = build_summary(
        records, tasks_from, definition=definition, grid=" + ".join(sorted(grids)),
        spacing=working, grids=task_grids, compare_paper=compare_paper,
        sources={"pred": str(pred_dir), "gt": str(gt_dir), "ground_truth": "prepared" if prepared else "nifti",
                 "cases": selection if isinstance(selection, str) else list(selection)},
    )  # fmt: skip
    if write:
        write_reports(summary, out_dir, overwrite=overwrite)
    return summary
