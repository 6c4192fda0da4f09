"""A dataset that labels several tasks, on phantoms: its images are prepared and stored once, each task gets its
own entries and channels from the same label map, sampling draws (case, task) pairs, training validates and
evaluation scores every task."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ccq.data import cache
from ccq.data.cache import PreparedDataset
from ccq.data.collection import CHANNELS, Collection
from ccq.data.phantom import case_rng, task_label_map
from ccq.data.phantom_anatomy import ANATOMY, make_case
from ccq.data.prepare import channel_lut
from ccq.data.prepare_run import prepare_collection
from ccq.data.preprocessing import PreprocessingConfig
from ccq.errors import CCQError

PRE = PreprocessingConfig(spacing=(3.0, 2.25, 2.25), patch_size=(16, 32, 32))
SHAPE = (24, 48, 48)
ABDOMEN = [f"abd_{i}" for i in range(4)]  # fully labeled: every structure of the phantom anatomy
COLON = ["colon_0", "colon_1"]  # a task with its own folder beside the dataset
TASKS = {"liver": ([1, 2, 3], [2]), "kidney": ([4, 5], None), "spleen": ([12], None)}


def _save(array_zyx: np.ndarray, affine: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(array_zyx.transpose(2, 1, 0)), affine), str(path))


def write_raw(root: Path) -> dict[str, np.ndarray]:
    """The two folders; returns each case's label map as written (z, y, x)."""
    labels = {}
    for i, case_id in enumerate(ABDOMEN + COLON):
        colon = case_id in COLON
        case = make_case(case_rng(7, "colon" if colon else "liver", i), SHAPE, (2.0, 1.5, 1.5),
                         ("colon",) if colon else ("liver",))  # fmt: skip
        label = task_label_map(case.anatomy, "colon") if colon else case.anatomy
        folder = root / ("Colon" if colon else "Abdomen")
        _save(case.image, case.affine, folder / "imagesTr" / f"{case_id}.nii.gz")
        _save(label, case.affine, folder / "labelsTr" / f"{case_id}.nii.gz")
        labels[case_id] = label
    return labels


def collection_data(tasks: dict = TASKS) -> dict:
    return {
        "name": "shared-phantom",
        "datasets": [{"name": "abdomen", "layout": "msd", "folder": "Abdomen",
                      "labels": {0: "background", **{v: k for k, v in ANATOMY.items()}},
                      "split": {"train": ABDOMEN[:3], "test": ABDOMEN[3:]}}],
        "tasks": [
            *({"name": n, "id": i + (i >= 3), "dataset": "abdomen", "organ": o, "tumor": t}
              for i, (n, (o, t)) in enumerate(tasks.items())),  # ids 0, 1, 2, then 4 ...: colon keeps 3
            {"name": "colon", "id": 3, "layout": "msd", "folder": "Colon",
             "labels": {0: "background", 1: "colon tumor"}, "organ": None, "tumor": [1],
             "split": {"train": COLON[:1], "test": COLON[1:]}},
        ],
    }  # fmt: skip


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("shared-raw")
    return root, write_raw(root)


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shared-prepared") / "prepared"
    summary = prepare_collection(Collection.from_dict(collection_data()), raw[0], out, PRE)
    assert summary.ok, summary.report()
    assert sorted(summary.done) == [*(f"abdomen/{c}" for c in ABDOMEN), *(f"colon/{c}" for c in COLON)]
    return out


def test_each_image_is_prepared_and_stored_once(prepared: Path) -> None:
    images = sorted(p.parent.relative_to(prepared).as_posix() for p in prepared.glob(f"cases/*/*/{cache.IMAGE_FILE}"))
    assert images == [*(f"cases/abdomen/{c}" for c in ABDOMEN), *(f"cases/colon/{c}" for c in COLON)]
    assert sorted(p.name for p in (prepared / "cases").iterdir()) == ["abdomen", "colon"]
    data = PreparedDataset(prepared)
    assert len(data) == 3 * len(ABDOMEN) + len(COLON)  # one entry per (case, task)
    keys = {"id", "task", "split", "original_spacing", "original_shape", "spacing", "shape", "foreground_voxels"}
    for entry in data:
        assert keys <= set(entry) and set(entry["foreground_voxels"]) == set(CHANNELS)
    for case_id in ABDOMEN:
        entries = [e for e in data if e["id"] == case_id]
        assert [e["task"] for e in entries] == list(TASKS)
        assert {e["path"] for e in entries} == {f"cases/abdomen/{case_id}"} and {e["dataset"] for e in entries} == {
            "abdomen"
        }
        assert {e["split"] for e in entries} == {"test" if case_id == ABDOMEN[3] else "train"}
    assert all("dataset" not in e and e["path"] == f"cases/colon/{e['id']}" for e in data.cases(task="colon"))
    manifest = json.loads((prepared / cache.MANIFEST_FILE).read_text())
    assert manifest["complete"] and [(e["task_id"], e["id"]) for e in manifest["cases"]] == sorted(
        (e["task_id"], e["id"]) for e in manifest["cases"]
    )


