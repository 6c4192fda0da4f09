"""Growing a model to more tasks: the old tasks' logits are bit-identical before any training step, for CCQ and
every baseline that can grow; the others, and any shape change but the task count, are one-line errors."""

from __future__ import annotations

import pytest
import torch

from ccq.errors import CCQError
from ccq.models import build_model, get_preset
from ccq.models.growth import LOADED, NEW, RESIZED, grown_state_dict, growth_rules, summarize_changes

OLD, ADDED = 3, 2
GROWABLE = ["tiny", "tiny-dodnet", "tiny-multihead", "tiny-multinets", "tiny-conddec"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pair(name: str, added: int = ADDED) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A trained-looking old model (every weight perturbed, so that no entry is a special value) and a freshly
    built grown one (another seed)."""
    patch = get_preset(name).patch_size if name == "tiny" else (16, 16, 16)
    torch.manual_seed(0)
    old = build_model(get_preset(name, num_tasks=OLD, patch_size=patch))
    with torch.no_grad():
        for p in old.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    torch.manual_seed(1)
    new = build_model(get_preset(name, num_tasks=OLD + added, patch_size=patch))
    return old.eval(), new.eval()


def _input(model: torch.nn.Module, batch: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.rand(batch, 1, *model.config.patch_size, generator=g) * 2 - 1


@pytest.mark.parametrize("name", GROWABLE)
def test_old_tasks_logits_are_identical_after_growth(name: str) -> None:
    old, new = _pair(name)
    names = [f"new{i}" for i in range(ADDED)]
    state, changes = grown_state_dict(old.state_dict(), new, OLD, names)
    new.load_state_dict(state, strict=True)
    x = _input(old)
    with torch.no_grad():
        for t in range(OLD):
            assert torch.equal(old(x, t), new(x, t)), f"{name}: task {t} changed"
        mixed = torch.tensor([2, 0])  # a batch of two tasks
        assert torch.equal(old(x, mixed), new(x, mixed))
        assert torch.equal(old.forward_all_tasks(x, [0, 1, 2]), new.forward_all_tasks(x, [0, 1, 2]))
        pairs = [(t, c) for t in range(OLD) for c in (0, 1)]  # the prediction path decodes (task, channel) pairs
        assert torch.equal(old.forward_channels(x, pairs), new.forward_channels(x, pairs))
        grown = new.forward_all_tasks(x, list(range(OLD + ADDED)))
    assert grown.shape[1] == OLD + ADDED and torch.isfinite(grown).all()
    statuses = {c.status for c in changes}
    assert LOADED in statuses and statuses & {RESIZED, NEW}
    assert len(changes) == len(new.state_dict())  # every tensor accounted for


def test_ccq_new_columns_are_the_old_tasks_mean_and_the_report_names_them() -> None:
    old, new = _pair("tiny", added=1)
    state, changes = grown_state_dict(old.state_dict(), new, OLD, ["spleen"])
    for key in ("task_embed.0.weight", "head.controller.weight"):
        before = old.state_dict()[key]
        assert torch.equal(state[key][:, : before.shape[1]], before)
        assert torch.allclose(state[key][:, -1], before[:, -OLD:].mean(dim=1))
    resized = {c.name: c for c in changes if c.status == RESIZED}
    assert set(resized) == {"task_embed.0.weight", "task_embed.1.weight", "head.controller.weight",
                            "head.branch_controllers.0.weight", "head.branch_controllers.1.weight"}  # fmt: skip
    assert "'spleen'" in resized["task_embed.0.weight"].reason
    lines = summarize_changes(changes)
    assert lines[0].endswith("tensors loaded unchanged") and any("task_embed.1.weight" in line for line in lines)


def test_a_per_task_network_is_new_and_reported_once() -> None:
    old, new = _pair("tiny-multinets", added=1)
    _, changes = grown_state_dict(old.state_dict(), new, OLD, ["spleen"])
    fresh = [c for c in changes if c.status == NEW]
    assert fresh and all(c.name.startswith(f"nets.{OLD}.") for c in fresh)
    new_lines = [line for line in summarize_changes(changes) if line.startswith("new:")]
    assert len(new_lines) == 1 and "the network of new task 'spleen'" in new_lines[0]


def test_same_tasks_load_every_tensor_unchanged() -> None:
    old, new = _pair("tiny", added=0)
    state, changes = grown_state_dict(old.state_dict(), new, OLD, [])
    assert all(c.status == LOADED for c in changes)
    assert all(torch.equal(state[k], v) for k, v in old.state_dict().items())


@pytest.mark.parametrize("name", ["tiny-tal", "tiny-condenc"])
def test_baselines_that_cannot_grow_say_why(name: str) -> None:
    old, new = _pair(name, added=1)
    assert growth_rules(new).cannot_grow
    with pytest.raises(CCQError, match="cannot take new tasks \\(spleen\\)"):
        grown_state_dict(old.state_dict(), new, OLD, ["spleen"], where="ckpt")
    # Without new tasks they load as they are.
    same = build_model(old.config)
    state, _ = grown_state_dict(old.state_dict(), same, OLD, [])
    same.load_state_dict(state, strict=True)


def test_a_shape_change_other_than_the_task_count_names_the_tensor_and_both_shapes() -> None:
    old, _ = _pair("tiny", added=0)
    wider = build_model(old.config.replace(num_tasks=OLD + 1, dim=old.config.dim * 2))
    with pytest.raises(CCQError) as err:
        grown_state_dict(old.state_dict(), wider, OLD, ["x"], where="--init-from ckpt", hint="dim 16 -> 32")
    text = str(err.value)
    assert text.startswith("--init-from ckpt: tensor ") and "in the checkpoint but" in text and "\n" not in text
    assert text.endswith("(dim 16 -> 32)")
    # A task-sized tensor whose other axis changed is refused as well.
    state = dict(old.state_dict())
    p, k = state["head.controller.weight"].shape
    state["head.controller.weight"] = torch.zeros(p + 1, k)
    grown = build_model(old.config.replace(num_tasks=OLD + 1))
    with pytest.raises(CCQError, match=f"head.controller.weight has shape \\[{p + 1}, {k}\\] in the checkpoint "
                       f"but \\[{p}, {k + 1}\\]"):  # fmt: skip
        grown_state_dict(state, grown, OLD, ["x"])


def test_missing_and_unexpected_tensors_are_named() -> None:
    old, new = _pair("tiny", added=0)
    state = dict(old.state_dict())
    del state["pos_embed"]
    with pytest.raises(CCQError, match="has no tensor pos_embed"):
        grown_state_dict(state, new, OLD, [])
    state = {**old.state_dict(), "extra.weight": torch.zeros(2)}
    with pytest.raises(CCQError, match="tensor extra.weight \\[2\\] has no place"):
        grown_state_dict(state, new, OLD, [])
