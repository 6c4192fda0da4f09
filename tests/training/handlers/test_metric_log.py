"""The metric log: TensorBoard scalars (log.jsonl and curves.png are checked through whole runs in test_trainer)."""

from __future__ import annotations

from pathlib import Path

from ccq.training.handlers.metric_log import Scalars, tensorboard_available


def test_tensorboard_scalars(tmp_path: Path) -> None:
    assert tensorboard_available()  # a dev dependency: this test must not be skipped in CI
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = Scalars(tmp_path, enabled=True)
    scalars.add({"train/loss": 0.5}, 1)
    scalars.add({"train/loss": 0.25}, 2)
    scalars.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(1, 0.5), (2, 0.25)]
    assert not Scalars(tmp_path / "off", enabled=False).active
