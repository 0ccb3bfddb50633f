"""Eqs. 4-10 of the seed paper: back-propagation through a three-layer linear network, and the
effect of the learning rate (section 2.4).

Maier, Syben, Lasser, Riess (2019), "A gentle introduction to deep learning in medical image
processing", Z. Med. Phys. 29(2):86-101, section 2.4. The network ``y_hat = W3 W2 W1 x`` with the
squared loss ``L = 1/2 ||y_hat - y||^2`` has, with the error ``e = y_hat - y``, the gradients

    dL/dW3 = e (W2 W1 x)^T
    dL/dW2 = W3^T e (W1 x)^T
    dL/dW1 = W2^T W3^T e x^T

(the chain rule applied layer by layer: every factor is computed once in the forward pass and
reused backwards). Gradient descent ``W <- W - eta dL/dW`` converges for a suitable learning rate
``eta``; too high a rate makes it overshoot and diverge, too low a rate barely moves.

What is computed:

- for a batch ``X`` of shape ``(n0, B)`` (one sample per column), targets ``Y`` ``(n3, B)`` and
  the mean loss ``L = 1/(2B) sum_b ||y_hat_b - y_b||^2`` (the per-sample formulas above summed
  over the batch, divided by ``B``), the closed-form gradients and autograd's, in float64; their
  largest relative difference per layer;
- gradient descent with the closed-form gradients on a noiseless linear regression
  ``Y = M X`` (``M`` random, rank ``min(n0, n3)``, representable by the product), from the same
  initial weights for each learning rate in ``learning_rates`` (low, good, high), for every seed;
  the loss curves (plotted) and the final / initial loss ratios.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import torch

from .common import check_config, claim, save_figure

NAME = "seed-backprop"
DESCRIPTION = ("Eqs. 4-10: closed-form backprop of y = W3 W2 W1 x equals autograd; learning "
               "rate too high explodes, too low stagnates")
REFERENCE = "Maier et al. 2019, Z. Med. Phys. 29(2):86-101, section 2.4, Eqs. 4-10 (seed paper)"

log = logging.getLogger(__name__)

DIVERGED = 1e12  # a loss above this (or non-finite) counts as exploded; the run stops there


@dataclass(frozen=True)
class Config:
    """Sizes, data and learning rates (defaults: the full configuration).

    Attributes
    ----------
    sizes : tuple of int
        ``(n0, n1, n2, n3)``: input, two hidden and output sizes; ``W1`` is ``(n1, n0)``,
        ``W2`` ``(n2, n1)``, ``W3`` ``(n3, n2)``.
    samples : int
        Batch size ``B`` (full-batch gradient descent).
    steps : int
        Gradient-descent steps per learning rate.
    learning_rates : tuple of float
        ``(too low, good, too high)``.
    """

    sizes: Tuple[int, int, int, int] = (8, 16, 16, 4)
    samples: int = 256
    steps: int = 500
    learning_rates: Tuple[float, float, float] = (1e-5, 0.1, 1.0)

    def __post_init__(self):
        check_config(self)
        if len(self.sizes) != 4 or any(int(n) < 1 for n in self.sizes):
            raise ValueError(f"sizes must be four positive ints, got {self.sizes}")
        if self.samples < 1 or self.steps < 1:
            raise ValueError(f"samples and steps must be >= 1, got {self.samples}, {self.steps}")
        lrs = self.learning_rates
        if len(lrs) != 3 or not all(lr > 0 for lr in lrs) or not lrs[0] < lrs[1] < lrs[2]:
            raise ValueError(f"learning_rates must be three increasing positive values "
                             f"(low, good, high), got {lrs}")


PRESETS = {
    "tiny": Config(samples=64, steps=150),
    "quick": Config(steps=300),
    "full": Config(),
}
DEFAULT_SEEDS = {"tiny": 1, "quick": 3, "full": 5}


def init_weights(sizes: Sequence[int], generator: torch.Generator,
                 dtype=torch.float64) -> List[torch.Tensor]:
    """``[W1, W2, W3]`` with entries ``N(0, 1 / fan_in)`` (LeCun normal)."""
    return [torch.randn(sizes[i + 1], sizes[i], generator=generator, dtype=dtype)
            / math.sqrt(sizes[i]) for i in range(3)]


def forward(weights: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``W3 W2 W1 x`` for ``x`` of shape ``(n0, B)``; returns ``(n3, B)``."""
    w1, w2, w3 = weights
    return w3 @ (w2 @ (w1 @ x))


