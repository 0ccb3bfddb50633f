"""Ray-by-ray interpolation rebinning between parallel-beam and fan-beam sinograms.

The classical baseline of Syben et al., "Deriving neural network architectures using precision
learning: parallel-to-fan beam conversion" (GCPR 2018): every ray of the target geometry is a
line ``(theta, s)`` (``shared/CONVENTIONS.md``) and its value is read off the source sinogram by
bilinear interpolation, linear in the view angle and linear along the detector.

Fan-beam ray ``(beta, gamma)`` is the parallel line ``theta = beta + gamma``,
``s = R sin(gamma)`` with ``gamma = atan(u / D)`` (flat detector) or ``gamma = u / D`` (curved,
equiangular). Conversely the parallel line ``(theta, s)`` is the fan ray
``gamma = asin(s / R)``, ``beta = theta - gamma`` and also, because a line has two directions,
the complementary fan ray ``gamma' = -gamma``, ``beta' = theta + pi + gamma``.

Periodicity
-----------
* Parallel data satisfy ``p(theta + pi, s) = p(theta, -s)``. A target angle outside the range
  of the parallel views is mapped back by ``k`` half-turns, flipping the sign of ``s`` for odd
  ``k``; the view after the last one is the first view turned by ``pi`` (``s`` flipped), so a
  full parallel scan ``[0, pi)`` covers every angle.
* Fan data are ``2 pi`` periodic in ``beta``. A parallel ray is taken from every fan sample that
  covers it (both the direct and the complementary ray); where both are covered (a full ``2 pi``
  scan, or the overlap of a short scan) the two interpolated values are averaged.

Coverage and edges
------------------
Angular interpolation needs two neighbouring views no further apart than
``max_gap_factor`` times the median view spacing (so a limited-angle or short scan leaves its
missing wedge uncovered instead of interpolating across it). Detector interpolation needs
``u_0 <= u <= u_{n-1}`` (the outermost element *centres*). A target ray that is not covered is,
with ``fill="error"`` (default), a ``ValueError`` that says how many rays and which range was
needed; with ``fill="zero"`` it is set to zero and a ``UserWarning`` says how many rays were
zero-filled.

The mapping is linear and precomputed once per pair of geometries (:class:`InterpolationRebinning`,
an ``nn.Module`` holding index and weight buffers); applying it is one vectorised gather, with
native batch dimensions and autograd.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn

from operators._checks import real
from operators.geometry import FanGeometry, ParallelGeometry

__all__ = ["InterpolationRebinning", "parallel_to_fan", "fan_to_parallel"]

_FILLS = ("error", "zero")
_ANGLE_EPS = 1e-9      # radians: tolerance for "exactly on a view"
_DETECTOR_EPS = 1e-9   # in units of the detector spacing


def _check_geometry(name: str, geometry, kind, source: bool) -> None:
    if not isinstance(geometry, kind):
        raise TypeError(f"{name} must be an operators.{kind.__name__}, got "
                        f"{type(geometry).__name__}")
    if source and geometry.detector_count < 2:
        raise ValueError(f"{name}.detector_count must be at least 2 for interpolation along the "
                         f"detector, got {geometry.detector_count}")


def _angular_table(view_angles: np.ndarray, period: float, flip_on_wrap: bool,
                   target: np.ndarray, max_gap_factor: float, name: str):
    """Neighbouring views of every target angle on a circle of ``period`` radians.

    Parameters
    ----------
    view_angles : (V,) float64
        Source view angles (radians), any order, any range.
    period : float
        ``pi`` for parallel data (with ``flip_on_wrap``), ``2 pi`` for fan data.
    flip_on_wrap : bool
        Whether every shift by ``period`` flips the detector coordinate (``s -> -s``).
    target : (M,) float64
        Target angles (radians).

    Returns
    -------
    k0, k1 : (M,) int64
        Source view indices of the lower and upper neighbour.
    w1 : (M,) float64
        Weight of the upper neighbour (``1 - w1`` for the lower one).
    f0, f1 : (M,) bool
        Whether the detector coordinate is flipped when reading neighbour ``k0`` / ``k1``.
    covered : (M,) bool
        Whether the two neighbours are close enough (see the module docstring).
    """
    v = view_angles.size
    if v < 2:
        raise ValueError(f"{name} needs at least 2 views for interpolation in the angle, got {v}")
    origin = float(view_angles.min())
    turns = np.floor((view_angles - origin) / period).astype(np.int64)
    reduced = view_angles - turns * period
    top = reduced >= origin + period - _ANGLE_EPS  # rounding: one period above the origin view
    reduced = np.where(top, reduced - period, reduced)
    turns = turns + top
    flips = (turns % 2 == 1) if flip_on_wrap else np.zeros(v, bool)
    order = np.argsort(reduced, kind="stable")
    a, idx, fl = reduced[order], order, flips[order]
    keep = np.concatenate([[True], np.diff(a) > _ANGLE_EPS])  # redundant views: keep the first
    a, idx, fl = a[keep], idx[keep], fl[keep]
    n = a.size
    if n < 2:
        raise ValueError(f"{name} has fewer than 2 distinct view angles modulo {period:.6g}")
    gaps = np.empty(n)
    gaps[:-1] = np.diff(a)
    gaps[-1] = a[0] + period - a[-1]
    max_gap = max_gap_factor * float(np.median(gaps))

    t_turns = np.floor((target - origin) / period)
    t = target - t_turns * period
    t_flip = (t_turns.astype(np.int64) % 2 == 1) if flip_on_wrap else np.zeros(target.shape, bool)
    lo = np.searchsorted(a, t, side="right") - 1
    lo = np.clip(lo, 0, n - 1)  # t >= a[0] always holds since a[0] == origin
    hi = (lo + 1) % n
    wraps = lo == n - 1
    a_hi = np.where(wraps, a[0] + period, a[(lo + 1) % n])
    gap = a_hi - a[lo]
    w1 = np.clip((t - a[lo]) / gap, 0.0, 1.0)
    covered = (gap <= max_gap) | (w1 * gap <= _ANGLE_EPS) | ((1 - w1) * gap <= _ANGLE_EPS)
    # outside a covered gap, snap to the nearest exact view if there is one
    w1 = np.where((gap > max_gap) & ((1 - w1) * gap <= _ANGLE_EPS), 1.0, w1)
    w1 = np.where((gap > max_gap) & (w1 * gap <= _ANGLE_EPS), 0.0, w1)
    f0 = t_flip ^ fl[lo]
    f1 = t_flip ^ fl[hi] ^ (wraps & flip_on_wrap)
    return idx[lo], idx[hi], w1, f0, f1, covered


def _detector_table(geometry, u: np.ndarray):
    """Linear interpolation along the detector at coordinates ``u`` (mm), any shape.

    Returns ``(j0, w1, inside)``: lower element index, weight of element ``j0 + 1``, and
    whether ``u`` lies between the outermost element centres.
    """
    n = geometry.detector_count
    u0 = geometry.detector_positions()[0]
    x = (u - u0) / geometry.detector_spacing
    inside = (x >= -_DETECTOR_EPS) & (x <= n - 1 + _DETECTOR_EPS)
    xc = np.clip(x, 0.0, n - 1.0)
    j0 = np.clip(np.floor(xc).astype(np.int64), 0, n - 2)
    w1 = np.clip(xc - j0, 0.0, 1.0)
    return j0, w1, inside


def _bilinear_taps(geometry, k0, k1, wa, u0, u1):
    """Flat indices ``(M, 4)``, weights ``(M, 4)`` and validity ``(M,)`` of bilinear reads.

    ``u0`` / ``u1`` are the detector coordinates to read in views ``k0`` / ``k1``.
    """
    n = geometry.detector_count
    j0a, wb0, in0 = _detector_table(geometry, u0)
    j0b, wb1, in1 = _detector_table(geometry, u1)
    index = np.stack([k0 * n + j0a, k0 * n + j0a + 1, k1 * n + j0b, k1 * n + j0b + 1], axis=-1)
    weight = np.stack([(1 - wa) * (1 - wb0), (1 - wa) * wb0, wa * (1 - wb1), wa * wb1], axis=-1)
    # a neighbour with zero weight need not be inside the detector
    valid = (in0 | (wa >= 1.0)) & (in1 | (wa <= 0.0))
    return index, weight, valid


def _uncovered(fill: str, count: int, total: int, what: str) -> None:
    if count == 0:
        return
    message = (f"{count} of {total} target rays are not covered by the source sinogram "
               f"({what})")
    if fill == "error":
        raise ValueError(message + "; enlarge the source geometry, or pass fill='zero' to set "
                         "these rays to zero")
    warnings.warn(message + "; they are set to zero (fill='zero')", UserWarning, stacklevel=4)


def _fan_u_of_gamma(geometry: FanGeometry, gamma: np.ndarray) -> np.ndarray:
    d = geometry.source_to_detector
    if geometry.detector == "flat":
        return d * np.tan(gamma)
    return d * gamma


def _parallel_to_fan_table(source: ParallelGeometry, target: FanGeometry, fill: str,
                           max_gap_factor: float):
    theta, s = target.lines()
    theta, s = theta.reshape(-1), s.reshape(-1)
    k0, k1, wa, f0, f1, covered = _angular_table(
        source.angle_array(), math.pi, True, theta, max_gap_factor, "parallel_geometry")
    index, weight, inside = _bilinear_taps(source, k0, k1, wa, np.where(f0, -s, s),
                                           np.where(f1, -s, s))
    ok = covered & inside
    u = source.detector_positions()
    n_angle = int((~covered).sum())
    what = []
    if n_angle:
        what.append(f"{n_angle} fall into a gap of the parallel view angles")
    n_det = int((covered & ~inside).sum())
    if n_det:
        what.append(f"{n_det} need |s| up to {np.abs(s[~inside]).max():.4g} mm, beyond the "
                    f"parallel detector centres [{u[0]:.4g}, {u[-1]:.4g}] mm")
    _uncovered(fill, int((~ok).sum()), ok.size, "; ".join(what))
    weight = np.where(ok[:, None], weight, 0.0)
    return index, weight


def _fan_to_parallel_table(source: FanGeometry, target: ParallelGeometry, fill: str,
                           max_gap_factor: float):
    theta, s = target.lines()
    theta, s = theta.reshape(-1), s.reshape(-1)
    r = source.source_to_isocenter
    reachable = np.abs(s) < r
    gamma = np.arcsin(np.clip(s / r, -1 + 1e-15, 1 - 1e-15))
    beta_angles = source.angle_array()
    indices, weights, oks = [], [], []
    for beta, g in ((theta - gamma, gamma), (theta + math.pi + gamma, -gamma)):
        k0, k1, wa, _, _, covered = _angular_table(
            beta_angles, 2 * math.pi, False, beta, max_gap_factor, "fan_geometry")
        u = _fan_u_of_gamma(source, g)
        index, weight, inside = _bilinear_taps(source, k0, k1, wa, u, u)
        indices.append(index)
        weights.append(weight)
        oks.append(covered & inside & reachable)
    count = oks[0].astype(np.float64) + oks[1]
    ok = count > 0
    if not ok.all():
        u = source.detector_positions()
        what = (f"neither the direct nor the complementary fan ray lies within the fan views and "
                f"the fan detector centres [{u[0]:.4g}, {u[-1]:.4g}] mm; |s| reaches "
                f"{np.abs(s[~ok]).max():.4g} mm, the source radius is {r:.4g} mm")
        _uncovered(fill, int((~ok).sum()), ok.size, what)
    scale = np.where(ok, 1.0 / np.maximum(count, 1.0), 0.0)
    index = np.concatenate(indices, axis=-1)
    weight = np.concatenate([w * (o * scale)[:, None] for w, o in zip(weights, oks)], axis=-1)
    return index, weight


class InterpolationRebinning(nn.Module):
    """Ray-by-ray bilinear interpolation rebinning, parallel -> fan or fan -> parallel.

    Parameters
    ----------
    source : ParallelGeometry or FanGeometry
        Geometry of the input sinograms.
    target : FanGeometry or ParallelGeometry
        Geometry of the output sinograms (the other kind).
    fill : ``"error"`` or ``"zero"``
        What to do with target rays the source does not cover (see the module docstring):
        raise ``ValueError`` (default) or set them to zero with a ``UserWarning``.
    max_gap_factor : float
        Two neighbouring source views farther apart than this times their median spacing leave
        the angles between them uncovered (a missing wedge).

    Shapes
    ------
    ``forward(p)``: ``(*batch, source views, source detectors)`` ->
    ``(*batch, target views, target detectors)``; float32 or float64; differentiable
    (the map is linear, a fixed sparse gather).

    Reference: the interpolation baseline of Syben et al., GCPR 2018 (see module docstring).
    """

    def __init__(self, source, target, fill: str = "error", max_gap_factor: float = 1.5):
        super().__init__()
        if fill not in _FILLS:
            raise ValueError(f"fill must be one of {_FILLS}, got {fill!r}")
        max_gap_factor = real("max_gap_factor", max_gap_factor, finite=False)
        if not max_gap_factor >= 1.0:
            raise ValueError(f"max_gap_factor must be a number >= 1, got {max_gap_factor!r}")
        if isinstance(source, ParallelGeometry):
            _check_geometry("source", source, ParallelGeometry, True)
            _check_geometry("target", target, FanGeometry, False)
            index, weight = _parallel_to_fan_table(source, target, fill, float(max_gap_factor))
        elif isinstance(source, FanGeometry):
            _check_geometry("source", source, FanGeometry, True)
            _check_geometry("target", target, ParallelGeometry, False)
            index, weight = _fan_to_parallel_table(source, target, fill, float(max_gap_factor))
        else:
            raise TypeError("source must be an operators.ParallelGeometry or FanGeometry, got "
                            f"{type(source).__name__}")
        self.source = source
        self.target = target
        self.fill = fill
        self.register_buffer("index", torch.from_numpy(np.ascontiguousarray(index)),
                             persistent=False)
        self.register_buffer("weight", torch.from_numpy(np.ascontiguousarray(weight)),
                             persistent=False)

    @property
    def direction(self) -> str:
        return ("parallel-to-fan" if isinstance(self.source, ParallelGeometry)
                else "fan-to-parallel")

    def extra_repr(self) -> str:
        return f"{self.direction}, fill={self.fill!r},\nsource={self.source!r},\ntarget={self.target!r}"

    def forward(self, sinogram: torch.Tensor) -> torch.Tensor:
        """Rebin ``(*batch, views, detectors)`` of the source to the target geometry."""
        if not isinstance(sinogram, torch.Tensor):
            raise TypeError(f"sinogram must be a torch.Tensor, got {type(sinogram).__name__}")
        if sinogram.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"sinogram has dtype {sinogram.dtype}; use torch.float32 or float64")
        shape = self.source.sinogram_shape
        if sinogram.dim() < 2 or tuple(sinogram.shape[-2:]) != tuple(shape):
            raise ValueError(f"sinogram must have shape (*batch, views, detectors) ending in "
                             f"{tuple(shape)} (the source geometry), got {tuple(sinogram.shape)}")
        batch = sinogram.shape[:-2]
        flat = sinogram.reshape(*batch, shape[0] * shape[1])
        index = self.index.to(sinogram.device)
        weight = self.weight.to(device=sinogram.device, dtype=sinogram.dtype)
        taps = flat[..., index.reshape(-1)].reshape(*batch, *index.shape)
        out = (taps * weight).sum(-1)
        return out.reshape(*batch, *self.target.sinogram_shape)


def parallel_to_fan(sinogram: torch.Tensor, parallel_geometry: ParallelGeometry,
                    fan_geometry: FanGeometry, fill: str = "error") -> torch.Tensor:
    """Rebin parallel-beam data ``(*batch, views, detectors)`` to ``fan_geometry``.

    One-shot form of :class:`InterpolationRebinning` (build the module once to convert many
    sinograms). Returns ``(*batch, fan views, fan detectors)``.
    """
    _check_geometry("parallel_geometry", parallel_geometry, ParallelGeometry, True)
    _check_geometry("fan_geometry", fan_geometry, FanGeometry, False)
    return InterpolationRebinning(parallel_geometry, fan_geometry, fill=fill)(sinogram)


def fan_to_parallel(sinogram: torch.Tensor, fan_geometry: FanGeometry,
                    parallel_geometry: ParallelGeometry, fill: str = "error") -> torch.Tensor:
    """Rebin fan-beam data ``(*batch, views, detectors)`` to ``parallel_geometry``.

    One-shot form of :class:`InterpolationRebinning`. Returns
    ``(*batch, parallel views, parallel detectors)``.
    """
    _check_geometry("fan_geometry", fan_geometry, FanGeometry, True)
    _check_geometry("parallel_geometry", parallel_geometry, ParallelGeometry, False)
    return InterpolationRebinning(fan_geometry, parallel_geometry, fill=fill)(sinogram)
