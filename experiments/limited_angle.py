"""Limited-angle robustness: a U-Net against known-operator networks (the seed paper's Fig. 8).

The seed paper (Maier et al. 2019, Fig. 8, after Huang et al., MICCAI 2018) warns that a U-Net
trained on noise-free limited-angle FBP images does an excellent job on matching data, but under
unmatched noise returns an artifact-free looking image in which a lesion is gone and the chest
surface is shifted (by about 1 cm), and proposes known-operator networks as the remedy. This
experiment makes the comparison reproducible and quantified.

Set-up
------
- Chest-like phantoms in HU (:class:`recon.data.ChestDataset`: body, fat layer, lungs with
  vessels, heart, aorta, spine, ribs; random sizes and HU values), scanned by a **fan beam with a
  flat detector** over a **limited arc** (``arc_deg``: 120 degrees by default, 150 or ``None`` for
  a short scan ``pi + 2 gamma_max``), exact analytic sinograms of the attenuation (1/mm, water
  0.0192 /mm).
- **Training data without noise and without lesions** (as in Huang et al.); every learned model
  trains on the same images with the same trainer (:class:`recon.train.Trainer`, Adam, cosine
  decay, MSE on attenuation in units of the water attenuation, i.e. (HU / 1000)^2).
- Methods: **FBP** (Ram-Lak; count-based redundancy weights on a limited arc, Parker weights on a
  short scan: :class:`operators.FBP`), **TV** (:func:`recon.iterative.tv_pdhg`, weight chosen on
  the noise-free validation images, like the learned models), **U-Net** post-processing of that
  FBP (FBPConvNet, :class:`recon.nets.UNetPostProcessing`), and the known-operator networks
  **trainable FBP** (learned sinogram weights, :class:`recon.nets.trainable_fbp.TrainableFBP`,
  Würfl et al. 2018), **variational network** (:class:`recon.nets.VariationalNetwork`, started at
  that FBP) and **learned primal-dual** (:class:`recon.nets.LearnedPrimalDual`).
- Test conditions on held-out anatomies: noise-free (matched) and Poisson noise at the incident
  photon counts ``photons`` (unmatched), each without a lesion and with each **inserted lesion**
  of ``lesions`` (diameter mm, contrast HU, placed in a lung; never seen in training); the real
  **CT_small.dcm** slice (domain shift: resampled onto a ``2x`` finer grid, centred, filling
  ``ct_small_fill`` of the field of view, projected by the discrete operator of that finer grid)
  at the same noise levels; optionally (``adversarial_rel > 0``) a small adversarial perturbation
  of the noise-free sinogram of bounded relative L2 norm, found by projected gradient ascent on
  the squared error inside the body (every differentiable method; not TV).
- Measures (:mod:`experiments.limited_angle_measures`), inside the true body: PSNR and SSIM
  (data range 2000 HU), lesion contrast recovered and detection (CNR and fraction thresholds),
  body-outline shift at ``outline_threshold_hu`` (mean and max, mm), false structure in the air
  (mean absolute HU beyond ``air_margin_mm`` from the body); means over cases per seed, then mean
  and std over seeds.

What is adapted: the phantom is procedural (not the XCAT / clinical data of Huang et al.), the
image sizes and training lengths are far smaller in ``quick``, our Joseph projector and Poisson
model (no electronic noise, no bow-tie), and all networks are trained with one MSE loss. The claims
are the qualitative ones of the seed paper, answered with numbers whichever way they fall.

Outputs: ``fig8.png`` (the seed's layout: reference with lesion, FBP input, U-Net and the
known-operator networks, noise-free and with noise, window [-1000, 1000] HU), ``differences.png``,
``measures_vs_photons.png``, ``ct_small.png``, ``metrics.json`` (table, per-seed values, claims:
each compares how much a measure degrades from noise-free data to the fewest photons, U-Net
against every known-operator network);
``models/<method>/seed<s>/`` holds each model's trainer checkpoints and its cached evaluation.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from operators.fbp import FILTERS
from recon.data.units import MU_WATER

from . import limited_angle_measures as measures
from .common import (check_config, claim, fit_summary, load_cache, mean_std, save_figure,
                     write_bytes_atomic, write_json_atomic)

NAME = "limited-angle"
DESCRIPTION = ("Limited-angle fan-beam chest CT (120 deg): U-Net vs known-operator networks "
               "(trainable FBP, VN, LPD) under unmatched noise, unseen lesions and a real slice")
REFERENCE = ("Maier et al. 2019, Z Med Phys 29(2), Fig. 8 (seed paper); Huang et al., 'Some "
             "investigations on robustness of deep learning in limited angle tomography', "
             "MICCAI 2018")

log = logging.getLogger(__name__)

METHODS = ("fbp", "tv", "unet", "tfbp", "vn", "lpd")
LEARNED = ("unet", "tfbp", "vn", "lpd")
KNOWN_OPERATOR = ("tfbp", "vn", "lpd")
LABELS = {"fbp": "FBP", "tv": "TV", "unet": "U-Net", "tfbp": "trainable FBP", "vn": "VN",
          "lpd": "LPD"}
DEFAULT_SEEDS = {"tiny": 1, "quick": 1, "full": 3}
NOISE_FREE = "noise_free"
#: Version of the measure definitions; cached evaluations of another version are recomputed.
MEASURES_VERSION = 2


@dataclass(frozen=True)
class Config:
    """Every knob of the study (defaults: the full configuration, for a GPU).

    Attributes
    ----------
    size, pixel_mm : int, float
        Image ``size x size`` pixels of ``pixel_mm`` mm (the body fills 90% of the width).
    arc_deg : float or None
        Source rotation of the limited arc in degrees (120 or 150), below a short scan;
        ``None``: a short scan ``pi + 2 gamma_max`` (Parker-weighted FBP).
    views_per_degree : float
        Angular sampling of the source trajectory.
    source_to_isocenter, source_to_detector : float
        In multiples of the image extent; the flat detector covers the image's corners.
    train_size, val_size, test_size : int
        Training / validation phantoms (no noise, no lesion) and held-out test anatomies.
    data_seed : int
        Seed of the phantoms, lesion positions and noise draws (the same for every model seed).
    photons : tuple of float
        Incident photons per detector element and view of the noisy test conditions.
    lesions : tuple of (diameter_mm, contrast_hu)
        Inserted test lesions (in a lung; each test anatomy gets each lesion, one at a time).
    outline_threshold_hu, air_margin_mm, cnr_threshold, min_contrast_fraction : float
        Measure settings (:mod:`experiments.limited_angle_measures`).
    ct_small, ct_small_fill : bool, float
        Test on the CT_small.dcm slice; its side as a fraction of the field of view.
    adversarial_rel, adversarial_steps, adversarial_cases : float, int, int
        Relative L2 bound ``||delta|| <= rel ||y||`` of the adversarial perturbation (0: off),
        projected-gradient steps, noise-free lesion cases attacked.
    fbp_filter : str
        Filter of the FBP baseline, of the U-Net's input and of the VN's start.
    tv_lams, tv_iterations : tuple of float, int
        TV weights tried on the validation images (units ``y^2 / x``) and PDHG iterations.
    unet_width, unet_depth, vn_stages, vn_filters, vn_kernel, lpd_iterations, lpd_width : int
        Network sizes.
    batch_size, lr, tfbp_lr, epochs, max_steps, patience, grad_clip :
        Trainer settings (:class:`recon.train.TrainConfig`); ``tfbp_lr`` for the trainable FBP
        (few parameters of order 1).
    methods : tuple of str
        Subset of :data:`METHODS`.
    data_workers : int
        Processes generating the training phantoms (0: in the main process); the data do not
        depend on it.
    """

    size: int = 256
    pixel_mm: float = 1.4
    arc_deg: Optional[float] = 120.0
    views_per_degree: float = 1.0
    source_to_isocenter: float = 2.0
    source_to_detector: float = 3.0
    train_size: int = 2000
    val_size: int = 64
    test_size: int = 16
    data_seed: int = 0
    photons: Tuple[float, ...] = (1e6, 1e5, 1e4)
    lesions: Tuple[Tuple[float, float], ...] = ((8.0, 850.0), (16.0, 850.0), (16.0, 300.0))
    outline_threshold_hu: float = -500.0
    air_margin_mm: float = 10.0
    cnr_threshold: float = 3.0
    min_contrast_fraction: float = 0.5
    ct_small: bool = True
    ct_small_fill: float = 0.6
    adversarial_rel: float = 0.01
    adversarial_steps: int = 10
    adversarial_cases: int = 4
    fbp_filter: str = "ram-lak"
    tv_lams: Tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)
    tv_iterations: int = 500
    unet_width: int = 32
    unet_depth: int = 4
    vn_stages: int = 10
    vn_filters: int = 24
    vn_kernel: int = 7
    lpd_iterations: int = 10
    lpd_width: int = 32
    batch_size: int = 8
    lr: float = 1e-3
    tfbp_lr: float = 1e-2
    epochs: int = 50
    max_steps: Optional[int] = 20_000
    patience: Optional[int] = 10
    grad_clip: Optional[float] = 1.0
    methods: Tuple[str, ...] = METHODS
    data_workers: int = 8

    def __post_init__(self):
        check_config(self)
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ValueError(f"Config.methods must be a non-empty subset of {METHODS}, got "
                             f"{self.methods!r}")
        for name in ("views_per_degree", "source_to_isocenter", "cnr_threshold",
                     "min_contrast_fraction"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Config.{name} must be positive, got {getattr(self, name)!r}")
        if not 1 < self.source_to_isocenter < self.source_to_detector:
            raise ValueError(f"Config.source_to_isocenter ({self.source_to_isocenter!r}, in "
                             f"image sizes) must exceed 1 and be below source_to_detector "
                             f"({self.source_to_detector!r})")
        if not self.air_margin_mm >= 0:
            raise ValueError(f"Config.air_margin_mm must be >= 0, got {self.air_margin_mm!r}")
        if not self.lesions:
            raise ValueError("Config.lesions must name at least one (diameter_mm, contrast_hu)")
        if self.fbp_filter not in FILTERS:
            raise ValueError(f"Config.fbp_filter must be one of {FILTERS}, got "
                             f"{self.fbp_filter!r}")
        if self.size < 16:
            raise ValueError(f"Config.size must be at least 16, got {self.size}")
        if self.arc_deg is not None and not 0 < self.arc_deg < 360:
            raise ValueError(f"Config.arc_deg must be in (0, 360) degrees or None (short "
                             f"scan), got {self.arc_deg!r}")
        if not self.photons or any(not (p > 0 and math.isfinite(p)) for p in self.photons):
            raise ValueError(f"Config.photons must be positive photon counts, got "
                             f"{self.photons!r}")
        for lesion in self.lesions:
            if len(lesion) != 2 or not lesion[0] > 0 or lesion[1] == 0:
                raise ValueError(f"Config.lesions must hold (diameter_mm > 0, contrast_hu != 0) "
                                 f"pairs, got {lesion!r}")
        if not 0 < self.ct_small_fill <= 1:
            raise ValueError(f"Config.ct_small_fill must be in (0, 1], got "
                             f"{self.ct_small_fill!r}")
        if not self.adversarial_rel >= 0:
            raise ValueError(f"Config.adversarial_rel must be >= 0, got "
                             f"{self.adversarial_rel!r}")
        if not self.tv_lams or any(not lam >= 0 for lam in self.tv_lams):
            raise ValueError(f"Config.tv_lams must be non-negative numbers, got {self.tv_lams!r}")


PRESETS = {
    # seconds, for CI: 32x32 pixels of 10 mm, 2 training images, 2 optimiser steps per model
    "tiny": Config(size=32, pixel_mm=10.0, views_per_degree=0.25, train_size=2, val_size=2,
                   test_size=1, photons=(1e5, 1e3), lesions=((40.0, 850.0),),
                   ct_small_fill=0.6, adversarial_rel=0.01, adversarial_steps=2,
                   adversarial_cases=1, tv_lams=(0.1, 1.0), tv_iterations=20, unet_width=4,
                   unet_depth=2, vn_stages=2, vn_filters=4, vn_kernel=3, lpd_iterations=2,
                   lpd_width=4, batch_size=2, epochs=1, max_steps=2, patience=None,
                   data_workers=0),
    # every method on a 2-core CPU in about 30 minutes: 96x96 pixels of 3.5 mm, 60 views over
    # 120 degrees, 160 training phantoms, 1000 optimiser steps per model. Photon counts ten times
    # below the full configuration's: with 2.5x larger pixels (and detector elements) the noise
    # variance per pixel of an FBP is about 2.5^3 = 16x lower at the same count, so these
    # counts give about the noise of 1e6 .. 1e4 photons at the full configuration's pixel size.
    "quick": Config(size=96, pixel_mm=3.5, views_per_degree=0.5, train_size=160, val_size=16,
                    test_size=4, photons=(1e5, 1e4, 1e3),
                    lesions=((10.0, 850.0), (20.0, 850.0), (20.0, 300.0)),
                    adversarial_cases=2, adversarial_steps=5, tv_iterations=300, unet_width=16,
                    unet_depth=3, vn_stages=5, vn_filters=16, vn_kernel=5, lpd_iterations=5,
                    lpd_width=16, batch_size=4, epochs=25, max_steps=1000, patience=None,
                    data_workers=0),
    "full": Config(),
}


# ------------------------------------------------------------------------------------ set-up
def setup_geometry(config: Config):
    """``(grid, geometry)``: the image grid and the fan-beam (flat detector) scan.

    The source sits at ``source_to_isocenter`` times the image extent, the detector at
    ``source_to_detector`` times it, with a pitch of one pixel magnified, wide enough for the
    image's corners. ``arc_deg=None`` gives a short scan; otherwise ``arc_deg`` must be below it.
    """
    from operators import FanGeometry, ImageGrid

    size, px = config.size, float(config.pixel_mm)
    grid = ImageGrid(shape=(size, size), spacing=(px, px))
    extent = size * px
    r = config.source_to_isocenter * extent
    d = config.source_to_detector * extent
    corner = extent / math.sqrt(2.0)
    if r <= corner:
        raise ValueError(f"source_to_isocenter ({config.source_to_isocenter} x extent) must put "
                         "the source outside the image")
    spacing = px * d / r
    detectors = int(math.ceil(2.0 * d * math.tan(math.asin(corner / r)) / spacing)) + 2
    common = dict(detector_count=detectors, detector_spacing=spacing, source_to_isocenter=r,
                  source_to_detector=d, detector="flat")
    short_arc = math.pi + 2 * FanGeometry.short_scan(2, **common).half_fan_angle
    if config.arc_deg is None:
        views = max(2, int(round(config.views_per_degree * math.degrees(short_arc))))
        return grid, FanGeometry.short_scan(views, **common)
    arc = math.radians(config.arc_deg)
    if arc >= short_arc:
        raise ValueError(f"Config.arc_deg ({config.arc_deg}) must be below the short scan "
                         f"({math.degrees(short_arc):.1f} degrees); use arc_deg=None for it")
    views = max(2, int(round(config.views_per_degree * config.arc_deg)))
    return grid, FanGeometry.limited_angle(arc, views, **common)


def _photon_key(photons: Optional[float]) -> str:
    return NOISE_FREE if photons is None else f"poisson_{photons:.0e}".replace("e+0", "e")


def _save_torch(path: Path, obj) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes_atomic(path, buf.getvalue())


def training_data(config: Config, grid, geometry, cache: Path):
    """``{"train": (y, x), "validation": (y, x)}``: noise-free, lesion-free chests.

    ``y`` ``(N, views, detectors)`` exact line integrals, ``x`` ``(N, H, W)`` attenuation in
    1/mm; cached in ``cache/train.pt``.
    """
    from recon.data import ChestDataset

    path = Path(cache) / "train.pt"
    blob = load_cache(path)
    if blob is not None:
        return {k: (blob[k + "_y"], blob[k + "_x"]) for k in ("train", "validation")}
    t0 = time.perf_counter()
    out, blob = {}, {}
    for split, n in (("train", config.train_size), ("validation", config.val_size)):
        ds = ChestDataset(split, n, grid, geometry, noise=None, seed=config.data_seed,
                          lesion_probability=0.0, output="mu")
        loader = torch.utils.data.DataLoader(ds, batch_size=16, shuffle=False,
                                             num_workers=config.data_workers)
        batches = list(loader)
        y = torch.cat([b[0] for b in batches])
        x = torch.cat([b[1] for b in batches])
        out[split] = (y, x)
        blob[split + "_y"], blob[split + "_x"] = y, x
    _save_torch(path, blob)
    log.info("training data: %d + %d phantoms in %.1f s", config.train_size, config.val_size,
             time.perf_counter() - t0)
    return out


def _ct_small_case(config: Config, grid, geometry):
    """CT_small.dcm on the grid: ``(clean sinogram (V, D), truth (H, W) in 1/mm)``.

    The slice is resampled (area) to a square of side ``ct_small_fill`` times the field of view on
    a grid twice as fine, centred in air, projected by that grid's operator; the truth is the
    2 x 2 average of the fine image.
    """
    import operators
    from recon.data import ct_small_mu

    mu, _ = ct_small_mu()
    fine = operators.ImageGrid(shape=(2 * grid.shape[0], 2 * grid.shape[1]),
                               spacing=(grid.spacing[0] / 2, grid.spacing[1] / 2))
    side = max(2, int(round(config.ct_small_fill * fine.shape[0])))
    img = F.interpolate(mu.double()[None, None], size=(side, side), mode="area")[0, 0]
    big = torch.zeros(fine.shape, dtype=torch.float64)
    r0 = (fine.shape[0] - side) // 2
    c0 = (fine.shape[1] - side) // 2
    big[r0:r0 + side, c0:c0 + side] = img.clamp_min(0.0)
    with torch.no_grad():
        y = operators.XRayTransform(fine, geometry)(big)
    truth = F.avg_pool2d(big[None, None], 2)[0, 0]
    return y.float(), truth.float()


def make_test_cases(config: Config, grid, geometry, cache: Path) -> Dict[str, Any]:
    """Every test condition as one batch (cached in ``cache/test.pt``).

    Returns
    -------
    dict with ``y`` ``(N, views, detectors)`` (noisy where the case says so), ``truth_hu``
    ``(N, H, W)`` and ``meta``: one dict per case with ``kind`` ("phantom" or "ct_small"),
    ``anatomy`` (test index), ``lesion`` (index into ``config.lesions`` or None), ``photons``
    (None: noise-free), ``center`` / ``radius`` of the lesion (mm).
    """
    from recon.data import ChestDataset, mu_to_hu, poisson_noise, random_lesion

    path = Path(cache) / "test.pt"
    blob = load_cache(path)
    if blob is not None:
        return blob
    levels: List[Optional[float]] = [None] + [float(p) for p in config.photons]
    ds = ChestDataset("test", config.test_size, grid, geometry, noise=None,
                      seed=config.data_seed, lesion_probability=0.0, output="mu")
    clean: List[Tuple[torch.Tensor, torch.Tensor, Dict[str, Any]]] = []
    pixel = max(grid.spacing)
    for a in range(config.test_size):
        chest = ds.phantom(a)
        clean.append((chest.sinogram(geometry), chest.mu_image(grid),
                      {"kind": "phantom", "anatomy": a, "lesion": None}))
        for j, (diameter, contrast) in enumerate(config.lesions):
            rng = np.random.default_rng([config.data_seed, 7, a, j])
            lesion = None
            for margin in (pixel, 0.0):
                try:
                    lesion = random_lesion(chest, rng, (diameter, diameter), (contrast, contrast),
                                           region="lung", margin=margin)
                    break
                except ValueError:
                    continue
            if lesion is None:
                raise ValueError(f"Config.lesions: a lesion of {diameter} mm does not fit in the "
                                 f"lungs of test anatomy {a} (body {chest.body.axes} mm)")
            with_lesion = chest.with_lesion(lesion)
            clean.append((with_lesion.sinogram(geometry), with_lesion.mu_image(grid),
                          {"kind": "phantom", "anatomy": a, "lesion": j,
                           "center": list(lesion.center), "radius": lesion.radius,
                           "contrast": lesion.contrast}))
    if config.ct_small:
        y, x = _ct_small_case(config, grid, geometry)
        clean.append((y, x, {"kind": "ct_small", "anatomy": None, "lesion": None}))
    ys, xs, meta = [], [], []
    for i, (y, x, info) in enumerate(clean):
        for k, photons in enumerate(levels):
            if photons is None:
                noisy = y
            else:
                gen = torch.Generator().manual_seed(
                    int(np.random.SeedSequence([config.data_seed, 11, i, k]).generate_state(1)[0]))
                noisy = poisson_noise(y.double(), photons, gen).float()
            ys.append(noisy.float())
            xs.append(mu_to_hu(x.double()).float())
            meta.append({**info, "photons": photons})
    blob = {"y": torch.stack(ys), "truth_hu": torch.stack(xs), "meta": meta}
    _save_torch(path, blob)
    return blob


# ---------------------------------------------------------------------------------- measures
def case_measures(rec_hu: np.ndarray, truth_hu: np.ndarray, info: Dict[str, Any], grid,
                  config: Config) -> Dict[str, float]:
    """Every measure of one reconstruction (HU, ``(H, W)``) of one test case."""
    body = measures.body_mask(truth_hu, config.outline_threshold_hu)
    out = measures.psnr_ssim_body(rec_hu, truth_hu, body)
    shift = measures.outline_shift(rec_hu, truth_hu, grid.spacing, config.outline_threshold_hu)
    out["outline_mean_mm"], out["outline_max_mm"] = shift["mean_mm"], shift["max_mm"]
    out["air_hu"] = measures.air_error(rec_hu, body, grid.spacing, config.air_margin_mm)
    if info.get("lesion") is not None:
        core, ring = measures.lesion_regions(info["center"], info["radius"], grid)
        frac = measures.lesion_contrast(rec_hu, truth_hu, core, ring)
        cnr = measures.contrast_to_noise(rec_hu, core, ring, ref_hu=truth_hu)
        out["lesion_contrast"] = frac
        out["lesion_cnr"] = cnr
        out["lesion_detected"] = float(measures.lesion_detected(
            frac, cnr, math.copysign(1.0, info["contrast"]), config.cnr_threshold,
            config.min_contrast_fraction))
    return out


def aggregate(per_case: List[Dict[str, float]], meta: List[Dict[str, Any]],
              config: Config) -> Dict[str, Dict[str, float]]:
    """Means over cases per condition: ``{condition: {measure: value}}``.

    Phantom cases give ``psnr``, ``ssim``, ``outline_*``, ``air_hu`` (all anatomies, with and
    without lesions), ``lesion_*`` (lesion cases) and ``lesion<j>_contrast`` per lesion; the
    CT_small cases give ``ct_small_*``.
    """
    out: Dict[str, Dict[str, float]] = {}
    for photons in [None] + [float(p) for p in config.photons]:
        key = _photon_key(photons)
        idx = [i for i, m in enumerate(meta) if m["photons"] == photons]
        ph = [per_case[i] for i in idx if meta[i]["kind"] == "phantom"]
        row = {k: float(np.mean([c[k] for c in ph]))
               for k in ("psnr", "ssim", "outline_mean_mm", "outline_max_mm", "air_hu")}
        les = [c for c in ph if "lesion_contrast" in c]
        if les:
            for k in ("lesion_contrast", "lesion_cnr", "lesion_detected"):
                row[k] = float(np.mean([c[k] for c in les]))
            for j in range(len(config.lesions)):
                vals = [per_case[i]["lesion_contrast"] for i in idx
                        if meta[i]["kind"] == "phantom" and meta[i]["lesion"] == j]
                row[f"lesion{j}_contrast"] = float(np.mean(vals))
        for i in idx:
            if meta[i]["kind"] == "ct_small":
                for k in ("psnr", "ssim", "outline_mean_mm", "outline_max_mm", "air_hu"):
                    row[f"ct_small_{k}"] = per_case[i][k]
        out[key] = row
    return out


# ------------------------------------------------------------------------------------ models
def _loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE in units of the water attenuation: (HU / 1000)^2."""
    return F.mse_loss(output, target) / MU_WATER ** 2


