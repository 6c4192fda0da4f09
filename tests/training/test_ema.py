"""The weight average: its arithmetic, and a run that validates and saves it (and resumes it exactly)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from ccq.checkpoint import load_checkpoint
from ccq.errors import CCQError
from ccq.training.ema import WeightAverage, ema_decay_at
from ccq.training.state import load_training_state
from ccq.training.trainer import Trainer


def test_the_decay_ramps_up_to_its_value() -> None:
    assert ema_decay_at(0.99, 0) == pytest.approx(0.1)  # the first update keeps 90 % of the weights
    assert ema_decay_at(0.99, 10) == pytest.approx(11 / 20)
    assert ema_decay_at(0.99, 10_000) == 0.99
    ramp = [ema_decay_at(0.995, n) for n in range(3000)]
    assert ramp == sorted(ramp) and ramp[-1] == 0.995


def test_the_average_follows_the_formula_and_copies_integer_buffers() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    average = WeightAverage(model, 0.9)
    assert not any(p.requires_grad for p in average.model.parameters()) and not average.model.training
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for n in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].num_batches_tracked += 1
        d = ema_decay_at(0.9, n)
        for k, v in model.state_dict().items():
            expected[k] = d * expected[k] + (1 - d) * v if v.is_floating_point() else v.clone()
        average.update(model)
    got = average.model.state_dict()
    for k, v in expected.items():
        assert torch.allclose(got[k], v, atol=1e-6), k
    assert int(got["1.num_batches_tracked"]) == 5 and average.updates == 5
    assert not torch.equal(got["0.weight"], model.state_dict()["0.weight"])

    again = WeightAverage(model, 0.9)
    again.load_state_dict(average.state_dict(), average.model.state_dict())
    assert again.updates == 5 and torch.equal(again.model.state_dict()["0.weight"], got["0.weight"])
    with pytest.raises(ValueError, match="decay=1.0"):
        WeightAverage(model, 1.0)


def test_an_updated_average_predicts_with_its_new_weights() -> None:
    """The standardized conv weights are cached in eval mode, keyed on the weights' version counters: an update
    must bump them, or the average would keep predicting with the weights of its first evaluation."""
    import copy

    from ccq.models import build_model, get_preset

    torch.manual_seed(0)
    model = build_model(get_preset("tiny", num_tasks=2)).eval()
    average = WeightAverage(model, 0.5)
    x, tasks = torch.randn(1, 1, 16, 32, 32), torch.tensor([0])
    with torch.inference_mode():
        before = average.model(x, tasks)  # fills the caches
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5).add_(0.01)
    average.update(model)
    fresh = copy.deepcopy(average.model)
    fresh.load_state_dict(average.model.state_dict())
    with torch.inference_mode():
        after, expected = average.model(x, tasks), fresh(x, tasks)
    assert not torch.allclose(before, after)
    assert torch.equal(after, expected)


def test_a_run_with_ema_validates_and_saves_the_average(tiny_prepared: Path, tiny_config, tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = tiny_config.replace(ema_decay=0.9, tensorboard=False)
    trainer = Trainer(config, tiny_prepared, run, progress=False, echo=lambda _: None)
    seen = []
    trainer.ema.update = _spy(trainer.ema.update, seen)  # type: ignore[method-assign]
    result = trainer.fit()
    assert len(seen) == 4 and trainer.ema.updates == 4

    saved = load_file(str(run / "last" / "model.safetensors"))
    averaged = trainer.ema.model.state_dict()
    online = trainer.model.state_dict()
    assert all(torch.equal(saved[k], averaged[k]) for k in saved)
    assert any(not torch.equal(saved[k], online[k]) for k in saved)  # the file is not the trained weights...
    state = load_training_state(run / "last")
    assert all(torch.equal(state["online_weights"][k], online[k]) for k in online)  # ...those are here
    assert state["ema"]["updates"] == 4
    # Validation scored the average: validating it again gives the logged figure.
    from ccq.training.handlers.validation import run_validation

    assert math.isclose(run_validation(trainer)[0]["mean"], result.state.last_validation["mean"], abs_tol=1e-12)
    assert load_checkpoint(run / "best").meta.extra["iteration"] == result.state.best_iteration


def test_resume_refuses_a_checkpoint_without_the_average(tiny_prepared: Path, tiny_config, tmp_path: Path) -> None:
    from ccq.training.resume import resumed_config

    run = tmp_path / "run"
    Trainer(tiny_config.replace(iterations=2, tensorboard=False), tiny_prepared, run, progress=False,
            echo=lambda _: None).fit()  # fmt: skip
    with pytest.raises(CCQError, match="cannot change ema_decay"):
        resumed_config({"train": tiny_config.to_dict()}, {"ema_decay": 0.9})
    changed = tiny_config.replace(ema_decay=0.9, iterations=4, tensorboard=False)
    with pytest.raises(CCQError, match="holds no weight average"):
        Trainer(changed, tiny_prepared, run, progress=False, echo=lambda _: None, resume=True)


def _spy(update, seen: list):
    def wrapped(model):
        seen.append(1)
        return update(model)

    return wrapped
