"""Parameter counts per part and forward FLOPs of a model for one patch."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from ccq.models.config import ModelConfig

# Our top-level parameter prefixes, grouped as docs/architecture.md#the-network counts the official model's parts.
_PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cnn_encoder", ("encoder.",)),
    ("image_transformer", ("image_transformer.",)),
    ("positional_embedding", ("pos_embed",)),
    ("query_generation", ("query_generator.", "task_embed.")),
    ("querying", ("querying.",)),
    ("weighting", ("weighting.", "to_map.")),
    ("task_conditioning", ("decoder.conditioning.",)),
    ("attentive_skips", ("decoder.gates.",)),
    ("decoder_blocks", ("decoder.blocks.",)),
    ("heads", ("head.",)),
)


# Two baselines nest the same parts: Multi-Nets one network per task (`nets.3.encoder.` ...), Multi-Head one
# decoder and head per task (`decoders.3.`, `heads.3.`). They are counted under the part they would be unnested.
_NESTED = (
    (re.compile(r"^nets\.\d+\."), ""),
    (re.compile(r"^(decoder|head)s\.\d+\."), r"\1."),
)


def _part_name(pname: str) -> str:
    for pattern, replacement in _NESTED:
        pname = pattern.sub(replacement, pname, count=1)
    return pname


@dataclass(frozen=True)
class ModelSummary:
    preset: str
    patch_size: tuple[int, int, int]
    params: int
    params_by_part: dict[str, int]
    flops: int
    """Forward FLOPs for one patch at batch 1: 2 x multiply-accumulates of convolutions and matrix products."""

    def to_dict(self) -> dict:
        return {
            "preset": self.preset,
            "patch_size": list(self.patch_size),
            "params": self.params,
            "flops": self.flops,
            "params_by_part": self.params_by_part,
        }


def count_parameters_by_part(model: nn.Module) -> dict[str, int]:
    """Parameters per part; every parameter falls in exactly one part (checked)."""
    counts = {name: 0 for name, _ in _PARTS}
    for pname, p in model.named_parameters():
        part = next((name for name, prefixes in _PARTS if _part_name(pname).startswith(prefixes)), None)
        if part is None:
            raise RuntimeError(f"parameter {pname} belongs to no summary part")
        counts[part] += p.numel()
    return {k: v for k, v in counts.items() if v}


def count_forward_flops(model: nn.Module, patch_size: tuple[int, int, int], in_channels: int = 1) -> int:
    """Forward FLOPs for one patch, counted on the meta device (no memory, no compute)."""
    from torch.utils.flop_counter import FlopCounterMode

    meta_model = model.to("meta") if next(model.parameters()).device.type != "meta" else model
    x = torch.zeros(1, in_channels, *patch_size, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta_model.eval()(x, torch.zeros(1, dtype=torch.long, device="meta"))
    return int(counter.get_total_flops())


def summarize(config: ModelConfig, preset: str = "") -> ModelSummary:
    from ccq.models.factory import build_model

    with torch.device("meta"):
        model = build_model(config)
    by_part = count_parameters_by_part(model)
    return ModelSummary(
        preset=preset,
        patch_size=config.patch_size,
        params=sum(by_part.values()),
        params_by_part=by_part,
        flops=count_forward_flops(model, config.patch_size, config.in_channels),
    )