def build_model(method: str, config: Config, grid, geometry, operator, fbp, seed: int):
    """The learned model ``method`` (sinogram -> attenuation image, 1/mm) on the fixed operators."""
    from recon.nets import LearnedPrimalDual, UNet, UNetPostProcessing, VariationalNetwork
    from recon.nets.trainable_fbp import TrainableFBP

    torch.manual_seed(seed)
    if method == "unet":
        return UNetPostProcessing(fbp, UNet(width=config.unet_width, depth=config.unet_depth),
                                  image_scale=MU_WATER)
    if method == "tfbp":
        return TrainableFBP(grid, geometry, learn_weights=True, learn_filter=False,
                            filter=config.fbp_filter)
    if method == "vn":
        return VariationalNetwork(operator, init=fbp, stages=config.vn_stages,
                                  filters=config.vn_filters, kernel_size=config.vn_kernel,
                                  image_scale=MU_WATER, seed=seed)
    if method == "lpd":
        return LearnedPrimalDual(operator, n_iter=config.lpd_iterations, width=config.lpd_width,
                                 image_scale=MU_WATER, seed=seed)
    raise ValueError(f"method must be one of {LEARNED}, got {method!r}")


@torch.no_grad()
def _reconstruct(fn: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor,
                 device: torch.device, batch: int = 16) -> torch.Tensor:
    """Reconstructions in HU, float32 ``(N, H, W)`` on the CPU."""
    from recon.data import mu_to_hu

    return torch.cat([mu_to_hu(fn(y[i:i + batch].to(device)).double().cpu()).float()
                      for i in range(0, len(y), batch)])


