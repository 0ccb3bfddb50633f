"""Image grids and 2D scan geometries (parallel beam, fan beam with flat or curved detector).

All geometries are immutable values: frozen dataclasses built with keyword arguments, validated
on construction, with a ``repr`` that can be pasted back into Python, and slicing over views
(``geometry[::2]``) that returns a new geometry.

Conventions (see ``shared/CONVENTIONS.md``):

* lengths in millimetres, angles in radians;
* an image is ``(*batch, H, W)``; pixel centre ``(r, c)`` sits at
  ``x = (c - (W-1)/2) * dx``, ``y = ((H-1)/2 - r) * dy``;
* a sinogram is ``(*batch, views, detectors)``; detector ``j`` of ``n`` sits at
  ``u_j = (j - (n-1)/2) * spacing + offset``;
* a line ``(theta, s)`` is the set ``x cos(theta) + y sin(theta) = s``. Parallel beam: view
  ``theta`` and detector ``u`` carry the line ``(theta, u)``. Fan beam: source angle ``beta``,
  source at ``R (-sin beta, cos beta)``; detector ``u`` carries ``(beta + gamma, R sin gamma)``
  with ``gamma = atan(u / D)`` (flat) or ``gamma = u / D`` (curved, equiangular).
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, replace
from typing import Tuple, Union

import numpy as np

from ._checks import integer, real

__all__ = [
    "ImageGrid",
    "ParallelGeometry",
    "FanGeometry",
    "Geometry",
    "GeometryWarning",
    "FieldOfViewWarning",
    "uniform_angles",
]


class GeometryWarning(UserWarning):
    """A scan set-up that runs but is probably not what was meant (angles given in degrees, a
    detector inside the image, an image larger than the scanned field of view).

    Silence one kind with ``warnings.simplefilter("ignore", operators.FieldOfViewWarning)``,
    all of them with ``operators.GeometryWarning``.
    """


class FieldOfViewWarning(GeometryWarning):
    """The image reaches beyond the scan's field of view (usually its corners, as with ``N``
    detectors of one pixel for ``N x N`` pixels): lines through that part are not measured.
    Harmless when the object lies inside the field-of-view circle."""


def _angle_tuple(angles) -> Tuple[float, ...]:
    try:
        raw = np.asarray(angles.detach().cpu().numpy() if hasattr(angles, "detach") else angles)
        if raw.dtype.kind not in "iuf":  # complex, bool, strings, objects
            if raw.dtype.kind == "O":
                raw = np.asarray(raw.tolist(), dtype=np.float64)  # e.g. Fractions, Decimals
            else:
                raise TypeError(f"got dtype {raw.dtype}")
        arr = raw.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"angles must be a 1-D sequence of real numbers: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"angles must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("angles must contain at least one view")
    if not np.all(np.isfinite(arr)):
        raise ValueError("angles must be finite (found NaN or Inf)")
    span = float(arr.max() - arr.min())
    if span > 4.0 * math.pi + 1e-9:
        warnings.warn(f"angles span {span:.4g} rad, more than two rotations; angles are in "
                      "radians (np.deg2rad converts degrees)", GeometryWarning, stacklevel=5)
    return tuple(float(a) for a in arr)


def uniform_angles(views: int, arc: float = math.pi, start: float = 0.0) -> Tuple[float, ...]:
    """``views`` equally spaced angles ``start + k * arc / views`` for ``k = 0..views-1`` (radians).

    The end point ``start + arc`` is excluded, so ``arc = pi`` gives the usual parallel full scan
    ``[0, pi)`` and ``arc = 2 pi`` the fan full scan.
    """
    views = integer("views", views)
    arc = real("arc", arc, positive=True)
    start = real("start", start)
    return tuple(float(start + k * arc / views) for k in range(views))


def _short_repr_angles(angles: Tuple[float, ...]) -> str:
    return "(" + ", ".join(repr(a) for a in angles) + ("," if len(angles) == 1 else "") + ")"


@dataclass(frozen=True)
class ImageGrid:
    """A 2D pixel grid centred on the rotation axis.

    Parameters
    ----------
    shape : (H, W)
        Number of rows and columns.
    spacing : (dy, dx), default (1.0, 1.0)
        Pixel height and width in millimetres.

    Pixel ``(r, c)`` has its centre at ``x = (c - (W-1)/2) dx``, ``y = ((H-1)/2 - r) dy``.
    For even sizes the isocentre lies between pixels (half a pixel from scikit-image's ``N // 2``).
    """

    shape: Tuple[int, int]
    spacing: Tuple[float, float] = (1.0, 1.0)

    def __post_init__(self):
        shape = tuple(self.shape) if isinstance(self.shape, (tuple, list)) else self.shape
        if not isinstance(shape, tuple) or len(shape) != 2:
            raise ValueError(f"shape must be a pair (H, W), got {self.shape!r}")
        shape = (integer("shape[0] (H)", shape[0]), integer("shape[1] (W)", shape[1]))
        spacing = self.spacing
        if isinstance(spacing, numbers.Real):
            spacing = (spacing, spacing)
        if not isinstance(spacing, (tuple, list)) or len(spacing) != 2:
            raise ValueError(f"spacing must be a pair (dy, dx), got {self.spacing!r}")
        spacing = (real("spacing[0] (dy)", spacing[0], positive=True),
                   real("spacing[1] (dx)", spacing[1], positive=True))
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "spacing", spacing)

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def extent(self) -> Tuple[float, float]:
        """Physical size ``(H dy, W dx)`` in millimetres."""
        return (self.shape[0] * self.spacing[0], self.shape[1] * self.spacing[1])

    @property
    def radius(self) -> float:
        """Radius of the circle circumscribing the grid (its corners), in millimetres."""
        return 0.5 * math.hypot(*self.extent)

    @property
    def pixel_area(self) -> float:
        return self.spacing[0] * self.spacing[1]

    def x_coordinates(self) -> np.ndarray:
        """Pixel-centre x coordinates of the columns, shape ``(W,)``, millimetres."""
        w = self.shape[1]
        return (np.arange(w) - (w - 1) / 2.0) * self.spacing[1]

    def y_coordinates(self) -> np.ndarray:
        """Pixel-centre y coordinates of the rows, shape ``(H,)``, millimetres (upward)."""
        h = self.shape[0]
        return ((h - 1) / 2.0 - np.arange(h)) * self.spacing[0]

    def meshgrid(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(X, Y)`` pixel-centre coordinates, each ``(H, W)``."""
        x = self.x_coordinates()
        y = self.y_coordinates()
        return np.meshgrid(x, y, indexing="xy")

    def __repr__(self) -> str:
        return f"ImageGrid(shape={self.shape!r}, spacing={self.spacing!r})"


@dataclass(frozen=True, repr=False, kw_only=True)
class _ScanGeometry:
    angles: Tuple[float, ...]
    detector_count: int
    detector_spacing: float = 1.0
    detector_offset: float = 0.0

    def _validate_common(self):
        object.__setattr__(self, "angles", _angle_tuple(self.angles))
        object.__setattr__(self, "detector_count",
                           integer("detector_count", self.detector_count))
        object.__setattr__(self, "detector_spacing",
                           real("detector_spacing", self.detector_spacing, positive=True))
        object.__setattr__(self, "detector_offset",
                           real("detector_offset", self.detector_offset))

    @property
    def views(self) -> int:
        return len(self.angles)

    @property
    def sinogram_shape(self) -> Tuple[int, int]:
        """``(views, detectors)``."""
        return (len(self.angles), self.detector_count)

    def angle_array(self) -> np.ndarray:
        """View angles as a float64 array, shape ``(views,)``."""
        return np.asarray(self.angles, dtype=np.float64)

    def detector_edges(self) -> Tuple[float, float]:
        """Outer edges (mm) of the first and the last detector cell: ``(u_0 - s/2, u_n + s/2)``."""
        u = self.detector_positions()
        half = 0.5 * self.detector_spacing
        return float(u.min() - half), float(u.max() + half)

    def unwrapped_angles(self) -> np.ndarray:
        """View angles (rad, view order) as one contiguous arc, shape ``(views,)``.

        A scan written modulo ``2 pi`` (a short scan through 0 given as ``5.0 .. 2 pi`` and
        ``0 .. 1.9``) comes back shifted by ``2 pi`` where needed (``5.0 .. 8.2``), the first
        view keeping its angle; the arc starts after the largest gap between views on the
        circle. Angles that already form one arc, and scans that go round the whole circle (a
        full scan, or more than ``2 pi``), come back unchanged. Redundancy and quadrature
        weights are computed on these angles.
        """
        a = self.angle_array()
        if a.size < 3:
            return a.copy()
        two_pi = 2.0 * math.pi
        on_circle = np.mod(a, two_pi)
        ordered = np.sort(on_circle)
        gaps = np.diff(np.append(ordered, ordered[0] + two_pi))
        largest = int(np.argmax(gaps))
        spacing = float(np.median(np.diff(np.sort(a))))
        span_as_given = float(a.max() - a.min())
        if gaps[largest] <= 1.5 * spacing or span_as_given <= two_pi - gaps[largest] + 1e-9:
            return a.copy()  # round the whole circle, or already one arc
        start = ordered[(largest + 1) % a.size]
        out = np.where(on_circle >= start, on_circle, on_circle + two_pi)
        return out + (a[0] - out[0])

    def detector_positions(self) -> np.ndarray:
        """Detector-element centres ``u_j``, shape ``(detectors,)``, millimetres."""
        n = self.detector_count
        return (np.arange(n) - (n - 1) / 2.0) * self.detector_spacing + self.detector_offset

    def angular_weights(self) -> np.ndarray:
        """Quadrature weight (radians) of each view for back-projection, shape ``(views,)``.

        Half the distance to the two neighbouring angles (in sorted order); each end view gets
        the whole gap to its one neighbour, so ``n`` uniformly spaced views get their spacing
        everywhere (``arc / n`` for ``uniform_angles``). Two copies of an angle share its weight
        (a third one in between gets 0). Computed on :meth:`unwrapped_angles`, so a scan
        written modulo ``2 pi`` gets the weights of its contiguous arc.
        """
        a = self.unwrapped_angles()
        if a.size == 1:
            return np.ones(1)
        order = np.argsort(a)
        s = a[order]
        gaps = np.diff(s)
        w = np.empty_like(s)
        w[1:-1] = 0.5 * (gaps[:-1] + gaps[1:])
        w[0] = gaps[0]
        w[-1] = gaps[-1]
        out = np.empty_like(w)
        out[order] = w
        return out

    def scan_arc(self) -> float:
        """Angular range (rad) the views cover, counting one view spacing for the last view.

        ``2 pi`` for a full fan-beam scan of uniformly spaced views, ``pi`` for a parallel
        ``full_scan``; computed on :meth:`unwrapped_angles`; 0 for a single view.
        """
        a = self.unwrapped_angles()
        if a.size < 2:
            return 0.0
        return float(a.max() - a.min() + np.median(np.diff(np.sort(a))))

    def covers_full_rotation(self) -> bool:
        """Whether the views go round the whole circle (:meth:`scan_arc` >= ``2 pi``)."""
        return self.scan_arc() >= 2.0 * math.pi - 1e-6

    def fov_radius(self) -> float:
        """Radius (mm) of the centred disk that every view covers completely.

        Zero when the detector does not reach both sides of the centre.
        """
        lo, hi = self.line_offset_range()
        return max(0.0, min(-lo, hi))

    def scan_fov_radius(self) -> float:
        """Radius (mm) of the centred disk every line of which the scan measures.

        The same as :meth:`fov_radius`, except for a full rotation with an offset detector
        (a half-fan scan): there each side of the detector measures the lines the other side
        misses half a turn later, so the disk reaches the detector's far end.
        """
        lo, hi = self.line_offset_range()
        if not self.covers_full_rotation() or lo > 0.0 or hi < 0.0:
            return self.fov_radius()
        return max(-lo, hi)

    def __getitem__(self, index):
        """Select views: ``geometry[::2]``, ``geometry[10:40]``, ``geometry[[0, 5, 9]]``."""
        angles = np.asarray(self.angles)
        if isinstance(index, numbers.Integral) and not isinstance(index, bool):
            index = [int(index)]
        try:
            picked = angles[index]
        except (IndexError, TypeError) as exc:
            raise IndexError(f"cannot select views with {index!r}: {exc}") from None
        picked = np.atleast_1d(picked)
        if picked.ndim != 1:
            raise IndexError(f"selecting views with {index!r} gives a {picked.ndim}-D set of "
                             "angles; use an integer, a slice, or a 1-D list of indices")
        if picked.size == 0:
            raise IndexError(f"selecting views with {index!r} leaves no view")
        return replace(self, angles=tuple(float(a) for a in picked))

    def with_angles(self, angles):
        """The same geometry with other view angles."""
        return replace(self, angles=angles)

    def lines(self) -> Tuple[np.ndarray, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True, repr=False, kw_only=True)
class ParallelGeometry(_ScanGeometry):
    """2D parallel-beam geometry.

    Parameters
    ----------
    angles : sequence of float
        View angles ``theta`` in radians, shape ``(views,)``.
    detector_count : int
        Number of detector elements.
    detector_spacing : float
        Element pitch in millimetres.
    detector_offset : float
        Shift of the detector centre along ``u`` in millimetres.

    View ``theta`` and detector coordinate ``u`` measure the line integral along
    ``x cos(theta) + y sin(theta) = u`` (scikit-image's ``radon`` convention: at ``theta = 0``
    each detector sums a column).
    """

    def __post_init__(self):
        self._validate_common()

    @classmethod
    def full_scan(cls, views: int, detector_count: int, detector_spacing: float = 1.0,
                  detector_offset: float = 0.0) -> "ParallelGeometry":
        """``views`` angles uniformly over ``[0, pi)``."""
        return cls(angles=uniform_angles(views, math.pi), detector_count=detector_count,
                   detector_spacing=detector_spacing, detector_offset=detector_offset)

    @classmethod
    def limited_angle(cls, arc: float, views: int, detector_count: int,
                      detector_spacing: float = 1.0, start: float = 0.0,
                      detector_offset: float = 0.0) -> "ParallelGeometry":
        """``views`` angles uniformly over ``[start, start + arc)``; ``arc < pi`` is limited-angle."""
        return cls(angles=uniform_angles(views, arc, start), detector_count=detector_count,
                   detector_spacing=detector_spacing, detector_offset=detector_offset)

    @classmethod
    def sparse_view(cls, views: int, detector_count: int, detector_spacing: float = 1.0,
                    detector_offset: float = 0.0) -> "ParallelGeometry":
        """A sparse-view full scan: few angles uniformly over ``[0, pi)`` (same as ``full_scan``)."""
        return cls.full_scan(views, detector_count, detector_spacing, detector_offset)

    def lines(self) -> Tuple[np.ndarray, np.ndarray]:
        """Line parameters ``(theta, s)`` of every ray, each ``(views, detectors)``, float64."""
        theta = np.repeat(self.angle_array()[:, None], self.detector_count, axis=1)
        s = np.broadcast_to(self.detector_positions()[None, :], theta.shape).copy()
        return theta, s

    def line_offset_range(self) -> Tuple[float, float]:
        """Distances ``s`` (mm, signed) from the centre of the lines through the detector's
        outer edges: its two ends (:meth:`detector_edges`)."""
        return self.detector_edges()

    def __repr__(self) -> str:
        return (f"ParallelGeometry(angles={_short_repr_angles(self.angles)}, "
                f"detector_count={self.detector_count!r}, "
                f"detector_spacing={self.detector_spacing!r}, "
                f"detector_offset={self.detector_offset!r})")


_DETECTOR_SHAPES = ("flat", "curved")


@dataclass(frozen=True, repr=False, kw_only=True)
class FanGeometry(_ScanGeometry):
    """2D fan-beam geometry with a flat or a curved (equiangular) detector.

    Parameters
    ----------
    angles : sequence of float
        Source angles ``beta`` in radians, shape ``(views,)``; the source sits at
        ``R (-sin beta, cos beta)``.
    detector_count : int
        Number of detector elements.
    detector_spacing : float
        Element pitch in millimetres, measured on the detector (along the arc for ``curved``).
    source_to_isocenter : float
        ``R`` in millimetres.
    source_to_detector : float
        ``D`` in millimetres (greater than ``R``).
    detector : ``"flat"`` or ``"curved"``
        Flat detector (``gamma = atan(u / D)``) or curved equiangular detector centred on the
        source (``gamma = u / D``).
    detector_offset : float
        Shift of the detector centre along ``u`` in millimetres.

    Detector coordinate ``u`` carries the line ``(beta + gamma, R sin(gamma))``.
    """

    source_to_isocenter: float
    source_to_detector: float
    detector: str = "flat"

    def __post_init__(self):
        self._validate_common()
        r = real("source_to_isocenter", self.source_to_isocenter, positive=True)
        d = real("source_to_detector", self.source_to_detector, positive=True)
        if d <= r:
            raise ValueError(
                f"source_to_detector ({d}) must exceed source_to_isocenter ({r}): the detector "
                "must lie beyond the rotation axis")
        if self.detector not in _DETECTOR_SHAPES:
            raise ValueError(f"detector must be one of {_DETECTOR_SHAPES}, got {self.detector!r}")
        object.__setattr__(self, "source_to_isocenter", r)
        object.__setattr__(self, "source_to_detector", d)
        half_arc = 0.5 * self.detector_count * self.detector_spacing + abs(self.detector_offset)
        if self.detector == "curved" and half_arc / d >= math.pi / 2:
            raise ValueError(
                "the curved detector spans a fan angle of pi or more: reduce detector_count or "
                "detector_spacing, or increase source_to_detector")

    @classmethod
    def full_scan(cls, views: int, detector_count: int, detector_spacing: float,
                  source_to_isocenter: float, source_to_detector: float, detector: str = "flat",
                  detector_offset: float = 0.0) -> "FanGeometry":
        """``views`` source angles uniformly over ``[0, 2 pi)``."""
        return cls(angles=uniform_angles(views, 2 * math.pi), detector_count=detector_count,
                   detector_spacing=detector_spacing, source_to_isocenter=source_to_isocenter,
                   source_to_detector=source_to_detector, detector=detector,
                   detector_offset=detector_offset)

    @classmethod
    def short_scan(cls, views: int, detector_count: int, detector_spacing: float,
                   source_to_isocenter: float, source_to_detector: float, detector: str = "flat",
                   start: float = 0.0, detector_offset: float = 0.0) -> "FanGeometry":
        """A short scan: ``views`` source angles uniformly over ``pi + 2 gamma_max`` (end included).

        ``gamma_max`` is the half fan angle to the outer edge of the detector. The last view sits
        exactly at ``start + pi + 2 gamma_max`` so that Parker weights vanish at both ends.
        """
        start = real("start", start)
        probe = cls(angles=(0.0,), detector_count=detector_count,
                    detector_spacing=detector_spacing, source_to_isocenter=source_to_isocenter,
                    source_to_detector=source_to_detector, detector=detector,
                    detector_offset=detector_offset)
        arc = math.pi + 2 * probe.half_fan_angle
        views = integer("views", views)
        if views < 2:
            raise ValueError("a short scan needs at least 2 views")
        angles = tuple(float(start + k * arc / (views - 1)) for k in range(views))
        return replace(probe, angles=angles)

    @classmethod
    def limited_angle(cls, arc: float, views: int, detector_count: int, detector_spacing: float,
                      source_to_isocenter: float, source_to_detector: float,
                      detector: str = "flat", start: float = 0.0,
                      detector_offset: float = 0.0) -> "FanGeometry":
        """``views`` source angles uniformly over ``[start, start + arc)``."""
        return cls(angles=uniform_angles(views, arc, start), detector_count=detector_count,
                   detector_spacing=detector_spacing, source_to_isocenter=source_to_isocenter,
                   source_to_detector=source_to_detector, detector=detector,
                   detector_offset=detector_offset)

    @property
    def fan_angle_of(self):
        """Function mapping detector coordinates ``u`` (mm) to fan angles ``gamma`` (rad)."""
        d = self.source_to_detector
        if self.detector == "flat":
            return lambda u: np.arctan(np.asarray(u, dtype=np.float64) / d)
        return lambda u: np.asarray(u, dtype=np.float64) / d

    def fan_angles(self) -> np.ndarray:
        """Fan angle ``gamma_j`` of each detector element, shape ``(detectors,)``, radians."""
        return self.fan_angle_of(self.detector_positions())

    @property
    def half_fan_angle(self) -> float:
        """``gamma_max``: the largest ``|gamma|`` reached at the outer edge of the detector."""
        return float(np.max(np.abs(self.fan_angle_of(np.array(self.detector_edges())))))

    @property
    def magnification(self) -> float:
        """``D / R``."""
        return self.source_to_detector / self.source_to_isocenter

    def lines(self) -> Tuple[np.ndarray, np.ndarray]:
        """Line parameters ``(theta, s)`` of every ray, each ``(views, detectors)``, float64."""
        gamma = self.fan_angles()
        beta = self.angle_array()
        theta = beta[:, None] + gamma[None, :]
        s = np.broadcast_to(self.source_to_isocenter * np.sin(gamma)[None, :], theta.shape).copy()
        return theta, s

    def source_positions(self) -> np.ndarray:
        """Source positions ``(views, 2)`` as ``(x, y)`` in millimetres."""
        beta = self.angle_array()
        r = self.source_to_isocenter
        return np.stack([-r * np.sin(beta), r * np.cos(beta)], axis=1)

    def line_offset_range(self) -> Tuple[float, float]:
        """Distances ``s = R sin(gamma)`` (mm, signed) from the centre of the rays through the
        detector's outer edges (:meth:`detector_edges`)."""
        g = self.fan_angle_of(np.array(self.detector_edges()))
        r = self.source_to_isocenter
        return float(r * math.sin(g[0])), float(r * math.sin(g[1]))

    def __repr__(self) -> str:
        return (f"FanGeometry(angles={_short_repr_angles(self.angles)}, "
                f"detector_count={self.detector_count!r}, "
                f"detector_spacing={self.detector_spacing!r}, "
                f"source_to_isocenter={self.source_to_isocenter!r}, "
                f"source_to_detector={self.source_to_detector!r}, "
                f"detector={self.detector!r}, detector_offset={self.detector_offset!r})")


Geometry = Union[ParallelGeometry, FanGeometry]
