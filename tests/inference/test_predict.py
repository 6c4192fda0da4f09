"""Whole-case prediction: outputs on the input's exact grid (shape, affine, orientation) for NIfTI in any
orientation, oblique and anisotropic grids, the real CT, and DICOM series."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from ccq.errors import CCQError
from ccq.inference import CaseWriter, Predictor, write_case_outputs
from ccq.io import read_dicom_series
from tests.data.official_path import write_nifti
from tests.io.series import oblique_direction, write_dicom_series

# File voxel axes (i, j, k) with spacing 2.5, 2.5, 3.0 mm = the checkpoint's (z, y, x) spacing (3, 2.5, 2.5):
# preparing resamples nothing, so a pointwise model's output must come back exactly onto the file's voxels.
AFFINES = {
    "ras": np.array([[2.5, 0, 0, -30], [0, 2.5, 0, 12], [0, 0, 3.0, 40], [0, 0, 0, 1]]),
    "lps": np.array([[-2.5, 0, 0, 30], [0, -2.5, 0, -12], [0, 0, 3.0, 40], [0, 0, 0, 1]]),
    # KiTS19-like: slices on the first voxel axis, pointing inferior.
    "kits": np.array([[0, 0, -2.5, 30], [0, -2.5, 0, 12], [-3.0, 0, 0, 40], [0, 0, 0, 1]]),
}
_R = oblique_direction(25.0)
RESAMPLED = {
    # Rotated 25 degrees about z and tilted 7 degrees: snapped to the nearest axes for the network, written back
    # with the exact oblique affine.
    "oblique": np.block([[_R @ np.diag([2.5, 2.5, 3.0]), np.array([[-30.0], [12.0], [40.0]])], [np.zeros((1, 3)), 1]]),
    # Thin in-plane voxels, thick slices: resampled 0.9 -> 2.5 mm and 5 -> 3 mm and back.
    "anisotropic": np.array([[0.9, 0, 0, -20], [0, 1.1, 0, 5], [0, 0, 5.0, 40], [0, 0, 0, 1]]),
}
REAL_CT = Path(os.environ.get("CCQ_TEST_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")) / "real-ct"


def ct(shape=(30, 26, 12)) -> np.ndarray:
    """HU volume in file voxel order: air, an asymmetric 'organ' block (200 HU) holding a 'tumor' (320 HU), and a
    second, smaller organ block."""
    hu = np.full(shape, -800, dtype=np.int16)
    hu[2:11, 14:24, 1:6] = 200
    hu[3:6, 15:18, 2:4] = 320
    hu[20:28, 3:9, 7:11] = 200
    return hu


def big_ct(shape=(80, 64, 12)) -> np.ndarray:
    """Like `ct`, with blocks placed as fractions of the shape: large enough to survive resampling."""
    hu = np.full(shape, -800, dtype=np.int16)

    def box(lo, hi):
        return tuple(slice(int(a * n), int(b * n)) for a, b, n in zip(lo, hi, shape, strict=True))

    hu[box((0.1, 0.45, 0.1), (0.55, 0.9, 0.7))] = 200
    hu[box((0.2, 0.55, 0.25), (0.4, 0.8, 0.55))] = 320
    hu[box((0.65, 0.1, 0.6), (0.92, 0.35, 0.95))] = 200
    return hu


class Threshold(nn.Module):
    """organ logit > 0 where the windowed HU > 0.3 (97.5 HU), tumor where > 0.9 (292.5 HU): voxelwise, so any
    stitching reproduces it and the labels are known from the HU."""

    def __init__(self, patch) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.config = type("C", (), {"patch_size": patch})()

    def forward_all_tasks(self, x: torch.Tensor, tasks: torch.Tensor) -> torch.Tensor:
        organ, tumor = 40 * (x - 0.3), 40 * (x - 0.9)
        out = torch.stack([organ, tumor], dim=1)[:, None]  # [B, 1, 2, 1, D, H, W]
        return out[:, :, :, 0].expand(-1, tasks.numel(), -1, -1, -1, -1)


def threshold_predictor(checkpoint: Path, **options) -> Predictor:
    predictor = Predictor(checkpoint, device="cpu", **options)
    predictor.model = Threshold(predictor.model_config.patch_size)
    return predictor


def expected_liver(hu: np.ndarray) -> np.ndarray:
    return np.where(hu > 292.5, 2, np.where(hu > 97.5, 1, 0)).astype(np.uint8)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))


def assert_same_grid(written: Path, source_shape, source_affine: np.ndarray) -> nib.Nifti1Image:
    img = nib.load(str(written))
    assert img.shape == tuple(source_shape) and img.get_data_dtype() == np.uint8
    np.testing.assert_allclose(img.affine, source_affine, atol=1e-4)
    assert nib.aff2axcodes(img.affine) == nib.aff2axcodes(source_affine)
    return img


@pytest.mark.parametrize("orientation", sorted(AFFINES))
def test_labels_land_on_the_input_voxels(tiny_checkpoint: Path, tmp_path: Path, orientation: str) -> None:
    hu = ct()
    path = write_nifti(tmp_path / f"{orientation}.nii.gz", hu, AFFINES[orientation])
    predictor = threshold_predictor(tiny_checkpoint, postprocess="none")
    prediction = predictor.predict(path, "liver,colon")
    liver, colon = prediction.labels["liver"], prediction.labels["colon"]
    assert liver.shape == hu.shape and liver.dtype == np.uint8
    np.testing.assert_array_equal(liver, expected_liver(hu))
    np.testing.assert_array_equal(colon, (hu > 292.5).astype(np.uint8))  # colon labels its tumor as 1
    np.testing.assert_array_equal(prediction.affine, nib.load(str(path)).affine)
    paths = write_case_outputs(tmp_path / "out", "case", prediction, predictor.resolve_tasks("liver,colon"))
    written = assert_same_grid(paths[0], hu.shape, nib.load(str(path)).affine)
    np.testing.assert_array_equal(np.asarray(written.dataobj), expected_liver(hu))


@pytest.mark.parametrize("kind", sorted(RESAMPLED))
def test_resampled_grids_come_back_exactly(tiny_checkpoint: Path, tmp_path: Path, kind: str) -> None:
    hu = big_ct()
    path = write_nifti(tmp_path / f"{kind}.nii.gz", hu, RESAMPLED[kind])
    predictor = threshold_predictor(tiny_checkpoint, postprocess="none")
    prediction = predictor.predict(path, ["liver"])
    liver = prediction.labels["liver"]
    assert liver.shape == hu.shape
    np.testing.assert_allclose(prediction.affine, nib.load(str(path)).affine, atol=1e-6)
    # Resampled there and back: the organ and tumour line up with the HU blocks up to their borders.
    assert dice(liver >= 1, hu > 97.5) > 0.95 and dice(liver == 2, hu > 292.5) > 0.6
    writer = CaseWriter(tmp_path / "out", kind, affine=prediction.affine, header=prediction.header)
    [out] = writer.write_task(predictor.resolve_tasks("liver")[0], liver)
    assert_same_grid(out, hu.shape, nib.load(str(path)).affine)


@pytest.mark.parametrize("name", ["example_ct", "example_ct_sm"])
def test_real_ct_keeps_its_exact_header_geometry(tiny_checkpoint: Path, tmp_path: Path, name: str) -> None:
    source = REAL_CT / f"{name}.nii.gz"
    if not source.is_file():
        pytest.skip(f"{source} is absent (set CCQ_TEST_DATA to the shared data folder)")
    predictor = threshold_predictor(tiny_checkpoint, postprocess="none")
    prediction = predictor.predict(source, "liver")
    writer = CaseWriter(tmp_path, name, affine=prediction.affine, header=prediction.header)
    [out] = writer.write_task(predictor.resolve_tasks("liver")[0], prediction.labels["liver"])
    src = nib.load(str(source))
    img = assert_same_grid(out, src.shape, src.affine)
    # example_ct_sm's affine was never shifted for its crop (a real quirk): the output must carry it unchanged,
    # with the same sform/qform codes, so it overlays its CT in any viewer.
    np.testing.assert_array_equal(img.affine, src.affine)
    for code in ("sform_code", "qform_code"):
        assert int(img.header[code]) == int(src.header[code])
    hu = np.asarray(src.dataobj)
    assert dice(prediction.labels["liver"] >= 1, hu > 97.5) > 0.9  # 3 mm -> 2.5 mm -> 3 mm, linear


def test_dicom_series_predicts_on_the_series_grid(tiny_checkpoint: Path, tmp_path: Path) -> None:
    import SimpleITK as sitk

    hu = ct((24, 20, 8)).astype(np.float64)
    # Spacing equal to the checkpoint's: the thresholded labels must match the HU voxel for voxel.
    folder = write_dicom_series(tmp_path / "series", hu, spacing=(2.5, 2.5, 3.0), origin=(-40.0, -30.0, 12.0))
    predictor = threshold_predictor(tiny_checkpoint, postprocess="none")
    prediction = predictor.predict(folder, "liver")
    np.testing.assert_array_equal(prediction.labels["liver"], expected_liver(hu))
    writer = CaseWriter(tmp_path / "out", "series", affine=prediction.affine, header=prediction.header)
    [out] = writer.write_task(predictor.resolve_tasks("liver")[0], prediction.labels["liver"])
    img = nib.load(str(out))
    assert img.shape == hu.shape and int(img.header["sform_code"]) == 1
    # The label map, read back with SimpleITK, has the series' own origin, spacing and direction.
    back = sitk.ReadImage(str(out))
    series = sitk.ReadImage(sorted(str(p) for p in folder.iterdir()))
    np.testing.assert_allclose(back.GetOrigin(), series.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(back.GetSpacing(), series.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(back.GetDirection(), series.GetDirection(), atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), expected_liver(hu).transpose(2, 1, 0))


def test_oblique_dicom_series_keeps_its_geometry(tiny_checkpoint: Path, tmp_path: Path) -> None:
    hu = big_ct().astype(np.float64)
    folder = write_dicom_series(tmp_path / "oblique", hu, spacing=(0.8, 0.9, 5.0), direction=oblique_direction(30))
    prediction = threshold_predictor(tiny_checkpoint, postprocess="none").predict(folder, "liver")
    np.testing.assert_allclose(prediction.affine, read_dicom_series(folder).affine, atol=1e-9)
    assert prediction.labels["liver"].shape == hu.shape
    assert dice(prediction.labels["liver"] >= 1, hu > 97.5) > 0.9


def test_official_postprocessing_keeps_the_largest_liver(tiny_checkpoint: Path, tmp_path: Path) -> None:
    hu = ct()
    path = write_nifti(tmp_path / "ras.nii.gz", hu, AFFINES["ras"])
    predictor = threshold_predictor(tiny_checkpoint)
    assert predictor.postprocess == "official" and not predictor.tta  # the defaults on a CPU
    prediction = predictor.predict(path, ["liver", "spleen"])
    expected = expected_liver(hu)
    expected[20:28, 3:9, 7:11] = 0  # the smaller of the two 'organs' is dropped
    np.testing.assert_array_equal(prediction.labels["liver"], expected)
    np.testing.assert_array_equal(prediction.labels["spleen"], (expected >= 1).astype(np.uint8))
    assert prediction.rules["liver"].organ_components == 1


def test_probabilities_are_kept_on_the_input_grid(tiny_checkpoint: Path, tmp_path: Path) -> None:
    hu = ct()
    path = write_nifti(tmp_path / "lps.nii.gz", hu, AFFINES["lps"])
    prediction = threshold_predictor(tiny_checkpoint, postprocess="none").predict(
        path, "liver,spleen", keep_probabilities=True
    )
    assert sorted(prediction.probabilities["liver"]) == ["organ", "tumor"]
    assert sorted(prediction.probabilities["spleen"]) == ["organ"]  # spleen labels no tumour
    organ = prediction.probabilities["liver"]["organ"]
    assert organ.shape == hu.shape and organ.dtype == np.float16
    windowed = np.clip(hu, -325, 325) / 325.0
    np.testing.assert_allclose(organ, 1 / (1 + np.exp(-40 * (windowed - 0.3))), atol=2e-3)


def test_a_real_model_keeps_the_shape(tiny_checkpoint: Path, tmp_path: Path) -> None:
    affine = np.array([[-1.7, 0, 0, 30], [0, -1.9, 0, -12], [0, 0, 2.2, 40], [0, 0, 0, 1]])  # resampled
    path = write_nifti(tmp_path / "case.nii.gz", ct((21, 17, 9)), affine)
    labels = Predictor(tiny_checkpoint, device="cpu").predict(path, tasks=["spleen", 0]).labels
    assert set(labels) == {"spleen", "liver"}
    assert labels["spleen"].shape == (21, 17, 9) and set(np.unique(labels["spleen"])) <= {0, 1}
    assert set(np.unique(labels["liver"])) <= {0, 1, 2}


def test_tasks_by_name_id_and_list(tiny_checkpoint: Path) -> None:
    predictor = Predictor(tiny_checkpoint, device="cpu")
    names = lambda tasks: [t.name for t in predictor.resolve_tasks(tasks)]  # noqa: E731
    assert names("all") == names(None) == names(["all"]) == list(predictor.collection.task_names)
    assert names("liver, 6") == names(["liver", 6]) == names(["liver,spleen", "liver"]) == ["liver", "spleen"]
    with pytest.raises(CCQError, match="did you mean 'liver'"):
        predictor.resolve_tasks("livr")
    with pytest.raises(CCQError, match="did you mean 'kidney'"):
        predictor.resolve_tasks(["spleen", "kidny"])


def test_bad_settings_are_one_line_errors(tiny_checkpoint: Path) -> None:
    with pytest.raises(CCQError, match="post-processing 'best'"):
        Predictor(tiny_checkpoint, postprocess="best")
    with pytest.raises(CCQError, match="overlap=1.0"):
        Predictor(tiny_checkpoint, overlap=1.0)
    if not torch.backends.mps.is_available():
        with pytest.raises(CCQError, match="no Apple GPU"):
            Predictor(tiny_checkpoint, device="mps")
    if not torch.cuda.is_available():
        with pytest.raises(CCQError, match="no CUDA GPU"):
            Predictor(tiny_checkpoint, device="cuda")


def test_slab_by_slab_mapping_back_equals_the_whole_volume_at_once(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ccq.data import geometry
    from ccq.inference import predictor as module

    monkeypatch.setattr(module, "_SLAB_VOXELS", 3 * 40 * 34)  # 3 output slices a slab: many slabs
    predictor = Predictor(tiny_checkpoint, device="cpu")
    _, info = geometry.to_canonical(np.zeros((40, 34, 10), np.float32), RESAMPLED["anisotropic"])
    shape = geometry.target_shape(info.shape, info.spacing, predictor.preprocessing.spacing)
    working = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    mask, kept = predictor._back_to_input(working, info, keep_probabilities=True)
    whole = geometry.to_original_grid(working.numpy(), info, predictor.preprocessing.spacing, order=1)
    assert mask.shape == kept.shape == (40, 34, 10)
    np.testing.assert_allclose(kept.astype(np.float32), whole, atol=1e-3)
    near = np.abs(whole - 0.5) < 1e-5  # rounding may only flip voxels on the threshold itself
    np.testing.assert_array_equal(mask[~near], (whole > 0.5)[~near])


def test_the_cpu_predictor_runs_channels_last_with_the_same_probabilities(tiny_checkpoint: Path) -> None:
    from ccq.checkpoint import load_checkpoint
    from ccq.inference import predict_channels

    predictor = Predictor(tiny_checkpoint, device="cpu")
    convs = [m.weight for m in predictor.model.modules() if isinstance(m, nn.Conv3d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last_3d) for w in convs)
    plain = load_checkpoint(tiny_checkpoint).model.eval()
    plain_convs = [m.weight for m in plain.modules() if isinstance(m, nn.Conv3d)]
    assert not all(w.is_contiguous(memory_format=torch.channels_last_3d) for w in plain_convs)
    volume = torch.rand(20, 40, 36, generator=torch.Generator().manual_seed(5)) * 2 - 1
    pairs = [(0, 0), (1, 1)]
    fast = predict_channels(predictor.model, volume, [0, 4], pairs)
    torch.testing.assert_close(fast, predict_channels(plain, volume, [0, 4], pairs), atol=1e-5, rtol=0)
