"""Analytic phantoms made of ellipses, with exact sinograms.

An ellipse of value ``mu`` (1/mm), centre ``(x0, y0)`` (mm), semi-axes ``a`` (along its own x
axis) and ``b`` (mm), rotated counter-clockwise by ``phi`` (rad), has the line integral along
``(theta, s)`` (Kak & Slaney, *Principles of Computerized Tomographic Imaging*, eq. 3.6)::

    p = 2 mu a b sqrt(a2 - t^2) / a2   if t^2 <= a2, else 0,
    a2 = a^2 cos^2(theta - phi) + b^2 sin^2(theta - phi),  t = s - x0 cos theta - y0 sin theta.

Sinograms of these phantoms are exact line integrals at detector-element centres in any
geometry (via :meth:`Geometry.lines`), so they test the discrete projector without inverse crime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch

from ._checks import real
from .geometry import ImageGrid

__all__ = ["Ellipse", "EllipsePhantom", "shepp_logan", "disk"]


@dataclass(frozen=True)
class Ellipse:
    """One ellipse: value (1/mm), centre (mm), semi-axes (mm), rotation (rad, counter-clockwise)."""

    value: float
    center: Tuple[float, float]
    axes: Tuple[float, float]
    rotation: float = 0.0

    def __post_init__(self):
        def pair(name, v):
            try:
                out = tuple(float(c) for c in v)
            except (TypeError, ValueError):
                raise TypeError(f"{name} must be a pair of numbers, got {v!r}") from None
            if len(out) != 2 or not all(math.isfinite(c) for c in out):
                raise ValueError(f"{name} must be two finite numbers, got {v!r}")
            return out

        object.__setattr__(self, "value", real("value", self.value))
        object.__setattr__(self, "rotation", real("rotation", self.rotation))
        object.__setattr__(self, "center", pair("center", self.center))
        axes = pair("axes", self.axes)
        if axes[0] <= 0 or axes[1] <= 0:
            raise ValueError(f"axes must be positive, got {self.axes!r}")
        object.__setattr__(self, "axes", axes)

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        dx, dy = x - self.center[0], y - self.center[1]
        xr = c * dx + s * dy
        yr = -s * dx + c * dy
        return (xr / self.axes[0]) ** 2 + (yr / self.axes[1]) ** 2 <= 1.0

    def line_integrals(self, theta: np.ndarray, s: np.ndarray) -> np.ndarray:
        a, b = self.axes
        rel = theta - self.rotation
        a2 = (a * np.cos(rel)) ** 2 + (b * np.sin(rel)) ** 2
        t = s - self.center[0] * np.cos(theta) - self.center[1] * np.sin(theta)
        inside = np.clip(a2 - t * t, 0.0, None)
        return 2.0 * self.value * a * b * np.sqrt(inside) / a2


@dataclass(frozen=True)
class EllipsePhantom:
    """A sum of ellipses (values add where they overlap)."""

    ellipses: Tuple[Ellipse, ...]

    def __post_init__(self):
        object.__setattr__(self, "ellipses", tuple(self.ellipses))

    def image(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Point values at coordinates ``x, y`` (mm, any matching shapes)."""
        out = np.zeros(np.broadcast(x, y).shape)
        for e in self.ellipses:
            out += e.value * e.contains(x, y)
        return out

    def rasterize(self, grid: ImageGrid, supersample: int = 4,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Pixel averages over ``supersample x supersample`` points per pixel, shape ``(H, W)``."""
        if supersample < 1:
            raise ValueError(f"supersample must be >= 1, got {supersample}")
        h, w = grid.shape
        dy, dx = grid.spacing
        offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
        xc = grid.x_coordinates()
        yc = grid.y_coordinates()
        xs = (xc[:, None] + offsets[None, :] * dx).reshape(-1)
        ys = (yc[:, None] - offsets[None, :] * dy).reshape(-1)
        xx, yy = np.meshgrid(xs, ys, indexing="xy")
        fine = self.image(xx, yy)
        img = fine.reshape(h, supersample, w, supersample).mean(axis=(1, 3))
        return torch.from_numpy(img).to(dtype)

    def sinogram(self, geometry, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Exact line integrals at detector centres, shape ``(views, detectors)``."""
        theta, s = geometry.lines()
        out = np.zeros_like(theta)
        for e in self.ellipses:
            out += e.line_integrals(theta, s)
        return torch.from_numpy(out).to(dtype)

    def scaled(self, factor: float) -> "EllipsePhantom":
        """Geometrically scaled by ``factor`` (centres and axes), values unchanged."""
        return EllipsePhantom(tuple(
            Ellipse(e.value, (e.center[0] * factor, e.center[1] * factor),
                    (e.axes[0] * factor, e.axes[1] * factor), e.rotation)
            for e in self.ellipses))

    def with_values_scaled(self, factor: float) -> "EllipsePhantom":
        return EllipsePhantom(tuple(
            Ellipse(e.value * factor, e.center, e.axes, e.rotation) for e in self.ellipses))


# Modified Shepp-Logan (Toft 1996): value, x0, y0, a, b, phi (degrees), on [-1, 1]^2.
_MODIFIED_SHEPP_LOGAN = (
    (1.0, 0.0, 0.0, 0.69, 0.92, 0.0),
    (-0.8, 0.0, -0.0184, 0.6624, 0.874, 0.0),
    (-0.2, 0.22, 0.0, 0.11, 0.31, -18.0),
    (-0.2, -0.22, 0.0, 0.16, 0.41, 18.0),
    (0.1, 0.0, 0.35, 0.21, 0.25, 0.0),
    (0.1, 0.0, 0.1, 0.046, 0.046, 0.0),
    (0.1, 0.0, -0.1, 0.046, 0.046, 0.0),
    (0.1, -0.08, -0.605, 0.046, 0.023, 0.0),
    (0.1, 0.0, -0.605, 0.023, 0.023, 0.0),
    (0.1, 0.06, -0.605, 0.023, 0.046, 0.0),
)


def shepp_logan(radius: float = 1.0, scale: float = 1.0) -> EllipsePhantom:
    """The modified Shepp-Logan phantom (Toft), fitted into a disk of ``radius`` mm.

    ``scale`` multiplies the values (the outer ellipse has value ``scale`` in 1/mm).
    """
    return EllipsePhantom(tuple(
        Ellipse(v * scale, (x0 * radius, y0 * radius), (a * radius, b * radius), math.radians(p))
        for v, x0, y0, a, b, p in _MODIFIED_SHEPP_LOGAN))


def disk(radius: float, value: float = 1.0, center: Tuple[float, float] = (0.0, 0.0)) -> EllipsePhantom:
    """A uniform disk; its sinogram is ``2 value sqrt(radius^2 - t^2)``."""
    return EllipsePhantom((Ellipse(value, center, (radius, radius)),))
