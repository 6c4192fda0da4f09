"""`prepare_collection`: public raw layouts in, a resumable compact cache and a manifest out."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ccq.data import cache
from ccq.data.cache import PreparedDataset
from ccq.data.collection import Collection
from ccq.data.prepare_run import prepare_collection
from ccq.data.preprocessing import PreprocessingConfig
from ccq.errors import CCQError
from ccq.utils import fs

PRE = PreprocessingConfig(spacing=(3.0, 2.0, 2.0), patch_size=(16, 32, 32))
MSD_AFFINE = np.array([[-1.5, 0, 0, 40], [0, -1.5, 0, 30], [0, 0, 3.0, -20], [0, 0, 0, 1.0]])
# KiTS19 headers: slices on the first voxel axis, pointing inferior.
KITS_AFFINE = np.array([[0, 0, -1.5, 40], [0, -1.5, 0, 30], [-3.0, 0, 0, 20], [0, 0, 0, 1.0]])
DEAD_PID = 2**22 + 12345  # above the default pid_max, so no such process
MANIFEST_KEYS = {
    "id",
    "task",
    "split",
    "original_spacing",
    "original_shape",
    "spacing",
    "shape",
    "foreground_voxels",
}


def _volume(seed: int, shape: tuple[int, int, int], tumor: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like image (HU) and a label map with an organ ball (1) holding a tumour ball (2)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    r = np.sqrt((grid**2).sum(0))
    label = (r < 0.6).astype(np.uint8)
    if tumor:
        label[np.sqrt(((grid - 0.2) ** 2).sum(0)) < 0.2] = 2
    image = np.where(label > 0, 60.0 + 40 * label, -800.0) + rng.normal(0, 10, shape)
    return image.astype(np.int16), label


def _save(path: Path, data: np.ndarray, affine: np.ndarray = MSD_AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def make_msd(root: Path, folder: str, cases: list[str], shape=(24, 24, 10), nnunet_names=False) -> Path:
    base = root / folder
    for i, case in enumerate(cases):
        image, label = _volume(i, shape)
        _save(base / "imagesTr" / (f"{case}_0000.nii.gz" if nnunet_names else f"{case}.nii.gz"), image)
        _save(base / "labelsTr" / f"{case}.nii.gz", label)
    (base / "imagesTr" / f"._{cases[0]}.nii.gz").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    (base / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "organ", "2": "tumour"}}))
    return base


def make_kits(root: Path, folder: str, n_labeled: int, n_unlabeled: int = 1, shape=(10, 24, 24)) -> Path:
    base = root / folder
    for i in range(n_labeled + n_unlabeled):
        image, label = _volume(100 + i, shape)
        _save(base / f"case_{i:05d}" / "imaging.nii.gz", image, KITS_AFFINE)
        if i < n_labeled:
            _save(base / f"case_{i:05d}" / "segmentation.nii.gz", label, KITS_AFFINE)
    return base


def collection(split_test: list[str] | None = None) -> Collection:
    labels = {0: "background", 1: "organ", 2: "tumour"}
    organ = {
        "name": "organ",
        "id": 0,
        "layout": "msd",
        "folder": "Task01_Organ",
        "labels": labels,
        "organ": [1, 2],
        "tumor": [2],
    }
    if split_test is not None:
        organ["split"] = {"test": split_test}
    kid = {
        "name": "kid",
        "id": 1,
        "layout": "kits",
        "folder": "kits19/data",
        "labels": labels,
        "organ": None,
        "tumor": [2],
    }
    return Collection.from_dict({"name": "test", "tasks": [organ, kid]})


def test_prepare_two_layouts_manifest_and_reader(tmp_path: Path) -> None:
    make_msd(tmp_path / "raw", "Task01_Organ", ["org_1", "org_2", "org_3"], nnunet_names=True)
    make_kits(tmp_path / "raw", "kits19/data", n_labeled=2)
    out = tmp_path / "out"
    summary = prepare_collection(collection(split_test=["org_2"]), tmp_path / "raw", out, PRE)
    assert summary.ok and len(summary.done) == 5 and summary.unlabeled == ["kid/case_00002"]

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and len(manifest["cases"]) == 5
    for entry in manifest["cases"]:
        assert MANIFEST_KEYS <= set(entry)
    by_id = {e["id"]: e for e in manifest["cases"]}
    assert by_id["org_2"]["split"] == "test" and by_id["org_1"]["split"] == "train"
    assert by_id["org_1"]["original_shape"] == [24, 24, 10] and by_id["org_1"]["original_spacing"] == [
        1.5,
        1.5,
        3,
    ]
    assert by_id["case_00000"]["original_shape"] == [10, 24, 24]
    assert by_id["case_00000"]["shape"] == by_id["org_1"]["shape"] == [10, 18, 18]
    assert by_id["case_00000"]["foreground_voxels"]["organ"] is None  # ignored channel
    assert by_id["org_1"]["foreground_voxels"]["organ"] > by_id["org_1"]["foreground_voxels"]["tumor"] > 0

    data = PreparedDataset(out)
    assert data.collection.task_names == ("organ", "kid") and data.preprocessing == PRE
    assert [e["id"] for e in data.cases(split="test")] == ["org_2"]
    assert len(data.cases(split="train", task="kid")) == 2
    entry = data.case("organ", "org_1")
    image, label = data.image(entry), data.label(entry)
    assert image.dtype == np.float32 and image.shape == tuple(entry["shape"])  # the whole grid (format 2: decoded)
    assert label.dtype == np.uint8 and set(np.unique(label)) == {0, 1, 2}
    locs = data.locations(entry, "tumor")
    assert locs.shape == (entry["foreground_voxels"]["tumor"], 3)
    assert np.all(label[tuple(locs.T)] == 2)
    assert data.locations(data.case("kid", "case_00000"), "organ") is None


def test_second_run_skips_and_leftover_temporary_is_not_a_case(tmp_path: Path) -> None:
    make_msd(tmp_path / "raw", "Task01_Organ", ["org_1", "org_2"])
    make_kits(tmp_path / "raw", "kits19/data", n_labeled=1, n_unlabeled=0)
    out = tmp_path / "out"
    assert len(prepare_collection(collection(), tmp_path / "raw", out, PRE).done) == 3
    # Simulate an interrupted run: org_2 never got renamed into place, a half-written temporary remains.
    case_dir = out / cache.case_relpath("organ", "org_2")
    os.rename(case_dir, case_dir.parent / f".org_2.tmp-{DEAD_PID}-deadbeef")
    (case_dir.parent / f".org_2.tmp-{DEAD_PID}-deadbeef" / "meta.json").unlink()
    data = PreparedDataset(out)  # the old manifest still lists it, but the next run must redo it
    assert len(data) == 3
    summary = prepare_collection(collection(), tmp_path / "raw", out, PRE)
    assert summary.done == ["organ/org_2"] and sorted(summary.skipped) == ["kid/case_00000", "organ/org_1"]
    assert not list(case_dir.parent.glob(".*tmp*"))
    assert len(PreparedDataset(out)) == 3
    # Another spacing into the same folder would mix grids: refused.
    with pytest.raises(CCQError, match="prepared with"):
        prepare_collection(collection(), tmp_path / "raw", out, PreprocessingConfig(spacing=(2.0, 2.0, 2.0)))


def _break(kind: str, base: Path, case: str) -> str:
    """Damage one case of an MSD tree in the way ``kind`` says; returns the expected message fragment."""
    img, lab = base / "imagesTr" / f"{case}.nii.gz", base / "labelsTr" / f"{case}.nii.gz"
    image, label = _volume(7, (24, 24, 10))
    if kind == "truncated":
        raw = img.read_bytes()
        img.write_bytes(raw[: len(raw) // 2])
        return "cannot read the voxels of image"
    if kind == "not_nifti":
        with gzip.open(img, "wb") as f:
            f.write(b"hello, this is not an image" * 20)
        return "cannot read image"
    if kind == "2d":
        _save(img, image[:, :, 0])
        return "expected a 3D volume"
    if kind == "4d":
        _save(img, np.stack([image, image], axis=-1))
        return "expected a 3D volume"
    if kind == "shape":
        _save(lab, label[:, :, :9])
        return r"image shape \(24, 24, 10\) != label shape \(24, 24, 9\)"
    if kind == "geometry":
        shifted = MSD_AFFINE.copy()
        shifted[:3, 3] += 5.0
        _save(lab, label, shifted)
        return "image and label affines differ by"
    if kind == "label_value":
        label[0, 0, 0] = 9
        _save(lab, label)
        return r"label value\(s\) \[9\]"
    if kind == "nan":
        _save(img, np.where(label > 0, np.nan, image.astype(np.float32)))
        return "NaN/inf voxels"
    if kind == "constant":
        _save(img, np.full(image.shape, -1000, np.int16))
        return "is constant"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["truncated", "not_nifti", "2d", "4d", "shape", "geometry", "label_value", "nan", "constant"]
)
def test_bad_input_is_one_line_naming_the_case(tmp_path: Path, kind: str) -> None:
    base = make_msd(tmp_path / "raw", "Task01_Organ", ["org_1", "org_bad"])
    make_kits(tmp_path / "raw", "kits19/data", n_labeled=1, n_unlabeled=0)
    fragment = _break(kind, base, "org_bad")
    with pytest.raises(CCQError, match=fragment) as info:
        prepare_collection(collection(), tmp_path / "raw", tmp_path / "out", PRE)
    message = str(info.value)
    assert "org_bad" in message and "\n" not in message


def test_keep_going_lists_failures_and_finishes_the_rest(tmp_path: Path) -> None:
    base = make_msd(tmp_path / "raw", "Task01_Organ", ["org_1", "org_2", "org_3", "org_4"])
    make_kits(tmp_path / "raw", "kits19/data", n_labeled=1, n_unlabeled=0)
    _break("nan", base, "org_2")
    _break("label_value", base, "org_4")
    out = tmp_path / "out"
    summary = prepare_collection(collection(), tmp_path / "raw", out, PRE, workers=2, keep_going=True)
    assert sorted(summary.done) == ["kid/case_00000", "organ/org_1", "organ/org_3"]
    assert [case for case, _ in sorted(summary.failed)] == ["organ/org_2", "organ/org_4"]
    assert not summary.ok and "FAILED organ/org_2: case org_2:" in summary.report()
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and len(manifest["cases"]) == 3 and len(manifest["failed"]) == 2


def test_missing_dataset_folder_names_the_task(tmp_path: Path) -> None:
    make_msd(tmp_path / "raw", "Task01_Organ", ["org_1"])
    with pytest.raises(CCQError, match=r"task 'kid': no folder .*kits19/data.*--folders"):
        prepare_collection(collection(), tmp_path / "raw", tmp_path / "out", PRE)
    summary = prepare_collection(collection(), tmp_path / "raw", tmp_path / "out", PRE, keep_going=True)
    assert summary.done == ["organ/org_1"] and summary.failed[0][0] == "kid"
    make_kits(tmp_path / "raw", "KiTS-2019 download", n_labeled=1, n_unlabeled=0)
    folders = {"kid": "KiTS-2019 download"}
    summary = prepare_collection(collection(), tmp_path / "raw", tmp_path / "out2", PRE, folders=folders)
    assert sorted(summary.done) == ["kid/case_00000", "organ/org_1"]
    stored = json.loads((tmp_path / "out2" / "collection.json").read_text())
    assert stored["tasks"][1]["folder"] == "KiTS-2019 download"
    with pytest.raises(CCQError, match="no task 'kidd'; did you mean 'kid'"):
        prepare_collection(collection(), tmp_path / "raw", tmp_path / "out3", PRE, folders={"kidd": "x"})


def test_temporaries_of_a_running_prepare_are_kept(tmp_path: Path) -> None:
    """Two `ccq prepare` runs on one OUT: the second must not delete what the first is writing."""
    case_parent = tmp_path / "cases" / "organ"
    case_parent.mkdir(parents=True)
    live, dead, mine = os.getppid(), DEAD_PID, os.getpid()  # our parent runs; our own pid wrote nothing yet
    for pid in (live, dead, mine):
        (case_parent / f".org_1.tmp-{pid}-0123abcd").mkdir()
        (tmp_path / f".manifest.json.tmp-{pid}-0123abcd").write_text("{")
    (tmp_path / ".manifest.json.tmp-0123abcd").write_text("{")  # an older ccq's name, without a pid
    assert cache.remove_temporaries(tmp_path) == 5
    assert sorted(p.name for p in tmp_path.glob(".*")) == [f".manifest.json.tmp-{live}-0123abcd"]
    assert [p.name for p in case_parent.iterdir()] == [f".org_1.tmp-{live}-0123abcd"]
    # What this version writes carries the writer's pid.
    fs.write_json_atomic(tmp_path / "x.json", {"score": float("nan")}, indent=cache.JSON_INDENT)
    assert json.loads((tmp_path / "x.json").read_text()) == {"score": None}


def _job(task_name: str, image, label, case_id: str = "c1"):
    from ccq.data.prepare_run import _Job

    return _Job(collection().task(task_name), case_id, "train", image, label)


def test_job_errors_name_the_case_and_os_errors_are_one_line(tmp_path: Path) -> None:
    from ccq.data.prepare_run import _run_job

    image, label = _volume(0, (24, 24, 10))
    singular = np.zeros((4, 4))
    # to_canonical knows no case: the runner adds it.
    status, message = _run_job(_job("organ", (image, singular), None), tmp_path / "out", PRE)
    assert status == "failed" and message.startswith("case organ/c1: to_canonical: affine")
    (tmp_path / "file").write_text("not a folder")
    status, message = _run_job(_job("organ", (image, MSD_AFFINE), (label, MSD_AFFINE)), tmp_path / "file", PRE)
    assert status == "failed" and message.startswith(f"case organ/c1: {tmp_path / 'file'}") and "\n" not in message
    # Messages that already name the case are kept as they are.
    status, message = _run_job(_job("organ", (image, MSD_AFFINE), (label, MSD_AFFINE[:, ::-1])), tmp_path, PRE)
    assert status == "failed" and message.startswith("case c1: image and label affines differ")


def test_unwritable_output_is_a_listed_failure(tmp_path: Path) -> None:
    make_msd(tmp_path / "raw", "Task01_Organ", ["org_1"])
    make_kits(tmp_path / "raw", "kits19/data", n_labeled=1, n_unlabeled=0)
    out = tmp_path / "out"
    (out / "cases").mkdir(parents=True)
    (out / "cases" / "organ").write_text("a file where the task folder goes")  # as a full or read-only disk
    with pytest.raises(CCQError, match=r"^case organ/org_1: .*cases/organ: File exists$"):
        prepare_collection(collection(), tmp_path / "raw", out, PRE)
    summary = prepare_collection(collection(), tmp_path / "raw", out, PRE, keep_going=True)
    assert summary.done == ["kid/case_00000"] and [c for c, _ in summary.failed] == ["organ/org_1"]
    assert "FAILED organ/org_1: case organ/org_1: " in summary.report()


def test_bad_preprocessing_json_names_the_file(tmp_path: Path) -> None:
    make_msd(tmp_path / "raw", "Task01_Organ", ["org_1"])
    make_kits(tmp_path / "raw", "kits19/data", n_labeled=1, n_unlabeled=0)
    out = tmp_path / "out"
    assert prepare_collection(collection(), tmp_path / "raw", out, PRE).ok
    (out / "preprocessing.json").write_text(json.dumps({**PRE.to_dict(), "spacing": 3.0}))
    with pytest.raises(
        CCQError,
        match=rf"^{out / 'preprocessing.json'}: preprocessing: spacing: expected a list of 3 numbers, got 3.0$",
    ):
        PreparedDataset(out)


def _real_data() -> Path | None:
    env = os.environ.get("CCQ_TEST_DATA")
    base = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    folder = base / "real-ct"
    return folder if (folder / "example_ct.nii.gz").is_file() else None


@pytest.mark.skipif(_real_data() is None, reason="real CT not found (set CCQ_TEST_DATA)")
def test_real_ct_through_a_user_collection(tmp_path: Path) -> None:
    src = _real_data()
    assert src is not None
    raw = tmp_path / "raw" / "TotalSeg"
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    os.symlink(src / "example_ct.nii.gz", raw / "imagesTr" / "ct_0.nii.gz")
    os.symlink(src / "example_seg_fast_force_split.nii.gz", raw / "labelsTr" / "ct_0.nii.gz")
    labels = {0: "background"}
    for line in (src / "label_map_total_v2.tsv").read_text().splitlines():
        value, name = line.split("\t")
        labels[int(value)] = name.strip()
    organs = {"liver": [5], "spleen": [1], "kidney": [2, 3], "pancreas": [7]}
    col = Collection.from_dict(
        {
            "name": "real",
            "tasks": [
                {
                    "name": n,
                    "id": i,
                    "layout": "msd",
                    "folder": "TotalSeg",
                    "labels": labels,
                    "organ": v,
                    "tumor": None,
                }
                for i, (n, v) in enumerate(organs.items())
            ],
        }
    )
    pre = PreprocessingConfig(spacing=(2.5, 1.6, 1.6))  # coarser than official: keeps the test fast
    out = tmp_path / "out"
    assert prepare_collection(col, tmp_path / "raw", out, pre).ok

    seg = np.asarray(nib.load(src / "example_seg_fast_force_split.nii.gz").dataobj)
    hu = np.asarray(nib.load(src / "example_ct.nii.gz").dataobj)
    data = PreparedDataset(out)
    for name, values in organs.items():
        entry = data.case(name, "ct_0")
        assert entry["original_spacing"] == [3.0, 3.0, 3.0] and entry["spacing"] == [2.5, 1.6, 1.6]
        assert entry["shape"] == [
            134,
            189,
            229,
        ]  # 112 x 3 / 2.5, 101 x 3 / 1.6, 122 x 3 / 1.6 (RAS -> z, y, x)
        source_ml = np.isin(seg, values).sum() * 27 / 1000
        assert entry["foreground_ml"]["organ"] == pytest.approx(source_ml, rel=0.05)
        image = data.image(entry)
        assert image.min() == -1.0 and image.max() == 1.0
        inside = np.isin(data.label(entry), values)
        expected = np.clip(hu[np.isin(seg, values)], -325, 325).mean() / 325
        assert float(image[inside].mean()) == pytest.approx(expected, abs=0.03)


def test_prepare_only_some_tasks_keeps_the_whole_collection_and_the_other_cases(tmp_path: Path) -> None:
    make_msd(tmp_path / "raw", "Task01_Organ", ["org_1", "org_2"])
    out = tmp_path / "out"
    # The kidney folder does not exist: only the organ task is asked for.
    summary = prepare_collection(collection(), tmp_path / "raw", out, PRE, tasks=["organ"])
    assert summary.ok and sorted(summary.done) == ["organ/org_1", "organ/org_2"]
    data = PreparedDataset(out)
    assert data.collection.task_names == ("organ", "kid") and {e["task"] for e in data} == {"organ"}
    assert json.loads((out / "manifest.json").read_text())["complete"]

    make_kits(tmp_path / "raw", "kits19/data", n_labeled=1, n_unlabeled=0)
    summary = prepare_collection(collection(), tmp_path / "raw", out, PRE, tasks=["kid"])
    assert summary.done == ["kid/case_00000"]
    assert sorted(f"{e['task']}/{e['id']}" for e in PreparedDataset(out)) == [
        "kid/case_00000", "organ/org_1", "organ/org_2"]  # fmt: skip
    with pytest.raises(CCQError, match="has no task 'organs'; did you mean 'organ'"):
        prepare_collection(collection(), tmp_path / "raw", out, PRE, tasks=["organs"])


def test_a_failed_run_leaves_no_index_and_stale_index_files_do_not_bind(tmp_path: Path) -> None:
    make_msd(tmp_path / "raw", "Task01_Organ", ["org_1"])
    out = tmp_path / "out"
    with pytest.raises(CCQError, match="task 'kid': no folder"):  # kits19/data is missing: fails while planning
        prepare_collection(collection(), tmp_path / "raw", out, PRE)
    assert not out.exists()  # made by the run, nothing prepared: removed again
    out.mkdir()
    fs.write_json_atomic(out / cache.PREPROCESSING_FILE, {**PRE.to_dict(), "spacing": [9.0, 9.0, 9.0]})
    make_kits(tmp_path / "raw", "kits19/data", n_labeled=1, n_unlabeled=0)
    summary = prepare_collection(collection(), tmp_path / "raw", out, PRE)  # the stale file describes no case
    assert summary.ok and json.loads((out / cache.PREPROCESSING_FILE).read_text())["spacing"] == list(PRE.spacing)


def test_workers_that_would_run_out_of_memory_are_refused_before_any_case(tmp_path: Path, monkeypatch) -> None:
    from ccq import limits
    from ccq.data.prepare import BASE_MEMORY, estimate_memory

    make_msd(tmp_path / "raw", "Task01_Organ", ["org_1", "org_2", "org_3"])
    make_kits(tmp_path / "raw", "kits19/data", n_labeled=2, n_unlabeled=0)
    image = tmp_path / "raw" / "Task01_Organ" / "imagesTr" / "org_1.nii.gz"
    need = estimate_memory(image, image.parent.parent / "labelsTr" / "org_1.nii.gz", PRE)
    assert BASE_MEMORY < need < BASE_MEMORY + 2**20  # 24 x 24 x 10 voxels: about the interpreter alone
    monkeypatch.setattr(limits, "available_memory", lambda: int(2.5 * need))
    out = tmp_path / "out"
    expected = (
        r"^--workers 3: preparing the 3 largest cases at once needs about .* GiB of memory \(the largest, "
        r".*\), and .* GiB is available; expected --workers 2 or fewer"
    )
    with pytest.raises(CCQError, match=expected):
        prepare_collection(collection(), tmp_path / "raw", out, PRE, workers=3)
    assert not out.exists()  # refused before anything was written


def test_task_grids_must_name_tasks_and_a_folder_keeps_its_grids(tmp_path: Path) -> None:
    from ccq.data.grid import Grid

    make_msd(tmp_path / "raw", "Task01_Organ", ["org_1"])
    make_kits(tmp_path / "raw", "kits19/data", n_labeled=1, n_unlabeled=0)
    out = tmp_path / "out"
    misspelt = PRE.replace(task_grids={"kidney": Grid(spacing=(2.0, 2.0, 2.0), axes="IPL")})
    with pytest.raises(CCQError, match=r"^preprocessing: task_grids names task\(s\) \['kidney'\]; expected task"):
        prepare_collection(collection(), tmp_path / "raw", out, misspelt)
    assert not out.exists()
    grids = PRE.replace(task_grids={"kid": Grid(spacing=(2.0, 2.0, 2.0), axes="IPL")})
    assert prepare_collection(collection(), tmp_path / "raw", out, grids).ok
    assert PreparedDataset(out).preprocessing == grids
    with pytest.raises(CCQError, match="this folder was prepared with"):  # one folder, one set of grids
        prepare_collection(collection(), tmp_path / "raw", out, PRE)
