"""Parallel-to-fan beam conversion: the precision-learning network vs. interpolation rebinning.

Syben, Stimpel, Lommen, Würfl, Dörfler, Maier, "Deriving neural network architectures using
precision learning: parallel-to-fan beam conversion", GCPR 2018. The paper derives the network
``p_fan = A_fan A_par^T K p_par`` from ``p_fan = A_fan (A_par^T A_par)^-1 A_par^T p_par`` with the
inverse replaced by a learned filter ``K`` (:class:`recon.nets.rebinning.ParallelToFanNet`),
trains only ``K`` on synthetic data, and reports that it beats ray-by-ray interpolation rebinning
and gives sharper images from the same number of parallel projections.

What is computed (per seed, per number of parallel views ``V``):

1. **Data.** Random-ellipse phantoms (:func:`recon.data.ellipses.random_ellipses`) with *exact*
   analytic parallel and fan sinograms (no inverse crime: the network's operators are discrete
   Joseph projectors, the data are line integrals of ellipses).
2. **Training** (synthetic phantoms only): the filter response (the only parameters), initialised
   from the Ram-Lak filter, minimises the relative mean squared error between the network output
   and the exact fan sinogram, with a plain mini-batch Adam loop in this module
   (:func:`train_filter`; a 1-D filter with a few hundred parameters needs nothing more), with a
   cosine learning-rate decay. The trained response is checkpointed atomically per seed and ``V``
   and reused on a rerun.
3. **Evaluation** on held-out phantoms (other random draws) and on a resolution phantom made of
   ellipses (an edge disk, two groups of three bars, small points; exact sinogram):
   the relative L2 sinogram error against the exact fan sinogram, for the network and for
   bilinear interpolation rebinning (:class:`recon.rebinning.InterpolationRebinning`);
   fan FBP (:class:`operators.FBP`, Ram-Lak) of converted data against the FBP of directly
   measured (exact) fan data and against the phantom (PSNR in the field of view);
   sharpness of the FBP images of the resolution phantom: the 10-90 % width of the radial edge
   spread function of the edge disk (mm), its MTF50 (cycles/mm) and the bar modulation.

Claims (``metrics["claims"]``), per ``V``: "the network is more accurate than interpolation"
(mean held-out sinogram error) and "the network is sharper than interpolation" (edge 10-90 %
width of the FBP of converted resolution-phantom data), with the numbers, whichever way they go.

Adaptation, not an exact reproduction: the paper's phantoms, image size and detector are not
reproduced; here a square grid of ``image_size`` pixels, a parallel detector with the pixel pitch
(extended to cover every fan ray), and a 2 pi fan scan (flat detector by default) with
magnification 2 and the detector pitch of one pixel at the isocentre.
"""

from __future__ import annotations

import io
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

import operators as op
from recon.data.ellipses import random_ellipses
from recon.metrics import psnr
from recon.nets.rebinning import ParallelToFanNet, ram_lak_response, ramp_response
from recon.rebinning import InterpolationRebinning

from .common import check_config, claim, load_cache, mean_std, save_figure, write_bytes_atomic

NAME = "rebinning"
DESCRIPTION = ("parallel-to-fan conversion: precision-learning network (learned filter + "
               "back-projection + fan projection) vs. interpolation rebinning")
REFERENCE = "Syben et al., GCPR 2018 (LNCS 11269), parallel-to-fan beam conversion"

log = logging.getLogger(__name__)

_DETECTORS = ("flat", "curved")


