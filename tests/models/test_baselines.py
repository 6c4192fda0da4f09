"""The Table 1 baselines at a tiny size: shapes in both modes, all-task/per-task equality, batch routing, one
optimisation step through the criterion hook, TAL's channel probabilities, parameter counts, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from ccq.errors import CCQError
from ccq.models import build_model, get_preset
from ccq.models.baselines.tal import tal_num_classes
from ccq.models.presets import TABLE1_BASELINES
from ccq.models.summary import summarize
from ccq.training.criteria import build_criterion
from ccq.training.loss import IGNORE

PATCH = (16, 16, 16)  # the baselines have no positional embedding: any multiple of 16 works, the smallest is fastest
TASKS = 3  # fewer than MOTS's 7: Multi-Nets builds (and Multi-Head decodes) once per task
TINY = [f"tiny-{name}" for name in TABLE1_BASELINES]


def _input(batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, *PATCH, generator=g) * 2 - 1


def _target(batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Organ blobs with a tumor inside; sample 1 labels no organ (as colon and lung)."""
    g = torch.Generator().manual_seed(seed)
    organ = (torch.rand(batch, 1, *PATCH, generator=g) > 0.6).float()
    tumor = organ * (torch.rand(batch, 1, *PATCH, generator=g) > 0.7).float()
    target = torch.cat([organ, tumor], dim=1)
    target[1, 0] = IGNORE
    return target


_MODELS: dict[str, torch.nn.Module] = {}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(name: str) -> torch.nn.Module:
    """One tiny model per preset for the whole module (built with a fixed seed)."""
    if name not in _MODELS:
        torch.manual_seed(0)
        _MODELS[name] = build_model(get_preset(name, num_tasks=TASKS, patch_size=PATCH))
    return _MODELS[name]


@pytest.mark.parametrize("name", TINY)
def test_shapes_in_train_and_eval_mode(name):
    model = _model(name)
    x, tasks = _input(), torch.tensor([0, 2])
    with torch.no_grad():
        train_out = model.train()(x, tasks)
        eval_out = model.eval()(x, tasks)
    channels = tal_num_classes(TASKS) if name == "tiny-tal" else 2
    assert train_out.shape == (2, channels, *PATCH)
    assert eval_out.shape == (2, 2, *PATCH)
    assert torch.isfinite(eval_out).all()
    assert eval_out.min() < 0 < eval_out.max()  # logits, not probabilities


@pytest.mark.parametrize("name", TINY)
def test_forward_all_tasks_equals_per_task_forward_and_tasks_differ(name):
    model = _model(name).eval()
    x = _input()
    with torch.no_grad():
        all_tasks = model.forward_all_tasks(x, [2, 0, 1])
        per_task = torch.stack([model(x, t) for t in (2, 0, 1)], dim=1)
    assert all_tasks.shape == (2, 3, 2, *PATCH)
    assert (all_tasks - per_task).abs().max().item() < 1e-5
    assert (all_tasks[:, 0] - all_tasks[:, 1]).abs().max().item() > 1e-4


@pytest.mark.parametrize("name", TINY)
def test_mixed_task_batch_equals_single_sample_passes(name):
    """Routing puts every sample's output back in its place."""
    model = _model(name).eval()
    x, tasks = _input(3, seed=1), torch.tensor([2, 0, 2])
    with torch.no_grad():
        batched = model(x, tasks)
        single = torch.cat([model(x[i : i + 1], tasks[i : i + 1]) for i in range(3)])
    assert (batched - single).abs().max().item() < 5e-5


@pytest.mark.parametrize("name", TINY)
def test_one_step_through_the_criterion(name):
    torch.manual_seed(0)
    model = build_model(get_preset(name, num_tasks=TASKS, patch_size=PATCH)).train()
    criterion = build_criterion(model.config)
    x, target, tasks = _input(), _target(), torch.tensor([1, 2])
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    before = criterion(model(x, tasks), target, tasks)
    assert torch.isfinite(before.total) and before.total > 0
    before.total.backward()
    sparse = getattr(model, "task_sparse_parameters", False)
    assert sparse == (name in ("tiny-multinets", "tiny-multihead"))
    for pname, p in model.named_parameters():
        task_owned = pname.startswith(("nets.0.", "decoders.0.", "heads.0."))  # task 0 is not in the batch
        if sparse and task_owned:
            assert p.grad is None, pname
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert any(float(p.grad.abs().sum()) > 0 for p in model.parameters() if p.grad is not None)
    optimizer.step()
    with torch.no_grad():
        after = criterion(model(x, tasks), target, tasks)
    assert torch.isfinite(after.total)
    assert after.total < before.total.detach()


