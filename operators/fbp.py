"""Filtered back-projection built from layers: sinogram weighting, ramp filter, back-projection.

Each stage is an ``nn.Module``; the weighting and the filter hold ``nn.Parameter``s that are
frozen by default and can be unfrozen for trainable FBP (Würfl et al., MICCAI 2016 and IEEE TMI
2018) or a learned filter (Syben et al., CT Meeting 2018).

Formulas (Kak & Slaney, *Principles of Computerized Tomographic Imaging*, ch. 3):

* parallel beam: ``f(x) = sum_i dtheta_i w_ij Q_i(x cos theta_i + y sin theta_i)`` with
  ``Q = tau * (h * p)`` and the spatial Ram-Lak kernel ``h(0) = 1/(4 tau^2)``,
  ``h(n tau) = 0`` (n even), ``-1/(n pi tau)^2`` (n odd) (eq. 3.61), which avoids the DC offset
  and cupping of a naively sampled ramp ``|f|``;
* fan beam, flat detector (eq. 3.146-3.150): detector coordinate rescaled to the isocentre
  ``a = u R / D``, cosine weight ``D / sqrt(D^2 + u^2)``, ramp filter at spacing ``tau R / D``,
  back-projection weight ``R^2 / U^2`` with ``U = R + x sin beta - y cos beta``;
* fan beam, curved detector (eq. 3.112-3.115): weight ``R cos gamma``, kernel
  ``g(n alpha) = (n alpha / sin(n alpha))^2 h(n alpha)`` in the angle ``gamma = u / D``,
  back-projection weight ``1 / L^2`` (``L``: source-to-pixel distance).

The redundancy weights ``w`` make every line count once: 1/2 for a fan (or 2 pi parallel) full
scan, Parker weights (Parker 1982) for a fan short scan of at least ``pi + 2 gamma_max``, and
``1 / count`` otherwise (limited-angle arcs: each measured line counts once, missing lines stay
missing; scans beyond 2 pi: 1/3, 1/4 where lines are passed again), and for a full rotation
with a displaced detector (a half-fan scan, offset by at least 10 % of the detector) Wang's
smooth weights (Med. Phys. 2002), with the filtered projections kept on the detector extended
to a symmetric one, so that the field of view reaches the detector's far end. Angles may be
written modulo 2 pi: the weights are computed on the contiguous arc (``unwrapped_angles``).

The back-projection is pixel-driven with linear interpolation on the detector (the standard FBP
back-projector; it equals ``(tau / (dx dy)) A^T`` for parallel beam up to interpolation). It is
a fixed linear layer with its own exact adjoint, cached as a sparse matrix on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn

from .backends import SPARSE_MEMORY_BUDGET
from .backends.sparse import MatrixCache, csr_pair
from ._checks import integer, real
from ._graph_pools import build_outside_graph_pools
from .geometry import FanGeometry, ImageGrid, ParallelGeometry
from .projector import (_HALF_DTYPES, FixedAtConstruction, RegisteredOperator, _validate_pair,
                        apply_adjoint, apply_forward, check_tensor)
from .signature import register_signature

__all__ = [
    "FILTERS", "FBP", "SinogramWeighting", "DetectorPadding", "RampFilter",
    "PixelBackprojection",
    "ram_lak_kernel", "filter_response", "naive_ramp_response", "redundancy_weights",
    "parker_weights", "cosine_weights", "padded_length", "offset_detector_weights",
    "is_displaced_detector", "is_half_fan_scan", "symmetric_detector_padding",
    "DISPLACED_DETECTOR_FRACTION",
]

FILTERS = ("ram-lak", "shepp-logan", "cosine", "hamming", "hann")


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------
def cosine_weights(geometry) -> np.ndarray:
    """Pre-weighting of each sample, shape ``(views, detectors)``.

    Parallel: 1. Flat fan: ``D / sqrt(D^2 + u^2)``. Curved fan: ``R cos(gamma)`` (mm; the curved
    kernel is in radians, see the module docstring).
    """
    v, n = geometry.sinogram_shape
    if isinstance(geometry, ParallelGeometry):
        return np.ones((v, n))
    u = geometry.detector_positions()
    if geometry.detector == "flat":
        d = geometry.source_to_detector
        w = d / np.sqrt(d * d + u * u)
    else:
        w = geometry.source_to_isocenter * np.cos(geometry.fan_angles())
    return np.broadcast_to(w[None, :], (v, n)).copy()


def _conjugate_on_detector(geometry) -> np.ndarray:
    """Whether the conjugate ray of each detector cell lands on the detector, ``(detectors,)``.

    The line of the ray at ``u`` is measured again at ``-u`` (parallel: the opposite view; fan,
    flat or curved: the ray at ``-gamma``). With a detector offset some cells have no
    conjugate cell, so their lines are measured once whatever the arc.
    """
    u = geometry.detector_positions()
    lo, hi = geometry.detector_edges()
    tol = 1e-9 * max(1.0, float(np.abs(u).max()))
    return (-u >= lo - tol) & (-u <= hi + tol)


#: A detector counts as displaced (half-fan) when its two ends differ in distance from the
#: centre by at least this fraction of its length (RTK's DisplacedDetectorImageFilter rule).
DISPLACED_DETECTOR_FRACTION = 0.1


def is_displaced_detector(geometry) -> bool:
    """Whether the detector is offset far enough for :func:`offset_detector_weights`.

    True when ``|u_lo + u_hi| >= 0.1 (u_hi - u_lo)`` for the detector's outer edges; smaller
    offsets (a quarter-cell shift for finer sampling) keep the count-based weights.
    """
    lo, hi = geometry.detector_edges()
    return abs(lo + hi) >= DISPLACED_DETECTOR_FRACTION * (hi - lo)


def offset_detector_weights(geometry) -> np.ndarray:
    """Wang's weights for a full rotation with a displaced detector, shape ``(detectors,)``.

    G. Wang, "X-ray micro-CT with a displaced detector array", Med. Phys. 29(7), 2002. Cells
    whose conjugate ray lands on the detector (the overlap ``|c| <= c_overlap`` around the
    centre, ``c`` the fan angle ``gamma`` or, for parallel beams, ``u``) get
    ``w = (1 + sin(pi/2 * c / c_overlap)) / 2``, rising from 0 at the short end to 1 at the
    overlap's other edge, so that ``w(c) + w(-c) = 1`` for every line measured twice; the cells
    beyond get 1 (their lines are measured once). Weighting before the ramp filter, the
    projections then fall smoothly to zero at the short end, where the object is cut off,
    instead of jumping from 1/2 to 0 there. For a detector offset the other way the weights
    are mirrored; without an overlap (the detector misses the centre) they are all 1.
    """
    lo, hi = geometry.detector_edges()
    if isinstance(geometry, FanGeometry):
        c = geometry.fan_angles()
        c_lo, c_hi = (float(g) for g in geometry.fan_angle_of(np.array([lo, hi])))
    else:
        c = geometry.detector_positions()
        c_lo, c_hi = lo, hi
    overlap = min(-c_lo, c_hi)
    if overlap <= 0.0:
        return np.ones(geometry.detector_count)
    side = 1.0 if c_hi >= -c_lo else -1.0
    t = np.clip(side * c / overlap, -1.0, 1.0)
    return 0.5 * (1.0 + np.sin(0.5 * math.pi * t))


def is_half_fan_scan(geometry) -> bool:
    """A full rotation with a displaced detector (:func:`is_displaced_detector`): every line
    is measured twice in the overlap around the centre and once beyond it."""
    if not is_displaced_detector(geometry):
        return False
    return bool(np.all(_line_counts(geometry) == 1.0 + _conjugate_on_detector(geometry)[None, :]))


def _half_fan_weighting(geometry, short_scan: str) -> bool:
    """Whether :func:`redundancy_weights` gives Wang's weights (and FBP pads the detector)."""
    return short_scan != "parker" and is_half_fan_scan(geometry)


