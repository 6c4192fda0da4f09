"""Overlay pictures: valid PNGs, radiological orientation, independence from the file's axis order, edge cases."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from ccq.data.geometry import to_canonical
from ccq.errors import CCQError
from ccq.viz import overlay_files, write_overlays
from ccq.viz.views import area_profiles, best_slice, canonical_volume, panel

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SHAPE = (48, 40, 10)  # RAS file order: i towards the patient's right, j anterior, k superior
RAS = np.diag([2.0, 2.0, 3.0, 1.0])


def phantom(marker_side: str | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A body (40 HU ellipse in air) with an organ, in RAS voxel order; a bright marker on one side if asked."""
    i, j, k = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    body = ((i - 23.5) / 21) ** 2 + ((j - 19.5) / 17) ** 2 <= 1
    ct = np.where(body, 40.0, -1000.0).astype(np.float32)
    organ = ((i - 30) ** 2 + (j - 22) ** 2 <= 25) & (k >= 2) & (k <= 7)
    if marker_side is not None:
        # RAS: voxel index i grows towards the patient's right, so the patient's left is at small i.
        ci = 8 if marker_side == "left" else 39
        ct[ci - 3 : ci + 3, 16:24, :] = 1000.0
    return ct, {"body": body & (k >= 0), "organ": organ}


def to_lps(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array[::-1, ::-1, :])


LPS = np.array([[-2.0, 0, 0, 2.0 * (SHAPE[0] - 1)], [0, -2.0, 0, 2.0 * (SHAPE[1] - 1)], [0, 0, 3.0, 0], [0, 0, 0, 1]])


def test_files_are_valid_pngs_with_deterministic_names(tmp_path: Path) -> None:
    ct, masks = phantom()
    reference = {"organ": np.roll(masks["organ"], 2, axis=0)}
    written = write_overlays(ct, RAS, masks, tmp_path / "out", reference=reference, prefix="case1_")
    expected = [
        tmp_path / "out" / f"case1_{n}"
        for n in ("body_axial.png", "body_coronal.png", "organ_axial.png", "organ_coronal.png", "overview.png")
    ]
    assert written == expected == overlay_files(["body", "organ"], tmp_path / "out", prefix="case1_")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in expected)  # no temporaries
    for path in written:
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5_000
        pixels = mpimg.imread(path)
        assert pixels.ndim == 3 and pixels.shape[0] >= 250 and pixels.shape[1] >= 350
        assert pixels[..., :3].std() > 0.05  # not a blank page


def test_patient_left_shows_on_the_image_right(tmp_path: Path) -> None:
    columns = {}
    pictures = {}
    for side in ("left", "right"):
        ct, masks = phantom(side)
        path = write_overlays(ct, RAS, {"body": masks["body"]}, tmp_path / side)[0]
        assert path.name == "body_axial.png"
        pictures[side] = mpimg.imread(path)[..., :3].mean(axis=-1)
    # The bright marker is where one picture is much lighter than the other.
    for side, other in (("left", "right"), ("right", "left")):
        rows, cols = np.nonzero(pictures[side] - pictures[other] > 0.3)
        assert len(cols) > 50
        columns[side] = cols.mean()
    width = pictures["left"].shape[1]
    assert columns["left"] > 0.6 * width and columns["right"] < 0.4 * width


def test_axial_view_is_radiological_and_coronal_has_superior_up() -> None:
    ct, _ = phantom()
    marker = np.zeros(SHAPE, dtype=bool)
    marker[2, 30, 8] = True  # patient's left (small i), anterior (large j), superior (large k)
    volume = canonical_volume(ct, RAS, {"m": marker})
    profile = area_profiles(volume)["m"]
    axial = panel(volume, "axial", best_slice(profile["axial"]), ["m"])
    r, c = np.argwhere(axial.masks["m"])[0]
    assert c > axial.ct.shape[1] / 2 and r < axial.ct.shape[0] / 2  # image right, top (anterior)
    assert (axial.row_mm, axial.col_mm) == (2.0, 2.0) and axial.edges == ("A", "P", "R", "L")
    coronal = panel(volume, "coronal", best_slice(profile["coronal"]), ["m"])
    r, c = np.argwhere(coronal.masks["m"])[0]
    assert c > coronal.ct.shape[1] / 2 and r < coronal.ct.shape[0] / 2  # image right, top (superior)
    assert (coronal.row_mm, coronal.col_mm) == (3.0, 2.0)


