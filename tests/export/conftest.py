"""A tiny checkpoint (untrained, MOTS tasks) for the export tests; one torch thread (tracing is many small ops)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ccq.data.preprocessing import PreprocessingConfig
from tests.tiny import save_tiny_checkpoint

PRE = PreprocessingConfig(spacing=(3.0, 2.5, 2.5), hu_min=-200.0, hu_max=300.0, hu_scale=250.0, patch_size=(16, 32, 32))


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test here runs on one torch thread (`tests/conftest.py`)."""


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("export-ckpt") / "model", PRE, source="test")


@pytest.fixture(scope="session")
def reference_model(tiny_checkpoint):
    from ccq.checkpoint import load_checkpoint

    return load_checkpoint(tiny_checkpoint).model


@pytest.fixture(scope="session")
def probe() -> torch.Tensor:
    """An input other than the exporter's own check window (which uses seed 0)."""
    return torch.randn((1, 1, *PRE.patch_size), generator=torch.Generator().manual_seed(123))
