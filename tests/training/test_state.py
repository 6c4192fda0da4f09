"""The training-state file is type-checked when read (`ccq.training.state.load_training_state`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ccq.errors import CCQError
from ccq.training.state import STATE_FILE, STATE_FORMAT, STATE_VERSION, capture_rng, load_training_state


def _state(**changes) -> dict:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    state = {"format": STATE_FORMAT, "version": STATE_VERSION, "iteration": 4, "world_size": 1,
             "optimizer": optimizer.state_dict(), "scaler": None, "rng": [capture_rng()],
             "loader": [{"position": 8, "seed": 0, "rank": 0, "batch_size": 2}],
             "train_state": {"iteration": 4, "best_score": None}}  # fmt: skip
    state.update(changes)
    return state


def _write(folder: Path, state) -> Path:
    folder.mkdir(exist_ok=True)
    torch.save(state, folder / STATE_FILE)
    return folder


def test_a_good_state_reads_back(tmp_path: Path) -> None:
    state = load_training_state(_write(tmp_path / "last", _state()))
    assert state["iteration"] == 4 and state["loader"][0]["position"] == 8


@pytest.mark.parametrize("state,needle", [
    ([1, 2, 3], "holds a list; expected a ccq training state"),
    ({"format": "other"}, "not a ccq training state (format 'other')"),
    (_state(iteration=-1), "field 'iteration' is -1; expected a non-negative integer"),
    (_state(world_size=True), "field 'world_size' is True; expected a positive integer"),
    (_state(optimizer=[1]), "field 'optimizer' is [1]; expected an optimizer state dict"),
    (_state(scaler=5), "field 'scaler' is 5; expected a dict or null"),
    (_state(rng=[]), "field 'rng' is []; expected a list of one rng state per process (1)"),
    (_state(rng=[{"torch": 1}]), "field 'rng'"),
    (_state(loader=[{"position": "8", "seed": 0, "rank": 0, "batch_size": 2}]), "field 'loader'"),
    (_state(train_state=None), "field 'train_state' is None; expected a dict of the TrainState fields"),
])  # fmt: skip
def test_a_damaged_state_is_one_line_naming_the_field(tmp_path: Path, state, needle: str) -> None:
    folder = _write(tmp_path / "last", state)
    with pytest.raises(CCQError) as info:
        load_training_state(folder)
    message = str(info.value)
    assert needle in message and str(folder / STATE_FILE) in message and "\n" not in message, message
    assert len(message) < 400
