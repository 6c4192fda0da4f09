"""Replay: while a grown model learns its new tasks, a share of every batch's samples comes from the old tasks'
prepared data (``ccq train --init-from CKPT --replay OLD_PREPARED --replay-share 0.3``), so that it does not forget
them.

Sample ``i`` of a rank's stream comes from the replay folder with probability ``share``, decided by a generator
seeded with ``(seed, rank, i)`` apart from the sample's own: the stream stays a pure function of the seed, the rank
and the position (workers, resume; see `ccq.data.sampling`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ccq.data.cache import PreparedDataset
from ccq.data.sampling import PatchSampler, Sample
from ccq.errors import CCQError
from ccq.training.init_from import check_identity, check_working_grid

_CHOICE_STREAM = 1
"""Appended to (seed, rank, i) for the replay-or-not draw, so that it is independent of the sample's own draws."""


class ReplaySampler:
    """Draws from ``main`` and, with probability ``share``, from ``replay`` instead (see the module docstring)."""

    def __init__(self, main: PatchSampler, replay: PatchSampler, share: float) -> None:
        if not 0.0 < share < 1.0:
            raise CCQError(f"replay_share={share}: expected a fraction in (0, 1)")
        if (replay.seed, replay.rank) != (main.seed, main.rank):
            raise CCQError("replay: the replay sampler must draw the same (seed, rank) stream as the main one")
        self.main, self.replay, self.share = main, replay, float(share)
        self.seed, self.rank = main.seed, main.rank

    def from_replay(self, index: int) -> bool:
        """Whether sample ``index`` is drawn from the replay folder."""
        seq = np.random.SeedSequence([self.seed, self.rank, int(index), _CHOICE_STREAM])
        return bool(np.random.default_rng(seq).random() < self.share)

    def sample(self, index: int) -> Sample:
        return (self.replay if self.from_replay(index) else self.main).sample(index)


def open_replay(path: str | Path, data: PreparedDataset) -> PreparedDataset:
    """The prepared folder at ``path``, checked to fit the run's data: each of its tasks is a task of the run's
    collection with the same id and label convention, and it was prepared like the data."""
    replay = PreparedDataset(path)
    where = f"--replay {replay.root}"
    run_tasks = {t.name: t for t in data.collection.tasks}
    for task in replay.collection.tasks:
        kept = run_tasks.get(task.name)
        if kept is None:
            raise CCQError(
                f"{where}: task {task.name!r} is not in the collection of {data.root} "
                f"({', '.join(run_tasks)}); replay only tasks the run trains"
            )
        check_identity(task, kept, where, f"the collection of {data.root}", "expected the same")
    check_working_grid(data.preprocessing, replay.preprocessing, f"the data {data.root}", where,
                       replay.collection.task_names)  # fmt: skip
    if not replay.cases(split="train"):
        raise CCQError(f"{where}: no training cases in its manifest; expected a prepared folder of the old tasks")
    return replay
