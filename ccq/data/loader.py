"""Batches of training patches on CPU worker processes, in a fixed order that survives a restart.

Batch ``b`` holds samples ``b * batch_size ... b * batch_size + batch_size - 1`` of the rank's stream (see
:mod:`ccq.data.sampling`); with W workers, worker ``w`` builds batches ``w, w + W, w + 2W ...`` and the torch
DataLoader hands them out round-robin, i.e. in order 0, 1, 2, ... So the batches are identical for any number
of workers, and `PatchLoader.state_dict` is just the number of batches consumed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ccq.data.sampling import PatchSampler, Sample
from ccq.errors import CCQError

Batch = dict[str, Any]
"""``image`` [B, 1, D, H, W] float32, ``target`` [B, 2, D, H, W] float32 (-1 = ignored channel),
``task_id`` [B] int64, ``labeled`` [B, 2] bool, ``case`` list of "task/case" strings, ``index`` [B] int64."""


def collate(samples: list[Sample], first_index: int, half_image: bool = False) -> Batch:
    """Stack samples into a *compact* batch: target int8 (lossless: -1, 0, 1), image float16 if asked.

    Passing a batch between processes costs about as much per byte as building it (shared-memory page
    faults): at 64x192x192, float32 targets tripled the bytes and halved the 2-worker throughput.
    The samples' targets are int8 already.
    """
    image = np.stack([s.image for s in samples])
    return {
        "image": torch.from_numpy(image.astype(np.float16) if half_image else image),
        "target": torch.from_numpy(np.stack([s.target for s in samples])),
        "task_id": torch.tensor([s.task_id for s in samples], dtype=torch.int64),
        "labeled": torch.tensor([s.labeled for s in samples], dtype=torch.bool),
        "case": [s.case for s in samples],
        "index": torch.arange(first_index, first_index + len(samples), dtype=torch.int64),
    }


def expand(batch: Batch) -> Batch:
    """A compact batch with float32 ``image`` and ``target`` (do this on the device to move fewer bytes)."""
    return {**batch, "image": batch["image"].float(), "target": batch["target"].float()}


class PatchBatches(IterableDataset):
    """Batches ``start, start + 1, ...`` (``stop`` exclusive, None = endless), split across loader workers."""

    def __init__(
        self,
        sampler: PatchSampler,
        batch_size: int,
        start: int = 0,
        stop: int | None = None,
        half_image: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise CCQError(f"batch_size={batch_size}: expected at least 1")
        self.sampler, self.batch_size, self.start, self.stop = sampler, int(batch_size), int(start), stop
        self.half_image = half_image

    def batch(self, b: int) -> Batch:
        """Compact batch ``b`` (see `collate`)."""
        first = b * self.batch_size
        samples = [self.sampler.sample(first + j) for j in range(self.batch_size)]
        return collate(samples, first, self.half_image)

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        if info is not None:
            torch.set_num_threads(1)  # W workers on W cores: intra-op threads would only contend
        indices = itertools.count(self.start + worker, workers)
        for b in indices:
            if self.stop is not None and b >= self.stop:
                return
            yield self.batch(b)


class PatchLoader:
    """An endless, resumable iterator of training batches.

    ``position`` counts the batches handed out; save `state_dict` with a checkpoint and `load_state_dict`
    (or ``start=``) continues the identical stream. Prefetched-but-unused batches are simply drawn again.

    ``half_image``: carry the image as float16 between processes (rounding <= 0.16 HU inside the window;
    the same for any worker count). ``expand=False`` yields the compact batch (int8 target) so that the
    trainer converts on the device with `expand`.
    """

    def __init__(
        self,
        sampler: PatchSampler,
        batch_size: int,
        *,
        num_workers: int = 0,
        start: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int = 2,
        half_image: bool = False,
        expand: bool = True,
    ) -> None:
        if num_workers < 0:
            raise CCQError(f"num_workers={num_workers}: expected 0 or more")
        self.sampler, self.batch_size, self.num_workers = sampler, int(batch_size), int(num_workers)
        self.position = int(start)
        self.pin_memory, self.prefetch_factor = pin_memory, prefetch_factor
        self.half_image, self.expand = half_image, expand

    def __iter__(self) -> Iterator[Batch]:
        dataset = PatchBatches(self.sampler, self.batch_size, start=self.position, half_image=self.half_image)
        extra: dict[str, Any] = {}
        if self.num_workers > 0:
            # torch's default start method (fork on Linux): workers only run numpy/scipy and CPU torch ops.
            extra = {"prefetch_factor": self.prefetch_factor}
        # Its own generator: a DataLoader iterator otherwise draws its base seed from torch's global RNG, which
        # would shift the trainer's dropout stream between a run and its exact resume. (Our samples do not use
        # the workers' seeds: each is a function of (seed, rank, index).)
        loader = DataLoader(dataset, batch_size=None, num_workers=self.num_workers, pin_memory=self.pin_memory,
                            generator=torch.Generator(), **extra)  # fmt: skip
        batches = iter(loader)
        try:
            for batch in batches:
                self.position += 1
                yield expand(batch) if self.expand else batch
        finally:
            # Stop the worker processes now (also on an error, or when the consumer closes this generator),
            # not whenever the garbage collector gets to the iterator.
            shutdown = getattr(batches, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position, "seed": self.sampler.seed, "rank": self.sampler.rank,
                "batch_size": self.batch_size}  # fmt: skip

    def load_state_dict(self, state: dict[str, int]) -> None:
        mismatch = {
            k: (state[k], v)
            for k, v in (
                ("seed", self.sampler.seed),
                ("rank", self.sampler.rank),
                ("batch_size", self.batch_size),
            )
            if k in state and state[k] != v
        }
        if mismatch:
            # A different seed/rank/batch size would silently continue a different stream.
            raise CCQError(f"loader state {mismatch} (saved, current): expected the same stream to resume")
        self.position = int(state["position"])