def symmetric_detector_padding(geometry) -> Tuple[int, int]:
    """Cells ``(before, after)`` that extend a displaced detector to a symmetric one.

    FBP of a half-fan scan back-projects, for every pixel of the field of view, filtered values
    on both sides of the centre; on the short side they lie beyond the detector (the filter's
    response to the measured side), so the filtered projections are kept on the extended
    detector (RTK pads the same way). Zero cells added on the short side; ``(0, 0)`` for a
    centred detector.
    """
    lo, hi = geometry.detector_edges()
    missing = math.ceil(abs(lo + hi) / geometry.detector_spacing - 1e-9)
    return (missing, 0) if hi > -lo else (0, missing)


def _padded_geometry(geometry, padding: Tuple[int, int]):
    before, after = padding
    if before == after == 0:
        return geometry
    shift = 0.5 * (after - before) * geometry.detector_spacing
    return replace(geometry, detector_count=geometry.detector_count + before + after,
                   detector_offset=geometry.detector_offset + shift)


def parker_weights(geometry: FanGeometry, overscan: Optional[float] = None) -> np.ndarray:
    """Parker's short-scan weights (Parker 1982, Med. Phys. 9(2)), shape ``(views, detectors)``.

    With ``delta = (arc - pi) / 2`` (``arc``: source-angle range from the first to the last view,
    at least ``pi + 2 gamma_max``) and ``b = beta - beta_0``::

        w = sin^2(pi/4 * b / (delta - gamma))             for 0 <= b <= 2 delta - 2 gamma
        w = 1                                             up to  pi - 2 gamma
        w = sin^2(pi/4 * (pi + 2 delta - b) / (delta + gamma))   up to pi + 2 delta
        w = 0                                             beyond (with ``overscan`` shorter
                                                          than the views' arc)

    In this package's convention (``theta = beta + gamma``) the line of ray ``(beta, gamma)`` is
    measured again at ``(beta + pi + 2 gamma, -gamma)``; the weights of the two add up to 1.
    Angles are taken as one contiguous arc (:meth:`~operators.FanGeometry.unwrapped_angles`).
    A detector cell whose conjugate ``-gamma`` is off an offset detector gets weight 1 (its
    lines are measured once); the jump to it is not smoothed, so a short scan with a displaced
    detector reconstructs objects beyond the symmetric field of view with ring errors (full
    rotations get smooth weights: :func:`offset_detector_weights`).
    """
    if not isinstance(geometry, FanGeometry):
        raise TypeError(f"Parker weights need a FanGeometry, got {type(geometry).__name__}")
    beta = geometry.unwrapped_angles()
    b = beta - beta.min()
    arc = float(b.max()) if overscan is None else math.pi + 2 * float(overscan)
    delta = 0.5 * (arc - math.pi)
    gamma = geometry.fan_angles()
    if delta < geometry.half_fan_angle - 1e-9:
        raise ValueError(
            f"Parker weights need a source arc of at least pi + 2 gamma_max = "
            f"{math.pi + 2 * geometry.half_fan_angle:.6f} rad, got {arc:.6f}")
    bb = b[:, None]
    g = gamma[None, :]
    w = np.ones((b.size, gamma.size))
    with np.errstate(divide="ignore", invalid="ignore"):
        rise = np.sin(0.25 * math.pi * bb / (delta - g)) ** 2
        fall = np.sin(0.25 * math.pi * (math.pi + 2 * delta - bb) / (delta + g)) ** 2
    w = np.where(bb < 2 * delta - 2 * g, rise, w)
    w = np.where(bb > math.pi - 2 * g, fall, w)
    w = np.where(bb > math.pi + 2 * delta + 1e-12, 0.0, w)
    w = np.clip(np.nan_to_num(w, nan=0.0), 0.0, 1.0)
    return np.where(_conjugate_on_detector(geometry)[None, :], w, 1.0)


