"""Learned reconstruction-filter discretisation (precision learning of the ramp filter only).

Reference
---------
C. Syben, B. Stimpel, K. Breininger, T. Würfl, R. Fahrig, A. Dörfler, A. Maier, "Precision
learning: reconstruction filter kernel discretization", Proc. CT Meeting 2018.
The FBP pipeline is a network whose only free part is the filter, a diagonal matrix in the
Fourier domain; starting from a naively sampled ramp ``|nu|`` (zero at DC) it is trained end to
end from image-domain loss and converges towards the Ram-Lak spatial discretisation (Kak &
Slaney eq. 3.61), which removes the naive ramp's DC offset / cupping.

Identifiability
---------------
The filter acts on ``n`` detector samples zero-padded to ``length >= 2 n - 1`` and is cut back
to ``n`` samples, so only the kernel taps at lags ``|k| <= n - 1`` change the output
(:func:`effective_kernel`); the remaining ``length // 2 + 1 - n`` directions of the response
(kernels supported on lags ``>= n``) receive no gradient and keep their initial value. Compare
filters through their effective kernels, not through raw responses.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from operators.fbp import FILTERS, filter_response, naive_ramp_response
from operators.geometry import FanGeometry

from .trainable_fbp import TrainableFBP

__all__ = ["LearnedFilterFBP", "INITS", "effective_kernel", "kernel_response",
           "relative_distance"]

#: Initial responses of :class:`LearnedFilterFBP`.
INITS = ("naive-ramp",) + FILTERS


def effective_kernel(response, length: int, detectors: int) -> np.ndarray:
    """The kernel taps a response actually applies, lags ``0 .. detectors - 1``.

    Parameters
    ----------
    response : array ``(length // 2 + 1,)``
        Real frequency response on the rfft grid (dimensionless, as in :class:`RampFilter`).
    length : int
        Padded filter length.
    detectors : int
        Number of detector elements ``n`` (only lags ``|k| < n`` reach the output).

    Returns
    -------
    numpy.ndarray, float64 ``(detectors,)``: ``tau^2 h(k tau)`` for ``k = 0 .. n - 1`` (the kernel
    is even, ``h(-k) = h(k)``).
    """
    response = np.asarray(response, dtype=np.float64)
    if response.shape != (length // 2 + 1,):
        raise ValueError(f"response must have shape ({length // 2 + 1},) for length {length}, "
                         f"got {response.shape}")
    if not 1 <= detectors <= length // 2 + 1:
        raise ValueError(f"detectors must be in [1, {length // 2 + 1}], got {detectors!r}")
    return np.fft.irfft(response, n=length)[:detectors]


def kernel_response(taps, nu) -> np.ndarray:
    """Frequency response of the even kernel with ``taps`` at lags ``0 .. n-1`` (truncated there).

    ``H(nu) = h_0 + 2 sum_{k>=1} h_k cos(2 pi nu k)``, ``nu`` in cycles per detector sample.
    ``H(0)`` is the DC gain the convolution applies to the sinogram (zero for the naive ramp's
    periodic kernel, positive for Ram-Lak's truncated one).
    """
    taps = np.asarray(taps, dtype=np.float64)
    nu = np.atleast_1d(np.asarray(nu, dtype=np.float64))
    k = np.arange(1, taps.size)
    return taps[0] + 2.0 * (np.cos(2 * np.pi * nu[:, None] * k[None, :]) * taps[1:]).sum(-1)


def relative_distance(a, b) -> float:
    """``||a - b|| / ||b||`` (float64)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


class LearnedFilterFBP(TrainableFBP):
    """FBP whose only trainable part is the filter's frequency response (Syben et al. 2018).

    Parameters
    ----------
    grid : operators.ImageGrid
    geometry : operators.ParallelGeometry or operators.FanGeometry
    init : str, default "naive-ramp"
        Initial response: ``"naive-ramp"`` (:func:`operators.fbp.naive_ramp_response`, a
        sampled ``|nu|``, zero at DC) or one of :data:`operators.fbp.FILTERS` (their spatially
        discretised responses, e.g. ``"ram-lak"``).
    padding : int, optional
        Filter length (default: next power of two >= 2 detectors).

    Shapes
    ------
    sinogram ``(*batch, views, detectors)`` -> image ``(*batch, H, W)`` (1/mm). The weights
    (cosine x redundancy) and the back-projection are fixed.

    Notes
    -----
    The naive ramp is defined for flat detectors and parallel beam (in cycles per sample); for a
    curved fan detector the analytic kernel has an extra factor ``(n a / sin(n a))^2`` that the
    naive start does not have, so ``init="naive-ramp"`` is refused there.
    """

    def __init__(self, grid, geometry, init: str = "naive-ramp", padding: Optional[int] = None):
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if init == "naive-ramp" and isinstance(geometry, FanGeometry) \
                and geometry.detector == "curved":
            raise ValueError("init='naive-ramp' needs a parallel or flat-detector geometry; "
                             "a curved detector's kernel differs from the sampled |nu|")
        super().__init__(grid, geometry, learn_weights=False, learn_filter=True,
                         filter="ram-lak" if init == "naive-ramp" else init, padding=padding)
        self.init = init
        if init == "naive-ramp":
            start = torch.as_tensor(naive_ramp_response(self.fbp.filter.length),
                                    dtype=self.fbp.filter.response.dtype)
            with torch.no_grad():
                self.fbp.filter.response.copy_(start)
                self.initial_response.copy_(start)

    @property
    def length(self) -> int:
        """Padded filter length."""
        return self.fbp.filter.length

    def effective_kernel(self) -> np.ndarray:
        """Current effective taps, lags ``0 .. detectors - 1`` (see :func:`effective_kernel`)."""
        return effective_kernel(self.learned_response(), self.length,
                                self.geometry.detector_count)

    def reference_response(self, filter: str = "ram-lak") -> np.ndarray:
        """Analytic response of ``filter`` on this model's rfft grid, ``(length // 2 + 1,)``."""
        return filter_response(filter, self.length)

    def extra_repr(self) -> str:
        return f"init={self.init!r}, length={self.length}"