def test_each_task_takes_its_channels_from_the_shared_label_map(prepared: Path, raw) -> None:
    data = PreparedDataset(prepared)
    for case_id in ABDOMEN:
        label = data.label(data.case("liver", case_id))
        source = raw[1][case_id]
        for task, (organ, tumor) in TASKS.items():
            entry = data.case(task, case_id)
            assert np.array_equal(data.label(entry), label)
            for channel, values in (("organ", organ), ("tumor", tumor)):
                if values is None:
                    assert entry["foreground_voxels"][channel] is None and data.locations(entry, channel) is None
                    continue
                mask = channel_lut(values)[label]
                assert entry["foreground_voxels"][channel] == int(mask.sum()) > 0
                locations = data.locations(entry, channel)
                assert locations is not None and mask[tuple(locations.T)].all()
                # The organ's volume (mL) against the label map as written, before resampling (nearest
                # neighbour onto a grid 1.5x coarser: organs of about 1 mL move by up to ~20%; the tumors, of a
                # few voxels, by more). The real CT's organs are checked within 5% (tests/data/test_real_ct_tasks).
                source_ml = np.isin(source, values).sum() * float(np.prod(_spacing(raw[0], case_id))) / 1000
                if channel == "organ":
                    assert entry["foreground_ml"][channel] == pytest.approx(source_ml, rel=0.3)
        assert data.case("liver", case_id)["foreground_voxels"] != data.case("spleen", case_id)["foreground_voxels"]


def _spacing(root: Path, case_id: str) -> tuple[float, ...]:
    return tuple(float(z) for z in nib.load(root / "Abdomen" / "labelsTr" / f"{case_id}.nii.gz").header.get_zooms())


def test_a_second_run_skips_and_tasks_can_be_listed_one_by_one(prepared: Path, raw, tmp_path: Path) -> None:
    col = Collection.from_dict(collection_data())
    before = (prepared / cache.MANIFEST_FILE).read_text()
    summary = prepare_collection(col, raw[0], prepared, PRE)
    assert summary.done == [] and len(summary.skipped) == len(ABDOMEN) + len(COLON)
    assert (prepared / cache.MANIFEST_FILE).read_text() == before

    out = tmp_path / "one-by-one"
    summary = prepare_collection(col, raw[0], out, PRE, tasks=["kidney"])
    assert summary.done == [f"abdomen/{c}" for c in ABDOMEN]
    assert {e["task"] for e in PreparedDataset(out)} == {"kidney"}
    summary = prepare_collection(col, raw[0], out, PRE, tasks=["spleen", "liver"])
    assert summary.done == [] and summary.skipped == [f"abdomen/{c}" for c in ABDOMEN]  # the image is there
    assert sorted({e["task"] for e in PreparedDataset(out)}) == ["kidney", "liver", "spleen"]
    assert len(list(out.glob(f"cases/*/*/{cache.IMAGE_FILE}"))) == len(ABDOMEN)


def test_a_dataset_cannot_gain_a_task_in_a_folder_prepared_without_it(prepared: Path, raw) -> None:
    more = collection_data({**TASKS, "pancreas": ([6, 7], [7])})
    expected = "dataset 'abdomen' was prepared for tasks ['kidney', 'liver', 'spleen']; now ['kidney', 'liver', "
    with pytest.raises(CCQError, match=re.escape(expected + "'pancreas', 'spleen']. Use another --out")):
        prepare_collection(Collection.from_dict(more), raw[0], prepared, PRE)
    solo = collection_data()
    solo["tasks"][0] = {"name": "liver", "id": 0, "layout": "msd", "folder": "Abdomen",
                        "labels": solo["datasets"][0]["labels"], "organ": [1, 2, 3], "tumor": [2]}  # fmt: skip
    with pytest.raises(CCQError, match="task 'liver' was prepared with dataset='abdomen'; now None"):
        prepare_collection(Collection.from_dict(solo), raw[0], prepared, PRE)


def test_tasks_of_a_dataset_need_one_working_grid(raw, tmp_path: Path) -> None:
    pre = PRE.replace(task_grids={"spleen": {"spacing": [2.0, 2.0, 2.0]}})
    with pytest.raises(CCQError, match="tasks 'liver' and 'spleen' share dataset 'abdomen' but have different"):
        prepare_collection(Collection.from_dict(collection_data()), raw[0], tmp_path / "out", pre)
    assert not (tmp_path / "out").exists()


