"""Fixtures shared by several test packages."""

from __future__ import annotations

import pytest


@pytest.fixture
def one_torch_thread():
    """Tiny models run fastest on one thread, and far faster than on two when other processes share the cores
    (OpenMP threads then wait on each other). Used (autouse) by the packages and modules that run models."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