@pytest.mark.parametrize(
    "affine",
    [RAS, LPS, RAS[:, [2, 1, 0, 3]], np.array([[0, -2.0, 0, 5], [0, 0, 3.0, -7], [2.0, 0, 0.3, 1], [0, 0, 0, 1]])],
    ids=["RAS", "LPS", "slices-first", "oblique-permuted"],
)
def test_canonical_views_equal_the_pipelines_reorientation_without_copies(affine):
    ct, masks = phantom("left")
    volume = canonical_volume(ct, affine, masks)
    expected, info = to_canonical(ct, affine)
    assert np.array_equal(volume.ct, expected)
    assert np.array_equal(volume.masks["organ"], to_canonical(masks["organ"].astype(np.uint8), affine)[0] > 0)
    assert volume.spacing == pytest.approx(info.spacing) and np.allclose(volume.affine, np.asarray(info.affine))
    assert np.shares_memory(volume.ct, ct) and np.shares_memory(volume.masks["body"], masks["body"])


def test_ras_lps_and_slices_first_files_give_the_same_picture(tmp_path: Path) -> None:
    ct, masks = phantom("left")
    write_overlays(ct, RAS, masks, tmp_path / "ras")
    write_overlays(to_lps(ct), LPS, {k: to_lps(v) for k, v in masks.items()}, tmp_path / "lps")
    # KiTS19 style: slices on the first voxel axis.
    kji = RAS[:, [2, 1, 0, 3]]
    write_overlays(ct.transpose(2, 1, 0), kji, {k: v.transpose(2, 1, 0) for k, v in masks.items()}, tmp_path / "kji")
    names = sorted(p.name for p in (tmp_path / "ras").iterdir())
    assert len(names) == 5
    for other in ("lps", "kji"):
        assert sorted(p.name for p in (tmp_path / other).iterdir()) == names
        for name in names:
            assert np.array_equal(mpimg.imread(tmp_path / "ras" / name), mpimg.imread(tmp_path / other / name)), name


def test_true_aspect_ratio_from_the_spacing(tmp_path: Path) -> None:
    ct, masks = phantom()
    coarse = np.diag([2.0, 2.0, 12.0, 1.0])  # slices 4x thicker: the coronal picture is 4x as tall in mm
    volume = canonical_volume(ct, coarse, masks)
    p = panel(volume, "coronal", 20, ["body"])
    assert p.ct.shape == (SHAPE[2], SHAPE[0]) and p.row_mm == 12.0
    a = mpimg.imread(write_overlays(ct, RAS, {"body": masks["body"]}, tmp_path / "a")[1])
    b = mpimg.imread(write_overlays(ct, coarse, {"body": masks["body"]}, tmp_path / "b")[1])
    assert b.shape[0] > a.shape[0] * 1.5  # the 120 mm tall volume draws taller than the 30 mm one


@pytest.mark.parametrize("depth", [1, 2])
def test_thin_volumes_and_empty_masks(tmp_path: Path, depth: int) -> None:
    ct, masks = phantom()
    ct, body = ct[..., :depth], masks["body"][..., :depth]
    empty = np.zeros_like(body)
    written = write_overlays(ct, RAS, {"body": body, "tumor": empty}, tmp_path, reference={"tumor": empty})
    # No pictures for a structure empty in prediction and reference; the overview still comes.
    assert [p.name for p in written] == ["body_axial.png", "body_coronal.png", "overview.png"]
    for path in written:
        assert path.read_bytes().startswith(PNG_SIGNATURE)
    only_empty = write_overlays(ct, RAS, {"tumor": empty}, tmp_path / "none")
    assert [p.name for p in only_empty] == ["overview.png"]


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    ct, masks = phantom()
    with pytest.raises(CCQError, match=r"mask 'organ' has shape \(48, 40, 9\)"):
        write_overlays(ct, RAS, {"organ": masks["organ"][..., :9]}, tmp_path)
    with pytest.raises(CCQError, match="expected a 3D CT"):
        write_overlays(ct[..., 0], RAS, {}, tmp_path)
    with pytest.raises(CCQError, match="would share the file name"):
        write_overlays(ct, RAS, {"liver tumor": masks["organ"], "liver/tumor": masks["organ"]}, tmp_path)
    with pytest.raises(CCQError, match="path separator"):
        write_overlays(ct, RAS, masks, tmp_path, prefix="a/b")
    assert list(tmp_path.iterdir()) == []
