"""Training configuration: presets, JSON round trip, files over presets, validation; the LR schedule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ccq.errors import CCQError
from ccq.training.config import TrainConfig, get_train_preset, load_train_config
from ccq.training.schedule import PolySchedule, poly_lr


def test_official_preset_is_the_paper_recipe() -> None:
    c = get_train_preset("official")
    assert (c.model, c.iterations, c.batch_size, c.lr, c.momentum, c.nesterov, c.weight_decay) == (
        "official",
        150_000,
        2,
        0.01,
        0.99,
        True,
        0.0,
    )
    assert (c.poly_power, c.lr_step, c.epoch_iterations) == (0.9, "epoch", 60)
    assert c.sampling.foreground_fraction == 0.8 and c.sampling.augmentation.flip_p == 0.5
    # What the demo changed for short CPU runs stays off in the paper's recipe.
    assert (c.lr_schedule, c.warmup_iterations, c.ema_decay, c.sampling.tumor_fraction) == ("poly", 0, None, 0.0)


def test_demo_preset_is_the_measured_recipe() -> None:
    """BENCHMARKS.md's demo figures were measured with exactly this recipe: changing it means measuring again."""
    c = get_train_preset("demo")
    assert (c.model, c.iterations, c.batch_size, c.optimizer, c.lr) == ("demo", 2200, 2, "adamw", 0.003)
    assert (c.lr_step, c.lr_schedule, c.warmup_iterations, c.ema_decay) == ("iteration", "poly", 0, None)
    assert c.sampling.tumor_fraction == 0.0 and c.sampling.augmentation.flip_p == 0.0
    assert c.channels_last and not c.recompute_norm_act and c.num_workers == 0
    from ccq.demo import DemoOptions  # and on this many phantoms, 8 of each task's 22 held out

    assert (DemoOptions.cases, DemoOptions.test_cases, DemoOptions.tasks) == (
        22, 8, ("liver", "kidney", "pancreas", "lung", "spleen"))  # fmt: skip


def test_json_round_trip_and_frozen() -> None:
    c = get_train_preset("demo").replace(model_overrides={"num_queries": 4, "patch_size": (16, 32, 32)})
    text = json.dumps(c.to_dict())
    back = TrainConfig.from_dict(json.loads(text))
    assert back == c
    with pytest.raises(AttributeError):
        c.iterations = 3  # type: ignore[misc]


def test_a_file_changes_only_its_fields(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("iterations: 7\nsampling:\n  augmentation: {flip_p: 0.25}\n")
    c = load_train_config(path, get_train_preset("official"))
    assert c.iterations == 7 and c.sampling.augmentation.flip_p == 0.25
    assert c.sampling.augmentation.noise_p == 0.1 and c.lr == 0.01
    run = tmp_path / "config.json"  # a run's record: its "train" section is used
    run.write_text(json.dumps({"train": c.replace(seed=5).to_dict(), "model": {}}))
    assert load_train_config(run, get_train_preset("demo")) == c.replace(seed=5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"iterations": 0}, "iterations: expected a positive integer, got 0"),
        ({"lr_step": "week"}, "lr_step"),
        ({"momentum": 1.0}, "momentum"),
        ({"device": "tpu"}, "device"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"learning_rate": 1}, "unknown"),
    ],
)
def test_invalid_values_are_named(change, message) -> None:
    with pytest.raises(CCQError, match=message):
        get_train_preset("demo").replace(**change)


def test_unknown_preset_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CCQError, match="expected one of official, demo"):
        get_train_preset("fast")
    with pytest.raises(CCQError, match="no such file"):
        load_train_config(tmp_path / "nope.json", get_train_preset("demo"))