@dataclass(frozen=True)
class Config:
    """Knobs of the rebinning experiment (defaults: the full configuration).

    Attributes
    ----------
    image_size : int
        The network's image grid (the intermediate of ``A_par^T`` and ``A_fan``) is
        ``image_size x image_size`` pixels of ``pixel_mm``; its inscribed disk holds the phantoms.
    pixel_mm : float
        Pixel pitch (mm) of that grid.
    detector_pitch_mm : float
        Parallel detector pitch and fan detector pitch at the isocentre (mm); the data's
        resolution. A pixel smaller than this lowers the discretisation error of the network's
        fan re-projection (``A_fan`` of a pixel image vs. exact line integrals).
    parallel_views : tuple of int
        Numbers of parallel views over ``[0, pi)`` compared (one trained filter each).
    fan_views : int
        Fan views over ``[0, 2 pi)`` of the output geometry (fixed).
    fan_detector : ``"flat"`` or ``"curved"``
    source_factor : float
        Source-to-isocentre distance as a multiple of the grid's corner radius.
    magnification : float
        Source-to-detector over source-to-isocentre distance.
    train_phantoms, test_phantoms : int
        Random-ellipse phantoms for training and held-out evaluation (drawn per seed).
    batch_size, steps, lr : int, int, float
        Adam mini-batch size, steps, and learning rate relative to the largest entry of the
        initial response (cosine decay to 1 % of it).
    filter_init : ``"ram-lak"`` or ``"ramp"``
    """

    image_size: int = 256
    pixel_mm: float = 1.0
    detector_pitch_mm: float = 1.0
    parallel_views: Tuple[int, ...] = (720, 360, 180)
    fan_views: int = 720
    fan_detector: str = "flat"
    source_factor: float = 2.0
    magnification: float = 2.0
    train_phantoms: int = 128
    test_phantoms: int = 16
    batch_size: int = 8
    steps: int = 400
    lr: float = 0.01
    filter_init: str = "ram-lak"

    def __post_init__(self):
        check_config(self)
        object.__setattr__(self, "parallel_views", tuple(int(v) for v in self.parallel_views))
        if self.image_size < 24:
            raise ValueError(f"image_size must be >= 24 (the resolution phantom needs room), "
                             f"got {self.image_size}")
        if not self.parallel_views or min(self.parallel_views) < 2:
            raise ValueError(f"parallel_views must be counts >= 2, got {self.parallel_views}")
        if self.fan_detector not in _DETECTORS:
            raise ValueError(f"fan_detector must be one of {_DETECTORS}, got "
                             f"{self.fan_detector!r}")
        if self.filter_init not in ("ram-lak", "ramp"):
            raise ValueError(f"filter_init must be 'ram-lak' or 'ramp', got {self.filter_init!r}")
        if not self.source_factor > 1:
            raise ValueError(f"source_factor must be > 1, got {self.source_factor}")
        if not self.magnification > 1:
            raise ValueError(f"magnification must be > 1, got {self.magnification}")


PRESETS = {
    "tiny": Config(image_size=32, pixel_mm=2.0, detector_pitch_mm=2.0, parallel_views=(48, 24), fan_views=64,
                   train_phantoms=6, test_phantoms=2, batch_size=3, steps=40, lr=0.003),
    "quick": Config(image_size=96, pixel_mm=1.0, parallel_views=(360, 180, 90), fan_views=360,
                    train_phantoms=48, test_phantoms=8, batch_size=8, steps=300),
    "full": Config(),
}
DEFAULT_SEEDS = {"tiny": 1, "quick": 1, "full": 3}


# ---------------------------------------------------------------------------------------------
# geometry and phantoms
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    grid: op.ImageGrid
    fan: op.FanGeometry
    object_radius: float  # mm: every phantom lies inside this centred disk
    detector_pitch: float  # mm: parallel pitch, fan pitch at the isocentre

    def parallel(self, views: int) -> op.ParallelGeometry:
        """``views`` over ``[0, pi)``, pixel pitch, wide enough for every fan ray (interpolation
        rebinning needs ``|s|`` of each fan ray within the detector centres)."""
        _, s = self.fan.lines()
        pitch = self.detector_pitch
        half = max(float(np.abs(s).max()), self.grid.radius)
        count = 2 * int(math.ceil(half / pitch + 1e-9)) + 1
        return op.ParallelGeometry.full_scan(views, count, pitch)


