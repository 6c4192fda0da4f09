"""The tiny untrained model with the seven MOTS tasks, and its checkpoint, as several test packages use them."""

from __future__ import annotations

from pathlib import Path

import torch


def tiny_mots_model() -> torch.nn.Module:
    """The `tiny` preset with 7 tasks, seeded (the same weights in every test package)."""
    from ccq.models import build_model, get_preset

    torch.manual_seed(0)
    return build_model(get_preset("tiny", num_tasks=7))


def save_tiny_checkpoint(path: Path, preprocessing, **kwargs) -> Path:
    """`tiny_mots_model` saved at `path` with the MOTS collection and `preprocessing`."""
    from ccq.checkpoint import save_checkpoint
    from ccq.data.collection import load_collection

    model = tiny_mots_model()
    return save_checkpoint(path, model, preprocessing=preprocessing, collection=load_collection("mots"), **kwargs)
