"""Classical reconstruction baselines on the sparse-view ellipse protocol: FBP, SIRT, CGLS, TV.

The protocol of Adler & Oktem (2018, learned primal-dual) and DIVal's ``ellipses`` dataset
(Leuschner et al. 2019): 128 x 128 images of random ellipses with values in [0, 1], 30 parallel
views over [0, pi), 183 detectors, additive white Gaussian noise of 5% of the mean absolute
sinogram value. Here:

* **Grid and geometry.** ``size x size`` pixels of ``pixel_size`` mm (default 128 x 128 of 1 mm:
  a 128 mm field; the ellipses lie in the inscribed disk of radius 64 mm), ``views`` angles
  uniformly over [0, pi), ``detectors`` elements of ``pixel_size`` mm (183 = ceil(128 sqrt 2) + 1:
  the detector covers the whole grid, corners included, as ODL's default that DIVal uses).
* **Data** (:class:`recon.data.EllipsesDataset`): exact analytic sinograms of the ellipse
  phantoms (no inverse crime), noise :func:`recon.data.gaussian_noise` (5% relative); the
  validation and test splits are disjoint by construction (different seed streams).
* **Methods** (:mod:`recon.iterative`, :class:`operators.FBP`): FBP (filter and cutoff chosen on
  validation), SIRT (non-negative, early stopping), CGLS (early stopping) and TV-regularised least
  squares by Chambolle-Pock (non-negative, ``tv_iterations`` iterations, ``lam`` chosen on
  validation). Every hyper-parameter is chosen by a grid search maximising the mean validation
  PSNR; the test split, Shepp-Logan and CT_small are never used for a choice.
* **Metrics** (:mod:`recon.metrics`): PSNR and SSIM (scikit-image) with ``data_range = 1`` for the
  ellipses and Shepp-Logan (images in [0, 1]) and the reference's ``max - min`` for CT_small; mean
  and (population) standard deviation over the test images or noise realisations; time per image
  (wall time of the batched reconstruction divided by the number of images, the one-off set-up
  such as the sparse matrix and the power iteration excluded and reported separately).
* **Shepp-Logan**: the modified Shepp-Logan phantom (values in [0, 1]) in the disk of radius
  ``0.45 size pixel_size`` with its exact sinogram, ``noise_realisations`` noise draws.
* **CT_small.dcm** (pydicom's real CT slice, 128 x 128 of 0.661 mm, as attenuation in 1/mm,
  treated as the whole object): its sinogram is simulated on a ``ct_upsample`` times finer grid
  (pixel replication, i.e. the piecewise-constant image of the DICOM pixels, projected by a finer
  Joseph projector), not by the reconstruction operator (no inverse crime); same geometry with
  0.661 mm detector elements; ``noise_realisations`` noise draws. The TV weight transfers from the
  ellipses by the scaling of the problem: ``lam * c * (h / pixel_size)^2`` with the image scale
  ``c = 2 mu_water`` (the attenuation span from air to +1000 HU, fixed, not read from the image)
  and ``h`` the CT pixel size (see :func:`recon.iterative.tv_pdhg`); iteration counts and the FBP
  filter transfer unchanged (the solvers are homogeneous in the data). The relative noise of the
  protocol is much stronger on CT_small than on the ellipses (the slice fills the field, so
  ``mean |sinogram|`` and the noise are large against its soft-tissue contrasts), so what is best
  for the ellipses under-regularises CT_small; the **oracle** section of the metrics (each method
  tuned on the test case itself, an upper bound, reported apart from the baselines) shows how much.

What reproduces the papers and what does not: the protocol (grid, views, detectors, noise) is
Adler & Oktem's / DIVal's; the projector (Joseph), the phantom generator
(:mod:`recon.data.ellipses`, DIVal's distributions with a linear normalisation) and the TV
solver differ, so the numbers are not theirs (their table, as usually quoted: FBP 19.8 dB,
TV 28.1 dB on their ellipses; ``shared/ANCHORS.md``).
"""

from __future__ import annotations

import io
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

import operators as ops
from recon import iterative
from recon.data import EllipsesDataset, MU_WATER, ct_small_mu, gaussian_noise
from recon.metrics import psnr, ssim

from .common import (check_config, claim, mean_std, save_figure, write_bytes_atomic,
                     write_json_atomic)

NAME = "baselines"
DESCRIPTION = ("Classical baselines (FBP, SIRT, CGLS, TV-PDHG) on 30-view ellipses with 5% noise, "
               "Shepp-Logan and CT_small.dcm; hyper-parameters chosen on validation")
