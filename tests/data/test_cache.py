"""The prepared cache (format 2: int16 HU cropped to the body, compressed chunks) against what format 1 stored.

Format 1 kept the whole working grid as float32, windowed: ``normalize_intensity(resample(to_canonical(CT)))``
(still `ccq.data.prepare.preprocess_image`, which inference uses) and the label resampled nearest. Here both are
computed from the raw phantoms and set against what the new cache gives to every reader: whole volumes (validation,
``ccq reproduce``, ``ccq evaluate`` against a prepared folder), training crops, and predictions made from them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ccq.data import cache, geometry
from ccq.data.cache import PreparedDataset
from ccq.data.collection import find_cases
from ccq.data.phantom import generate_collection
from ccq.data.prepare import prepare_case, preprocess_image
from ccq.data.prepare_run import prepare_collection
from ccq.data.preprocessing import PreprocessingConfig
from ccq.data.sampling import PatchSampler, SamplingConfig
from ccq.errors import CCQError

PRE = PreprocessingConfig(spacing=(3.0, 2.25, 2.25), patch_size=(16, 32, 32))
ROUNDING = 0.5 / PRE.hu_scale + 1e-6  # half an HU, windowed


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A prepared phantom folder and, per "task/case", the (image, label) format 1 would have stored."""
    root = tmp_path_factory.mktemp("cache")
    collection = generate_collection(root / "raw", cases_per_task=2, test_cases_per_task=1, seed=1,
                                     tasks=("liver", "colon", "spleen"), shape=(24, 48, 48))  # fmt: skip
    assert prepare_collection(collection, None, root / "prepared", PRE).ok
    reference = {}
    for task in collection.tasks:
        for case in find_cases(task, collection.dataset_dir(task)):
            image, affine = geometry.load_nifti(case.image, what="image", case=case.case_id)
            label, _ = geometry.load_nifti(case.label, what="label", case=case.case_id, as_float=False)
            windowed, info = preprocess_image(image, affine, PRE)
            canon, _ = geometry.to_canonical(label.astype(np.uint8), affine)
            resampled = geometry.resample(canon, info.spacing, PRE.spacing, order=0, shape=windowed.shape)
            reference[f"{task.name}/{case.case_id}"] = (windowed, resampled)
    return root / "prepared", reference


def _key(entry: dict) -> str:
    return f"{entry['task']}/{entry['id']}"


def test_whole_volumes_equal_format_1_up_to_rounding(tree) -> None:
    root, reference = tree
    data = PreparedDataset(root)
    assert len(data) == len(reference) == 6
    cropped = 0
    for entry in data:
        image, label = reference[_key(entry)]
        assert entry["shape"] == list(image.shape)  # the whole working grid, as before
        got = data.image(entry)
        assert got.dtype == np.float32 and got.shape == image.shape
        assert np.abs(got - image).max() <= ROUNDING  # rounding to integer HU only
        assert np.array_equal(data.label(entry), label)  # labels exact
        assert entry["foreground_voxels"]["organ"] in (None, int(np.isin(label, entry["channels"]["organ"]).sum()))
        box = cache.box_slices(entry["crop_box"], entry["shape"], "test")
        outside = np.ones(image.shape, bool)
        outside[box] = False
        assert np.all(image[outside] == np.float32(PRE.hu_min / PRE.hu_scale)) and not label[outside].any()
        cropped += np.count_nonzero(outside) > 0
    assert cropped == len(data)  # every phantom has air around its body: each case was cropped


def test_regions_match_the_whole_grid_with_padding(tree) -> None:
    root, _ = tree
    data = PreparedDataset(root)
    entry = data.entries[0]
    image, label = data.image(entry), data.label(entry)
    pad = np.float32(PRE.hu_min / PRE.hu_scale)
    big_image = np.pad(image, 60, constant_values=pad)
    big_label = np.pad(label, 60)
    reader = data.reader(entry)
    rng = np.random.default_rng(0)
    for _ in range(30):
        size = tuple(int(n) for n in rng.integers(1, 50, 3))
        start = tuple(int(s) for s in rng.integers(-30, np.array(entry["shape"]) + 5))
        got_image, got_label = reader.region(start, size)
        window = tuple(slice(s + 60, s + 60 + n) for s, n in zip(start, size, strict=True))
        assert np.array_equal(got_image, big_image[window]) and np.array_equal(got_label, big_label[window])


