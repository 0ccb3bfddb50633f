"""Learned primal-dual reconstruction (Adler & Öktem 2018).

Reference
---------
J. Adler, O. Öktem, "Learned primal-dual reconstruction", IEEE Trans. Med. Imaging 37(6),
1322-1332, 2018; code: github.com/adler-j/learned_primal_dual (``ellipses/learned_primal_dual.py``).

Iteration ``i = 0 .. n_iter-1`` (all in normalised units, see :mod:`recon.nets.common`)::

    h <- h + Gamma_i([h, A f^(1), y])          # dual: n_dual + 2 channels in, n_dual out
    f <- f + Lambda_i([f, A^T h^(0)])          # primal: n_primal + 1 channels in, n_primal out

with ``A`` the X-ray transform divided by its norm ``||A||`` (power method, stored as the buffer
``operator_norm``), ``f^(1)`` the second primal channel, ``h^(0)`` the first dual channel, and
``Gamma_i``, ``Lambda_i`` three-layer CNNs (3x3 convolutions, 32 channels, PReLU), separate weights
per iteration. The output is the first primal channel ``f^(0)``.

Paper defaults, used here: 10 iterations, 5 primal and 5 dual memory channels, 32 channels,
PReLU (one slope per channel, initialised to 0 as in the reference code), Xavier-initialised
weights and zero biases, zero initialisation of ``f`` and ``h``. Optional (stated where used):
``init="fbp"`` fills every primal channel with the FBP image instead, and ``update_init="zero"``
zero-initialises the last convolution of every CNN (the untrained network returns its initial
value), which helps short trainings.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from operators._checks import integer, random_seed

from .common import OperatorModel, check_dtype_matches, resolve_init

__all__ = ["LearnedPrimalDual", "ConvBlock"]


class ConvBlock(nn.Module):
    """``conv3x3 -> PReLU -> conv3x3 -> PReLU -> conv3x3``: ``(B, cin, H, W) -> (B, cout, H, W)``.

    Xavier-uniform weights and zero biases (Adler & Öktem's code); ``zero_last`` also zeroes the
    last convolution's weights, so the block's output starts at zero.
    """

    def __init__(self, cin: int, cout: int, width: int = 32, kernel_size: int = 3,
                 zero_last: bool = False):
        super().__init__()
        pad = kernel_size // 2
        self.net = nn.Sequential(
            nn.Conv2d(cin, width, kernel_size, padding=pad), nn.PReLU(width, init=0.0),
            nn.Conv2d(width, width, kernel_size, padding=pad), nn.PReLU(width, init=0.0),
            nn.Conv2d(width, cout, kernel_size, padding=pad))
        for m in self.net:
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_last:  # the block starts as the zero map (residual update = identity)
            nn.init.zeros_(self.net[-1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LearnedPrimalDual(OperatorModel):
    """Adler & Öktem's learned primal-dual network (see the module docstring).

    Parameters
    ----------
    operator : XRayTransform
        The fixed operator ``A``; used as ``A / ||A||``.
    n_iter : int
        Unrolled iterations (paper: 10).
    n_primal, n_dual : int
        Memory channels of the primal and dual variables (paper: 5 and 5).
    width : int
        Channels of the hidden layers of each CNN (paper: 32).
    init : {"zeros", "fbp"} or nn.Module
        Initial primal value: zeros (paper) or an FBP image (every primal channel); the dual
        starts at zero in both cases. A module maps sinograms to images (units of the image).
    image_scale : float
        Typical image magnitude (see :class:`OperatorModel`).
    update_init : {"xavier", "zero"}
        Initialisation of the last convolution of every update CNN: Xavier (paper) or zero (the
        untrained network then returns its initial primal value, e.g. the FBP image; a
        short-training adaptation, stated where used).
    seed : int, optional
        Seed of the weight initialisation (the global RNG is left untouched).

    Shapes
    ------
    ``(*batch, views, detectors) -> (*batch, H, W)``; images in the units of ``A``'s domain.
    """

    def __init__(self, operator, n_iter: int = 10, n_primal: int = 5, n_dual: int = 5,
                 width: int = 32, init="zeros", image_scale: float = 1.0,
                 update_init: str = "xavier", seed: Optional[int] = None):
        super().__init__(operator, image_scale=image_scale, normalize_operator=True)
        for name, v in (("n_iter", n_iter), ("n_primal", n_primal), ("n_dual", n_dual),
                        ("width", width)):
            integer(name, v)
        random_seed("seed", seed)
        if n_primal < 2:
            raise ValueError(f"n_primal must be >= 2 (channel 1 feeds the operator), got "
                             f"{n_primal}")
        if update_init not in ("xavier", "zero"):
            raise ValueError(f"update_init must be 'xavier' or 'zero', got {update_init!r}")
        zero = update_init == "zero"
        self.init = resolve_init(init, operator)
        self.n_iter, self.n_primal, self.n_dual = n_iter, n_primal, n_dual
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(int(seed))
            self.dual_nets = nn.ModuleList(
                [ConvBlock(n_dual + 2, n_dual, width, zero_last=zero) for _ in range(n_iter)])
            self.primal_nets = nn.ModuleList(
                [ConvBlock(n_primal + 1, n_primal, width, zero_last=zero)
                 for _ in range(n_iter)])

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        yn = self.sinogram_in(y)
        check_dtype_matches("y", y, self)
        a = self.normalized_operator
        batch = y.shape[:-2]
        hw, vd = self.operator.domain_shape, self.operator.range_shape
        g = yn.reshape(-1, 1, *vd)
        b = g.shape[0]
        if self.init is None:
            f = g.new_zeros(b, self.n_primal, *hw)
        else:
            x0 = self.init(y).reshape(b, 1, *hw) / self.image_scale.to(g)
            f = x0.expand(b, self.n_primal, *hw).contiguous()
        h = g.new_zeros(b, self.n_dual, *vd)
        for i in range(self.n_iter):
            h = h + self.dual_nets[i](torch.cat([h, a(f[:, 1:2]), g], dim=1))
            f = f + self.primal_nets[i](torch.cat([f, a.adjoint(h[:, 0:1])], dim=1))
        return self.image_out(f[:, 0].reshape(*batch, *hw))