def make_setup(config: Config) -> Setup:
    """The grid and the fan geometry (field of view = the grid's corner circle)."""
    px = float(config.pixel_mm)
    grid = op.ImageGrid((config.image_size, config.image_size), (px, px))
    r = config.source_factor * grid.radius
    d = config.magnification * r
    gamma = math.asin(grid.radius / r)
    umax = d * math.tan(gamma) if config.fan_detector == "flat" else d * gamma
    pitch = config.detector_pitch_mm * config.magnification
    count = 2 * int(math.ceil(umax / pitch)) + 1
    fan = op.FanGeometry.full_scan(config.fan_views, count, pitch, r, d,
                                   detector=config.fan_detector)
    return Setup(grid, fan, 0.5 * config.image_size * px * 0.95, config.detector_pitch_mm)


def resolution_phantom(setup: Setup) -> Tuple[op.EllipsePhantom, Dict]:
    """Edge disk, two groups of three bars (2 and 3 detector pitches wide), four small points.

    Returns the phantom (exact sinograms) and its layout: ``edge`` ``(cx, cy, radius)`` (mm),
    ``bars`` a list of ``{"width", "y", "centres"}`` (mm), ``points`` (mm) and the values.
    """
    px = setup.detector_pitch
    r = setup.object_radius
    background, step = 0.2, 0.5
    ellipses = [op.Ellipse(background, (0.0, 0.0), (0.95 * r, 0.95 * r))]
    edge = (0.0, 0.45 * r, 0.35 * r)
    ellipses.append(op.Ellipse(step, edge[:2], (edge[2], edge[2])))
    bars = []
    for pitches, x0 in ((2.0, -0.45 * r), (3.0, 0.45 * r)):
        w = pitches * px
        y0 = -0.42 * r
        centres = [x0 + k * 2 * w for k in (-1, 0, 1)]
        for cx in centres:
            ellipses.append(op.Ellipse(step, (cx, y0), (w / 2, 2.5 * w)))
        bars.append({"pitches": pitches, "width": w, "y": y0, "centres": centres})
    points = [(-0.72 * r, 0.0), (0.72 * r, 0.0), (0.0, -0.8 * r), (-0.55 * r, 0.55 * r)]
    for p in points:
        ellipses.append(op.Ellipse(1.0, p, (0.6 * px, 0.6 * px)))
    layout = {"edge": edge, "bars": bars, "points": points, "background": background,
              "step": step}
    return op.EllipsePhantom(tuple(ellipses)), layout


def draw_phantoms(rng: np.random.Generator, count: int, radius: float):
    return [random_ellipses(rng, radius) for _ in range(count)]


def exact_sinograms(phantoms, geometry, dtype=torch.float32) -> torch.Tensor:
    """``(count, views, detectors)`` analytic line integrals."""
    return torch.stack([p.sinogram(geometry, dtype=torch.float64) for p in phantoms]).to(dtype)


# ---------------------------------------------------------------------------------------------
# sharpness measures
# ---------------------------------------------------------------------------------------------
def edge_spread(image: np.ndarray, grid: op.ImageGrid, centre, radius: float,
                half_width: float, bin_width: float):
    """Radial edge spread function of a disk edge (oversampled by binning pixel radii).

    Parameters
    ----------
    image : (H, W) array
    centre, radius : disk centre ``(x, y)`` and radius (mm).
    half_width, bin_width : float
        Distances from the edge used (mm) and the radial bin width (mm; a fraction of a pixel
        oversamples the ESF, every bin collects pixels from all around the circle).

    Returns ``(r, esf)``: bin centres (mm, distance from the edge, positive outward) and the mean
    pixel value per bin.
    """
    xx, yy = grid.meshgrid()
    dist = np.hypot(xx - centre[0], yy - centre[1]) - radius
    h = float(half_width)
    sel = np.abs(dist) <= h
    edges = np.arange(-h, h + 1e-9, float(bin_width))
    which = np.digitize(dist[sel], edges) - 1
    vals = image[sel]
    n = len(edges) - 1
    sums = np.bincount(which, weights=vals, minlength=n)[:n]
    counts = np.bincount(which, minlength=n)[:n]
    ok = counts > 0
    centres = 0.5 * (edges[1:] + edges[:-1])
    return centres[ok], sums[ok] / counts[ok]


