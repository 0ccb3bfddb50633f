"""A procedural chest-like phantom in Hounsfield units, made of ellipses, with an optional lesion.

The phantom is a tree of non-overlapping ellipses (each structure lies inside its parent and
apart from its siblings), so every region has one stated HU value:

=====================  ========  =========================================================
structure              HU        where
=====================  ========  =========================================================
body outline           -100      subcutaneous fat layer (outside: air, -1000 HU)
soft tissue            40        muscle / mediastinum, inside the fat layer
lungs (2)              -850      left and right of the mediastinum
pulmonary vessels      40        small disks inside the lungs (random positions)
pericardial fat        -80       around the heart
heart                  45        blood and myocardium
aorta (2)              45        ascending (anterior) and descending (by the spine)
vertebral body         400       cancellous bone
vertebral arch         700       posterior elements, around the spinal canal
spinal canal           10        cerebrospinal fluid
sternum                400       anterior midline
ribs (5 per side)      700       in the chest wall between lung and fat layer
=====================  ========  =========================================================

Values are typical non-contrast CT numbers; with ``rng`` given, sizes, positions and HU values vary
by a few percent (:func:`chest_phantom`). Coordinates follow ``shared/CONVENTIONS.md``: x to the
right of the image, y upward; anterior is up (+y) and the patient's left is on the image right
(radiological display), so the heart sits right of centre.

An optional :class:`Lesion` is a disk whose HU is the local background plus ``contrast``
(vessels that would overlap it are dropped, so the lesion is uniform when it lies inside one
tissue). The phantom is returned as a sum of ellipses in attenuation (1/mm) via
:func:`recon.data.hu_to_mu`, so its exact sinogram is available in any geometry
(:meth:`ChestPhantom.sinogram`) and images are rasterised on any grid.

This is a procedural phantom in the spirit of the FORBILD thorax and XCAT-like slices used in the
limited-angle literature (e.g. Huang et al. 2018); it is not a copy of either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch

from operators import Ellipse, EllipsePhantom, ImageGrid
from operators._checks import integer, real

from .ellipses import exact_sinogram, rasterize
from .units import MU_WATER, _check_mu_water, mu_to_hu

__all__ = ["Lesion", "Structure", "ChestPhantom", "chest_phantom", "random_lesion"]


@dataclass(frozen=True)
class Lesion:
    """A round lesion: centre ``(x, y)`` in mm, ``diameter`` in mm, ``contrast`` in HU.

    ``contrast`` is added to the HU of the tissue around it (e.g. +850 turns lung into a soft-tissue
    nodule; +20 is a subtle soft-tissue lesion).
    """

    center: Tuple[float, float]
    diameter: float
    contrast: float

    def __post_init__(self):
        try:
            center = (float(self.center[0]), float(self.center[1]))
        except (TypeError, ValueError, IndexError):
            raise ValueError(f"center must be a pair (x, y) in mm, got {self.center!r}") from None
        if len(self.center) != 2 or not all(math.isfinite(c) for c in center):
            raise ValueError(f"center must be a finite pair (x, y) in mm, got {self.center!r}")
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "diameter", real("diameter (mm)", self.diameter, positive=True))
        object.__setattr__(self, "contrast", real("contrast (HU)", self.contrast))

    @property
    def radius(self) -> float:
        return 0.5 * self.diameter

    def mask(self, grid: ImageGrid, margin: float = 0.0) -> torch.Tensor:
        """Pixels whose centre is within ``radius + margin`` mm of the centre, bool ``(H, W)``."""
        x, y = grid.meshgrid()
        r = self.radius + margin
        inside = (x - self.center[0]) ** 2 + (y - self.center[1]) ** 2 <= r * r
        return torch.from_numpy(inside)


@dataclass(frozen=True)
class Structure:
    """One named ellipse of the chest with its absolute HU and the index of its parent."""

    name: str
    ellipse: Ellipse          # value unused (geometry only)
    hu: float
    parent: Optional[int]


@dataclass(frozen=True)
class ChestPhantom:
    """A chest phantom: its ellipses in attenuation, its structures and its lesion.

    Attributes
    ----------
    phantom : operators.EllipsePhantom
        Attenuation in 1/mm (air 0), for exact sinograms and rasterisation.
    structures : tuple of Structure
        The anatomy (index 0 is the body outline).
    lesion : Lesion or None
    mu_water : float
        Water attenuation (1/mm) used for the HU conversion.
    """

    phantom: EllipsePhantom
    structures: Tuple[Structure, ...]
    lesion: Optional[Lesion] = None
    mu_water: float = MU_WATER

    @property
    def body(self) -> Ellipse:
        """The body outline ellipse (geometry only)."""
        return self.structures[0].ellipse

    def mu_image(self, grid: ImageGrid, supersample: int = 4,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Attenuation image (1/mm), pixel averages, shape ``(H, W)``."""
        return rasterize(self.phantom, grid, supersample, torch.float64).to(dtype)

    def hu_image(self, grid: ImageGrid, supersample: int = 4,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Image in HU (air -1000), pixel averages of attenuation converted, shape ``(H, W)``."""
        mu = rasterize(self.phantom, grid, supersample, torch.float64)
        return mu_to_hu(mu, self.mu_water).to(dtype)

    def sinogram(self, geometry, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Exact line integrals of the attenuation, shape ``(views, detectors)``."""
        return exact_sinogram(self.phantom, geometry, dtype)

    def mask(self, name: str, grid: ImageGrid) -> torch.Tensor:
        """Pixels whose centre lies in the structures called ``name`` (e.g. "lung"), bool ``(H, W)``."""
        names = sorted({s.name for s in self.structures})
        chosen = [s for s in self.structures if s.name == name]
        if not chosen:
            raise ValueError(f"unknown structure {name!r}; the phantom has {names}")
        x, y = grid.meshgrid()
        out = np.zeros(grid.shape, dtype=bool)
        for s in chosen:
            out |= s.ellipse.contains(x, y)
        return torch.from_numpy(out)

    def body_mask(self, grid: ImageGrid) -> torch.Tensor:
        """Pixels whose centre lies inside the body outline, bool ``(H, W)``."""
        return self.mask("body", grid)

    def lesion_mask(self, grid: ImageGrid, margin: float = 0.0) -> torch.Tensor:
        """Pixels within the lesion (grown by ``margin`` mm), bool ``(H, W)``; error if none."""
        if self.lesion is None:
            raise ValueError("this phantom has no lesion")
        return self.lesion.mask(grid, margin)

    def with_lesion(self, lesion: Optional[Lesion]) -> "ChestPhantom":
        """The same anatomy with ``lesion`` (replacing any previous one; ``None`` removes it).

        Vessels that overlap the new lesion are dropped; vessels dropped for an earlier lesion
        stay dropped.
        """
        anatomy = [s for s in self.structures]
        return _assemble(anatomy, lesion, self.mu_water)

    def hu_at(self, x: float, y: float) -> float:
        """The exact HU value at the point ``(x, y)`` mm (no pixel averaging)."""
        mu = float(self.phantom.image(np.asarray(x, float), np.asarray(y, float)))
        return float(mu_to_hu(mu, self.mu_water))


# ---------------------------------------------------------------------------------------------
# Layout: fractions of the body semi-axes (A along x, B along y), HU values.

_BOUNDARY_POINTS = 180


def _boundary(e: Ellipse, n: int = _BOUNDARY_POINTS) -> Tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    a, b = e.axes
    c, s = math.cos(e.rotation), math.sin(e.rotation)
    xl, yl = a * np.cos(t), b * np.sin(t)
    return e.center[0] + c * xl - s * yl, e.center[1] + s * xl + c * yl


def _grown(e: Ellipse, margin: float) -> Ellipse:
    return Ellipse(1.0, e.center, (e.axes[0] + margin, e.axes[1] + margin), e.rotation)


def _inside(child: Ellipse, parent: Ellipse, margin: float) -> bool:
    """Child (grown by ``margin``) inside parent (boundary sampling)."""
    x, y = _boundary(_grown(child, margin))
    return bool(parent.contains(x, y).all())


def _apart(e1: Ellipse, e2: Ellipse, margin: float) -> bool:
    """No boundary point of either (grown by ``margin``) inside the other, centres outside."""
    g1, g2 = _grown(e1, margin), _grown(e2, margin)
    x1, y1 = _boundary(g1)
    x2, y2 = _boundary(g2)
    return not (g2.contains(x1, y1).any() or g1.contains(x2, y2).any()
                or g2.contains(np.array(e1.center[0]), np.array(e1.center[1]))
                or g1.contains(np.array(e2.center[0]), np.array(e2.center[1])))


def _layout(rng: Optional[np.random.Generator], body_axes: Tuple[float, float],
            vessels_per_lung: int) -> List[Structure]:
    A, B = body_axes

    def jit(scale: float) -> float:  # symmetric relative jitter
        return 0.0 if rng is None else float(rng.uniform(-scale, scale))

    if rng is not None:
        A *= 1.0 + jit(0.05)
        B *= 1.0 + jit(0.05)
    hu_fat = -100.0 + 15.0 * jit(1.0)
    hu_soft = 40.0 + 10.0 * jit(1.0)
    hu_lung = -850.0 + 30.0 * jit(1.0)
    hu_blood = 45.0 + 5.0 * jit(1.0)
    hu_bone = 400.0 + 50.0 * jit(1.0)
    hu_cortical = 700.0 + 80.0 * jit(1.0)
    fat = (0.055 + jit(0.015)) * A

    out: List[Structure] = []

    def add(name, center, axes, rotation, hu, parent) -> int:
        out.append(Structure(name, Ellipse(1.0, (float(center[0]), float(center[1])),
                                           (float(axes[0]), float(axes[1])), float(rotation)),
                             float(hu), parent))
        return len(out) - 1

    body = add("body", (0.0, 0.0), (A, B), 0.0, hu_fat, None)
    inner = add("soft tissue", (0.0, -0.01 * B), (A - fat, B - fat), 0.0, hu_soft, body)

    lung_axes = (0.26 * A * (1 + jit(0.04)), 0.57 * B * (1 + jit(0.04)))
    for side in (-1.0, 1.0):
        add("lung", (side * (0.52 + jit(0.01)) * A, (0.02 + jit(0.02)) * B), lung_axes,
            side * (0.10 + jit(0.04)), hu_lung, inner)

    heart_center = ((0.04 + jit(0.015)) * A, (0.10 + jit(0.03)) * B)
    heart_axes = (0.155 * A * (1 + jit(0.05)), 0.24 * B * (1 + jit(0.05)))
    heart_rot = 0.45 + jit(0.15)
    peri = 0.012 * A
    outer = add("pericardial fat", heart_center, (heart_axes[0] + peri, heart_axes[1] + peri),
                heart_rot, -80.0, inner)
    add("heart", heart_center, heart_axes, heart_rot, hu_blood, outer)
    add("aorta", ((-0.07 + jit(0.01)) * A, (0.47 + jit(0.02)) * B), (0.055 * A, 0.055 * A), 0.0,
        hu_blood, inner)
    add("aorta", ((0.12 + jit(0.01)) * A, (-0.33 + jit(0.02)) * B), (0.055 * A, 0.055 * A), 0.0,
        hu_blood, inner)
    add("vertebral body", (0.0, -0.55 * B), (0.095 * A, 0.14 * B), 0.0, hu_bone, inner)
    arch = add("vertebral arch", (0.0, -0.80 * B), (0.12 * A, 0.085 * B), 0.0, hu_cortical, inner)
    add("spinal canal", (0.0, -0.79 * B), (0.05 * A, 0.05 * B), 0.0, 10.0, arch)
    add("sternum", (0.0, 0.83 * B), (0.06 * A, 0.035 * B), 0.0, hu_bone, inner)

    ring = (0.87 * A, 0.86 * B)
    for side in (-1.0, 1.0):
        for k in range(5):
            phi = math.radians(56.0 + 21.0 * k) + jit(math.radians(3.0))
            px = side * ring[0] * math.sin(phi)
            py = ring[1] * math.cos(phi)
            tangent = math.atan2(-ring[1] * math.sin(phi), side * ring[0] * math.cos(phi))
            add("rib", (px, py), (0.038 * A, 0.019 * A), tangent, hu_cortical, inner)

    # Pulmonary vessels: disks inside the lungs, apart from each other (rejection sampling).
    vrng = rng if rng is not None else np.random.default_rng(20261126)
    lungs = [i for i, s in enumerate(out) if s.name == "lung"]
    for li in lungs:
        lung = out[li].ellipse
        placed: List[Ellipse] = []
        tries = 0
        while len(placed) < vessels_per_lung and tries < 200 * max(vessels_per_lung, 1):
            tries += 1
            r = float(vrng.uniform(0.006, 0.02)) * A
            u, v = vrng.uniform(-1.0, 1.0, 2)
            c, s = math.cos(lung.rotation), math.sin(lung.rotation)
            lx, ly = u * lung.axes[0], v * lung.axes[1]
            cand = Ellipse(1.0, (lung.center[0] + c * lx - s * ly, lung.center[1] + s * lx + c * ly),
                           (r, r), 0.0)
            if _inside(cand, lung, 0.01 * A) and all(_apart(cand, p, 0.005 * A) for p in placed):
                placed.append(cand)
                add("vessel", cand.center, cand.axes, 0.0, hu_soft, li)
    return out


def _check_layout(structures: List[Structure], margin: float) -> bool:
    """Each structure inside its parent, siblings apart (by ``margin`` mm)."""
    for i, s in enumerate(structures):
        if s.parent is not None and not _inside(s.ellipse, structures[s.parent].ellipse, margin):
            return False
        for j in range(i):
            t = structures[j]
            if t.parent == s.parent and not _apart(s.ellipse, t.ellipse, margin / 2):
                return False
    return True


def chest_phantom(rng: Optional[np.random.Generator] = None,
                  body_axes: Tuple[float, float] = (160.0, 115.0),
                  lesion: Optional[Lesion] = None, vessels_per_lung: int = 8,
                  mu_water: float = MU_WATER, max_tries: int = 50) -> ChestPhantom:
    """A procedural chest slice in HU (module docstring), optionally with a lesion.

    Parameters
    ----------
    rng : numpy.random.Generator, optional
        Without it, the canonical phantom (fixed layout and HU values; vessel positions from a
        fixed internal seed). With it, body size (+-5%), organ sizes, positions, rotations and HU
        values vary and the vessels are placed at random; layouts whose structures would overlap
        are redrawn.
    body_axes : (a, b), default (160, 115)
        Semi-axes of the body outline in mm (x: left-right, y: anterior-posterior). An adult chest
        is about 320 x 230 mm; scale down for small grids (the phantom must fit the grid).
    lesion : Lesion, optional
        A disk added on top of the anatomy (HU of the surroundings plus ``contrast``). It must lie
        entirely inside the body outline.
    vessels_per_lung : int, default 8
        Number of pulmonary vessels per lung (fewer if they do not fit).
    mu_water : float, default 0.0192 /mm
        Water attenuation for the HU -> attenuation conversion.
    max_tries : int, default 50
        Random layouts drawn before giving up (only with ``rng``).

    Returns
    -------
    ChestPhantom
        ``.phantom`` in 1/mm (air 0); ``.hu_image(grid)``, ``.body_mask(grid)``, ``.lesion``.

    Raises
    ------
    ValueError
        Bad ``body_axes``, ``vessels_per_lung`` or a lesion that is not inside the body.
    """
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator or None, got {type(rng).__name__}")
    try:
        a, b = (float(v) for v in body_axes)
    except (TypeError, ValueError):
        raise ValueError(f"body_axes must be a pair (a, b) in mm, got {body_axes!r}") from None
    if not (math.isfinite(a) and math.isfinite(b) and a > 0 and b > 0):
        raise ValueError(f"body_axes must be positive (mm), got {body_axes!r}")
    vessels_per_lung = integer("vessels_per_lung", vessels_per_lung, minimum=0)
    mu_water = _check_mu_water(mu_water)
    margin = 0.004 * min(a, b)
    for _ in range(max(1, int(max_tries)) if rng is not None else 1):
        structures = _layout(rng, (a, b), int(vessels_per_lung))
        if _check_layout(structures, margin):
            break
    else:
        raise RuntimeError("could not draw a chest layout without overlaps; use a canonical "
                           "phantom (rng=None) or report this as a bug")
    if rng is None and not _check_layout(structures, margin):  # pragma: no cover - layout bug
        raise RuntimeError("the canonical chest layout has overlapping structures")

    return _assemble(structures, lesion, mu_water)


def _assemble(structures, lesion: Optional[Lesion], mu_water: float) -> ChestPhantom:
    """Ellipses in attenuation from the structure tree (values relative to the parent) + lesion."""
    structures = list(structures)
    if lesion is not None:
        if not isinstance(lesion, Lesion):
            raise TypeError(f"lesion must be a Lesion or None, got {type(lesion).__name__}")
        disk = Ellipse(1.0, lesion.center, (lesion.radius, lesion.radius), 0.0)
        if not _inside(disk, structures[0].ellipse, 0.0):
            raise ValueError(f"lesion {lesion!r} is not entirely inside the body outline "
                             f"(semi-axes {structures[0].ellipse.axes} mm)")
        # Vessels come last and parent nothing, so dropping them keeps every parent index valid.
        structures = [s for s in structures
                      if s.name != "vessel" or _apart(s.ellipse, disk, 0.0)]

    ellipses = []
    for s in structures:
        parent_hu = -1000.0 if s.parent is None else structures[s.parent].hu
        delta = (s.hu - parent_hu) / 1000.0 * mu_water
        ellipses.append(Ellipse(delta, s.ellipse.center, s.ellipse.axes, s.ellipse.rotation))
    if lesion is not None:
        ellipses.append(Ellipse(lesion.contrast / 1000.0 * mu_water, lesion.center,
                                (lesion.radius, lesion.radius), 0.0))
    return ChestPhantom(EllipsePhantom(tuple(ellipses)), tuple(structures), lesion,
                        float(mu_water))


def random_lesion(chest: ChestPhantom, rng: np.random.Generator,
                  diameter: Tuple[float, float] = (5.0, 20.0),
                  contrast: Tuple[float, float] = (800.0, 900.0), region: str = "lung",
                  margin: float = 2.0, max_tries: int = 1000) -> Lesion:
    """A lesion placed at random entirely inside one structure of ``chest``.

    Parameters
    ----------
    chest : ChestPhantom
        The anatomy (its own lesion, if any, is ignored).
    rng : numpy.random.Generator
    diameter : (low, high) mm, default (5, 20)
        Uniform range of the diameter.
    contrast : (low, high) HU, default (800, 900)
        Uniform range of the contrast (the default turns lung, -850 HU, into soft tissue).
    region : str, default "lung"
        Name of the structures to place it in (one of them chosen uniformly), e.g. "soft tissue",
        "heart".
    margin : float, default 2 mm
        Minimum distance between the lesion and the border of the structure.

    Raises
    ------
    ValueError
        Unknown region, bad ranges, or no position found (lesion too large for the region).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    d0, d1 = (float(v) for v in diameter)
    c0, c1 = (float(v) for v in contrast)
    if not 0 < d0 <= d1:
        raise ValueError(f"diameter must be (low, high) with 0 < low <= high, got {diameter!r}")
    if not c0 <= c1:
        raise ValueError(f"contrast must be (low, high) with low <= high, got {contrast!r}")
    hosts = [s.ellipse for s in chest.structures if s.name == region]
    if not hosts:
        raise ValueError(f"unknown region {region!r}; the phantom has "
                         f"{sorted({s.name for s in chest.structures})}")
    d = float(rng.uniform(d0, d1))
    c = float(rng.uniform(c0, c1))
    host = hosts[int(rng.integers(len(hosts)))]
    cos, sin = math.cos(host.rotation), math.sin(host.rotation)
    for _ in range(max_tries):
        u, v = rng.uniform(-1.0, 1.0, 2)
        lx, ly = u * host.axes[0], v * host.axes[1]
        center = (host.center[0] + cos * lx - sin * ly, host.center[1] + sin * lx + cos * ly)
        disk = Ellipse(1.0, center, (d / 2, d / 2), 0.0)
        if _inside(disk, host, margin):
            return Lesion(center=center, diameter=d, contrast=c)
    raise ValueError(f"no position found for a lesion of diameter {d:.1f} mm inside {region!r}")
