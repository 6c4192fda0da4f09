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
from ccq.limits import quote

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
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },  # fmt: skip
        "python": {
            "version": int(py_version),
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss": py_gauss,
        },  # fmt: skip
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
        raise CCQError(f"{path}: cannot be read as a training state ({_first_line(err)})") from None
    if not isinstance(state, dict):
        raise CCQError(f"{path}: holds a {type(state).__name__}; expected a ccq training state (a dict)")
    if state.get("format") != STATE_FORMAT:
        raise CCQError(f"{path}: not a ccq training state (format {quote(state.get('format'))})")
    if state.get("version") != STATE_VERSION:
        raise CCQError(f"{path}: training-state version {quote(state.get('version'))}; this ccq reads {STATE_VERSION}")
    check_state_types(state, path)
    return state


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return quote(lines[0], 200)[1:-1] if lines else type(err).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rng_ok(rng: Any) -> bool:
    if not isinstance(rng, dict) or not isinstance(rng.get("torch"), torch.Tensor):
        return False
    n, p = rng.get("numpy"), rng.get("python")
    numpy_ok = isinstance(n, dict) and isinstance(n.get("keys"), torch.Tensor) and _is_int(n.get("pos"))
    numpy_ok = numpy_ok and _is_int(n.get("has_gauss")) and isinstance(n.get("cached_gaussian"), float)
    python_ok = isinstance(p, dict) and _is_int(p.get("version")) and isinstance(p.get("internal"), torch.Tensor)
    return numpy_ok and python_ok and isinstance(rng.get("cuda"), list)


def _loader_ok(loader: Any) -> bool:
    keys = ("position", "seed", "rank", "batch_size")
    return isinstance(loader, dict) and all(_is_int(loader.get(k)) for k in keys)


def check_state_types(state: Mapping[str, Any], path: Path) -> None:
    """Every field `ccq train --resume` reads has its type (a hand-made or damaged file is one line naming the
    field, not an AttributeError deep in the resumed run)."""
    world = state.get("world_size")
    optimizer = state.get("optimizer")
    checks = {
        "iteration": "a non-negative integer" if not (_is_int(state.get("iteration")) and state["iteration"] >= 0)
        else None,
        "world_size": "a positive integer" if not (_is_int(world) and world >= 1) else None,
        "optimizer": "an optimizer state dict (state, param_groups)"
        if not (isinstance(optimizer, dict) and isinstance(optimizer.get("state"), dict)
                and isinstance(optimizer.get("param_groups"), list)) else None,
        "scaler": "a dict or null" if not (state.get("scaler") is None or isinstance(state.get("scaler"), dict))
        else None,
        "train_state": "a dict of the TrainState fields" if not isinstance(state.get("train_state"), dict) else None,
    }  # fmt: skip
    for name in ("rng", "loader"):
        items, ok = state.get(name), _rng_ok if name == "rng" else _loader_ok
        if not (isinstance(items, list) and _is_int(world) and len(items) == world and all(ok(i) for i in items)):
            checks[name] = f"a list of one {name} state per process ({quote(world)})"
    bad = next(((k, v) for k, v in checks.items() if v is not None), None)
    if bad is not None:
        name, expected = bad
        raise CCQError(f"{path}: field {name!r} is {quote(state.get(name), 60)}; expected {expected} (a damaged "
                       "training state: resume from another checkpoint or start a new run)")  # fmt: skip