def edge_width_10_90(r: np.ndarray, esf: np.ndarray, plateau_mm: float) -> float:
    """10-90 % rise distance (mm) of a falling ESF; plateaus are the means beyond ``plateau_mm``."""
    hi = esf[r <= -plateau_mm].mean()
    lo = esf[r >= plateau_mm].mean()
    e = (esf - lo) / (hi - lo)

    def first_below(level):
        idx = np.nonzero(e < level)[0]
        idx = idx[r[idx] > -plateau_mm]
        if idx.size == 0 or idx[0] == 0:
            return float("nan")
        i = idx[0]
        return float(r[i - 1] + (e[i - 1] - level) / (e[i - 1] - e[i]) * (r[i] - r[i - 1]))

    return first_below(0.1) - first_below(0.9)


def mtf50(r: np.ndarray, esf: np.ndarray) -> float:
    """Frequency (cycles/mm) where the MTF (|FFT| of the Hann-windowed LSF) falls to 0.5."""
    lsf = -np.diff(esf)
    lsf = lsf * np.hanning(lsf.size)
    step = float(r[1] - r[0])
    pad = 8 * lsf.size
    mtf = np.abs(np.fft.rfft(lsf, n=pad))
    mtf = mtf / mtf[0]
    f = np.fft.rfftfreq(pad, d=step)
    below = np.nonzero(mtf < 0.5)[0]
    if below.size == 0:
        return float("nan")
    i = below[0]
    return float(f[i - 1] + (mtf[i - 1] - 0.5) / (mtf[i - 1] - mtf[i]) * (f[i] - f[i - 1]))


def bar_modulation(image: np.ndarray, grid: op.ImageGrid, bars: Dict, step: float) -> float:
    """Mean value at the bar centres minus the mean at the two gaps, over the true ``step``."""
    from scipy.ndimage import map_coordinates

    y, xs = bars["y"], bars["centres"]
    gaps = [0.5 * (xs[0] + xs[1]), 0.5 * (xs[1] + xs[2])]
    h, wd = grid.shape
    dy, dx = grid.spacing

    def sample(x):
        cols = np.asarray(x) / dx + (wd - 1) / 2.0
        rows = (h - 1) / 2.0 - y / dy + np.zeros_like(cols)
        return map_coordinates(image, [rows, cols], order=1)

    return float((sample(xs).mean() - sample(gaps).mean()) / step)


def _edge_esf(image: np.ndarray, setup: Setup, layout: Dict):
    cx, cy, radius = layout["edge"]
    pitch = max(setup.detector_pitch, setup.grid.spacing[1])
    return edge_spread(image, setup.grid, (cx, cy), radius, half_width=6.0 * pitch,
                       bin_width=0.25 * setup.grid.spacing[1])