REFERENCE = ("Adler & Oktem 2018, IEEE TMI 37(6) (protocol); Leuschner et al. 2019 DIVal "
             "(ellipses dataset); Chambolle & Pock 2011, JMIV 40 (TV solver)")

#: One seed makes the data; more would only repeat the hyper-parameter search.
SEEDS_USED = 1

log = logging.getLogger(__name__)

METHODS = ("fbp", "sirt", "cgls", "tv")
LABELS = {"fbp": "FBP", "sirt": "SIRT", "cgls": "CGLS", "tv": "TV"}
#: Image scale of the CT slice for the transfer of the TV weight: air (0) to +1000 HU.
CT_SCALE = 2.0 * MU_WATER
#: TV weights of the oracle search, relative to the transferred weight.
ORACLE_LAM_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


@dataclass(frozen=True)
class Config:
    """Knobs of the baselines experiment (defaults: the full configuration).

    Attributes
    ----------
    size : int
        Image size ``H = W`` in pixels.
    pixel_size : float
        Pixel (and detector element) size in mm.
    views : int
        Parallel views uniformly over [0, pi).
    detectors : int
        Detector elements (183 for 128 pixels; ``ceil(size sqrt 2) + 1`` covers the grid).
    noise : float
        Relative Gaussian noise level (std = ``noise * mean |sinogram|``).
    validation_images, test_images : int
        Sizes of the ellipse validation (hyper-parameter choice) and test splits.
    batch_size : int
        Images reconstructed together.
    fbp_filters, fbp_cutoffs : tuple
        FBP grid: filter names (:data:`operators.fbp.FILTERS`) and cutoffs (fraction of Nyquist).
    sirt_max_iterations, cgls_max_iterations : int
        Longest run on validation; the early-stopping count is the best iteration within it.
    tv_lams : tuple of float
        TV weights tried on validation (for images in [0, 1] on ``pixel_size`` mm pixels).
    tv_iterations : int
        Chambolle-Pock iterations for every TV reconstruction.
    noise_realisations : int
        Noise draws for the single-image test cases (Shepp-Logan, CT_small).
    ct_upsample : int
        Refinement of the grid that simulates the CT_small sinogram.
    seed : int
        Base seed of the data (the runner's first seed is added to it).
    dtype : str
        ``"float32"`` or ``"float64"``.
    oracle : bool
        Also report, apart from the baselines, each method with hyper-parameters chosen on
        Shepp-Logan / CT_small themselves (:func:`oracle`).
    """

    size: int = 128
    pixel_size: float = 1.0
    views: int = 30
    detectors: int = 183
    noise: float = 0.05
    validation_images: int = 100
    test_images: int = 500
    batch_size: int = 50
    fbp_filters: Tuple[str, ...] = ("ram-lak", "shepp-logan", "cosine", "hamming", "hann")
    fbp_cutoffs: Tuple[float, ...] = (1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2)
    sirt_max_iterations: int = 400
    cgls_max_iterations: int = 40
    tv_lams: Tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 4.5, 7.0, 10.0)
    tv_iterations: int = 500
    noise_realisations: int = 20
    ct_upsample: int = 4
    seed: int = 0
    dtype: str = "float32"
    oracle: bool = True

    def __post_init__(self):
        check_config(self)
        if self.size < 16:
            raise ValueError(f"size must be >= 16 (SSIM window and phantoms), got {self.size}")
        if not 0 <= self.noise < 1:
            raise ValueError(f"noise must be in [0, 1), got {self.noise}")
        if not self.fbp_filters or any(f not in ops.fbp.FILTERS for f in self.fbp_filters):
            raise ValueError(f"fbp_filters must be a non-empty subset of {ops.fbp.FILTERS}, got "
                             f"{self.fbp_filters}")
        if not self.fbp_cutoffs or any(not 0 < c <= 1 for c in self.fbp_cutoffs):
            raise ValueError(f"fbp_cutoffs must be in (0, 1], got {self.fbp_cutoffs}")
        if not self.tv_lams or any(not lam > 0 for lam in self.tv_lams):
            raise ValueError(f"tv_lams must be positive, got {self.tv_lams}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


PRESETS = {
    "tiny": Config(size=64, detectors=92, validation_images=4, test_images=6, batch_size=6,
                   fbp_filters=("ram-lak", "hann"), fbp_cutoffs=(1.0, 0.5),
                   sirt_max_iterations=60, cgls_max_iterations=15, tv_lams=(0.5, 2.0, 8.0),
                   tv_iterations=60, noise_realisations=2, ct_upsample=2),
    "quick": Config(validation_images=20, test_images=50, tv_iterations=300,
                    sirt_max_iterations=300, noise_realisations=10),
    "full": Config(),
}
DEFAULT_SEEDS = 1


# ------------------------------------------------------------------------------------------
# set-up
# ------------------------------------------------------------------------------------------
def ellipse_problem(config: Config) -> Tuple[ops.ImageGrid, ops.ParallelGeometry]:
    """The grid and geometry of the ellipse protocol."""
    grid = ops.ImageGrid((config.size, config.size), (config.pixel_size, config.pixel_size))
    geometry = ops.ParallelGeometry.full_scan(config.views, config.detectors, config.pixel_size)
    return grid, geometry


def _dtype(config: Config) -> torch.dtype:
    return torch.float32 if config.dtype == "float32" else torch.float64


def load_split(config: Config, split: str, length: int, seed: int
               ) -> Tuple[torch.Tensor, torch.Tensor]:
    """All items of an ellipse split: ``(sinograms (n, views, dets), images (n, H, W))``, CPU."""
    grid, geometry = ellipse_problem(config)
    ds = EllipsesDataset(split, length, grid, geometry, noise={"kind": "gaussian",
                                                               "relative": config.noise},
                         seed=seed, dtype=_dtype(config))
    items = [ds[i] for i in range(length)]
    return torch.stack([s for s, _ in items]), torch.stack([x for _, x in items])


@dataclass
class Solvers:
    """The four reconstruction methods for one operator, with their fixed set-up."""

    A: ops.XRayTransform
    grid: ops.ImageGrid
    geometry: ops.ParallelGeometry
    device: torch.device
    setup_seconds: float
    grad_scale: float
    steps: Tuple[float, float]
    _fbp: Dict[tuple, ops.FBP] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, grid, geometry, device: torch.device, dtype: torch.dtype) -> "Solvers":
        t0 = time.perf_counter()
        A = ops.XRayTransform(grid, geometry).to(device)
        A(torch.zeros(grid.shape, dtype=dtype, device=device))  # builds the cached matrices
        s, tau, sigma = iterative.pdhg_setup(A, device=device)
        return cls(A, grid, geometry, device, time.perf_counter() - t0, s, (tau, sigma))

    def fbp_module(self, filter: str, cutoff: float, dtype: torch.dtype) -> ops.FBP:
        """The FBP layer (built once per filter, cutoff and dtype, then reused)."""
        key = (filter, float(cutoff), dtype)
        if key not in self._fbp:
            fbp = ops.FBP(self.grid, self.geometry, filter=filter, cutoff=cutoff).to(
                device=self.device, dtype=dtype)
            with torch.no_grad():  # builds its cached back-projection matrix
                fbp(torch.zeros(self.geometry.sinogram_shape, dtype=dtype, device=self.device))
            self._fbp[key] = fbp
        return self._fbp[key]

    def fbp(self, y, filter: str, cutoff: float):
        return self.fbp_module(filter, cutoff, y.dtype)(y)

    def sirt(self, y, iterations: int, callback=None):
        return iterative.sirt(self.A, y, iterations, nonneg=True, callback=callback)

    def cgls(self, y, iterations: int, callback=None):
        return iterative.cgls(self.A, y, iterations, callback=callback)

    def tv(self, y, lam: float, iterations: int, callback=None):
        return iterative.tv_pdhg(self.A, y, lam, iterations, nonneg=True, callback=callback,
                                 grad_scale=self.grad_scale, step_sizes=self.steps)


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


