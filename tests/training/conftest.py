"""A tiny prepared phantom collection shared by the training tests (3 tasks x 4 cases, 16x32x32 voxels), and a
model trained on its first two tasks (the start of `--init-from` runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccq.data.preprocessing import PreprocessingConfig

# The smallest phantom (24x48x48 at 2.0x1.5x1.5 mm) prepared at 3.0x2.25x2.25 mm: about the tiny patch size.
TINY_PRE = PreprocessingConfig(spacing=(3.0, 2.25, 2.25), patch_size=(16, 32, 32))


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory) -> Path:
    from ccq.data.phantom import generate_collection
    from ccq.data.prepare_run import prepare_collection

    root = tmp_path_factory.mktemp("tiny-collection")
    collection = generate_collection(
        root / "raw", cases_per_task=4, test_cases_per_task=1, seed=0, tasks=("liver", "colon", "spleen"),
        shape=(24, 48, 48),
    )  # fmt: skip
    summary = prepare_collection(collection, None, root / "prepared", TINY_PRE)
    assert summary.ok, summary.report()
    return root / "prepared"


@pytest.fixture(scope="session")
def old_prepared(tiny_prepared: Path, tmp_path_factory) -> Path:
    """The first two tasks (liver, colon) of the tiny collection, prepared on their own."""
    from ccq.data.collection import load_collection
    from ccq.data.prepare_run import prepare_collection

    collection = load_collection(tiny_prepared.parent / "raw" / "collection.yaml")
    out = tmp_path_factory.mktemp("old") / "prepared"
    assert prepare_collection(collection.with_tasks(collection.tasks[:2]), None, out, TINY_PRE).ok
    return out


@pytest.fixture(scope="session")
def old_run(old_prepared: Path, tmp_path_factory) -> Path:
    """A 2-task tiny model trained for two steps (a run folder with best/ and last/)."""
    from ccq.training.config import get_train_preset
    from ccq.training.trainer import Trainer

    config = get_train_preset("demo").replace(model="tiny", model_overrides={}, iterations=2, val_every=0,
                                              save_every=2, tensorboard=False, val_batch_size=4)  # fmt: skip
    import torch

    run = tmp_path_factory.mktemp("old-run") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        Trainer(config, old_prepared, run, progress=False, echo=lambda _: None).fit()
    finally:
        torch.set_num_threads(threads)
    return run


@pytest.fixture
def tiny_config():
    from ccq.training.config import get_train_preset

    return get_train_preset("demo").replace(
        model="tiny",
        model_overrides={},
        iterations=4,
        val_every=2,
        save_every=2,
        log_every=1,
        val_batch_size=4,
    )


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test here runs on one torch thread (`tests/conftest.py`)."""