@pytest.mark.parametrize("augment", [False, True])
def test_training_samples_equal_format_1_up_to_rounding(tree, augment: bool) -> None:
    """The same stream of samples (placement, augmentation) from the new cache and from format 1's arrays."""
    root, reference = tree
    data = PreparedDataset(root)
    config = SamplingConfig() if augment else SamplingConfig().without_augmentation()
    new = PatchSampler(data, PRE.patch_size, config, seed=3)
    old = PatchSampler(data, PRE.patch_size, config, seed=3)

    def old_crop(entry, start, size):  # format 1's reader: crops of the whole arrays, padded
        image, label = reference[_key(entry)]
        src = tuple(slice(max(s, 0), min(s + c, n)) for s, c, n in zip(start, size, image.shape, strict=True))
        dst = tuple(slice(sl.start - s, sl.stop - s) for sl, s in zip(src, start, strict=True))
        out_image = np.full(size, old.image_pad, dtype=np.float32)
        out_label = np.zeros(size, dtype=np.uint8)
        out_image[dst], out_label[dst] = image[src], label[src]
        return out_image, out_label

    old._crop = old_crop
    for i in range(12):
        a, b = new.sample(i), old.sample(i)
        assert a.origin == b.origin and a.case == b.case and np.array_equal(a.target, b.target)
        # Augmentation scales intensities by at most ~1.5 (and gamma is smooth): still within a few rounding steps.
        assert np.abs(a.image - b.image).max() <= (4 if augment else 1) * ROUNDING


def test_predictions_from_the_cache_equal_format_1_up_to_rounding(tree) -> None:
    """What validation and ``ccq reproduce`` predict (sliding window over the whole prepared volume)."""
    from ccq.inference.sliding_window import predict_volume
    from ccq.models.factory import build_model
    from ccq.models.presets import get_preset

    root, reference = tree
    data = PreparedDataset(root)
    torch.manual_seed(0)
    model = build_model(get_preset("tiny", patch_size=PRE.patch_size, num_tasks=3)).eval()
    rng = np.random.default_rng(0)
    for entry in data.cases(split="test"):
        options = {"patch_size": PRE.patch_size, "pad_value": PRE.hu_min / PRE.hu_scale}
        image = reference[_key(entry)][0]
        new = predict_volume(model, data.image(entry), [entry["task_id"]], **options)
        old = predict_volume(model, image, [entry["task_id"]], **options)
        # The yardstick: the same model on format 1's image with noise of the size of the rounding (+-0.5 HU).
        noise = rng.uniform(-0.5, 0.5, image.shape).astype(np.float32) / PRE.hu_scale
        noisy = predict_volume(model, np.clip(image + noise, -1, 1), [entry["task_id"]], **options)
        assert (new - old).abs().max() <= 2 * (noisy - old).abs().max() + 1e-4
        differ = ((new > 0.5) != (old > 0.5)).float().mean()
        assert differ <= 2 * ((noisy > 0.5) != (old > 0.5)).float().mean() + 1e-4


