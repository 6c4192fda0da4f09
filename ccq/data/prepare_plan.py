"""Planning a ``ccq prepare`` run: which cases of which tasks (one job per case of a dataset that labels several
tasks), and what the run did (`PrepareSummary`). The runner is :mod:`ccq.data.prepare_run`; where the datasets lie
is :mod:`ccq.data.dataset_folders`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ccq.data.collection import Collection, TaskSpec, find_cases
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
