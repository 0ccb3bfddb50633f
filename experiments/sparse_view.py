"""Learned reconstruction benchmark, sparse-view CT: FBP, TV, U-Net, VN, LPD (Adler & Öktem 2018).

Protocol (Adler & Öktem 2018, section IV; the same set-up as the baselines experiment, whose
:func:`experiments.baselines.ellipse_problem` and :func:`experiments.baselines.shepp_logan_case`
are reused): 128x128 images of 1 mm pixels, 30 parallel views over [0, pi), 183 detectors of 1 mm,
random-ellipse phantoms with values in [0, 1] (:class:`recon.data.EllipsesDataset`, exact
analytic sinograms: no inverse crime), additive white Gaussian noise of 5% of the mean absolute
sinogram value. Methods:

- **FBP**: filter and cutoff chosen on the validation split (best mean PSNR);
- **TV**: isotropic TV-regularised least squares with non-negativity
  (:func:`recon.iterative.tv_pdhg`), the weight ``lam`` chosen on the validation split from a grid;
- **U-Net**: FBPConvNet (Jin et al. 2017) on that FBP, residual
  (:class:`recon.nets.UNetPostProcessing`);
- **VN**: variational network (Hammernik et al. 2018) initialised with that FBP
  (:class:`recon.nets.VariationalNetwork`);
- **LPD**: learned primal-dual (:class:`recon.nets.LearnedPrimalDual`), zero initialisation as the
  paper in ``full``; initialised with that FBP in ``quick`` (see below).

All learned models train on the same data with the same trainer (:mod:`recon.train`: Adam, cosine
decay from 1e-3, gradient clipping at global norm 1, MSE loss, validation after each epoch, best
weights kept), one run per seed in ``out/models/<method>/seed<s>`` (resumable after a kill; a
finished model is not retrained). The ``full`` trainer settings follow the reference code
(``adler-j/learned_primal_dual``): batch 5, 100 000 steps; it uses Adam's beta2 = 0.99, we use
torch's default 0.999. Evaluation: PSNR and SSIM with ``data_range = 1`` (images in [0, 1]) on the
test split (mean and std over the test images, then mean and std of the per-seed means over
seeds), on the modified Shepp-Logan phantom and on the CT_small.dcm slice (see
:func:`extra_test_images`). Seconds per training step come from the trainer, on the device used;
:func:`time_steps` measures them without training.

What is adapted: our Joseph projector, ellipse generator and noise draw, Adam's beta2, a
fixed training set (``train_size`` phantoms with one noise draw each, revisited every epoch; the
reference code draws new phantoms and noise every 10 steps), and in
``quick`` about 150 optimiser steps instead of 100 000 (a 2-core CPU budget of ~10 minutes per
model), a narrower U-Net (32 channels), 7x7 VN filters, and LPD started from the FBP image with
zero-initialised last layers (``lpd_init="fbp"``, ``lpd_update_init="zero"``): from zeros, LPD
needs far more steps than ``quick`` allows (on a GPU, 150 steps: 25.4 dB from zeros, 30.6 dB from
FBP, 2026-11-26).
"""

from __future__ import annotations

import io
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from operators.fbp import FILTERS

from .common import (check_config, claim, fit_summary, load_cache, mean_std, save_figure,
                     write_bytes_atomic, write_json_atomic)

NAME = "sparse-view"
DESCRIPTION = ("Sparse-view CT (30 views, 5% noise ellipses): FBP, TV, U-Net, VN, LPD trained on "
               "the same data; PSNR/SSIM over test images and seeds")
REFERENCE = ("Adler & Öktem 2018, IEEE TMI 37(6) (learned primal-dual); Hammernik et al. 2018, "
             "MRM 79(6) (variational network); Jin et al. 2017, IEEE TIP 26(9) (FBPConvNet)")

log = logging.getLogger(__name__)

METHODS = ("fbp", "tv", "unet", "vn", "lpd")
LEARNED = ("unet", "vn", "lpd")
LABELS = {"fbp": "FBP", "tv": "TV", "unet": "FBP+U-Net", "vn": "VN", "lpd": "LPD"}
DEFAULT_SEEDS = {"tiny": 1, "quick": 1, "full": 3}


