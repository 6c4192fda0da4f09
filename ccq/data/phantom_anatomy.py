"""Synthetic abdominal CT anatomy: one seeded case in memory (image in HU + a full anatomy label map).

Geometry is defined in millimetres around the centre of the field of view, with positions and sizes given as
fractions of the half-extent of each axis, so that the anatomy scales with the volume shape. Axes are
(z, y, x) in RAS terms: +z superior, +y anterior, +x the patient's right (liver at +x, spleen at -x).
Every case contains all organs; which tumors it carries is the caller's choice (one dataset, one pathology).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from ccq.data.phantom_shapes import Grid, bbox, ellipsoid, inner_distance, tube
from ccq.errors import CCQError

# Values of the full anatomy map (not a dataset convention: see ccq.data.phantom.task_label_map).
ANATOMY = {
    "liver": 1,
    "liver_tumor": 2,
    "hepatic_vessel": 3,
    "kidney": 4,
    "kidney_tumor": 5,
    "pancreas": 6,
    "pancreas_tumor": 7,
    "colon": 8,
    "colon_tumor": 9,
    "lung": 10,
    "lung_tumor": 11,
    "spleen": 12,
}
# Region (anatomy names) in which each tumor kind grows, and the task whose dataset carries it.
TUMOR_REGIONS = {
    "liver": ("liver", "hepatic_vessel"),
    "hepatic_vessel": ("liver", "hepatic_vessel"),
    "kidney": ("kidney",),
    "pancreas": ("pancreas",),
    "colon": ("colon",),
    "lung": ("lung",),
}
_TUMOR_NAME = {"hepatic_vessel": "liver_tumor"}  # MSD Task08's tumours are liver tumours near vessels

# Mean HU per structure in one consistent contrast phase, portal venous (about 70 s after injection): enhanced
# parenchyma, vessels and bowel wall; each case jitters them a little.
HU = {
    "air": -1000.0,
    "fat": -100.0,
    "visceral_fat": -85.0,
    "muscle": 55.0,
    "bone": 550.0,
    "canal": 15.0,
    "aorta": 175.0,
    "ivc": 140.0,
    "heart": 110.0,
    "lung": -820.0,
    "liver": 105.0,
    "hepatic_vessel": 170.0,
    "spleen": 115.0,
    "kidney": 185.0,
    "kidney_medulla": 140.0,
    "pancreas": 95.0,
    "colon": 65.0,
    "colon_lumen": -950.0,
}


class PhantomCase(NamedTuple):
    """One synthetic case; unpacks as ``image, anatomy, affine``."""

    image: np.ndarray
    """int16 HU, [z, y, x]."""
    anatomy: np.ndarray
    """uint8 anatomy map, [z, y, x], values of ANATOMY (0 = none of them)."""
    affine: np.ndarray
    """4x4 RAS affine of the NIfTI array ``image.transpose(2, 1, 0)`` (voxel axes x, y, z)."""

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel spacing in mm, (z, y, x)."""
        return float(self.affine[2, 2]), float(self.affine[1, 1]), float(self.affine[0, 0])


def _place_tumor(
    rng: np.random.Generator,
    grid: Grid,
    region: np.ndarray,
    near: np.ndarray | None = None,
    required: bool = True,
    size: tuple[float, float] = (0.6, 0.95),
) -> np.ndarray:
    """A lesion strictly inside ``region`` (its one-voxel dilation stays inside), optionally near ``near``;
    without room for one, an error if ``required``, else no lesion."""
    # Drawing inside the eroded region is what makes the lesion strictly interior; it may flatten against
    # the organ's capsule, as real lesions do.
    inner = ndimage.binary_erosion(region)
    depth = inner_distance(inner, grid.spacing)
    if depth.max() < 1.5 * min(grid.spacing):
        if not required:
            return np.zeros(grid.shape, bool)
        raise CCQError(f"phantom: an organ is too small for a tumor at shape {grid.shape}; use a larger shape")
    radius = min(rng.uniform(*size) * float(depth.max()), 12.0 * max(grid.spacing))
    candidates = depth >= min(0.85 * radius, 0.9 * float(depth.max()))  # a lesion wider than the organ: centred deep
    if near is not None and (near & region).any():
        box = bbox(region)
        close = np.zeros(grid.shape, bool)
        reach = radius + 3.0 * max(grid.spacing)
        close[box] = ndimage.distance_transform_edt(~near[box], sampling=grid.spacing) < reach
        if (candidates & close).any():
            candidates &= close
    flat = np.flatnonzero(candidates)
    center_idx = np.unravel_index(flat[rng.integers(flat.size)], grid.shape)
    center = (np.array(center_idx, float) - (np.array(grid.shape) - 1) / 2.0) * np.array(grid.spacing)
    radii = radius * rng.uniform(0.85, 1.1, size=3)
    return ellipsoid(grid, center, radii, rng.uniform(0, np.pi), rng) & inner