def test_multinets_task_t_uses_only_network_t():
    model = _model("tiny-multinets").eval()
    x = _input()
    saved = {k: v.clone() for k, v in model.nets[0].state_dict().items()}
    try:
        with torch.no_grad():
            out = model(x, 1)
            torch.testing.assert_close(out, model.nets[1](x))
            for p in model.nets[0].parameters():
                p.add_(1.0)
            torch.testing.assert_close(model(x, 1), out)  # network 0 does not matter to task 1
            assert (model(x, 0) - model.nets[0](x)).abs().max() == 0
    finally:
        model.nets[0].load_state_dict(saved)


def test_multihead_shares_the_encoder_only():
    model = _model("tiny-multihead").train()
    model.zero_grad(set_to_none=True)
    model(_input(), 2).sum().backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.decoders[2].parameters())
    assert all(p.grad is None for p in model.decoders[0].parameters())
    assert all(p.grad is None for p in model.heads[1].parameters())
    model.zero_grad(set_to_none=True)


def test_tal_channels_are_the_summed_class_probabilities():
    """Eval logits = logit(P(organ only) + P(organ and tumor)) and logit(P(organ and tumor) + P(tumor only)),
    finite even where one class takes all the probability."""
    model = _model("tiny-tal").eval()
    x = _input()
    with torch.no_grad():
        logits = model.class_logits(x)
        for task in range(TASKS):
            got = torch.sigmoid(model(x, task).double())
            p = torch.softmax(logits.double(), dim=1)
            own = p[:, 1 + 3 * task : 4 + 3 * task]
            expected = torch.stack([own[:, 0] + own[:, 1], own[:, 1] + own[:, 2]], dim=1)
            assert (got - expected).abs().max().item() < 1e-6
    # Saturated logits: the channels stay finite and on the right side.
    b, k = 1, tal_num_classes(TASKS)
    extreme = torch.full((b, k, 2), -300.0)
    extreme[0, 2, 0] = 300.0  # voxel 0: task 0's "organ and tumor"
    extreme[0, 0, 1] = 300.0  # voxel 1: background
    from ccq.models.baselines.tal import channel_logits, task_class_logits

    out = channel_logits(task_class_logits(extreme, torch.tensor([0])))
    assert torch.isfinite(out).all()
    assert (out[0, :, 0] > 100).all() and (out[0, :, 1] < -100).all()


@pytest.mark.parametrize(
    ("preset", "params"),
    [
        ("multinets", 121_002_350),
        ("tal", 17_286_710),
        ("multihead", 28_341_806),
        ("condenc", 17_292_098),
        ("conddec", 17_302_626),
    ],
)
def test_parameter_counts_at_the_official_size(preset, params):
    """The counts docs/baselines.md quotes (meta device: nothing is allocated)."""
    summary = summarize(get_preset(preset), preset)
    assert summary.params == params
    assert summary.flops > 1e12


def test_multinets_is_one_full_network_per_task():
    def count(config) -> int:
        with torch.device("meta"):
            return sum(p.numel() for p in build_model(config).parameters())

    assert count(get_preset("multinets")) == 7 * count(get_preset("multinets", num_tasks=1))


@pytest.mark.parametrize("name", TINY)
def test_summary_cli_prints_parameter_counts(name):
    from ccq.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["summary", "--preset", name, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert data["params"] == sum(data["params_by_part"].values()) > 0
    assert data["flops"] > 0
    text = runner.invoke(app, ["summary", "--preset", name]).output
    assert f"arch {name.removeprefix('tiny-')}" in text and "cnn_encoder" in text
    if name == "tiny-conddec":
        assert "task_conditioning" in text


@pytest.mark.parametrize("name", TINY)
def test_checkpoint_round_trip(tmp_path, name):
    import dataclasses

    from ccq.checkpoint import load_checkpoint, save_checkpoint
    from ccq.data.collection import load_collection
    from ccq.data.preprocessing import OFFICIAL_PREPROCESSING

    collection = load_collection("mots")
    torch.manual_seed(3)
    model = build_model(get_preset(name, num_tasks=collection.num_tasks, patch_size=PATCH)).eval()
    preprocessing = dataclasses.replace(OFFICIAL_PREPROCESSING, patch_size=PATCH)
    save_checkpoint(tmp_path / "ckpt", model, preprocessing=preprocessing, collection=collection)
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.model_config == model.config
    assert type(loaded.model) is type(model)
    x = _input(1)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x, 6), model(x, 6))


def test_config_refuses_what_the_baselines_cannot_build():
    with pytest.raises(CCQError, match="image_transformer: expected false for arch 'tal' .*, got true"):
        get_preset("tal", image_transformer=True)
    with pytest.raises(CCQError, match="same last two entries for arch 'multihead'"):
        get_preset("tiny-multihead", encoder_channels=(8, 8, 16, 16, 32))
    with pytest.raises(CCQError, match="arch: expected one of 'ccq', 'dodnet', 'multinets', .*, got 'unet'"):
        get_preset("tiny", arch="unet")
