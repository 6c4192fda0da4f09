"""Where a collection's datasets lie on disk when their folders are not named as the collection says: a mapping
file ``task name -> folder`` (``ccq prepare --folders``), or the authors' prepared MOTS tree (``--folders official``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import ccq.limits as limits
from ccq.data.collection import Collection
from ccq.data.collection_io import parse_collection_text
from ccq.errors import CCQError

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
