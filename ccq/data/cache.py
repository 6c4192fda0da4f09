"""The on-disk format of a prepared collection (written by ``ccq prepare``, read by training and evaluation).

Layout of a prepared folder ``OUT``::

    OUT/manifest.json          one entry per finished case (see `PreparedDataset`), plus format metadata
    OUT/collection.json        the task collection the cases were prepared with
    OUT/preprocessing.json     the PreprocessingConfig (spacing, HU window, patch size)
    OUT/cases/<task>/<case>/
        image.chunks           int16 HU inside the crop box, on the task's working grid (meta ``grid``; canonical
                               (z, y, x) unless the preprocessing gives the task its own), rounded and clipped to
                               the HU window (`ccq.data.chunked`: compressed chunks)
        label.chunks           uint8, the dataset's own label values inside the crop box (the same chunks)
        fg_organ.npy           int32 [N, 3] (z, y, x) foreground voxels of the organ channel (a subsample)
        fg_tumor.npy           the same for the tumor channel (absent for an ignored channel)
        meta.json              geometry, crop box, foreground counts and boxes (the manifest entry)
    OUT/cases/<dataset>/<case>/  a case of a dataset that labels several tasks (`ccq.data.prepare_shared`): the
                               image and label once, ``fg_<task>_<channel>.npy`` per task, and a meta.json whose
                               ``entries`` are its tasks' manifest entries (one per task; ``dataset`` and the
                               shared ``path`` tell them apart from the others)

The entry's ``shape`` is the whole working grid and every coordinate (``foreground_bbox``, the locations) is on
it; only the voxels inside ``crop_box`` (``[[z0, z1], [y0, y1], [x0, x1]]``, end-exclusive) are stored. Outside
it every voxel windows to the floor of the HU window and is unlabeled (`ccq.data.prepare`), which is what the
readers fill it with, so `CaseReader.region`, `PreparedDataset.image` and `PreparedDataset.label` return exactly
the whole grid's values. A patch reads and decompresses only the chunks it overlaps; the window's scaling is
applied then. The label keeps the dataset's values rather than two channel masks: the channel rules
(``organ``/``tumor`` values) are in the entry, so a crop becomes a target with one table lookup.

Format 1 (ccq before the crop: float32 ``image.npy``, 5 bytes per voxel) is not read: such a folder asks for
``ccq prepare`` into a new folder.

A case folder is written under a hidden temporary name (carrying the writer's pid) and renamed into place, so a
folder with the final name is always complete; temporaries left by an interrupted run are removed by the next
one, while those of a concurrent run (its pid alive) are left alone.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

import ccq.limits as limits
from ccq.data.chunked import ChunkedArray, write_chunked
from ccq.data.collection import CHANNELS, Collection
from ccq.data.preprocessing import PreprocessingConfig
from ccq.errors import CCQError
from ccq.utils import fs

FORMAT_VERSION = 2
CASES_DIR = "cases"
MANIFEST_FILE = "manifest.json"
COLLECTION_FILE = "collection.json"
PREPROCESSING_FILE = "preprocessing.json"
IMAGE_FILE = "image.chunks"
LABEL_FILE = "label.chunks"
META_FILE = "meta.json"


def locations_file(channel: str, task: str | None = None) -> str:
    """The stored foreground voxels of a channel; of a task's channel in a case shared by several tasks
    (`ccq.data.prepare_shared`: ``fg_<task>_<channel>.npy``)."""
    return f"fg_{channel}.npy" if task is None else f"fg_{task}_{channel}.npy"


def case_relpath(task_name: str, case_id: str) -> str:
    """Where a case lives, relative to the prepared folder (POSIX separators, stored in the manifest); both names
    are checked to be plain names (`ccq.utils.fs.check_name`), so a case never lands outside ``cases/TASK/``."""
    return f"{CASES_DIR}/{fs.check_name(task_name, 'task name')}/{fs.check_name(case_id, 'case id')}"


JSON_INDENT = 1
"""Indent of the prepared folder's JSON files (`ccq.utils.fs.write_json_atomic`): a manifest of a thousand cases
is large."""


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def box_slices(box: Any, shape: Any, where: str) -> tuple[slice, slice, slice]:
    """A crop box ``[[z0, z1], [y0, y1], [x0, x1]]`` as slices, checked to lie inside ``shape`` and be non-empty."""
    ok = isinstance(box, list | tuple) and len(box) == 3 and isinstance(shape, list | tuple) and len(shape) == 3
    ok = ok and all(
        isinstance(b, list | tuple)
        and len(b) == 2
        and all(isinstance(v, int) for v in (*b, n))
        and 0 <= b[0] < b[1] <= n
        for b, n in zip(box, shape, strict=True)
    )
    if not ok:
        raise CCQError(f"{where}: crop_box {limits.quote(box)} for shape {limits.quote(shape)}; expected three "
                       "[start, stop) pairs inside the shape")  # fmt: skip
    return tuple(slice(int(a), int(b)) for a, b in box)  # type: ignore[return-value]


def is_case_finished(out_dir: Path, task_name: str, case_id: str) -> bool:
    return (Path(out_dir) / case_relpath(task_name, case_id) / META_FILE).is_file()


def write_case(
    out_dir: Path,
    task_name: str,
    case_id: str,
    *,
    image: np.ndarray,
    label: np.ndarray,
    locations: Mapping[str, np.ndarray | None],
    meta: Mapping[str, Any],
) -> Path:
    """Write one case atomically; returns its folder. A case finished meanwhile (another run) is kept.

    ``image``: int16 HU on the whole working grid (`ccq.data.prepare.PreparedCase.hu`), ``label``: uint8 on the
    same grid; only their ``meta["crop_box"]`` is written."""
    box = box_slices(meta["crop_box"], meta["shape"], "the case's meta")
    if image.dtype != np.int16 or label.dtype != np.uint8 or not image.shape == label.shape == tuple(meta["shape"]):
        raise CCQError(f"write_case: image {image.dtype} {image.shape}, label {label.dtype} {label.shape}; expected "
                       f"int16 and uint8 of the shape {meta['shape']}")  # fmt: skip
    task_dir = fs.child_path(Path(out_dir) / CASES_DIR, task_name, "task name")
    final = fs.child_path(task_dir, case_id, "case id")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = fs.temporary_path(final)
    tmp.mkdir()
    try:
        write_chunked(tmp / IMAGE_FILE, image[box])
        write_chunked(tmp / LABEL_FILE, label[box])
        for channel, locs in locations.items():
            if locs is not None:
                _save_npy(tmp / locations_file(channel), np.asarray(locs, dtype=np.int32).reshape(-1, 3))
        fs.write_json_atomic(tmp / META_FILE, dict(meta), indent=JSON_INDENT)
        try:
            os.rename(tmp, final)  # atomic on POSIX; fails if `final` exists (then the earlier copy wins)
        except OSError:
            if not (final / META_FILE).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def write_index(
    out_dir: Path,
    collection: Collection,
    preprocessing: PreprocessingConfig,
    entries: list[dict[str, Any]],
    *,
    complete: bool = True,
    failed: list[dict[str, str]] | None = None,
) -> Path:
    """Write manifest.json (``entries`` = case metas), collection.json and preprocessing.json."""
    out_dir = Path(out_dir)
    fs.write_json_atomic(out_dir / PREPROCESSING_FILE, preprocessing.to_dict(), indent=JSON_INDENT)
    fs.write_json_atomic(out_dir / COLLECTION_FILE, collection.to_dict(), indent=JSON_INDENT)
    manifest = {
        "format": FORMAT_VERSION,
        "collection": collection.name,
        "complete": complete,
        "failed": list(failed or []),
        "cases": entries,
    }
    fs.write_json_atomic(out_dir / MANIFEST_FILE, manifest, indent=JSON_INDENT)
    return out_dir / MANIFEST_FILE


def remove_temporaries(out_dir: Path) -> int:
    """Delete half-written case folders and JSON files left by an interrupted run; returns how many.

    A temporary whose writer (the pid in its name) is still running belongs to a concurrent run into the same
    folder and is kept. Call this before writing anything: this process's own pid counts as not running (after
    a restart, e.g. in a fresh container, a killed run's pid can be ours).
    """
    root = Path(out_dir)
    count = 0
    for parent in [root, *sorted((root / CASES_DIR).glob("*"))] if (root / CASES_DIR).is_dir() else [root]:
        if not parent.is_dir():
            continue
        for path in parent.iterdir():
            if not (path.name.startswith(".") and fs.TMP_MARK in path.name):
                continue
            owner = fs.temporary_owner(path.name)
            if owner is not None and owner != os.getpid() and fs.pid_alive(owner):
                continue
            # ignore_errors: a temporary can vanish meanwhile (a concurrent writer renamed it into place).
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            count += 1
    return count


def read_json(path: Path, what: str) -> Any:
    """A JSON file of the prepared folder, read within `ccq.limits` (size, nesting, integers)."""
    try:
        text = limits.read_text(path)
    except FileNotFoundError:
        raise CCQError(f"{path}: no {what}; run `ccq prepare` to create the prepared folder") from None
    return limits.parse_json(text, str(path), f"expected a {what}")


class PreparedDataset:
    """Read side of a prepared folder: the manifest, the collection, the preprocessing, the cases (`CaseReader`).

    Manifest entries are dicts with (at least) ``id``, ``task``, ``task_id``, ``split``, ``path``,
    ``original_spacing``, ``original_shape`` (file voxel order), ``spacing``, ``shape`` (D, H, W of the working
    grid: ``grid``, see `ccq.data.grid.entry_grid`; (z, y, x) for entries written before per-task grids),
    ``channels`` (label values per channel, null = ignored), ``foreground_voxels`` and ``foreground_bbox``
    (per channel; null for an ignored channel, bbox ``[[z0, z1], [y0, y1], [x0, x1]]`` end-exclusive).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        manifest = read_json(self.root / MANIFEST_FILE, "manifest.json")
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        if found != FORMAT_VERSION:
            older = isinstance(found, int) and not isinstance(found, bool) and found < FORMAT_VERSION
            raise CCQError(
                f"{self.root / MANIFEST_FILE}: format {limits.quote(found)}; expected {FORMAT_VERSION}"
                + (" (the folder was prepared by an older ccq: run `ccq prepare` again into a new --out folder)"
                   if older else " (prepare the data again with this version of ccq)")
            )  # fmt: skip
        self.entries: list[dict[str, Any]] = list(manifest["cases"])
        self.collection = Collection.from_dict(
            read_json(self.root / COLLECTION_FILE, "collection.json"), str(self.root / COLLECTION_FILE)
        )
        pre_path = self.root / PREPROCESSING_FILE
        pre_data = read_json(pre_path, "preprocessing.json")
        try:
            self.preprocessing = PreprocessingConfig.from_dict(pre_data)
        except CCQError as err:
            raise CCQError(f"{pre_path}: {err}") from None
        limits.check_preprocessing(self.preprocessing, str(pre_path))

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.entries)

    def cases(self, split: str | None = None, task: str | int | None = None) -> list[dict[str, Any]]:
        """Entries filtered by split ("train"/"test") and task (name or id), in manifest order."""
        if split is not None and split not in ("train", "test"):
            raise CCQError(f"split {split!r}: expected 'train' or 'test'")
        name = None if task is None else self.collection.task(task).name
        return [e for e in self.entries if (split is None or e["split"] == split) and (name in (None, e["task"]))]

    def case(self, task: str | int, case_id: str) -> dict[str, Any]:
        name = self.collection.task(task).name
        for entry in self.entries:
            if entry["task"] == name and entry["id"] == case_id:
                return entry
        raise CCQError(f"{self.root}: no prepared case {case_id!r} in task {name!r}")

    def case_dir(self, entry: Mapping[str, Any]) -> Path:
        return self.root / entry["path"]

    def _load(self, entry: Mapping[str, Any], filename: str, mmap: bool) -> np.ndarray:
        path = self.case_dir(entry) / filename
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except FileNotFoundError:
            raise CCQError(f"{path}: missing from the prepared folder; run `ccq prepare` again") from None
        except ValueError as err:
            raise CCQError(f"{path}: unreadable ({err}); delete the case folder and prepare again") from None

    def reader(self, entry: Mapping[str, Any]) -> CaseReader:
        """The case's stored arrays, opened (header and index checked) for region reads."""
        return CaseReader(self.case_dir(entry), entry, self.preprocessing)

    def image(self, entry: Mapping[str, Any], mmap: bool = True) -> np.ndarray:
        """float32 [D, H, W] on the whole working grid, windowed and scaled (a new array; ``mmap`` is kept for
        callers of format 1, which memory-mapped it)."""
        return self.reader(entry).region((0, 0, 0), entry["shape"], label=False)[0]

    def label(self, entry: Mapping[str, Any], mmap: bool = True) -> np.ndarray:
        """uint8 [D, H, W] label values on the whole working grid (a new array)."""
        return self.reader(entry).region((0, 0, 0), entry["shape"], image=False)[1]

    def locations(self, entry: Mapping[str, Any], channel: str) -> np.ndarray | None:
        """int32 [N, 3] stored foreground voxels of ``channel``; None for an ignored or empty channel."""
        if channel not in CHANNELS:
            raise CCQError(f"channel {channel!r}: expected one of {CHANNELS}")
        if not entry["foreground_voxels"].get(channel):
            return None
        shared = entry.get("dataset") is not None  # a case of a dataset that labels several tasks
        return self._load(entry, locations_file(channel, entry["task"] if shared else None), True)