def sharpness(image: np.ndarray, setup: Setup, layout: Dict) -> Dict[str, float]:
    """Edge 10-90 % width (mm), MTF50 (cycles/mm) and bar modulations of an FBP image."""
    pitch = max(setup.detector_pitch, setup.grid.spacing[1])
    r, esf = _edge_esf(image, setup, layout)
    out = {"edge_10_90_mm": edge_width_10_90(r, esf, 3.5 * pitch), "mtf50_per_mm": mtf50(r, esf)}
    for bars in layout["bars"]:
        key = f"bar_modulation_{bars['pitches']:g}_pitches"
        out[key] = bar_modulation(image, setup.grid, bars, layout["step"])
    return out


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------
def train_filter(net: ParallelToFanNet, inputs: torch.Tensor, targets: torch.Tensor, *,
                 steps: int, batch_size: int, lr: float, generator: torch.Generator) -> List[float]:
    """Mini-batch Adam on ``||net(p_par) - p_fan||^2 / ||p_fan||^2`` (only the filter learns).

    ``inputs`` ``(n, views, detectors)`` parallel, ``targets`` ``(n, fan views, fan detectors)``.
    The learning rate is ``lr`` times the largest initial response entry, with a linear warm-up
    over the first 10 % of the steps (Adam's first steps move every frequency by the full rate,
    which without warm-up throws the low frequencies far off) and a cosine decay to 1 %.
    Returns the loss of every step.
    """
    params = [p for p in net.parameters() if p.requires_grad]
    scale = float(net.filter.response.detach().abs().max()) or 1.0
    opt = torch.optim.Adam(params, lr=lr * scale)
    warm = max(1, steps // 10)

    def factor(k: int) -> float:
        return min(1.0, (k + 1) / warm) * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * k / steps)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    n = inputs.shape[0]
    losses = []
    for _ in range(steps):
        idx = torch.randperm(n, generator=generator)[: min(batch_size, n)]
        idx = idx.to(inputs.device)
        x, y = inputs[idx], targets[idx]
        opt.zero_grad(set_to_none=True)
        loss = (net(x) - y).square().sum() / y.square().sum()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    return losses


def _save_response(path: Path, response: torch.Tensor, losses: List[float]) -> None:
    buf = io.BytesIO()
    torch.save({"response": response.detach().cpu(), "losses": losses}, buf)
    write_bytes_atomic(path, buf.getvalue())


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
def _plot_filters(filters: Dict[int, Dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), layout="constrained")
    ax, ax2 = fig.subplots(1, 2)
    first = next(iter(filters.values()))
    f = first["freq"]
    ax.plot(f, first["ramp"], "k--", lw=1, label="analytic ramp |f|")
    ax.plot(f, first["ram_lak"], "k:", lw=1.2, label="Ram-Lak (initialisation)")
    for v, item in filters.items():
        ax.plot(item["freq"], item["learned"], lw=1.2, label=f"learned, {v} views")
        ax2.semilogy(item["losses"], lw=1, label=f"{v} views")
    ax.set_xlabel("frequency (cycles/mm)")
    ax.set_ylabel("response (1/mm)")
    ax.set_title("filter: learned vs. analytic")
    ax.legend(fontsize=8)
    ax2.set_xlabel("Adam step")
    ax2.set_ylabel("relative squared sinogram error")
    ax2.set_title("training loss")
    ax2.legend(fontsize=8)
    save_figure(fig, path)


def _plot_sinogram_errors(maps: Dict[int, Dict[str, np.ndarray]], path: Path) -> None:
    from matplotlib.figure import Figure

    rows = len(maps)
    fig = Figure(figsize=(8, 2.6 * rows + 0.4), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, 2))
    # colour scale: the 99.5th percentile of |error| (a few tangent rays at edges are larger)
    vmax = max(float(np.percentile(np.abs(m), 99.5)) for item in maps.values()
               for m in item.values()) or 1.0
    for row, (v, item) in zip(axes, maps.items()):
        for ax, (name, m) in zip(row, item.items()):
            im = ax.imshow(m, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
            ax.set_title(f"{name}, {v} parallel views", fontsize=9)
            ax.set_xlabel("fan detector")
            ax.set_ylabel("fan view")
    fig.colorbar(im, ax=axes, shrink=0.8, extend="both",
                 label="converted - exact fan sinogram (clipped at the 99.5th percentile)")
    fig.suptitle("Sinogram error maps (held-out phantom 0)")
    save_figure(fig, path)


def _plot_reconstructions(images: Dict[str, np.ndarray], path: Path) -> None:
    from matplotlib.figure import Figure

    names = list(images)
    cols = 4
    rows = int(math.ceil(len(names) / cols))
    fig = Figure(figsize=(3.0 * cols, 3.1 * rows), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, cols)).reshape(-1)
    vmin, vmax = 0.0, 1.0
    for ax in axes:
        ax.axis("off")
    for ax, name in zip(axes, names):
        ax.imshow(images[name], cmap="gray", vmin=vmin, vmax=vmax)
        ax.set_title(name, fontsize=9)
    fig.suptitle("Fan FBP (Ram-Lak) of the resolution phantom")
    save_figure(fig, path)


