"""Fig. 5 of the seed paper: activation functions and their (sub)gradients.

Maier, Syben, Lasser, Riess (2019), "A gentle introduction to deep learning in medical image
processing", Z. Med. Phys. 29(2):86-101, section 2.3 and Fig. 5: the sign function (the
classical perceptron's, zero gradient almost everywhere), the sigmoid and tanh (smooth, but
saturating: small gradients for large ``|x|``, hence vanishing gradients in deep networks), the
ReLU and the leaky ReLU (gradient 1 for positive inputs; the leaky variant keeps a small gradient
for negative ones). At 0 the sign, ReLU and leaky ReLU have no derivative; a subgradient is used.

What is computed: each function on ``points`` samples of ``[-x_max, x_max]`` in float64, its
gradient by autograd and its derivative in closed form,

- sign: 0 for ``x != 0`` (at 0 a Dirac; autograd returns 0);
- sigmoid: ``s (1 - s) = e^{-|x|} / (1 + e^{-|x|})^2``;  tanh: ``1 - tanh^2 = 1 / cosh^2``;
- ReLU: 1 for ``x > 0``, 0 for ``x < 0``, subdifferential ``[0, 1]`` at 0;
- leaky ReLU with slope ``a``: 1 for ``x > 0``, ``a`` for ``x < 0``, ``[a, 1]`` at 0,

the largest mismatch away from 0, autograd's choice at 0 (checked to lie in the
subdifferential), the largest derivative, the fraction of the range where the derivative is
below ``saturation`` and the gradient factor through ``depth`` layers at the best case (the
maximal derivative to the power ``depth``). The figure plots functions and derivatives.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Sequence, Tuple

import torch
import torch.nn.functional as F

from .common import check_config, claim, save_figure

NAME = "seed-activations"
DESCRIPTION = ("Fig. 5: sign, sigmoid, tanh, ReLU, leaky ReLU and their (sub)gradients "
               "(autograd vs closed form)")
REFERENCE = "Maier et al. 2019, Z. Med. Phys. 29(2):86-101, Fig. 5 (seed paper)"

#: Deterministic (fixed sample points, no training): one seed.
SEEDS_USED = 1

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    """Sampling and constants (defaults: the full configuration).

    Attributes
    ----------
    x_max : float
        The functions are sampled on ``[-x_max, x_max]``.
    points : int
        Number of samples (odd, so that 0 is one of them).
    leaky_slope : float
        Slope of the leaky ReLU for negative inputs (0.1 here so the figure shows it; 0.01 is
        also common).
    saturation : float
        A derivative below this counts as saturated.
    depth : int
        Layers for the vanishing-gradient factor ``max|h'|^depth``.
    """

    x_max: float = 6.0
    points: int = 2001
    leaky_slope: float = 0.1
    saturation: float = 0.01
    depth: int = 10

    def __post_init__(self):
        check_config(self)
        if not self.x_max > 0:
            raise ValueError(f"x_max must be > 0, got {self.x_max}")
        if self.points < 3 or self.points % 2 == 0:
            raise ValueError(f"points must be odd and >= 3 (0 must be sampled), got {self.points}")
        if not 0 <= self.leaky_slope < 1:
            raise ValueError(f"leaky_slope must lie in [0, 1), got {self.leaky_slope}")
        if not self.saturation > 0:
            raise ValueError(f"saturation must be > 0, got {self.saturation}")
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth}")


PRESETS = {
    "tiny": Config(points=201),
    "quick": Config(points=1001),
    "full": Config(),
}

ACTIVATION_NAMES = ("sign", "sigmoid", "tanh", "relu", "leaky_relu")


def activations(leaky_slope: float) -> Dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """The five activation functions of Fig. 5 (elementwise, any shape)."""
    return {
        "sign": torch.sign,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": F.relu,
        "leaky_relu": lambda x: F.leaky_relu(x, negative_slope=leaky_slope),
    }


def closed_form_derivatives(x: torch.Tensor, leaky_slope: float) -> Dict[str, torch.Tensor]:
    """Closed-form derivatives for ``x != 0`` (the value at ``x == 0`` is NaN for the
    non-differentiable sign, ReLU and leaky ReLU; see :func:`subdifferential_at_zero`).

    Written independently of torch's activation code: ``sigmoid'(x) = e^{-|x|} / (1 +
    e^{-|x|})^2`` (even, overflow-free) and ``tanh'(x) = 1 / cosh(x)^2``.
    """
    e = torch.exp(-x.abs())
    nan = torch.full_like(x, float("nan"))
    pos, neg = x > 0, x < 0
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    return {
        "sign": torch.where(x == 0, nan, zero),
        "sigmoid": e / (1 + e) ** 2,
        "tanh": 1 / torch.cosh(x) ** 2,
        "relu": torch.where(pos, one, torch.where(neg, zero, nan)),
        "leaky_relu": torch.where(pos, one, torch.where(neg, zero + leaky_slope, nan)),
    }


def subdifferential_at_zero(leaky_slope: float) -> Dict[str, Tuple[float, float]]:
    """The interval of subgradients at 0 (a point where the function is differentiable gives a
    degenerate interval; the sign function, discontinuous at 0, has none: ``(-inf, inf)`` as
    "any value", its derivative being a Dirac there)."""
    return {"sign": (float("-inf"), float("inf")), "sigmoid": (0.25, 0.25), "tanh": (1.0, 1.0),
            "relu": (0.0, 1.0), "leaky_relu": (float(leaky_slope), 1.0)}


def autograd_derivatives(x: torch.Tensor, leaky_slope: float) -> Dict[str, torch.Tensor]:
    """Elementwise derivatives by autograd (``d sum(h(x)) / dx``), same shape as ``x``."""
    out = {}
    for name, fn in activations(leaky_slope).items():
        xr = x.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(xr).sum(), xr)
        out[name] = grad.detach()
    return out


def compare(config: Config) -> dict:
    """Sample, differentiate both ways, and summarise (see the module docstring)."""
    half = (config.points - 1) // 2
    x = config.x_max * torch.arange(-half, half + 1, dtype=torch.float64) / half
    zero = x == 0
    if int(zero.sum()) != 1:
        raise RuntimeError("the sample grid must contain 0 exactly once")
    auto = autograd_derivatives(x, config.leaky_slope)
    closed = closed_form_derivatives(x, config.leaky_slope)
    sub = subdifferential_at_zero(config.leaky_slope)
    values = {name: fn(x) for name, fn in activations(config.leaky_slope).items()}
    per = {}
    for name in ACTIVATION_NAMES:
        a, c = auto[name], closed[name]
        lo, hi = sub[name]
        at0 = float(a[zero])
        per[name] = {
            "max_abs_mismatch": float((a[~zero] - c[~zero]).abs().max()),
            "autograd_at_zero": at0,
            "subdifferential_at_zero": [lo, hi],
            "at_zero_in_subdifferential": bool(lo - 1e-15 <= at0 <= hi + 1e-15),
            "max_derivative": float(a.abs().max()),
            "saturated_fraction": float((a.abs() < config.saturation).double().mean()),
            "gradient_factor_depth": float(a.abs().max()) ** config.depth,
        }
    return {"x": x, "values": values, "autograd": auto, "closed": closed, "per": per}


def _plot(res: dict, config: Config, path: Path) -> None:
    from matplotlib.figure import Figure

    x = res["x"].numpy()
    titles = {"sign": "sign", "sigmoid": "sigmoid", "tanh": "tanh", "relu": "ReLU",
              "leaky_relu": f"leaky ReLU (slope {config.leaky_slope:g})"}
    sub = subdifferential_at_zero(config.leaky_slope)
    fig = Figure(figsize=(15, 5.2), layout="constrained")
    axes = fig.subplots(2, len(ACTIVATION_NAMES), sharex=True)
    for j, name in enumerate(ACTIVATION_NAMES):
        top, bottom = axes[0, j], axes[1, j]
        top.plot(x, res["values"][name].numpy(), color="#1f4e9c", lw=1.8)
        top.set_title(titles[name], fontsize=10)
        top.axhline(0, color="gray", lw=0.5)
        top.axvline(0, color="gray", lw=0.5)
        auto = res["autograd"][name].numpy()
        closed = res["closed"][name].numpy()
        bottom.plot(x, auto, color="#c0392b", lw=1.8, label="autograd")
        bottom.plot(x, closed, color="k", lw=1, ls="--", label="closed form")
        lo, hi = sub[name]
        if name == "sign":
            bottom.annotate("Dirac at 0", xy=(0, 0), xytext=(0.8, 0.5), fontsize=8,
                            arrowprops=dict(arrowstyle="->"))
            bottom.set_ylim(-0.1, 1.1)
        elif lo != hi:
            bottom.plot([0, 0], [lo, hi], color="#2e8b57", lw=3, alpha=0.7,
                        label="subdifferential at 0")
        bottom.axhline(0, color="gray", lw=0.5)
        bottom.set_xlabel("x")
        if j == 0:
            top.set_ylabel("h(x)")
            bottom.set_ylabel("h'(x)")
        bottom.legend(fontsize=7, loc="best")
    fig.suptitle("Activation functions and their (sub)gradients (Maier et al. 2019, Fig. 5)")
    save_figure(fig, path)


def run(config: Config, out: Path, *, device: torch.device, seeds: Sequence[int]) -> dict:
    """Compare autograd with the closed forms, plot, and return the metrics and claims.

    Deterministic; computed on the CPU in float64 whatever ``device`` is (a few thousand
    samples). No checkpoints.
    """
    out = Path(out)
    res = compare(config)
    per = res["per"]
    _plot(res, config, out / "fig5_activations.png")
    worst = max(p["max_abs_mismatch"] for p in per.values())
    log.info("largest autograd / closed-form mismatch: %.3g", worst)
    at_zero_ok = all(p["at_zero_in_subdifferential"] for p in per.values())
    sig_max = per["sigmoid"]["max_derivative"]
    return {
        "activations": per,
        "claims": [
            claim("Autograd's gradients of sign, sigmoid, tanh, ReLU and leaky ReLU equal the "
                  "closed-form derivatives (x != 0); at 0 autograd picks a subgradient",
                  worst <= 1e-12 and at_zero_ok, max_abs_mismatch=worst,
                  relu_at_zero=per["relu"]["autograd_at_zero"],
                  leaky_relu_at_zero=per["leaky_relu"]["autograd_at_zero"]),
            claim("The sign function has a zero gradient wherever it is differentiable, so "
                  "gradient descent cannot train it",
                  per["sign"]["max_derivative"] == 0.0,
                  max_derivative=per["sign"]["max_derivative"]),
            claim("Sigmoid and tanh saturate: the sigmoid's derivative is at most 1/4, so the "
                  f"gradient through {config.depth} sigmoid layers shrinks by at least "
                  f"4^{config.depth} (vanishing gradients)",
                  abs(sig_max - 0.25) < 1e-12
                  and per["sigmoid"]["saturated_fraction"] > 0
                  and per["tanh"]["saturated_fraction"] > 0,
                  sigmoid_max_derivative=sig_max,
                  sigmoid_gradient_factor=per["sigmoid"]["gradient_factor_depth"],
                  sigmoid_saturated_fraction=per["sigmoid"]["saturated_fraction"],
                  tanh_saturated_fraction=per["tanh"]["saturated_fraction"]),
            claim("ReLU and leaky ReLU do not saturate for positive inputs (gradient 1); the "
                  "leaky ReLU keeps a non-zero gradient for negative inputs",
                  per["relu"]["max_derivative"] == 1.0
                  and per["leaky_relu"]["saturated_fraction"] == 0.0
                  and (config.leaky_slope >= config.saturation),
                  relu_saturated_fraction=per["relu"]["saturated_fraction"],
                  leaky_relu_saturated_fraction=per["leaky_relu"]["saturated_fraction"],
                  leaky_slope=config.leaky_slope),
        ],
    }
