"""Learning-rate schedules: poly (official), cosine, warm-up, and the configuration that names them."""

from __future__ import annotations

import math

import pytest

from ccq.errors import CCQError
from ccq.training.config import get_train_preset
from ccq.training.schedule import CosineSchedule, PolySchedule, WarmupPoly, build_schedule, cosine_lr


def test_cosine_reaches_zero_and_warm_up_rises_linearly() -> None:
    assert cosine_lr(0.01, 0, 100) == 0.01 and cosine_lr(0.01, 100, 100) == 0.0
    assert cosine_lr(0.01, 50, 100) == pytest.approx(0.005)
    schedule = CosineSchedule(0.01, 110, warmup=10)
    assert [schedule(i) for i in range(3)] == pytest.approx([0.001, 0.002, 0.003])
    assert schedule(9) == pytest.approx(0.01) and schedule(10) == pytest.approx(0.01)
    assert schedule(60) == pytest.approx(0.005) and schedule(110) == 0.0
    lrs = [schedule(i) for i in range(10, 111)]
    assert lrs == sorted(lrs, reverse=True)
    poly = WarmupPoly(0.01, 110, 0.9, warmup=10)
    assert poly(4) == pytest.approx(0.005) and poly(10) == 0.01 and poly(60) == pytest.approx(0.01 * 0.5**0.9)
    with pytest.raises(ValueError, match="warmup=5"):
        CosineSchedule(0.01, 5, warmup=5)


def test_the_configuration_chooses_the_schedule() -> None:
    official = get_train_preset("official")
    assert official.lr_schedule == "poly" and official.warmup_iterations == 0 and official.ema_decay is None
    assert type(build_schedule(official)) is PolySchedule and build_schedule(official).step == "epoch"
    demo = get_train_preset("demo")
    cosine = build_schedule(demo.replace(lr_schedule="cosine", warmup_iterations=20, iterations=100))
    assert isinstance(cosine, CosineSchedule) and cosine.warmup == 20 and math.isclose(cosine(19), demo.lr)
    # A warm-up as long as a tiny test run is shortened to leave one decaying iteration.
    assert build_schedule(demo.replace(lr_schedule="cosine", warmup_iterations=50, iterations=4)).warmup == 3
    assert isinstance(build_schedule(demo.replace(lr_schedule="poly", warmup_iterations=5)), WarmupPoly)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lr_schedule": "step"}, r"lr_schedule: expected one of 'poly', 'cosine', got 'step'"),
        ({"warmup_iterations": -1}, "warmup_iterations: expected 0 or more, got -1"),
        ({"ema_decay": 1.0}, r"ema_decay: expected null or a value in \(0, 1\), got 1.0"),
        ({"ema_decay": 0}, "ema_decay: expected null or a value in"),
    ],
)
def test_invalid_values_are_named(change, message) -> None:
    with pytest.raises(CCQError, match=message):
        get_train_preset("demo").replace(**change)


def test_per_epoch_steps_are_the_official_poly_only() -> None:
    with pytest.raises(CCQError, match="lr_step: expected 'iteration' with lr_schedule='cosine'"):
        get_train_preset("official").replace(lr_schedule="cosine")
    with pytest.raises(CCQError, match="warmup_iterations=10"):
        get_train_preset("official").replace(warmup_iterations=10)
    assert get_train_preset("official").replace(lr_schedule="cosine", lr_step="iteration").lr_schedule == "cosine"
