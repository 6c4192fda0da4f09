"""Shared fixtures: a tiny model configuration (fast on 2 CPU cores) with the built-in MOTS collection."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ccq.data.preprocessing import OFFICIAL_PREPROCESSING


@pytest.fixture(scope="session")
def collection():
    from ccq.data.collection import load_collection

    return load_collection("mots")


@pytest.fixture(scope="session")
def tiny_config(collection):
    from ccq.models import get_preset

    return get_preset("tiny", num_tasks=collection.num_tasks)


@pytest.fixture(scope="session")
def preprocessing(tiny_config):
    return dataclasses.replace(OFFICIAL_PREPROCESSING, patch_size=tiny_config.patch_size)


@pytest.fixture
def make_model(tiny_config):
    """A tiny model whose weights depend on `seed`, so that two checkpoints can be told apart."""
    from ccq.models import build_model

    def make(seed: int = 0) -> torch.nn.Module:
        torch.manual_seed(seed)
        return build_model(tiny_config)

    return make