# ------------------------------------------------------------------------------------------
# hyper-parameter choice on the validation split
# ------------------------------------------------------------------------------------------
def _curve(run: Callable, y: torch.Tensor, x: torch.Tensor, iterations: int,
           batch_size: int, data_range: float) -> List[float]:
    """Mean PSNR after each iteration of an iterative method, over all images."""
    total = np.zeros(iterations)
    for sl in _batches(y.shape[0], batch_size):
        ref = x[sl]
        values: List[float] = []
        run(y[sl], iterations,
            callback=lambda k, z: values.append(float(psnr(z, ref, data_range).sum())))
        values += [values[-1]] * (iterations - len(values))
        total += np.asarray(values)
    return (total / y.shape[0]).tolist()


def select(config: Config, solvers: Solvers, y: torch.Tensor, x: torch.Tensor) -> dict:
    """Grid search of every method's hyper-parameters on the validation split (mean PSNR)."""
    bs = config.batch_size
    out: Dict[str, dict] = {}
    table = []
    for f in config.fbp_filters:
        for c in config.fbp_cutoffs:
            value = float(torch.cat([psnr(solvers.fbp(y[sl], f, c), x[sl], 1.0)
                                     for sl in _batches(y.shape[0], bs)]).mean())
            table.append({"filter": f, "cutoff": c, "psnr": value})
    best = max(table, key=lambda r: r["psnr"])
    out["fbp"] = {"filter": best["filter"], "cutoff": best["cutoff"],
                  "validation_psnr": best["psnr"], "grid": table}
    log.info("validation: FBP %s cutoff %.2f: %.2f dB", best["filter"], best["cutoff"],
             best["psnr"])

    for name, max_it in (("sirt", config.sirt_max_iterations),
                         ("cgls", config.cgls_max_iterations)):
        curve = _curve(getattr(solvers, name), y, x, max_it, bs, 1.0)
        k = int(np.argmax(curve)) + 1
        out[name] = {"iterations": k, "validation_psnr": curve[k - 1], "curve": curve,
                     "at_limit": k == max_it}
        if k == max_it:
            log.warning("validation: %s is best at its last iteration (%d); raise the limit",
                        name, k)
        log.info("validation: %s %d iterations: %.2f dB", name.upper(), k, curve[k - 1])

    rows = []
    for lam in config.tv_lams:
        value = float(torch.cat([psnr(solvers.tv(y[sl], lam, config.tv_iterations), x[sl], 1.0)
                                 for sl in _batches(y.shape[0], bs)]).mean())
        rows.append({"lam": lam, "psnr": value})
        log.info("validation: TV lam %g: %.2f dB", lam, value)
    best = max(rows, key=lambda r: r["psnr"])
    edge = best["lam"] in (min(config.tv_lams), max(config.tv_lams))
    if edge:
        log.warning("validation: the best TV weight %g is at the edge of the grid", best["lam"])
    out["tv"] = {"lam": best["lam"], "iterations": config.tv_iterations,
                 "validation_psnr": best["psnr"], "grid": rows, "at_edge": edge}
    return out


