"""Choosing the torch device: one rule for training and inference."""

from __future__ import annotations

import torch

from ccq.errors import CCQError


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The torch device: for "auto"/None CUDA if available, else the CPU; "cuda" without a GPU is an error."""
    name = "auto" if device is None else str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CCQError(f"device {name!r}: no CUDA GPU is available here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise CCQError(f"device {name!r}: expected 'cpu', 'cuda', 'cuda:N' or 'auto'") from None