def _passes(angle: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """How many of ``angle + 2 pi m`` (``m`` any integer) lie in ``[lo, hi)``."""
    two_pi = 2.0 * math.pi
    return np.ceil((hi - angle) / two_pi) - np.ceil((lo - angle) / two_pi)


def _line_counts(geometry) -> np.ndarray:
    """How often the line of each ray is measured within the scan, ``(views, detectors)``.

    The views are taken as one contiguous arc (:meth:`unwrapped_angles`) covering
    ``[first - spacing / 2, last + spacing / 2)``; a line is measured once per pass of the arc
    over its own source angle (more than one beyond ``2 pi``) and once per pass over its
    conjugate source angle when the conjugate ray lands on the detector.
    """
    angles = geometry.unwrapped_angles()
    v, n = geometry.sinogram_shape
    if angles.size < 2:
        return np.ones((v, n))
    spacing = float(np.median(np.diff(np.sort(angles))))
    lo = float(angles.min()) - 0.5 * spacing
    hi = float(angles.max()) + 0.5 * spacing
    beta = np.broadcast_to(angles[:, None], (v, n))
    if isinstance(geometry, ParallelGeometry):
        conj = beta + math.pi
    else:
        conj = beta + math.pi + 2 * geometry.fan_angles()[None, :]
    own = np.maximum(_passes(beta, lo, hi), 1.0)
    return own + _passes(conj, lo, hi) * _conjugate_on_detector(geometry)[None, :]


def redundancy_weights(geometry, short_scan: str = "auto") -> np.ndarray:
    """Weights that make every measured line count once, shape ``(views, detectors)``.

    ``short_scan``: ``"auto"`` (Parker weights for a fan arc of at least ``pi + 2 gamma_max``
    and below ``2 pi``; otherwise count-based), ``"parker"`` (force, error if the arc is too
    short or the geometry is not a fan) or ``"none"`` (count-based: ``1 / (number of times the
    line is measured)``: 1/2 for a full scan, 1/3 and 1/4 where a scan longer than ``2 pi``
    passes a line again, 1 where an offset detector has no conjugate cell). A full rotation
    with a displaced detector (:func:`is_half_fan_scan`) gets :func:`offset_detector_weights`
    instead, unless ``short_scan="parker"``.
    """
    if short_scan not in ("auto", "parker", "none"):
        raise ValueError(f"short_scan must be 'auto', 'parker' or 'none', got {short_scan!r}")
    if short_scan == "parker" and not isinstance(geometry, FanGeometry):
        raise ValueError(f"short_scan='parker' needs a FanGeometry, got "
                         f"{type(geometry).__name__} (use 'auto' or 'none')")
    angles = geometry.unwrapped_angles()
    if isinstance(geometry, FanGeometry) and short_scan != "none":
        arc_endpoints = float(angles.max() - angles.min())
        full = geometry.covers_full_rotation()
        enough = arc_endpoints >= math.pi + 2 * geometry.half_fan_angle - 1e-9
        if short_scan == "parker" or (enough and not full):
            return parker_weights(geometry)
    if _half_fan_weighting(geometry, short_scan):
        # Smooth weights (Wang 2002) instead of the jump from 1/2 to 1 at the overlap's end.
        return np.broadcast_to(offset_detector_weights(geometry)[None, :],
                               geometry.sinogram_shape).copy()
    return 1.0 / _line_counts(geometry)


# --------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------
def padded_length(detector_count: int) -> int:
    """Zero-padded filter length: the next power of two >= 2 n (at least 64)."""
    return max(64, 1 << int(math.ceil(math.log2(2 * detector_count))))


def ram_lak_kernel(length: int, curved: bool = False, alpha: float = 1.0,
                   support: Optional[int] = None) -> np.ndarray:
    """Spatial Ram-Lak kernel ``tau^2 h(n tau)`` in FFT order (index ``n`` and ``length - n``).

    ``h(0) tau^2 = 1/4``, 0 for even ``n``, ``-1/(n pi)^2`` for odd ``n`` (Kak & Slaney eq. 3.61).
    For a curved (equiangular) detector with angular pitch ``alpha`` the kernel is multiplied by
    ``(n alpha / sin(n alpha))^2`` (eq. 3.113). ``support`` (curved only): the detector count;
    taps ``|n| >= support`` are never used by the linear convolution of ``support`` samples and
    are set to 0, so that the factor's poles at ``n alpha = k pi`` (reached by a wide fan with
    long padding) cannot enter the frequency response.
    """
    n = np.arange(length)
    n = np.where(n <= length // 2, n, n - length).astype(np.float64)
    k = np.zeros(length)
    k[n == 0] = 0.25
    odd = (np.abs(n) % 2) == 1
    k[odd] = -1.0 / (math.pi * n[odd]) ** 2
    if curved:
        used = np.ones(length, dtype=bool) if support is None else np.abs(n) < support
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(n == 0, 1.0, (n * alpha / np.sin(n * alpha)) ** 2)
        k = np.where(used, k * factor, 0.0)
    return k


def _window(name: str, length: int) -> np.ndarray:
    nu = np.fft.rfftfreq(length)  # cycles per sample, 0 .. 0.5
    if name == "ram-lak":
        return np.ones_like(nu)
    if name == "shepp-logan":
        return np.sinc(nu)  # sin(pi nu) / (pi nu)
    if name == "cosine":
        return np.cos(math.pi * nu)
    if name == "hamming":
        return 0.54 + 0.46 * np.cos(2 * math.pi * nu)
    if name == "hann":
        return 0.5 + 0.5 * np.cos(2 * math.pi * nu)
    raise ValueError(f"filter must be one of {FILTERS}, got {name!r}")


def filter_response(filter: str, length: int, cutoff: float = 1.0, curved: bool = False,
                    alpha: float = 1.0, support: Optional[int] = None) -> np.ndarray:
    """Real frequency response on the ``rfft`` grid of ``length`` (``length // 2 + 1`` values).

    The discrete Fourier transform of :func:`ram_lak_kernel` (not a sampled ``|f|``), times the
    window of ``filter``, zero above ``cutoff`` times the Nyquist frequency. Dimensionless: the
    filter layer divides by the detector pitch. ``support``: see :func:`ram_lak_kernel`.
    """
    cutoff = real("cutoff", cutoff)
    if not 0 < cutoff <= 1:
        raise ValueError(f"cutoff must be in (0, 1], got {cutoff!r}")
    base = np.fft.rfft(ram_lak_kernel(length, curved, alpha, support)).real
    resp = base * _window(filter, length)
    nu = np.fft.rfftfreq(length)
    resp[nu > 0.5 * cutoff + 1e-12] = 0.0
    return resp


def naive_ramp_response(length: int) -> np.ndarray:
    """A naively sampled ramp ``|nu|`` on the rfft grid (zero at DC: the cause of the DC offset).

    The starting point of the learned-filter experiment (Syben et al. 2018).
    """
    return np.abs(np.fft.rfftfreq(length))


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------
class SinogramWeighting(nn.Module):
    """Multiplies each sinogram sample by a weight (``(views, detectors)`` parameter).

    Frozen by default; trainable FBP (Würfl et al.) learns it, initialised with the
    cosine x redundancy (Parker) weights.
    """

    def __init__(self, weights: torch.Tensor, trainable: bool = False):
        super().__init__()
        self.weights = nn.Parameter(torch.as_tensor(weights, dtype=torch.float32).clone(),
                                    requires_grad=trainable)

    def forward(self, sinogram: torch.Tensor) -> torch.Tensor:
        return sinogram * self.weights.to(sinogram.dtype)


class DetectorPadding(nn.Module):
    """Adds ``cells = (before, after)`` zero cells at the ends of the detector axis.

    ``(*batch, views, detectors) -> (*batch, views, before + detectors + after)``; the identity
    for ``(0, 0)``. Used by :class:`FBP` for half-fan scans (:func:`symmetric_detector_padding`).
    """

    def __init__(self, cells: Tuple[int, int] = (0, 0)):
        super().__init__()
        before, after = (int(c) for c in cells)
        if before < 0 or after < 0:
            raise ValueError(f"cells must be non-negative, got {cells!r}")
        self.cells = (before, after)

    def forward(self, sinogram: torch.Tensor) -> torch.Tensor:
        if self.cells == (0, 0):
            return sinogram
        return torch.nn.functional.pad(sinogram, self.cells)

    def extra_repr(self) -> str:
        return f"cells={self.cells}"


class RampFilter(nn.Module):
    """Filters each projection along the detector axis by FFT with zero padding.

    Parameters
    ----------
    response : array, shape ``(length // 2 + 1,)``
        Real frequency response on the ``rfft`` grid of the padded length (a parameter, frozen
        by default).
    length : int
        Padded length (>= 2 detectors to avoid wrap-around).
    spacing : float
        Effective detector pitch (mm, or rad for a curved detector); the output is divided by it.
    """

    def __init__(self, response, length: int, spacing: float, trainable: bool = False):
        super().__init__()
        response = torch.as_tensor(np.asarray(response), dtype=torch.float32)
        if response.shape != (length // 2 + 1,):
            raise ValueError(f"response must have shape ({length // 2 + 1},) for length {length},"
                             f" got {tuple(response.shape)}")
        self.length = int(length)
        self.spacing = float(spacing)
        if not (self.spacing > 0 and math.isfinite(self.spacing)):
            raise ValueError(f"spacing must be a positive detector pitch, got {spacing!r}")
        self.response = nn.Parameter(response.clone(), requires_grad=trainable)

    def forward(self, sinogram: torch.Tensor) -> torch.Tensor:
        n = sinogram.shape[-1]
        if n * 2 > self.length + 1:
            raise ValueError(f"sinogram has {n} detectors; the filter length {self.length} "
                             "is too short for zero padding")
        if sinogram.numel() == 0:  # an empty batch (the FFT libraries refuse it)
            return sinogram / self.spacing
        spectrum = torch.fft.rfft(sinogram, n=self.length, dim=-1)
        filtered = torch.fft.irfft(spectrum * self.response.to(sinogram.dtype), n=self.length,
                                   dim=-1)
        return filtered[..., :n] / self.spacing

    def spatial_kernel(self) -> torch.Tensor:
        """The filter's impulse response (FFT order), ``(length,)``; ``irfft`` of the response."""
        return torch.fft.irfft(self.response.detach(), n=self.length)


def _pixel_backprojection_coefficients(grid: ImageGrid, geometry, pixels: torch.Tensor,
                                       view_weights: np.ndarray):
    """Detector index and weight of every (pixel, view) pair.

    Returns ``(j0, frac, weight)`` each ``(len(pixels), views)`` float64 / int64: the sample
    ``frac`` of the way between detectors ``j0`` and ``j0 + 1`` with back-projection weight.
    """
    h, w = grid.shape
    x = torch.from_numpy(grid.x_coordinates())[pixels % w][:, None]
    y = torch.from_numpy(grid.y_coordinates())[pixels // w][:, None]
    beta = torch.from_numpy(geometry.angle_array())[None, :]
    c, s = torch.cos(beta), torch.sin(beta)
    p = x * c + y * s
    if isinstance(geometry, ParallelGeometry):
        u = p
        weight = torch.ones_like(u)
    else:
        r, d = geometry.source_to_isocenter, geometry.source_to_detector
        big_u = r + x * s - y * c
        if geometry.detector == "flat":
            u = d * p / big_u
            weight = (r / big_u) ** 2
        else:
            u = d * torch.atan2(p, big_u)
            weight = 1.0 / (p * p + big_u * big_u)
    weight = weight * torch.from_numpy(view_weights)[None, :]
    n = geometry.detector_count
    j = (u - geometry.detector_offset) / geometry.detector_spacing + 0.5 * (n - 1)
    j0f = torch.floor(j)
    return j0f.to(torch.int64), j - j0f, weight


class PixelBackprojection(RegisteredOperator):
    """Pixel-driven back-projection with linear interpolation and the FBP distance weight.

    ``B q (x) = sum_i dbeta_i W_i(x) q_i(u_i(x))``: ``u_i(x)`` the detector coordinate of the ray
    through pixel ``x`` in view ``i``, ``W = 1`` (parallel), ``R^2 / U^2`` (flat fan),
    ``1 / L^2`` (curved fan); ``dbeta_i`` the angular quadrature weight of the view.

    Shapes: ``(*batch, views, detectors) -> (*batch, H, W)``. A fixed layer whose gradient is its
    exact adjoint (a pixel-driven projection); cached as a sparse matrix when it fits the budget.
    """

    grid = FixedAtConstruction()
    geometry = FixedAtConstruction()

    def __init__(self, grid: ImageGrid, geometry, check_inputs: bool = True):
        super().__init__()
        self.grid = grid
        self.geometry = geometry
        self.check_inputs = check_inputs
        self.register_buffer("view_weights",
                             torch.from_numpy(geometry.angular_weights()), persistent=False)
        self._cache: Dict[Tuple[str, torch.dtype], Tuple[torch.Tensor, torch.Tensor]] = \
            MatrixCache()
        n_entries = 2 * geometry.views * grid.shape[0] * grid.shape[1]
        self.use_sparse = 2 * n_entries * 8 <= SPARSE_MEMORY_BUDGET

    def _apply(self, fn, *args, **kwargs):
        self._cache.clear()
        return super()._apply(fn, *args, **kwargs)

    @property
    def domain_shape(self):
        return self.geometry.sinogram_shape

    @property
    def range_shape(self):
        return self.grid.shape

    def _entries(self, pixels: torch.Tensor):
        j0, frac, weight = _pixel_backprojection_coefficients(
            self.grid, self.geometry, pixels, self.geometry.angular_weights())
        n = self.geometry.detector_count
        views = torch.arange(self.geometry.views, device=pixels.device)[None, :]
        cols = torch.stack([views * n + j0, views * n + j0 + 1], dim=-1)  # (P, V, 2)
        vals = torch.stack([(1 - frac) * weight, frac * weight], dim=-1)
        ok = torch.stack([(j0 >= 0) & (j0 < n), (j0 + 1 >= 0) & (j0 + 1 < n)], dim=-1)
        vals = torch.where(ok, vals, torch.zeros((), dtype=vals.dtype, device=vals.device))
        cols = torch.where(ok, cols, torch.zeros((), dtype=cols.dtype, device=cols.device))
        return cols.reshape(pixels.numel(), -1), vals.reshape(pixels.numel(), -1)

    def _matrices(self, dtype, device):
        key = (str(device), dtype)
        if key not in self._cache:
            self._cache[key] = build_outside_graph_pools(
                lambda: self._build_matrices(dtype, device), device)
        return self._cache[key]

    def _build_matrices(self, dtype, device):
        n_pix = self.grid.shape[0] * self.grid.shape[1]
        n_rays = self.geometry.views * self.geometry.detector_count
        step = max(1, (1 << 23) // (2 * self.geometry.views))
        counts, cols, vals = [], [], []
        for start in range(0, n_pix, step):
            c, v = self._entries(torch.arange(start, min(n_pix, start + step), device="cpu"))
            keep = v != 0
            counts.append(keep.sum(1))
            cols.append(c[keep])
            vals.append(v[keep])
        return csr_pair(torch.cat(counts), torch.cat(cols), torch.cat(vals).to(dtype),
                        (n_pix, n_rays), device)

    def _entry_chunks(self, batch: int, device, dtype):
        """Matrix-free path: ``(first_pixel, cols, vals)`` for pixel chunks, on ``device``."""
        n_pix = self.grid.shape[0] * self.grid.shape[1]
        step = max(1, (1 << 22) // (2 * self.geometry.views * max(1, batch)))
        for start in range(0, n_pix, step):
            c, v = self._entries(torch.arange(start, min(n_pix, start + step), device="cpu"))
            yield start, c.to(device), v.to(device=device, dtype=dtype)

    def _raw_forward(self, q: torch.Tensor) -> torch.Tensor:
        batch = q.shape[:-2]
        qb = q.reshape(-1, *self.domain_shape)
        b = qb.shape[0]
        if self.use_sparse:
            m, _ = self._matrices(q.dtype, q.device)
            out = torch.sparse.mm(m, qb.reshape(b, -1).t()).t()
        else:
            out = torch.empty(b, self.grid.shape[0] * self.grid.shape[1], dtype=q.dtype,
                              device=q.device)
            qf = qb.reshape(b, -1)
            for start, c, v in self._entry_chunks(b, q.device, q.dtype):
                out[:, start:start + c.shape[0]] = (qf[:, c.reshape(-1)].reshape(b, *c.shape)
                                                    * v).sum(-1)
        return out.reshape(*batch, *self.range_shape)

    def _raw_adjoint(self, img: torch.Tensor) -> torch.Tensor:
        batch = img.shape[:-2]
        ib = img.reshape(-1, *self.range_shape)
        b = ib.shape[0]
        n_rays = self.geometry.views * self.geometry.detector_count
        if self.use_sparse:
            _, mt = self._matrices(img.dtype, img.device)
            out = torch.sparse.mm(mt, ib.reshape(b, -1).t()).t()
        else:
            out = torch.zeros(b, n_rays, dtype=img.dtype, device=img.device)
            flat = ib.reshape(b, -1)
            for start, c, v in self._entry_chunks(b, img.device, img.dtype):
                contrib = flat[:, start:start + c.shape[0], None] * v
                out.index_add_(1, c.reshape(-1), contrib.reshape(b, -1))
        return out.reshape(*batch, *self.domain_shape)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        if self.check_inputs:
            check_tensor("sinogram", q, self.domain_shape, "views, detectors")
        return apply_forward(q, self)

    def adjoint(self, img: torch.Tensor) -> torch.Tensor:
        if self.check_inputs:
            check_tensor("image", img, self.range_shape, "H, W")
        return apply_adjoint(img, self)


class FBP(nn.Module):
    """Filtered back-projection as three layers: ``weighting -> filter -> backprojection``.

    Parameters
    ----------
    grid : ImageGrid
    geometry : ParallelGeometry or FanGeometry
    filter : str
        ``"ram-lak"`` (Kak & Slaney spatial discretisation), ``"shepp-logan"``, ``"cosine"``,
        ``"hamming"`` or ``"hann"``.
    cutoff : float
        Fraction of the Nyquist frequency kept (0, 1].
    short_scan : str
        Redundancy weighting: ``"auto"``, ``"parker"`` or ``"none"`` (see
        :func:`redundancy_weights`).
    padding : int, optional
        Filter length; default :func:`padded_length` (next power of two >= 2 detectors).

    Shapes: ``(*batch, views, detectors)`` line integrals -> ``(*batch, H, W)`` in the units of
    the image (1/mm). ``fbp.weighting.weights``, ``fbp.filter.response`` are frozen parameters;
    ``fbp.set_trainable(weights=True, filter=True)`` makes them trainable. For a half-fan scan
    (:func:`is_half_fan_scan`) the filter and ``fbp.backprojection`` work on the detector
    extended by ``fbp.detector_padding``.
    """

    grid = FixedAtConstruction()
    geometry = FixedAtConstruction()

    def __init__(self, grid: ImageGrid, geometry, filter: str = "ram-lak", cutoff: float = 1.0,
                 short_scan: str = "auto", padding: Optional[int] = None,
                 check_inputs: bool = True):
        super().__init__()
        _validate_pair(grid, geometry)
        if filter not in FILTERS:
            raise ValueError(f"filter must be one of {FILTERS}, got {filter!r}")
        self.grid = grid
        self.geometry = geometry
        self.filter_name = filter
        self.check_inputs = check_inputs
        # A half-fan scan is filtered and back-projected on the detector extended to a
        # symmetric one (zero cells on the short side).
        self.detector_padding = DetectorPadding(
            symmetric_detector_padding(geometry) if _half_fan_weighting(geometry, short_scan)
            else (0, 0))
        filtered_geometry = _padded_geometry(geometry, self.detector_padding.cells)
        n_filtered = filtered_geometry.detector_count
        length = (padded_length(n_filtered) if padding is None
                  else integer("padding", padding))
        if length < 2 * n_filtered - 1:
            raise ValueError(f"padding must be at least 2 * detector_count - 1 = "
                             f"{2 * n_filtered - 1}, got {length}"
                             + (f" (the half-fan scan is filtered on {n_filtered} cells)"
                                if n_filtered != geometry.detector_count else ""))
        curved = isinstance(geometry, FanGeometry) and geometry.detector == "curved"
        if isinstance(geometry, ParallelGeometry):
            spacing = geometry.detector_spacing
        elif curved:
            spacing = geometry.detector_spacing / geometry.source_to_detector  # radians
        else:
            spacing = geometry.detector_spacing / geometry.magnification  # at the isocentre
        weights = cosine_weights(geometry) * redundancy_weights(geometry, short_scan)
        self.weighting = SinogramWeighting(torch.from_numpy(weights))
        self.filter = RampFilter(filter_response(filter, length, cutoff, curved, spacing,
                                                 support=n_filtered),
                                 length, spacing)
        # Checks its input when called on its own; FBP.forward checks once and applies it raw.
        self.backprojection = PixelBackprojection(grid, filtered_geometry)
        register_signature(self, grid, geometry)

    def set_trainable(self, weights: bool = False, filter: bool = False) -> "FBP":
        """Unfreeze (or freeze) the sinogram weights and the filter response. Returns self."""
        self.weighting.weights.requires_grad_(weights)
        self.filter.response.requires_grad_(filter)
        return self

    def forward(self, sinogram: torch.Tensor) -> torch.Tensor:
        if self.check_inputs:
            check_tensor("sinogram", sinogram, self.geometry.sinogram_shape, "views, detectors",
                         self.weighting.weights.device, allow_half=True)
        # Half precision is computed in float32 (FFTs have no bfloat16) and returned as given.
        half = sinogram.dtype in _HALF_DTYPES
        x = sinogram.float() if half else sinogram
        filtered = self.filter(self.detector_padding(self.weighting(x)))
        out = apply_forward(filtered, self.backprojection)
        return out.to(sinogram.dtype) if half else out

    def extra_repr(self) -> str:
        return f"filter={self.filter_name!r}, grid={self.grid!r}"