@dataclass(frozen=True)
class Config:
    """Every knob of the benchmark (defaults: the full, paper-scale configuration, for a GPU).

    Attributes
    ----------
    size : int
        Image side in pixels (pixels of ``pixel_mm``).
    views : int
        Parallel views uniformly over [0, pi).
    detectors : int
        Detector elements of ``pixel_mm`` (183 = ceil(128 sqrt 2) + 1 covers the grid).
    noise : float
        Relative Gaussian noise (std = noise * mean |sinogram|).
    train_size, val_size, test_size : int
        Items per split (generated once and kept in memory / ``out/data``).
    data_seed : int
        Seed of the datasets (the same data for every method and training seed).
    methods : tuple of str
        Subset of ``("fbp", "tv", "unet", "vn", "lpd")``.
    fbp_filters, fbp_cutoffs : tuple
        FBP filter/cutoff grid searched on the validation split.
    tv_lams : tuple of float
        TV weights searched on the validation split (units of ``y^2 / x``).
    tv_iterations : int
        PDHG iterations.
    tv_val_images : int
        Validation images used for the choice of ``lam`` (and of the FBP filter).
    unet_width, unet_depth : int
        U-Net channels of the first level and number of poolings (Jin et al.: 64 and 4).
    vn_stages, vn_filters, vn_kernel : int
        VN stages, filters per stage and filter size (Hammernik et al.: 10, 24/48, 11).
    lpd_iterations, lpd_width : int
        LPD unrolled iterations and CNN width (Adler & Öktem: 10 and 32).
    lpd_init, lpd_update_init : str
        LPD start value ("zeros" as the paper, or "fbp": the chosen FBP) and initialisation of
        the last layer of its CNNs ("xavier" as the paper, or "zero").
    batch_size, lr, epochs, max_steps, patience, grad_clip :
        Trainer settings (:class:`recon.train.TrainConfig`), the same for every learned model.
    ct_upsample : int
        Refinement of the grid that simulates the CT_small sinogram.
    data_workers : int
        Processes generating the datasets (0: in the main process).
    """

    size: int = 128
    pixel_mm: float = 1.0
    views: int = 30
    detectors: int = 183
    noise: float = 0.05
    train_size: int = 32000
    val_size: int = 200
    test_size: int = 100
    data_seed: int = 0
    methods: Tuple[str, ...] = METHODS
    fbp_filters: Tuple[str, ...] = ("ram-lak", "shepp-logan", "cosine", "hamming", "hann")
    fbp_cutoffs: Tuple[float, ...] = (1.0, 0.8, 0.6, 0.4)
    tv_lams: Tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
    tv_iterations: int = 1000
    tv_val_images: int = 20
    unet_width: int = 64
    unet_depth: int = 4
    vn_stages: int = 10
    vn_filters: int = 24
    vn_kernel: int = 11
    lpd_iterations: int = 10
    lpd_width: int = 32
    lpd_init: str = "zeros"
    lpd_update_init: str = "xavier"
    batch_size: int = 5
    lr: float = 1e-3
    epochs: int = 16
    max_steps: Optional[int] = 100_000
    patience: Optional[int] = None
    grad_clip: Optional[float] = 1.0
    ct_upsample: int = 4
    data_workers: int = 8

    def __post_init__(self):
        check_config(self)
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ValueError(f"methods must be a non-empty subset of {METHODS}, got "
                             f"{self.methods!r}")
        if not (self.noise >= 0 and math.isfinite(self.noise)):
            raise ValueError(f"Config.noise must be >= 0, got {self.noise!r}")
        if not self.fbp_filters or any(f not in FILTERS for f in self.fbp_filters):
            raise ValueError(f"Config.fbp_filters must be a non-empty subset of {FILTERS}, got "
                             f"{self.fbp_filters!r}")
        if not self.fbp_cutoffs or any(not 0 < c <= 1 for c in self.fbp_cutoffs):
            raise ValueError(f"Config.fbp_cutoffs must be in (0, 1], got {self.fbp_cutoffs!r}")
        if self.lpd_update_init not in ("xavier", "zero"):
            raise ValueError(f"Config.lpd_update_init must be 'xavier' or 'zero', got "
                             f"{self.lpd_update_init!r}")
        if self.lpd_init not in ("zeros", "fbp"):
            raise ValueError(f"Config.lpd_init must be 'zeros' or 'fbp', got {self.lpd_init!r}")
        if not self.tv_lams or any(not lam >= 0 for lam in self.tv_lams):
            raise ValueError(f"Config.tv_lams must be non-negative numbers, got {self.tv_lams!r}")


