"""Shapes, all-task/per-task equality, gradients and the ablation switches, at a tiny size."""

import pytest
import torch

from ccq.models import build_model, get_preset
from ccq.models.presets import ABLATIONS, TABLE1_BASELINES

TINY_PATCH = (16, 32, 32)


def _input(batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, *TINY_PATCH, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def tiny_ccq():
    torch.manual_seed(0)
    return build_model(get_preset("tiny"))


def test_forward_shape_and_logits(tiny_ccq):
    out = tiny_ccq.eval()(_input(), torch.tensor([1, 5]))
    assert out.shape == (2, 2, *TINY_PATCH)
    assert out.dtype == torch.float32
    # logits, not probabilities: they leave [0, 1]
    assert out.min() < 0 or out.max() > 1


def test_int_task_id_applies_to_every_sample(tiny_ccq):
    x = _input()
    with torch.no_grad():
        a = tiny_ccq.eval()(x, 3)
        b = tiny_ccq(x, torch.tensor([3, 3]))
    torch.testing.assert_close(a, b)


def test_out_of_range_task_is_refused(tiny_ccq):
    with pytest.raises(ValueError, match="out of range"):
        tiny_ccq(_input(1), torch.tensor([7]))


def test_wrong_patch_size_is_refused(tiny_ccq):
    with pytest.raises(ValueError, match="patch size"):
        tiny_ccq(torch.zeros(1, 1, 32, 32, 32), 0)


def test_batched_branches_equal_single_sample_passes(tiny_ccq):
    """Samples of a batch do not leak into each other through the group-major batching."""
    x = _input(3)
    tasks = torch.tensor([0, 4, 6])
    with torch.no_grad():
        batched = tiny_ccq.eval()(x, tasks)
        single = torch.cat([tiny_ccq(x[i : i + 1], tasks[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, atol=5e-5, rtol=1e-4)


@pytest.mark.parametrize("preset", ["tiny", "tiny-dodnet"])
def test_forward_all_tasks_equals_per_task_forward(preset):
    torch.manual_seed(1)
    model = build_model(get_preset(preset)).eval()
    x = _input(2)
    tasks = [0, 2, 3, 6]
    with torch.no_grad():
        all_tasks = model.forward_all_tasks(x, tasks)
        per_task = torch.stack([model(x, t) for t in tasks], dim=1)
    assert all_tasks.shape == (2, len(tasks), 2, *TINY_PATCH)
    assert (all_tasks - per_task).abs().max().item() < 1e-5


def test_tasks_change_the_output(tiny_ccq):
    x = _input(1)
    with torch.no_grad():
        out = tiny_ccq.eval().forward_all_tasks(x, [0, 1])
    assert (out[:, 0] - out[:, 1]).abs().max() > 1e-4
    # organ and tumor branches differ too
    assert (out[:, 0, 0] - out[:, 0, 1]).abs().max() > 1e-4


@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
def test_every_ablation_builds_and_backpropagates_to_every_parameter(ablation):
    torch.manual_seed(0)
    model = build_model(get_preset(f"tiny+{ablation}" if ablation != "full" else "tiny")).train()
    x = _input(2)
    out = model(x, torch.tensor([0, 5]))
    assert out.shape == (2, 2, *TINY_PATCH)
    (out.float() ** 2).mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert no_grad == []
    zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert zero == []


def test_ablation_switches_change_the_architecture():
    def params(name):
        return sum(p.numel() for p in build_model(get_preset(name)).parameters())

    full = params("tiny")
    assert params("tiny+no-qgen") < full
    assert params("tiny+no-querying") < full
    assert params("tiny+no-attnskip") < full
    assert params("tiny+nq16") > full  # more queries -> a wider query-to-map conv
    assert params("tiny+paper-skip") < full  # 1x1x1 gate convs instead of 3x3x3
    # no-cat keeps every parameter, only the keys/values change
    assert params("tiny+no-cat") == full
    assert params("tiny+baseline") == params("tiny-dodnet")
    assert params("tiny+baseline") < params("tiny+baseline-imgattn") < params("tiny+baseline-imgattn-attnskip")


def test_no_cat_changes_the_output():
    torch.manual_seed(0)
    full = build_model(get_preset("tiny")).eval()
    no_cat = build_model(get_preset("tiny+no-cat")).eval()
    no_cat.load_state_dict(full.state_dict(), strict=True)
    x = _input(1)
    with torch.no_grad():
        assert (full(x, 0) - no_cat(x, 0)).abs().max() > 1e-5


def test_train_mode_dropout_is_active_and_eval_is_deterministic(tiny_ccq):
    x = _input(1)
    tiny_ccq.eval()
    with torch.no_grad():
        assert torch.equal(tiny_ccq(x, 0), tiny_ccq(x, 0))
        tiny_ccq.train()
        torch.manual_seed(0)
        a = tiny_ccq(x, 0)
        torch.manual_seed(1)
        b = tiny_ccq(x, 0)
    tiny_ccq.eval()
    assert not torch.equal(a, b)


@pytest.mark.parametrize("preset", ["tiny", "tiny-dodnet", *[f"tiny-{name}" for name in TABLE1_BASELINES]])
def test_forward_channels_equals_the_same_channels_of_all_tasks(preset):
    """Only the requested (task, channel) pairs are decoded, in the order asked, with the values `forward_all_tasks`
    gives them (CCQ decodes fewer branches in its batch, which may change float32 rounding)."""
    torch.manual_seed(2)
    model = build_model(get_preset(preset, num_tasks=4)).eval()
    x = _input(2)
    pairs = [(3, 1), (0, 0), (2, 1), (3, 0), (0, 0)]  # out of order, a task with one channel, a repeat
    with torch.no_grad():
        all_tasks = model.forward_all_tasks(x, [0, 1, 2, 3])
        some = model.forward_channels(x, pairs)
    assert some.shape == (2, len(pairs), *TINY_PATCH)
    expected = torch.stack([all_tasks[:, t, c] for t, c in pairs], dim=1)
    assert (some - expected).abs().max().item() < 1e-5
    for bad in ([], [(4, 0)], [(0, 2)], [(-1, 0)]):
        with pytest.raises(ValueError, match="expected \\(task id in 0..3, 0 organ or 1 tumor\\) pairs"):
            model.forward_channels(x, bad)


def test_forward_channels_runs_only_the_requested_branches(tiny_ccq, monkeypatch):
    """The decoder sees one group per requested pair: nothing is decoded for a channel not asked for."""
    groups: list[int] = []
    original = tiny_ccq.decoder.forward

    def spy(x, skips, g=1):
        groups.append(g)
        return original(x, skips, g)

    monkeypatch.setattr(tiny_ccq.decoder, "forward", spy)
    with torch.no_grad():
        tiny_ccq.eval().forward_channels(_input(1), [(4, 1), (5, 1), (6, 0)])
        tiny_ccq.forward_all_tasks(_input(1), [4, 5, 6])
    assert groups == [3, 6]
