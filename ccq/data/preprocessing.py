"""The preprocessing a model was trained with; stored in every checkpoint so weights never meet the wrong spacing."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ccq.data.grid import CANONICAL_AXES, Grid, check_axes
from ccq.utils.config import Config, FieldError, shown

_TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class PreprocessingConfig(Config):
    """How a CT volume is turned into network input.

    Every task has a working grid (`ccq.data.grid.Grid`): ``spacing`` and ``axes`` give the default one, and
    ``task_grids`` gives some tasks their own. Without ``axes`` and ``task_grids`` (every file written before
    per-task grids) there is one grid for all tasks: ccq's canonical (z, y, x) at ``spacing``.
    """

    spacing: tuple[float, float, float] = (1.5, 0.8, 0.8)
    """Target voxel spacing in mm along the default grid's (D, H, W) axes ((z, y, x) for the canonical axes)."""
    hu_min: float = -325.0
    hu_max: float = 325.0
    hu_scale: float = 325.0
    """Intensity: clip HU to [hu_min, hu_max], then divide by hu_scale (official: [-325, 325] / 325 -> [-1, 1])."""
    patch_size: tuple[int, int, int] = (64, 192, 192)
    """Training / sliding-window patch, (D, H, W) voxels."""
    image_interpolation_order: Literal[0, 1, 3] = 3
    """Spline order for images (3 = cubic as official, 1 = linear, 0 = nearest); labels always use nearest
    neighbour."""
    axes: str = CANONICAL_AXES
    """Where the default grid's (D, H, W) axes point in the patient: nibabel axis codes (`ccq.data.grid`)."""
    task_grids: Mapping[str, Grid] = field(default_factory=dict)
    """Task name -> that task's own working grid (spacing along D, H, W, and axes); other tasks use the default."""

    config_name = "preprocessing"

    def _validate(self) -> None:
        if any(s <= 0 for s in self.spacing):
            self._fail("spacing", "three positive numbers (z, y, x) in mm")
        if any(p <= 0 for p in self.patch_size):
            self._fail("patch_size", "three positive integers")
        if not self.hu_min < self.hu_max:
            self._fail("hu_max", f"a number above hu_min={self.hu_min} (the HU window is [hu_min, hu_max])")
        if self.hu_scale <= 0:
            self._fail("hu_scale", "a positive number")
        object.__setattr__(self, "axes", self.axes.upper())
        problem = check_axes(self.axes)
        if problem:
            self._fail("axes", problem)
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        grids = dict(self.task_grids)
        for name in grids:
            if not _TASK_NAME.match(name):
                raise FieldError("task_grids", f"expected task names as keys (letters, digits, '_', '-', '.'), "
                                 f"got {shown(name, 40)}")  # fmt: skip
        # A task grid equal to the default says nothing: dropped, so that equal configurations compare equal.
        object.__setattr__(self, "task_grids", {k: g for k, g in grids.items() if g != self.default_grid})

    @property
    def default_grid(self) -> Grid:
        return Grid(spacing=self.spacing, axes=self.axes)

    def grid(self, task: Any) -> Grid:
        """The working grid of ``task`` (a name or a `TaskSpec`)."""
        name = task if isinstance(task, str) else task.name
        return self.task_grids.get(name, self.default_grid)

    @property
    def uniform(self) -> bool:
        """One grid for every task, the canonical one (as before per-task grids)."""
        return not self.task_grids and self.axes == CANONICAL_AXES

    def grids(self, tasks: Sequence[Any]) -> dict[str, Grid]:
        """Task name -> working grid, for ``tasks`` (names or `TaskSpec`s)."""
        return {(t if isinstance(t, str) else t.name): self.grid(t) for t in tasks}

    def check_tasks(self, task_names: Sequence[str], where: str) -> None:
        """Refuse task grids for tasks that do not exist (a misspelt name would silently use the default)."""
        from ccq.errors import CCQError

        unknown = sorted(set(self.task_grids) - set(task_names))
        if unknown:
            raise CCQError(
                f"{where}: task_grids names task(s) {unknown[:5]}; expected task names of the collection "
                f"({', '.join(task_names)})"
            )

    def to_dict(self) -> dict[str, Any]:
        """As JSON data; ``axes`` and ``task_grids`` only when they say something, so that a one-grid canonical
        preprocessing is written exactly as before per-task grids (older ccq versions read it)."""
        data = super().to_dict()
        if self.axes == CANONICAL_AXES:
            data.pop("axes")
        if not self.task_grids:
            data.pop("task_grids")
        return data