PRESETS = {
    # seconds, for CI: 16x16, few views, two optimiser steps per model
    "tiny": Config(size=16, views=8, detectors=24, ct_upsample=2, train_size=8, val_size=4,
                   test_size=4, tv_lams=(0.3, 3.0),
                   fbp_filters=("ram-lak", "hann"), fbp_cutoffs=(1.0,), tv_iterations=20,
                   tv_val_images=4, unet_width=4, unet_depth=2, vn_stages=2, vn_filters=4,
                   vn_kernel=5, lpd_iterations=2, lpd_width=8, batch_size=4, epochs=1,
                   max_steps=2, patience=None, data_workers=0),
    # about 10 minutes per learned model on a 2-core CPU: the paper's protocol and models (U-Net
    # narrower, VN 7x7 filters, LPD from FBP), 128x128, but 150 optimiser steps instead of 1e5
    "quick": Config(train_size=600, val_size=24, test_size=32, tv_iterations=300,
                    tv_lams=(1.0, 3.0, 10.0), lpd_init="fbp", lpd_update_init="zero",
                    tv_val_images=8, fbp_cutoffs=(1.0, 0.7, 0.5), unet_width=32, vn_kernel=7,
                    batch_size=4, epochs=1, max_steps=150, patience=None, data_workers=0),
    # paper scale (GPU)
    "full": Config(),
}


# ------------------------------------------------------------------------------------ set-up
def _baselines_config(config: Config):
    """The baselines experiment's config with this protocol (its set-up functions are reused)."""
    from . import baselines

    return baselines.Config(size=config.size, pixel_size=config.pixel_mm, views=config.views,
                            detectors=config.detectors, noise=config.noise,
                            noise_realisations=1, ct_upsample=config.ct_upsample,
                            seed=config.data_seed)


def setup(config: Config):
    """Grid, geometry (the baselines experiment's :func:`experiments.baselines.ellipse_problem`)
    and the three datasets of the protocol.

    Returns ``(grid, geometry, {"train": ds, "validation": ds, "test": ds})`` with
    :class:`recon.data.EllipsesDataset` items ``(sinogram (views, detectors), image (H, W))``;
    with the same ``data_seed`` the validation and test items are those of the baselines run.
    """
    from recon.data import EllipsesDataset

    from . import baselines

    grid, geometry = baselines.ellipse_problem(_baselines_config(config))
    noise = {"kind": "gaussian", "relative": config.noise} if config.noise > 0 else None
    lengths = {"train": config.train_size, "validation": config.val_size,
               "test": config.test_size}
    datasets = {split: EllipsesDataset(split, n, grid, geometry, noise=noise,
                                       seed=config.data_seed)
                for split, n in lengths.items()}
    return grid, geometry, datasets


def _materialize(dataset, workers: int) -> Tuple[torch.Tensor, torch.Tensor]:
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=32, shuffle=False, num_workers=workers)
    ys, xs = [], []
    for y, x in loader:
        ys.append(y)
        xs.append(x)
    return torch.cat(ys), torch.cat(xs)


def load_data(config: Config, datasets,
              cache: Path) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
    """``{split: (sinograms (N, views, dets), images (N, H, W))}``, cached in ``cache`` (atomic)."""
    key = {k: v for k, v in asdict(config).items()
           if k in ("size", "pixel_mm", "views", "detectors", "noise", "train_size",
                    "val_size", "test_size", "data_seed")}
    path = Path(cache) / "data.pt"
    blob = load_cache(path)
    if isinstance(blob, dict) and blob.get("key") == key:
        return {s: (blob[s + "_y"], blob[s + "_x"]) for s in datasets}
    t0 = time.perf_counter()
    data = {s: _materialize(ds, config.data_workers) for s, ds in datasets.items()}
    log.info("generated %s items in %.1f s", {s: len(d[0]) for s, d in data.items()},
             time.perf_counter() - t0)
    blob = {"key": key}
    for s, (y, x) in data.items():
        blob[s + "_y"], blob[s + "_x"] = y, x
    buf = io.BytesIO()
    torch.save(blob, buf)
    write_bytes_atomic(path, buf.getvalue())
    return data


