"""Whole-case prediction with a checkpoint: a NIfTI CT in, one label map per task out, on the input's grid.

The CT goes through exactly the preprocessing stored in the checkpoint (`ccq.data.prepare.preprocess_image`:
reorient, resample, window), the sliding window predicts every requested task, and the probabilities are
mapped back onto the file's own voxel grid (`ccq.data.geometry.to_original_grid`, linear) before the 0.5
threshold, so the output lines up voxel for voxel with the input. Each task's label map uses that task's own
label convention (`TaskSpec.to_output_labels`: e.g. liver 1, liver tumor 2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ccq.checkpoint import LoadedCheckpoint, load_checkpoint, resolve_model_path
from ccq.data import geometry
from ccq.data.collection import CHANNELS, TaskSpec
from ccq.data.geometry import CanonicalInfo
from ccq.data.prepare import preprocess_image
from ccq.errors import CCQError
from ccq.inference.sliding_window import predict_volume
from ccq.utils import fs
from ccq.utils.device import resolve_device

Volume = str | Path | tuple[np.ndarray, np.ndarray]
"""A NIfTI path, or an (array in file voxel order (HU), 4x4 voxel -> RAS mm affine) pair."""

LABELS_FILE = "labels.json"
NIFTI_SUFFIXES = (".nii.gz", ".nii")


def case_name(path: str | Path) -> str:
    """``/data/liver_3.nii.gz`` -> ``liver_3`` (the output sub-folder of a case)."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def find_inputs(path: str | Path) -> list[Path]:
    """A NIfTI file, or every ``*.nii.gz`` / ``*.nii`` directly in a folder (sorted)."""
    path = Path(path).expanduser()
    if path.is_file():
        if not path.name.endswith(NIFTI_SUFFIXES):
            raise CCQError(f"-i {path}: expected a NIfTI file (.nii.gz or .nii) or a folder of them")
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(NIFTI_SUFFIXES))
        if not found:
            raise CCQError(f"-i {path}: the folder holds no .nii.gz / .nii files")
        names = [case_name(p) for p in found]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise CCQError(f"-i {path}: case name(s) {twice} appear as both .nii and .nii.gz")
        return found
    raise CCQError(f"-i {path}: no such file or folder")


@dataclass
class CasePrediction:
    """The label map of every requested task (file voxel order, the input's shape), and where it came from."""

    labels: dict[str, np.ndarray]
    """Per task, its label map in its own convention (uint8/uint16, the input's voxel order and shape)."""
    masks: dict[str, dict[str, np.ndarray]]
    """Per task, the thresholded channels it labels (``{"organ": bool array, "tumor": ...}``), before they are
    merged into one label map (a tumor predicted outside the organ stays out of the organ mask here)."""
    affine: np.ndarray
    info: CanonicalInfo


