"""An independent re-implementation of the official CCQ / DoDNet data path, for tests only (ccq never imports it).

Written again from the authors' scripts (``code/dataset/re_spacing.py``, ``code/network/MOTSDataset.py``,
``code/network/evaluate.py`` of Yang-007/CCQ; DoDNet's ``dataset/re_spacing.py`` and ``a_DynConv/``), with the
libraries they use: SimpleITK to read and write, scikit-image's ``resize`` with the official arguments, nibabel to
load, numpy for the transposes, the padding and the HU window. docs/official-data-path.md lists each fact and how
it was checked. The scikit-image semantics reproduced are those of the installed version (0.19 and later: the
float input makes ``anti_aliasing`` default to True when an axis shrinks, labels included, as in 0.15-0.18).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

SPACING = {
    # re_spacing.py's target spacings, in SimpleITK array order (the file's voxel axes reversed: k, j, i).
    "ccq": {
        0: (1.5, 0.8, 0.8),
        1: (3.0, 0.76, 0.76),
        2: (1.5, 0.8, 0.8),
        3: (1.5, 0.8, 0.8),
        4: (1.5, 0.8, 0.8),
        5: (1.5, 0.8, 0.8),
        6: (1.5, 0.8, 0.8),
    },  # fmt: skip
    "dodnet": dict.fromkeys(range(7), (1.5, 0.8, 0.8)),
}
KIDNEY = 1
HU_MIN, HU_MAX, HU_SCALE = -325.0, 325.0, 325.0


def respace(src: Path, dst: Path, task_id: int, *, label: bool, code: str = "ccq") -> None:
    """re_spacing.py on one file: resample the SimpleITK array to the task's target spacing and write it back
    with that spacing and the source's origin and direction.

    MSD branch: new size ``int(n * ratio)``, ``mode`` 'constant' (images) / 'edge' (labels); kidney branch
    (CCQ: ``round``, DoDNet: ``int``) without ``mode`` (scikit-image's default, 'reflect'). Images are rounded to
    int32, labels keep their dtype; both are cast to float64 before ``resize``."""
    import SimpleITK as sitk
    from skimage.transform import resize

    itk = sitk.ReadImage(str(src))
    array = sitk.GetArrayFromImage(itk)
    size = np.array(itk.GetSize())[[2, 1, 0]]
    spacing = np.array(itk.GetSpacing())[[2, 1, 0]]
    target = np.array(SPACING[code][task_id])
    ratio = spacing / target
    dtype = array.dtype if label else np.int32
    order = 0 if label else 3
    array = array.astype(np.float64)
    if task_id == KIDNEY:
        rounding = round if code == "ccq" else int
        shape = tuple(rounding(n * r) for n, r in zip(size, ratio, strict=True))
        out = resize(array, shape, order=order, cval=0, clip=True, preserve_range=True)
    else:
        shape = tuple(int(n * r) for n, r in zip(size, ratio, strict=True))
        mode = "edge" if label else "constant"
        out = resize(array, shape, order=order, mode=mode, cval=0, clip=True, preserve_range=True)
    out = np.round(out).astype(dtype)
    written = sitk.GetImageFromArray(out)
    written.SetSpacing(target[[2, 1, 0]].tolist())
    written.SetOrigin(itk.GetOrigin())
    written.SetDirection(itk.GetDirection())
    sitk.WriteImage(written, str(dst))


def _load(path: Path) -> np.ndarray:
    """nibabel's ``get_data()`` (the stored values, scaled; gone from nibabel 5): the array proxy's values."""
    return np.asanyarray(nib.load(str(path)).dataobj)


def _pad_end(array: np.ndarray, size: tuple[int, int, int]) -> np.ndarray:
    """MOTSDataSet.pad_image: zeros at the end of each axis up to ``size`` ([H, W, D])."""
    missing = [max(0, int(np.ceil(t - n))) for t, n in zip(size, array.shape, strict=True)]
    return np.pad(array, [(0, m) for m in missing], "constant")


def _truncate(ct: np.ndarray) -> np.ndarray:
    """MOTSDataSet.truncate: clip to [-325, 325] HU (in place, on the array's own dtype), then / 325."""
    ct[np.where(ct <= HU_MIN)] = HU_MIN
    ct[np.where(ct >= HU_MAX)] = HU_MAX
    return (ct - 0) / HU_SCALE


def network_input(path: Path, task_id: int, crop: tuple[int, int, int] = (64, 192, 192)) -> np.ndarray:
    """The float32 [D, H, W] array the official network is given for a prepared image (MOTSValDataSet, and
    MOTSDataSet before its random crop): kidney transposed (1, 2, 0), padded at the end with 0 HU to ``crop``
    (D, H, W), windowed, then the (channel,) H, W, D axes transposed to (channel,) D, H, W."""
    image = _load(path)
    if task_id == KIDNEY:
        image = image.transpose((1, 2, 0))
    d, h, w = crop
    image = _pad_end(image, (h, w, d))
    image = _truncate(image)
    image = image[np.newaxis, :].transpose((0, 3, 1, 2))
    return image.astype(np.float32)[0]


def network_label(path: Path, task_id: int) -> np.ndarray:
    """A prepared label map in the network's [D, H, W] order (the transposes of `network_input`, no padding)."""
    label = _load(path)
    if task_id == KIDNEY:
        label = label.transpose((1, 2, 0))
    return label.transpose((2, 0, 1))


def to_file_order(array: np.ndarray, task_id: int) -> np.ndarray:
    """A network-order [..., D, H, W] array back in the prepared file's voxel order, as evaluate.py saves its
    predictions (MSD: transposed (H, W, D); kidney: as it is)."""
    if task_id == KIDNEY:
        return array
    lead = array.ndim - 3
    return array.transpose((*range(lead), lead + 1, lead + 2, lead))


# ------------------------------------------------------------------------------------------------ synthetic files


def kits_affine(spacing_ijk: tuple[float, float, float]) -> np.ndarray:
    """The affine of a KiTS19 ``imaging.nii.gz`` (voxel sizes along i, j, k): slices on voxel axis 0 pointing
    inferior, then posterior, then left (nibabel axis codes I, P, L), no translation, as the published files have."""
    si, sj, sk = spacing_ijk
    return np.array([[0, 0, -sk, 0], [0, -sj, 0, 0], [-si, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def msd_affine(spacing_ijk: tuple[float, float, float]) -> np.ndarray:
    """The affine of a typical MSD image: voxel axes (L, P, S) (RAS diagonal -x, -y, +z), some translation."""
    sx, sy, sz = spacing_ijk
    return np.array([[-sx, 0, 0, 171.3], [0, -sy, 0, 190.2], [0, 0, sz, -412.5], [0, 0, 0, 1]], dtype=np.float64)


def ct_volume(shape: tuple[int, int, int], affine: np.ndarray, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(int16 HU image, uint8 label) in file voxel order: air outside an ellipsoid body (40 HU, smooth edges), a
    bright off-centre blob (label 1, organ) with an off-centre core (label 2, tumor), defined in world millimetres
    so that the anatomy is the same whatever the voxel order; smooth, so that resampling errors stay small."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(np.float64)
    lin, last = affine[:3, :3], np.array(shape, dtype=np.float64) - 1
    world = idx @ lin.T + affine[:3, 3]
    centre = lin @ (last / 2) + affine[:3, 3]  # the volume's world centre
    extent = np.abs(lin) @ last / 2  # half its size along world x, y, z
    rel = (world - centre) / np.maximum(extent, 1e-6)  # in [-1, 1] per world axis (x, y, z)
    body = np.sqrt((rel[..., 0] / 0.85) ** 2 + (rel[..., 1] / 0.8) ** 2 + (rel[..., 2] / 0.95) ** 2)
    blob_at = np.array([0.35, -0.25, 0.2])  # right of, in front of and above the centre: no symmetry survives a flip
    d_blob = np.linalg.norm((rel - blob_at) / np.array([0.25, 0.2, 0.3]), axis=-1)
    core_at = blob_at + np.array([0.08, 0.05, -0.1])
    d_core = np.linalg.norm((rel - core_at) / np.array([0.1, 0.08, 0.12]), axis=-1)
    hu = -1000 + 1040 / (1 + np.exp((body - 1) * 12))  # soft skin edge
    hu += 180 / (1 + np.exp((d_blob - 1) * 6)) - 90 / (1 + np.exp((d_core - 1) * 6))
    rng = np.random.default_rng(seed)
    hu += rng.normal(0, 1.0, size=shape)  # a little texture, far below interpolation error
    label = np.zeros(shape, dtype=np.uint8)
    label[d_blob < 1] = 1
    label[d_core < 1] = 2
    return np.round(hu).astype(np.int16), label


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, str(path))
    return path