def test_poly_schedule() -> None:
    assert poly_lr(0.01, 0, 100) == 0.01 and poly_lr(0.01, 100, 100) == 0.0
    assert poly_lr(0.01, 50, 100, 0.9) == pytest.approx(0.01 * 0.5**0.9)
    per_it = PolySchedule(0.01, 100, 0.9, "iteration")
    assert per_it(1) < per_it(0)
    per_epoch = PolySchedule(0.01, 150, 0.9, "epoch", epoch_iterations=60)  # 3 epochs (the last one short)
    assert per_epoch(0) == per_epoch(59) == 0.01
    assert per_epoch(60) == pytest.approx(0.01 * (2 / 3) ** 0.9) and per_epoch(149) == per_epoch(120)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("iterations: '5'\n", r"train config: iterations: expected an integer, got '5'"),
        ("lr: [0.1]\n", r"train config: lr: expected a number, got \[0.1\]"),
        ("grad_clip: 'off'\n", r"train config: grad_clip: expected null or a number, got 'off'"),
        (
            "sampling: {foreground_fraction: x}\n",
            r"train config: sampling.foreground_fraction: expected a number, got 'x'",
        ),
        (
            "sampling: {augmentation: {scale_range: 2}}\n",
            r"train config: sampling.augmentation.scale_range: expected a list of 2 numbers, got 2",
        ),
        ("sampling: 5\n", r"train config: sampling: expected a mapping with fields foreground_fraction, .*, got 5"),
        (
            "model_overrides: [dim, 64]\n",
            r"model_overrides: expected a mapping of ModelConfig fields, got \['dim', 64\]",
        ),
        ("- 1\n- 2\n", r"train config: expected a mapping with fields preset, model, .*, got \[1, 2\]"),
    ],
)
def test_wrongly_typed_values_in_a_file_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(CCQError, match=message) as info:
        load_train_config(path, get_train_preset("demo"))
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_tasks": 3}, r"model_overrides.num_tasks: not allowed: num_tasks comes from the prepared data .*got 3"),
        ({"widht": 3}, r"model_overrides.widht: unknown field; expected one of arch, "),
    ],
)
def test_model_overrides_only_take_model_fields_the_data_does_not_decide(overrides, message) -> None:
    with pytest.raises(CCQError, match=message):
        get_train_preset("demo").replace(model_overrides=overrides)
    assert get_train_preset("demo").replace(model_overrides={"dim": 64}).model_overrides == {"dim": 64}


def test_set_options_go_through_the_typed_mechanism() -> None:
    """`ccq train --set KEY=VALUE` (a.b=VALUE for nested fields) merges over the preset; a wrong value is a
    one-line error naming the full field path."""
    from ccq.commands.train import parse_set as _parse_set

    base = get_train_preset("demo")
    changes = _parse_set(["sampling.foreground_fraction=0.25", "sampling.augmentation.flip_p=0.5", "lr=0.001"])
    config = TrainConfig.from_dict(changes, base=base)
    assert config.sampling.foreground_fraction == 0.25 and config.sampling.augmentation.flip_p == 0.5
    assert config.lr == 0.001 and config.sampling.augmentation.blur_p == base.sampling.augmentation.blur_p == 0.0
    assert config.replace(sampling={"bbox_margin": 4}).sampling.foreground_fraction == 0.25  # merged, not reset
    for item, message in [
        ("sampling.foreground_fraction=x", "train config: sampling.foreground_fraction: expected a number, got 'x'"),
        (
            "sampling.augmentation.scale_range=[2]",
            r"train config: sampling.augmentation.scale_range: expected a list of 2",
        ),
        ("model_overrides.dim=wide", "train config: model_overrides.dim: expected an integer, got 'wide'"),
        (
            "sampling.foreground_mode=box",
            "train config: sampling.foreground_mode: expected one of 'bbox', 'location', got 'box'",
        ),
        ("optimizer=adam", "train config: optimizer: expected one of 'sgd', 'adamw', got 'adam'"),
        ("sampling.shuffle=1", r"train config: sampling.shuffle: unknown field; expected one of foreground_fraction"),
    ]:
        with pytest.raises(CCQError, match="^" + message) as info:
            TrainConfig.from_dict(_parse_set([item]), base=base)
        assert "\n" not in str(info.value)


def test_a_wrongly_typed_model_override_is_refused_with_the_config() -> None:
    """Before any model is built (the trainer needs no TypeError handling of its own)."""
    with pytest.raises(CCQError, match=r"^train config: model_overrides.patch_size: expected a list of 3 integers"):
        TrainConfig(model_overrides={"patch_size": [16, 32]})
    overrides = TrainConfig(model_overrides={"patch_size": [16, 32, 32], "skip": "paper"}).model_overrides
    assert overrides == {"patch_size": (16, 32, 32), "skip": "paper"}