OFFICIAL_PREPROCESSING = PreprocessingConfig()
"""The paper's preprocessing: every task at 1.5 x 0.8 x 0.8 mm on the canonical axes, [-325, 325] HU / 325."""

OFFICIAL_MSD_GRID = Grid(spacing=(1.5, 0.8, 0.8), axes="SLP")
"""What the official CCQ and DoDNet code feed for the MSD/LiTS tasks: the prepared file's voxel axes (k, i, j) at
(1.5, 0.8, 0.8) mm, i.e. (S, L, P) for files stored (L, P, S) (docs/official-data-path.md)."""
OFFICIAL_KIDNEY_GRIDS = {
    "ccq": Grid(spacing=(0.76, 0.76, 3.0), axes="IPL"),
    "dodnet": Grid(spacing=(0.8, 0.8, 1.5), axes="IPL"),
}
"""What the official code feeds for KiTS19 (task id 1), by code base: the file's voxel axes (i, j, k) = (I, P, L),
resampled to CCQ's [3, 0.76, 0.76] / DoDNet's [1.5, 0.8, 0.8] given in SimpleITK (k, j, i) order."""
OFFICIAL_KIDNEY_TASK_ID = 1


def official_data_path(
    tasks: Sequence[Any], *, code: Literal["ccq", "dodnet"] = "ccq", base: PreprocessingConfig | None = None
) -> PreprocessingConfig:
    """The working grids of the official code's data path for ``tasks`` (`TaskSpec`s; the kidney grid goes to the
    task with id 1, as the official code decides by task id), on top of ``base`` (default: the paper's)."""
    base = OFFICIAL_PREPROCESSING if base is None else base
    kidney = [t.name for t in tasks if t.id == OFFICIAL_KIDNEY_TASK_ID]
    return base.replace(
        spacing=OFFICIAL_MSD_GRID.spacing,
        axes=OFFICIAL_MSD_GRID.axes,
        task_grids={name: OFFICIAL_KIDNEY_GRIDS[code] for name in kidney},
    )


def load_preprocessing(path: str | Path, what: str = "--preprocessing") -> PreprocessingConfig:
    """A preprocessing from a JSON/YAML file of `PreprocessingConfig` fields, or from a checkpoint folder (the
    ``preprocessing`` of its checkpoint.json: the grids a model works on); every problem is one line naming it."""
    import ccq.limits as limits
    from ccq.data.collection_io import parse_collection_text
    from ccq.errors import CCQError

    path = Path(path).expanduser()
    meta = path / "checkpoint.json"
    if path.is_dir() and meta.is_file():
        data = limits.parse_json(limits.read_text(meta), str(meta), "expected a checkpoint.json")
        data = data.get("preprocessing") if isinstance(data, dict) else None
        path = meta
    elif not path.is_file():
        raise CCQError(
            f"{what} {path}: no such file; expected a JSON or YAML PreprocessingConfig (or a checkpoint folder)"
        )
    else:
        suffix = ".json" if path.suffix.lower() == ".json" else ".yaml"
        data = parse_collection_text(limits.read_text(path), suffix, str(path))
    if not isinstance(data, dict):
        raise CCQError(f"{path}: expected a mapping of PreprocessingConfig fields (spacing, hu_min ...)")
    try:
        config = PreprocessingConfig.from_dict(data)
    except CCQError as err:
        raise CCQError(f"{path}: {err}") from None
    limits.check_preprocessing(config, str(path))
    return config