def test_format_1_folders_ask_to_prepare_again(tree, tmp_path: Path) -> None:
    root, _ = tree
    old = tmp_path / "old"
    old.mkdir()
    for name in (cache.COLLECTION_FILE, cache.PREPROCESSING_FILE):
        (old / name).write_text((root / name).read_text())
    manifest = json.loads((root / cache.MANIFEST_FILE).read_text())
    (old / cache.MANIFEST_FILE).write_text(json.dumps({**manifest, "format": 1}))
    with pytest.raises(CCQError, match=r"manifest.json: format 1; expected 2 \(the folder was prepared by an older "
                       r"ccq: run `ccq prepare` again into a new --out folder\)"):  # fmt: skip
        PreparedDataset(old)
    # Resuming `ccq prepare` into a format 1 folder is refused before anything is written.
    case_dir = old / manifest["cases"][0]["path"]
    case_dir.mkdir(parents=True)
    (case_dir / cache.META_FILE).write_text(json.dumps({**manifest["cases"][0], "format": 1}))
    collection = PreparedDataset(root).collection
    with pytest.raises(CCQError, match=r"its cases are in cache format 1 .*this ccq writes format 2"):
        prepare_collection(collection, root.parent / "raw", old, PRE)
    assert sorted(p.name for p in case_dir.iterdir()) == [cache.META_FILE]


def test_crop_box_holds_the_body_and_every_label() -> None:
    affine = np.diag([-1.5, -1.5, 3.0, 1.0])
    image = np.full((40, 40, 12), -1000, np.int16)
    image[10:30, 12:25, 2:10] = 40  # the body
    label = np.zeros(image.shape, np.uint8)
    label[33:36, 5:8, 4:6] = 1  # a label in the air (a dataset's quirk): it must stay inside the box
    from ccq.data.collection import Collection

    task = Collection.from_dict({"name": "c", "tasks": [{"name": "t", "id": 0, "layout": "msd", "folder": "t",
                                 "labels": {0: "bg", 1: "o"}, "organ": [1], "tumor": None}]}).task(0)  # fmt: skip
    pre = PreprocessingConfig(spacing=(3.0, 1.5, 1.5))
    case = prepare_case((image, affine), (label, affine), task, pre)
    box = cache.box_slices(case.meta["crop_box"], case.meta["shape"], "test")
    inside = np.zeros(case.hu.shape, bool)
    inside[box] = True
    assert np.all(case.hu[~inside] <= pre.hu_min) and not case.label[~inside].any()
    assert case.meta["crop_box"] != [[0, n] for n in case.meta["shape"]]
    assert case.hu.dtype == np.int16 and case.hu.max() == 40 and case.hu.min() == pre.hu_min
    air = prepare_case((np.full((8, 8, 4), -1000, np.int16) + np.arange(4, dtype=np.int16), affine), None, task, pre)
    assert air.meta["crop_box"] == [[0, 1], [0, 1], [0, 1]]  # nothing above the window: one voxel of air


def test_window_outside_int16_is_one_line() -> None:
    affine = np.eye(4)
    pre = PreprocessingConfig(hu_min=-40000.0, hu_max=400.0, hu_scale=400.0)
    image = np.arange(64, dtype=np.int16).reshape(4, 4, 4)
    from ccq.data.collection import Collection

    task = Collection.from_dict({"name": "c", "tasks": [{"name": "t", "id": 0, "layout": "msd", "folder": "t",
                                 "labels": {0: "bg", 1: "o"}, "organ": [1], "tumor": None}]}).task(0)  # fmt: skip
    with pytest.raises(CCQError, match=r"preprocessing HU window \[-40000, 400\]: expected within \[-32768, 32767\]"):
        prepare_case((image, affine), None, task, pre)


class Format1Reader:
    """Format 1's reads for a case: crops of the whole float32 windowed image and uint8 label, padded."""

    def __init__(self, image: np.ndarray, label: np.ndarray) -> None:
        self.image, self.label = image, label

    def region(self, start, size, *, image: bool = True, label: bool = True) -> tuple[np.ndarray, np.ndarray]:
        src = tuple(slice(max(s, 0), min(s + c, n)) for s, c, n in zip(start, size, self.image.shape, strict=True))
        dst = tuple(slice(sl.start - s, sl.stop - s) for sl, s in zip(src, start, strict=True))
        out_image = np.full(size if image else (0, 0, 0), np.float32(PRE.hu_min / PRE.hu_scale), dtype=np.float32)
        out_label = np.zeros(size if label else (0, 0, 0), dtype=np.uint8)
        if image:
            out_image[dst] = self.image[src]
        if label:
            out_label[dst] = self.label[src]
        return out_image, out_label


