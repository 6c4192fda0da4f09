"""Shapes, all-task/per-task equality, gradients and the ablation switches, at a tiny size."""

import pytest
import torch

from ccq.models import build_model, get_preset
from ccq.models.presets import ABLATIONS, TABLE1_BASELINES
from ccq.models.rows import ONE_GROUP
from ccq.training.loss import IGNORE, partial_label_loss

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

    def spy(x, skips, rows=ONE_GROUP):
        groups.append(rows.groups)
        return original(x, skips, rows)

    monkeypatch.setattr(tiny_ccq.decoder, "forward", spy)
    with torch.no_grad():
        tiny_ccq.eval().forward_channels(_input(1), [(4, 1), (5, 1), (6, 0)])
        tiny_ccq.forward_all_tasks(_input(1), [4, 5, 6])
    assert groups == [3, 6]


def test_labeled_forward_decodes_only_labeled_branches_with_the_same_gradients(tiny_ccq, monkeypatch):
    """Training decodes a (sample, branch) pair only where the sample's dataset labels it: the labeled channels
    keep their logits, the others are 0, and the partial-label loss gives every parameter the gradient of the
    full decoding (whose unlabeled channels it ignores), up to float rounding."""
    model = tiny_ccq.eval()  # eval: no dropout, both passes see the same network
    x, tasks = _input(3), torch.tensor([0, 4, 6])
    labeled = torch.tensor([[True, True], [True, False], [False, True]])
    g = torch.Generator().manual_seed(1)
    target = (torch.rand(3, 2, *TINY_PATCH, generator=g) > 0.8).float()
    target[~labeled] = IGNORE
    rows: list[int] = []
    original = model.decoder.forward

    def spy(x, skips, r=ONE_GROUP):
        rows.append(x.shape[0])
        return original(x, skips, r)

    monkeypatch.setattr(model.decoder, "forward", spy)
    grads, outputs = [], []
    for kwargs in ({}, {"labeled": labeled}):
        model.zero_grad(set_to_none=True)
        out = model(x, tasks, **kwargs)
        partial_label_loss(out, target).total.backward()
        outputs.append(out.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert rows == [6, 4]  # 2 branches x 3 samples, then the 4 labeled pairs
    full, part = outputs
    torch.testing.assert_close(part[labeled], full[labeled], atol=1e-5, rtol=1e-4)
    assert torch.count_nonzero(part[~labeled]) == 0
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 50
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-6, rtol=1e-4, msg=name)


def test_labeled_forward_checks_its_mask_and_decodes_everything_without_a_label(tiny_ccq):
    model = tiny_ccq.eval()
    x, tasks = _input(2), torch.tensor([0, 4])
    with torch.no_grad():
        full = model(x, tasks)
        nothing = model(x, tasks, labeled=torch.zeros(2, 2, dtype=torch.bool))
        everything = model(x, tasks, labeled=torch.ones(2, 2, dtype=torch.bool))
    torch.testing.assert_close(nothing, full)
    torch.testing.assert_close(everything, full, atol=1e-5, rtol=1e-4)
    for bad in (torch.ones(2, 3, dtype=torch.bool), torch.ones(2, 2)):
        with pytest.raises(ValueError, match="labeled: expected a bool tensor \\[2, 2\\]"):
            model(x, tasks, labeled=bad)
