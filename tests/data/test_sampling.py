"""Patch sampling: shapes, ignore flags, foreground oversampling, padding, reproducible resumable streams."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from ccq.data import cache
from ccq.data.augment import AugmentationConfig
from ccq.data.cache import PreparedDataset
from ccq.data.collection import Collection
from ccq.data.loader import PatchLoader
from ccq.data.prepare import prepare_case
from ccq.data.preprocessing import PreprocessingConfig
from ccq.data.sampling import PatchSampler, SamplingConfig
from ccq.errors import CCQError

PATCH = (16, 32, 32)
PRE = PreprocessingConfig(spacing=(1.5, 0.8, 0.8), patch_size=PATCH)
NO_AUG = SamplingConfig().without_augmentation()


def zyx_affine(spacing: tuple[float, float, float]) -> np.ndarray:
    """Voxel (i, j, k) = canonical (z, y, x): superior, posterior, patient-left in RAS world terms."""
    sz, sy, sx = spacing
    return np.array([[0, 0, -sx, 0], [0, -sy, 0, 0], [sz, 0, 0, 0], [0, 0, 0, 1.0]])


def write_prepared(root: Path, cases: dict[str, list[tuple[str, np.ndarray]]]) -> PreparedDataset:
    """A prepared folder from label maps already on the prepared grid; image 0.5 on labels, else -0.5."""
    labels = {0: "background", 1: "organ", 2: "tumour"}
    tasks = [
        {
            "name": "both",
            "id": 0,
            "layout": "msd",
            "folder": "a",
            "labels": labels,
            "organ": [1, 2],
            "tumor": [2],
        },
        {
            "name": "tumour",
            "id": 1,
            "layout": "msd",
            "folder": "b",
            "labels": labels,
            "organ": None,
            "tumor": [1],
        },
    ]
    col = Collection.from_dict({"name": "s", "tasks": tasks})
    entries = []
    for task_name, items in cases.items():
        for case_id, label in items:
            image = np.where(label > 0, 162.5, -162.5) + np.linspace(0, 1, label.size).reshape(label.shape)
            aff = zyx_affine(PRE.spacing)
            case = prepare_case((image, aff), (label, aff), col.task(task_name), PRE, case_id=case_id)
            cache.write_case(root, task_name, case_id, image=case.hu, label=case.label,
                             locations=case.locations, meta=case.meta)  # fmt: skip
            entries.append(case.meta)
    cache.write_index(root, col, PRE, entries)
    return PreparedDataset(root)


def blob(shape: tuple[int, int, int], centre: tuple[int, int, int], value: int = 1, r: int = 3) -> np.ndarray:
    label = np.zeros(shape, np.uint8)
    label[tuple(slice(c - r, c + r) for c in centre)] = value
    return label


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> PreparedDataset:
    root = tmp_path_factory.mktemp("prepared")
    both = []
    for i in range(3):
        label = blob((40, 96, 96), (10 + 8 * i, 20 + 20 * i, 70 - 10 * i))
        label[tuple(slice(c - 1, c + 1) for c in (10 + 8 * i, 20 + 20 * i, 70 - 10 * i))] = 2
        both.append((f"b{i}", label))
    small = blob((10, 20, 40), (5, 10, 20), r=2)  # smaller than the patch along z and y: padded
    return write_prepared(root, {"both": both, "tumour": [("t0", small)]})


def test_shapes_flags_and_ignored_channel(prepared: PreparedDataset) -> None:
    sampler = PatchSampler(prepared, PATCH, SamplingConfig(), seed=3)
    seen = set()
    for i in range(12):
        s = sampler.sample(i)
        seen.add(s.task_id)
        assert s.image.shape == (1, *PATCH) and s.image.dtype == np.float32
        assert s.target.shape == (2, *PATCH) and s.target.dtype == np.int8
        if s.task_id == 1:
            assert s.labeled == (False, True) and np.all(s.target[0] == -1)
            assert set(np.unique(s.target[1])) <= {0, 1}
        else:
            assert s.labeled == (True, True) and set(np.unique(s.target)) <= {0, 1}
            assert np.all(s.target[0] >= s.target[1])  # the tumour lies inside the organ
    assert seen == {0, 1}


@pytest.mark.parametrize("mode", ["bbox", "location"])
def test_foreground_oversampling_ratio(prepared: PreparedDataset, mode: str) -> None:
    # The official margin (32) is half the official crop depth (64); keep that proportion for the tiny patch,
    # which makes every box-placed crop overlap the foreground.
    config = dataclasses.replace(NO_AUG, foreground_mode=mode, bbox_margin=PATCH[0] // 2)
    sampler = PatchSampler(prepared, PATCH, config, tasks=["both"], seed=0)
    samples = [sampler.sample(i) for i in range(300)]
    placed = np.mean([s.foreground_crop for s in samples])
    assert placed == pytest.approx(0.8, abs=0.06)
    with_fg = np.mean([s.target[0].any() for s in samples])
    random_hits = np.mean([s.target[0].any() for s in samples if not s.foreground_crop])
    assert random_hits < 0.5  # the blobs are small: a crop placed anywhere rarely contains one...
    assert with_fg == pytest.approx(0.8 + 0.2 * random_hits, abs=0.07)  # ...so ~80% of crops hold foreground
    assert all(s.target[0].any() for s in samples if s.foreground_crop)


@pytest.fixture(scope="module")
def big_organs(tmp_path_factory: pytest.TempPathFactory) -> PreparedDataset:
    """Large organs (30 voxels across) each with a 2-voxel tumour at one end; and a case with no tumour."""
    cases = []
    for i in range(2):
        label = blob((40, 96, 96), (20, 40 + 10 * i, 50), r=15)
        label[18:20, 26 + 10 * i : 28 + 10 * i, 36:38] = 2
        cases.append((f"b{i}", label))
    cases.append(("none", blob((40, 96, 96), (20, 48, 48), r=15)))
    return write_prepared(tmp_path_factory.mktemp("big-organs"), {"both": cases})


def test_tumor_crops_hold_a_tumor_voxel_anywhere_in_the_crop(big_organs: PreparedDataset) -> None:
    # A box-placed crop holds the organ but only sometimes its small tumour.
    plain = PatchSampler(big_organs, PATCH, NO_AUG, tasks=["both"], seed=0)
    config = dataclasses.replace(NO_AUG, tumor_fraction=0.5)
    sampler = PatchSampler(big_organs, PATCH, config, tasks=["both"], seed=0)
    tumour_cases = [s for s in (sampler.sample(i) for i in range(300)) if not s.case.endswith("none")]
    plain_share = np.mean([s.target[1].any() for s in (plain.sample(i) for i in range(300)) if "none" not in s.case])
    share = np.mean([s.target[1].any() for s in tumour_cases])
    assert plain_share < 0.5 and share > plain_share + 0.25
    # The tumour is not always at the crop's centre: a model must not learn "tumour = middle of the patch".
    where = {tuple(np.argwhere(s.target[1])[0]) for s in tumour_cases if s.target[1].any()}
    assert len(where) > 30
    always = PatchSampler(big_organs, PATCH, dataclasses.replace(NO_AUG, tumor_fraction=1.0), tasks=["both"])
    samples = [always.sample(i) for i in range(60)]
    assert all(s.target[1].any() and s.foreground_crop for s in samples if "none" not in s.case)
    # A case without a tumour falls back to the usual placement (80 % on the organ's box).
    assert any(s.target[0].any() for s in samples if "none" in s.case)


def test_tumor_crops_are_off_by_default(big_organs: PreparedDataset) -> None:
    assert SamplingConfig().tumor_fraction == 0.0
    with pytest.raises(CCQError, match=r"sampling: tumor_fraction: expected a value in \[0, 1\], got 1.5"):
        SamplingConfig(tumor_fraction=1.5)


def test_padding_outside_small_volume(prepared: PreparedDataset) -> None:
    sampler = PatchSampler(prepared, PATCH, NO_AUG, tasks=["tumour"], seed=1)
    s = sampler.sample(0)
    inside = 10 * 20 * 32  # the case is 10 x 20 x 40: only z and y need padding
    assert np.count_nonzero(s.image == -1.0) == np.prod(PATCH) - inside
    assert np.all(s.target[1][s.image[0] == -1.0] == 0)
    dz, dy = -s.origin[0], -s.origin[1]
    assert 0 <= dz <= 6 and 0 <= dy <= 12 and np.all(s.image[0, dz : dz + 10, dy : dy + 20] > -1)


def test_same_seed_same_stream_other_rank_other_stream(prepared: PreparedDataset) -> None:
    a = PatchSampler(prepared, PATCH, SamplingConfig(), seed=5, rank=0)
    b = PatchSampler(PreparedDataset(prepared.root), PATCH, SamplingConfig(), seed=5, rank=0)
    other_rank = PatchSampler(prepared, PATCH, SamplingConfig(), seed=5, rank=1)
    for i in (0, 7):
        sa, sb = a.sample(i), b.sample(i)
        assert np.array_equal(sa.image, sb.image) and np.array_equal(sa.target, sb.target)
        assert sa.plan == sb.plan and sa.origin == sb.origin
    firsts = [(s.case, s.origin) for s in (a.sample(i) for i in range(6))]
    others = [(s.case, s.origin) for s in (other_rank.sample(i) for i in range(6))]
    assert firsts != others


def test_task_weighting(prepared: PreparedDataset) -> None:
    assert PatchSampler(prepared, PATCH, NO_AUG).task_probs.tolist() == [0.75, 0.25]
    balanced = dataclasses.replace(NO_AUG, task_weighting="balanced")
    sampler = PatchSampler(prepared, PATCH, balanced, seed=2)
    assert sampler.task_probs.tolist() == [0.5, 0.5]
    tasks = [sampler.sample(i).task_id for i in range(200)]
    assert np.mean(tasks) == pytest.approx(0.5, abs=0.1)


def _batches(loader: PatchLoader, n: int) -> list[dict]:
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == n:
            break
    return out


def test_resume_and_worker_count_give_the_same_stream(prepared: PreparedDataset) -> None:
    sampler = PatchSampler(prepared, PATCH, SamplingConfig(), seed=11)
    straight = _batches(PatchLoader(sampler, 2), 5)
    first = PatchLoader(sampler, 2)
    _batches(first, 3)
    state = first.state_dict()
    assert state["position"] == 3
    resumed = PatchLoader(sampler, 2)
    resumed.load_state_dict(state)
    again = _batches(resumed, 2)
    for want, got in zip(straight[3:], again, strict=True):
        assert torch.equal(want["image"], got["image"]) and torch.equal(want["target"], got["target"])
        assert want["case"] == got["case"] and torch.equal(want["index"], got["index"])
    workers = _batches(PatchLoader(sampler, 2, num_workers=2), 4)
    for want, got in zip(straight[:4], workers, strict=True):
        assert torch.equal(want["image"], got["image"]) and want["case"] == got["case"]
    assert straight[0]["image"].shape == (2, 1, *PATCH) and straight[0]["labeled"].shape == (2, 2)
    assert straight[0]["target"].dtype == torch.float32 and straight[0]["image"].dtype == torch.float32
    with pytest.raises(Exception, match="expected the same stream"):
        PatchLoader(PatchSampler(prepared, PATCH, SamplingConfig(), seed=12), 2).load_state_dict(state)


def test_config_json_round_trip() -> None:
    config = SamplingConfig(foreground_mode="location", augmentation=AugmentationConfig(scale_p=0.5))
    again = SamplingConfig.from_dict(config.to_dict())
    assert again == config and again.augmentation.scale_p == 0.5
    assert not config.without_augmentation().augmentation.enabled


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"foreground_fraction": "x"}, r"sampling: foreground_fraction: expected a number, got 'x'"),
        ({"bbox_margin": 2.5}, r"sampling: bbox_margin: expected an integer, got 2.5"),
        ({"augmentation": 5}, r"sampling: augmentation: expected a mapping with fields enabled, scale_p, .*, got 5"),
        ({"augmentation": {"noise_p": [0.1]}}, r"sampling: augmentation.noise_p: expected a number, got \[0.1\]"),
        ([1, 2], r"sampling: expected a mapping with fields foreground_fraction, .*, got \[1, 2\]"),
    ],
)
def test_wrongly_typed_values_are_named(data, message) -> None:
    with pytest.raises(CCQError, match=message):
        SamplingConfig.from_dict(data)


def test_scaled_and_flipped_samples_stay_aligned(prepared: PreparedDataset) -> None:
    spatial_only = AugmentationConfig(
        scale_p=1.0, flip_p=1.0, noise_p=0, blur_p=0, brightness_p=0, contrast_p=0, lowres_p=0, gamma_p=0
    )
    config = dataclasses.replace(NO_AUG, augmentation=spatial_only, bbox_margin=8)
    sampler = PatchSampler(prepared, PATCH, config, tasks=["both"], seed=4)
    checked = 0
    for i in range(12):
        s = sampler.sample(i)
        assert s.plan.scale is not None and s.plan.flips == (True, True, True)
        organ = s.target[0] > 0
        if organ.sum() < 20:
            continue
        bright = s.image[0] > 0  # the image is +0.5 on the label and -0.5 elsewhere
        # Linear (image) and nearest (label) resizing differ only at edges and corners of the small blobs.
        assert 2 * np.sum(bright & organ) / (bright.sum() + organ.sum()) > 0.8
        assert np.allclose(np.argwhere(bright).mean(0), np.argwhere(organ).mean(0), atol=0.75)
        checked += 1
    assert checked >= 5


def test_closing_the_loader_stops_its_workers(prepared: PreparedDataset) -> None:
    import multiprocessing

    batches = iter(PatchLoader(PatchSampler(prepared, PATCH, NO_AUG, seed=2), 1, num_workers=1))
    next(batches)
    assert multiprocessing.active_children()
    batches.close()  # what the trainer does in a `finally`, e.g. after an error
    assert not multiprocessing.active_children()
