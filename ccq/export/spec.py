"""The deployment description written beside an exported network (``FILE.json``).

An exported graph is only half of a model: without the spacing, the HU window, the patch size, the task order and
the label values, a deployment would feed it the wrong voxels or misread its output (DoDNet issue #19 was exactly
that). The JSON says everything a runtime without ccq needs, in words and in numbers.
"""

from __future__ import annotations

from typing import Any

from ccq.data.collection import CHANNELS, Collection, TaskSpec
from ccq.data.grid import Grid
from ccq.data.preprocessing import PreprocessingConfig

EXPORT_FORMAT = "ccq-export"
EXPORT_FORMAT_VERSION = 1
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
THRESHOLD = 0.5
"""Probability (sigmoid of a logit) above which a voxel is inside; the official inference's value."""
OVERLAP = 0.5
"""Sliding-window overlap, a share of the patch (official)."""

_INTERPOLATION = {0: "nearest neighbour", 1: "linear", 3: "cubic B-spline (order 3)"}
_AXES = {
    "z": "inferior -> superior (towards the head)",
    "y": "anterior -> posterior (towards the back)",
    "x": "patient's right -> patient's left",
}


def companion_path_name(model_file_name: str) -> str:
    """The description's file name for an exported file: ``liver.onnx`` -> ``liver.onnx.json``."""
    return f"{model_file_name}.json"


def _grid_entry(grid: Grid) -> dict[str, Any]:
    return {
        "spacing_mm": list(grid.spacing),
        "spacing_order": "D, H, W (the network's input axes)",
        "axes": grid.axes,
        "directions": grid.axis_words(),
    }


def _task_entry(task: TaskSpec, index: int | None, grid: Grid | None = None) -> dict[str, Any]:
    channels = {}
    for channel, labeled in zip(CHANNELS, task.labeled_channels, strict=True):
        if labeled:
            channels[channel] = {
                "labeled": True,
                "name": task.channel_names[channel],
                "output_value": task.output_values[channel],
                "source_values": list(getattr(task, channel)),
            }
        else:
            channels[channel] = {"labeled": False, "note": f"the {task.name} dataset does not label this channel"}
    entry: dict[str, Any] = {"name": task.name, "id": task.id}
    if index is not None:
        entry["index"] = index
    entry["channels"] = channels
    entry["labels"] = {str(k): v for k, v in sorted(task.labels.items())}
    if grid is not None:
        entry["grid"] = _grid_entry(grid)
    return entry


def deployment_spec(
    *,
    model_file: str,
    model_format: str,
    exporter: str,
    tasks: list[TaskSpec],
    all_tasks: bool,
    preprocessing: PreprocessingConfig,
    collection: Collection,
    model_config: dict[str, Any],
    source: str,
    versions: dict[str, str],
) -> dict[str, Any]:
    """The JSON data describing an exported network's input, preprocessing, output and tasks."""
    d, h, w = preprocessing.patch_size
    in_shape = [1, 1, d, h, w]
    if all_tasks:
        out_shape = [1, len(tasks), 2, d, h, w]
        layout = "[batch, task, channel, z, y, x]; task i is tasks[i] below, channel 0 organ, 1 tumor"
    else:
        out_shape = [1, 2, d, h, w]
        layout = "[batch, channel, z, y, x]; channel 0 organ, 1 tumor"
    lo, hi, scale = preprocessing.hu_min, preprocessing.hu_max, preprocessing.hu_scale
    orientation = (
        "reorient the CT (a permutation and flips of its voxel axes, no resampling) so that array axes are "
        "[z, y, x] with " + "; ".join(f"{k}: {v}" for k, v in _AXES.items())
    )
    if not preprocessing.uniform:  # some task (or every task) has its own working grid: tasks[].grid says which
        orientation = (
            "per task (tasks[].grid): reorient the CT (a permutation and flips of its voxel axes) so that array "
            "axes [D, H, W] point as tasks[].grid.directions say, then resample to tasks[].grid.spacing_mm; tasks "
            "with the same grid can share one preprocessed volume and one network pass"
        )
    return {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "model_file": model_file,
        "model_format": model_format,
        "exporter": exporter,
        "source_checkpoint": source,
        "versions": versions,
        "collection": collection.name,
        "input": {
            "name": INPUT_NAME,
            "shape": in_shape,
            "dtype": "float32",
            "layout": "[batch, channel, z, y, x]: one window of the preprocessed CT; batch and size are fixed",
        },
        "preprocessing": {
            "orientation": orientation,
            "axes": dict(_AXES) if preprocessing.uniform else preprocessing.default_grid.axis_words(),
            "spacing_mm": list(preprocessing.spacing),
            "spacing_order": "z, y, x"
            if preprocessing.uniform
            else "D, H, W of the default grid (tasks[].grid: each task's own)",
            "image_interpolation": _INTERPOLATION[preprocessing.image_interpolation_order],
            "hu_window": [lo, hi],
            "hu_scale": scale,
            "intensity": f"after resampling: clip HU to [{lo:g}, {hi:g}], then divide by {scale:g}",
            "pad_value": lo / scale,
            "padding": "volumes smaller than the patch are padded with pad_value (windowed air)",
        },
        "inference": {
            "patch_size": [d, h, w],
            "sliding_window_overlap": OVERLAP,
            "importance_weighting": "Gaussian, sigma = patch_size / 8 per axis, to blend overlapping windows",
            "activation": "sigmoid (each channel on its own, not a softmax)",
            "threshold": THRESHOLD,
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": out_shape,
            "dtype": "float32",
            "layout": layout,
            "meaning": "logits of two independent binary channels per task, organ and tumor; a channel stands for "
            "the label values tasks[].channels[].source_values of the task's dataset",
            "label_map": f"per task: tumor value where sigmoid(tumor) > {THRESHOLD}, else organ value where "
            f"sigmoid(organ) > {THRESHOLD}, else 0 (values: tasks[].channels[].output_value); a channel with "
            "labeled: false was never trained for that task and carries no meaning",
        },
        "tasks": [_task_entry(t, i if all_tasks else None, preprocessing.grid(t)) for i, t in enumerate(tasks)],
        "model": model_config,
    }
