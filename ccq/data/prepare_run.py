"""Preparing a whole collection: find the cases, run `prepare_case` on workers, write the manifest.

A second run skips finished cases (a case folder exists only once complete, see :mod:`ccq.data.cache`), so an
interrupted run is resumed by running the same command again.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import active_children, get_context
from pathlib import Path
from typing import Any

import ccq.limits as limits
from ccq.data import cache
from ccq.data.collection import Collection
from ccq.data.collection_dataset import expand_datasets
from ccq.data.dataset_folders import with_folders
from ccq.data.prepare import prepare_case
from ccq.data.prepare_checks import check_format, check_workers_memory
from ccq.data.prepare_plan import PrepareSummary, _Job, _plan
from ccq.data.prepare_shared import check_shared_grids, prepare_shared_case
from ccq.data.preprocessing import PreprocessingConfig
from ccq.data.workers import init_worker
from ccq.errors import CCQError, Interrupted
from ccq.utils import fs
from ccq.utils.config import FieldError
from ccq.utils.progress import progress_bar


def _has_prepared_cases(out_dir: Path) -> bool:
    """Whether any finished case (earlier runs included) is in ``out_dir``: only then do its index files say what
    the folder holds (a run that prepared nothing leaves none, see `prepare_collection`)."""
    return next((out_dir / cache.CASES_DIR).glob(f"*/*/{cache.META_FILE}"), None) is not None


def _check_compatible(out_dir: Path, collection: Collection, preprocessing: PreprocessingConfig) -> None:
    """Refuse to mix cases prepared with another spacing/window or other channel rules in one folder."""
    if not _has_prepared_cases(out_dir):
        return  # index files without a case (an older ccq's failed run): nothing they describe can be mixed
    check_format(out_dir)
    pre_path = out_dir / cache.PREPROCESSING_FILE
    if pre_path.is_file():
        old = cache.read_json(pre_path, "preprocessing.json")
        new = preprocessing.to_dict()
        # The patch size does not change the prepared data; anything else does.
        if {k: v for k, v in old.items() if k != "patch_size"} != {k: v for k, v in new.items() if k != "patch_size"}:
            raise CCQError(
                f"{pre_path}: this folder was prepared with {limits.quote(old, 400)}; requested {new}. "
                "Use another --out (or delete the folder)"
            )
    col_path = out_dir / cache.COLLECTION_FILE
    if col_path.is_file():
        try:  # a dataset's tasks are written without its labels: completed from it
            old_data = expand_datasets(cache.read_json(col_path, "collection.json"))
        except FieldError as err:
            raise CCQError(f"{col_path}: {err}") from None
        old_tasks = {t["name"]: t for t in old_data.get("tasks", [])}
        for task in collection.tasks:
            old = old_tasks.get(task.name)
            if old is None:
                continue
            new = {**task.to_dict(), "dataset": task.dataset}
            for key in ("id", "labels", "organ", "tumor", "dataset"):
                if old.get(key) != new[key]:
                    raise CCQError(
                        f"{col_path}: task {task.name!r} was prepared with {key}={limits.quote(old.get(key), 200)}; "
                        f"now {new[key]}. "
                        "Use another --out (or delete the folder)"
                    )
        for dataset in collection.datasets:  # its cases hold one entry per task it had: no task can join later
            before = sorted(t["name"] for t in old_tasks.values() if t.get("dataset") == dataset.name)
            now = sorted(t.name for t in collection.dataset_tasks_of(dataset.name))
            if before and before != now:
                raise CCQError(
                    f"{col_path}: dataset {dataset.name!r} was prepared for tasks {before}; now {now}. "
                    "Use another --out (or delete the folder)"
                )


def _run_job(job: _Job, out_dir: Path, preprocessing: PreprocessingConfig) -> tuple[str, str]:
    """Prepare and write one case in a worker -> ("done" | "failed", message)."""
    try:
        if job.tasks:
            case = prepare_shared_case(job.image, job.label, job.tasks, preprocessing, case_id=job.case_id,
                                       split=job.split)  # fmt: skip
        else:
            case = prepare_case(job.image, job.label, job.task, preprocessing, case_id=job.case_id, split=job.split)
        cache.write_case(
            out_dir,
            job.task.storage_name,
            job.case_id,
            image=case.hu,
            label=case.label,
            locations=case.locations,
            meta=case.meta,
        )
        return "done", ""
    except CCQError as err:
        return "failed", _naming_case(job, str(err))
    except MemoryError:
        return "failed", f"case {job.key}: out of memory (try fewer --workers)"
    except OSError as err:  # disk full, no permission to write OUT ...
        return "failed", f"case {job.key}: {fs.os_error_message(err)}"


def _naming_case(job: _Job, message: str) -> str:
    """Prefix ``case TASK/ID: `` unless the message already starts by naming the case."""
    key = job.key
    return message if message.startswith((f"case {job.case_id}:", f"case {key}:")) else f"case {key}: {message}"


def _execute(
    jobs: list[_Job],
    out_dir: Path,
    pre: PreprocessingConfig,
    workers: int,
    keep_going: bool,
    summary: PrepareSummary,
    progress: bool,
) -> None:
    bar = progress_bar(total=len(jobs), desc="prepare", unit="case", disable=not progress or not jobs)

    def record(job: _Job, status: str, message: str) -> None:
        key = job.key
        bar.update(1)
        if status == "done":
            summary.done.append(key)
            return
        summary.failed.append((key, message))
        if not keep_going:
            raise CCQError(message)
        bar.write(f"FAILED {key}: {message}", file=sys.stderr)

    try:
        if workers <= 1:
            for job in jobs:
                record(job, *_run_job(job, out_dir, pre))
            return
        # spawn, not fork: forking a process whose torch/OpenMP threads already ran can deadlock.
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(
            workers, mp_context=get_context("spawn"), initializer=init_worker, initargs=(threads, os.getpid())
        ) as pool:
            pending: dict[Future, _Job] = {}
            queue = iter(jobs)
            try:
                # At most 2 cases per worker in flight: each holds ~1 GB while it is prepared.
                for job in queue:
                    pending[pool.submit(_run_job, job, out_dir, pre)] = job
                    if len(pending) >= 2 * workers:
                        break
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        record(pending.pop(fut), *fut.result())
                        nxt = next(queue, None)
                        if nxt is not None:
                            pending[pool.submit(_run_job, nxt, out_dir, pre)] = nxt
            except KeyboardInterrupt:  # stop now: the cases in flight are discarded (their temporaries too, by
                for process in active_children():  # the next run); the pool then fails its futures itself
                    process.terminate()
                raise
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
    finally:
        bar.close()


def prepare_collection(
    collection: Collection,
    raw_root: str | Path | None,
    out_dir: str | Path,
    preprocessing: PreprocessingConfig,
    workers: int = 1,
    keep_going: bool = False,
    folders: Mapping[str, str] | None = None,
    progress: bool = False,
    tasks: Sequence[str] | None = None,
) -> PrepareSummary:
    """Prepare every train/test case of ``collection`` found under ``raw_root`` into ``out_dir``.

    ``raw_root`` None uses the collection's own ``root`` (a collection file may name its data folder).
    ``tasks``: prepare only these tasks' cases (e.g. the tasks a collection adds to a trained model's); the folder
    still records the whole collection, and the cases of its other tasks prepared earlier stay in the manifest.

    Without ``keep_going`` the first bad case raises its one-line CCQError; with it, failures are collected in
    the summary. Either way ``out_dir/manifest.json`` lists every finished case of the collection.
    """
    out_dir = Path(out_dir).expanduser()
    raw_root = collection.raw_root(raw_root).resolve()
    if not raw_root.is_dir():
        raise CCQError(f"--raw {raw_root}: no such folder; expected the folder holding the datasets")
    if workers < 1:
        raise CCQError(f"workers={workers}: expected at least 1")
    # The stored collection names the raw data it was prepared from (provenance; training never reads it).
    collection = dataclasses.replace(with_folders(collection, folders), root=str(raw_root))
    if out_dir.exists() and not out_dir.is_dir():
        raise CCQError(f"--out {out_dir} exists and is a file; expected a folder (new, or prepared before)")
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = PrepareSummary(out_dir=out_dir)
    try:
        preprocessing.check_tasks(collection.task_names, "preprocessing")
        for dataset in collection.datasets:
            if collection.dataset_tasks_of(dataset.name):
                check_shared_grids(collection.dataset_tasks_of(dataset.name), preprocessing)
        _check_compatible(out_dir, collection, preprocessing)
        cache.remove_temporaries(out_dir)
        jobs = _plan(collection, raw_root, summary, keep_going, tasks)
        todo = []
        for job in jobs:
            if cache.is_case_finished(out_dir, job.task.storage_name, job.case_id):
                summary.skipped.append(job.key)
            else:
                todo.append(job)
        if workers > 1:
            check_workers_memory(todo, preprocessing, workers)
        # Written before any case, so that a case folder never exists without them.
        fs.write_json_atomic(out_dir / cache.PREPROCESSING_FILE, preprocessing.to_dict(), indent=cache.JSON_INDENT)
        fs.write_json_atomic(out_dir / cache.COLLECTION_FILE, collection.to_dict(), indent=cache.JSON_INDENT)
        try:
            _execute(todo, out_dir, preprocessing, workers, keep_going, summary, progress)
        except KeyboardInterrupt:
            total = len(summary.done) + len(summary.skipped)
            kept = f"{len(summary.done)} case(s) prepared by this run, {total} of {len(jobs)} in {out_dir}, are kept"
            raise Interrupted(
                f"{kept if total else f'no case was prepared in {out_dir}'} (a case in progress is discarded); "
                "run the same command again to resume"
            ) from None
        finally:
            if _has_prepared_cases(out_dir):
                write_manifest(out_dir, collection, preprocessing, jobs, summary, keep_others=tasks is not None)
    finally:
        if not _has_prepared_cases(out_dir):
            _remove_index(out_dir, created)
    return summary


def _remove_index(out_dir: Path, created: bool) -> None:
    """Nothing was prepared: leave no index files (a corrected rerun may choose another preprocessing), and no
    folder if this run made it."""
    for name in (cache.MANIFEST_FILE, cache.COLLECTION_FILE, cache.PREPROCESSING_FILE):
        (out_dir / name).unlink(missing_ok=True)
    if created:
        cases = out_dir / cache.CASES_DIR
        for task_dir in sorted(cases.glob("*")) if cases.is_dir() else []:
            _rmdir_if_empty(task_dir)
        _rmdir_if_empty(cases)
        _rmdir_if_empty(out_dir)


def _rmdir_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (or gone): kept as it is


def write_manifest(
    out_dir: Path,
    collection: Collection,
    preprocessing: PreprocessingConfig,
    jobs: list[_Job],
    summary: PrepareSummary,
    keep_others: bool = False,
) -> Path:
    """List every finished case of this collection (earlier runs included); the split is the current one.
    ``keep_others``: also keep the listed cases of the tasks this run did not plan (``tasks``)."""
    entries: list[dict[str, Any]] = _entries_of_other_tasks(out_dir, collection, jobs) if keep_others else []
    new: list[dict[str, Any]] = []
    for job in jobs:
        case_dir = out_dir / cache.case_relpath(job.task.storage_name, job.case_id)
        if not (case_dir / cache.META_FILE).is_file():
            continue
        meta = cache.read_json(case_dir / cache.META_FILE, "case meta.json")
        # A case shared by several tasks holds one entry per task (`ccq.data.prepare_shared`).
        for entry in meta["entries"] if "entries" in meta else [meta]:
            if entry["task"] in job.task_names:
                new.append({**entry, "split": job.split})
    entries += sorted(new, key=lambda e: (e["task_id"], e["id"]))
    planned = {name for job in jobs for name in job.task_names}
    expected = sum(len(job.task_names) for job in jobs)
    return cache.write_index(
        out_dir,
        collection,
        preprocessing,
        entries,
        complete=summary.ok and sum(1 for e in entries if e["task"] in planned) == expected,
        failed=[{"case": c, "reason": r} for c, r in summary.failed],
    )


def _entries_of_other_tasks(out_dir: Path, collection: Collection, jobs: list[_Job]) -> list[dict[str, Any]]:
    """The manifest entries of an earlier run for tasks of ``collection`` that ``jobs`` leave alone, when their
    case folders are still complete."""
    path = out_dir / cache.MANIFEST_FILE
    if not path.is_file():
        return []
    planned = {name for job in jobs for name in job.task_names}
    others = set(collection.task_names) - planned
    earlier = cache.read_json(path, "manifest.json")
    cases = earlier.get("cases", []) if isinstance(earlier, dict) else []
    return [
        e
        for e in cases
        if isinstance(e, dict)
        and e.get("task") in others
        and cache.is_case_finished(out_dir, str(e.get("dataset") or e["task"]), str(e.get("id")))
    ]