def extra_test_images(config: Config, grid,
                      geometry) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
    """Shepp-Logan and CT_small, both in [0, 1], with noisy sinograms in the training geometry.

    - Shepp-Logan: :func:`experiments.baselines.shepp_logan_case` (modified Shepp-Logan in the
      disk of radius ``0.45 size`` pixels, exact sinogram, one noise draw).
    - CT_small.dcm: its attenuation divided by its maximum, resampled to the grid (area
      averaging when the size is not 128) and read on the training grid's pixels (so the trained
      models apply: a 128 mm field instead of the slice's 85 mm); sinogram by a ``ct_upsample``
      times finer projector of the pixel-replicated image (no inverse crime, as the baselines
      experiment), one noise draw. Skipped with a warning when pydicom is missing.

    Returns ``{name: (sinogram (1, views, dets), image (1, H, W))}`` in float32.
    """
    import operators

    from recon.data import gaussian_noise
    from recon.data.ct_small import ct_small_mu

    from . import baselines

    gen = torch.Generator().manual_seed(12345)
    out = {}
    image, noisy = baselines.shepp_logan_case(_baselines_config(config), gen)
    out["shepp_logan"] = (noisy[:1].float(), image[None].float())
    try:
        mu, _ = ct_small_mu()
    except ImportError as exc:  # pydicom missing: a dependency of the project, but say so
        log.warning("CT_small.dcm skipped: %s (pip install pydicom)", exc)
        return out
    img = (mu / mu.max()).double()[None, None]
    if tuple(img.shape[-2:]) != tuple(grid.shape):
        img = torch.nn.functional.interpolate(img, size=grid.shape, mode="area")
    img = img[0, 0].clamp(0, 1)
    u = config.ct_upsample
    fine_grid = operators.ImageGrid((grid.shape[0] * u, grid.shape[1] * u),
                                    (grid.spacing[0] / u, grid.spacing[1] / u))
    fine = img.repeat_interleave(u, 0).repeat_interleave(u, 1)
    with torch.no_grad():
        clean = operators.XRayTransform(fine_grid, geometry)(fine)
    out["ct_small"] = (gaussian_noise(clean, config.noise, gen)[None].float(), img[None].float())
    return out


# ------------------------------------------------------------------------------ evaluation
def _metrics(rec: torch.Tensor, ref: torch.Tensor) -> Dict[str, np.ndarray]:
    from recon.metrics import psnr, ssim

    rec, ref = rec.detach().double().cpu(), ref.detach().double().cpu()
    return {"psnr": psnr(rec, ref, 1.0).numpy(), "ssim": ssim(rec, ref, 1.0).numpy()}


@torch.no_grad()
def _reconstruct(fn: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor,
                 device: torch.device, batch: int = 16) -> torch.Tensor:
    return torch.cat([fn(y[i:i + batch].to(device)).float().cpu()
                      for i in range(0, len(y), batch)])


def _evaluate(fn, data, extra, device) -> Dict[str, Any]:
    """Metrics of one reconstruction function on the test split and the two extra images."""
    y, x = data["test"]
    res: Dict[str, Any] = {}
    m = _metrics(_reconstruct(fn, y, device), x)
    res["test"] = {k: v.tolist() for k, v in m.items()}
    for name, (ye, xe) in extra.items():
        me = _metrics(_reconstruct(fn, ye, device), xe)
        res[name] = {k: float(v[0]) for k, v in me.items()}
    return res


def choose_fbp(config: Config, grid, geometry, data, device) -> Tuple[Dict[str, Any], Any]:
    """FBP filter and cutoff with the best mean validation PSNR; returns (record, FBP module)."""
    import operators

    y, x = data["validation"]
    y, x = y[:config.tv_val_images], x[:config.tv_val_images]
    scores = {}
    for name in config.fbp_filters:
        for cutoff in config.fbp_cutoffs:
            fbp = operators.FBP(grid, geometry, filter=name, cutoff=cutoff).to(device)
            scores[f"{name}@{cutoff}"] = float(_metrics(_reconstruct(fbp, y, device), x)
                                               ["psnr"].mean())
    best = max(scores, key=scores.get)
    name, cutoff = best.split("@")
    fbp = operators.FBP(grid, geometry, filter=name, cutoff=float(cutoff)).to(device)
    return {"filter": name, "cutoff": float(cutoff), "validation_psnr": scores}, fbp