def _evaluate(fn, folder: Path, tests, grid, config: Config, device,
              stamp: Any = None) -> Dict[str, Any]:
    """Reconstruct every test case, measure, cache ``recons.pt`` and ``eval.json``.

    ``stamp`` identifies the model's state (the trainer's step count): a cached evaluation with
    another stamp (a model trained further since) or another :data:`MEASURES_VERSION` is
    recomputed.
    """
    done = folder / "eval.json"
    stamp = {"model": stamp, "measures": MEASURES_VERSION}
    if done.is_file() and (folder / "recons.pt").is_file():
        cached = json.loads(done.read_text())
        if cached.get("stamp") == stamp:
            return cached
    t0 = time.perf_counter()
    recs = _reconstruct(fn, tests["y"], device)
    seconds = time.perf_counter() - t0
    truth = tests["truth_hu"].double().numpy()
    per_case = [case_measures(recs[i].double().numpy(), truth[i], m, grid, config)
                for i, m in enumerate(tests["meta"])]
    res = {"per_case": per_case, "conditions": aggregate(per_case, tests["meta"], config),
           "seconds_reconstruction": seconds, "stamp": stamp}
    _save_torch(folder / "recons.pt", recs.half())
    write_json_atomic(done, res)
    return res


def choose_tv(config: Config, operator, data, device) -> Dict[str, Any]:
    """TV weight with the best mean validation PSNR inside the body (noise-free validation)."""
    from recon.data import mu_to_hu
    from recon.iterative import pdhg_setup, tv_pdhg

    y, x = data["validation"]
    s, tau, sigma = pdhg_setup(operator, device=device)
    scores = {}
    truth = mu_to_hu(x.double()).numpy()
    for lam in config.tv_lams:
        rec = _reconstruct(lambda v: tv_pdhg(operator, v, lam, config.tv_iterations,
                                             grad_scale=s, step_sizes=(tau, sigma)), y, device)
        vals = []
        for i in range(len(y)):
            body = measures.body_mask(truth[i], config.outline_threshold_hu)
            vals.append(measures.psnr_ssim_body(rec[i].double().numpy(), truth[i], body)["psnr"])
        scores[str(lam)] = float(np.mean(vals))
    best = max(scores, key=scores.get)
    if len(config.tv_lams) > 1 and best in (str(config.tv_lams[0]), str(config.tv_lams[-1])):
        log.warning("TV: the best lam %s is at the end of the grid %s", best, config.tv_lams)
    return {"lam": float(best), "iterations": config.tv_iterations, "validation_psnr": scores,
            "grad_scale": s, "step_sizes": [tau, sigma]}


