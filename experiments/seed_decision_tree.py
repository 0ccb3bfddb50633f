"""Fig. 3 of the seed paper: a decision tree mapped into a one-layer and a two-layer network.

Maier, Syben, Lasser, Riess (2019), "A gentle introduction to deep learning in medical image
processing", Z. Med. Phys. 29(2):86-101, section 2.2 and Fig. 3. A decision tree with axis-aligned
thresholds partitions the plane into boxes (class 1 black, class 0 white). The paper maps it into
a one-layer network whose hidden layer is a *six-neuron basis*: the tree's inner nodes and their
inverses, each a step function of one input, with output weights that minimise the squared error
``||y - y_hat||^2``. "Not all areas can be recovered correctly": the maximal error is close to 0.7.
With a second layer (first layer: the inner nodes; second layer: one neuron per leaf, the AND of
the decisions on its path) the tree is represented exactly.

What is computed here (nothing is hard-coded but the tree):

- the tree: three inner nodes (six basis neurons, as in the paper) on the unit square
  ``[0, 1]^2``: the root splits ``x1`` at ``root_threshold``; its two children split ``x2`` at
  ``left_threshold`` (for ``x1 <= root_threshold``) and ``right_threshold``; the four leaves carry
  the classes ``leaves`` (left-below, left-above, right-below, right-above). The paper's text
  does not give the thresholds; the defaults are our reading of the figure (an XOR-like partition
  whose two ``x2`` splits differ), marked as an adaptation;
- the one-layer mapping: basis ``h_k(x) = step(x_f(k) - t_k)`` and ``1 - h_k(x)`` for the three
  inner nodes ``k``; output weights by least squares on a ``grid x grid`` raster of cell centres
  (no sample lies on a threshold); its maximal and RMS error, and the fraction of the square it
  misclassifies (error above 0.5);
- the two-layer mapping: the same six neurons, then one step neuron per leaf with weight 1 on the
  neurons of its path and bias ``0.5 - depth``, then the sum of the leaves' classes; its maximal
  error (0 up to rounding).

Since the one-layer output is ``c + a1 step(x1 - t1) + a2 step(x2 - t2) + a3 step(x2 - t3)``, a
sum of functions of ``x1`` alone and of ``x2`` alone, it cannot represent a partition that
needs an AND of conditions on both; the error it leaves grows with the offset of the two ``x2``
thresholds (the sweep in the metrics).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import torch

from .common import check_config, claim, save_figure

NAME = "seed-decision-tree"
DESCRIPTION = ("Fig. 3: a decision tree as a one-layer network (max error ~0.7) and as a "
               "two-layer network (exact)")
REFERENCE = "Maier et al. 2019, Z. Med. Phys. 29(2):86-101, Fig. 3 (seed paper)"

#: Deterministic (no training): one seed.
SEEDS_USED = 1

log = logging.getLogger(__name__)

PAPER_MAX_ERROR = 0.7  # "the maximal error is close to 0.7" (Maier et al. 2019, section 2.2)


@dataclass(frozen=True)
class Config:
    """The tree and the raster (defaults: the full configuration).

    Attributes
    ----------
    root_threshold : float
        Root node: ``x1 > root_threshold`` goes right.
    left_threshold, right_threshold : float
        The children: ``x2 > threshold`` goes up (left child for ``x1 <= root_threshold``).
    leaves : tuple of int
        Classes of the leaves (left-below, left-above, right-below, right-above), each 0 or 1.
    grid : int
        Raster samples per axis on the unit square (cell centres) for the fit and the errors.
    sweep : tuple of float
        ``right_threshold`` values for the sweep of the one-layer error (empty: no sweep).
    """

    root_threshold: float = 0.5
    left_threshold: float = 0.6
    right_threshold: float = 0.8
    leaves: Tuple[int, int, int, int] = (0, 1, 1, 0)
    grid: int = 400
    sweep: Tuple[float, ...] = tuple(round(0.1 + 0.05 * i, 2) for i in range(17))

    def __post_init__(self):
        check_config(self)
        for name in ("root_threshold", "left_threshold", "right_threshold"):
            t = getattr(self, name)
            if not 0.0 < t < 1.0:
                raise ValueError(f"{name} must lie in (0, 1), got {t}")
        if len(self.leaves) != 4 or any(v not in (0, 1) for v in self.leaves):
            raise ValueError(f"leaves must be four classes in {{0, 1}}, got {self.leaves}")
        if int(self.grid) < 2:
            raise ValueError(f"grid must be >= 2, got {self.grid}")
        if any(not 0.0 < t < 1.0 for t in self.sweep):
            raise ValueError(f"sweep values must lie in (0, 1), got {self.sweep}")


PRESETS = {
    "tiny": Config(grid=100, sweep=(0.4, 0.6, 0.8)),
    "quick": Config(grid=200),
    "full": Config(),
}


# --------------------------------------------------------------------------- the tree
@dataclass(frozen=True)
class Node:
    """An inner node: ``x[feature] > threshold`` goes to ``above``, else to ``below``.

    ``below`` / ``above`` are nodes or leaf classes (int).
    """

    feature: int
    threshold: float
    below: Union["Node", int]
    above: Union["Node", int]


def build_tree(config: Config) -> Node:
    """The three-node tree of :class:`Config`."""
    l0, l1, r0, r1 = config.leaves
    return Node(0, config.root_threshold,
                below=Node(1, config.left_threshold, below=l0, above=l1),
                above=Node(1, config.right_threshold, below=r0, above=r1))


def inner_nodes(tree: Node) -> List[Node]:
    """Inner nodes in depth-first (pre-)order."""
    out = [tree]
    for child in (tree.below, tree.above):
        if isinstance(child, Node):
            out.extend(inner_nodes(child))
    return out


def leaf_paths(tree: Node) -> List[Tuple[int, List[Tuple[int, bool]]]]:
    """Every leaf as ``(class, [(inner-node index, went_above), ...])`` from the root down."""
    index = {id(n): i for i, n in enumerate(inner_nodes(tree))}
    leaves: List[Tuple[int, List[Tuple[int, bool]]]] = []

    def walk(node: Node, path: List[Tuple[int, bool]]) -> None:
        for went_above, child in ((False, node.below), (True, node.above)):
            step = path + [(index[id(node)], went_above)]
            if isinstance(child, Node):
                walk(child, step)
            else:
                leaves.append((int(child), step))

    walk(tree, [])
    return leaves


def evaluate_tree(tree: Node, x: torch.Tensor) -> torch.Tensor:
    """The tree's class for points ``x`` of shape ``(N, 2)``; returns ``(N,)`` float64."""
    def ev(node: Union[Node, int], mask_x: torch.Tensor) -> torch.Tensor:
        if not isinstance(node, Node):
            return torch.full((mask_x.shape[0],), float(node), dtype=torch.float64)
        go = mask_x[:, node.feature] > node.threshold
        out = torch.empty(mask_x.shape[0], dtype=torch.float64)
        out[~go] = ev(node.below, mask_x[~go])
        out[go] = ev(node.above, mask_x[go])
        return out

    return ev(tree, x)