def _plot_sharpness(views: List[int], table: Dict[str, Dict[int, Dict]], esfs, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.8), layout="constrained")
    ax0, ax1, ax2 = fig.subplots(1, 3)
    styles = {"network": "o-", "interpolation": "s-", "direct fan": "k--"}
    for method, per_view in table.items():
        ys = [per_view[v]["edge_10_90_mm"] for v in views]
        ax0.plot(views, ys, styles.get(method, "o-"), label=method)
        bars = [k for k in per_view[views[0]] if k.startswith("bar_modulation")]
        ax1.plot(views, [per_view[v][bars[0]] for v in views], styles.get(method, "o-"),
                 label=method)
    for ax in (ax0, ax1):
        ax.set_xscale("log")
        ax.set_xticks(views, [str(v) for v in views])
        ax.minorticks_off()
        ax.set_xlabel("parallel views")
    ax0.set_ylabel("edge 10-90 % width (mm)")
    ax0.set_title("edge spread (smaller is sharper)")
    ax0.legend(fontsize=8)
    ax1.set_ylabel("modulation / true step")
    ax1.set_title("finest bars (2 detector pitches)")
    for name, (r, e) in esfs.items():
        ax2.plot(r, e, label=name, lw=1)
    ax2.set_xlabel("distance from the edge (mm)")
    ax2.set_ylabel("FBP value")
    ax2.set_title(f"edge spread functions ({min(views)} views)")
    ax2.legend(fontsize=8)
    save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# the experiment