class Predictor:
    """A checkpoint ready to segment CT volumes.

    Args:
        checkpoint: a checkpoint directory, a training run directory (its best/ or last/) or a
            `LoadedCheckpoint`.
        device: "cpu", "cuda", "auto".
        overlap, tta, batch_size: sliding-window settings (`predict_volume`).
        threshold: probability above which a voxel is inside (0.5).
    """

    def __init__(
        self,
        checkpoint: str | Path | LoadedCheckpoint,
        *,
        device: str | torch.device | None = "cpu",
        overlap: float = 0.5,
        tta: bool = False,
        batch_size: int = 1,
        threshold: float = 0.5,
        progress: bool = False,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise CCQError(f"threshold={threshold}: expected a probability strictly between 0 and 1")
        self.device = resolve_device(device)
        if isinstance(checkpoint, LoadedCheckpoint):
            loaded = checkpoint
            loaded.model.to(self.device)
            self.path: Path | None = loaded.meta.path
        else:
            self.path = resolve_model_path(checkpoint)
            loaded = load_checkpoint(self.path, device=self.device)
        self.model = loaded.model.eval()
        self.collection = loaded.collection
        self.preprocessing = loaded.preprocessing
        self.model_config = loaded.model_config
        self.overlap, self.tta, self.batch_size = overlap, tta, batch_size
        self.threshold, self.progress = threshold, progress

    def resolve_tasks(self, tasks: str | Sequence[str | int] | None = "all") -> list[TaskSpec]:
        """``"all"``/None -> every task; else names or ids, as a list or a comma-separated string."""
        if tasks is None or (isinstance(tasks, str) and tasks.strip() == "all"):
            return list(self.collection.tasks)
        items = tasks.split(",") if isinstance(tasks, str) else list(tasks)
        specs = [
            self.collection.task(t.strip() if isinstance(t, str) else t)
            for t in items
            if not (isinstance(t, str) and not t.strip())
        ]
        if not specs:
            names = ", ".join(self.collection.task_names)
            raise CCQError(f"tasks {tasks!r}: expected 'all' or task names ({names})")
        return list(dict.fromkeys(specs))  # drop repeats, keep order

    def _read(self, volume: Volume) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(volume, str | Path):
            return geometry.load_nifti(volume, what="image", case=case_name(volume), as_float=True)
        array, affine = volume
        array = np.asarray(array, dtype=np.float32)
        if array.ndim != 3:
            raise CCQError(f"image array of shape {array.shape}: expected a 3D volume")
        return array, np.asarray(affine, dtype=np.float64)

    def predict_probabilities(
        self, volume: Volume, tasks: str | Sequence[str | int] | None = "all"
    ) -> tuple[torch.Tensor, CanonicalInfo, np.ndarray]:
        """(probabilities [T, 2, D, H, W] on the prepared grid, the geometry to map back, the file affine)."""
        specs = self.resolve_tasks(tasks)
        array, affine = self._read(volume)
        image, info = preprocess_image(array, affine, self.preprocessing)
        pre = self.preprocessing
        probs = predict_volume(
            self.model, image, [t.id for t in specs], self.model_config.patch_size,
            overlap=self.overlap, tta=self.tta, batch_size=self.batch_size,
            pad_value=pre.hu_min / pre.hu_scale, device=self.device, progress=self.progress,
        )  # fmt: skip
        return probs, info, affine

    def predict(self, volume: Volume, tasks: str | Sequence[str | int] | None = "all") -> CasePrediction:
        """One label map per task, in that task's label convention, on the input's exact voxel grid."""
        specs = self.resolve_tasks(tasks)
        probs, info, affine = self.predict_probabilities(volume, [t.id for t in specs])
        labels: dict[str, np.ndarray] = {}
        all_masks: dict[str, dict[str, np.ndarray]] = {}
        for i, task in enumerate(specs):
            masks: dict[str, np.ndarray | None] = {}
            for c, channel in enumerate(CHANNELS):
                if not task.labeled_channels[c]:
                    masks[channel] = None  # the network predicts it, but this dataset has no value for it
                    continue
                back = geometry.to_original_grid(probs[i, c].numpy(), info, self.preprocessing.spacing, order=1)
                masks[channel] = back > self.threshold
            labels[task.name] = task.to_output_labels(masks["organ"], masks["tumor"])
            all_masks[task.name] = {c: m for c, m in masks.items() if m is not None}
        return CasePrediction(labels=labels, masks=all_masks, affine=affine, info=info)


def predict_case(
    checkpoint: str | Path | LoadedCheckpoint,
    nifti_path: str | Path,
    tasks: str | Sequence[str | int] | None = "all",
    device: str = "cpu",
    **options: Any,
) -> dict[str, np.ndarray]:
    """``{task: label map}`` for one NIfTI file, in each task's label convention, on the file's own grid."""
    return Predictor(checkpoint, device=device, **options).predict(nifti_path, tasks).labels


# ------------------------------------------------------------------------------------------------ writing


def output_paths(out_dir: str | Path, case: str, task_names: Sequence[str]) -> list[Path]:
    case_dir = Path(out_dir) / case
    return [case_dir / f"{name}.nii.gz" for name in task_names] + [case_dir / LABELS_FILE]


def check_outputs_free(paths: Sequence[Path], overwrite: bool) -> None:
    """Refuse, before any work, to replace an existing output unless ``overwrite``."""
    if overwrite:
        return
    taken = [p for p in paths if p.exists() or p.is_symlink()]
    if taken:
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise CCQError(f"{taken[0]} exists{more}; refusing to overwrite it: choose another -o or pass --overwrite")


def write_case_outputs(
    out_dir: str | Path,
    case: str,
    prediction: CasePrediction,
    tasks: Sequence[TaskSpec],
    *,
    reference: str | Path | None = None,
    overwrite: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write ``OUT/CASE/TASK.nii.gz`` (label maps, the input's shape and affine) and ``OUT/CASE/labels.json``.

    ``reference``: the input NIfTI, whose header (qform/sform codes, units) the outputs copy. Each file is
    written under a temporary name and renamed, so a file with the final name is always complete.
    """
    import nibabel as nib

    paths = output_paths(out_dir, case, [t.name for t in tasks])
    check_outputs_free(paths, overwrite)
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    header = None
    if reference is not None:
        ref = nib.load(str(reference))
        header = ref.header.copy()
    for task, path in zip(tasks, paths, strict=False):
        label = prediction.labels[task.name]
        if header is not None:
            hdr = header.copy()
            hdr.set_data_dtype(label.dtype)
            img = nib.Nifti1Image(label, prediction.affine, hdr)
            img.set_qform(ref.header.get_qform(), code=int(ref.header["qform_code"]))
            img.set_sform(ref.header.get_sform(), code=int(ref.header["sform_code"]))
            img.header.set_slope_inter(1.0, 0.0)
        else:
            img = nib.Nifti1Image(label, prediction.affine)
            img.set_qform(prediction.affine, code=1)
            img.set_sform(prediction.affine, code=1)
        fs.replace_atomically(path, lambda tmp, img=img: nib.save(img, str(tmp)), keep_suffix=True)
    summary = {
        "case": case,
        "input": None if reference is None else str(reference),
        "tasks": {
            t.name: {
                "file": p.name,
                "labels": {"0": "background", **{str(v): t.labels[v] for v in sorted(t.output_values.values())}},
                "channels": dict(t.output_values),
            }
            for t, p in zip(tasks, paths, strict=False)
        },
        **dict(extra or {}),
    }
    fs.write_json_atomic(paths[-1], summary)
    return paths
