"""A checkpoint's weights: the tensors a save writes, and the checks before they are loaded into the model they
claim to fit.

Every missing, unexpected or wrongly shaped tensor is named in one line (load_state_dict's own error is many
lines), and so is any tensor whose values cannot be weights: integers or booleans where the model has floating
point parameters, or NaN/inf values (a model with them writes an all-empty segmentation without a word).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccq.errors import CCQError

if TYPE_CHECKING:
    import torch

META_NAME = "checkpoint.json"
_MAX_KEYS_IN_MESSAGE = 20


def check_state_dict(weights: Path, tensors: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> None:
    """Name every missing, unexpected or wrongly shaped tensor before load_state_dict's multi-line error."""
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    shapes = [
        f"{k} {list(tensors[k].shape)} (expected {list(v.shape)})"
        for k, v in expected.items()
        if k in tensors and tuple(tensors[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing key(s) {listing(missing)}")
    if unexpected:
        problems.append(f"unexpected key(s) {listing(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch for {listing(shapes)}")
    if problems:
        raise CCQError(f"{weights}: {'; '.join(problems)}; the weights do not match the model described in {META_NAME}")


def check_values(weights: Path, tensors: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> None:
    """Floating point tensors where the model has floating point ones (integer buffers stay integers), and only
    finite values; a one-line CCQError naming the tensors otherwise."""
    import torch

    kinds = []
    for key, want in expected.items():
        got = tensors[key]
        if want.is_floating_point() != got.is_floating_point() or want.is_complex() != got.is_complex():
            kinds.append(
                f"{key} {str(got.dtype).removeprefix('torch.')} (expected {str(want.dtype).removeprefix('torch.')})"
            )
    if kinds:
        expected_kind = "expected floating point weights as the model has"
        raise CCQError(f"{weights}: tensor type(s) {listing(kinds, 3)}; {expected_kind}")
    bad = [
        f"{key} ({int((~torch.isfinite(t)).sum())} of {t.numel()})"
        for key, t in tensors.items()
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]
    if bad:
        raise CCQError(
            f"{weights}: NaN/inf values in {listing(bad, 3)}; expected finite weights (a corrupt or diverged "
            "checkpoint: use another, e.g. the run's best/ or an earlier one)"
        )


def listing(items: list[str], limit: int = _MAX_KEYS_IN_MESSAGE) -> str:
    shown = ", ".join(items[:limit])
    more = len(items) - limit
    return f"[{shown}{f', ... and {more} more' if more > 0 else ''}]"


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model inside DistributedDataParallel / DataParallel / torch.compile wrappers.

    Their state-dict keys carry `module.` / `_orig_mod.` prefixes that the rebuilt model would not have.
    """
    import torch

    while True:
        if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            model = model.module
            continue
        inner = getattr(model, "_orig_mod", None)
        if isinstance(inner, torch.nn.Module):
            model = inner
            continue
        return model


def tensors_for_saving(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors with no two sharing memory (safetensors refuses shared or strided storage)."""
    import torch

    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"save_checkpoint: state-dict entry {key!r} is a {type(value).__name__}, not a tensor")
        tensor = value.detach().to("cpu").contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in seen:
            # Tied weights or views of one buffer: each gets its own copy; loading restores the tie because
            # load_state_dict copies into the module's (shared) parameters.
            tensor = tensor.clone()
            ptr = tensor.untyped_storage().data_ptr()
        if tensor.numel():
            seen.add(ptr)
        out[key] = tensor
    return out