# --------------------------------------------------------------------------- the networks
def step(z: torch.Tensor) -> torch.Tensor:
    """Heaviside step activation, ``1`` for ``z > 0`` else ``0`` (float64)."""
    return (z > 0).to(torch.float64)


def basis(tree: Node, x: torch.Tensor) -> torch.Tensor:
    """The six-neuron basis: every inner node and its inverse.

    Parameters
    ----------
    x : Tensor, shape (N, 2)

    Returns
    -------
    Tensor, shape (N, 2 * n_inner)
        Columns ``[h_0, 1 - h_0, h_1, 1 - h_1, ...]`` with ``h_k = step(x_f - t_k)``; in network
        terms neuron ``2k`` has weight ``+e_f`` and bias ``-t_k``, neuron ``2k+1`` the negatives.
    """
    cols = []
    for node in inner_nodes(tree):
        z = x[:, node.feature].to(torch.float64) - node.threshold
        cols += [step(z), step(-z)]
    return torch.stack(cols, dim=1)


def one_layer_fit(tree: Node, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor,
                                                                             torch.Tensor]:
    """Least-squares output weights on the basis: ``w = argmin ||B w - y||^2`` (minimum norm).

    Returns
    -------
    weights : Tensor, shape (2 * n_inner,)
    y_hat : Tensor, shape (N,)
        The one-layer network's output ``B w``.
    """
    b = basis(tree, x)
    w = torch.linalg.lstsq(b, y.to(torch.float64).unsqueeze(1), driver="gelsd").solution[:, 0]
    return w, b @ w


def two_layer_forward(tree: Node, x: torch.Tensor) -> torch.Tensor:
    """The exact two-layer mapping: inner nodes, then leaves (AND of the path), then classes.

    Layer 2 neuron for a leaf of depth ``d`` sums the layer-1 neurons that fire on its path
    (``h_k`` where the path goes above node ``k``, ``1 - h_k`` where it goes below) and fires if
    the sum exceeds ``d - 0.5``; the output is the sum of the leaves' classes weighted by them.

    Returns
    -------
    Tensor, shape (N,)
    """
    b = basis(tree, x)
    leaves = leaf_paths(tree)
    w2 = torch.zeros(b.shape[1], len(leaves), dtype=torch.float64)
    bias2 = torch.zeros(len(leaves), dtype=torch.float64)
    classes = torch.zeros(len(leaves), dtype=torch.float64)
    for j, (cls, path) in enumerate(leaves):
        for k, went_above in path:
            w2[2 * k + (0 if went_above else 1), j] = 1.0
        bias2[j] = 0.5 - len(path)
        classes[j] = cls
    return step(b @ w2 + bias2) @ classes


