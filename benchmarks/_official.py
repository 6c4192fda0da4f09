"""Load the authors' public CCQ / DoDNet code at run time, from a directory the user passes, to run on a CPU.

Nothing of the official code is copied into this repository: the benchmarks import it from a local copy of
github.com/Yang-007/CCQ (`code/network/` for CCQ; `a_DynConv/unet3D_DynConv882.py` for the DoDNet baseline).

Two shims make that code run on a CPU-only machine, inside the benchmark process only:
- it calls `.cuda()` on tensors it creates in forward (the one-hot task encoding, the positional embedding),
  so `torch.Tensor.cuda` is replaced by a function returning the tensor itself;
- it imports `trunc_normal_` and `DropPath` from `timm.models.layers`; when timm is not installed a stub
  module provides `torch.nn.init.trunc_normal_` and an identity `DropPath` (the official drop-path rate is 0).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import os
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

OFFICIAL_REPO = "https://github.com/Yang-007/CCQ"
DODNET_FILE = "unet3D_DynConv882.py"
# Top-level module names of the official code/network folder; stale entries of these names (from another
# folder) would shadow the ones we mean to import.
_CCQ_MODULES = ("main", "cond_query_tr", "encoder", "decoder", "query_attn", "tr_blocks", "utils_", "weight")


class OfficialSourceError(Exception):
    """The official source directory is missing, incomplete or fails to import (a one-line message)."""


def install_shims(on_cuda: bool = False) -> None:
    """Make the official CUDA-only code run on a CPU (see the module docstring); `on_cuda`: it runs on a GPU
    as written, only the timm stub is installed. Idempotent."""
    if not on_cuda:
        torch.Tensor.cuda = _tensor_stays_put  # type: ignore[method-assign]
    try:
        importlib.import_module("timm.models.layers")
    except ImportError:
        _install_timm_stub()


def _tensor_stays_put(self: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
    return self


class _IdentityDropPath(torch.nn.Module):
    def __init__(self, drop_prob: float = 0.0, *args: object, **kwargs: object) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _trunc_normal(
    tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0
) -> torch.Tensor:
    return torch.nn.init.trunc_normal_(tensor, mean, std, a, b)


def _install_timm_stub() -> None:
    timm = types.ModuleType("timm")
    models = types.ModuleType("timm.models")
    layers = types.ModuleType("timm.models.layers")
    layers.trunc_normal_ = _trunc_normal  # type: ignore[attr-defined]
    layers.DropPath = _IdentityDropPath  # type: ignore[attr-defined]
    timm.models = models  # type: ignore[attr-defined]
    models.layers = layers  # type: ignore[attr-defined]
    sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers})


def check_ccq_source(src: str | Path) -> Path:
    """The official `code/network` directory, checked to exist and hold main.py."""
    path = Path(src).expanduser()
    if not path.exists():
        raise OfficialSourceError(
            f"--official-src {src}: no such directory; expected a local copy of the `code/network` folder of "
            f"{OFFICIAL_REPO}"
        )
    if not path.is_dir():
        raise OfficialSourceError(f"--official-src {src}: is a file; expected the `code/network` directory")
    if not (path / "main.py").is_file():
        raise OfficialSourceError(
            f"--official-src {src}: has no main.py; expected the `code/network` folder of {OFFICIAL_REPO} "
            "(main.py, cond_query_tr.py, ...)"
        )
    return path.resolve()


def load_official_ccq(src: str | Path, on_cuda: bool = False) -> type[torch.nn.Module]:
    """The official CCQ class `main.unet3D` (build it with `unet3D(image_size=(D, H, W))`; its
    forward(input, task_id) returns sigmoid probabilities [B, 2, D, H, W])."""
    path = check_ccq_source(src)
    install_shims(on_cuda)
    for name in _CCQ_MODULES:
        module = sys.modules.get(name)
        if module is not None and not str(getattr(module, "__file__", "") or "").startswith(str(path)):
            del sys.modules[name]
    sys.path.insert(0, str(path))
    try:
        main = importlib.import_module("main")
    except Exception as err:  # noqa: BLE001 - any failure of foreign code becomes one line
        raise OfficialSourceError(
            f"--official-src {src}: importing main.py failed ({type(err).__name__}: {_first_line(err)})"
        ) from err
    cls = getattr(main, "unet3D", None)
    if cls is None:
        raise OfficialSourceError(f"--official-src {src}: main.py defines no `unet3D` class")
    return cls


def load_official_dodnet(src: str | Path, on_cuda: bool = False) -> Callable[..., torch.nn.Module]:
    """The official DoDNet factory `UNet3D` (call it as `UNet3D(weight_std=True)`; forward(input, task_id)
    returns logits [B, 2, D, H, W]). `src` is unet3D_DynConv882.py or the directory holding it."""
    path = Path(src).expanduser()
    if path.is_dir():
        path = path / DODNET_FILE
    if not path.is_file():
        raise OfficialSourceError(
            f"--official-dodnet-src {src}: no {DODNET_FILE} there; expected that file (folder a_DynConv of "
            f"{OFFICIAL_REPO}) or its directory"
        )
    install_shims(on_cuda)
    spec = importlib.util.spec_from_file_location("official_dodnet_unet3d", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # It imports matplotlib.pyplot (unused by the model): never open a window.
    with _agg_backend():
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # noqa: BLE001
            raise OfficialSourceError(
                f"--official-dodnet-src {src}: importing {path.name} failed ({type(err).__name__}: {_first_line(err)})"
            ) from err
    factory = getattr(module, "UNet3D", None)
    if factory is None:
        raise OfficialSourceError(f"--official-dodnet-src {src}: {path.name} defines no `UNet3D`")
    return factory


def build_official_dodnet(factory: Callable[..., torch.nn.Module]) -> torch.nn.Module:
    """`UNet3D(weight_std=True)`, silencing the line it prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        return factory(weight_std=True)


@contextlib.contextmanager
def _agg_backend() -> Iterator[None]:
    old = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "Agg"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = old


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else "no message"
