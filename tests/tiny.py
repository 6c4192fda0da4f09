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


def write_phantom_world(root: Path) -> Path:
    """Under `root`: raw/, a phantom collection (liver, colon, spleen; 2 cases each, 24x48x48), and model/, an
    untrained tiny checkpoint for it (3 x 2.25 x 2.25 mm, patch 16x32x32). Returns `root`."""
    from ccq.checkpoint import save_checkpoint
    from ccq.data.phantom import generate_collection
    from ccq.data.preprocessing import PreprocessingConfig
    from ccq.models import build_model, get_preset

    collection = generate_collection(root / "raw", cases_per_task=2, test_cases_per_task=1, seed=0,
                                     tasks=("liver", "colon", "spleen"), shape=(24, 48, 48))  # fmt: skip
    model = build_model(get_preset("tiny", num_tasks=collection.num_tasks))
    save_checkpoint(root / "model", model, collection=collection,
                    preprocessing=PreprocessingConfig(spacing=(3.0, 2.25, 2.25), patch_size=(16, 32, 32)))  # fmt: skip
    return root