def train_model(method: str, config: Config, grid, geometry, operator, fbp, data, seed: int,
                device: torch.device, folder: Path):
    """Train (or resume) one model in ``folder`` with :class:`recon.train.Trainer`."""
    from recon.train import TrainConfig, Trainer

    model = build_model(method, config, grid, geometry, operator, fbp, seed).to(device)
    lr = config.tfbp_lr if method == "tfbp" else config.lr
    tc = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=lr,
                     grad_clip=config.grad_clip, patience=config.patience, seed=int(seed),
                     max_steps=config.max_steps, device=str(device), progress=False,
                     log_every=20)
    train = torch.utils.data.TensorDataset(*data["train"])
    val = torch.utils.data.TensorDataset(*data["validation"])
    fit = Trainer(model, _loss, train, val, tc, folder).fit()
    model.eval()
    info = fit_summary(fit, folder.parents[2])  # paths relative to the experiment folder
    info["parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return model, info


# ------------------------------------------------------------------------------- adversarial
def adversarial(fn: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor,
                truth_hu: torch.Tensor, body: torch.Tensor, rel: float, steps: int,
                device: torch.device) -> torch.Tensor:
    """Projected gradient ascent on the squared error inside the body, ``||delta|| <= rel ||y||``.

    Parameters
    ----------
    fn : differentiable sinogram -> attenuation (1/mm) map
    y : ``(N, views, detectors)`` sinograms; truth_hu ``(N, H, W)``; body bool ``(N, H, W)``
    rel : float
        Bound of each perturbation's L2 norm relative to its sinogram's.

    Returns
    -------
    The perturbed sinograms ``y + delta`` ``(N, views, detectors)`` (CPU, float32).
    """
    from recon.data import hu_to_mu

    y = y.to(device).float()
    target = hu_to_mu(truth_hu.double()).float().to(device)
    m = body.to(device).float()
    radius = rel * y.flatten(1).norm(dim=1).view(-1, 1, 1)
    step = 2.5 * radius / steps
    delta = torch.zeros_like(y)
    for _ in range(steps):
        delta.requires_grad_(True)
        err = ((fn(y + delta) - target) * m).pow(2).sum()
        (grad,) = torch.autograd.grad(err, delta)
        with torch.no_grad():
            g = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, 1, 1)
            delta = delta + step * g
            norm = delta.flatten(1).norm(dim=1).view(-1, 1, 1)
            delta = delta * torch.clamp(radius / norm.clamp_min(1e-30), max=1.0)
    return (y + delta).detach().cpu()


