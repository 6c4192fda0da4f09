"""A tiny checkpoint (untrained) with the MOTS tasks, for the inference tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ccq.data.preprocessing import PreprocessingConfig

PRE = PreprocessingConfig(spacing=(3.0, 2.5, 2.5), patch_size=(16, 32, 32))


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model():
    from ccq.models import build_model, get_preset

    torch.manual_seed(0)
    return build_model(get_preset("tiny", num_tasks=7)).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model, tmp_path_factory) -> Path:
    from ccq.checkpoint import save_checkpoint
    from ccq.data.collection import load_collection

    path = tmp_path_factory.mktemp("ckpt") / "model"
    mots = load_collection("mots")
    return save_checkpoint(path, tiny_model, preprocessing=PRE, collection=mots, source="test")