def choose_tv(config: Config, operator, data, device) -> Dict[str, Any]:
    """TV weight with the best mean validation PSNR."""
    from recon.iterative import tv_pdhg

    y, x = data["validation"]
    y, x = y[:config.tv_val_images], x[:config.tv_val_images]
    scores = {}
    for lam in config.tv_lams:
        rec = _reconstruct(lambda v: tv_pdhg(operator, v, lam, config.tv_iterations), y, device)
        scores[str(lam)] = float(_metrics(rec, x)["psnr"].mean())
    best = max(scores, key=scores.get)
    if best in (str(config.tv_lams[0]), str(config.tv_lams[-1])) and len(config.tv_lams) > 1:
        log.warning("TV: the best lam %s is at the end of the grid %s", best, config.tv_lams)
    return {"lam": float(best), "iterations": config.tv_iterations, "validation_psnr": scores}


# ------------------------------------------------------------------------------- learned models
def build_model(method: str, config: Config, operator, fbp, seed: int):
    """The learned model ``method`` (sinogram -> image) on the fixed ``operator`` / ``fbp``."""
    from recon.nets import LearnedPrimalDual, UNet, UNetPostProcessing, VariationalNetwork

    torch.manual_seed(seed)
    if method == "unet":
        return UNetPostProcessing(fbp, UNet(width=config.unet_width, depth=config.unet_depth))
    if method == "vn":
        return VariationalNetwork(operator, init=fbp, stages=config.vn_stages,
                                  filters=config.vn_filters, kernel_size=config.vn_kernel,
                                  seed=seed)
    if method == "lpd":
        return LearnedPrimalDual(operator, n_iter=config.lpd_iterations, width=config.lpd_width,
                                 init=fbp if config.lpd_init == "fbp" else "zeros",
                                 update_init=config.lpd_update_init, seed=seed)
    raise ValueError(f"method must be one of {LEARNED}, got {method!r}")


def train_config(config: Config, seed: int, device: torch.device):
    from recon.train import TrainConfig

    return TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                       grad_clip=config.grad_clip, patience=config.patience, seed=int(seed),
                       max_steps=config.max_steps, device=str(device), progress=False,
                       log_every=10, checkpoint_every=25)  # quick: one epoch of 150 steps


def train_and_evaluate(method: str, config: Config, operator, fbp, data, extra, seed: int,
                       device: torch.device, out: Path) -> Dict[str, Any]:
    """Train (or resume) one model and evaluate it once on the test data; cached in eval.json."""
    import json

    from recon.train import Trainer

    folder = out / "models" / method / f"seed{seed}"
    done = folder / "eval.json"
    if done.is_file():
        return json.loads(done.read_text())
    model = build_model(method, config, operator, fbp, seed).to(device)
    train = torch.utils.data.TensorDataset(*data["train"])
    val = torch.utils.data.TensorDataset(*data["validation"])
    trainer = Trainer(model, None, train, val, train_config(config, seed, device), folder)
    fit = trainer.fit()
    model.eval()
    res = _evaluate(model, data, extra, device)
    res["fit"] = fit_summary(fit, out)
    res["parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    write_json_atomic(done, res)
    return res


def time_steps(config: Config, device, steps: int = 10, warmup: int = 3,
               methods: Sequence[str] = LEARNED) -> Dict[str, Dict[str, float]]:
    """Seconds per training step (forward, backward, Adam update) of each learned model.

    Random images and their noisy projections at the configuration's size and batch size; the
    first ``warmup`` steps (caches, kernel compilation) are not timed; CUDA is synchronised.
    Returns ``{method: {"seconds_per_step": median, "min": ..., "batch_size": ...,
    "device": ...}}``.
    """
    import operators
    from recon.data import gaussian_noise

    device = torch.device(device)
    grid, geometry, _ = setup(config)
    operator = operators.XRayTransform(grid, geometry).to(device)
    fbp = operators.FBP(grid, geometry).to(device).requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(config.batch_size, *grid.shape, generator=gen).to(device)
    with torch.no_grad():
        y = gaussian_noise(operator(x), config.noise)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    res = {}
    for method in methods:
        model = build_model(method, config, operator, fbp, 0).to(device).train()
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], config.lr)
        times = []
        for i in range(warmup + steps):
            sync()
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(model(y), x)
            loss.backward()
            opt.step()
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        res[method] = {"seconds_per_step": float(np.median(times)), "min": float(np.min(times)),
                       "batch_size": config.batch_size, "size": config.size,
                       "device": str(device), "threads": torch.get_num_threads()}
        log.info("%s: %.4f s per step (batch %d, %s)", method, res[method]["seconds_per_step"],
                 config.batch_size, device)
    return res


