"""Overlay pictures: CT slices in a soft-tissue window with the predicted (and reference) structures outlined.

`write_overlays` is what ``ccq predict --overlays`` and ``ccq evaluate --overlays`` call. For every structure it
writes an axial and a coronal slice through the structure's largest cross-section, zoomed on it, and one overview
of all structures; pictures follow the radiological convention (patient's right on the image's left, anterior /
superior at the top) with the true aspect ratio of the voxels (see `ccq.viz.views`).

Rendering uses matplotlib's Agg canvas on a private Figure (no pyplot, no display, no global state), so it runs on
headless servers and in worker threads.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ccq.errors import CCQError
from ccq.utils.fs import replace_atomically
from ccq.viz.views import (
    VIEWS,
    Panel,
    Volume,
    area_profiles,
    best_slice,
    canonical_volume,
    crop,
    crop_box,
    n_slices,
    overview_slice,
    panel,
)

WINDOW_HU = (40.0, 400.0)
"""(level, width) of the soft-tissue window: -160 HU shows black, 240 HU white."""

OVERVIEW_NAME = "overview"
"""The all-structures picture is ``{prefix}overview.png``."""

# 20 colours that stay distinct from each other and readable over grey CT (no greys, no near-blacks).
PALETTE = (
    "#e6194b",
    "#3cb44b",
    "#ffe119",
    "#4363d8",
    "#f58231",
    "#42d4f4",
    "#f032e6",
    "#bfef45",
    "#fabed4",
    "#469990",
    "#dcbeff",
    "#9a6324",
    "#fffac8",
    "#aaffc3",
    "#808000",
    "#ffd8b1",
    "#911eb4",
    "#800000",
    "#000075",
    "#a9a9a9",
)

DPI = 100
_PANEL_INCHES = 5.5  # the longer side of one slice on the page
_LINE_WIDTH = 1.6
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def file_stem(name: str) -> str:
    """A label name as a file-name part: runs of anything but letters, digits, ``.``, ``_``, ``-`` become ``_``."""
    stem = _SAFE_NAME.sub("_", name).strip("._")
    return stem or "structure"


def overlay_files(names: list[str], out_dir: str | os.PathLike[str], *, prefix: str = "") -> list[Path]:
    """Every path `write_overlays` may write for these structure names (callers check them before overwriting).

    Raises CCQError if two names map to the same file or ``prefix`` contains a path separator.
    """
    if "/" in prefix or os.sep in prefix:
        raise CCQError(f"write_overlays: prefix {prefix!r} contains a path separator; expected a file-name prefix")
    out_dir = Path(out_dir)
    seen: dict[str, str] = {}
    paths = []
    for name in names:
        stem = file_stem(name)
        if stem in seen:
            raise CCQError(f"write_overlays: structures {seen[stem]!r} and {name!r} would share the file name {stem!r}")
        if stem == OVERVIEW_NAME:
            raise CCQError(f"write_overlays: structure {name!r} would clash with the overview picture's name")
        seen[stem] = name
        paths += [out_dir / f"{prefix}{stem}_{view}.png" for view in VIEWS]
    return paths + [out_dir / f"{prefix}{OVERVIEW_NAME}.png"]


def write_overlays(
    image: np.ndarray,
    affine: np.ndarray,
    masks: Mapping[str, np.ndarray],
    out_dir: str | os.PathLike[str],
    *,
    reference: Mapping[str, np.ndarray] | None = None,
    prefix: str = "",
) -> list[Path]:
    """Write overlay PNGs of a CT and its segmentation; returns the files written, in a fixed order.

    ``image``: the CT [X, Y, Z] in the file's voxel order, in HU; ``affine``: its 4x4 voxel -> world RAS mm matrix;
    ``masks``: label name -> [X, Y, Z] bool, the prediction (solid outlines); ``reference``: the same for the
    ground truth (dashed outlines), optional. Files under ``out_dir`` (created if missing):
    ``{prefix}{name}_axial.png`` and ``{prefix}{name}_coronal.png`` for every structure present in the prediction
    or the reference (none for a structure empty in both; the overview's legend says "not found"), then
    ``{prefix}overview.png``. Existing files of those names are replaced (atomically): whether that is allowed is
    the caller's decision (see `overlay_files`).
    """
    volume = canonical_volume(image, affine, masks, reference)
    names = volume.names
    paths = overlay_files(names, out_dir, prefix=prefix)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    profiles = area_profiles(volume)
    written: list[Path] = []
    for i, name in enumerate(names):
        if not profiles[name][VIEWS[0]].any():
            continue
        for view, path in zip(VIEWS, paths[2 * i : 2 * i + 2], strict=True):
            p = panel(volume, view, best_slice(profiles[name][view]), [name])
            keep = p.masks.get(name, np.zeros(p.ct.shape, dtype=bool)) | p.reference.get(name, False)
            p = crop(p, *crop_box(keep, p.row_mm, p.col_mm))
            fig = _figure([p], colours, volume, title=name, names=[name])
            written.append(_save(fig, path))
    panels = [panel(volume, view, overview_slice(profiles, view, n_slices(volume, view)), names) for view in VIEWS]
    fig = _figure(panels, colours, volume, title="all structures", names=names)
    written.append(_save(fig, paths[-1]))
    return written


# ---------------------------------------------------------------------------------------------------- drawing


def _figure(panels: list[Panel], colours: dict[str, str], volume: Volume, *, title: str, names: list[str]) -> Figure:
    widths = [p.ct.shape[1] * p.col_mm for p in panels]
    heights = [p.ct.shape[0] * p.row_mm for p in panels]
    # Scale so the largest panel's longer side is _PANEL_INCHES; keep extreme aspect ratios (a 2-slice coronal
    # view of a thin volume) from shrinking the figure to nothing.
    scale = _PANEL_INCHES / max(max(widths), max(heights))
    fig_w = max(4.0, sum(w * scale for w in widths) + 0.4 * len(panels))
    fig_h = max(2.0, max(h * scale for h in heights)) + 1.4
    fig = Figure(figsize=(fig_w, fig_h), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False, width_ratios=widths)[0]
    for ax, p in zip(axes, panels, strict=True):
        _draw_panel(ax, p, colours)
    fig.suptitle(title, fontsize=12)
    fig.legend(
        handles=_legend(volume, colours, names),
        loc="outside lower center",
        fontsize=9,
        frameon=False,
        ncols=min(len(names) + (2 if volume.reference else 0), 4) or 1,
    )
    return fig


def _draw_panel(ax, p: Panel, colours: dict[str, str]) -> None:
    rows, cols = p.ct.shape
    width, height = cols * p.col_mm, rows * p.row_mm
    level, window = WINDOW_HU
    # extent in mm gives every pixel its true size, so aspect="equal" is the anatomical aspect ratio.
    ax.imshow(
        p.ct,
        cmap="gray",
        vmin=level - window / 2,
        vmax=level + window / 2,
        interpolation="nearest",
        extent=(0, width, height, 0),
        aspect="equal",
    )
    for name, mask in p.reference.items():
        _outline(ax, mask, p, colours[name], "--")
    for name, mask in p.masks.items():
        _outline(ax, mask, p, colours[name], "-")
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(p.caption, fontsize=9)
    box = {"boxstyle": "round,pad=0.15", "facecolor": "black", "alpha": 0.6, "linewidth": 0}
    top, bottom, left, right = p.edges
    style = {"color": "white", "fontsize": 9, "fontweight": "bold", "bbox": box, "transform": ax.transAxes}
    ax.text(0.5, 0.99, top, ha="center", va="top", **style)
    ax.text(0.5, 0.01, bottom, ha="center", va="bottom", **style)
    ax.text(0.01, 0.5, left, ha="left", va="center", **style)
    ax.text(0.99, 0.5, right, ha="right", va="center", **style)


def _outline(ax, mask: np.ndarray, p: Panel, colour: str, linestyle: str) -> None:
    """The boundary of a 2D mask along the pixel edges (to within 1/8 pixel)."""
    if not mask.any():
        return
    rows, cols = mask.shape
    # A contour at 0.5 runs half-way between pixel centres; on a nearest-upsampled mask that is close to the
    # pixel edges, so a one-voxel structure shows as its square, not as a small diamond. Zero padding closes
    # outlines that touch the border and lets a one-row slice (a 2-voxel-thin volume) have a contour at all.
    f = int(min(8, max(2, math.ceil(600 / max(rows, cols)))))
    up = np.pad(np.repeat(np.repeat(mask, f, axis=0), f, axis=1).astype(np.float32), 1)
    y = (np.arange(up.shape[0]) - 0.5) / f * p.row_mm
    x = (np.arange(up.shape[1]) - 0.5) / f * p.col_mm
    ax.contour(x, y, up, levels=[0.5], colors=[colour], linewidths=_LINE_WIDTH, linestyles=linestyle)


def _legend(volume: Volume, colours: dict[str, str], names: list[str]) -> list[Line2D]:
    handles = []
    for name in names:
        pred = name in volume.masks and bool(volume.masks[name].any())
        ref = name in volume.reference and bool(volume.reference[name].any())
        label = name
        if not pred and not ref:
            label += " (not found)"
        elif volume.reference and not pred:
            label += " (prediction empty)"
        elif name in volume.reference and not ref:  # a structure the reference does not cover is not "empty"
            label += " (reference empty)"
        handles.append(Line2D([], [], color=colours[name], linewidth=3, label=label))
    if volume.reference:
        handles.append(Line2D([], [], color="black", linewidth=_LINE_WIDTH, linestyle="-", label="prediction"))
        handles.append(Line2D([], [], color="black", linewidth=_LINE_WIDTH, linestyle="--", label="reference"))
    return handles


def _save(fig: Figure, path: Path) -> Path:
    # Fixed metadata: the same inputs give byte-identical files.
    return replace_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None}))
