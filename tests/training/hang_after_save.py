"""Fault injection for the kill-and-resume test: train as `ccq train --preset demo --config SETTINGS --data DATA
--out OUT --iterations N --no-progress` does, with one more handler that, once last/ is saved at iteration
HANG_AT, sleeps until the process is killed (a stand-in for a machine that dies at that moment).

    python -m tests.training.hang_after_save SETTINGS DATA OUT N HANG_AT
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from ccq.training.config import TrainConfig, get_train_preset, load_train_config
from ccq.training.handlers import Handler
from ccq.training.trainer import Trainer


class HangAfterSave(Handler):
    """Never returns from the `checkpoint` hook at ``iteration`` (it runs after the built-in checkpoints)."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def checkpoint(self, trainer: Trainer, rank_states: Any) -> None:
        if trainer.state.iteration == self.iteration:
            while True:
                time.sleep(60)


def main(settings: str, data: str, out: str, iterations: str, hang_at: str) -> None:
    # The resolution `ccq train` makes: the demo preset, the settings file over it, then --iterations.
    config = load_train_config(Path(settings), get_train_preset("demo"))
    config = TrainConfig.from_dict({"iterations": int(iterations)}, base=config)
    Trainer(config, data, out, progress=False, handlers=[HangAfterSave(int(hang_at))]).fit()


if __name__ == "__main__":
    main(*sys.argv[1:])