def _affine(rng: np.random.Generator, shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """RAS affine of the (x, y, z) NIfTI array: world origin near the volume centre (scanner-like offset)."""
    sz, sy, sx = spacing
    affine = np.diag([sx, sy, sz, 1.0])
    centre = (np.array(shape[::-1], float) - 1) / 2.0 * np.array([sx, sy, sz])
    affine[:3, 3] = -centre + rng.uniform(-20.0, 20.0, size=3).round(1)
    return affine


MIN_SHAPE = (24, 48, 48)
"""Below this (z, y, x) size the smallest organs (pancreas, kidney) leave no room for a tumor."""


def check_geometry(shape: Sequence[int], spacing: Sequence[float]) -> None:
    """CCQError unless ``shape`` is three sizes >= MIN_SHAPE and ``spacing`` three positive mm values."""
    if len(shape) != 3 or any(int(n) < m for n, m in zip(shape, MIN_SHAPE, strict=True)):
        raise CCQError(
            f"phantom: shape {tuple(shape)} is too small; expected at least {'x'.join(map(str, MIN_SHAPE))} (z, y, x)"
        )
    if len(spacing) != 3 or min(float(s) for s in spacing) <= 0:
        raise CCQError(f"phantom: spacing {tuple(spacing)}; expected three positive sizes in mm (z, y, x)")


def make_case(
    rng: np.random.Generator,
    shape: tuple[int, int, int] = (48, 96, 96),
    spacing: tuple[float, float, float] = (2.0, 1.5, 1.5),
    tumor_tasks: Sequence[str] = (),
) -> PhantomCase:
    """One synthetic CT case with every organ and a tumor for each task in ``tumor_tasks``.

    ``spacing`` (z, y, x mm) is jittered by up to 5 % per case; the case's own spacing is in its affine.
    """
    unknown = [t for t in tumor_tasks if t not in TUMOR_REGIONS]
    if unknown:
        raise CCQError(f"phantom: no tumor for task(s) {unknown}; expected some of {', '.join(TUMOR_REGIONS)}")
    check_geometry(shape, spacing)
    spacing = tuple(round(float(s) * rng.uniform(0.95, 1.05), 3) for s in spacing)
    g = Grid(tuple(int(n) for n in shape), spacing)
    hu = {k: v + (0.0 if k in ("air", "colon_lumen") else rng.normal(0.0, 6.0)) for k, v in HU.items()}

    def jit(values: Sequence[float], scale: float = 0.04) -> np.ndarray:
        return g.mm(np.asarray(values) + rng.uniform(-scale, scale, 3))

    def size(values: Sequence[float]) -> np.ndarray:
        return g.mm(np.asarray(values) * rng.uniform(0.9, 1.1, 3))

    big = np.array([4.0, 1.0, 1.0])  # elliptic cylinders: long in z
    body = ellipsoid(g, jit([0, -0.02, 0], 0.02), g.mm([1, 0.7, 0.92]) * big)
    wall = rng.uniform(0.08, 0.12)
    cavity = ellipsoid(g, g.mm([0, -0.02, 0]), g.mm([1, 0.7 - wall - 0.06, 0.92 - wall - 0.06]) * big)
    subcut = ellipsoid(g, g.mm([0, -0.02, 0]), g.mm([1, 0.7 - wall, 0.92 - wall]) * big)
    spine = ellipsoid(g, jit([0, -0.40, 0], 0.01), g.mm([4, 0.11, 0.11]))
    canal = ellipsoid(g, g.mm([0, -0.55, 0]), g.mm([4, 0.04, 0.04]))
    arch = ellipsoid(g, g.mm([0, -0.55, 0]), g.mm([4, 0.07, 0.07])) & ~canal
    paraspinal = ellipsoid(g, g.mm([0, -0.58, 0.17]), g.mm([4, 0.12, 0.12])) | ellipsoid(
        g, g.mm([0, -0.58, -0.17]), g.mm([4, 0.12, 0.12])
    )
    aorta = ellipsoid(g, jit([0, -0.22, -0.08], 0.01), g.mm([4, 0.055, 0.055]))
    ivc = ellipsoid(g, jit([0, -0.20, 0.12], 0.01), g.mm([4, 0.06, 0.06]))
    heart = ellipsoid(g, jit([0.95, 0.22, -0.08]), size([0.4, 0.3, 0.3]), 0.0, rng)
    fixed = spine | canal | arch | paraspinal | aorta | ivc | heart
    free = cavity & ~fixed

    organs = {
        "lung": ellipsoid(g, jit([1.0, -0.05, 0.38]), size([0.6, 0.45, 0.33]), 0.0, rng)
        | ellipsoid(g, jit([1.0, -0.05, -0.38]), size([0.62, 0.45, 0.33]), 0.0, rng),
        "liver": ellipsoid(g, jit([0.3, -0.02, 0.38]), size([0.5, 0.36, 0.36]), rng.uniform(-0.2, 0.2), rng)
        | ellipsoid(g, jit([0.4, 0.18, -0.05]), size([0.28, 0.2, 0.3]), rng.uniform(-0.3, 0.3), rng),
        # The spleen lies on the left kidney's upper pole (the splenorenal contact).
        "spleen": ellipsoid(
            g, jit([0.3, -0.24, -0.56], 0.02), size([0.3, 0.2, 0.13]), 0.6 + rng.uniform(-0.2, 0.2), rng
        ),
        # The right kidney is pushed into the liver's posterior-inferior surface, as in real anatomy.
        "kidney": ellipsoid(g, jit([-0.05, -0.3, 0.34], 0.02), size([0.34, 0.18, 0.15]), -0.45, rng)
        | ellipsoid(g, jit([0.0, -0.3, -0.34], 0.02), size([0.34, 0.18, 0.15]), 0.45, rng),
        "pancreas": ellipsoid(g, jit([-0.02, 0.02, 0.15], 0.02), size([0.2, 0.17, 0.16]), 0.0, rng)
        | ellipsoid(g, jit([0.06, 0.08, -0.08], 0.02), size([0.13, 0.11, 0.2]), 0.0, rng)
        | ellipsoid(g, jit([0.2, -0.12, -0.4], 0.02), size([0.11, 0.09, 0.16]), 0.5, rng),
    }
    path = [
        jit(p, 0.03)
        for p in (
            [-0.9, 0.1, 0.55],
            [-0.2, 0.05, 0.6],
            [-0.1, 0.35, 0.45],
            [-0.1, 0.38, -0.45],
            [0.05, 0.0, -0.62],
        )
    ] + [jit([-0.9, -0.05, -0.6], 0.03)]
    colon_radius = float(0.1 * g.half[2] * rng.uniform(0.9, 1.1))
    organs["colon"], colon_dist = tube(g, path, colon_radius)

    anatomy = np.zeros(g.shape, np.uint8)
    for name in (
        "lung",
        "liver",
        "spleen",
        "kidney",
        "pancreas",
        "colon",
    ):  # later ones win where they overlap
        anatomy[organs[name] & free] = ANATOMY[name]
    liver = anatomy == ANATOMY["liver"]
    vessels = _hepatic_vessels(rng, g, liver)
    anatomy[vessels & liver] = ANATOMY["hepatic_vessel"]

    tumors: dict[str, np.ndarray] = {}
    for task in tumor_tasks:
        region = np.isin(anatomy, [ANATOMY[n] for n in TUMOR_REGIONS[task]])
        if task == "colon":
            tumors[task] = _colon_tumor(rng, g, region, colon_dist, colon_radius)
        else:
            near = (anatomy == ANATOMY["hepatic_vessel"]) if task == "hepatic_vessel" else None
            # A pancreatic carcinoma usually takes the gland's whole thickness over a segment (median ~3 cm against a
            # 2-3 cm thick gland): its radius may exceed the gland's half-thickness, the gland's outline clips it.
            size = (0.9, 1.3) if task == "pancreas" else (0.6, 0.95)
            tumors[task] = _place_tumor(rng, g, region, near, size=size)
            # Liver lesions are often several (metastases, multifocal carcinoma): up to three, apart.
            for _ in range(int(rng.choice([0, 1, 2], p=[0.4, 0.35, 0.25])) if task == "liver" else 0):
                room = region & ~ndimage.binary_dilation(tumors[task], iterations=2)
                tumors[task] |= _place_tumor(rng, g, room, None, required=False)
        anatomy[tumors[task]] = ANATOMY[_TUMOR_NAME.get(task, f"{task}_tumor")]

    image = np.full(g.shape, hu["air"], np.float32)
    for mask, key in (
        (body, "fat"),
        (subcut, "muscle"),
        (cavity, "visceral_fat"),
        (paraspinal, "muscle"),
        (spine | arch, "bone"),
        (canal, "canal"),
        (aorta, "aorta"),
        (ivc, "ivc"),
        (heart & cavity, "heart"),
    ):
        image[mask & body] = hu[key]
    for name in ("lung", "liver", "hepatic_vessel", "spleen", "kidney", "pancreas", "colon"):
        image[anatomy == ANATOMY[name]] = hu[name]
    # Enhancing cortex (a 2-voxel rim) around a darker medulla.
    medulla = ndimage.binary_erosion(organs["kidney"], iterations=2)
    image[(anatomy == ANATOMY["kidney"]) & medulla] = hu["kidney_medulla"]
    lumen = (anatomy == ANATOMY["colon"]) & (colon_dist < colon_radius - max(2.0, 1.2 * max(spacing)))
    image[lumen] = hu["colon_lumen"]
    for task, lesion in tumors.items():
        # A kidney lesion grows deep in the kidney, where the parenchyma around it is the medulla: it is compared
        # with that (renal cell carcinomas enhance less than the kidney in the portal venous phase).
        organ_hu = hu[{"hepatic_vessel": "liver", "kidney": "kidney_medulla"}.get(task, task)]
        # Most tumors enhance less than their organ (hypovascular metastases, pancreatic adenocarcinoma, renal
        # cell carcinoma: hypodense by some 40-75 HU in this phase); a few liver lesions are hyperdense.
        delta = rng.uniform(35, 55) if task in ("liver", "hepatic_vessel") and rng.random() < 0.1 else None
        value = organ_hu + delta if delta is not None else organ_hu - rng.uniform(40, 75)
        if task == "colon":
            value = rng.uniform(80, 105)  # carcinoma enhances more than the normal bowel wall
        elif task == "lung":
            value = rng.uniform(30, 60)  # a soft-tissue nodule in air
        image[lesion] = value

    # Partial-volume blur, then scanner noise.
    image = ndimage.gaussian_filter(image, sigma=(0.4, 0.55, 0.55), mode="nearest")
    image += rng.normal(0.0, rng.uniform(10.0, 20.0), g.shape).astype(np.float32)
    image = np.clip(np.rint(image), -1024, 3071).astype(np.int16)
    return PhantomCase(image, anatomy, _affine(rng, g.shape, spacing))


def _hepatic_vessels(rng: np.random.Generator, g: Grid, liver: np.ndarray) -> np.ndarray:
    """A few branches from the liver hilum to points deep in the liver."""
    depth = inner_distance(liver, g.spacing)
    deep = np.flatnonzero(depth > 2.5 * max(g.spacing))
    if deep.size == 0:
        return np.zeros(g.shape, bool)
    hilum = g.mm([0.12, 0.0, 0.22]) + rng.uniform(-2.0, 2.0, 3)
    mask = np.zeros(g.shape, bool)
    for _ in range(int(rng.integers(3, 6))):
        end_idx = np.unravel_index(deep[rng.integers(deep.size)], g.shape)
        end = (np.array(end_idx, float) - (np.array(g.shape) - 1) / 2.0) * np.array(g.spacing)
        bend = (hilum + end) / 2 + rng.normal(0.0, 3.0, 3)
        mask |= tube(g, [hilum, bend, end], float(rng.uniform(1.3, 1.8) * max(g.spacing[1:])))[0]
    return mask


def _colon_tumor(rng: np.random.Generator, g: Grid, colon: np.ndarray, dist: np.ndarray, radius: float) -> np.ndarray:
    """An annular ("apple-core") carcinoma, strictly inside the colon: over a segment a few centimetres long the
    wall thickens all round and narrows the lumen to a thin channel or closes it."""
    inner = ndimage.binary_erosion(colon)  # keeps the tumor's one-voxel dilation inside the colon
    axis = np.flatnonzero(inner & (dist < radius * 0.35))
    if axis.size == 0:
        raise CCQError(f"phantom: the colon is too thin for a tumor at shape {g.shape}; use a larger shape")
    center_idx = np.unravel_index(axis[rng.integers(axis.size)], g.shape)
    center = (np.array(center_idx, float) - (np.array(g.shape) - 1) / 2.0) * np.array(g.spacing)
    reach = radius * rng.uniform(1.2, 1.7)  # half the segment's length
    lesion = ellipsoid(g, center, reach * rng.uniform(0.9, 1.1, 3), rng.uniform(0, np.pi), rng)
    residual_lumen = dist < radius * rng.uniform(0.0, 0.3)
    return lesion & inner & ~residual_lumen
