"""A tiny checkpoint (untrained) with the MOTS tasks, for the inference tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccq.data.preprocessing import PreprocessingConfig
from tests.tiny import tiny_mots_model

PRE = PreprocessingConfig(spacing=(3.0, 2.5, 2.5), patch_size=(16, 32, 32))


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test here runs on one torch thread (`tests/conftest.py`)."""


@pytest.fixture(scope="session")
def tiny_model():
    return tiny_mots_model().eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model, tmp_path_factory) -> Path:
    from ccq.checkpoint import save_checkpoint
    from ccq.data.collection import load_collection

    path = tmp_path_factory.mktemp("ckpt") / "model"
    mots = load_collection("mots")
    return save_checkpoint(path, tiny_model, preprocessing=PRE, collection=mots, source="test")
