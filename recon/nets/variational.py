"""Variational network: unrolled gradient steps on a learned Fields-of-Experts energy.

References
----------
K. Hammernik, T. Klatzer, E. Kobler, M. P. Recht, D. K. Sodickson, T. Pock, F. Knoll, "Learning a
variational network for reconstruction of accelerated MRI data", Magn. Reson. Med. 79(6), 2018.
K. Hammernik, T. Würfl, T. Pock, A. Maier, "A deep learning architecture for limited-angle
computed tomography reconstruction", Bildverarbeitung für die Medizin 2017 (the CT version).

Stage ``t = 0 .. T-1`` (all in normalised units, see :mod:`recon.nets.common`)::

    x <- x - lambda_t A^T (A x - y) - sum_i K_ti^T phi_ti(K_ti x)

with ``A`` the X-ray transform divided by its norm, ``K_ti`` learned 2D convolution filters (zero
padding; ``K^T`` is the transposed convolution with the same weights, the exact adjoint),
``phi_ti`` learned activations, each a weighted sum of Gaussian radial basis functions on a fixed
grid of ``rbf_count`` (31) centres in ``[-rbf_range, rbf_range]``, and ``lambda_t`` a learned
step (kept positive). ``x`` starts at the FBP image.

Defaults and what differs from the papers (stated): T = 10 stages and 31 RBF weights as in the
MRM paper; 24 real filters of 7x7 (the MRM paper uses 48 filters of 11x11 on complex images;
``kernel_size=11`` is available); filters zero-mean by reparametrisation (``K - mean(K)``; the
paper projects onto zero mean and a norm ball, we leave the norm free); activations initialised
to linear maps ``phi_ti(z) = s_t z`` (a quadratic smoothness prior) with the slope ``s_t``
chosen so that the linearised regulariser ``s_t sum_i K_ti^T K_ti`` has norm
``regularizer_init`` (0.5), ``lambda_t`` to 1 (one Landweber step of the normalised operator).
Every untrained stage is then a stable gradient step that smooths. The former fixed slope of
0.1 gave 24 unit-norm 7x7 filters a norm near 4 (``0.1 * filter_bank_norm``, above 2 for every
stage in ``tests/recon/test_nets.py``): each untrained stage amplified the finest detail
instead of damping it.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from operators._checks import integer, random_seed, real

from .common import OperatorModel, resolve_init

__all__ = ["RBFActivation", "VariationalNetwork", "rbf_activation", "rbf_activation_table",
           "rbf_tables"]


class _RBF(torch.autograd.Function):
    """``phi_c(z) = sum_j w_cj exp(-(z - mu_j)^2 / (2 sigma^2))`` per channel ``c``.

    Memory-lean: only ``z`` is saved; the ``J`` basis functions are evaluated one at a time in
    forward and again in backward (the naive broadcast would store ``J`` times ``z``).
    """

    @staticmethod
    def forward(ctx, z, weights, centers, sigma):
        ctx.save_for_backward(z, weights, centers)
        ctx.sigma = sigma
        out = torch.zeros_like(z)
        inv = -0.5 / sigma ** 2
        shape = (1, -1) + (1,) * (z.dim() - 2)
        for j in range(centers.numel()):
            out.add_(torch.exp((z - centers[j]).square_().mul_(inv)) * weights[:, j].view(shape))
        return out

    @staticmethod
    def backward(ctx, grad):
        z, weights, centers = ctx.saved_tensors
        sigma = ctx.sigma
        inv = -0.5 / sigma ** 2
        shape = (1, -1) + (1,) * (z.dim() - 2)
        reduce_dims = [0] + list(range(2, z.dim()))
        gz = torch.zeros_like(z) if ctx.needs_input_grad[0] else None
        gw = torch.zeros_like(weights) if ctx.needs_input_grad[1] else None
        for j in range(centers.numel()):
            d = z - centers[j]
            g = torch.exp(d.square().mul_(inv))
            if gw is not None:
                gw[:, j] = (grad * g).sum(dim=reduce_dims)
            if gz is not None:
                gz.add_(g.mul_(d).mul_(grad) * (weights[:, j].view(shape) * (-1.0 / sigma ** 2)))
        return gz, gw, None, None


def _check_rbf_args(z, weights):
    if z.dim() < 2 or weights.dim() != 2 or weights.shape[0] != z.shape[1]:
        raise ValueError(f"weights must be (C, J) with C = z.shape[1]; got z {tuple(z.shape)}, "
                         f"weights {tuple(weights.shape)}")


def rbf_activation(z: torch.Tensor, weights: torch.Tensor, centers: torch.Tensor,
                   sigma: float) -> torch.Tensor:
    """Gaussian-RBF activation applied per channel, evaluated exactly (reference path).

    Parameters
    ----------
    z : tensor ``(B, C, ...)``
    weights : tensor ``(C, J)``
    centers : tensor ``(J,)``
    sigma : float
        Width of every basis function.

    Returns
    -------
    tensor ``(B, C, ...)``: ``sum_j weights[c, j] exp(-(z - centers[j])^2 / (2 sigma^2))``.
    Costs ``J`` exponentials per element; :func:`rbf_activation_table` is the fast path.
    """
    _check_rbf_args(z, weights)
    return _RBF.apply(z, weights.to(z.dtype), centers.to(z), float(sigma))


class _TableRBF(torch.autograd.Function):
    """Table look-up of ``phi`` and ``phi'`` with linear interpolation (one gather per element).

    ``phi_c = T_c`` on the fine grid ``t_g = t0 + g * delta``, ``T = weights @ basis.T`` and
    ``D = weights @ dbasis.T`` (the exact derivative); outside the grid ``phi = 0``-tails are
    clamped to the end values (the basis has decayed to ``exp(-tail^2 / 2)`` there).
    """

    @staticmethod
    def forward(ctx, z, weights, basis, dbasis, t0, delta):
        c, m = weights.shape[0], basis.shape[0]
        table = weights @ basis.T                                   # (C, M)
        u = ((z - t0) / delta).clamp_(0.0, m - 1.0)
        idx = u.floor().clamp_(max=m - 2)
        frac = u - idx
        shape = (1, -1) + (1,) * (z.dim() - 2)
        offs = (torch.arange(c, device=z.device) * m).view(shape)
        flat = (idx.long() + offs)
        t = table.reshape(-1)
        lo, hi = t[flat], t[flat + 1]
        ctx.save_for_backward(flat, frac, weights, basis, dbasis)
        ctx.inside = ((z - t0) / delta >= 0) & ((z - t0) / delta <= m - 1)
        return lo + frac * (hi - lo)

    @staticmethod
    def backward(ctx, grad):
        flat, frac, weights, basis, dbasis = ctx.saved_tensors
        c, m = weights.shape[0], basis.shape[0]
        gz = gw = None
        if ctx.needs_input_grad[0]:
            d = (weights @ dbasis.T).reshape(-1)                   # phi' on the grid
            gz = grad * (d[flat] + frac * (d[flat + 1] - d[flat])) * ctx.inside
        if ctx.needs_input_grad[1]:
            gt = torch.zeros(c * m, dtype=grad.dtype, device=grad.device)
            f = flat.reshape(-1)
            gt.index_add_(0, f, (grad * (1 - frac)).reshape(-1))
            gt.index_add_(0, f + 1, (grad * frac).reshape(-1))
            gw = gt.view(c, m) @ basis
        return gz, gw, None, None, None, None


def rbf_tables(centers: torch.Tensor, sigma: float, oversample: int = 64, tail: float = 6.0):
    """Fine grid of the Gaussian basis and its derivative for :func:`rbf_activation_table`.

    Returns ``(basis, dbasis, t0, delta)``: ``basis[g, j] = exp(-(t_g - mu_j)^2 / (2 sigma^2))``,
    ``dbasis`` its derivative in ``t``, on ``t_g = t0 + g delta`` covering
    ``[mu_0 - tail sigma, mu_last + tail sigma]`` with ``delta = sigma / oversample`` (float64).
    """
    c = centers.detach().to(torch.float64).cpu()
    delta = sigma / oversample
    t0 = float(c[0]) - tail * sigma
    m = int(math.ceil((float(c[-1]) + tail * sigma - t0) / delta)) + 1
    t = t0 + delta * torch.arange(m, dtype=torch.float64)
    diff = t[:, None] - c[None, :]
    basis = torch.exp(-diff ** 2 / (2 * sigma ** 2))
    return basis, -diff / sigma ** 2 * basis, t0, delta


def rbf_activation_table(z: torch.Tensor, weights: torch.Tensor, basis: torch.Tensor,
                         dbasis: torch.Tensor, t0: float, delta: float) -> torch.Tensor:
    """Fast Gaussian-RBF activation: linear interpolation in a fine table of ``phi``.

    Same parametrisation as :func:`rbf_activation` (``weights`` ``(C, J)``); the tables come from
    :func:`rbf_tables`. With ``delta = sigma / 64`` the interpolation error is below ``1e-4``
    times ``max |weights|``; the gradient in ``z`` interpolates the exact ``phi'``, the gradient
    in ``weights`` is exact for the interpolated function. Cost: one gather per element instead
    of ``J`` exponentials.
    """
    _check_rbf_args(z, weights)
    return _TableRBF.apply(z, weights.to(z.dtype), basis.to(z), dbasis.to(z), float(t0),
                           float(delta))


class RBFActivation(nn.Module):
    """Learned per-channel activations from ``count`` Gaussian RBFs on ``[-range, range]``.

    Parameters
    ----------
    channels : int
        Number of independent activations ``phi_c``.
    count : int
        Number of basis functions (Hammernik et al.: 31).
    value_range : float
        Centres are ``linspace(-value_range, value_range, count)``; the width ``sigma`` is the
        centre spacing. Outside the range ``phi`` decays to zero (bounded influence).
    init_slope : float
        ``phi`` starts as the least-squares fit of ``init_slope * z`` on the range.
    """

    def __init__(self, channels: int, count: int = 31, value_range: float = 1.0,
                 init_slope: float = 0.1):
        super().__init__()
        integer("count", count, minimum=2)
        integer("channels", channels)
        value_range = real("value_range", value_range, positive=True)
        centers = torch.linspace(-value_range, value_range, count, dtype=torch.float64)
        self.sigma = 2.0 * value_range / (count - 1)
        self.register_buffer("centers", centers.float())
        # Least-squares fit of the linear map init_slope * z on a fine grid of the range.
        t = torch.linspace(-value_range, value_range, 20 * count, dtype=torch.float64)
        basis = torch.exp(-(t[:, None] - centers[None, :]) ** 2 / (2 * self.sigma ** 2))
        w = torch.linalg.lstsq(basis, init_slope * t[:, None]).solution[:, 0]
        self.weights = nn.Parameter(w.float().repeat(channels, 1))
        basis, dbasis, self._t0, self._delta = rbf_tables(centers, self.sigma)
        self.register_buffer("basis", basis.float(), persistent=False)
        self.register_buffer("dbasis", dbasis.float(), persistent=False)
        self.exact = False

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, channels, ...) -> (B, channels, ...)``; set ``exact = True`` for the reference."""
        if self.exact:
            return rbf_activation(z, self.weights, self.centers, self.sigma)
        return rbf_activation_table(z, self.weights, self.basis, self.dbasis, self._t0,
                                    self._delta)


