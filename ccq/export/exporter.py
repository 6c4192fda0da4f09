"""Export a ccq checkpoint as a deployable graph (ONNX or TorchScript) with its preprocessing description.

Both formats are traced: the task is fixed (`ccq.export.wrappers`), the input is one window of the model's patch
size, batch 1. ONNX uses torch's TorchScript-based exporter (``dynamo=False``, opset 17): on torch 2.13 the
dynamo exporter takes ~10x longer on the same model and cannot export ``forward_all_tasks`` at all (its task-id
range check branches on tensor data, which ``torch.export`` refuses: GuardOnDataDependentSymNode).

Tracing runs with gradients *enabled* and every parameter frozen (``requires_grad=False``): with gradients
disabled the weight-standardized convolutions serve a cached standardized weight, which a tracer would record as a
constant beside the raw weight; with frozen parameters the graph computes everything from the parameters, and no
training-only autograd Function is taken.

Every export is checked before it is kept: the written file is run (ONNX Runtime / ``torch.jit.load``) on a
seeded random window and compared with the PyTorch model; nothing is written under FILE unless it matches. Both
run as window functions through ccq's sliding window (`ccq.inference.sliding_window`, the stitcher every prediction
uses), on a volume of one window, so the check also covers how a ccq runtime reads the graph's output.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ccq.checkpoint import load_checkpoint, resolve_model_path
from ccq.errors import CCQError
from ccq.export.onnx_ops import accurate_group_norm
from ccq.export.spec import INPUT_NAME, OUTPUT_NAME, companion_path_name, deployment_spec
from ccq.export.wrappers import AllTasksNet, TaskFixedNet
from ccq.inference.sliding_window import WindowFunction, sliding_window
from ccq.utils import fs

FORMATS = ("onnx", "torchscript")
SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript"}
"""File suffixes that name the format when none is given."""
ALL_TASKS = "all"
ONNX_OPSET = 17
CHECK_TOLERANCE = 5e-3
"""Largest difference from PyTorch accepted in the export check, relative to max(1, largest |logit|). float32
noise alone reaches 8e-4 on the official model at 64x192x192 (ONNX Runtime, random weights); a wrong translation
(GroupNorm as InstanceNormalization: 0.035) is well above it."""
CHECK_SEED = 0


@dataclass(frozen=True)
class ExportResult:
    """What `export_model` wrote and how well the exported file reproduced PyTorch."""

    model_file: Path
    spec_file: Path
    model_format: str
    tasks: tuple[str, ...]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    max_abs_diff: float
    """Largest |exported - PyTorch| on the check window (logits)."""


def spec_path(model_file: str | os.PathLike[str]) -> Path:
    """Where the description of ``model_file`` goes: beside it, ``FILE.json``."""
    model_file = Path(model_file)
    return model_file.with_name(companion_path_name(model_file.name))


def check_format(fmt: str | None, out: str | os.PathLike[str]) -> str:
    """``fmt`` if it is a known export format; for None, the format ``out``'s suffix names; else a CCQError."""
    if fmt is None:
        suffix = Path(out).suffix.lower()
        if suffix not in SUFFIXES:
            raise CCQError(
                f"{out}: cannot tell the export format from the suffix {suffix or '(none)'!r}; pass --format "
                f"{' or '.join(FORMATS)} (or name the file {' / '.join(SUFFIXES)})"
            )
        return SUFFIXES[suffix]
    if fmt in FORMATS:
        return fmt
    close = difflib.get_close_matches(fmt, FORMATS, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise CCQError(f"export format {fmt!r}{hint}: expected one of {', '.join(FORMATS)}")


def check_outputs(out: Path, *, overwrite: bool) -> None:
    """CCQError unless ``out`` and its ``.json`` may be written (absent, or files and ``overwrite``)."""
    for path in (out, spec_path(out)):
        if path.is_dir():
            raise CCQError(f"{path} is a directory; expected a file path for the exported model")
        if (path.exists() or path.is_symlink()) and not overwrite:
            raise CCQError(f"{path} already exists; pass --overwrite to replace it")


def export_model(
    model: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    task: str = "all",
    overwrite: bool = False,
) -> ExportResult:
    """Export the checkpoint (or training run) ``model`` for one task (its name) or ``"all"`` to ``out``, in the
    format ``fmt`` (``onnx`` or ``torchscript``; None: from ``out``'s suffix, `SUFFIXES`).

    Writes ``out`` and ``out.json`` (see `ccq.export.spec`). Raises CCQError for an unknown format or task, a
    path that is not a ccq checkpoint, an existing output without ``overwrite``, a missing optional package, or
    an export that does not reproduce the PyTorch model.
    """
    fmt = check_format(fmt, out)
    out = Path(out)
    check_outputs(out, overwrite=overwrite)
    if fmt == "onnx":
        _require_onnx()
    ckpt_path = resolve_model_path(model)
    ckpt = load_checkpoint(ckpt_path)
    collection = ckpt.collection
    tasks = list(collection.tasks) if task == ALL_TASKS else [_find_task(collection, task)]
    net = ckpt.model
    net.eval().requires_grad_(False)
    wrapper = (AllTasksNet(net, [t.id for t in tasks]) if task == ALL_TASKS else TaskFixedNet(net, tasks[0].id)).eval()
    patch = tuple(ckpt.preprocessing.patch_size)
    window = torch.randn((1, 1, *patch), generator=torch.Generator().manual_seed(CHECK_SEED))
    output_shape = (1, len(tasks), 2, *patch) if task == ALL_TASKS else (1, 2, *patch)
    expected = _stitched(_graph_windows(wrapper, output_shape, out, "PyTorch"), window)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = fs.temporary_path(out)
    try:
        if fmt == "onnx":
            exporter = _export_onnx(wrapper, window, tmp)
            run, runtime = _onnx_runner(tmp)
        else:
            exporter = _export_torchscript(wrapper, window, tmp)
            run, runtime = _torchscript_runner(tmp)
        got = _stitched(_graph_windows(run, output_shape, out, f"the exported {fmt}"), window)
        diff = float((got - expected).abs().max())
        limit = CHECK_TOLERANCE * max(1.0, float(expected.abs().max()))
        if not diff <= limit:
            raise CCQError(
                f"{out}: the exported {fmt} model differs from PyTorch by {diff:.3g} (shape {list(output_shape)}, "
                f"tolerance {limit:.3g}); nothing was written"
            )
        spec = deployment_spec(
            model_file=out.name,
            model_format=fmt,
            exporter=exporter,
            tasks=tasks,
            all_tasks=task == ALL_TASKS,
            preprocessing=ckpt.preprocessing,
            collection=collection,
            model_config=ckpt.model_config.to_dict(),
            source=str(ckpt_path),
            versions=_versions(),
        )
        spec["check"] = {
            "runtime": runtime,
            "input": f"standard normal window, torch.Generator seed {CHECK_SEED}",
            "max_abs_diff": diff,
        }
        text = fs.json_text(spec, where=spec_path(out).name)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fs.write_text_atomic(spec_path(out), text)
    return ExportResult(
        model_file=out,
        spec_file=spec_path(out),
        model_format=fmt,
        tasks=tuple(t.name for t in tasks),
        input_shape=tuple(window.shape),
        output_shape=output_shape,
        max_abs_diff=diff,
    )


def _find_task(collection: Any, name: str) -> Any:
    if name in collection.task_names:
        return collection.task(name)
    choices = [*collection.task_names, ALL_TASKS]
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise CCQError(
        f"task {name!r}{hint}: the checkpoint's collection {collection.name!r} has the tasks "
        f"{', '.join(collection.task_names)}; expected one of them or {ALL_TASKS!r}"
    )


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise CCQError(
            "ONNX export needs the 'onnx' package (and 'onnxruntime' to check the result): "
            "pip install 'ccq[export]', or use --format torchscript"
        ) from None


def _versions() -> dict[str, str]:
    from ccq._version import __version__

    return {"ccq": __version__, "torch": torch.__version__.split("+")[0]}


def _export_onnx(wrapper: torch.nn.Module, window: torch.Tensor, path: Path) -> str:
    with warnings.catch_warnings():
        # The task ids become graph constants on purpose (TracerWarning); the TorchScript-based exporter is the
        # one that handles this model (DeprecationWarning): see the module docstring.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        with accurate_group_norm(ONNX_OPSET):
            torch.onnx.export(
                wrapper,
                (window,),
                str(path),
                dynamo=False,
                opset_version=ONNX_OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                do_constant_folding=True,
            )
    return f"torch.onnx.export (TorchScript-based, dynamo=False), opset {ONNX_OPSET}, GroupNorm as axis-wise means"


GraphRunner = Callable[[torch.Tensor], "np.ndarray | torch.Tensor"]
"""An exported graph: one window [1, 1, d, h, w] -> its raw output (logits of the exported layout)."""


def _graph_windows(run: GraphRunner, output_shape: tuple[int, ...], out: Path, what: str) -> WindowFunction:
    """A batch-1 graph as a window function: windows [N, 1, d, h, w] -> logits [N, C, d, h, w] (the graph's
    task and channel axes flattened), one window at a time; CCQError if it does not give ``output_shape``."""

    def windows(x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for one in x:
            got = torch.as_tensor(np.asarray(run(one[None])))
            if tuple(got.shape) != output_shape:
                raise CCQError(
                    f"{out}: {what} model gives an output of shape {list(got.shape)}, expected "
                    f"{list(output_shape)}; nothing was written"
                )
            outputs.append(got.reshape(1, -1, *got.shape[-3:]))
        return torch.cat(outputs)

    return windows


def _stitched(window_fn: WindowFunction, window: torch.Tensor) -> torch.Tensor:
    """The check volume (one window [1, 1, d, h, w]) through the sliding window -> float32 [C, d, h, w]."""
    return sliding_window(window[0, 0], window_fn, tuple(window.shape[2:]), device="cpu")


def _onnx_runner(path: Path) -> tuple[GraphRunner, str]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise CCQError(
            "checking the ONNX export needs 'onnxruntime': pip install 'ccq[export]' (nothing was written)"
        ) from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(window: torch.Tensor) -> np.ndarray:
        return session.run([OUTPUT_NAME], {INPUT_NAME: window.numpy()})[0]

    return run, f"onnxruntime {ort.__version__} (CPU)"


def _export_torchscript(wrapper: torch.nn.Module, window: torch.Tensor, path: Path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # check_trace re-traces and re-runs the graph (4x the time); the comparison below is the real check.
        traced = torch.jit.trace(wrapper, (window,), check_trace=False)
        torch.jit.save(traced, str(path))
    return "torch.jit.trace"


def _torchscript_runner(path: Path) -> tuple[GraphRunner, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is in maintenance: the format asked for
        loaded = torch.jit.load(str(path), map_location="cpu")
    return loaded, f"torch.jit.load (torch {torch.__version__.split('+')[0]})"
