"""The training-state file: what a checkpoint needs beyond the weights to continue a run exactly.

``RUN/last/training_state.pt`` holds the optimizer, the grad scaler, every random generator (per rank), the
loader positions (per rank) and the `TrainState` counters. Only tensors and plain Python values go in, so
``torch.load(..., weights_only=True)`` reads it: loading a run never unpickles arbitrary objects.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ccq.errors import CCQError

STATE_FILE = "training_state.pt"
STATE_FORMAT = "ccq-training-state"
STATE_VERSION = 1


def capture_rng() -> dict[str, Any]:
    """This process's generators: torch (CPU and every CUDA device), numpy's global one, Python's."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},  # fmt: skip
        "python": {"version": int(py_version), "internal": torch.tensor(py_internal, dtype=torch.int64),
                   "gauss": py_gauss},  # fmt: skip
    }


def restore_rng(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))  # fmt: skip
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))


def save_training_state(path: Path, state: Mapping[str, Any]) -> None:
    """Write the state dict (see `load_training_state` for its keys) to ``path``."""
    torch.save({"format": STATE_FORMAT, "version": STATE_VERSION, **state}, path)


def load_training_state(checkpoint_dir: str | Path) -> dict[str, Any]:
    """The training state of a checkpoint written by `ccq train`, read with ``weights_only=True``.

    Keys: iteration, world_size, optimizer, scaler (or None), rng (a list per rank), loader (a list of
    `PatchLoader.state_dict` per rank), train_state (the TrainState fields), nonfinite_skips.
    """
    path = Path(checkpoint_dir) / STATE_FILE
    if not path.is_file():
        raise CCQError(
            f"{path}: missing; {Path(checkpoint_dir)} holds weights but no training state, so the run cannot be "
            "resumed exactly (it was not written by `ccq train`, or by an older version)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling failure means the same to the user
        raise CCQError(f"{path}: cannot be read as a training state ({str(err).splitlines()[0]})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CCQError(f"{path}: not a ccq training state (format {state.get('format')!r} if a dict)")
    if state.get("version") != STATE_VERSION:
        raise CCQError(f"{path}: training-state version {state.get('version')!r}; this ccq reads {STATE_VERSION}")
    return state