class VariationalNetwork(OperatorModel):
    """Hammernik's variational network for CT (see the module docstring for the update).

    Parameters
    ----------
    operator : XRayTransform
        The fixed operator ``A``; used as ``A / ||A||`` (norm by the power method, stored).
    init : nn.Module, optional
        Maps sinograms to the start image (units of the image), e.g. :class:`operators.FBP`;
        kept fixed. Default: ``operators.FBP(operator.grid, operator.geometry)`` (Ram-Lak).
        ``None`` is not allowed; pass ``init="zeros"`` to start from zero.
    stages : int
        Number of unrolled steps ``T`` (paper: 10).
    filters : int
        Filters per stage (24).
    kernel_size : int
        Odd filter size (7; the MRM paper uses 11).
    rbf_count : int
        RBF weights per activation (31).
    rbf_range : float
        Centre range of the RBFs, in normalised filter-response units (1.0).
    zero_mean : bool
        Reparametrise each filter as ``K - mean(K)``.
    image_scale : float
        Typical image magnitude (see :class:`OperatorModel`).
    step_init : float
        Initial data-term step ``lambda_t`` (1.0).
    regularizer_init : float
        Norm of each stage's linearised regulariser ``phi_t'(0) sum_i K_ti^T K_ti`` at
        initialisation, in ``(0, 1)`` (0.5): the activations start as linear maps of slope
        ``regularizer_init / max_omega sum_i |K_ti(omega)|^2`` (:meth:`filter_bank_norm`), so
        that with the data term's largest step (1) the untrained stage stays a descent step.
    seed : int, optional
        Seed of the random initial filters (0).

    Shapes
    ------
    ``(*batch, views, detectors) -> (*batch, H, W)``; images in the units of ``A``'s domain.
    """

    def __init__(self, operator, init="fbp", stages: int = 10, filters: int = 24,
                 kernel_size: int = 7, rbf_count: int = 31, rbf_range: float = 1.0,
                 zero_mean: bool = True, image_scale: float = 1.0, step_init: float = 1.0,
                 regularizer_init: float = 0.5, seed: Optional[int] = None):
        super().__init__(operator, image_scale=image_scale, normalize_operator=True)
        for name, v in (("stages", stages), ("filters", filters), ("kernel_size", kernel_size)):
            integer(name, v)
        integer("rbf_count", rbf_count, minimum=2)
        rbf_range = real("rbf_range", rbf_range, positive=True)
        step_init = real("step_init", step_init, positive=True)
        random_seed("seed", seed)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        regularizer_init = real("regularizer_init", regularizer_init)
        if not 0 < regularizer_init < 1:
            raise ValueError(f"regularizer_init must be in (0, 1), got {regularizer_init!r}")
        self.init = resolve_init(init, operator)
        self.stages, self.filters, self.kernel_size = stages, filters, kernel_size
        self.zero_mean = bool(zero_mean)
        gen = torch.Generator().manual_seed(0 if seed is None else int(seed))
        # Random filters of unit l2 norm after mean removal (responses of O(image contrast)).
        k = torch.randn(stages, filters, 1, kernel_size, kernel_size, generator=gen)
        if zero_mean:
            k = k - k.mean(dim=(-2, -1), keepdim=True)
        k = k / k.flatten(2).norm(dim=-1)[..., None, None, None]
        self.kernels = nn.Parameter(k)
        with torch.no_grad():
            bank_norms = [float(self.filter_bank_norm(t)) for t in range(stages)]
        self.activations = nn.ModuleList(
            [RBFActivation(filters, rbf_count, rbf_range,
                           init_slope=regularizer_init / bank_norms[t]) for t in range(stages)])
        # lambda_t = softplus(raw): positive steps.
        raw = step_init + math.log(-math.expm1(-step_init))  # softplus^-1, stable for large
        self.step_raw = nn.Parameter(torch.full((stages,), raw))

    def kernel(self, t: int) -> torch.Tensor:
        """Filters of stage ``t``: ``(filters, 1, k, k)`` (zero-mean if ``zero_mean``)."""
        k = self.kernels[t]
        return k - k.mean(dim=(-2, -1), keepdim=True) if self.zero_mean else k

    def filter_bank_norm(self, t: int, grid: int = 64) -> torch.Tensor:
        """``max_omega sum_i |K_ti(omega)|^2``: the norm of ``sum_i K_ti^T K_ti`` (an upper
        bound with zero padding), evaluated on a ``grid x grid`` frequency grid."""
        spectrum = torch.fft.fft2(self.kernel(t)[:, 0].double(), s=(grid, grid))
        return spectrum.abs().square().sum(0).max()

    def steps(self) -> torch.Tensor:
        """The data-term steps ``lambda_t``, shape ``(stages,)``."""
        return F.softplus(self.step_raw)

    def regularizer_gradient(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """``sum_i K_ti^T phi_ti(K_ti x)`` for ``x`` of shape ``(B, 1, H, W)``."""
        k = self.kernel(t).to(x.dtype)
        pad = self.kernel_size // 2
        z = F.conv2d(x, k, padding=pad)
        return F.conv_transpose2d(self.activations[t](z), k, padding=pad)

    def initial(self, y: torch.Tensor) -> torch.Tensor:
        """Start image in normalised units, ``(*batch, H, W)``."""
        if self.init is None:
            return y.new_zeros(*y.shape[:-2], *self.operator.domain_shape)
        return self.init(y) / self.image_scale.to(y)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        yn = self.sinogram_in(y)
        a = self.normalized_operator
        batch = y.shape[:-2]
        x = self.initial(y).reshape(-1, 1, *self.operator.domain_shape)
        yn = yn.reshape(-1, 1, *self.operator.range_shape)
        lam = self.steps().to(x.dtype)
        for t in range(self.stages):
            x = x - lam[t] * a.adjoint(a(x) - yn) - self.regularizer_gradient(x, t)
        return self.image_out(x.reshape(*batch, *self.operator.domain_shape))
