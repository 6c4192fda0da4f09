"""A dataset that labels several tasks: the collection syntax, its checks, file round trips."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from ccq.data.collection import Collection, load_collection
from ccq.errors import CCQError

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "totalseg-abdomen.yaml"


def shared_dict() -> dict:
    """One dataset labeling liver and spleen, and a task with its own folder."""
    return {
        "name": "shared",
        "datasets": [
            {
                "name": "abdomen",
                "layout": "msd",
                "folder": "Abdomen",
                "labels": {0: "background", 1: "spleen", 5: "liver", 6: "liver tumor"},
                "split": {"test_fraction": 0.5, "seed": 1},
            }
        ],
        "tasks": [
            {"name": "liver", "id": 0, "dataset": "abdomen", "organ": [5, 6], "tumor": [6]},
            {"name": "spleen", "id": 2, "dataset": "abdomen", "organ": [1], "tumor": None},
            {
                "name": "colon",
                "id": 1,
                "layout": "msd",
                "folder": "Task10_Colon",
                "labels": {0: "background", 1: "colon tumor"},
                "organ": None,
                "tumor": [1],
            },
        ],  # fmt: skip
    }


def test_tasks_of_a_dataset_take_its_folder_labels_and_split() -> None:
    col = Collection.from_dict(shared_dict())
    liver, colon, spleen = col.tasks
    assert (liver.dataset, spleen.dataset, colon.dataset) == ("abdomen", "abdomen", None)
    for task in (liver, spleen):
        assert (task.layout, task.folder, task.storage_name) == ("msd", "Abdomen", "abdomen")
        assert task.labels == {0: "background", 1: "spleen", 5: "liver", 6: "liver tumor"}
        assert task.split.test_fraction == 0.5 and task.split.seed == 1
    assert colon.storage_name == "colon"
    assert liver.output_values == {"organ": 5, "tumor": 6} and spleen.output_values == {"organ": 1}
    assert [t.name for t in col.dataset_tasks("spleen")] == ["liver", "spleen"]
    assert col.dataset_tasks("colon") == (colon,)
    # One split for the dataset: a case is train or test for every task that shares its image.
    ids = [f"c{i}" for i in range(10)]
    assert liver.split_cases(ids) == spleen.split_cases(ids)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip_writes_the_dataset_once(tmp_path: Path, suffix: str) -> None:
    col = Collection.from_dict(shared_dict())
    data = col.to_dict()
    assert [d["name"] for d in data["datasets"]] == ["abdomen"]
    liver = next(t for t in data["tasks"] if t["name"] == "liver")
    assert liver["dataset"] == "abdomen" and not {"layout", "folder", "labels", "split"} & set(liver)
    assert "dataset" not in next(t for t in data["tasks"] if t["name"] == "colon")
    back = load_collection(col.save(tmp_path / f"c{suffix}"))
    assert back == col and back.to_dict() == data and back.datasets == col.datasets


def test_a_collection_without_datasets_is_written_as_before() -> None:
    mots = load_collection("mots")
    assert list(mots.to_dict()) == ["name", "description", "root", "tasks"] and mots.datasets == ()
    assert all("dataset" not in t for t in mots.to_dict()["tasks"])


def _broken(change) -> dict:
    data = copy.deepcopy(shared_dict())
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["tasks"][1].update(dataset="abdomn"),
            "tasks[1].dataset: expected one of the datasets ('abdomen'), got 'abdomn'",
        ),
        (
            lambda d: d["tasks"][0].update(folder="Elsewhere"),
            "tasks[0].folder: given by dataset 'abdomen'; expected it only in the dataset (datasets)",
        ),
        (
            lambda d: d["tasks"][0].update(split=None),
            "tasks[0].split: given by dataset 'abdomen'; expected it only in the dataset",
        ),
        (lambda d: d["datasets"][0].pop("layout"), "datasets[0].layout: missing field"),
        (
            lambda d: d["datasets"][0].update(labels={1: "spleen"}),
            "datasets[0].labels: expected label 0 (background) to be listed",
        ),
        (
            lambda d: [x.update(dataset="colon") for x in d["tasks"][:2]] and d["datasets"][0].update(name="colon"),
            "datasets[0].name: 'colon' is also a task's name",
        ),
        (lambda d: d["datasets"].append(dict(d["datasets"][0])), "datasets[1].name: duplicate name 'abdomen'"),
        (lambda d: d["datasets"][0].update(name="a/b"), "datasets[0].name: expected letters, digits"),
        (lambda d: d["tasks"][1].update(organ=[3]), "tasks[1].organ: value 3 is not in labels"),
        (lambda d: d.update(datasets={"name": "x"}), "datasets: expected a list of datasets"),
        (lambda d: d.pop("datasets"), "tasks[0].dataset: expected one of the datasets (none), got 'abdomen'"),
    ],  # fmt: skip
)
def test_bad_datasets_are_one_line_errors_with_the_field_path(change, expected: str) -> None:
    with pytest.raises(CCQError, match=rf"^col\.yaml: {re.escape(expected)}"):
        Collection.from_dict(_broken(change), "col.yaml")


def test_a_task_built_in_python_must_agree_with_its_dataset() -> None:
    col = Collection.from_dict(shared_dict())
    liver = col.task("liver")
    with pytest.raises(
        CCQError, match=r"tasks\[0\]\.folder: differs from its dataset 'abdomen'; expected the dataset's"
    ):
        col.with_tasks([liver.replace(folder="Other"), *col.tasks[1:]])
    with pytest.raises(CCQError, match=r"tasks\[0\]\.dataset: expected one of the datasets \('abdomen'\)"):
        col.with_tasks([liver.replace(dataset="other"), *col.tasks[1:]])


def test_the_documented_totalsegmentator_example() -> None:
    col = load_collection(EXAMPLE)
    assert col.task_names == ("liver", "kidney", "pancreas", "spleen")
    assert {t.name: t.organ for t in col.tasks} == {"liver": (5,), "kidney": (2, 3), "pancreas": (7,), "spleen": (1,)}
    assert all(t.tumor is None and t.dataset == "totalseg" and t.folder == "TotalSeg" for t in col.tasks)
    assert len(col.datasets[0].labels) == 118 and col.task("kidney").channel_names == {"organ": "kidney"}
