"""The one configuration mechanism: every config class is checked against its type hints, however it is made."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Literal, get_args

import pytest

from ccq.data.augment import AugmentationConfig
from ccq.data.collection import Collection, Split, TaskSpec, load_collection
from ccq.data.collection_task import LAYOUTS, Layout
from ccq.data.preprocessing import PreprocessingConfig
from ccq.data.sampling import SamplingConfig
from ccq.errors import CCQError
from ccq.models.config import BASELINE_ARCHS, Arch, ModelConfig
from ccq.models.presets import get_preset, preset_names
from ccq.training.config import PRESETS, TrainConfig
from ccq.utils.config import Config, FieldError, to_data
from ccq.utils.device import resolve_device


@dataclass(frozen=True)
class Part(Config):
    count: int = 1
    config_name = "part"

    def _validate(self) -> None:
        if self.count < 0:
            self._fail("count", "a non-negative integer")


@dataclass(frozen=True)
class Whole(Config):
    mode: Literal["fast", "slow"] = "fast"
    sizes: tuple[int, ...] = (1,)
    part: Part = field(default_factory=Part)
    config_name = "whole"


def test_a_config_is_checked_and_converted_however_it_is_made() -> None:
    assert Whole(sizes=[2, 3]).sizes == (2, 3)  # Python, with a list
    assert Whole(part={"count": 4}).part == Part(4)  # a mapping for a nested config
    assert Whole().replace(sizes=[5]) == Whole(sizes=(5,))
    assert dataclasses.replace(Whole(), part={"count": 2}).part == Part(2)
    for make in (
        lambda: Whole(mode="quick"),
        lambda: Whole().replace(mode="quick"),
        lambda: dataclasses.replace(Whole(), mode="quick"),
        lambda: Whole.from_dict({"mode": "quick"}),
    ):
        with pytest.raises(FieldError, match=r"^whole: mode: expected one of 'fast', 'slow', got 'quick'$"):
            make()


def test_checks_beyond_types_read_the_same_way_and_nest() -> None:
    with pytest.raises(FieldError, match=r"^part: count: expected a non-negative integer, got -1$"):
        Part(-1)
    with pytest.raises(FieldError, match=r"^whole: part.count: expected a non-negative integer, got -1$"):
        Whole.from_dict({"part": {"count": -1}})
    with pytest.raises(FieldError, match=r"^whole: part.count: expected an integer, got '2'$"):
        Whole(part={"count": "2"})
    with pytest.raises(FieldError, match=r"^whole: sizes\[1\]: expected an integer, got 2.5$"):
        Whole.from_dict({"sizes": [1, 2.5]})


def test_from_dict_over_a_base_merges_nested_configs_and_to_dict_inverts_it() -> None:
    base = Whole(mode="slow", part=Part(3))
    assert Whole.from_dict({"part": {}}, base=base) == base
    assert Whole.from_dict({"sizes": [7]}, base=base) == Whole("slow", (7,), Part(3))
    assert base.to_dict() == {"mode": "slow", "sizes": [1], "part": {"count": 3}} == to_data(base)
    assert Whole.from_dict(json.loads(json.dumps(base.to_dict()))) == base


def test_replace_refuses_unknown_fields_with_a_suggestion() -> None:
    with pytest.raises(FieldError, match=r"^whole: szes: unknown field \(did you mean 'sizes'\?\); expected one of"):
        Whole().replace(szes=(1,))


# Every configuration of the package goes through the same mechanism: a wrongly typed Python argument is a
# one-line CCQError naming the configuration and the field (never a TypeError from a comparison later).
TASK = {"name": "t", "id": 0, "layout": "msd", "folder": "f", "labels": {0: "bg", 1: "o"}, "organ": (1,), "tumor": None}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ModelConfig(dim="wide"), "model config: dim: expected an integer, got 'wide'"),
        (lambda: get_preset("tiny", heads=2.0), "model config: heads: expected an integer, got 2.0"),
        (lambda: ModelConfig().replace(arch="unet"), "model config: arch: expected one of 'ccq', 'dodnet', "),
        (lambda: PreprocessingConfig(spacing=1.5), "preprocessing: spacing: expected a list of 3 numbers, got 1.5"),
        (lambda: SamplingConfig(bbox_margin=2.5), "sampling: bbox_margin: expected an integer, got 2.5"),
        (lambda: SamplingConfig(augmentation={"flip_p": "1"}), "sampling: augmentation.flip_p: expected a number"),
        (lambda: AugmentationConfig(enabled="no"), "augmentation: enabled: expected true or false, got 'no'"),
        (lambda: TrainConfig(iterations="5"), "train config: iterations: expected an integer, got '5'"),
        (lambda: TrainConfig(precision="fp8"), "train config: precision: expected one of 'auto', 'fp32', 'bf16', "),
        (lambda: TrainConfig(model_overrides={"dim": "wide"}), "train config: model_overrides.dim: expected an int"),
        (lambda: Split(test=["a", 1]), r"split: test\[1\]: expected a string, got 1"),
        (lambda: Split(seed=3), "split: seed: seed only applies with split.test_fraction"),
        (lambda: TaskSpec(**{**TASK, "layout": "nnunet"}), "task: layout: expected one of 'msd', 'kits', got 'nnunet'"),
        (lambda: TaskSpec(**{**TASK, "organ": ()}), r"task: organ: expected null or a non-empty list of integers"),
        (lambda: Collection("c", ()), r"collection: tasks: expected a non-empty list of mappings, got \[\]"),
    ],
)
def test_every_config_of_the_package_is_typed(make, message) -> None:
    with pytest.raises(CCQError, match="^" + message) as info:
        make()
    assert "\n" not in str(info.value)


def test_every_built_in_config_survives_its_json_round_trip() -> None:
    configs: list[Config] = [*(get_preset(n) for n in preset_names()), *PRESETS.values(), PreprocessingConfig()]
    configs.append(load_collection("mots"))
    for config in configs:
        data = json.loads(json.dumps(config.to_dict()))
        assert data == config.to_dict() and type(config).from_dict(data) == config, config


def test_literal_choices_are_written_once() -> None:
    assert LAYOUTS == get_args(Layout) == ("msd", "kits")
    assert set(BASELINE_ARCHS) < set(get_args(Arch)) and {"ccq", "dodnet"} < set(get_args(Arch))


def test_resolve_device() -> None:
    assert resolve_device("cpu").type == "cpu" and resolve_device(None).type in ("cpu", "cuda")
    with pytest.raises(CCQError, match="expected 'cpu', 'cuda'"):
        resolve_device("tpu")
