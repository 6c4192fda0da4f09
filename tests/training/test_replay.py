"""Replay: a seeded share of the samples comes from the old tasks' prepared folder, the same for any worker count
and across a resume (a pure function of seed, rank and position)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccq.data.cache import PreparedDataset
from ccq.data.loader import PatchLoader
from ccq.data.sampling import PatchSampler, SamplingConfig
from ccq.errors import CCQError
from ccq.training.replay import ReplaySampler

PATCH = (16, 32, 32)


def _samplers(prepared: Path, seed: int = 0) -> tuple[PatchSampler, PatchSampler]:
    """'New data' = the spleen cases, 'replay' = the liver and colon cases of the same folder."""
    dataset = PreparedDataset(prepared)
    config = SamplingConfig()
    new = PatchSampler(dataset, PATCH, config, tasks=["spleen"], seed=seed)
    old = PatchSampler(dataset, PATCH, config, tasks=["liver", "colon"], seed=seed)
    return new, old


def test_the_share_of_replayed_samples_and_their_determinism(tiny_prepared: Path) -> None:
    new, old = _samplers(tiny_prepared)
    sampler = ReplaySampler(new, old, 0.3)
    chosen = [sampler.from_replay(i) for i in range(2000)]
    assert 0.27 < sum(chosen) / len(chosen) < 0.33
    assert chosen == [ReplaySampler(*_samplers(tiny_prepared), 0.3).from_replay(i) for i in range(2000)]
    other_seed = ReplaySampler(*_samplers(tiny_prepared, seed=1), 0.3)
    assert chosen != [other_seed.from_replay(i) for i in range(2000)]
    for i in range(12):
        task = sampler.sample(i).case.split("/")[0]
        assert (task in ("liver", "colon")) == chosen[i] and (task == "spleen") != chosen[i]
        assert sampler.sample(i).case == (old if chosen[i] else new).sample(i).case  # the source's own sample i


def test_replayed_batches_are_the_same_for_any_worker_count_and_after_a_restart(tiny_prepared: Path) -> None:
    def cases(workers: int, start: int = 0, count: int = 4) -> list[str]:
        loader = PatchLoader(ReplaySampler(*_samplers(tiny_prepared), 0.5), 2, num_workers=workers, start=start)
        batches = iter(loader)
        try:
            return [c for _ in range(count) for c in next(batches)["case"]]
        finally:
            batches.close()

    serial = cases(0)
    assert serial == cases(2)
    assert serial[4:] == cases(0, start=2, count=2)
    tasks = {c.split("/")[0] for c in serial}
    assert "spleen" in tasks and tasks & {"liver", "colon"}  # both sources


def test_the_share_must_be_a_fraction(tiny_prepared: Path) -> None:
    new, old = _samplers(tiny_prepared)
    for share in (0.0, 1.0, 1.5):
        with pytest.raises(CCQError, match=f"replay_share={share}: expected a fraction in \\(0, 1\\)"):
            ReplaySampler(new, old, share)
    with pytest.raises(CCQError, match="same \\(seed, rank\\) stream"):
        ReplaySampler(new, _samplers(tiny_prepared, seed=5)[1], 0.3)