def loss(weights: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared loss ``1/(2B) sum_b ||W3 W2 W1 x_b - y_b||^2`` (a scalar)."""
    return 0.5 * (forward(weights, x) - y).pow(2).sum() / x.shape[1]


def closed_form_gradients(weights: Sequence[torch.Tensor], x: torch.Tensor,
                          y: torch.Tensor) -> List[torch.Tensor]:
    """The back-propagation formulas of the paper, batched.

    Parameters
    ----------
    weights : [W1 (n1, n0), W2 (n2, n1), W3 (n3, n2)]
    x : Tensor, shape (n0, B)
    y : Tensor, shape (n3, B)

    Returns
    -------
    [dL/dW1, dL/dW2, dL/dW3]
        Same shapes as the weights, for the mean loss of :func:`loss`:
        ``dL/dW3 = e (W2 W1 x)^T / B``, ``dL/dW2 = W3^T e (W1 x)^T / B``,
        ``dL/dW1 = W2^T W3^T e x^T / B`` with ``e = W3 W2 W1 x - y``.
    """
    w1, w2, w3 = weights
    h1 = w1 @ x                 # (n1, B)
    h2 = w2 @ h1                # (n2, B)
    e = (w3 @ h2 - y) / x.shape[1]
    d3 = e @ h2.T
    back2 = w3.T @ e            # (n2, B): the error back-propagated to layer 2
    d2 = back2 @ h1.T
    back1 = w2.T @ back2        # (n1, B)
    d1 = back1 @ x.T
    return [d1, d2, d3]


def autograd_gradients(weights: Sequence[torch.Tensor], x: torch.Tensor,
                       y: torch.Tensor) -> List[torch.Tensor]:
    """The same gradients by ``torch.autograd``."""
    ws = [w.detach().clone().requires_grad_(True) for w in weights]
    return [g.detach() for g in torch.autograd.grad(loss(ws, x, y), ws)]


def regression_problem(config: Config, generator: torch.Generator,
                       dtype=torch.float64) -> Tuple[torch.Tensor, torch.Tensor]:
    """``X ~ N(0, I)`` of shape ``(n0, B)`` and ``Y = M X`` with ``M`` of shape ``(n3, n0)``,
    entries ``N(0, 1 / n0)`` (so ``y`` has about unit variance)."""
    n0, n3 = config.sizes[0], config.sizes[3]
    x = torch.randn(n0, config.samples, generator=generator, dtype=dtype)
    m = torch.randn(n3, n0, generator=generator, dtype=dtype) / math.sqrt(n0)
    return x, m @ x


def gradient_descent(weights: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                     lr: float, steps: int) -> List[float]:
    """Full-batch gradient descent with :func:`closed_form_gradients`.

    Returns
    -------
    list of float
        The loss before each step and after the last (``steps + 1`` values), cut short once the
        loss exceeds ``DIVERGED`` or stops being finite.
    """
    ws = [w.clone() for w in weights]
    losses = [float(loss(ws, x, y))]
    for _ in range(steps):
        grads = closed_form_gradients(ws, x, y)
        ws = [w - lr * g for w, g in zip(ws, grads)]
        value = float(loss(ws, x, y))
        losses.append(value)
        if not math.isfinite(value) or value > DIVERGED:
            break
    return losses


def _plot(curves: Dict[str, List[float]], lrs: Sequence[float], steps: int, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    colours = ("#1f4e9c", "#2e8b57", "#c0392b")
    zoom = min(steps, 20)
    for ax, last in zip(axes, (steps, zoom)):
        for (label, curve), colour, lr in zip(curves.items(), colours, lrs):
            shown = [min(v, DIVERGED) if math.isfinite(v) else DIVERGED for v in curve]
            ax.semilogy(range(len(shown)), shown, color=colour, lw=1.8, marker="." if
                        last == zoom else None, label=f"{label}: $\\eta$ = {lr:g}")
            if len(curve) < steps + 1:
                ax.plot(len(shown) - 1, shown[-1], "x", color=colour, ms=10, mew=2)
        ax.set_xlim(0, last)
        ax.set_xlabel("gradient-descent step")
        ax.set_ylabel("loss $\\frac{1}{2B}\\sum_b\\|W_3W_2W_1x_b - y_b\\|^2$")
    axes[0].set_title("all steps (x: stopped, loss above 1e12)", fontsize=10)
    axes[1].set_title(f"first {zoom} steps", fontsize=10)
    axes[0].legend(fontsize=8)
    fig.suptitle("Learning rate (Maier et al. 2019, section 2.4), first seed")
    save_figure(fig, path)


def run(config: Config, out: Path, *, device: torch.device, seeds: Sequence[int]) -> dict:
    """Check the gradients and run the learning-rate study for every seed.

    Runs in float64 on the CPU whatever ``device`` is (matrices of at most 16 x 256); seconds
    even at "full", so no checkpoints.
    """
    out = Path(out)
    labels = ("too low", "good", "too high")
    per_seed = []
    first_curves = None
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed))
        x, y = regression_problem(config, gen)
        weights = init_weights(config.sizes, gen)
        closed = closed_form_gradients(weights, x, y)
        auto = autograd_gradients(weights, x, y)
        rel = [float((c - a).norm() / a.norm().clamp_min(1e-300)) for c, a in zip(closed, auto)]
        curves = {label: gradient_descent(weights, x, y, lr, config.steps)
                  for label, lr in zip(labels, config.learning_rates)}
        row = {"seed": int(seed), "gradient_relative_error": {"W1": rel[0], "W2": rel[1],
                                                              "W3": rel[2]}}
        for label, curve in curves.items():
            key = label.replace(" ", "_")
            final = curve[-1]
            row[key] = {"initial_loss": curve[0], "final_loss": final,
                        "ratio": final / curve[0] if math.isfinite(final) else float("inf"),
                        "steps_run": len(curve) - 1,
                        "diverged": (not math.isfinite(final)) or final > DIVERGED}
        log.info("seed %d: gradient rel. error %.2e; final/initial loss: low %.3g, good %.3g, "
                 "high %.3g", seed, max(rel), row["too_low"]["ratio"], row["good"]["ratio"],
                 row["too_high"]["ratio"])
        per_seed.append(row)
        if first_curves is None:
            first_curves = curves

    _plot(first_curves, config.learning_rates, config.steps, out / "learning_rate_curves.png")

    worst_rel = max(max(r["gradient_relative_error"].values()) for r in per_seed)
    low = [r["too_low"]["ratio"] for r in per_seed]
    good = [r["good"]["ratio"] for r in per_seed]
    high = [r["too_high"] for r in per_seed]
    exploded = all(h["diverged"] for h in high)  # a rising loss alone is not an explosion
    return {
        "learning_rates": {"too_low": config.learning_rates[0], "good": config.learning_rates[1],
                           "too_high": config.learning_rates[2]},
        "per_seed": per_seed,
        "claims": [
            claim("The closed-form back-propagation gradients of y = W3 W2 W1 x (Eqs. 4-10) "
                  "equal autograd's", worst_rel <= 1e-12, max_relative_error=worst_rel,
                  seeds=len(per_seed)),
            claim("Too high a learning rate makes gradient descent explode (the loss passes "
                  "1e12 or stops being finite)", exploded,
                  learning_rate=config.learning_rates[2],
                  final_loss=[h["final_loss"] for h in high],
                  steps_until_stop=[h["steps_run"] for h in high]),
            claim("Too low a learning rate stagnates (loss reduced by less than half)",
                  all(r > 0.5 for r in low), learning_rate=config.learning_rates[0],
                  final_over_initial=low),
            claim("A suitable learning rate converges (loss reduced by more than 1000x)",
                  all(r < 1e-3 for r in good), learning_rate=config.learning_rates[1],
                  final_over_initial=good),
        ],
    }