# ---------------------------------------------------------------------------------------------
def _rel(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Relative L2 error per item of a batch ``(n, ...)``."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    return ((a - b).norm(dim=1) / b.norm(dim=1)).cpu().numpy()


def run(config: Config, out: Path, *, device: torch.device, seeds: Sequence[int]) -> dict:
    """Train one filter per seed and view count, evaluate, plot, state the claims."""
    out = Path(out)
    device = torch.device(device)
    t_start = time.time()
    setup = make_setup(config)
    grid, fan = setup.grid, setup.fan
    a_fan = op.XRayTransform(grid, fan).to(device)
    fbp = op.FBP(grid, fan).to(device)
    res_phantom, layout = resolution_phantom(setup)
    res_truth = res_phantom.rasterize(grid).numpy()
    res_fan = res_phantom.sinogram(fan, dtype=torch.float32).to(device)
    xx, yy = grid.meshgrid()
    fov = torch.from_numpy(np.hypot(xx, yy) <= setup.object_radius)
    views = list(config.parallel_views)
    seeds = [int(s) for s in seeds]

    with torch.no_grad():
        res_direct = fbp(res_fan).cpu().numpy()
    direct_sharp = sharpness(res_direct, setup, layout)

    per_seed: Dict[int, Dict[int, Dict]] = {}
    figs_filters, figs_errors, figs_images, figs_esf = {}, {}, {}, {}
    figs_images["phantom"] = res_truth
    figs_images["FBP of exact fan data"] = res_direct
    for seed in seeds:
        rng = np.random.default_rng(1000 + seed)
        train = draw_phantoms(rng, config.train_phantoms, setup.object_radius)
        test = draw_phantoms(rng, config.test_phantoms, setup.object_radius)
        fan_train = exact_sinograms(train, fan).to(device)
        fan_test = exact_sinograms(test, fan).to(device)
        truth_test = torch.stack([p.rasterize(grid, dtype=torch.float32) for p in test])
        with torch.no_grad():
            direct_test = fbp(fan_test).cpu()
        direct_psnr = psnr(direct_test, truth_test, 1.0, mask=fov).numpy()
        per_seed[seed] = {}
        for v in views:
            t0 = time.time()
            par = setup.parallel(v)
            net = ParallelToFanNet(op.XRayTransform(grid, par), a_fan,
                                   filter_init=config.filter_init).to(device)
            interp = InterpolationRebinning(par, fan).to(device)
            ckpt = out / f"filter_seed{seed}_views{v}.pt"
            state = load_cache(ckpt)
            if state is not None:
                with torch.no_grad():
                    net.filter.response.copy_(state["response"])
                losses = list(state["losses"])
                log.info("seed %d, %d views: filter loaded from %s", seed, v, ckpt.name)
            else:
                par_train = exact_sinograms(train, par).to(device)
                gen = torch.Generator().manual_seed(seed)
                losses = train_filter(net, par_train, fan_train, steps=config.steps,
                                      batch_size=config.batch_size, lr=config.lr, generator=gen)
                _save_response(ckpt, net.filter.response, losses)
            par_test = exact_sinograms(test, par).to(device)
            res_par = res_phantom.sinogram(par, dtype=torch.float32).to(device)
            with torch.no_grad():
                conv = {"network": net(par_test), "interpolation": interp(par_test)}
                res_conv = {"network": net(res_par), "interpolation": interp(res_par)}
                init = ParallelToFanNet(net.parallel_operator, a_fan,
                                        filter_init=config.filter_init).to(device)
                conv_init = init(par_test)
            row = {"seconds": time.time() - t0, "final_loss": losses[-1],
                   "initial_loss": losses[0],
                   "direct_fan": {"psnr_db": mean_std(direct_psnr), **direct_sharp},
                   "ram_lak_untrained_sinogram_rel_error": mean_std(_rel(conv_init, fan_test))}
            for name, sino in conv.items():
                with torch.no_grad():
                    images = fbp(sino).cpu()
                    res_img = fbp(res_conv[name]).cpu().numpy()
                row[name] = {
                    "sinogram_rel_error": mean_std(_rel(sino, fan_test)),
                    "resolution_sinogram_rel_error": float(_rel(res_conv[name][None],
                                                                res_fan[None])[0]),
                    "fbp_rel_error_vs_direct": mean_std(_rel(images, direct_test)),
                    "psnr_db": mean_std(psnr(images, truth_test, 1.0, mask=fov).numpy()),
                    **sharpness(res_img, setup, layout),
                }
                if seed == seeds[0]:
                    figs_images[f"{name}, {v} views"] = res_img
                    if v == min(views):
                        figs_esf[name] = _edge_esf(res_img, setup, layout)
                    figs_errors.setdefault(v, {})[name] = (sino[0] - fan_test[0]).cpu().numpy()
            per_seed[seed][v] = row
            if seed == seeds[0]:
                padded = net.filter.padded
                du = par.detector_spacing
                figs_filters[v] = {
                    "freq": np.fft.rfftfreq(padded, d=du),
                    "learned": net.filter.response.detach().cpu().numpy(),
                    "ram_lak": ram_lak_response(padded, du),
                    "ramp": ramp_response(padded, du), "losses": losses}
            log.info("seed %d, %d views: sinogram error net %.4f interp %.4f; edge 10-90 net "
                     "%.3f interp %.3f direct %.3f mm (%.1f s)", seed, v,
                     row["network"]["sinogram_rel_error"]["mean"],
                     row["interpolation"]["sinogram_rel_error"]["mean"],
                     row["network"]["edge_10_90_mm"], row["interpolation"]["edge_10_90_mm"],
                     direct_sharp["edge_10_90_mm"], time.time() - t0)
    if figs_esf:
        figs_esf["direct fan"] = _edge_esf(res_direct, setup, layout)

    # ---- summary over seeds ----
    table = {}
    claims = []
    sharp_table = {"network": {}, "interpolation": {}, "direct fan": {}}
    for v in views:
        rows = [per_seed[s][v] for s in seeds]
        entry = {}
        for method in ("network", "interpolation"):
            entry[method] = {
                "sinogram_rel_error": mean_std(r[method]["sinogram_rel_error"]["mean"]
                                               for r in rows),
                "fbp_rel_error_vs_direct": mean_std(r[method]["fbp_rel_error_vs_direct"]["mean"]
                                                    for r in rows),
                "psnr_db": mean_std(r[method]["psnr_db"]["mean"] for r in rows),
                "edge_10_90_mm": mean_std(r[method]["edge_10_90_mm"] for r in rows),
                "mtf50_per_mm": mean_std(r[method]["mtf50_per_mm"] for r in rows),
            }
            for key in rows[0][method]:
                if key.startswith("bar_modulation"):
                    entry[method][key] = mean_std(r[method][key] for r in rows)
            sharp_table[method][v] = {k: (val["mean"] if isinstance(val, dict) else val)
                                      for k, val in entry[method].items()}
        entry["direct_fan"] = {"psnr_db": mean_std(r["direct_fan"]["psnr_db"]["mean"]
                                                   for r in rows), **direct_sharp}
        entry["ram_lak_untrained_sinogram_rel_error"] = mean_std(
            r["ram_lak_untrained_sinogram_rel_error"]["mean"] for r in rows)
        sharp_table["direct fan"][v] = direct_sharp
        table[str(v)] = entry
        net_err = entry["network"]["sinogram_rel_error"]["mean"]
        int_err = entry["interpolation"]["sinogram_rel_error"]["mean"]
        claims.append(claim(
            f"{v} parallel views: the network is more accurate than interpolation rebinning "
            "(mean relative L2 error against the exact fan sinogram, held-out phantoms)",
            net_err < int_err, views=v, network=net_err, interpolation=int_err,
            network_fbp_psnr_db=entry["network"]["psnr_db"]["mean"],
            interpolation_fbp_psnr_db=entry["interpolation"]["psnr_db"]["mean"]))
        net_w = entry["network"]["edge_10_90_mm"]["mean"]
        int_w = entry["interpolation"]["edge_10_90_mm"]["mean"]
        claims.append(claim(
            f"{v} parallel views: the network is sharper than interpolation rebinning "
            "(10-90 % edge width of the fan FBP of converted resolution-phantom data)",
            net_w < int_w, views=v, network_edge_mm=net_w, interpolation_edge_mm=int_w,
            direct_fan_edge_mm=direct_sharp["edge_10_90_mm"],
            network_mtf50=entry["network"]["mtf50_per_mm"]["mean"],
            interpolation_mtf50=entry["interpolation"]["mtf50_per_mm"]["mean"]))

    _plot_filters(figs_filters, out / "filters.png")
    _plot_sinogram_errors(figs_errors, out / "sinogram_errors.png")
    _plot_reconstructions(figs_images, out / "reconstructions.png")
    _plot_sharpness(views, sharp_table, figs_esf, out / "sharpness.png")

    return {
        "setup": {"grid": repr(grid), "fan_geometry": {
            "views": fan.views, "detector_count": fan.detector_count,
            "detector_spacing": fan.detector_spacing, "source_to_isocenter":
            fan.source_to_isocenter, "source_to_detector": fan.source_to_detector,
            "detector": fan.detector},
            "parallel_detector_count": setup.parallel(views[0]).detector_count,
            "object_radius_mm": setup.object_radius,
            "training": "plain mini-batch Adam in experiments/rebinning.py (train_filter); only "
                        "the filter response is trained",
            "filter_parametrisation": "real frequency response on the rfft grid of the "
                                      "zero-padded detector axis"},
        "per_view_count": table,
        "per_seed": {str(s): {str(v): per_seed[s][v] for v in views} for s in seeds},
        "claims": claims,
        "seconds": time.time() - t_start,
    }
