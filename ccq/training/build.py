"""The pieces a `Trainer` is built from that need more than one line: seeds, the model configuration, the patch
loader and the wrapped model the training forward calls."""

from __future__ import annotations

import random

import numpy as np
import torch

from ccq.data.cache import PreparedDataset
from ccq.data.loader import PatchLoader
from ccq.data.sampling import PatchSampler
from ccq.errors import CCQError
from ccq.models import get_preset
from ccq.models.config import ModelConfig
from ccq.training import accel
from ccq.training.config import TrainConfig
from ccq.training.distributed import DistContext
from ccq.training.replay import ReplaySampler, open_replay
from ccq.training.validation import ValidationSplit, without_cases


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def model_config(config: TrainConfig, num_tasks: int) -> ModelConfig:
    """The model preset with the config's overrides; a wrongly typed override is a one-line `CCQError`."""
    try:
        return get_preset(config.model, num_tasks=num_tasks, **dict(config.model_overrides))
    except (TypeError, ValueError) as err:  # e.g. "dim": "wide"
        overrides = dict(config.model_overrides)
        raise CCQError(f"train config: model_overrides {overrides}: invalid value ({err})") from None


def patch_loader(
    dataset: PreparedDataset,
    split: ValidationSplit,
    patch_size: tuple[int, int, int],
    config: TrainConfig,
    rank: int,
    device: torch.device,
) -> PatchLoader:
    """This rank's endless stream of training batches, drawn from the cases not held out for validation (and, with
    ``config.replay``, a share of them from the old tasks' prepared folder)."""
    sampler: PatchSampler | ReplaySampler = PatchSampler(
        without_cases(dataset, split.val), patch_size, config.sampling, split="train", seed=config.seed, rank=rank
    )
    if config.replay is not None:
        old = PatchSampler(open_replay(config.replay, dataset), patch_size, config.sampling, split="train",
                           seed=config.seed, rank=rank)  # fmt: skip
        sampler = ReplaySampler(sampler, old, config.replay_share)
    return PatchLoader(sampler, config.batch_size, num_workers=config.num_workers,
                       pin_memory=device.type == "cuda", expand=False)  # fmt: skip


def wrap_model(model: torch.nn.Module, dist: DistContext, device: torch.device, compile: bool) -> torch.nn.Module:
    """DDP (several processes), then torch.compile (if asked): what the training forward calls. The bare
    ``model`` stays the one that is saved."""
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            # Models that route a sample to its task's own modules leave the others without gradients.
            find_unused_parameters=bool(getattr(model, "task_sparse_parameters", False)),
        )
    return accel.maybe_compile(model, compile)
