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