# ---------------------------------------------------------------------------------- summary
def _summary(per_seed: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Mean/std over test images per seed, then over seeds; extra images over seeds."""
    out: Dict[str, Any] = {}
    for metric in ("psnr", "ssim"):
        seed_means = [float(np.mean(r["test"][metric])) for r in per_seed]
        seed_stds = [float(np.std(r["test"][metric])) for r in per_seed]
        out[metric] = {"mean": float(np.mean(seed_means)),
                       "std_test": float(np.mean(seed_stds)),
                       "std_seeds": float(np.std(seed_means)),
                       "per_seed": seed_means}
        for name in (n for n in ("shepp_logan", "ct_small") if n in per_seed[0]):
            out.setdefault(name, {})[metric] = mean_std(r[name][metric] for r in per_seed)
    fits = [r.get("fit") for r in per_seed if r.get("fit")]
    if fits:
        out["seconds_per_step"] = mean_std(f["seconds_per_step"] for f in fits
                                           if f["seconds_per_step"] is not None)
        out["steps"] = [f["steps"] for f in fits]
        out["best_val_loss"] = [f["best_val_loss"] for f in fits]
    return out


def _claims(summary: Dict[str, Dict[str, Any]], preset_note: str) -> List[Dict[str, Any]]:
    def psnr(m):
        return summary[m]["psnr"]["mean"] if m in summary else None

    claims = []
    lpd, unet, tv, fbp = psnr("lpd"), psnr("unet"), psnr("tv"), psnr("fbp")
    if None not in (lpd, unet, fbp):
        claims.append(claim("LPD > FBP+U-Net > FBP in mean test PSNR (goal of the quick "
                            "configuration)", lpd > unet > fbp, lpd=lpd, unet=unet, fbp=fbp,
                            configuration=preset_note))
    if None not in (lpd, unet, tv):
        claims.append(claim("LPD at least 6 dB PSNR above FBP+U-Net and TV (Adler & Öktem "
                            "2018; goal of the full configuration)",
                            lpd - unet >= 6.0 and lpd - tv >= 6.0, lpd=lpd, unet=unet, tv=tv,
                            gap_to_unet=lpd - unet, gap_to_tv=lpd - tv,
                            configuration=preset_note))
    return claims


# ---------------------------------------------------------------------------------- figures
def _figures(config, recs: Dict[str, Dict[str, torch.Tensor]], refs, summary, out: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recon.metrics import psnr

    cases = list(refs)
    methods = [m for m in METHODS if m in recs]
    fig, axes = plt.subplots(len(cases), len(methods) + 1,
                             figsize=(2.2 * (len(methods) + 1), 2.3 * len(cases)), squeeze=False)
    for r, case in enumerate(cases):
        ref = refs[case]
        axes[r, 0].imshow(ref.numpy(), cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_title(f"truth ({case})", fontsize=8)
        for c, m in enumerate(methods, start=1):
            img = recs[m][case]
            axes[r, c].imshow(img.numpy(), cmap="gray", vmin=0, vmax=1)
            value = float(psnr(img.double(), ref.double(), 1.0))
            axes[r, c].set_title(f"{LABELS[m]}: {value:.1f} dB", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{config.size}x{config.size}, {config.views} views, {100 * config.noise:g}% "
                 "noise", fontsize=9)
    save_figure(fig, out / "examples.png")

    fig, ax = plt.subplots(figsize=(1.2 * len(methods) + 2, 3))
    means = [summary[m]["psnr"]["mean"] for m in methods]
    errs = [max(summary[m]["psnr"]["std_test"], summary[m]["psnr"]["std_seeds"])
            for m in methods]
    ax.bar([LABELS[m] for m in methods], means, yerr=errs, capsize=4, color="tab:blue")
    for i, v in enumerate(means):
        ax.text(i, v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("PSNR (dB), test split")
    ax.set_title("mean over test images and seeds (error: larger of the two stds)", fontsize=8)
    save_figure(fig, out / "psnr.png")


# -------------------------------------------------------------------------------------- run
def run(config: Config, out: Path, *, device: torch.device, seeds: Sequence[int]) -> dict:
    """Run the benchmark; resumes from ``out/data/data.pt``, ``out/classical.json`` and the
    per-model checkpoints and ``eval.json`` files found in ``out/models/<method>/seed<s>``."""
    import json

    import operators

    out = Path(out)
    device = torch.device(device)
    seeds = [int(s) for s in seeds]
    grid, geometry, datasets = setup(config)
    operator = operators.XRayTransform(grid, geometry).to(device)
    data = load_data(config, datasets, out / "data")
    extra = extra_test_images(config, grid, geometry)

    fbp_choice, fbp = choose_fbp(config, grid, geometry, data, device)
    fbp.requires_grad_(False)
    per_method: Dict[str, List[Dict[str, Any]]] = {}
    recon_fns: Dict[str, Callable] = {}
    classical_path = out / "classical.json"
    classical = json.loads(classical_path.read_text()) if classical_path.is_file() else {}
    if "fbp" in config.methods:
        if "fbp" not in classical:
            classical["fbp"] = _evaluate(fbp, data, extra, device)
            write_json_atomic(classical_path, classical)
        per_method["fbp"] = [classical["fbp"]]
        recon_fns["fbp"] = fbp
    tv_choice = None
    if "tv" in config.methods:
        from recon.iterative import tv_pdhg

        if "tv" not in classical:
            tv_choice = choose_tv(config, operator, data, device)
            lam = tv_choice["lam"]
            classical["tv"] = _evaluate(lambda v: tv_pdhg(operator, v, lam, config.tv_iterations),
                                        data, extra, device)
            classical["tv"]["choice"] = tv_choice
            write_json_atomic(classical_path, classical)
        tv_choice = classical["tv"]["choice"]
        per_method["tv"] = [classical["tv"]]
        lam = tv_choice["lam"]
        recon_fns["tv"] = lambda v: tv_pdhg(operator, v, lam, config.tv_iterations)

    for method in LEARNED:
        if method not in config.methods:
            continue
        runs = []
        for seed in seeds:
            t0 = time.perf_counter()
            runs.append(train_and_evaluate(method, config, operator, fbp, data, extra, seed,
                                           device, out))
            log.info("%s seed %d: test PSNR %.2f dB (%.0f s)", method, seed,
                     float(np.mean(runs[-1]["test"]["psnr"])), time.perf_counter() - t0)
        per_method[method] = runs
        model = build_model(method, config, operator, fbp, seeds[0]).to(device)
        model.load_state_dict(torch.load(out / "models" / method / f"seed{seeds[0]}" / "best.pt",
                                         weights_only=True, map_location=device))
        recon_fns[method] = model.eval()

    summary = {m: _summary(runs) for m, runs in per_method.items()}
    # Figures: the first test image, Shepp-Logan and CT_small; learned models of the first seed.
    y0, x0 = data["test"][0][:1], data["test"][1][:1]
    cases = {"test[0]": (y0, x0), **extra}
    refs = {c: v[1][0] for c, v in cases.items()}
    recs = {m: {c: _reconstruct(fn, v[0], device)[0] for c, v in cases.items()}
            for m, fn in recon_fns.items()}
    _figures(config, recs, refs, summary, out)

    preset = next((k for k, v in PRESETS.items() if v == config), "custom")
    table = [{"method": LABELS[m], "psnr": s["psnr"]["mean"],
              "psnr_std_test": s["psnr"]["std_test"],
              "psnr_std_seeds": s["psnr"]["std_seeds"], "ssim": s["ssim"]["mean"],
              "ssim_std_test": s["ssim"]["std_test"],
              "shepp_logan_psnr": s["shepp_logan"]["psnr"]["mean"],
              "ct_small_psnr": s.get("ct_small", {}).get("psnr", {}).get("mean"),
              "seconds_per_step": s.get("seconds_per_step", {}).get("mean")}
             for m, s in summary.items()]
    return {
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else "cpu"),
        "torch_threads": torch.get_num_threads(),
        "seeds": seeds,
        "fbp_choice": fbp_choice,
        "tv_choice": tv_choice,
        "methods": summary,
        "table": table,
        "claims": _claims(summary, f"preset {preset}: {config.size}x{config.size}, "
                                   f"{config.train_size} training images, max_steps "
                                   f"{config.max_steps}, {len(seeds)} seed(s)"),
    }