@pytest.fixture
def as_format_1(tree, monkeypatch):
    """Call to make every `PreparedDataset` read format 1's arrays: training crops, validation and ``ccq
    reproduce`` volumes, ``ccq evaluate``'s prepared ground truth all go through `PreparedDataset.reader`.
    ``noise=True``: format 1's images plus uniform noise of +-0.5 HU (the size of the rounding), a yardstick."""
    _, reference = tree

    def switch(noise: bool = False) -> None:
        arrays = dict(reference)
        if noise:
            rng = np.random.default_rng(7)
            for key, (image, label) in reference.items():
                jitter = rng.uniform(-0.5, 0.5, image.shape).astype(np.float32) / np.float32(PRE.hu_scale)
                arrays[key] = (np.clip(image + jitter, PRE.hu_min / PRE.hu_scale, PRE.hu_max / PRE.hu_scale), label)
        monkeypatch.setattr(PreparedDataset, "reader", lambda self, entry: Format1Reader(*arrays[_key(entry)]))

    return switch


class Threshold(torch.nn.Module):
    """A stand-in model whose channels are voxels brighter than two levels: it sees every HU of the image."""

    def __init__(self) -> None:
        super().__init__()
        self.levels = torch.nn.Parameter(torch.tensor([-0.1, 0.1]))

    def forward_all_tasks(self, x: torch.Tensor, tasks: torch.Tensor) -> torch.Tensor:
        """x: [B, 1, D, H, W] -> logits [B, T, 2, D, H, W]."""
        logits = 40.0 * (x - self.levels.view(1, 2, 1, 1, 1))
        return logits.unsqueeze(1).expand(-1, tasks.numel(), -1, -1, -1, -1)


def test_validation_scores_equal_format_1_up_to_rounding(tree, as_format_1) -> None:
    from ccq.training.validation import validate

    root, _ = tree
    keys = [_key(e) for e in PreparedDataset(root).cases(split="test")]
    new = validate(Threshold(), PreparedDataset(root), keys, patch_size=PRE.patch_size)
    as_format_1()
    old = validate(Threshold(), PreparedDataset(root), keys, patch_size=PRE.patch_size)
    assert (
        new["cases"].keys() == old["cases"].keys() == set(keys) and new["categories"].keys() == old["categories"].keys()
    )
    dice = [(new["cases"][k][c], old["cases"][k][c]) for k in keys for c in new["cases"][k]]
    assert sum(0.0 < b < 1.0 for _, b in dice) >= 3  # imperfect, non-empty masks: a flipped voxel would show
    # A voxel at a threshold's edge could flip with half an HU (measured: none does on these phantoms).
    assert max(abs(a - b) for a, b in dice) <= 0.005 and abs(new["mean"] - old["mean"]) <= 0.005


def test_evaluate_against_the_prepared_folder_equals_format_1(tree, as_format_1, tmp_path: Path) -> None:
    """`ccq evaluate --gt PREPARED` scores against the stored labels, which are exact: the same summary."""
    import nibabel as nib

    from ccq.evaluation.evaluate import evaluate_folder

    root, _ = tree
    collection = PreparedDataset(root).collection
    for task in collection.tasks:  # predictions: the raw labels shifted by a voxel (imperfect)
        for case in find_cases(task, collection.dataset_dir(task, root.parent / "raw")):
            img = nib.load(str(case.label))
            shifted = np.roll(np.asarray(img.dataobj).astype(np.uint8), 1, axis=0)
            (tmp_path / "pred" / case.case_id).mkdir(parents=True, exist_ok=True)
            nib.save(
                nib.Nifti1Image(shifted, img.affine), str(tmp_path / "pred" / case.case_id / f"{task.name}.nii.gz")
            )
    definitions = ("mots", "standard")
    new = [evaluate_folder(tmp_path / "pred", root, definition=d, cases="all", write=False) for d in definitions]
    as_format_1()
    old = [evaluate_folder(tmp_path / "pred", root, definition=d, cases="all", write=False) for d in definitions]
    for a, b in zip(new, old, strict=True):
        assert len(a["cases"]) == 8 and any(0.0 < c["dice"] < 1.0 for c in a["cases"])
        assert a["cases"] == b["cases"] and a["categories"] == b["categories"]