class CaseReader:
    """One prepared case's stored image and label, read by regions of the whole working grid.

    ``region(start, size)`` returns what the whole grid holds there (see the module docstring): outside the crop
    box, and outside the grid (``start`` may be negative, ``start + size`` beyond ``shape``: padding), the image
    is the window's floor (air) and the label 0.
    """

    def __init__(self, case_dir: Path, entry: Mapping[str, Any], preprocessing: PreprocessingConfig) -> None:
        where = f"{case_dir / META_FILE}"
        self.shape = tuple(int(n) for n in entry["shape"])
        self.box = box_slices(entry.get("crop_box"), list(self.shape), where)
        self.images = ChunkedArray(case_dir / IMAGE_FILE)
        self.labels = ChunkedArray(case_dir / LABEL_FILE)
        box_shape = tuple(s.stop - s.start for s in self.box)
        for array, dtype in ((self.images, np.int16), (self.labels, np.uint8)):
            if array.shape != box_shape or array.dtype != dtype:
                raise CCQError(f"{array.path}: {array.dtype} {array.shape}; expected {np.dtype(dtype)} {box_shape} "
                               "(its crop box); delete the case folder and run `ccq prepare` again")  # fmt: skip
        self.hu_min, self.hu_max = float(preprocessing.hu_min), float(preprocessing.hu_max)
        self.scale = np.float32(preprocessing.hu_scale)
        self.pad = np.float32(preprocessing.hu_min / preprocessing.hu_scale)

    def region(self, start: Any, size: Any, *, image: bool = True, label: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(float32 windowed image, uint8 label) of the region [start, start + size) of the whole grid; one not
        asked for (``image``/``label`` False) is an empty array, and is not read."""
        size = tuple(int(n) for n in size)
        start = tuple(int(s) for s in start)
        img = np.full(size if image else (0, 0, 0), self.pad, dtype=np.float32)
        lab = np.zeros(size if label else (0, 0, 0), dtype=np.uint8)
        inner = [slice(max(s, b.start), min(s + n, b.stop)) for s, n, b in zip(start, size, self.box, strict=True)]
        if any(sl.start >= sl.stop for sl in inner):
            return img, lab
        local = tuple(slice(sl.start - b.start, sl.stop - b.start) for sl, b in zip(inner, self.box, strict=True))
        dst = tuple(slice(sl.start - s, sl.stop - s) for sl, s in zip(inner, start, strict=True))
        if label:
            lab[dst] = self.labels.read(local)
        if image:
            part = self.images.read(local).astype(np.float32)  # as `ccq.data.prepare.normalize_intensity`
            np.clip(part, self.hu_min, self.hu_max, out=part)
            part /= self.scale
            img[dst] = part
        return img, lab