def _adversarial_eval(fn, tests, grid, config: Config, device) -> Dict[str, float]:
    """Mean measures of ``fn`` on the attacked noise-free lesion cases; the same measures on the
    unattacked cases carry the suffix ``_clean``; ``relative_l2`` the largest perturbation."""
    idx = [i for i, m in enumerate(tests["meta"]) if m["kind"] == "phantom"
           and m["photons"] is None and m["lesion"] is not None][:config.adversarial_cases]
    y = tests["y"][idx]
    truth = tests["truth_hu"][idx]
    body = torch.stack([torch.from_numpy(measures.body_mask(t.double().numpy(),
                                                            config.outline_threshold_hu))
                        for t in truth])
    with torch.enable_grad():
        ya = adversarial(fn, y, truth, body, config.adversarial_rel, config.adversarial_steps,
                         device)
    out: Dict[str, float] = {}
    for suffix, inputs in (("", ya), ("_clean", y)):
        recs = _reconstruct(fn, inputs, device)
        per = [case_measures(recs[k].double().numpy(), truth[k].double().numpy(),
                             tests["meta"][i], grid, config) for k, i in enumerate(idx)]
        out.update({k + suffix: float(np.mean([p[k] for p in per])) for k in per[0]})
    out["relative_l2"] = float(((ya - y).flatten(1).norm(dim=1)
                                / y.flatten(1).norm(dim=1)).max())
    return out


