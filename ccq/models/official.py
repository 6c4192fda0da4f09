"""Names of the official CCQ / DoDNet implementations' parameters, and conversion of their checkpoints to ours.

Official checkpoints are DDP state dicts (`module.` prefix); an older CCQ revision called the transformer
submodule `CCQ.` where the current code says `CQTr.`. The official evaluation loads with strict=False, which
silently leaves renamed weights random: this converter is strict and names every missing or unexpected key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from ccq.errors import CCQError
from ccq.models.config import ModelConfig

_DECODER_LEVELS = ("x8_resb", "x4_resb", "x2_resb", "x1_resb")
_CONV_CONTROLLERS = ("controller.weight", "contro_organ.weight", "contro_tumor.weight")

# (our name pattern, official replacement), applied in order to each of our parameter names.
_RULES: tuple[tuple[str, str], ...] = (
    (r"^encoder\.stem\.", "conv1."),
    (r"^encoder\.stages\.(\d+)\.", r"layer\1."),
    (r"^encoder\.fusion\.", "fusionConv."),
    (r"^head\.conditioning\.norm\.", "GAP.0."),
    (r"^head\.pre\.", "precls_conv."),
    (r"^head\.controller\.", "controller."),
    (r"^head\.branch_controllers\.0\.", "contro_organ."),
    (r"^head\.branch_controllers\.1\.", "contro_tumor."),
    (r"^task_embed\.0\.", "CQTr.task_embed_organ."),
    (r"^task_embed\.1\.", "CQTr.task_embed_tumor."),
    (r"^pos_embed$", "CQTr.pos_embed"),
    (r"^query_generator\.semantic$", "CQTr.query"),
    (r"^query_generator\.blocks\.(\d+)\.", r"CQTr.query_self_attn.blocks.blocks.\1."),
    (r"^image_transformer\.proj\.", "CQTr.encoder.img_proj."),
    (r"^image_transformer\.class_token$", "CQTr.encoder.cls_token"),
    (r"^image_transformer\.class_pos$", "CQTr.encoder.pos_embed"),
    (r"^image_transformer\.blocks\.(\d+)\.", r"CQTr.encoder.blocks.blocks.\1."),
    (r"^image_transformer\.norm\.", "CQTr.encoder.norm."),
    (r"^querying\.blocks\.(\d+)\.", r"CQTr.decoder.blocks.blocks.\1."),
    (r"^querying\.proj\.", "CQTr.decoder.proj_dec."),
    (r"^querying\.out_proj$", "CQTr.decoder.proj_query"),
    (r"^querying\.norm\.", "CQTr.decoder.decoder_norm."),
    (r"^weighting\.enc_proj\.", "CQTr.make_weights.proj1."),
    (r"^weighting\.dec_proj\.", "CQTr.make_weights.proj2."),
    (r"^weighting\.fuse\.", "CQTr.make_weights.proj3."),
    (r"^weighting\.confidence\.", "CQTr.make_weights.proj4."),
    (r"^to_map\.proj\.", "CQTr.make_weights.proj5."),
    (r"^to_map\.conv\.", "CQTr.make_weights.conv."),
    (r"\.attn\.norm_([qkv])\.", r".attn.norm\1."),
    (r"\.norm1\.", ".gn1."),
    (r"\.norm2\.", ".gn2."),
    (r"\.shortcut\.", ".downsample."),
)


def official_name(ours: str) -> str:
    """The official parameter name of one of ours (without the DDP `module.` prefix)."""
    m = re.match(r"^decoder\.gates\.(\d+)\.(.*)$", ours)
    if m:  # gates are numbered deepest first; official names them by skip level
        ours = f"skip{3 - int(m.group(1))}_attn.{m.group(2)}"
    m = re.match(r"^decoder\.blocks\.(\d+)\.(.*)$", ours)
    if m:
        ours = f"{_DECODER_LEVELS[int(m.group(1))]}.0.{m.group(2)}"
    for pattern, replacement in _RULES:
        ours = re.sub(pattern, replacement, ours)
    return ours


def _our_shapes(config: ModelConfig) -> dict[str, torch.Size]:
    from ccq.models.factory import build_model

    with torch.device("meta"):
        model = build_model(config)
    return {k: v.shape for k, v in model.state_dict().items()}


def _check_official_layout(config: ModelConfig) -> None:
    levels = len(config.encoder_channels)
    if levels != 5 or len(_DECODER_LEVELS) != levels - 1:
        raise CCQError(f"model config has {levels} encoder stages; official checkpoints have 5")
    if config.arch == "dodnet" and config.image_transformer:
        raise CCQError("no official checkpoint exists for DoDNet with an image transformer (a Table 2 variant)")


def normalize_official_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip the DDP `module.` prefix and rename the old `CCQ.` submodule to `CQTr.`."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        name = key[len("module.") :] if key.startswith("module.") else key
        if name.startswith("CCQ."):
            name = "CQTr." + name[len("CCQ.") :]
        out[name] = value
    return out


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """An official CCQ (or DoDNet) state dict -> our state dict for `build_model(config)`.

    Strict: raises CCQError naming every missing and every unexpected key, and any shape mismatch.
    """
    _check_official_layout(config)
    given = normalize_official_keys(state_dict)
    shapes = _our_shapes(config)
    wanted = {official_name(k): k for k in shapes}
    missing = sorted(set(wanted) - set(given))
    unexpected = sorted(set(given) - set(wanted))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        raise CCQError(f"official checkpoint does not match preset arch={config.arch!r}: " + "; ".join(parts))
    out: dict[str, torch.Tensor] = {}
    for off, ours in wanted.items():
        tensor = given[off]
        if not isinstance(tensor, torch.Tensor):
            raise CCQError(f"official checkpoint key {off!r} holds a {type(tensor).__name__}, expected a tensor")
        # Only the controllers differ in shape (official 1x1x1 convs, our Linear layers): anything else must
        # match exactly, or a same-size tensor of another layout would load scrambled.
        reshapable = off in _CONV_CONTROLLERS and tensor.numel() == shapes[ours].numel()
        if tuple(tensor.shape) != tuple(shapes[ours]) and not reshapable:
            hint = ""
            if off in (
                "CQTr.pos_embed",
                "CQTr.make_weights.proj5.1.weight",
                "CQTr.make_weights.proj5.1.bias",
            ):
                hint = f" (it depends on the patch size; this model was built for patch {config.patch_size})"
            raise CCQError(
                f"official checkpoint key {off!r} has shape {tuple(tensor.shape)}, expected {tuple(shapes[ours])}{hint}"
            )
        out[ours] = tensor.detach().reshape(shapes[ours]).clone()
    return out


def to_official_state_dict(state_dict: Mapping[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Our state dict -> official names and shapes (the inverse of `convert_official_state_dict`; for tests and
    for running the official code on our weights)."""
    _check_official_layout(config)
    out = {}
    for key, value in state_dict.items():
        name = official_name(key)
        if name in _CONV_CONTROLLERS:
            value = value.reshape(*value.shape, 1, 1, 1)
        out[name] = value
    return out
