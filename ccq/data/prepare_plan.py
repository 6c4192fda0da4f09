"""Planning a ``ccq prepare`` run: which cases of which tasks, where their files are (`with_folders`, the
authors' prepared tree), and what the run did (`PrepareSummary`). The runner is :mod:`ccq.data.prepare_run`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ccq import limits
from ccq.data.collection import Collection, TaskSpec, find_cases
from ccq.data.collection_io import parse_collection_text
from ccq.errors import CCQError


@dataclass(frozen=True)
class _Job:
    task: TaskSpec
    case_id: str
    split: str
    image: Path
    label: Path
    tasks: tuple[TaskSpec, ...] = ()
    """For a dataset that labels several tasks: all of them (one job prepares the case once for every task)."""
    listed: tuple[str, ...] = ()
    """The names of ``tasks`` this run lists in the manifest (those asked for); every one when empty."""

    @property
    def key(self) -> str:
        """``task/case``, or ``dataset/case`` for a dataset that labels several tasks: the case's folder."""
        return f"{self.task.storage_name}/{self.case_id}"

    @property
    def task_names(self) -> tuple[str, ...]:
        """The tasks whose manifest entries this job gives."""
        return self.listed or tuple(t.name for t in self.tasks) or (self.task.name,)


@dataclass
class PrepareSummary:
    """What a `prepare_collection` run did; ``failed`` holds (case, one-line reason)."""

    out_dir: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    unlabeled: list[str] = field(default_factory=list)
    """Cases without a label file (KiTS19 ships its test cases so): not prepared, not an error."""
    unused: list[str] = field(default_factory=list)
    """Cases in neither the train nor the test list of their task."""

    @property
    def ok(self) -> bool:
        return not self.failed

    def report(self) -> str:
        lines = [
            f"prepared {len(self.done)} case(s), skipped {len(self.skipped)} already prepared, "
            f"{len(self.failed)} failed -> {self.out_dir}"
        ]
        if self.unlabeled:
            lines.append(f"not prepared: {len(self.unlabeled)} case(s) without a label file")
        if self.unused:
            lines.append(f"not prepared: {len(self.unused)} case(s) in neither the train nor the test list")
        lines += [f"FAILED {case}: {reason}" for case, reason in self.failed]
        return "\n".join(lines)


OFFICIAL_FOLDERS = {0: "0Liver", 1: "1Kidney/origin", 2: "2HepaticVessel", 3: "3Pancreas", 4: "4Colon", 5: "5Lung",
                    6: "6Spleen"}  # fmt: skip
"""The folders of the authors' prepared MOTS tree (``0123456_spacing_same/``, written by the official
re_spacing.py), by task id: MSD-style ``imagesTr/``+``labelsTr/``, KiTS19 case folders under ``1Kidney/origin/``
(docs/official-data-path.md, fact 13)."""
OFFICIAL_FOLDERS_NAME = "official"
"""``--folders official``: the `OFFICIAL_FOLDERS` of the collection's tasks (a file of that name takes precedence)."""


def official_folders(collection: Collection) -> dict[str, str]:
    """Task name -> folder of the authors' prepared MOTS tree, for the tasks of ``collection`` (by task id)."""
    return {t.name: OFFICIAL_FOLDERS[t.id] for t in collection.tasks if t.id in OFFICIAL_FOLDERS}


def read_folders_file(path: str | Path, collection: Collection | None = None) -> dict[str, str]:
    """A JSON/YAML mapping ``task name -> folder`` (for raw folders named differently from the collection); with
    ``collection``, the name ``official`` (no such file) is the authors' prepared tree (`official_folders`)."""
    path = Path(path).expanduser()
    if collection is not None and str(path) == OFFICIAL_FOLDERS_NAME and not path.exists():
        return official_folders(collection)
    if not path.is_file():
        raise CCQError(f"{path}: no such folders file; expected a JSON or YAML mapping task name -> folder")
    suffix = ".json" if path.suffix.lower() == ".json" else ".yaml"
    data = parse_collection_text(limits.read_text(path), suffix, str(path))
    if not isinstance(data, dict) or not all(isinstance(v, str) and v for v in data.values()):
        raise CCQError(f"{path}: expected a mapping of task name -> folder (strings)")
    return {str(k): v for k, v in data.items()}


def with_folders(collection: Collection, folders: Mapping[str, str] | None) -> Collection:
    """The collection with other dataset folders: ``folders`` maps task names (or the names of datasets that
    label several tasks: one folder for all their tasks) to folders."""
    if not folders:
        return collection
    datasets = {d.name: d for d in collection.datasets}
    for name in folders:
        if name not in datasets:
            collection.task(name)  # unknown names fail here, with a suggestion
    new_datasets = []
    for dataset in collection.datasets:
        given = {folders[n] for n in (dataset.name, *(t.name for t in collection.dataset_tasks_of(dataset.name)))
                 if n in folders}  # fmt: skip
        if len(given) > 1:
            raise CCQError(f"folders: the tasks of dataset {dataset.name!r} share one folder; got {sorted(given)}")
        new_datasets.append(dataclasses.replace(dataset, folder=given.pop()) if given else dataset)
    folder_of = {d.name: d.folder for d in new_datasets}
    tasks = [
        dataclasses.replace(t, folder=folder_of[t.dataset] if t.dataset else folders.get(t.name, t.folder))
        for t in collection.tasks
    ]
    return dataclasses.replace(collection, datasets=tuple(new_datasets), tasks=tuple(tasks))


def _plan(
    collection: Collection, raw_root: Path, summary: PrepareSummary, keep_going: bool, only: Sequence[str] | None = None
) -> list[_Job]:
    def fail(key: str, message: str) -> None:
        if not keep_going:
            raise CCQError(message)
        summary.failed.append((key, message))

    jobs: list[_Job] = []
    chosen = None if only is None else {collection.task(name).name for name in only}  # unknown names fail here
    planned_datasets: set[str] = set()
    for task in collection.tasks:
        if chosen is not None and task.name not in chosen:
            continue
        shared: tuple[TaskSpec, ...] = ()
        if task.dataset is not None:  # one job per case for all the dataset's tasks: its first one asked for
            if task.dataset in planned_datasets:
                continue
            planned_datasets.add(task.dataset)
            shared = collection.dataset_tasks(task)
        listed = tuple(t.name for t in shared if chosen is None or t.name in chosen)
        folder = collection.dataset_dir(task, raw_root)
        if not folder.is_dir():
            fail(
                task.name,
                f"task {task.name!r}: no folder {folder}; expected the dataset there "
                f"(check --raw, or map the task to your folder name with --folders)",
            )
            continue
        try:
            found = find_cases(task, folder)
            labeled = [c for c in found if c.label is not None]
            train, test = task.split_cases([c.case_id for c in labeled])
        except CCQError as err:
            fail(task.name, str(err))
            continue
        for case in found:
            if case.label is not None:
                continue
            if task.layout == "msd":  # an MSD image without its label is a broken download
                fail(
                    f"{task.storage_name}/{case.case_id}",
                    f"case {case.case_id}: no label file for {case.image} in {folder / 'labelsTr'}",
                )
            else:  # KiTS19 ships its test cases without segmentation
                summary.unlabeled.append(f"{task.storage_name}/{case.case_id}")
        where = {**{c: "train" for c in train}, **{c: "test" for c in test}}
        for case in labeled:
            if case.case_id not in where:
                summary.unused.append(f"{task.storage_name}/{case.case_id}")
                continue
            assert case.label is not None
            jobs.append(_Job(task, case.case_id, where[case.case_id], case.image, case.label, shared, listed))
    return jobs