# ----------------------------------------------------------------------------------- summary
def summarise(evals: Dict[str, List[Dict[str, Any]]]) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """``{method: {condition: {measure: {"mean", "std", "n", "per_seed"}}}}`` over seeds.

    Conditions: ``noise_free``, ``poisson_<N0>`` and, where evaluated, ``adversarial``.
    """
    out: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for method, runs in evals.items():
        conds: Dict[str, Dict[str, Any]] = {}
        names = list(runs[0]["conditions"])
        if all("adversarial" in r for r in runs):
            names.append("adversarial")
        for cond in names:
            rows = [r["adversarial"] if cond == "adversarial" else r["conditions"][cond]
                    for r in runs]
            with np.errstate(invalid="ignore"):  # inf (no outline found) has no std
                conds[cond] = {k: {**mean_std(row[k] for row in rows),
                                   "per_seed": [row[k] for row in rows]} for k in rows[0]}
        out[method] = conds
    return out


def _mean(summary, method, cond, key) -> Optional[float]:
    try:
        return summary[method][cond][key]["mean"]
    except KeyError:
        return None


def make_claims(summary, config: Config, note: str) -> List[Dict[str, Any]]:
    """The seed paper's claims about the U-Net against the known-operator networks, with numbers.

    Each claim compares how much a measure *degrades* from the matched (noise-free) test data to
    the fewest photons (``min(config.photons)``), the U-Net against every known-operator network
    present; absolute values in both conditions come with the numbers.
    """
    claims: List[Dict[str, Any]] = []
    if "unet" not in summary:
        return claims
    ko = [m for m in KNOWN_OPERATOR if m in summary]
    worst = _photon_key(min(config.photons))
    photons = min(config.photons)

    def values(cond, key):
        return {m: _mean(summary, m, cond, key) for m in summary}

    def change(key):  # noisy - noise-free, per method
        clean, noisy = values(NOISE_FREE, key), values(worst, key)
        return {m: None if clean[m] is None or noisy[m] is None else noisy[m] - clean[m]
                for m in summary}

    def undefined(delta):  # e.g. no outline in either condition: inf - inf
        return [m for m in ["unet"] + ko
                if delta.get(m) is None or math.isnan(delta[m])]

    def more(delta, sign):  # U-Net degrades more than every known-operator network
        # An undefined change (e.g. no outline in either condition) cannot show the claim, so
        # it does not hold; its numbers name the methods (change_undefined_for).
        return bool(ko) and not undefined(delta) \
            and all(sign * delta["unet"] > sign * delta[m] for m in ko)

    psnr = change("psnr")
    claims.append(claim(
        f"the U-Net trained on noise-free data loses more PSNR inside the body under unmatched "
        f"Poisson noise (N0 = {photons:.0e}) than every known-operator network",
        more(psnr, -1.0), photons=photons,
        psnr_drop_db={m: None if v is None else -v for m, v in psnr.items()},
        change_undefined_for=undefined(psnr),
        psnr_noise_free=values(NOISE_FREE, "psnr"), psnr_noisy=values(worst, "psnr"),
        ssim_noise_free=values(NOISE_FREE, "ssim"), ssim_noisy=values(worst, "ssim"),
        unet_noisy_psnr_still_above_every_known_operator_network=all(
            _mean(summary, "unet", worst, "psnr") > _mean(summary, m, worst, "psnr")
            for m in ko),
        configuration=note))
    if config.lesions:
        det = change("lesion_detected")
        claims.append(claim(
            f"the U-Net loses the unseen lesion under unmatched noise (N0 = {photons:.0e}): the "
            f"share of lesions it detects (CNR >= {config.cnr_threshold:g} and >= "
            f"{config.min_contrast_fraction:.0%} of the true contrast) falls, and by more than "
            "for every known-operator network",
            more(det, -1.0) and det["unet"] < 0, photons=photons,
            detected_change=det, change_undefined_for=undefined(det),
            detected_noise_free=values(NOISE_FREE, "lesion_detected"),
            detected_noisy=values(worst, "lesion_detected"),
            contrast_noise_free=values(NOISE_FREE, "lesion_contrast"),
            contrast_noisy=values(worst, "lesion_contrast"),
            lesions_per_condition=config.test_size * len(config.lesions),
            configuration=note))
    shift = change("outline_mean_mm")
    claims.append(claim(
        f"the U-Net's body outline ({config.outline_threshold_hu:g} HU) moves away from the true "
        f"one under unmatched noise (N0 = {photons:.0e}) by more than every known-operator "
        "network's (increase of the mean outline distance)",
        more(shift, 1.0) and shift["unet"] > 0, photons=photons,
        outline_mean_mm_increase=shift, change_undefined_for=undefined(shift),
        outline_mean_mm_noise_free=values(NOISE_FREE, "outline_mean_mm"),
        outline_mean_mm_noisy=values(worst, "outline_mean_mm"),
        outline_max_mm_noise_free=values(NOISE_FREE, "outline_max_mm"),
        outline_max_mm_noisy=values(worst, "outline_max_mm"),
        unet_max_reaches_10mm=bool((_mean(summary, "unet", worst, "outline_max_mm") or 0.0)
                                   >= 10.0),
        pixel_mm=config.pixel_mm, configuration=note))
    air = change("air_hu")
    claims.append(claim(
        f"the U-Net puts more new false structure into the air under unmatched noise "
        f"(N0 = {photons:.0e}) than every known-operator network (increase of the mean "
        f"|HU + 1000| beyond {config.air_margin_mm:g} mm of the body)",
        more(air, 1.0) and air["unet"] > 0, photons=photons, air_hu_increase=air,
        change_undefined_for=undefined(air),
        air_hu_noise_free=values(NOISE_FREE, "air_hu"), air_hu_noisy=values(worst, "air_hu"),
        configuration=note))
    adv = [m for m in ["unet"] + ko if "adversarial" in summary[m]]
    if "unet" in adv and len(adv) > 1:
        drops = {m: summary[m]["adversarial"]["psnr_clean"]["mean"]
                 - summary[m]["adversarial"]["psnr"]["mean"] for m in adv}
        claims.append(claim(
            f"an adversarial sinogram perturbation of at most {config.adversarial_rel:.0%} of "
            f"the sinogram's L2 norm ({config.adversarial_steps} projected-gradient steps) costs "
            "the U-Net more PSNR inside the body than every known-operator network",
            all(drops["unet"] > drops[m] for m in adv if m != "unet"),
            psnr_drop_db=drops,
            psnr_attacked={m: summary[m]["adversarial"]["psnr"]["mean"] for m in adv},
            lesion_contrast_attacked={m: summary[m]["adversarial"]["lesion_contrast"]["mean"]
                                      for m in adv},
            cases=config.adversarial_cases, configuration=note))
    return claims


