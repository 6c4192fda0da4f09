"""Whole-case prediction with a checkpoint: a CT in, one label map per task out, on the input's own voxel grid.

The CT goes through exactly the preprocessing stored in the checkpoint (`ccq.data.prepare.preprocess_image`:
reorient, resample, window) onto each task's working grid (`ccq.data.grid`; one grid for every task unless the
checkpoint gives some tasks their own, as a converted official checkpoint does). Tasks are grouped by grid: for
each group the sliding window runs its tasks at once (one encoder pass per window) and keeps, in float16 on that
grid, only the channels the tasks label. Then, task by task, each channel is mapped back onto the input's voxels
(`ccq.data.grid.to_input_grid`, linear) before the 0.5 threshold, the task's post-processing rule runs on the
input's grid (`ccq.inference.postprocess`), and the masks become a label map in the task's own convention
(`TaskSpec.to_output_labels`: e.g. liver 1, liver tumor 2).

Going task by task keeps memory low on a large CT: the full-resolution arrays alive at once are the input, one
channel being mapped back, and one task's masks (`iter_tasks` yields each task as soon as it is done). With
several grids the input array is kept until the last group has been preprocessed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ccq.checkpoint import LoadedCheckpoint, load_checkpoint, resolve_model_path
from ccq.data import geometry
from ccq.data import grid as working
from ccq.data.collection import CHANNELS, TaskSpec
from ccq.data.geometry import CanonicalInfo
from ccq.data.grid import Grid
from ccq.data.prepare import preprocess_image
from ccq.errors import CCQError
from ccq.inference.postprocess import TaskRule, apply_rule, get_rules
from ccq.inference.sliding_window import predict_channels
from ccq.inference.writer import write_case_outputs  # noqa: F401 (imported from here by ccq.demo)
from ccq.io import as_image_volume, check_ct_values
from ccq.utils.device import resolve_device

STORE_DTYPE = torch.float16
"""Stitched probabilities on the prepared grid: half the memory of float32; 0.5 is exact and the step near it is
2^-11, far below what changes a thresholded voxel in practice."""


_SLAB_VOXELS = 1 << 23
"""Voxels of the input's grid resampled at a time when mapping a channel back (32 MB of float32)."""


def inference_device(device: str | torch.device | None) -> torch.device:
    """`ccq.utils.device.resolve_device`, plus a clear error for an unavailable Apple GPU ("mps")."""
    if str(device).startswith("mps") and not torch.backends.mps.is_available():
        raise CCQError(f"device {str(device)!r}: no Apple GPU (MPS) is available here; use --device cpu")
    return resolve_device(device)


