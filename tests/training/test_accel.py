"""Speed/memory switches: precision, channels-last, activation checkpointing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ccq.errors import CCQError
from ccq.models import build_model, get_preset
from ccq.training import accel
from ccq.training.run_log import read_log
from ccq.training.trainer import Trainer


def test_precision_on_the_cpu() -> None:
    cpu = torch.device("cpu")
    assert accel.resolve_precision("auto", cpu).name == "fp32"
    assert accel.resolve_precision("fp32", cpu).dtype is None
    for name in ("bf16", "fp16"):
        with pytest.raises(CCQError, match="needs a CUDA device"):
            accel.resolve_precision(name, cpu)
    assert accel.make_scaler(accel.resolve_precision("auto", cpu), cpu) is None


def _grads(model: torch.nn.Module, x: torch.Tensor, task: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    model(x, task).square().mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_activation_checkpointing_keeps_the_gradients() -> None:
    torch.manual_seed(0)
    config = get_preset("tiny", num_tasks=3, dropout=0.0)
    plain = build_model(config)
    wrapped = build_model(config)
    wrapped.load_state_dict(plain.state_dict(), strict=True)
    count = accel.enable_activation_checkpointing(wrapped)
    assert count == len(wrapped.encoder.stages) + len(wrapped.decoder.blocks) > 0
    assert list(wrapped.state_dict()) == list(plain.state_dict())  # checkpoints stay compatible
    x, task = torch.randn(2, 1, 16, 32, 32), torch.tensor([0, 2])
    a, b = _grads(plain, x, task), _grads(wrapped, x, task)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)


def test_activation_checkpointing_needs_stages() -> None:
    with pytest.raises(CCQError, match="no encoder.stages"):
        accel.enable_activation_checkpointing(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("recompute", [True, False])
def test_channels_last_and_checkpointing_train(tiny_prepared: Path, tiny_config, tmp_path: Path, recompute) -> None:
    """Activation checkpointing recomputes in backward, outside the step's `recompute_enabled` block: with
    GroupNorm + activation stored (recompute_norm_act false, the demo's) the recomputation must store them too."""
    config = tiny_config.replace(channels_last=True, activation_checkpointing=True, iterations=2, val_every=0,
                                 recompute_norm_act=recompute)  # fmt: skip
    result = Trainer(config, tiny_prepared, tmp_path / "run", progress=False, echo=lambda _: None).fit()
    losses = [r["loss"] for r in read_log(tmp_path / "run") if r["kind"] == "train"]
    assert result.state.iteration == 2 and len(losses) == 2 and all(v == v for v in losses)


@pytest.mark.parametrize("preset", ["tiny-multinets", "tiny-multihead"])
def test_activation_checkpointing_covers_per_task_networks(preset: str) -> None:
    model = build_model(get_preset(preset, num_tasks=3))
    encoders = [m for m in model.modules() if type(m).__name__ == "CNNEncoder"]
    decoders = [m for m in model.modules() if type(m).__name__ == "Decoder"]
    assert len(decoders) == 3  # one per task
    expected = sum(len(e.stages) for e in encoders) + sum(len(d.blocks) for d in decoders)
    assert accel.enable_activation_checkpointing(model) == expected
