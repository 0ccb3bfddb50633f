"""Parallel-to-fan beam conversion derived by precision learning (Syben et al., GCPR 2018).

Syben, Stimpel, Lommen, Würfl, Dörfler, Maier, "Deriving neural network architectures using
precision learning: parallel-to-fan beam conversion", GCPR 2018. The analytic conversion of a
parallel sinogram ``p_par`` into a fan sinogram is::

    p_fan = A_fan (A_par^T A_par)^-1 A_par^T p_par

(reconstruct by least squares, re-project in the fan geometry). The inverse of the normal
operator is postulated to be circulant, i.e. a convolution, which moved in front of the
back-projection becomes a 1-D filter along the parallel detector. The network is therefore::

    p_fan = A_fan  A_par^T  diag(w)  F^-1 diag(k) F  p_par

with ``F`` the (zero-padded) DFT along the detector, ``k`` the **only trainable parameters**
(a real frequency response, shared by all views), ``w`` fixed per-view quadrature weights and
``A_par``, ``A_fan`` fixed :class:`operators.XRayTransform` layers on the same image grid.

Parametrisation
---------------
The filter is parametrised by its **frequency response** ``k`` on the ``rfft`` grid of the
zero-padded detector axis (``padded // 2 + 1`` real numbers), not by a spatial kernel. Reason:
the derivation replaces ``(A^T A)^-1`` by a circulant matrix, which the DFT diagonalises, so
its eigenvalues are exactly ``k`` (the derivation's own parameters); a real response is a
symmetric kernel of full length, so no kernel length must be chosen, the ramp's slow ``1/n^2``
spatial decay is represented without truncation, and the learned filter is compared with the
analytic ramp directly, frequency by frequency. Padding to ``>= 2 N - 1`` samples makes the
circular convolution equal to the linear one on the ``N`` detector samples.

Scaling and initialisation
--------------------------
``A_par^T`` of Joseph's method back-projects a view with weight ``~ pixel_area / du`` per
detector sample, so the fixed weights ``w_vj = dtheta_v r_vj du / (dx dy)`` (``dtheta_v`` the
angular quadrature weight of view ``v``, ``r_vj`` the redundancy weight of its ray ``j``:
``1 / (number of times its line is measured)``, :func:`operators.fbp.redundancy_weights`, so
that every line counts once on any arc from a half turn up, 1.25 pi included) make
``A_par^T diag(w)`` the continuous back-projection ``int_0^pi p(theta, s) dtheta``. With
``filter_init="ram-lak"`` ``k`` starts as the response of the discrete Ram-Lak kernel
(Kak & Slaney eq. 3.61: ``h(0) = 1 / (4 du^2)``, ``h(n odd) = -1 / (n pi du)^2``) times ``du``,
so the initial network is "FBP, then fan re-projection"; ``"ramp"`` starts from the naive
``|f|``; ``"zeros"`` from zero. The image is in 1/mm when ``p_par`` holds line integrals.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from operators._checks import integer
from operators.fbp import (filter_response, naive_ramp_response, padded_length,
                           redundancy_weights)
from operators.geometry import FanGeometry, ParallelGeometry
from operators.projector import XRayTransform, check_tensor

__all__ = ["DetectorFilter", "ParallelToFanNet", "ram_lak_response", "ramp_response"]

_INITS = ("ram-lak", "ramp", "zeros")


def ram_lak_response(padded: int, spacing: float) -> np.ndarray:
    """Real frequency response ``(padded // 2 + 1,)`` of the discrete Ram-Lak filter, in 1/mm.

    The DFT of the spatial kernel ``h(n)`` (Kak & Slaney eq. 3.61) times the detector
    ``spacing`` (mm), so that the discrete convolution approximates ``int h(s - t) p(t) dt``:
    :func:`operators.fbp.filter_response` divided by ``spacing``. It reaches ``1 / (2 spacing)``
    (the ramp ``|f|`` at the Nyquist frequency) and is small but positive at DC (about
    ``2 / (pi^2 padded spacing)``), which avoids the DC offset of :func:`ramp_response`.
    """
    return filter_response("ram-lak", padded) / spacing


def ramp_response(padded: int, spacing: float) -> np.ndarray:
    """The naively sampled ramp ``|f|`` (cycles/mm) on the ``rfft`` grid, ``(padded // 2 + 1,)``."""
    return naive_ramp_response(padded) / spacing


class DetectorFilter(nn.Module):
    """A 1-D filter along the detector (last axis), parametrised by its real frequency response.

    Parameters
    ----------
    detector_count : int
        ``N``, the length of the last axis of the input.
    response : array-like, shape ``(padded // 2 + 1,)``
        Initial real frequency response on the ``rfft`` grid of the padded axis; ``padded`` is
        ``2 * (len(response) - 1)`` and must be ``>= 2 N - 1`` (no circular wrap-around).

    Shapes
    ------
    ``(*batch, views, N) -> (*batch, views, N)``; the parameter ``response`` is trainable.
    """

    def __init__(self, detector_count: int, response):
        super().__init__()
        response = torch.as_tensor(np.asarray(response, dtype=np.float64))
        if response.dim() != 1 or response.numel() < 2:
            raise ValueError(f"response must be 1-D with at least 2 entries, got shape "
                             f"{tuple(response.shape)}")
        padded = 2 * (response.numel() - 1)
        if padded < 2 * detector_count - 1:
            raise ValueError(f"response has {response.numel()} entries, i.e. a padded length "
                             f"{padded} < 2 * detector_count - 1 = {2 * detector_count - 1}")
        self.detector_count = int(detector_count)
        self.padded = padded
        self.response = nn.Parameter(response.clone())

    def extra_repr(self) -> str:
        return f"detector_count={self.detector_count}, padded={self.padded}"

    def kernel(self) -> torch.Tensor:
        """The spatial kernel, shape ``(padded,)``, circular (index ``-n`` at ``padded - n``)."""
        return torch.fft.irfft(self.response, n=self.padded)

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        if p.shape[-1] != self.detector_count:
            raise ValueError(f"the last axis of the input must have {self.detector_count} "
                             f"detectors, got shape {tuple(p.shape)}")
        spectrum = torch.fft.rfft(p, n=self.padded, dim=-1)
        filtered = torch.fft.irfft(spectrum * self.response.to(p.dtype), n=self.padded, dim=-1)
        return filtered[..., : self.detector_count]


def _drop_view_weights(state_dict, prefix, *args, **kwargs) -> None:
    """Checkpoints written before the ray weights carry the former per-view weights
    ``view_weights``: computed from the geometry, not learned, so they are not loaded."""
    state_dict.pop(prefix + "view_weights", None)


class ParallelToFanNet(nn.Module):
    """The derived network ``p_fan = A_fan A_par^T diag(w) filter(p_par)`` (Syben et al. 2018).

    Parameters
    ----------
    parallel_operator : operators.XRayTransform
        ``A_par`` with a :class:`~operators.ParallelGeometry` (the input geometry).
    fan_operator : operators.XRayTransform
        ``A_fan`` with a :class:`~operators.FanGeometry` (the output geometry, flat or curved),
        on the **same** :class:`~operators.ImageGrid` as ``parallel_operator``.
    filter_init : ``"ram-lak"``, ``"ramp"`` or ``"zeros"``
        Initial frequency response (module docstring).
    padded : int, optional
        Padded detector length of the filter (default :func:`operators.fbp.padded_length`:
        the next power of two ``>= 2 N``, at least 64).

    Shapes
    ------
    ``forward(p_par)``: ``(*batch, parallel views, parallel detectors)`` (line integrals) ->
    ``(*batch, fan views, fan detectors)``. ``backproject(p_par)`` returns the intermediate
    image ``(*batch, H, W)`` (an FBP in 1/mm when the filter is the Ram-Lak filter).

    Only ``filter.response`` is trainable; the operators are fixed layers (they hold buffers,
    no parameters), the ray weights ``(views, detectors)`` are a buffer computed from the
    geometry (not saved: checkpoints hold the filter).

    Raises ``TypeError`` for a sinogram that is not a floating-point tensor (an integer one was
    filtered with weights cast to integers, i.e. zeros) and ``ValueError`` for another shape;
    float16 / bfloat16 sinograms are filtered in float32 and returned in their dtype.
    """

    def __init__(self, parallel_operator: XRayTransform, fan_operator: XRayTransform,
                 filter_init: str = "ram-lak", padded: Optional[int] = None):
        super().__init__()
        for name, opr, kind in (("parallel_operator", parallel_operator, ParallelGeometry),
                                ("fan_operator", fan_operator, FanGeometry)):
            if not isinstance(opr, XRayTransform):
                raise TypeError(f"{name} must be an operators.XRayTransform, got "
                                f"{type(opr).__name__}")
            if not isinstance(opr.geometry, kind):
                raise TypeError(f"{name} must have a {kind.__name__}, got "
                                f"{type(opr.geometry).__name__}")
        if parallel_operator.grid != fan_operator.grid:
            raise ValueError(
                "parallel_operator and fan_operator must share the same ImageGrid (the image is "
                f"the intermediate of the network): got {parallel_operator.grid!r} and "
                f"{fan_operator.grid!r}")
        if filter_init not in _INITS:
            raise ValueError(f"filter_init must be one of {_INITS}, got {filter_init!r}")
        geometry = parallel_operator.geometry
        n = geometry.detector_count
        padded = padded_length(n) if padded is None else integer("padded", padded)
        if padded % 2 or padded < 2 * n - 1:
            raise ValueError(f"padded must be even and >= 2 * detectors - 1 = {2 * n - 1}, "
                             f"got {padded}")
        du = geometry.detector_spacing
        if filter_init == "ram-lak":
            response = ram_lak_response(padded, du)
        elif filter_init == "ramp":
            response = ramp_response(padded, du)
        else:
            response = np.zeros(padded // 2 + 1)
        self.parallel_operator = parallel_operator
        self.fan_operator = fan_operator
        self.filter = DetectorFilter(n, response)
        for p in list(parallel_operator.parameters()) + list(fan_operator.parameters()):
            p.requires_grad_(False)  # XRayTransform has none today; keep it fixed regardless
        dtheta = geometry.angular_weights()[:, None]
        dy, dx = parallel_operator.grid.spacing
        weights = dtheta * redundancy_weights(geometry) * du / (dx * dy)
        self.register_buffer("ray_weights", torch.from_numpy(weights), persistent=False)
        self._register_load_state_dict_pre_hook(_drop_view_weights)

    @classmethod
    def from_geometries(cls, grid, parallel_geometry: ParallelGeometry,
                        fan_geometry: FanGeometry, **kwargs) -> "ParallelToFanNet":
        """Build both operators on ``grid`` (keyword arguments go to the constructor)."""
        return cls(XRayTransform(grid, parallel_geometry), XRayTransform(grid, fan_geometry),
                   **kwargs)

    @property
    def grid(self):
        return self.parallel_operator.grid

    def backproject(self, p_par: torch.Tensor) -> torch.Tensor:
        """``A_par^T diag(w) filter(p_par)``: ``(*batch, views, detectors) -> (*batch, H, W)``."""
        op = self.parallel_operator
        check_tensor("p_par", p_par, op.range_shape, "views, detectors", op.device,
                     check_finite=op.check_inputs, allow_half=True)
        work = p_par.float() if p_par.dtype in (torch.float16, torch.bfloat16) else p_par
        q = self.filter(work) * self.ray_weights.to(work.dtype)
        return op.T(q).to(p_par.dtype)

    def forward(self, p_par: torch.Tensor) -> torch.Tensor:
        return self.fan_operator(self.backproject(p_par))