def raster(grid: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cell centres of a ``grid x grid`` raster of the unit square.

    Returns
    -------
    axis : Tensor, shape (grid,)
    points : Tensor, shape (grid * grid, 2)
        ``(x1, x2)`` with ``x1`` along the columns and ``x2`` along the rows (row 0 at x2 ~ 0).
    """
    axis = (torch.arange(grid, dtype=torch.float64) + 0.5) / grid
    g2, g1 = torch.meshgrid(axis, axis, indexing="ij")
    return axis, torch.stack([g1.reshape(-1), g2.reshape(-1)], dim=1)


def analyse(config: Config) -> dict:
    """Fit both mappings for the tree of ``config``; return errors and rasters."""
    tree = build_tree(config)
    axis, pts = raster(config.grid)
    target = evaluate_tree(tree, pts)
    weights, one = one_layer_fit(tree, pts, target)
    two = two_layer_forward(tree, pts)
    err1, err2 = (one - target).abs(), (two - target).abs()
    return {
        "tree": tree, "axis": axis, "points": pts, "target": target, "weights": weights,
        "one_layer": one, "two_layer": two,
        "one_layer_max_error": float(err1.max()),
        "one_layer_rms_error": float(err1.pow(2).mean().sqrt()),
        "one_layer_misclassified_fraction": float((err1 > 0.5).double().mean()),
        "two_layer_max_error": float(err2.max()),
    }


# --------------------------------------------------------------------------- figures
def _image(ax, values: torch.Tensor, grid: int, title: str, vmin=0.0, vmax=1.0, cmap="gray_r"):
    im = ax.imshow(values.reshape(grid, grid).numpy(), origin="lower", extent=(0, 1, 0, 1),
                   cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([0, 0.5, 1])
    ax.set_yticks([0, 0.5, 1])
    return im


def _draw_tree(ax, tree: Node) -> None:
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    box = dict(boxstyle="round", fc="#eef2f8", ec="#445")

    def label(node):
        return f"$x_{node.feature + 1} > {node.threshold:g}$?"

    def draw(node, x, y, dx):
        ax.text(x, y, label(node), ha="center", va="center", bbox=box, fontsize=8)
        for sign, child, tag in ((-1, node.below, "no"), (+1, node.above, "yes")):
            cx, cy = x + sign * dx, y - 0.3
            ax.annotate("", xy=(cx, cy + 0.06), xytext=(x, y - 0.06),
                        arrowprops=dict(arrowstyle="->", color="#445"))
            ax.text((x + cx) / 2 + sign * 0.03, y - 0.15, tag, fontsize=7, ha="center")
            if isinstance(child, Node):
                draw(child, cx, cy, dx / 2)
            else:
                ax.text(cx, cy, f"class {child}", ha="center", va="center", fontsize=8,
                        color="white" if child else "black",
                        bbox=dict(boxstyle="square", fc="black" if child else "white",
                                  ec="#445"))

    draw(tree, 0.5, 0.85, 0.25)
    ax.set_title("decision tree", fontsize=9)


def _plot_basis(res: dict, grid: int, path: Path) -> None:
    from matplotlib.figure import Figure

    b = basis(res["tree"], res["points"])
    fig = Figure(figsize=(9, 5.6), layout="constrained")
    axes = fig.subplots(2, 3)
    names = []
    for node in inner_nodes(res["tree"]):
        s = f"x_{node.feature + 1}"
        names += [f"${s} > {node.threshold:g}$", f"${s} \\leq {node.threshold:g}$ (inverse)"]
    for j, ax in enumerate(axes.T.reshape(-1)):
        _image(ax, b[:, j], grid, f"neuron {j + 1}: {names[j]}\nweight {res['weights'][j]:+.3f}")
    fig.suptitle("Six-neuron basis: the inner nodes of the tree and their inverses "
                 "(black = 1), least-squares output weights")
    save_figure(fig, path)


def _plot_approximations(res: dict, grid: int, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 3.4), layout="constrained")
    axes = fig.subplots(1, 5)
    _draw_tree(axes[0], res["tree"])
    _image(axes[1], res["target"], grid, "partition (black: class 1)")
    im = _image(axes[2], res["one_layer"], grid,
                f"one layer, six neurons\nmax error {res['one_layer_max_error']:.3f}",
                vmin=-0.5, vmax=1.5, cmap="RdGy_r")
    fig.colorbar(im, ax=axes[2], fraction=0.046)
    im = _image(axes[3], (res["one_layer"] - res["target"]).abs(), grid,
                "one layer: |error|", vmin=0, vmax=1, cmap="magma")
    fig.colorbar(im, ax=axes[3], fraction=0.046)
    _image(axes[4], res["two_layer"], grid,
           f"two layers (nodes, leaves)\nmax error {res['two_layer_max_error']:.3g}")
    fig.suptitle("Decision tree as a neural network (Maier et al. 2019, Fig. 3)")
    save_figure(fig, path)


def _plot_sweep(sweep: List[dict], config: Config, path: Path, e1: float) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.4), layout="constrained")
    ax = fig.subplots()
    ts = [s["right_threshold"] for s in sweep]
    ax.plot(ts, [s["one_layer_max_error"] for s in sweep], "o-", label="one layer")
    ax.plot(ts, [s["two_layer_max_error"] for s in sweep], "s-", label="two layers")
    ax.axhline(PAPER_MAX_ERROR, color="gray", ls="--", lw=1, label="paper: ~0.7")
    ax.axvline(config.left_threshold, color="gray", ls=":", lw=1,
               label="left child's threshold")
    ax.plot([config.right_threshold], [e1], "*", color="k", ms=11,
            label="the tree of Fig. 3 here")
    ax.set_xlabel("threshold of the right child on $x_2$")
    ax.set_ylabel("maximal error")
    ax.set_title(f"left child at $x_2 = {config.left_threshold:g}$", fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def run(config: Config, out: Path, *, device: torch.device, seeds: Sequence[int]) -> dict:
    """Compute both mappings, the sweep, the figures and the claims.

    Deterministic (no training, no seeds used) and computed on the CPU in float64 whatever
    ``device`` is: the least-squares fit of a 6-column matrix needs no accelerator.
    """
    out = Path(out)
    res = analyse(config)
    log.info("one layer: max error %.4f (paper ~%.1f); two layers: max error %.3g",
             res["one_layer_max_error"], PAPER_MAX_ERROR, res["two_layer_max_error"])
    _plot_basis(res, config.grid, out / "fig3_basis.png")
    _plot_approximations(res, config.grid, out / "fig3_approximations.png")

    sweep = []
    for t in config.sweep:
        r = analyse(Config(root_threshold=config.root_threshold,
                           left_threshold=config.left_threshold, right_threshold=t,
                           leaves=config.leaves, grid=config.grid, sweep=()))
        sweep.append({"right_threshold": t, "one_layer_max_error": r["one_layer_max_error"],
                      "two_layer_max_error": r["two_layer_max_error"]})
    if sweep:
        _plot_sweep(sweep, config, out / "fig3_sweep.png", e1=res["one_layer_max_error"])

    e1, e2 = res["one_layer_max_error"], res["two_layer_max_error"]
    return {
        "tree": {"root_x1": config.root_threshold, "left_x2": config.left_threshold,
                 "right_x2": config.right_threshold, "leaves": list(config.leaves)},
        "one_layer": {"max_error": e1, "rms_error": res["one_layer_rms_error"],
                      "misclassified_fraction": res["one_layer_misclassified_fraction"],
                      "output_weights": res["weights"].tolist()},
        "two_layer": {"max_error": e2},
        "sweep": sweep,
        "note": ("The paper's text gives no thresholds: this tree (x1 at "
                 f"{config.root_threshold:g}, x2 at {config.left_threshold:g} left and "
                 f"{config.right_threshold:g} right, XOR-like leaves) is our reading of Fig. 3. "
                 "The sweep gives the one-layer error for other right-child thresholds "
                 f"({min((s['one_layer_max_error'] for s in sweep), default=e1):.3g} to "
                 f"{max((s['one_layer_max_error'] for s in sweep), default=e1):.3g})."),
        "claims": [
            claim("Mapping the tree into one layer (six-neuron basis: inner nodes and their "
                  "inverses, least-squares output weights) leaves a maximal error close to 0.7",
                  e1 > 0.5 and abs(e1 - PAPER_MAX_ERROR) <= 0.1,
                  max_error=e1, paper=PAPER_MAX_ERROR,
                  misclassified_fraction=res["one_layer_misclassified_fraction"]),
            claim("The two-layer mapping (inner nodes, then leaves) represents the tree exactly "
                  "(maximal error 0)", e2 <= 1e-12, max_error=e2),
        ],
    }