# ------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------
def reconstruct(method: str, solvers: Solvers, y: torch.Tensor, chosen: dict,
                lam_factor: float = 1.0) -> torch.Tensor:
    """One method with its chosen hyper-parameters (``lam_factor`` rescales the TV weight)."""
    if method == "fbp":
        return solvers.fbp(y, chosen["fbp"]["filter"], chosen["fbp"]["cutoff"])
    if method == "sirt":
        return solvers.sirt(y, chosen["sirt"]["iterations"])
    if method == "cgls":
        return solvers.cgls(y, chosen["cgls"]["iterations"])
    if method == "tv":
        return solvers.tv(y, chosen["tv"]["lam"] * lam_factor, chosen["tv"]["iterations"])
    raise ValueError(f"unknown method {method!r}; use one of {METHODS}")


def evaluate(solvers: Solvers, y: torch.Tensor, x: torch.Tensor, chosen: dict,
             data_range, batch_size: int, lam_factor: float = 1.0, keep: int = 1
             ) -> Tuple[dict, Dict[str, torch.Tensor]]:
    """PSNR, SSIM (mean, std) and seconds per image of every method on ``(y, x)``.

    Returns the metrics and the first ``keep`` reconstructions of each method (CPU).
    """
    results, examples = {}, {}
    if "fbp" in METHODS:  # build the FBP layer outside the timing (like the operator's matrix)
        solvers.fbp_module(chosen["fbp"]["filter"], chosen["fbp"]["cutoff"], y.dtype)
    for method in METHODS:
        p, s, seconds, first = [], [], 0.0, None
        for sl in _batches(y.shape[0], batch_size):
            yb = y[sl].to(solvers.device)
            if solvers.device.type == "cuda":
                torch.cuda.synchronize(solvers.device)
            t0 = time.perf_counter()
            with torch.no_grad():
                rec = reconstruct(method, solvers, yb, chosen, lam_factor)
            if solvers.device.type == "cuda":
                torch.cuda.synchronize(solvers.device)
            seconds += time.perf_counter() - t0
            rec = rec.cpu().to(torch.float64)
            ref = x[sl].to(torch.float64)
            p.append(psnr(rec, ref, data_range))
            s.append(ssim(rec, ref, data_range))
            if first is None:
                first = rec[:keep]
        p, s = torch.cat(p), torch.cat(s)
        results[method] = {"psnr": mean_std(p.tolist()), "ssim": mean_std(s.tolist()),
                           "seconds_per_image": seconds / y.shape[0],
                           "psnr_per_image": p.tolist()}
        examples[method] = first
        log.info("%s: PSNR %.2f +- %.2f dB, SSIM %.3f, %.1f ms/image", LABELS[method],
                 results[method]["psnr"]["mean"], results[method]["psnr"]["std"],
                 results[method]["ssim"]["mean"], 1e3 * results[method]["seconds_per_image"])
    return results, examples


