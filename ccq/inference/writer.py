"""Writing one case's outputs: ``OUT/CASE/TASK.nii.gz`` per task, ``labels.json``, optional probabilities.

Every file is written under a temporary name and renamed (`ccq.utils.fs.replace_atomically`), so a file with its
final name is always complete, and nothing that exists is replaced unless the caller allows it (`check_outputs_free`
is meant to run on every planned path of a whole run before any work).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ccq.data.collection import TaskSpec
from ccq.errors import CCQError
from ccq.utils import fs

LABELS_FILE = "labels.json"
OVERLAYS_DIR = "overlays"
PROBABILITIES_SUFFIX = "_probabilities.npz"


def case_folder(out_dir: str | Path, case: str) -> Path:
    """``OUT/CASE``, with ``case`` checked to be a plain name that stays inside ``OUT`` (`ccq.utils.fs.child_path`)."""
    return fs.child_path(out_dir, case, "case name")


def task_files(case_dir: Path, task: str, *, probabilities: bool = False) -> list[Path]:
    fs.check_name(task, "task name")
    paths = [fs.child_path(case_dir, f"{task}.nii.gz", "task file")]
    return paths + [fs.child_path(case_dir, f"{task}{PROBABILITIES_SUFFIX}", "task file")] if probabilities else paths


def output_paths(
    out_dir: str | Path, case: str, task_names: Sequence[str], *, probabilities: bool = False
) -> list[Path]:
    """Every file a case writes (label maps, probabilities, then labels.json; overlays are listed apart)."""
    case_dir = case_folder(out_dir, case)
    paths = [p for name in task_names for p in task_files(case_dir, name, probabilities=probabilities)]
    return paths + [case_dir / LABELS_FILE]


def check_outputs_free(paths: Sequence[Path], overwrite: bool) -> None:
    """Refuse, before any work, to replace an existing output unless ``overwrite``."""
    if overwrite:
        return
    taken = [p for p in paths if p.exists() or p.is_symlink()]
    if taken:
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise CCQError(f"{taken[0]} exists{more}; refusing to overwrite it: choose another -o or pass --overwrite")


def label_image(label: np.ndarray, affine: np.ndarray, header: Any = None):
    """A NIfTI image of ``label`` on the input's grid. With the input's NIfTI ``header`` its qform and sform
    (matrices and codes) are copied as they are, so the output's affine is exactly the input's, quirks included;
    without one (DICOM, arrays) both are set to ``affine`` with code 1 (scanner)."""
    import nibabel as nib

    if header is None:
        img = nib.Nifti1Image(label, affine)
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=1)
        img.header.set_xyzt_units("mm")
        return img
    hdr = nib.Nifti1Header.from_header(header)
    hdr.set_data_dtype(label.dtype)
    hdr["cal_min"], hdr["cal_max"] = 0, 0  # the CT's display range would hide the labels in some viewers
    img = nib.Nifti1Image(label, header.get_best_affine(), hdr)
    img.set_qform(header.get_qform(), code=int(header["qform_code"]))
    img.set_sform(header.get_sform(), code=int(header["sform_code"]))
    img.header.set_slope_inter(1.0, 0.0)
    return img


class CaseWriter:
    """Writes one case's files as they come (a task at a time), then ``labels.json`` naming them."""

    def __init__(
        self, out_dir: str | Path, case: str, *, affine: np.ndarray, header: Any = None, overwrite: bool = False
    ) -> None:
        self.case, self.case_dir = case, case_folder(out_dir, case)
        self.affine, self.header, self.overwrite = np.asarray(affine, dtype=np.float64), header, overwrite
        self.tasks: dict[str, dict[str, Any]] = {}
        self.written: list[Path] = []

    def _free(self, paths: Sequence[Path]) -> None:
        check_outputs_free(paths, self.overwrite)
        self.case_dir.mkdir(parents=True, exist_ok=True)

    def write_task(
        self,
        task: TaskSpec,
        label: np.ndarray,
        *,
        probabilities: Mapping[str, np.ndarray] | None = None,
        rule: Mapping[str, Any] | None = None,
    ) -> list[Path]:
        """``TASK.nii.gz`` (and ``TASK_probabilities.npz``: float16 arrays named by channel, on the same grid)."""
        import nibabel as nib

        paths = task_files(self.case_dir, task.name, probabilities=probabilities is not None)
        self._free(paths)
        img = label_image(label, self.affine, self.header)
        fs.replace_atomically(paths[0], lambda tmp: nib.save(img, str(tmp)), keep_suffix=True)
        entry: dict[str, Any] = {
            "file": paths[0].name,
            "labels": {"0": "background", **{str(v): task.labels[v] for v in sorted(task.output_values.values())}},
            "channels": dict(task.output_values),
            "postprocess": None if rule is None else dict(rule),
        }
        if probabilities is not None:
            arrays = {c: np.asarray(p, dtype=np.float16) for c, p in probabilities.items()}

            def save(tmp: Path) -> None:
                with open(tmp, "wb") as fh:
                    np.savez_compressed(fh, affine=self.affine, **arrays)

            fs.replace_atomically(paths[1], save)
            entry["probabilities"] = {"file": paths[1].name, "arrays": sorted(arrays), "dtype": "float16"}
        self.tasks[task.name] = entry
        self.written += paths
        return paths

    def finish(self, extra: Mapping[str, Any] | None = None, *, source: str | None = None) -> Path:
        """Write ``labels.json``: per task its file, label values and names, and what produced it."""
        path = self.case_dir / LABELS_FILE
        self._free([path])
        fs.write_json_atomic(path, {"case": self.case, "input": source, "tasks": self.tasks, **dict(extra or {})})
        self.written.append(path)
        return path


def write_case_outputs(
    out_dir: str | Path,
    case: str,
    prediction,
    tasks: Sequence[TaskSpec],
    *,
    reference: str | Path | None = None,
    overwrite: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write a whole `CasePrediction` (see `CaseWriter`); returns the files, labels.json last.

    ``reference``: the input NIfTI whose header the outputs copy, when the prediction does not carry it.
    """
    names = [t.name for t in tasks]
    check_outputs_free(output_paths(out_dir, case, names, probabilities=bool(prediction.probabilities)), overwrite)
    header = prediction.header
    if header is None and reference is not None:
        import nibabel as nib

        header = nib.load(str(reference)).header
    writer = CaseWriter(out_dir, case, affine=prediction.affine, header=header, overwrite=overwrite)
    for task in tasks:
        rule = prediction.rules.get(task.name)
        writer.write_task(
            task, prediction.labels[task.name], probabilities=prediction.probabilities.get(task.name),
            rule=None if rule is None else rule.to_dict(),
        )  # fmt: skip
    writer.finish(extra, source=None if reference is None else str(reference))
    return writer.written
