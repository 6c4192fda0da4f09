"""Task collections: the built-in MOTS table and split, file round trips, one-line errors, channel mapping."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from ccq.data.collection import Collection, Split, TaskSpec, find_cases, load_collection
from ccq.data.collection_io import parse_split_list
from ccq.errors import CCQError

# train/test per task, from the public MOTS lists (ccq/resources/mots-split).
MOTS_COUNTS = {
    "liver": (104, 27),
    "kidney": (168, 42),
    "hepatic_vessel": (242, 61),
    "pancreas": (224, 57),
    "colon": (100, 26),
    "lung": (50, 13),
    "spleen": (32, 9),
}
SHARED = Path(os.environ.get("CCQ_TEST_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


@pytest.fixture(scope="module")
def mots() -> Collection:
    return load_collection("mots")


def small_dict() -> dict:
    """A valid two-task collection, as parsed from a file."""
    return {
        "name": "small",
        "tasks": [
            {
                "name": "liver",
                "id": 0,
                "layout": "msd",
                "folder": "Task03_Liver",
                "labels": {0: "background", 1: "liver", 2: "liver tumor"},
                "organ": [1, 2],
                "tumor": [2],
            },
            {
                "name": "colon",
                "id": 1,
                "layout": "msd",
                "folder": "Task10_Colon",
                "labels": {"0": "background", "1": "colon tumor"},
                "organ": None,
                "tumor": [1],
                "split": {"test_fraction": 0.25, "seed": 3},
            },
        ],
    }


def test_mots_is_built_in_with_the_published_split(mots: Collection) -> None:
    assert mots.num_tasks == 7 and mots.task_names == tuple(MOTS_COUNTS)
    assert [t.id for t in mots.tasks] == list(range(7))
    for name, (n_train, n_test) in MOTS_COUNTS.items():
        split = mots.task(name).split
        assert (len(split.train), len(split.test)) == (n_train, n_test), name
        assert not set(split.train) & set(split.test)
    assert sum(len(t.split.train) for t in mots.tasks) == 920
    assert sum(len(t.split.test) for t in mots.tasks) == 235
    assert "liver_0" in mots.task("liver").split.test and "case_00000" in mots.task("kidney").split.test
    assert mots.task("kidney").layout == "kits" and mots.task("kidney").folder == "kits19/data"
    assert len(mots.categories()) == 11 and "colon/organ" not in mots.categories()
    assert mots.category_names()["hepatic_vessel/tumor"] == "hepatic vessel tumor"
    assert mots.labeled_channels().tolist() == [[True, True]] * 4 + [[False, True]] * 2 + [[True, False]]


def test_mots_channel_conventions_follow_design_table(mots: Collection) -> None:
    expect = {
        "liver": ((1, 2), (2,)),
        "kidney": ((1, 2), (2,)),
        "hepatic_vessel": ((1,), (2,)),
        "pancreas": ((1, 2), (2,)),
        "colon": (None, (1,)),
        "lung": (None, (1,)),
        "spleen": ((1,), None),
    }
    assert {t.name: (t.organ, t.tumor) for t in mots.tasks} == expect
    assert mots.task("liver").output_values == {"organ": 1, "tumor": 2}
    assert mots.task("colon").output_values == {"tumor": 1}


@pytest.mark.skipif(not (SHARED / "mots-split").is_dir(), reason="shared data folder absent")
def test_packaged_split_lists_are_the_published_ones() -> None:
    package = Path(__file__).resolve().parents[2] / "ccq" / "resources" / "mots-split"
    for name in ("MOTS_train.txt", "MOTS_test.txt"):
        assert (package / name).read_bytes() == (SHARED / "mots-split" / name).read_bytes()


def test_packaged_split_lists_have_the_published_counts() -> None:
    """Runs everywhere (no shared data): 920 train and 235 test lines, per task as in the MOTS papers."""
    package = Path(__file__).resolve().parents[2] / "ccq" / "resources" / "mots-split"
    counts: dict[str, list[int]] = {name: [0, 0] for name in MOTS_COUNTS}
    names = list(MOTS_COUNTS)  # task id order: 0Liver, 1Kidney, 2HepaticVessel ...
    for column, filename, total in ((0, "MOTS_train.txt", 920), (1, "MOTS_test.txt", 235)):
        lines = [line for line in (package / filename).read_text(encoding="utf-8").splitlines() if line.strip()]
        assert len(lines) == total, filename
        for line in lines:
            folder = line.split()[0].split("/")[1]  # 0123456_spacing_same/<id><Task>/...
            counts[names[int(folder[0])]][column] += 1
    assert {name: tuple(c) for name, c in counts.items()} == MOTS_COUNTS


def test_split_list_lines_give_case_ids() -> None:
    text = (
        "root/0Liver/imagesTr/liver_7.nii.gz  root/0Liver/labelsTr/liver_7.nii.gz\n"
        "r/1Kidney/origin/case_00012/imaging.nii.gz  r/1Kidney/origin/case_00012/segmentation.nii.gz\n\n"
    )
    assert parse_split_list(text) == {0: ["liver_7"], 1: ["case_00012"]}
    with pytest.raises(CCQError, match="line 1"):
        parse_split_list("imagesTr/liver_7.nii.gz labelsTr/liver_7.nii.gz")


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_round_trip_through_files(tmp_path: Path, mots: Collection, suffix: str) -> None:
    for collection in (mots, Collection.from_dict(small_dict())):
        path = collection.save(tmp_path / f"c{suffix}")
        loaded = load_collection(path)
        assert loaded == collection and loaded.source == path.resolve()
        assert Collection.from_dict(collection.to_dict()) == collection
    data = mots.to_dict()
    assert json.loads(json.dumps(data)) == data  # what a checkpoint's JSON stores comes back unchanged


def test_yaml_file_is_readable(tmp_path: Path) -> None:
    text = Collection.from_dict(small_dict()).save(tmp_path / "c.yaml").read_text()
    assert "labels: {0: background, 1: liver, 2: liver tumor}" in text
    assert "organ: null" in text and "split: {test_fraction: 0.25, seed: 3}" in text


def _broken(mutate) -> dict:
    data = copy.deepcopy(small_dict())
    mutate(data)
    return data


def _set(path: tuple, value):
    def mutate(data: dict) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _delete(path: tuple):
    def mutate(data: dict) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


MALFORMED = {
    "duplicate id": (_set(("tasks", 1, "id"), 0), "tasks[1].id", "duplicate id 0"),
    "duplicate name": (_set(("tasks", 1, "name"), "liver"), "tasks[1].name", "duplicate name"),
    "missing field": (_delete(("tasks", 0, "layout")), "tasks[0].layout", "missing field"),
    "missing organ": (_delete(("tasks", 1, "organ")), "tasks[1].organ", "missing field"),
    "unknown field": (_set(("tasks", 0, "tumour"), [2]), "tasks[0].tumour", "unknown field"),
    "wrong type": (
        _set(("tasks", 0, "organ"), "liver"),
        "tasks[0].organ",
        "expected null or a non-empty list",
    ),
    "wrong item type": (_set(("tasks", 0, "organ"), [1, "2"]), "tasks[0].organ[1]", "expected an integer"),
    "bool is no id": (_set(("tasks", 0, "id"), True), "tasks[0].id", "expected an integer"),
    "ids with a gap": (_set(("tasks", 1, "id"), 2), "tasks[1].id", "without gaps; id 1 is missing"),
    "value not in labels": (
        _set(("tasks", 0, "organ"), [1, 3]),
        "tasks[0].organ",
        "value 3 is not in labels",
    ),
    "background positive": (_set(("tasks", 0, "tumor"), [0, 2]), "tasks[0].tumor", "background"),
    "both channels null": (_set(("tasks", 1, "tumor"), None), "tasks[1].organ", "both null"),
    "bad layout": (_set(("tasks", 0, "layout"), "nnunet"), "tasks[0].layout", "one of 'msd', 'kits'"),
    "no background": (_delete(("tasks", 0, "labels", 0)), "tasks[0].labels", "label 0"),
    "label key": (_set(("tasks", 0, "labels", "tumor"), "x"), "tasks[0].labels", "integer keys"),
    "output reads as tumor": (
        _set(("tasks", 0, "output_values"), {"organ": 2}),
        "tasks[0].output_values.organ",
        "would read back as tumor",
    ),
    "output for ignored channel": (
        _set(("tasks", 1, "output_values"), {"organ": 1}),
        "tasks[1].output_values.organ",
        "not labeled",
    ),
    "split overlap": (
        _set(("tasks", 0, "split"), {"train": ["a", "b"], "test": ["b"]}),
        "tasks[0].split.test",
        "also in split.train",
    ),
    "split lists and fraction": (
        _set(("tasks", 0, "split"), {"test": ["b"], "test_fraction": 0.2}),
        "tasks[0].split",
        "not both",
    ),
    "bad task name": (_set(("tasks", 0, "name"), "liver/organ"), "tasks[0].name", "letters, digits"),
    "no tasks": (_set(("tasks",), []), "tasks", "non-empty list"),
    "label name": (_set(("tasks", 0, "labels", 1), 5), "tasks[0].labels.1", "expected a string, got 5"),
    "output channel": (
        _set(("tasks", 0, "output_values"), {"vessel": 1}),
        "tasks[0].output_values",
        "'organ', 'tumor'",
    ),
    "split field": (_set(("tasks", 1, "split"), {"fraction": 0.2}), "tasks[1].split.fraction", "unknown field"),
    "seed without fraction": (_set(("tasks", 0, "split"), {"test": ["a"], "seed": 2}), "tasks[0].split.seed", "only"),
    "huge value": (_set(("tasks", 0, "organ"), ["x" * 10**5]), "tasks[0].organ[0]", "expected an integer, got 'xxx"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_malformed_file_names_file_and_field(tmp_path: Path, case: str, suffix: str) -> None:
    mutate, field, expected = MALFORMED[case]
    data = _broken(mutate)
    path = tmp_path / f"broken{suffix}"
    path.write_text(json.dumps(data) if suffix == ".json" else yaml.safe_dump(data))
    with pytest.raises(CCQError) as err:
        load_collection(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {field}: "), message
    assert expected in message and "\n" not in message and len(message) < len(str(path)) + 300


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("bad.yaml", "name: x\ntasks: [\n", "invalid YAML at line"),
        ("bad.json", '{"name": "x",\n "tasks": }', "invalid JSON at line 2"),
        ("list.yaml", "- a\n- b\n", "expected a mapping with fields name"),
        ("bad.txt", "name: x", "must end in .yaml, .yml, .json"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, text: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CCQError, match="^" + str(path)) as err:
        load_collection(path)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_unknown_collection_names(tmp_path: Path) -> None:
    with pytest.raises(CCQError, match="did you mean 'mots'"):
        load_collection("mots2")
    with pytest.raises(CCQError, match="no such collection file"):
        load_collection(tmp_path / "absent.yaml")


def test_a_file_without_suffix_is_read_and_a_folder_refused(tmp_path: Path, monkeypatch) -> None:
    data = small_dict()
    (tmp_path / "mine").write_text(yaml.safe_dump(data))
    (tmp_path / "mine_json").write_text(json.dumps(data, indent="\t"))  # tabs: JSON, not YAML
    expected = load_collection(tmp_path / "mine").to_dict()
    assert expected["name"] == "small"
    assert load_collection(str(tmp_path / "mine")).to_dict() == expected
    assert load_collection(str(tmp_path / "mine_json")).to_dict() == expected
    (tmp_path / "folder").mkdir()
    for given in (tmp_path / "folder", str(tmp_path / "folder")):
        with pytest.raises(CCQError, match=r"folder: is a folder; expected a collection file \(.yaml"):
            load_collection(given)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mots").mkdir()  # a data folder called mots does not hide the built-in collection
    assert load_collection("mots").num_tasks == 7


def test_task_lookup_suggests_the_closest_name(mots: Collection) -> None:
    assert mots.task("spleen").id == 6 and mots.task(2).name == "hepatic_vessel"
    assert mots.task(mots.task(0)).name == "liver"
    with pytest.raises(CCQError, match="did you mean 'hepatic_vessel'"):
        mots.task("hepatic-vessels")
    with pytest.raises(CCQError, match="out of range 0..6"):
        mots.task(7)


def test_channel_targets_on_a_hand_made_label(mots: Collection) -> None:
    label = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    organ, tumor = mots.channel_targets(label, "liver")
    assert organ.tolist() == [[False, True, True], [True, True, False]]
    assert tumor.tolist() == [[False, False, True], [True, False, False]]
    organ, tumor = mots.channel_targets(label, "hepatic_vessel")  # vessel only: tumor voxels are not vessel
    assert organ.tolist() == [[False, True, False], [False, True, False]] and tumor.sum() == 2
    organ, tumor = mots.channel_targets(label == 1, "colon")
    assert organ is None and tumor.tolist() == [[False, True, False], [False, True, False]]
    organ, tumor = mots.channel_targets(label.clip(0, 1), "spleen")
    assert tumor is None and organ.sum() == 4
    with pytest.raises(CCQError, match=r"label value\(s\) \[2\] are not among the labels of task 'spleen' \[0, 1\]"):
        mots.channel_targets(label, "spleen")


def test_output_labels_invert_channel_targets(mots: Collection) -> None:
    rng = np.random.default_rng(0)
    for name in ("liver", "hepatic_vessel", "colon", "spleen"):
        task = mots.task(name)
        label = rng.choice(sorted(task.labels), size=(4, 5, 6)).astype(np.uint8)
        back = mots.to_output_labels(*task.channel_targets(label), task)
        assert back.dtype == np.uint8 and np.array_equal(back, label), name
    # Tumor overrides organ; a mask for an unlabeled channel is ignored.
    organ = np.array([1, 1, 0, 0], bool)
    tumor = np.array([0, 1, 1, 0], bool)
    assert mots.to_output_labels(organ, tumor, "liver").tolist() == [1, 2, 2, 0]
    assert mots.to_output_labels(organ, tumor, "colon").tolist() == [0, 1, 1, 0]
    assert mots.to_output_labels(organ, tumor, "spleen").tolist() == [1, 1, 0, 0]


def test_hashed_split_is_deterministic_and_sized() -> None:
    ids = [f"case_{i:03d}" for i in range(20)]
    split = Split(test_fraction=0.25, seed=3)
    train, test = split.assign(ids)
    assert len(test) == 5 and sorted(train + test) == ids
    assert split.assign(list(reversed(ids)))[1] == list(reversed(test))  # depends on the ids, not their order
    assert Split(test_fraction=0.25, seed=4).assign(ids)[1] != test
    assert Split().assign(ids) == (ids, [])
    assert Split(test=("case_001",)).assign(ids)[0] == [c for c in ids if c != "case_001"]


def test_listed_case_missing_on_disk() -> None:
    task = TaskSpec("t", 0, "msd", "f", {0: "bg", 1: "o"}, (1,), None, split=Split(train=("a",), test=("zz",)))
    with pytest.raises(CCQError, match=r"task 't': split: 1 listed case\(s\).*'zz'"):
        task.split_cases(["a", "b"])
    assert task.split_cases(["a", "b", "zz"]) == (["a"], ["zz"])  # "b" is in neither list: unused


def test_dataset_dir_resolution(tmp_path: Path, mots: Collection) -> None:
    assert mots.dataset_dir("kidney", tmp_path) == tmp_path / "kits19" / "data"
    with pytest.raises(CCQError, match="sets no root"):
        mots.dataset_dir("kidney")
    data = small_dict() | {"root": "raw"}
    path = Collection.from_dict(data).save(tmp_path / "sub" / "c.yaml")
    assert load_collection(path).dataset_dir("colon") == (tmp_path / "sub" / "raw" / "Task10_Colon").resolve()


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_find_cases_in_msd_and_kits_layouts(tmp_path: Path, mots: Collection) -> None:
    liver = tmp_path / "Task03_Liver"
    for case in ("liver_0", "liver_1"):
        _touch(liver / "labelsTr" / f"{case}.nii.gz")
    _touch(liver / "imagesTr" / "liver_0.nii.gz")  # MSD naming
    _touch(liver / "imagesTr" / "liver_1_0000.nii.gz")  # nnU-Net v2 naming
    _touch(liver / "imagesTr" / "._liver_0.nii.gz")  # macOS resource fork from the MSD tarball
    found = find_cases(mots.task("liver"), liver)
    assert [(c.case_id, c.image.name, c.label.name) for c in found] == [
        ("liver_0", "liver_0.nii.gz", "liver_0.nii.gz"),
        ("liver_1", "liver_1_0000.nii.gz", "liver_1.nii.gz"),
    ]
    _touch(liver / "imagesTr" / "liver_1.nii.gz")
    with pytest.raises(CCQError, match="'liver_1' appears twice"):
        find_cases(mots.task("liver"), liver)

    kits = tmp_path / "kits19" / "data"
    _touch(kits / "case_00000" / "imaging.nii.gz")
    _touch(kits / "case_00000" / "segmentation.nii.gz")
    _touch(kits / "case_00210" / "imaging.nii.gz")  # a KiTS19 test case: no segmentation
    found = find_cases(mots.task("kidney"), kits)
    assert [(c.case_id, c.label is not None) for c in found] == [("case_00000", True), ("case_00210", False)]
    with pytest.raises(CCQError, match="does not exist"):
        find_cases(mots.task("lung"), tmp_path / "Task06_Lung")


def test_second_ct_channel_is_refused(tmp_path: Path, mots: Collection) -> None:
    _touch(tmp_path / "imagesTr" / "lung_001_0001.nii.gz")
    with pytest.raises(CCQError, match="channel 0001"):
        find_cases(mots.task("lung"), tmp_path)
