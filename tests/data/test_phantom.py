"""Synthetic collections: deterministic, CT-like, partially labeled like MOTS, written as MSD folders."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from ccq.data.collection import find_cases, load_collection
from ccq.data.phantom import (
    ALL_TASKS,
    MARKER_FILE,
    case_rng,
    generate_collection,
    make_case,
    task_label_map,
)
from ccq.data.phantom_anatomy import ANATOMY, TUMOR_REGIONS
from ccq.errors import CCQError

TUMOR_NAME = {"hepatic_vessel": "liver_tumor"}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("phantom") / "out"
    return out, generate_collection(out, cases_per_task=2, test_cases_per_task=1, seed=5, tasks=ALL_TASKS)


def test_same_seed_same_arrays() -> None:
    a = make_case(np.random.default_rng(11), tumor_tasks=("liver",))
    b = make_case(np.random.default_rng(11), tumor_tasks=("liver",))
    c = make_case(np.random.default_rng(12), tumor_tasks=("liver",))
    assert a.image.tobytes() == b.image.tobytes() and a.anatomy.tobytes() == b.anatomy.tobytes()
    assert np.array_equal(a.affine, b.affine)
    assert not np.array_equal(a.image, c.image)


def test_same_seed_same_files(tmp_path: Path) -> None:
    for name in ("a", "b"):
        generate_collection(tmp_path / name, cases_per_task=1, test_cases_per_task=0, seed=2, tasks=("lung",))
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 5  # image, label, dataset.json, collection.yaml, marker
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


@pytest.mark.parametrize("task", list(TUMOR_REGIONS))
def test_tumor_is_strictly_inside_its_organ(task: str) -> None:
    for seed in (0, 1):
        anatomy = make_case(np.random.default_rng([seed, 7]), tumor_tasks=(task,)).anatomy
        tumor = anatomy == ANATOMY[TUMOR_NAME.get(task, f"{task}_tumor")]
        organ = np.isin(anatomy, [ANATOMY[n] for n in TUMOR_REGIONS[task]]) | tumor
        assert tumor.sum() >= 20, (task, seed, tumor.sum())
        # Even one voxel of growth in any face direction stays inside the organ.
        assert not (ndimage.binary_dilation(tumor) & ~organ).any(), (task, seed)


def test_every_image_has_every_organ_and_only_the_chosen_tumor() -> None:
    anatomy = make_case(np.random.default_rng(3), tumor_tasks=("kidney",)).anatomy
    present = {name for name, value in ANATOMY.items() if (anatomy == value).any()}
    organs = {"liver", "hepatic_vessel", "kidney", "pancreas", "colon", "lung", "spleen"}
    assert present == organs | {"kidney_tumor"}


def test_organs_touch_where_anatomy_has_them_touch() -> None:
    for seed in range(3):
        anatomy = make_case(np.random.default_rng(seed)).anatomy
        liver = np.isin(anatomy, [ANATOMY["liver"], ANATOMY["hepatic_vessel"]])
        right_kidney = anatomy == ANATOMY["kidney"]
        right_kidney[..., : anatomy.shape[2] // 2] = False  # +x is the patient's right (RAS)
        assert (ndimage.binary_dilation(liver) & right_kidney).any(), seed
        # The spleen rests on the left kidney, and the pancreatic tail reaches the splenic hilum.
        spleen = anatomy == ANATOMY["spleen"]
        left_kidney = (anatomy == ANATOMY["kidney"]) & ~right_kidney
        left_kidney[..., anatomy.shape[2] // 2 :] = False
        assert (ndimage.binary_dilation(spleen) & left_kidney).any(), seed
        assert (ndimage.binary_dilation(spleen) & (anatomy == ANATOMY["pancreas"])).any(), seed
        spleen_x = np.argwhere(anatomy == ANATOMY["spleen"])[:, 2].mean()
        liver_x = np.argwhere(liver)[:, 2].mean()
        assert spleen_x < anatomy.shape[2] / 2 < liver_x


@pytest.mark.parametrize("task", ["liver", "kidney", "pancreas"])
def test_organ_tumors_differ_from_the_tissue_around_them(task: str) -> None:
    """A lesion is visible against the parenchyma it grows in (for the kidney: the medulla, not the cortex)."""
    for seed in range(3):
        case = make_case(np.random.default_rng([seed, 9]), tumor_tasks=(task,))
        image, anatomy = case.image.astype(float), case.anatomy
        tumor = anatomy == ANATOMY[f"{task}_tumor"]
        organ = np.isin(anatomy, [ANATOMY[n] for n in TUMOR_REGIONS[task]])
        ring = ndimage.binary_dilation(tumor, iterations=3) & ~ndimage.binary_dilation(tumor) & organ
        core = ndimage.binary_erosion(tumor) if ndimage.binary_erosion(tumor).sum() >= 10 else tumor
        assert ring.sum() >= 20, (task, seed)
        # Smoothed means: the lesion differs from its surroundings by more than the scanner noise (10-20 HU).
        assert abs(np.median(image[core]) - np.median(image[ring])) > 20, (task, seed)


def test_colon_tumor_is_a_mass_of_a_few_millilitres() -> None:
    """An annular carcinoma around the bowel's axis, long enough to be seen at a demo's working spacing."""
    for seed in range(4):
        case = make_case(np.random.default_rng([seed, 4]), tumor_tasks=("colon",))
        tumor = case.anatomy == ANATOMY["colon_tumor"]
        volume_ml = tumor.sum() * np.prod(case.spacing) / 1000
        assert 0.8 < volume_ml < 6.0, (seed, volume_ml)
        assert ndimage.label(tumor)[1] == 1, seed  # one mass


def test_liver_lesions_are_one_to_three_apart_inside_the_liver() -> None:
    """Liver lesions are often several (metastases): one to three separate ones, each inside the liver."""
    counts = []
    for seed in range(10):
        case = make_case(np.random.default_rng([seed, 0]), tumor_tasks=("liver",))
        tumor = case.anatomy == ANATOMY["liver_tumor"]
        labels, count = ndimage.label(tumor)
        counts.append(count)
        liver = np.isin(case.anatomy, [ANATOMY[n] for n in TUMOR_REGIONS["liver"]] + [ANATOMY["liver_tumor"]])
        assert not (ndimage.binary_dilation(tumor) & ~liver).any(), seed
    assert set(counts) <= {1, 2, 3} and max(counts) > 1, counts


def test_hu_values_are_ct_like() -> None:
    case = make_case(np.random.default_rng(4), tumor_tasks=("liver",))
    image, anatomy = case.image.astype(float), case.anatomy
    assert case.image.dtype == np.int16 and image.min() >= -1024 and image.max() <= 3071

    def interior(name: str) -> np.ndarray:
        return image[ndimage.binary_erosion(anatomy == ANATOMY[name], iterations=2)]

    expected = {  # portal venous phase
        "liver": (80, 140),
        "spleen": (85, 150),
        "kidney": (110, 220),
        "pancreas": (65, 130),
        "lung": (-950, -650),
    }
    for name, (low, high) in expected.items():
        assert low < np.median(interior(name)) < high, (name, np.median(interior(name)))
    assert (
        np.median(interior("liver_tumor")) < np.median(interior("liver")) - 15
        or np.median(interior("liver_tumor")) > np.median(interior("liver")) + 15
    )
    corner = image[:, :6, :6]  # air outside the body: -1000 plus scanner noise
    assert abs(np.median(corner) + 1000) < 30 and 5 < corner[corner > -1024].std() < 25
    assert image.max() > 300  # bone
    assert ((image > -150) & (image < -50)).mean() > 0.02  # fat


def test_collection_file_and_msd_tree(written) -> None:
    out, collection = written
    assert load_collection(out / "collection.yaml") == collection
    assert collection.task_names == ALL_TASKS and collection.num_tasks == 7
    assert json.loads((out / MARKER_FILE).read_text())["entries"][-1] == "collection.yaml"
    for task in collection.tasks:
        folder = out / task.folder
        assert collection.dataset_dir(task) == folder.resolve()
        dataset = json.loads((folder / "dataset.json").read_text())
        assert dataset["labels"] == {str(k): v for k, v in task.labels.items()}
        assert dataset["numTraining"] == 2 and dataset["modality"] == {"0": "CT"}
        for entry in dataset["training"]:
            assert (folder / entry["image"]).is_file() and (folder / entry["label"]).is_file()
        cases = find_cases(task, folder)
        assert [c.case_id for c in cases] == [f"{task.name}_000", f"{task.name}_001"]
        assert task.split_cases([c.case_id for c in cases]) == ([f"{task.name}_000"], [f"{task.name}_001"])


def test_each_dataset_labels_only_its_own_organ(written) -> None:
    out, collection = written
    for task in collection.tasks:
        case = find_cases(task, out / task.folder)[0]
        label = np.asarray(nib.load(case.label).dataobj)
        assert label.dtype == np.uint8
        task.check_label_values(label, where=str(case.label))
        organ, tumor = task.channel_targets(label)
        for channel, mask in (("organ", organ), ("tumor", tumor)):
            assert (mask is None) == (getattr(task, channel) is None)
            assert mask is None or mask.any(), (task.name, channel)
        # The file is exactly this dataset's view of the shared anatomy: nothing of the other organs.
        regenerated = make_case(case_rng(5, task.name, 0), tumor_tasks=() if task.tumor is None else (task.name,))
        assert np.array_equal(label, task_label_map(regenerated.anatomy, task.name).transpose(2, 1, 0))
        assert (regenerated.anatomy == ANATOMY["kidney"]).any()
        if task.name != "kidney":
            assert not (label.transpose(2, 1, 0)[regenerated.anatomy == ANATOMY["kidney"]]).any()


def test_nifti_header_reads_back(written) -> None:
    out, collection = written
    task = collection.task("liver")
    case = find_cases(task, out / task.folder)[0]
    image, label = nib.load(case.image), nib.load(case.label)
    regenerated = make_case(case_rng(5, "liver", 0), tumor_tasks=("liver",))
    assert image.shape == (96, 96, 48) and image.get_data_dtype() == np.int16
    assert np.allclose(image.affine, regenerated.affine, atol=1e-4)
    assert np.allclose(label.affine, image.affine) and nib.aff2axcodes(image.affine) == ("R", "A", "S")
    assert np.allclose(image.header.get_zooms(), regenerated.spacing[::-1], atol=1e-5)
    assert all(abs(s - n) <= 0.05 * n + 1e-6 for s, n in zip(regenerated.spacing, (2.0, 1.5, 1.5), strict=True))
    assert int(image.header["sform_code"]) == 1 and int(image.header["qform_code"]) == 1
    assert np.array_equal(np.asarray(image.dataobj), regenerated.image.transpose(2, 1, 0))


def test_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(CCQError, match=f"{out} is not empty") as err:
        generate_collection(out, cases_per_task=1, test_cases_per_task=0, tasks=("spleen",))
    assert "\n" not in str(err.value) and sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    # overwrite=True writes beside the user's file and, later, replaces only what a phantom wrote.
    generate_collection(out, cases_per_task=1, test_cases_per_task=0, tasks=("spleen",), overwrite=True)
    generate_collection(out, cases_per_task=1, test_cases_per_task=0, tasks=("lung",), overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [
        MARKER_FILE,
        "Task01_Lung",
        "collection.yaml",
        "notes.txt",
    ]
    assert (out / "notes.txt").read_text() == "mine"
    # A folder the phantom would write but did not: never replaced.
    (out / "Task01_Liver").mkdir()
    with pytest.raises(CCQError, match="Task01_Liver exists and was not written by ccq phantom"):
        generate_collection(out, cases_per_task=1, test_cases_per_task=0, tasks=("liver",), overwrite=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tasks": ("livr",)}, "did you mean 'liver'"),
        ({"tasks": ("liver", "liver")}, "given twice"),
        ({"cases_per_task": 2, "test_cases_per_task": 2}, "expected 0 to 1"),
        ({"shape": (16, 96, 96)}, "too small; expected at least 24x48x48"),
        ({"spacing": (2.0, 0.0, 1.5)}, "three positive sizes"),
        ({"naming": "dicom"}, "expected 'msd' or 'nnunet'"),
        ({"seed": -1}, "non-negative"),
    ],
)
def test_invalid_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(CCQError, match=message):
        generate_collection(tmp_path / "out", **{"tasks": ("spleen",), **kwargs})
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_nnunet_naming(tmp_path: Path) -> None:
    collection = generate_collection(
        tmp_path,
        cases_per_task=1,
        test_cases_per_task=0,
        tasks=("colon",),
        shape=(32, 64, 64),
        naming="nnunet",
    )
    folder = tmp_path / "Task01_Colon"
    assert [p.name for p in (folder / "imagesTr").iterdir()] == ["colon_000_0000.nii.gz"]
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "colon tumor": 1} and dataset["file_ending"] == ".nii.gz"
    (case,) = find_cases(collection.task("colon"), folder)
    assert case.case_id == "colon_000" and nib.load(case.image).shape == (64, 64, 32)
