"""Trainable FBP for fan-beam short scans and limited-angle arcs (Würfl et al. 2016 / 2018).

A fan-beam (flat detector) FBP whose weight per sinogram sample is learned
(:class:`recon.nets.TrainableFBP`, back-projection fixed, filter Ram-Lak and by default fixed as
in Würfl et al. 2018) from image-domain MSE on random-ellipse phantoms with exact sinograms
(:class:`recon.data.EllipsesDataset`), trained with :class:`recon.train.Trainer` (Adam, cosine
decay, validation after each epoch, the best validation weights kept).

(a) **Short scan** (``pi + 2 gamma_max``), weights initialised with cosine x Parker: the learned
    redundancy weights are shown next to Parker's with their difference, and the held-out error is
    compared with FBP + Parker.
(b) **Limited angle** (``limited_arc_deg`` of source rotation, less than a short scan), weights
    initialised with cosine x count-based redundancy weights (each measured line counts once):
    the learned weights improve the held-out reconstruction (PSNR / RMSE).

What is reproduced and what is adapted
--------------------------------------
Würfl et al. (TMI 2018) train on clinical / anthropomorphic data with a 2D fan beam and report
that learned weights compensate part of the mass lost in limited-angle scans. We use random
ellipses (values in [0, 1], read as 1/mm on a 1 mm grid), noise-free exact sinograms, our own
geometry sizes, and no extra regularisation of the weights. Numbers are not comparable with the
paper's; the claims checked are the qualitative ones.

Outputs: ``weights_short_scan.png``, ``weights_limited_angle.png``, ``reconstructions.png``,
``metrics.json`` (per seed and mean / std over seeds, claims).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import torch

from experiments.common import check_config, claim, run_seeds, save_figure
from experiments.learned_filter import ellipse_splits, train_model
from operators import FanGeometry, ImageGrid, shepp_logan
from operators.fbp import FBP

NAME = "trainable-fbp"
DESCRIPTION = ("Trainable FBP (learned sinogram weights): fan-beam short scan vs Parker, and a "
               "limited-angle arc vs count-based weights")
REFERENCE = ("T. Würfl et al., 'Deep learning computed tomography', MICCAI 2016; T. Würfl et al., "
             "'Deep learning computed tomography: learning projection-domain weights from image "
             "domain in limited angle problems', IEEE TMI 37(6), 2018")

#: Parker's weights are optimal for a short scan; the learned ones start there and may only
#: drift by training noise: this much PSNR below Parker still counts as "as well as".
PARKER_TOLERANCE_DB = 0.1

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    """Every knob of the experiment; the defaults are the full configuration.

    Attributes
    ----------
    size : int
        Image ``size x size`` pixels of 1 mm.
    source_to_isocenter, source_to_detector : float
        In units of ``size`` mm (``R = 2 size``, ``D = 3 size`` by default); the flat detector's
        pitch is the pixel size magnified (``D / R`` mm) and it covers the image's corners.
    short_views : int
        Views over the short scan ``pi + 2 gamma_max`` (ends included).
    limited_arc_deg : float
        Source rotation of the limited-angle scan (degrees, below the short scan).
    limited_views : int
        Views over that arc.
    train_count, val_count, test_count : int
        Random-ellipse phantoms per split.
    epochs, batch_size, lr : training (Adam, cosine decay to ``lr / 100``, no clipping).
    learn_filter : bool
        Also learn the filter (Würfl et al. 2016); ``False``: weights only (2018).
    """

    size: int = 256
    source_to_isocenter: float = 2.0
    source_to_detector: float = 3.0
    short_views: int = 360
    limited_arc_deg: float = 180.0
    limited_views: int = 300
    train_count: int = 256
    val_count: int = 32
    test_count: int = 64
    epochs: int = 40
    batch_size: int = 16
    lr: float = 1e-2
    learn_filter: bool = False

    def __post_init__(self):
        check_config(self)
        if not 1 < self.source_to_isocenter < self.source_to_detector:
            raise ValueError(f"Config.source_to_isocenter ({self.source_to_isocenter!r}) must "
                             f"exceed 1 (the image) and be below source_to_detector "
                             f"({self.source_to_detector!r})")
        if not 0 < self.limited_arc_deg < 360:
            raise ValueError(f"Config.limited_arc_deg must be in (0, 360), got "
                             f"{self.limited_arc_deg!r}")


PRESETS = {
    "tiny": Config(size=32, short_views=30, limited_views=24, train_count=8, val_count=4,
                   test_count=4, epochs=3, batch_size=4),
    "quick": Config(size=128, short_views=160, limited_views=130, train_count=96,
                    val_count=16, test_count=32, epochs=30, batch_size=16),
    "full": Config(),
}


# ------------------------------------------------------------------------------ set-up
def geometries(config: Config):
    """``(grid, short_scan, limited_angle)`` fan geometries with a flat detector."""
    if not 0 < config.limited_arc_deg < 360:
        raise ValueError(f"limited_arc_deg must be in (0, 360), got {config.limited_arc_deg!r}")
    size = config.size
    grid = ImageGrid(shape=(size, size), spacing=(1.0, 1.0))
    r = config.source_to_isocenter * size
    d = config.source_to_detector * size
    corner = size / math.sqrt(2.0)
    if r <= corner:
        raise ValueError(f"source_to_isocenter ({config.source_to_isocenter} x size) must put "
                         "the source outside the image")
    spacing = d / r
    gamma = math.asin(corner / r)
    detectors = int(math.ceil(2.0 * d * math.tan(gamma) / spacing)) + 2
    common = dict(detector_count=detectors, detector_spacing=spacing, source_to_isocenter=r,
                  source_to_detector=d, detector="flat")
    short = FanGeometry.short_scan(config.short_views, **common)
    arc = math.radians(config.limited_arc_deg)
    short_arc = math.pi + 2 * short.half_fan_angle
    if arc >= short_arc:
        raise ValueError(f"limited_arc_deg ({config.limited_arc_deg}) must be below the short "
                         f"scan ({math.degrees(short_arc):.1f} degrees)")
    limited = FanGeometry.limited_angle(arc, config.limited_views, **common)
    return grid, short, limited


def _psnr_rmse(model, y, x):
    from recon.metrics import psnr, rmse

    with torch.no_grad():
        out = model(y)
    return (psnr(out, x, data_range=1.0).numpy(), rmse(out, x).numpy(), out)


# ------------------------------------------------------------------------------ figures
def _plot_weights(geometry, reference, learned, ref_name, distance, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    u = geometry.detector_positions()
    beta = np.degrees(geometry.angle_array())
    ext = [u[0], u[-1], beta[-1], beta[0]]
    diff = learned - reference
    lim = max(float(np.abs(diff).max()), 1e-6)
    fig, ax = plt.subplots(1, 4, figsize=(18, 4), layout="constrained")
    vmax = max(1.0, float(learned.max()))
    for a, img, title in ((ax[0], reference, ref_name), (ax[1], learned, "learned")):
        im = a.imshow(img, aspect="auto", extent=ext, vmin=0.0, vmax=vmax, cmap="viridis")
        a.set_title(f"{title} redundancy weights")
        a.set_xlabel("detector u (mm)")
        fig.colorbar(im, ax=a)
    ax[0].set_ylabel("source angle (deg)")
    im = ax[2].imshow(diff, aspect="auto", extent=ext, vmin=-lim, vmax=lim, cmap="RdBu_r")
    ax[2].set_title(f"learned - {ref_name}\nrel. L2 distance {distance:.3f}")
    ax[2].set_xlabel("detector u (mm)")
    fig.colorbar(im, ax=ax[2])
    n = geometry.detector_count
    for j, style in ((n // 8, "-"), (n // 2, "--"), (n - 1 - n // 8, ":")):
        ax[3].plot(beta, reference[:, j], "k" + style, lw=1)
        ax[3].plot(beta, learned[:, j], "C1" + style, lw=1, label=f"u = {u[j]:.0f} mm")
    ax[3].set_xlabel("source angle (deg)")
    ax[3].set_title(f"columns: black {ref_name}, orange learned")
    ax[3].legend(fontsize=8)
    save_figure(fig, path)


def _plot_recons(images, titles, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(images)
    cols = len(images[0])
    fig, ax = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for i in range(rows):
        for j in range(cols):
            ax[i, j].imshow(images[i][j].numpy(), cmap="gray", vmin=0.0, vmax=1.0)
            ax[i, j].set_title(titles[i][j], fontsize=8)
            ax[i, j].axis("off")
    save_figure(fig, path)


# ------------------------------------------------------------------------------ run
def _train_case(name, grid, geometry, config, out, device, seed):
    from recon.nets.trainable_fbp import TrainableFBP

    t0 = time.perf_counter()
    splits = ellipse_splits(grid, geometry, (config.train_count, config.val_count,
                                             config.test_count), seed)
    log.info("%s, seed %d: data in %.1f s", name, seed, time.perf_counter() - t0)
    torch.manual_seed(seed)
    model = TrainableFBP(grid, geometry, learn_weights=True, learn_filter=config.learn_filter)
    result = train_model(model, splits, config, out / f"train-{name}-seed{seed}", device, seed)
    return model.to("cpu").eval(), splits, result


def _one_seed(config, out, device, seed, figures):
    from recon.nets.learned_filter import relative_distance

    grid, short, limited = geometries(config)
    metrics: Dict[str, float] = {}
    rows, titles = [], []
    sl = shepp_logan(0.45 * config.size)
    sl_img = sl.rasterize(grid).float()
    for name, geometry, ref_name in (("short_scan", short, "Parker"),
                                     ("limited_angle", limited, "count-based")):
        model, splits, result = _train_case(name, grid, geometry, config, out, device, seed)
        fbp = FBP(grid, geometry)
        y, x = splits["test"].tensors
        p_ref, r_ref, out_ref = _psnr_rmse(fbp, y, x)
        p_l, r_l, out_l = _psnr_rmse(model, y, x)
        ref_w, learned_w = model.reference_weights(), model.learned_weights()
        dist = relative_distance(learned_w, ref_w)
        metrics.update({
            f"{name}_psnr_{'parker' if name == 'short_scan' else 'count_based'}": float(
                p_ref.mean()),
            f"{name}_psnr_learned": float(p_l.mean()),
            f"{name}_rmse_{'parker' if name == 'short_scan' else 'count_based'}": float(
                r_ref.mean()),
            f"{name}_rmse_learned": float(r_l.mean()),
            f"{name}_psnr_gain_db": float((p_l - p_ref).mean()),
            f"{name}_weights_distance": dist,
            f"{name}_seconds_per_step": result.seconds_per_step,
            f"{name}_steps": result.steps,
        })
        if figures:
            _plot_weights(geometry, ref_w, learned_w, ref_name, dist,
                          out / f"weights_{name}.png")
            y_sl = sl.sinogram(geometry).float()
            with torch.no_grad():
                sl_ref, sl_l = fbp(y_sl), model(y_sl)
            from recon.metrics import psnr
            ps = [float(psnr(im, sl_img, data_range=1.0)) for im in (sl_ref, sl_l)]
            rows.append([x[0], out_ref[0], out_l[0], sl_img, sl_ref, sl_l])
            arc = (math.degrees(float(np.ptp(geometry.angle_array()))) if name == "short_scan"
                   else config.limited_arc_deg)
            titles.append([f"{name} ({arc:.0f} deg): test phantom",
                           f"FBP {ref_name}\nPSNR {p_ref[0]:.2f} dB",
                           f"trainable FBP\nPSNR {p_l[0]:.2f} dB",
                           "Shepp-Logan (not trained on)",
                           f"FBP {ref_name}\nPSNR {ps[0]:.2f} dB",
                           f"trainable FBP\nPSNR {ps[1]:.2f} dB"])
    if figures:
        _plot_recons(rows, titles, out / "reconstructions.png")
    return metrics


def run(config: Config, out: Path, *, device: torch.device, seeds: Sequence[int]) -> dict:
    """Train the short-scan and limited-angle models for each seed; return the metrics."""
    per_seed, summary, mean = run_seeds(
        config, Config, out, seeds,
        lambda folder, seed, figures: _one_seed(config, folder, device, seed, figures=figures))
    close = 0.25
    claims = [
        claim("learned weights improve limited-angle fan-beam FBP over the count-based "
              "weights on held-out phantoms (PSNR gain > 0)",
              mean["limited_angle_psnr_gain_db"] > 0.0,
              arc_deg=config.limited_arc_deg,
              psnr_count_based=mean["limited_angle_psnr_count_based"],
              psnr_learned=mean["limited_angle_psnr_learned"],
              rmse_count_based=mean["limited_angle_rmse_count_based"],
              rmse_learned=mean["limited_angle_rmse_learned"],
              psnr_gain_db=mean["limited_angle_psnr_gain_db"],
              psnr_gain_std=summary["limited_angle_psnr_gain_db"]["std"],
              seeds=len(seeds)),
        claim(f"on a short scan the learned weights stay close to Parker's (relative L2 "
              f"distance < {close}) and reconstruct as well as FBP with Parker weights (PSNR "
              f"within {PARKER_TOLERANCE_DB} dB of it or above)",
              mean["short_scan_weights_distance"] < close
              and mean["short_scan_psnr_gain_db"] >= -PARKER_TOLERANCE_DB,
              weights_distance=mean["short_scan_weights_distance"],
              psnr_parker=mean["short_scan_psnr_parker"],
              psnr_learned=mean["short_scan_psnr_learned"],
              psnr_gain_db=mean["short_scan_psnr_gain_db"], threshold=close,
              tolerance_db=PARKER_TOLERANCE_DB),
    ]
    return {"per_seed": per_seed, "summary": summary, "claims": claims}
