"""Speed and memory switches of a training run: mixed precision, channels-last 3D, torch.compile, and
activation checkpointing. Each is a plain function of the config so the trainer stays one readable loop."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ccq.errors import CCQError
from ccq.models import fused


@dataclass(frozen=True)
class Precision:
    name: str
    """"fp32", "bf16" or "fp16": what the run actually uses (config "auto" resolved)."""
    dtype: torch.dtype | None
    """The autocast dtype; None = no autocast."""

    @property
    def needs_scaler(self) -> bool:
        return self.name == "fp16"


def resolve_precision(requested: str, device: torch.device) -> Precision:
    """ "auto": bf16 autocast on a CUDA device that supports it, else fp32. Mixed precision is CUDA-only:
    on the CPU, autocast turns convolutions into slow bf16 kernels, so asking for it there is an error."""
    if requested == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return Precision("bf16", torch.bfloat16)
        return Precision("fp32", None)
    if requested == "fp32":
        return Precision("fp32", None)
    if device.type != "cuda":
        raise CCQError(f"precision={requested!r}: mixed precision needs a CUDA device (this run uses {device}); "
                       "use precision fp32 or auto")  # fmt: skip
    if requested == "bf16" and not torch.cuda.is_bf16_supported():
        raise CCQError(f"precision='bf16': {torch.cuda.get_device_name(device)} does not support bfloat16; use fp16")
    return Precision(requested, torch.bfloat16 if requested == "bf16" else torch.float16)


def autocast(precision: Precision, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The forward pass's autocast context (a no-op in fp32). The loss casts logits to float32 itself."""
    if precision.dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=precision.dtype)


def make_scaler(precision: Precision, device: torch.device) -> torch.amp.GradScaler | None:
    """A loss scaler for fp16 (bf16 has float32's range and needs none)."""
    return torch.amp.GradScaler(device.type) if precision.needs_scaler else None


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last_3d if channels_last else torch.contiguous_format


def checkpointed_modules(model: nn.Module) -> list[nn.Module]:
    """The modules whose activations are recomputed: each stage of every CNN encoder and each block of every
    decoder in the model (the bulk of a U-Net's stored activations; the transformer's 72 tokens are not worth
    it). Found by type, so baselines with one encoder or decoder per task are covered too."""
    from ccq.models.decoder import Decoder
    from ccq.models.encoder import CNNEncoder

    found: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, CNNEncoder):
            found.extend(module.stages)
        elif isinstance(module, Decoder):
            found.extend(module.blocks)
    return found


def enable_activation_checkpointing(model: nn.Module) -> int:
    """Wrap the forward of every `checkpointed_modules` entry in `torch.utils.checkpoint` (non-reentrant, so
    it composes with autocast and DDP); parameter names do not change, so checkpoints stay compatible.
    Returns how many modules were wrapped; a model without encoder stages or decoder blocks is an error."""
    modules = checkpointed_modules(model)
    if not modules:
        raise CCQError(
            f"activation_checkpointing: {type(model).__name__} has no encoder.stages / decoder.blocks to recompute"
        )
    for module in modules:
        module.forward = _checkpointing(module.forward)  # type: ignore[method-assign]
    return len(modules)


def _checkpointing(forward: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(forward)
    def run(*args: Any, **kwargs: Any) -> Any:
        if torch.is_grad_enabled():
            # The recomputation runs in backward, outside the step's `recompute_enabled` block: it must store
            # what the forward stored (GroupNorm + activation or not), or torch finds a different tensor count.
            recompute = fused.recompute_is_enabled()

            def contexts() -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
                return contextlib.nullcontext(), fused.recompute_enabled(recompute)

            return checkpoint(forward, *args, use_reentrant=False, context_fn=contexts, **kwargs)
        return forward(*args, **kwargs)  # evaluation: nothing to store anyway

    return run


def maybe_compile(model: nn.Module, enabled: bool) -> nn.Module:
    """`torch.compile(model)` when asked; the original module stays the one that is saved."""
    return torch.compile(model) if enabled else model