def test_reproduce_equals_format_1_up_to_rounding(tree, as_format_1, tmp_path: Path) -> None:
    """`ccq reproduce` (training from the cache's crops, then scoring the whole test volumes) on one row."""
    from ccq.reproduce import reproduce

    root, _ = tree
    options = {"size": "tiny", "train_preset": "demo", "budget": 1, "rows": ["official"], "progress": False,
               "device": "cpu", "echo": lambda _: None}  # fmt: skip
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    summaries, losses = {}, {}
    try:
        for run in ("new", "old", "noisy"):
            if run != "new":
                as_format_1(noise=run == "noisy")
            summaries[run] = reproduce("table1", root, tmp_path / run, **options)["rows"]["official"]
            log = (tmp_path / run / "official" / "run" / "log.jsonl").read_text().splitlines()
            losses[run] = [json.loads(line)["loss"] for line in log if json.loads(line)["kind"] == "train"]
    finally:
        torch.set_num_threads(before)
    new, old = summaries["new"], summaries["old"]
    assert new["categories"].keys() == old["categories"].keys() and len(new["cases"]) == len(old["cases"]) == 4
    # The first iteration's loss (same initial weights, same placement and augmentation): its crops differ from
    # format 1's by the rounding only, so the loss moves by the order of what +-0.5 HU of noise moves it (measured:
    # 7e-4 against 3e-4, 0.04% of the loss).
    assert len(losses["new"]) == len(losses["old"]) == len(losses["noisy"]) == 1
    rounding = abs(losses["new"][0] - losses["old"][0])
    assert rounding <= 4 * abs(losses["noisy"][0] - losses["old"][0]) + 1e-6 and rounding <= 1e-3 * losses["old"][0]
    for a, b in zip(new["cases"], old["cases"], strict=True):
        assert (a["case"], a["task"], a["channel"]) == (b["case"], b["task"], b["channel"])
        assert abs(a["dice"] - b["dice"]) <= 0.01


def test_a_task_grid_of_its_own_equals_format_1_up_to_rounding(tree) -> None:
    """The slab-wise resampling on a task grid with other axes and spacing (per-task grids) against the whole-volume
    path (`preprocess_image` with that grid), as for the canonical grid above."""
    from ccq.data.grid import Grid

    root, _ = tree
    collection = PreparedDataset(root).collection
    task = collection.task("liver")
    grid = Grid(spacing=(2.0, 2.5, 2.0), axes="IPL")
    pre = PRE.replace(task_grids={"liver": grid})
    case = find_cases(task, collection.dataset_dir(task, root.parent / "raw"))[0]
    image, affine = geometry.load_nifti(case.image, what="image", case=case.case_id)
    label, _ = geometry.load_nifti(case.label, what="label", case=case.case_id, as_float=False)
    windowed, _ = preprocess_image(image, affine, pre, grid=grid)
    prepared = prepare_case(case.image, case.label, task, pre, case_id=case.case_id)
    assert prepared.meta["grid"] == grid.to_dict() and list(prepared.hu.shape) == prepared.meta["shape"]
    assert prepared.hu.shape == windowed.shape
    assert np.abs(prepared.image - windowed).max() <= ROUNDING
    from ccq.data import grid as working

    canon, info = geometry.to_canonical(label.astype(np.uint8), affine)
    assert np.array_equal(prepared.label, working.to_working(canon, info, grid, order=0, shape=windowed.shape))