def inference_layout(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` (in place) in the memory layout that predicts fastest on ``device``: channels-last on the CPU,
    where oneDNN's 3D convolutions ran 10-20% faster on it than on the default layout, on the demo and the
    official models alike (BENCHMARKS.md); the values are the same up to float32 rounding."""
    if device.type == "cpu":
        model.to(memory_format=torch.channels_last_3d)
    return model


@dataclass(eq=False)
class PreparedVolume:
    """A CT on the checkpoint's prepared grid, and what is needed to write results on the input's grid."""

    image: np.ndarray | None
    """float32 [D, H, W], reoriented, resampled and windowed (None once `Predictor.iter_tasks` has used it)."""
    info: CanonicalInfo
    affine: np.ndarray
    """The input's 4x4 voxel -> RAS affine."""
    header: Any = None
    source: str = "<array>"
    grid: Grid | None = None
    """The working grid of ``image`` (None: the preprocessing's default grid)."""
    input_array: np.ndarray | None = None
    """The input in file voxel order (HU), kept while tasks on another grid still need preprocessing."""


@dataclass(eq=False)
class TaskResult:
    """One task's output on the input's grid."""

    task: TaskSpec
    label: np.ndarray
    """The label map in the task's convention (uint8/uint16, the input's voxel order and shape)."""
    masks: dict[str, np.ndarray]
    """The channels the task labels, thresholded and post-processed (bool)."""
    probabilities: dict[str, np.ndarray] | None = None
    """float16 probabilities of those channels before thresholding (only when asked for)."""
    rule: TaskRule | None = None
    """The post-processing rule applied (None: none)."""


@dataclass(eq=False)
class CasePrediction:
    """The label map of every requested task (file voxel order, the input's shape), and where it came from."""

    labels: dict[str, np.ndarray]
    """Per task, its label map in its own convention (uint8/uint16, the input's voxel order and shape)."""
    masks: dict[str, dict[str, np.ndarray]]
    """Per task, the thresholded (and post-processed) channels it labels (``{"organ": bool array, ...}``)."""
    affine: np.ndarray
    info: CanonicalInfo
    header: Any = None
    """The input's NIfTI header, if it was a NIfTI (outputs copy its qform/sform codes)."""
    probabilities: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    rules: dict[str, TaskRule | None] = field(default_factory=dict)


class Predictor:
    """A checkpoint ready to segment CT volumes.

    Args:
        checkpoint: a checkpoint directory, a training run directory (its best/ or last/) or a
            `LoadedCheckpoint`.
        device: "cpu", "cuda", "cuda:N", "mps" or "auto" (a CUDA GPU if there is one, else the CPU).
        overlap: window overlap, a share of the patch (0.5 official).
        tta: 8-way flip test-time augmentation; None = on for a GPU (as the official evaluation), off on the
            CPU, where it costs 8x the time.
        postprocess: a `ccq.inference.postprocess.PRESETS` name: "official" (the task-specific rules) or "none".
        batch_size: windows per forward pass.
        threshold: probability above which a voxel is inside (0.5).
        progress: show a progress bar over the windows.
    """

    def __init__(
        self,
        checkpoint: str | Path | LoadedCheckpoint,
        *,
        device: str | torch.device | None = "auto",
        overlap: float = 0.5,
        tta: bool | None = None,
        postprocess: str = "official",
        batch_size: int = 1,
        threshold: float = 0.5,
        progress: bool = False,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise CCQError(f"threshold={threshold}: expected a probability strictly between 0 and 1")
        if not 0.0 <= overlap < 1.0:
            raise CCQError(f"overlap={overlap}: expected a fraction in [0, 1)")
        if batch_size < 1:
            raise CCQError(f"batch_size={batch_size}: expected at least 1 window per pass")
        self.rules = get_rules(postprocess)
        self.device = inference_device(device)
        if isinstance(checkpoint, LoadedCheckpoint):
            loaded = checkpoint
            loaded.model.to(self.device)
            self.path: Path | None = loaded.meta.path
        else:
            self.path = resolve_model_path(checkpoint)
            loaded = load_checkpoint(self.path, device=self.device)
        self.model = inference_layout(loaded.model.eval(), self.device)
        self.collection = loaded.collection
        self.preprocessing = loaded.preprocessing
        self.model_config = loaded.model_config
        self.overlap, self.batch_size, self.threshold, self.progress = overlap, batch_size, threshold, progress
        self.tta = self.device.type != "cpu" if tta is None else bool(tta)
        self.postprocess = postprocess

    def settings(self) -> dict[str, Any]:
        """What shaped the outputs (recorded in labels.json); ``grids`` (task -> working grid) when the tasks do not
        all share the canonical grid at ``spacing``."""
        out = {
            "model": None if self.path is None else str(self.path),
            "device": str(self.device),
            "tta": self.tta,
            "overlap": self.overlap,
            "threshold": self.threshold,
            "postprocess": self.postprocess,
            "spacing": list(self.preprocessing.spacing),
        }
        if not self.preprocessing.uniform:
            out["grids"] = {name: g.to_dict() for name, g in self.preprocessing.grids(self.collection.tasks).items()}
        return out

    def grid_groups(self, specs: Sequence[TaskSpec]) -> list[tuple[Grid, list[TaskSpec]]]:
        """``specs`` grouped by working grid (tasks sharing a grid share one encoder pass), in request order."""
        return working.group_by_grid(list(specs), self.preprocessing.grid)

    def resolve_tasks(self, tasks: str | Sequence[str | int] | None = "all") -> list[TaskSpec]:
        """``"all"``/None -> every task; else names or ids (also as digits), a list and/or comma-separated."""
        if tasks is None or isinstance(tasks, str | int):
            tasks = [tasks if tasks is not None else "all"]
        items: list[str | int] = []
        for t in tasks:
            items += [p.strip() for p in t.split(",") if p.strip()] if isinstance(t, str) else [t]
        if not items:
            names = ", ".join(self.collection.task_names)
            raise CCQError(f"tasks {tasks!r}: expected 'all' or task names ({names})")
        if "all" in items:
            return list(self.collection.tasks)
        specs = [self.collection.task(int(t) if isinstance(t, str) and t.isdigit() else t) for t in items]
        return list(dict.fromkeys(specs))  # drop repeats, keep order

    # ------------------------------------------------------------------------------------------- the pipeline

    def prepare(
        self, volume: Any, *, series: str | None = None, tasks: str | Sequence[str | int] | None = None
    ) -> PreparedVolume:
        """Read (if needed) and preprocess one CT; warns (`ccq.io.IntensityWarning`) if it does not look like HU.

        ``tasks`` (as `resolve_tasks`; default every task): the tasks to be predicted, which decide the working
        grid(s): the image is prepared on the first task's grid, and when others need other grids the input array
        is kept for them (every grid's size is checked now)."""
        image = as_image_volume(volume, series=series)
        check_ct_values(image.array, f"image {image.source}")
        groups = self.grid_groups(self.resolve_tasks("all" if tasks is None else tasks))
        where = f"image {image.source}"
        prepared, info = preprocess_image(image.array, image.affine, self.preprocessing, where=where, grid=groups[0][0])
        for grid, _ in groups[1:]:
            working.check_size(info, grid, where)
        return PreparedVolume(
            image=prepared, info=info, affine=image.affine, header=image.header, source=image.source,
            grid=groups[0][0], input_array=image.array if len(groups) > 1 else None,
        )  # fmt: skip

    def probabilities(self, prepared: PreparedVolume, specs: Sequence[TaskSpec]) -> tuple[torch.Tensor, list]:
        """(float16 [C, D, H, W] on the prepared grid, the C (task name, channel name) pairs): every channel the
        tasks label, all tasks in each window's one pass. The tasks must share the prepared volume's grid."""
        grid = prepared.grid or self.preprocessing.default_grid
        other = [t.name for t in specs if self.preprocessing.grid(t) != grid]
        if other:
            raise CCQError(f"tasks {other} have another working grid than the prepared volume ({grid.describe()})")
        pairs = [(i, c) for i, t in enumerate(specs) for c in range(2) if t.labeled_channels[c]]
        pre = self.preprocessing
        probs = predict_channels(
            self.model, prepared.image, [t.id for t in specs], pairs, self.model_config.patch_size,
            overlap=self.overlap, tta=self.tta, batch_size=self.batch_size, pad_value=pre.hu_min / pre.hu_scale,
            device=self.device, dtype=STORE_DTYPE, progress=self.progress,
        )  # fmt: skip
        return probs, [(specs[i].name, CHANNELS[c]) for i, c in pairs]

    def _on_grid(self, prepared: PreparedVolume, grid: Grid, last: bool) -> None:
        """Make ``prepared.image`` the input on ``grid`` (from the kept input array); ``last``: no later group
        needs the input array, so it is released."""
        current = prepared.grid or self.preprocessing.default_grid
        if prepared.image is None or current != grid:
            if prepared.input_array is None:
                raise CCQError(f"{prepared.source}: this prepared volume was already predicted; prepare it again")
            prepared.image = None  # the previous grid's image: released before the next one is made
            prepared.image, _ = preprocess_image(prepared.input_array, prepared.affine, self.preprocessing,
                                                 where=f"image {prepared.source}", grid=grid)  # fmt: skip
            prepared.grid = grid
        if last:
            prepared.input_array = None

    def iter_tasks(
        self, prepared: PreparedVolume, specs: Sequence[TaskSpec], *, keep_probabilities: bool = False
    ) -> Iterator[TaskResult]:
        """Predict every task, then yield them one at a time on the input's grid (see the module docstring).

        Tasks are grouped by working grid (`grid_groups`: the prepared volume's grid first), and yielded group by
        group. The prepared image is released once its windows are done (``prepared.image`` becomes None): on a
        large CT it is a full-size float32 volume that nothing needs any more."""
        if prepared.image is None and prepared.input_array is None:
            raise CCQError(f"{prepared.source}: this prepared volume was already predicted; prepare it again")
        current = prepared.grid or self.preprocessing.default_grid
        groups = sorted(self.grid_groups(specs), key=lambda group: group[0] != current)  # stable: current first
        for index, (grid, group) in enumerate(groups):
            self._on_grid(prepared, grid, last=index == len(groups) - 1)
            probs, keys = self.probabilities(prepared, group)
            prepared.image = None
            yield from self._group_results(prepared, grid, group, probs, keys, keep_probabilities)
            del probs

    def _group_results(
        self,
        prepared: PreparedVolume,
        grid: Grid,
        specs: Sequence[TaskSpec],
        probs: torch.Tensor,
        keys: list,
        keep_probabilities: bool,
    ) -> Iterator[TaskResult]:
        """The tasks of one grid group on the input's grid, one at a time."""
        for task in specs:
            masks: dict[str, np.ndarray | None] = {c: None for c in CHANNELS}
            kept: dict[str, np.ndarray] = {}
            for channel in CHANNELS:
                if (task.name, channel) not in keys:
                    continue  # the network predicts it, but this dataset has no value for it
                masks[channel], kept_channel = self._back_to_input(
                    probs[keys.index((task.name, channel))], prepared.info, keep_probabilities, grid
                )
                if kept_channel is not None:
                    kept[channel] = kept_channel
            rule = self.rules.get(task.name)
            if rule is not None:
                organ_includes_tumor = task.organ is not None and set(task.tumor or ()) <= set(task.organ)
                masks["organ"], masks["tumor"] = apply_rule(
                    rule, masks["organ"], masks["tumor"], prepared.affine, organ_includes_tumor=organ_includes_tumor
                )
            result = TaskResult(
                task=task,
                label=task.to_output_labels(masks["organ"], masks["tumor"]),
                masks={c: m for c, m in masks.items() if m is not None},
                probabilities=kept if keep_probabilities else None,
                rule=rule,
            )
            del masks, kept  # only the result holds this task's arrays: gone once the caller drops it
            yield result
            del result

    def _back_to_input(
        self, probs: torch.Tensor, info: CanonicalInfo, keep_probabilities: bool, grid: Grid | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """One channel [D, H, W] on ``grid`` (default: the default grid) -> (mask, float16 probabilities or None)
        on the input's grid.

        `ccq.data.grid.to_input_grid` taken apart so that no full-size float32 array is ever made: linear
        resampling is separable, so the grid's first axis is resampled first on the (small) working grid, then
        slabs of output slices are resampled in-plane and thresholded one after another; only the mask (1 byte a
        voxel) is reoriented into the file's voxel order."""
        grid = self.preprocessing.default_grid if grid is None else grid
        src = working.oriented(info, grid)  # the input's voxels on the grid's axes, before resampling
        spacing, (z, y, x) = grid.spacing, src.shape
        slices = geometry.resample(
            probs.float().numpy(), spacing, (src.spacing[0], *spacing[1:]), order=1, shape=(z, *probs.shape[1:])
        )
        mask = np.empty(src.shape, dtype=bool)
        kept = np.empty(src.shape, dtype=np.float16) if keep_probabilities else None
        step = max(1, _SLAB_VOXELS // (y * x))
        for a in range(0, z, step):
            slab = slices[a : a + step]
            part = geometry.resample(
                slab, (1.0, *spacing[1:]), (1.0, *src.spacing[1:]), order=1, shape=(len(slab), y, x)
            )
            np.greater(part, self.threshold, out=mask[a : a + step])
            if kept is not None:
                kept[a : a + step] = part
        del slices

        def back(array: np.ndarray) -> np.ndarray:
            return geometry.from_canonical(np.ascontiguousarray(working.unorient(array, grid.axes)), info)

        return back(mask), None if kept is None else back(kept)

    def predict(
        self,
        volume: Any,
        tasks: str | Sequence[str | int] | None = "all",
        *,
        series: str | None = None,
        keep_probabilities: bool = False,
    ) -> CasePrediction:
        """One label map per task, in that task's label convention, on the input's exact voxel grid.

        ``volume``: a NIfTI path, a DICOM series folder, a nibabel image, an (array, affine) pair or an
        `ImageVolume` (see `ccq.io.as_image_volume`).
        """
        specs = self.resolve_tasks(tasks)
        prepared = self.prepare(volume, series=series, tasks=specs)
        out = CasePrediction(labels={}, masks={}, affine=prepared.affine, info=prepared.info, header=prepared.header)
        for result in self.iter_tasks(prepared, specs, keep_probabilities=keep_probabilities):
            name = result.task.name
            out.labels[name], out.masks[name], out.rules[name] = result.label, result.masks, result.rule
            if result.probabilities is not None:
                out.probabilities[name] = result.probabilities
        return out