# ----------------------------------------------------------------------------------- figures
def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _show(ax, img, title, vmin, vmax, cmap="gray"):
    artist = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    return artist


def _fig8(recs: Dict[str, torch.Tensor], tests, index: Dict[str, int], grid, config, out: Path,
          what: str):
    """The seed's Fig. 8 layout: reference | FBP | U-Net | known-operator nets | TV, two rows."""
    plt = _plt()
    methods = [m for m in ("fbp", "unet", "tfbp", "vn", "lpd", "tv") if m in recs]
    rows = [NOISE_FREE, _photon_key(min(config.photons))]
    fig, axes = plt.subplots(len(rows), len(methods) + 1,
                             figsize=(2.6 * (len(methods) + 1), 2.9 * len(rows)), squeeze=False)
    for r, cond in enumerate(rows):
        i = index[cond]
        ref = tests["truth_hu"][i].float().numpy()
        info = tests["meta"][i]
        body = measures.body_mask(ref, config.outline_threshold_hu).astype(float)
        _show(axes[r, 0], ref, "reference" + (" with lesion" if info.get("lesion") is not None
                                              else ""), *measures.HU_WINDOW)
        label = "noise-free" if cond == NOISE_FREE else f"N0 = {info['photons']:.0e}"
        axes[r, 0].set_ylabel(label, fontsize=8)
        for c, m in enumerate(methods, start=1):
            img = recs[m][i].float().numpy()
            if what == "images":
                _show(axes[r, c], img, "", *measures.HU_WINDOW)
                cm = case_measures(img.astype(np.float64), ref.astype(np.float64), info, grid,
                                   config)
                text = (f"{LABELS[m]} ({label})\n{cm['psnr']:.1f} dB, outline "
                        f"{cm['outline_mean_mm']:.1f} mm")
                if "lesion_contrast" in cm:
                    text += f"\nlesion {cm['lesion_contrast']:.2f}" + \
                            (" seen" if cm["lesion_detected"] else " lost")
                axes[r, c].set_title(text, fontsize=6)
                axes[r, c].contour(body, levels=[0.5], colors="tab:red", linewidths=0.5)
            else:
                artist = _show(axes[r, c], img - ref, f"{LABELS[m]} - reference ({label})",
                               -500, 500, cmap="RdBu_r")
                if c == len(methods):
                    fig.colorbar(artist, ax=axes[r, c], fraction=0.046, label="HU")
        if info.get("lesion") is not None:
            from matplotlib.patches import Circle
            cx, cy = info["center"]
            col = (cx / grid.spacing[1]) + (grid.shape[1] - 1) / 2
            row = (grid.shape[0] - 1) / 2 - cy / grid.spacing[0]
            rad = 1.8 * info["radius"] / grid.spacing[0]
            for ax in axes[r]:
                ax.add_patch(Circle((col, row), rad, fill=False, color="yellow", lw=0.5))
    arc = "short scan" if config.arc_deg is None else f"{config.arc_deg:g} deg"
    fig.suptitle(f"limited angle ({arc}, fan beam): window "
                 f"{'[-1000, 1000]' if what == 'images' else '[-500, 500] (difference)'} HU; "
                 f"red: true outline, yellow: lesion", fontsize=8)
    save_figure(fig, out / ("fig8.png" if what == "images" else "differences.png"))


def _ct_small_figure(recs, tests, config, out: Path):
    plt = _plt()
    idx = [i for i, m in enumerate(tests["meta"]) if m["kind"] == "ct_small"]
    if not idx:
        return
    methods = [m for m in ("fbp", "unet", "tfbp", "vn", "lpd", "tv") if m in recs]
    rows = [idx[0], idx[-1]]
    fig, axes = plt.subplots(2, len(methods) + 1, figsize=(2.1 * (len(methods) + 1), 4.6),
                             squeeze=False)
    for r, i in enumerate(rows):
        ref = tests["truth_hu"][i].float().numpy()
        p = tests["meta"][i]["photons"]
        label = "noise-free" if p is None else f"N0 = {p:.0e}"
        _show(axes[r, 0], ref, f"CT_small.dcm ({label})", *measures.HU_WINDOW)
        for c, m in enumerate(methods, start=1):
            _show(axes[r, c], recs[m][i].float().numpy(), LABELS[m], *measures.HU_WINDOW)
    save_figure(fig, out / "ct_small.png")


def _measure_plot(summary, config, out: Path):
    plt = _plt()
    keys = [("psnr", "PSNR in body (dB)"), ("ssim", "SSIM in body"),
            ("lesion_contrast", "lesion contrast recovered"),
            ("lesion_detected", "lesions detected (fraction)"),
            ("outline_mean_mm", "outline shift, mean (mm)"),
            ("outline_max_mm", "outline shift, max (mm)"), ("air_hu", "air: mean |HU+1000|"),
            ("ct_small_psnr", "CT_small PSNR (dB)")]
    photons = sorted(float(p) for p in config.photons)
    xs = photons + [10.0 * photons[-1]]
    conds = [_photon_key(p) for p in photons] + [NOISE_FREE]
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.5))
    for ax, (key, title) in zip(axes.ravel(), keys):
        for m in summary:
            mean = [summary[m][c].get(key, {}).get("mean", np.nan) for c in conds]
            std = [summary[m][c].get(key, {}).get("std", np.nan) for c in conds]
            mean = [np.nan if v is None or not np.isfinite(v) else v for v in mean]
            ax.errorbar(xs, mean, yerr=std, marker="o", ms=3, capsize=2, label=LABELS[m],
                        ls="--" if m in ("fbp", "tv") else "-")
        ax.set_xscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{p:.0e}" for p in photons] + ["no noise"], fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("incident photons N0", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("measures against photon count (mean and std over seeds)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out / "measures_vs_photons.png")


