"""PreprocessingConfig from JSON/YAML data: a wrongly typed value is a one-line error naming the field."""

from __future__ import annotations

import json

import pytest

from ccq.data.collection import load_collection
from ccq.data.grid import Grid
from ccq.data.preprocessing import PreprocessingConfig, load_preprocessing, official_data_path
from ccq.errors import CCQError


def test_json_round_trip() -> None:
    config = PreprocessingConfig(spacing=(3.0, 2.0, 2.0), hu_min=-100, patch_size=(16, 32, 32))
    assert PreprocessingConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"spacing": 1.5}, r"preprocessing: spacing: expected a list of 3 numbers, got 1.5"),
        ({"spacing": [1.5, "0.8", 0.8]}, r"preprocessing: spacing\[1\]: expected a number, got '0.8'"),
        ({"hu_min": "-325"}, r"preprocessing: hu_min: expected a number, got '-325'"),
        ({"hu_min": "-325", "hu_max": "325"}, r"hu_min: expected a number, got '-325'"),  # strings would compare
        ({"patch_size": [16, 32, 32.5]}, r"preprocessing: patch_size\[2\]: expected an integer, got 32.5"),
        ({"image_interpolation_order": True}, r"image_interpolation_order: expected one of 0, 1, 3, got true"),
        ({"spacing": [0, 1, 1]}, r"preprocessing: spacing: expected three positive numbers .*, got \[0, 1, 1\]"),
        ({"pixel": 1}, r"preprocessing: pixel: unknown field; expected one of spacing, hu_min, "),
        ("spacing", r"preprocessing: expected a mapping with fields spacing, hu_min, .*, got 'spacing'"),
    ],
)
def test_bad_values_are_named(data, message) -> None:
    with pytest.raises(CCQError, match=message) as info:
        PreprocessingConfig.from_dict(data)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------------ working grids

OLD_FILE = {  # a preprocessing.json / checkpoint.json section written before per-task grids
    "spacing": [1.5, 0.8, 0.8],
    "hu_min": -325.0,
    "hu_max": 325.0,
    "hu_scale": 325.0,
    "patch_size": [64, 192, 192],
    "image_interpolation_order": 3,
}


def test_a_file_without_grids_means_one_canonical_grid_and_is_written_back_the_same() -> None:
    config = PreprocessingConfig.from_dict(OLD_FILE)
    assert config.uniform and config.axes == "SPL" and config.task_grids == {}
    assert config.grid("liver") == config.grid("kidney") == Grid(spacing=(1.5, 0.8, 0.8), axes="SPL")
    assert config.to_dict() == OLD_FILE  # no new keys: an older ccq reads what this one writes


def test_task_grids_round_trip_and_apply_to_their_task_only() -> None:
    data = {**OLD_FILE, "axes": "slp", "task_grids": {"kidney": {"spacing": [0.76, 0.76, 3], "axes": "IPL"}}}
    config = PreprocessingConfig.from_dict(data)
    assert not config.uniform and config.axes == "SLP"
    assert config.grid("liver") == Grid(spacing=(1.5, 0.8, 0.8), axes="SLP")
    assert config.grid("kidney") == Grid(spacing=(0.76, 0.76, 3.0), axes="IPL")
    assert PreprocessingConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["task_grids"] == {"kidney": {"spacing": [0.76, 0.76, 3.0], "axes": "IPL"}}
    # A task grid equal to the default says nothing: the two configurations are the same.
    same = PreprocessingConfig.from_dict({**OLD_FILE, "task_grids": {"liver": {"spacing": [1.5, 0.8, 0.8]}}})
    assert same == PreprocessingConfig.from_dict(OLD_FILE) and same.uniform


@pytest.mark.parametrize(
    ("grids", "message"),
    [
        ({"kidney": {"spacing": [1, 1]}}, r"task_grids\.kidney\.spacing: expected a list of 3 numbers"),
        ({"kidney": {"spacing": [1, 1, 1], "axes": "IPX"}}, r"task_grids\.kidney\.axes: expected three letters"),
        ({"kidney": {"spacing": [1, 1, 1], "axes": "IIL"}}, r"task_grids\.kidney\.axes: expected one letter of each"),
        ({"kidney": {"axes": "IPL"}}, r"task_grids\.kidney\.spacing: missing field"),
        ({"../x": {"spacing": [1, 1, 1]}}, r"task_grids: expected task names as keys"),
        ({"kidney": [1, 1, 1]}, r"task_grids\.kidney: expected a mapping"),
    ],
)
def test_bad_task_grids_are_named(grids, message) -> None:
    with pytest.raises(CCQError, match=message) as info:
        PreprocessingConfig.from_dict({"task_grids": grids})
    assert "\n" not in str(info.value)


def test_task_grids_must_name_tasks_of_the_collection() -> None:
    config = PreprocessingConfig.from_dict({"task_grids": {"kidny": {"spacing": [1, 1, 1]}}})
    config.check_tasks(["liver", "kidny"], "here")
    with pytest.raises(CCQError, match=r"here: task_grids names task\(s\) \['kidny'\]; expected task names of the"):
        config.check_tasks(["liver", "kidney"], "here")


@pytest.mark.parametrize(("code", "kidney"), [("ccq", (0.76, 0.76, 3.0)), ("dodnet", (0.8, 0.8, 1.5))])
def test_the_official_data_path_gives_kidney_its_own_grid(code, kidney) -> None:
    mots = load_collection("mots")
    config = official_data_path(mots.tasks, code=code)
    assert {name: g for name, g in config.grids(mots.tasks).items() if g.axes != "SLP"} == {
        "kidney": Grid(spacing=kidney, axes="IPL")
    }
    assert all(g == Grid(spacing=(1.5, 0.8, 0.8), axes="SLP") for n, g in config.grids(mots.tasks).items()
               if n != "kidney")  # fmt: skip
    assert config.hu_min == -325 and config.patch_size == (64, 192, 192)


def test_load_preprocessing_reads_a_file_or_a_checkpoint_folder(tmp_path) -> None:
    config = official_data_path(load_collection("mots").tasks)
    (tmp_path / "pre.json").write_text(json.dumps(config.to_dict()))
    assert load_preprocessing(tmp_path / "pre.json") == config
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "checkpoint.json").write_text(json.dumps({"format": "ccq-checkpoint", "preprocessing": config.to_dict()}))
    assert load_preprocessing(folder) == config
    with pytest.raises(CCQError, match=r"--preprocessing .*nothing: no such file; expected a JSON or YAML"):
        load_preprocessing(tmp_path / "nothing")
    (folder / "checkpoint.json").write_text(json.dumps({"preprocessing": {"task_grids": {"k": {"spacing": 1}}}}))
    with pytest.raises(CCQError, match=r"checkpoint.json: preprocessing: task_grids\.k\.spacing: expected"):
        load_preprocessing(folder)