def test_sampling_draws_case_task_pairs_with_each_tasks_weight(prepared: Path) -> None:
    from ccq.data.sampling import PatchSampler, SamplingConfig

    data = PreparedDataset(prepared)
    config = SamplingConfig().without_augmentation()
    for weighting, expected in (("cases", [3, 3, 3, 1]), ("balanced", [1, 1, 1, 1])):
        sampler = PatchSampler(data, PRE.patch_size, config.replace(task_weighting=weighting), seed=0)
        assert sampler.task_probs.tolist() == pytest.approx([e / sum(expected) for e in expected])
    sampler = PatchSampler(data, PRE.patch_size, config, seed=3)
    seen: dict[str, set[str]] = {}
    for i in range(60):
        sample = sampler.sample(i)
        task, case_id = sample.case.split("/")
        seen.setdefault(task, set()).add(case_id)
        entry = data.case(task, case_id)
        assert sample.task_id == entry["task_id"] and sample.labeled == tuple(
            v is not None for v in entry["channels"].values()
        )
        # The target is this task's: its channel values applied to the shared label map's crop.
        label = _crop(np.asarray(data.label(entry)), sample.origin, PRE.patch_size)
        for c, channel in enumerate(CHANNELS):
            lut = channel_lut(entry["channels"][channel])
            assert (sample.target[c] == -1).all() if lut is None else np.array_equal(sample.target[c], lut[label])
    assert set(seen) == {*TASKS, "colon"} and seen["liver"] <= set(ABDOMEN[:3])


def _crop(full: np.ndarray, start, size) -> np.ndarray:
    out = np.zeros(size, dtype=full.dtype)
    src = tuple(slice(max(s, 0), min(s + n, m)) for s, n, m in zip(start, size, full.shape, strict=True))
    dst = tuple(slice(sl.start - s, sl.stop - s) for sl, s in zip(src, start, strict=True))
    out[dst] = full[src]
    return out


def test_training_validates_and_evaluation_scores_every_task(prepared: Path, raw, tmp_path: Path) -> None:
    from ccq.evaluation.evaluate import evaluate_folder
    from ccq.reproduce import evaluate_row
    from ccq.training.config import get_train_preset
    from ccq.training.trainer import Trainer

    config = get_train_preset("demo").replace(model="tiny", model_overrides={}, iterations=2, val_every=2,
                                              save_every=2, tensorboard=False, val_batch_size=4)  # fmt: skip
    result = Trainer(config, prepared, tmp_path / "run", progress=False, echo=lambda _: None).fit()
    # The tasks of the dataset hold out the same case (keyed by the dataset), the colon task none (1 train case).
    held = {key.split("/")[1] for key in result.val_cases}
    assert len(held) == 1 and sorted(result.val_cases) == sorted(f"{t}/{min(held)}" for t in TASKS)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    val = [r for r in records if r.get("kind") == "val"][-1]
    assert set(val["categories"]) == {"liver/organ", "liver/tumor", "kidney/organ", "spleen/organ"}

    summary = evaluate_row(result.best or result.last, prepared, tmp_path / "eval", tta=False, device="cpu")
    assert set(summary["categories"]) == {"liver/organ", "liver/tumor", "kidney/organ", "spleen/organ",
                                          "colon/tumor"}  # fmt: skip
    assert {r["case"] for r in summary["cases"] if r["category"] != "colon/tumor"} == {ABDOMEN[3]}

    # `ccq evaluate` against the prepared folder: perfect predictions (each task's channels written in its own
    # convention from the label map) score 1 for every task of the shared case.
    col = PreparedDataset(prepared).collection
    pred = tmp_path / "pred"
    root, labels = raw
    affine = nib.load(root / "Abdomen" / "labelsTr" / f"{ABDOMEN[3]}.nii.gz").affine
    for task in col.tasks:
        if task.dataset is None:
            continue
        organ, tumor = task.channel_targets(labels[ABDOMEN[3]])
        _save(task.to_output_labels(organ, tumor), affine, pred / ABDOMEN[3] / f"{task.name}.nii.gz")
    for task in ("liver", "kidney", "spleen"):  # nearest-neighbour resampling of the prediction: within 1%
        scores = evaluate_folder(pred, prepared, task=task, cases=[ABDOMEN[3]], write=False)
        assert set(scores["categories"]) == {c for c in summary["categories"] if c.startswith(f"{task}/")}
        assert all(v["dice"] > 0.99 for v in scores["categories"].values())
    # Each task is scored against its own channel of the shared label map: the kidney mask is no spleen.
    (pred / ABDOMEN[3] / "kidney.nii.gz").replace(pred / ABDOMEN[3] / "spleen.nii.gz")
    spleen = evaluate_folder(pred, prepared, task="spleen", cases=[ABDOMEN[3]], write=False)
    assert spleen["categories"]["spleen/organ"]["dice"] < 0.1