def oracle(config: Config, solvers: Solvers, y: torch.Tensor, x: torch.Tensor, data_range,
           lam0: float) -> dict:
    """Each method's best hyper-parameters on the test case itself (an upper bound, not a baseline).

    Same grids as the validation search (the TV weights are ``lam0`` times ``ORACLE_LAM_FACTORS``),
    maximising the mean PSNR over ``(y, x)``. It tells a method's failure from a failure of the
    hyper-parameters to transfer from the ellipses; it is reported apart from the baselines.
    """
    bs = config.batch_size
    fbp = max(((f, c) for f in config.fbp_filters for c in config.fbp_cutoffs),
              key=lambda fc: float(torch.cat([psnr(solvers.fbp(y[sl].to(solvers.device), *fc),
                                                   x[sl], data_range)
                                              for sl in _batches(y.shape[0], bs)]).mean()))
    chosen = {"fbp": {"filter": fbp[0], "cutoff": fbp[1]}}
    for name, max_it in (("sirt", config.sirt_max_iterations),
                         ("cgls", config.cgls_max_iterations)):
        curve = _curve(getattr(solvers, name), y.to(solvers.device), x, max_it, bs, data_range)
        chosen[name] = {"iterations": int(np.argmax(curve)) + 1}
    lams = [lam0 * f for f in ORACLE_LAM_FACTORS]
    scores = [float(torch.cat([psnr(solvers.tv(y[sl].to(solvers.device), lam,
                                               config.tv_iterations), x[sl], data_range)
                               for sl in _batches(y.shape[0], bs)]).mean()) for lam in lams]
    chosen["tv"] = {"lam": lams[int(np.argmax(scores))], "iterations": config.tv_iterations}
    return chosen


def shepp_logan_case(config: Config, generator: torch.Generator):
    """Ground truth ``(H, W)`` and noisy sinograms ``(R, views, dets)`` of Shepp-Logan."""
    grid, geometry = ellipse_problem(config)
    phantom = ops.shepp_logan(0.45 * config.size * config.pixel_size)
    image = phantom.rasterize(grid)
    clean = phantom.sinogram(geometry).expand(config.noise_realisations, -1, -1)
    noisy = gaussian_noise(clean.contiguous(), config.noise, generator)
    return image.to(_dtype(config)), noisy.to(_dtype(config))


def ct_small_case(config: Config, generator: torch.Generator):
    """CT_small.dcm: grid, geometry, ground truth (1/mm) and noisy sinograms from a finer grid."""
    mu, spacing = ct_small_mu()
    mu = mu.to(torch.float64)
    n = mu.shape[-1]
    h = float(spacing[0])
    grid = ops.ImageGrid(tuple(mu.shape), spacing)
    detectors = int(math.ceil(n * math.sqrt(2.0))) + 1
    geometry = ops.ParallelGeometry.full_scan(config.views, detectors, h)
    u = config.ct_upsample
    fine_grid = ops.ImageGrid((n * u, n * u), (h / u, h / u))
    fine = mu.repeat_interleave(u, 0).repeat_interleave(u, 1)
    A_fine = ops.XRayTransform(fine_grid, geometry)
    with torch.no_grad():
        clean = A_fine(fine)
    clean = clean.expand(config.noise_realisations, -1, -1).contiguous()
    noisy = gaussian_noise(clean, config.noise, generator)
    return grid, geometry, mu.to(_dtype(config)), noisy.to(_dtype(config))


# ------------------------------------------------------------------------------------------
# figures, tables
# ------------------------------------------------------------------------------------------
def _plot_examples(rows: List[Tuple[str, torch.Tensor, Dict[str, torch.Tensor], Dict[str, float]]],
                   path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2.3 * (len(METHODS) + 1), 2.7 * len(rows)))
    axes = fig.subplots(len(rows), len(METHODS) + 1, squeeze=False)
    for r, (title, truth, recs, scores) in enumerate(rows):
        lo, hi = float(truth.min()), float(truth.max())
        panels = [("ground truth", truth)] + [
            (f"{LABELS[m]}\n{scores[m]:.2f} dB", recs[m]) for m in METHODS]
        for c, (label, img) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img.numpy(), cmap="gray", vmin=lo, vmax=hi)
            ax.set_title(label if c else f"{title}\n{label}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("Classical baselines, 30 views, 5% Gaussian noise (PSNR of the image shown)",
                 fontsize=10)
    save_figure(fig, path)