# --------------------------------------------------------------------------------------- run
def run(config: Config, out: Path, *, device: torch.device, seeds: Sequence[int]) -> dict:
    """Run the study; resumes from ``out/data``, the trainer checkpoints and the cached
    evaluations (``eval.json``, ``recons.pt``) in ``out/models/<method>/[seed<s>]``."""
    import operators
    from recon.iterative import tv_pdhg

    if not isinstance(config, Config):
        raise TypeError(f"config must be a {__name__}.Config, got {type(config).__name__}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    t_start = time.perf_counter()
    grid, geometry = setup_geometry(config)
    operator = operators.XRayTransform(grid, geometry).to(device)
    fbp = operators.FBP(grid, geometry, filter=config.fbp_filter).to(device).requires_grad_(False)
    data = training_data(config, grid, geometry, out / "data")
    tests = make_test_cases(config, grid, geometry, out / "data")
    log.info("%d test cases", len(tests["meta"]))

    evals: Dict[str, List[Dict[str, Any]]] = {}
    fns: Dict[str, Callable] = {}
    fits: Dict[str, List[Dict[str, Any]]] = {}
    tv_choice = None
    if "fbp" in config.methods:
        fns["fbp"] = fbp
        evals["fbp"] = [_evaluate(fbp, out / "models" / "fbp", tests, grid, config, device)]
    if "tv" in config.methods:
        choice_path = out / "models" / "tv" / "choice.json"
        if choice_path.is_file():
            tv_choice = json.loads(choice_path.read_text())
        else:
            tv_choice = choose_tv(config, operator, data, device)
            write_json_atomic(choice_path, tv_choice)
        lam, it = tv_choice["lam"], config.tv_iterations
        s, steps = tv_choice["grad_scale"], tuple(tv_choice["step_sizes"])
        fns["tv"] = lambda v: tv_pdhg(operator, v, lam, it, grad_scale=s, step_sizes=steps)
        evals["tv"] = [_evaluate(fns["tv"], out / "models" / "tv", tests, grid, config, device)]
    for method in LEARNED:
        if method not in config.methods:
            continue
        evals[method], fits[method] = [], []
        for seed in seeds:
            folder = out / "models" / method / f"seed{seed}"
            t0 = time.perf_counter()
            model, info = train_model(method, config, grid, geometry, operator, fbp, data, seed,
                                      device, folder)
            res = _evaluate(model, folder, tests, grid, config, device, stamp=info["steps"])
            if config.adversarial_rel > 0 and "psnr_clean" not in res.get("adversarial", {}):
                res["adversarial"] = _adversarial_eval(model, tests, grid, config, device)
                write_json_atomic(folder / "eval.json", res)
            evals[method].append(res)
            fits[method].append(info)
            if seed == seeds[0]:
                fns[method] = model
            log.info("%s seed %d: noise-free PSNR %.2f dB (%.0f s)", method, seed,
                     res["conditions"][NOISE_FREE]["psnr"], time.perf_counter() - t0)
    if config.adversarial_rel > 0 and "fbp" in evals \
            and "psnr_clean" not in evals["fbp"][0].get("adversarial", {}):
        evals["fbp"][0]["adversarial"] = _adversarial_eval(fbp, tests, grid, config, device)
        write_json_atomic(out / "models" / "fbp" / "eval.json", evals["fbp"][0])

    summary = summarise(evals)

    # figures: the first anatomy with the first lesion, noise-free and at the fewest photons
    recs = {}
    for m in evals:
        folder = out / "models" / m / ("" if m in ("fbp", "tv") else f"seed{seeds[0]}")
        recs[m] = torch.load(folder / "recons.pt", weights_only=True)
    want_lesion = (max(range(len(config.lesions)),
                       key=lambda j: config.lesions[j][0] * abs(config.lesions[j][1]))
                   if config.lesions else None)
    index = {}
    for i, meta in enumerate(tests["meta"]):
        if meta["kind"] == "phantom" and meta["anatomy"] == 0 and meta["lesion"] == want_lesion:
            index.setdefault(_photon_key(meta["photons"]), i)
    _fig8(recs, tests, index, grid, config, out, "images")
    _fig8(recs, tests, index, grid, config, out, "differences")
    _ct_small_figure(recs, tests, config, out)
    _measure_plot(summary, config, out)

    preset = next((k for k, v in PRESETS.items() if v == config), "custom")
    note = (f"preset {preset}: {config.size}x{config.size} pixels of {config.pixel_mm:g} mm, "
            f"arc {'short scan' if config.arc_deg is None else f'{config.arc_deg:g} deg'}, "
            f"{geometry.views} views, {config.train_size} training phantoms, max_steps "
            f"{config.max_steps}, {len(seeds)} seed(s)")
    table = []
    for m, conds in summary.items():
        for cond, row in conds.items():
            table.append({"method": LABELS[m], "condition": cond,
                          **{k: v["mean"] for k, v in row.items()},
                          **{k + "_std": v["std"] for k, v in row.items()
                             if k in ("psnr", "outline_mean_mm", "lesion_contrast")}})
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "seeds": seeds,
        "geometry": {"views": geometry.views, "detectors": geometry.detector_count,
                     "arc_deg": ("short scan" if config.arc_deg is None else config.arc_deg),
                     "first_to_last_view_deg": math.degrees(float(np.ptp(
                         geometry.angle_array()))),
                     "source_to_isocenter_mm": geometry.source_to_isocenter,
                     "source_to_detector_mm": geometry.source_to_detector},
        "measure_definitions": {
            "outline_threshold_hu": config.outline_threshold_hu,
            "air_margin_mm": config.air_margin_mm, "cnr_threshold": config.cnr_threshold,
            "min_contrast_fraction": config.min_contrast_fraction,
            "psnr_ssim_data_range_hu": measures.HU_WINDOW[1] - measures.HU_WINDOW[0]},
        "tv_choice": tv_choice,
        "fits": fits,
        "methods": summary,
        "table": table,
        "claims": make_claims(summary, config, note),
        "wall_time_s": time.perf_counter() - t_start,
    }
