"""Fig. 2 of the seed paper: a single neuron cannot solve XOR, a two-layer network can.

Maier, Syben, Lasser, Riess (2019), "A gentle introduction to deep learning in medical image
processing", Z. Med. Phys. 29(2):86-101, Fig. 2 and section 2.1: a neuron computes a weighted sum
of its inputs followed by an activation, so its decision boundary is a line; the XOR problem needs
"curved boundaries or multiple lines".

What is computed: four Gaussian clusters around the corners of the unit square, labelled by XOR
(class 1 at (0, 1) and (1, 0)). Two models are trained with the same data, loss (binary
cross-entropy) and optimiser (full-batch Adam), once per seed:

- a single neuron, ``sigmoid(w . x + b)``;
- a two-layer network, ``sigmoid(v . tanh(W x + c) + d)`` with ``hidden`` units.

The training accuracy of each, and the accuracy on the four exact corners, go into the metrics;
the decision regions (the 0.5 level set of the output) of the first seed are plotted.
This is a reproduction of the figure's statement, not of its drawing (the paper shows a sketch).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Sequence, Tuple

import torch
from torch import nn

from .common import check_config, claim, mean_std, save_figure

NAME = "seed-xor"
DESCRIPTION = "Fig. 2: one neuron cannot solve XOR, a two-layer network can (decision regions)"
REFERENCE = "Maier et al. 2019, Z. Med. Phys. 29(2):86-101, Fig. 2 (seed paper)"

log = logging.getLogger(__name__)

CORNERS = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
CORNER_LABELS = torch.tensor([0.0, 1.0, 1.0, 0.0])


@dataclass(frozen=True)
class Config:
    """Knobs of the XOR experiment (defaults: the full configuration).

    Attributes
    ----------
    points_per_corner : int
        Training samples drawn around each of the four corners.
    noise_std : float
        Standard deviation of the Gaussian jitter around the corners (input units; the corners
        are 1 apart).
    hidden : int
        Hidden units of the two-layer network (tanh).
    steps : int
        Full-batch Adam steps for each model.
    lr : float
        Adam learning rate.
    grid : int
        Samples per axis of the decision-region raster over [-0.5, 1.5]^2.
    """

    points_per_corner: int = 50
    noise_std: float = 0.1
    hidden: int = 8
    steps: int = 3000
    lr: float = 0.05
    grid: int = 200

    def __post_init__(self):
        check_config(self)
        if not self.noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}")


PRESETS = {
    "tiny": Config(points_per_corner=10, steps=400, grid=48),
    "quick": Config(points_per_corner=25, steps=1500, grid=120),
    "full": Config(),
}
DEFAULT_SEEDS = {"tiny": 1, "quick": 3, "full": 5}


def make_xor_data(points_per_corner: int, noise_std: float,
                  generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """Jittered XOR samples.

    Returns
    -------
    x : Tensor, shape (4 * points_per_corner, 2)
        Inputs ``(x1, x2)``.
    y : Tensor, shape (4 * points_per_corner,)
        Labels in {0, 1}: ``x1 XOR x2`` of the corner a sample belongs to.
    """
    centres = CORNERS.repeat_interleave(points_per_corner, dim=0)
    labels = CORNER_LABELS.repeat_interleave(points_per_corner)
    noise = torch.randn(centres.shape, generator=generator) * noise_std
    return centres + noise, labels


def single_neuron() -> nn.Module:
    """``sigmoid(w . x + b)``; the module returns the logit ``w . x + b``."""
    return nn.Linear(2, 1)


def two_layer(hidden: int) -> nn.Module:
    """``sigmoid(v . tanh(W x + c) + d)``; the module returns the logit."""
    return nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 1))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> float:
    """Full-batch Adam on the binary cross-entropy; returns the final loss."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x).squeeze(-1), y)
        loss.backward()
        opt.step()
    return float(loss.detach())


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of samples with ``(logit > 0) == y``."""
    return float(((model(x).squeeze(-1) > 0).float() == y).float().mean())


@torch.no_grad()
def _regions(model: nn.Module, grid: int, device: torch.device):
    axis = torch.linspace(-0.5, 1.5, grid, device=device)
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)
    prob = torch.sigmoid(model(pts)).reshape(grid, grid)
    return axis.cpu().numpy(), prob.cpu().numpy()


def _plot(models: Dict[str, nn.Module], accs: Dict[str, float], x, y, grid: int,
          device: torch.device, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.5, 4.2), layout="constrained")
    axes = fig.subplots(1, len(models))
    xs, ys = x.cpu().numpy(), y.cpu().numpy()
    for ax, (title, model) in zip(axes, models.items()):
        axis, prob = _regions(model, grid, device)
        ax.contourf(axis, axis, prob, levels=[0.0, 0.5, 1.0], colors=["#dde6f5", "#f7dcd4"])
        ax.contour(axis, axis, prob, levels=[0.5], colors="k", linewidths=1.2)
        ax.scatter(xs[ys == 0, 0], xs[ys == 0, 1], s=10, c="#1f4e9c", label="class 0")
        ax.scatter(xs[ys == 1, 0], xs[ys == 1, 1], s=10, c="#c0392b", marker="^",
                   label="class 1")
        ax.set_title(f"{title}\ntraining accuracy {100 * accs[title]:.1f}%")
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        ax.set_aspect("equal")
    axes[0].legend(loc="upper center", fontsize=8)
    fig.suptitle("XOR (Maier et al. 2019, Fig. 2): decision regions, first seed")
    save_figure(fig, path)


def run(config: Config, out: Path, *, device: torch.device, seeds: Sequence[int]) -> dict:
    """Train both models for every seed; plot the first seed; return accuracies and claims.

    Runs in seconds on a CPU, so there are no checkpoints: a rerun recomputes.
    """
    out = Path(out)
    device = torch.device(device)
    per_seed = []
    first = None
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed))
        x, y = make_xor_data(config.points_per_corner, config.noise_std, gen)
        x, y = x.to(device), y.to(device)
        torch.manual_seed(int(seed))
        models = {"single neuron": single_neuron().to(device),
                  f"two layers ({config.hidden} hidden)": two_layer(config.hidden).to(device)}
        row = {"seed": int(seed)}
        accs = {}
        for key, (title, model) in zip(("single_neuron", "two_layer"), models.items()):
            loss = train(model, x, y, config.steps, config.lr)
            accs[title] = accuracy(model, x, y)
            row[key] = {"train_accuracy": accs[title], "final_loss": loss,
                        "corner_accuracy": accuracy(model, CORNERS.to(device),
                                                    CORNER_LABELS.to(device))}
        log.info("seed %d: single neuron %.3f, two layers %.3f", seed,
                 row["single_neuron"]["train_accuracy"], row["two_layer"]["train_accuracy"])
        per_seed.append(row)
        if first is None:
            first = (models, accs, x, y)

    _plot(*first, grid=config.grid, device=device, path=out / "xor_decision_regions.png")

    single = [r["single_neuron"]["train_accuracy"] for r in per_seed]
    double = [r["two_layer"]["train_accuracy"] for r in per_seed]
    single_corners = [r["single_neuron"]["corner_accuracy"] for r in per_seed]
    return {
        "per_seed": per_seed,
        "single_neuron_accuracy": mean_std(single),
        "two_layer_accuracy": mean_std(double),
        "claims": [
            claim("A single neuron (linear + sigmoid) cannot solve XOR: its training accuracy "
                  "stays below 100% (at most 3 of the 4 corners)",
                  max(single) < 1.0 and max(single_corners) <= 0.75,
                  best_accuracy=max(single), best_corner_accuracy=max(single_corners),
                  seeds=len(per_seed)),
            claim("A two-layer network solves XOR: 100% training accuracy for every seed",
                  min(double) == 1.0, worst_accuracy=min(double), hidden=config.hidden,
                  seeds=len(per_seed)),
        ],
    }
