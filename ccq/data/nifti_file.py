"""Reading a NIfTI file with bounded memory: the header is checked before any voxel is allocated.

A NIfTI header declares the array (shape and type) that follows it, and a 66-byte ``.nii.gz`` can declare
2000^3 voxels. Before reading, the declared size is checked against `ccq.limits.MAX_VOXELS`, against the memory
this process has, and for an uncompressed ``.nii`` against the file itself (it cannot hold fewer bytes than it
declares). A ``.nii.gz`` is decompressed into its array chunk by chunk, never past the declared size, so memory
grows only with the data actually there and a stream that ends early is reported as truncated.

Header oddities nibabel would repair silently are refused with one line instead: a zero voxel size where the
affine is built from it (no sform), complex or RGB voxels, and spacings no CT has (`ccq.limits.check_spacing`).
"""

from __future__ import annotations

import contextlib
import gzip
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.imageglobals import logger as nibabel_logger
from nibabel.openers import ImageOpener
from nibabel.volumeutils import apply_read_scaling

import ccq.limits as limits
from ccq.errors import CCQError

_CHUNK = 1 << 24
"""Bytes decompressed at a time (16 MiB)."""
_SLAB_VOXELS = 1 << 22
"""Voxels scaled at a time (the scaling may be computed in float64: 32 MiB)."""
MAX_VOX_OFFSET = 1 << 30
"""Where the voxels may start at the latest (a header with its extensions is a few kB)."""


@dataclass(frozen=True)
class NiftiHeader:
    """A NIfTI file's parsed, checked header: enough to read its voxels."""

    path: Path
    image: Any
    """The nibabel image (its array proxy is not read here)."""
    shape: tuple[int, ...]
    """The spatial shape (a trailing singleton 4th axis dropped)."""
    where: str
    """``[case CASE: ]WHAT PATH``, for messages."""
    cannot: str
    """``[case CASE: ]cannot read the voxels of WHAT PATH``, for messages."""


@contextlib.contextmanager
def quiet_nibabel() -> Iterator[None]:
    """nibabel's header-repair log lines off (e.g. "pixdim[1,2,3] should be non-zero; setting 0 dims to 1")."""
    before = nibabel_logger.disabled
    nibabel_logger.disabled = True
    try:
        yield
    finally:
        nibabel_logger.disabled = before


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) < 160 else text[:157] + "..."