def _plot_validation(chosen: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.2))
    ax = fig.subplots(1, 3)
    for i, name in enumerate(("sirt", "cgls")):
        curve = chosen[name]["curve"]
        ax[i].plot(np.arange(1, len(curve) + 1), curve)
        ax[i].axvline(chosen[name]["iterations"], color="k", ls=":")
        ax[i].axhline(chosen["fbp"]["validation_psnr"], color="r", ls="--", label="FBP (best)")
        ax[i].set_xlabel("iteration")
        ax[i].set_ylabel("mean validation PSNR (dB)")
        ax[i].set_title(f"{LABELS[name]}: best at {chosen[name]['iterations']}")
        ax[i].legend(fontsize=8)
    lams = [r["lam"] for r in chosen["tv"]["grid"]]
    ax[2].semilogx(lams, [r["psnr"] for r in chosen["tv"]["grid"]], "o-")
    ax[2].axhline(chosen["fbp"]["validation_psnr"], color="r", ls="--")
    ax[2].set_xticks(lams)
    ax[2].set_xticklabels([f"{lam:g}" for lam in lams])
    ax[2].minorticks_off()
    ax[2].set_xlabel("TV weight lam")
    ax[2].set_ylabel("mean validation PSNR (dB)")
    ax[2].set_title(f"TV ({chosen['tv']['iterations']} it.): best lam {chosen['tv']['lam']:g}")
    fig.tight_layout()
    save_figure(fig, path)


def markdown_table(results: Dict[str, dict]) -> str:
    """A Markdown table: one row per (case, method), PSNR and SSIM mean +- std, ms per image."""
    lines = ["| case | method | PSNR (dB) | SSIM | time per image (ms) |",
             "|---|---|---|---|---|"]
    for case, res in results.items():
        for m in METHODS:
            r = res["methods"][m]
            lines.append(f"| {res['label']} | {LABELS[m]} | {r['psnr']['mean']:.2f} +- "
                         f"{r['psnr']['std']:.2f} | {r['ssim']['mean']:.3f} +- "
                         f"{r['ssim']['std']:.3f} | {1e3 * r['seconds_per_image']:.1f} |")
    return "\n".join(lines)


def _save_tensors(path: Path, tensors: Dict[str, torch.Tensor]) -> None:
    buf = io.BytesIO()
    torch.save(tensors, buf)
    write_bytes_atomic(path, buf.getvalue())