def open_header(path: str | Path, *, what: str, case: str | None = None) -> NiftiHeader:
    """Parse and check ``path``'s header (no voxels read); every problem is a one-line CCQError.

    ``what``: "image", "label", "prediction" ...; ``case`` prefixes messages with ``case CASE:``.
    """
    path = Path(path)
    head = f"case {case}: " if case is not None else ""
    where = f"{head}{what} {path}"
    if path.is_symlink() and not path.exists():
        raise CCQError(f"{where} is a broken symbolic link (to {path.readlink()}); expected a NIfTI file")
    try:
        with quiet_nibabel():  # nibabel logs header repairs; ccq refuses what matters, below
            img = nib.load(str(path))
    except Exception as err:  # nibabel raises many types for a bad header; the user needs only the file name
        raise CCQError(f"{head}cannot read {what} {path}: {_short(err)}; expected a NIfTI file") from err
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise CCQError(f"{where} is a {type(img).__name__}; expected a NIfTI file")
    shape = tuple(int(n) for n in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise CCQError(f"{where} has shape {tuple(img.shape)}; expected a 3D volume")
    dtype = img.get_data_dtype()
    if dtype.kind == "c":
        raise CCQError(f"{where} holds complex values ({dtype}); expected real numbers (a CT or a label map)")
    if dtype.kind not in "uifb" or dtype.fields is not None:
        raise CCQError(f"{where} holds {_dtype_name(dtype)} values; expected one number per voxel")
    _check_pixdim(img, path, where)
    limits.check_spacing(np.linalg.norm(np.asarray(img.affine)[:3, :3], axis=0), where, "voxel sizes")
    return NiftiHeader(path, img, shape, where, f"{head}cannot read the voxels of {what} {path}")


def _dtype_name(dtype: np.dtype) -> str:
    return "RGB" if dtype.fields is not None and len(dtype.fields) >= 3 else str(dtype)


def _check_pixdim(img: Any, path: Path, where: str) -> None:
    """A zero voxel size (pixdim) that the affine is built from: nibabel would replace it by 1 mm."""
    header = img.header
    if int(header["sform_code"]) > 0:
        return  # the sform gives the affine; pixdim is not used
    with quiet_nibabel(), ImageOpener(str(path)) as f:
        raw = type(header).from_fileobj(f, check=False)  # as stored: nibabel's load already set 0 to 1
    pixdim = [float(v) for v in raw["pixdim"][1:4]]
    if any(v == 0 or not math.isfinite(v) for v in pixdim):
        raise CCQError(
            f"{where}: header voxel sizes (pixdim) ({', '.join(f'{v:g}' for v in pixdim)}) with no sform to replace "
            "them; expected "
            "positive voxel sizes in mm (fix the header: set pixdim, or an sform)"
        )


def check_size(header: NiftiHeader, *, as_float: bool) -> None:
    """The declared voxels within the limits, the file, and the memory available (nothing allocated)."""
    img, path, where = header.image, header.path, header.where
    proxy = img.dataobj
    dtype = np.dtype(img.get_data_dtype())
    full_shape = tuple(int(n) for n in img.shape)
    limits.check_voxels(full_shape, where)
    voxels = math.prod(full_shape)
    nbytes = voxels * dtype.itemsize
    offset = int(getattr(proxy, "offset", 0))
    if offset > MAX_VOX_OFFSET:
        raise CCQError(f"{where}: header vox_offset {offset}; expected the voxels within the first GiB")
    if not _is_gzip(path):
        size = path.stat().st_size
        if offset + nbytes > size:
            raise CCQError(
                f"{header.cannot}: the file is truncated (its header declares {limits.shape_text(full_shape)} "
                f"{dtype} voxels, {nbytes} bytes from byte {offset}, and the file holds {size} bytes)"
            )
    need = nbytes + (4 * voxels if as_float and dtype != np.float32 else 0)
    limits.check_memory(need, where, f"its {limits.shape_text(full_shape)} {dtype} voxels")


def _is_gzip(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def read_voxels(header: NiftiHeader, *, as_float: bool) -> np.ndarray:
    """The voxel array (spatial shape), float32 with the header's scaling applied when ``as_float`` (as
    nibabel's ``get_fdata(dtype=float32)``), else the stored values scaled as ``np.asanyarray(img.dataobj)``."""
    dtype = np.float32 if as_float else None
    return _reading(header, lambda raw: _scaled(header.image.dataobj, raw, dtype))


def read_stored(header: NiftiHeader) -> np.ndarray:
    """The voxel array (spatial shape) exactly as stored, no scaling (memory: the file's own voxel bytes, e.g. 2
    per voxel for int16); `float32_scaling` gives what ``read_voxels(as_float=True)`` would, for any part of it."""
    return _reading(header, lambda raw: raw)


def float32_scaling(header: NiftiHeader) -> Callable[[np.ndarray], np.ndarray]:
    """The header's scaling as a function: part of `read_stored`'s array -> float32, the same values as that part
    of ``read_voxels(as_float=True)`` (the type the scaling is computed in depends on the dtypes only)."""
    proxy = header.image.dataobj
    return lambda part: _scaled(proxy, part, np.float32)


def _reading(header: NiftiHeader, scale: Callable[[np.ndarray], Any]) -> np.ndarray:
    img, path = header.image, header.path
    try:
        raw = _read_gzip(img, path, header.cannot) if _is_gzip(path) else np.asanyarray(img.dataobj.get_unscaled())
        data = scale(raw)
    except CCQError:
        raise
    except Exception as err:  # a file changed meanwhile, a disk error ...: the user needs the file name
        raise CCQError(f"{header.cannot}: {_short(err)} (truncated file?)") from err
    return np.asarray(data).reshape(header.shape)


def _read_gzip(img: Any, path: Path, cannot: str) -> np.ndarray:
    """The stored array of a .nii.gz, decompressed chunk by chunk into an array of exactly the declared size."""
    proxy = img.dataobj
    dtype = np.dtype(img.get_data_dtype())
    shape = tuple(int(n) for n in img.shape)
    nbytes = math.prod(shape) * dtype.itemsize
    buffer = np.empty(nbytes, dtype=np.uint8)  # untouched pages cost no memory until data arrives
    view = memoryview(buffer)
    done = 0
    try:
        with gzip.open(path, "rb") as f:
            f.seek(int(proxy.offset))
            while done < nbytes:
                n = f.readinto(view[done : min(done + _CHUNK, nbytes)])
                if not n:
                    break
                done += n
    except (EOFError, OSError, zlib.error) as err:
        raise CCQError(
            f"{cannot}: {_short(err)} after {done} of {nbytes} voxel bytes (truncated file?); expected a "
            "complete .nii.gz"
        ) from None
    if done < nbytes:
        raise CCQError(
            f"{cannot}: the file is truncated (its header declares {limits.shape_text(shape)} {dtype} voxels, "
            f"{nbytes} bytes, and the compressed stream ends after {done})"
        )
    return buffer.view(dtype).reshape(shape, order=proxy.order)


def _scaled(proxy: Any, raw: np.ndarray, dtype: Any) -> np.ndarray:
    """The header's scaling applied to ``raw`` exactly as nibabel's array proxy does (``__array__(dtype)``)."""
    slope, inter = np.asanyarray(proxy.slope), np.asanyarray(proxy.inter)
    use_dtype = slope.dtype if dtype is None else dtype
    if np.can_cast(slope, use_dtype):
        slope = slope.astype(use_dtype)
    if np.can_cast(inter, use_dtype):
        inter = inter.astype(use_dtype)
    if dtype is None:
        return apply_read_scaling(raw, slope, inter)
    # Slab by slab along the axis slowest in memory (the last in NIfTI's Fortran order; another in a reoriented view):
    # the same values as scaling the whole array (the type the scaling is computed in depends on the dtypes only),
    # without a float64 copy of it all.
    out = np.empty_like(np.asarray(raw), dtype=dtype)  # the layout of the stored array (a plain array, not a memmap)
    axis = int(np.argmax(np.abs(raw.strides))) if raw.ndim else 0
    step = max(1, _SLAB_VOXELS * raw.shape[axis] // max(1, raw.size)) if raw.ndim else 1
    for a in range(0, raw.shape[axis] if raw.ndim else 1, step):
        part = (slice(None),) * axis + (slice(a, a + step),) if raw.ndim else ()
        scaled = apply_read_scaling(raw[part], slope, inter)
        out[part] = scaled.astype(np.promote_types(scaled.dtype, dtype), copy=False)
    return out


def read_nifti_file(
    path: str | Path, *, what: str, case: str | None = None, as_float: bool = True
) -> tuple[np.ndarray, np.ndarray, Any]:
    """(array in file voxel order, 4x4 affine, header) of a 3D NIfTI file, every check made before reading."""
    header = open_header(path, what=what, case=case)
    check_size(header, as_float=as_float)
    array = read_voxels(header, as_float=as_float)
    return array, np.asarray(header.image.affine, dtype=np.float64), header.image.header