def _load_json(path: Path) -> Optional[dict]:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------------------------------
# run
# ------------------------------------------------------------------------------------------
def run(config: Config, out: Path, *, device: torch.device, seeds: Sequence[int]) -> dict:
    """Choose hyper-parameters on validation, evaluate on the three test cases, plot, claim.

    The validation choice is checkpointed (``selection.json``) and reused on a rerun in the same
    folder. Only the first seed is used (``config.seed + seeds[0]`` seeds the data); more seeds
    would only redraw the data.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    dtype = _dtype(config)
    seed = int(config.seed) + int(seeds[0]) if seeds else int(config.seed)
    if seeds and len(seeds) > 1:
        log.warning("baselines uses only the first seed (%d); the others are ignored", seeds[0])

    grid, geometry = ellipse_problem(config)
    solvers = Solvers.build(grid, geometry, device, dtype)
    log.info("operator set-up (matrix, power iterations): %.2f s", solvers.setup_seconds)

    selection_path = out / "selection.json"
    chosen = _load_json(selection_path)
    if chosen is None:
        y_val, x_val = load_split(config, "validation", config.validation_images, seed)
        chosen = select(config, solvers, y_val.to(device), x_val.to(device))
        write_json_atomic(selection_path, chosen)
    else:
        log.info("validation choice loaded from %s", selection_path)

    results: Dict[str, dict] = {}
    figure_rows = []

    y_test, x_test = load_split(config, "test", config.test_images, seed)
    res, ex = evaluate(solvers, y_test, x_test, chosen, 1.0, config.batch_size)
    results["ellipses"] = {"label": f"ellipses test ({config.test_images})", "data_range": 1.0,
                           "images": config.test_images, "methods": res}
    figure_rows.append(("ellipses (test 0)", x_test[0].double(), {m: ex[m][0] for m in METHODS},
                        {m: res[m]["psnr_per_image"][0] for m in METHODS}))

    gen = torch.Generator().manual_seed(10_000 + seed)
    sl_image, sl_sino = shepp_logan_case(config, gen)
    sl_truth = sl_image.expand(config.noise_realisations, -1, -1)
    res, ex = evaluate(solvers, sl_sino, sl_truth, chosen, 1.0, config.batch_size)
    results["shepp_logan"] = {"label": f"Shepp-Logan ({config.noise_realisations} noise draws)",
                              "data_range": 1.0, "images": config.noise_realisations,
                              "methods": res}
    oracles = {}
    if config.oracle:
        sl_oracle = oracle(config, solvers, sl_sino, sl_truth, 1.0, chosen["tv"]["lam"])
        oracles["shepp_logan"] = {"chosen": sl_oracle, "methods": evaluate(
            solvers, sl_sino, sl_truth, sl_oracle, 1.0, config.batch_size)[0]}
    figure_rows.append(("Shepp-Logan", sl_image.double(), {m: ex[m][0] for m in METHODS},
                        {m: res[m]["psnr_per_image"][0] for m in METHODS}))

    skipped: Dict[str, str] = {}
    ct_setup = lam_factor = None
    try:
        ct_case = ct_small_case(config, gen)
    except ImportError as err:  # CT_small.dcm ships inside pydicom
        log.warning("CT_small.dcm skipped: %s (install pydicom)", err)
        skipped["ct_small"] = f"{type(err).__name__}: {err}"
        ct_case = None
    if ct_case is not None:
        ct_grid, ct_geometry, ct_mu, ct_sino = ct_case
        ct_solvers = Solvers.build(ct_grid, ct_geometry, device, dtype)
        ct_setup = ct_solvers.setup_seconds
        ct_range = float(ct_mu.max() - ct_mu.min())
        h = ct_grid.spacing[0]
        lam_factor = CT_SCALE * (h / config.pixel_size) ** 2
        ct_truth = ct_mu.expand(config.noise_realisations, -1, -1)
        res, ex = evaluate(ct_solvers, ct_sino, ct_truth, chosen, ct_range, config.batch_size,
                           lam_factor=lam_factor)
        results["ct_small"] = {"label": f"CT_small.dcm ({config.noise_realisations} noise draws)",
                               "data_range": ct_range, "images": config.noise_realisations,
                               "tv_lam": chosen["tv"]["lam"] * lam_factor, "methods": res}
        figure_rows.append(("CT_small.dcm (1/mm)", ct_mu.double(), {m: ex[m][0] for m in METHODS},
                            {m: res[m]["psnr_per_image"][0] for m in METHODS}))
        if config.oracle:
            ct_oracle = oracle(config, ct_solvers, ct_sino, ct_truth, ct_range,
                               chosen["tv"]["lam"] * lam_factor)
            o_res, o_ex = evaluate(ct_solvers, ct_sino, ct_truth, ct_oracle, ct_range,
                                   config.batch_size)
            oracles["ct_small"] = {"chosen": ct_oracle, "methods": o_res}
            figure_rows.append(("CT_small.dcm, oracle", ct_mu.double(),
                                {m: o_ex[m][0] for m in METHODS},
                                {m: o_res[m]["psnr_per_image"][0] for m in METHODS}))

    _plot_examples(figure_rows, out / "baselines_examples.png")
    _plot_validation(chosen, out / "baselines_validation.png")
    _save_tensors(out / "examples.pt", {f"{case}/{name}": img for case, truth, recs, _ in
                                        figure_rows for name, img in
                                        [("truth", truth)] + list(recs.items())})

    def mean(case, method, metric="psnr"):
        return results[case]["methods"][method][metric]["mean"]

    def wins(a, b):  # ellipse test images where method a has the higher PSNR
        pa = results["ellipses"]["methods"][a]["psnr_per_image"]
        pb = results["ellipses"]["methods"][b]["psnr_per_image"]
        return int(sum(u > v for u, v in zip(pa, pb)))

    ell = "on the ellipse test split (30 views, 5% Gaussian noise)"
    claims = [
        claim(f"TV is above FBP in PSNR {ell}", mean("ellipses", "tv") > mean("ellipses", "fbp"),
              tv_psnr=mean("ellipses", "tv"), fbp_psnr=mean("ellipses", "fbp"),
              gain_db=mean("ellipses", "tv") - mean("ellipses", "fbp"),
              images=config.test_images, images_where_tv_is_above_fbp=wins("tv", "fbp"),
              adler_oktem_2018_table_as_quoted={"fbp": 19.8, "tv": 28.1}),
        claim(f"SIRT and CGLS with early stopping (iteration counts chosen on validation) are "
              f"above FBP in PSNR {ell}",
              min(mean("ellipses", "sirt"), mean("ellipses", "cgls")) > mean("ellipses", "fbp"),
              sirt_psnr=mean("ellipses", "sirt"), cgls_psnr=mean("ellipses", "cgls"),
              fbp_psnr=mean("ellipses", "fbp"), sirt_iterations=chosen["sirt"]["iterations"],
              cgls_iterations=chosen["cgls"]["iterations"]),
        claim(f"TV is the best of the four baselines in PSNR and SSIM {ell}",
              all(mean("ellipses", "tv", k) > mean("ellipses", m, k)
                  for k in ("psnr", "ssim") for m in METHODS if m != "tv"),
              **{f"{m}_{k}": mean("ellipses", m, k) for m in METHODS for k in ("psnr", "ssim")}),
        claim("TV is above FBP in PSNR on Shepp-Logan with the hyper-parameters chosen on the "
              "ellipse validation split",
              mean("shepp_logan", "tv") > mean("shepp_logan", "fbp"),
              tv_psnr=mean("shepp_logan", "tv"), fbp_psnr=mean("shepp_logan", "fbp"),
              noise_realisations=config.noise_realisations),
    ]
    if "ct_small" in results:
        claims.append(
            claim("TV is above FBP in PSNR on CT_small.dcm with the hyper-parameters chosen on the "
                  "ellipse validation split (TV weight transferred by the scaling of the problem)",
                  mean("ct_small", "tv") > mean("ct_small", "fbp"),
                  tv_psnr=mean("ct_small", "tv"), fbp_psnr=mean("ct_small", "fbp"),
                  sirt_psnr=mean("ct_small", "sirt"), cgls_psnr=mean("ct_small", "cgls"),
                  tv_lam=chosen["tv"]["lam"] * lam_factor,
                  noise_realisations=config.noise_realisations))
    if "ct_small" in oracles:
        o = oracles["ct_small"]
        op = {m: o["methods"][m]["psnr"]["mean"] for m in METHODS}
        claims.append(claim(
            "With every method's hyper-parameters chosen on CT_small.dcm itself (an oracle upper "
            "bound, not a baseline), TV is above FBP in PSNR on CT_small.dcm",
            op["tv"] > op["fbp"], **{f"oracle_{m}_psnr": op[m] for m in METHODS},
            oracle_tv_lam=o["chosen"]["tv"]["lam"], oracle_fbp=o["chosen"]["fbp"],
            oracle_sirt_iterations=o["chosen"]["sirt"]["iterations"],
            oracle_cgls_iterations=o["chosen"]["cgls"]["iterations"]))

    for case in list(results.values()) + list(oracles.values()):  # no per-image lists
        for m in METHODS:
            case["methods"][m].pop("psnr_per_image")
    return {
        "protocol": {
            "grid": {"shape": list(grid.shape), "pixel_size_mm": config.pixel_size},
            "geometry": {"kind": "parallel", "views": config.views, "arc": "[0, pi)",
                         "detectors": config.detectors, "detector_spacing_mm": config.pixel_size},
            "noise": f"additive Gaussian, std = {config.noise} * mean |sinogram| per sinogram",
            "data": "exact analytic sinograms (ellipses, Shepp-Logan); CT_small projected from "
                    f"a {config.ct_upsample}x finer grid",
            "psnr_data_range": {"ellipses": 1.0, "shepp_logan": 1.0,
                                "ct_small": "max - min of the reference"},
            "validation_images": config.validation_images, "test_images": config.test_images,
            "seed": seed, "device": str(device), "dtype": config.dtype,
            "timing": "batched wall time / images, batch_size images per call; set-up excluded",
            "batch_size": config.batch_size,
            "setup_seconds": {"ellipses": solvers.setup_seconds, "ct_small": ct_setup},
        },
        "chosen": {"fbp": {k: chosen["fbp"][k] for k in ("filter", "cutoff", "validation_psnr")},
                   "sirt": {k: chosen["sirt"][k] for k in ("iterations", "validation_psnr")},
                   "cgls": {k: chosen["cgls"][k] for k in ("iterations", "validation_psnr")},
                   "tv": {k: chosen["tv"][k] for k in ("lam", "iterations", "validation_psnr")},
                   "tv_lam_ct_small": (None if lam_factor is None
                                       else chosen["tv"]["lam"] * lam_factor)},
        "skipped": skipped,
        "validation": chosen,
        "results": results,
        "table_markdown": markdown_table(results),
        "oracle": {"note": "each method's hyper-parameters chosen on the test case itself: an "
                           "upper bound that separates a method's limits from the transfer of "
                           "hyper-parameters; not a baseline", **oracles},
        "claims": claims,
    }
