"""Robustness measures of the limited-angle study: body outline, lesion contrast, air, PSNR/SSIM.

Every function takes single images ``(H, W)`` in Hounsfield units (numpy arrays or tensors; air
is -1000 HU) and pixel spacings ``(dy, dx)`` in mm, and returns plain floats, so the study can
average them over images, lesions and seeds.

Definitions (stated once, used by :mod:`experiments.limited_angle`):

* **Body mask** (:func:`body_mask`): pixels above ``threshold_hu`` (default -500 HU, halfway
  between air and water), the largest 4-connected component, holes filled (the lungs, at about
  -850 HU, are inside the body). The ground truth's body mask is where the measures "inside the
  body" are taken.
* **Outline** (:func:`outline`): the boundary pixels of a body mask (mask pixels with a
  4-neighbour outside it).
* **Outline shift** (:func:`outline_shift`): the distance (mm, Euclidean distance transform with
  the pixel spacing) from every outline pixel of one image to the nearest outline pixel of the
  other, in both directions; ``mean_mm`` is the mean over both outlines (the symmetric mean
  surface distance), ``max_mm`` the largest (the Hausdorff distance). Pixel-quantised: a shift
  below one pixel is not resolved. A reconstruction without any pixel above the threshold has
  no outline: the shift is ``inf``.
* **Lesion contrast recovered** (:func:`lesion_contrast`): ``(mean(rec[core]) - mean(rec[ring]))
  / (mean(ref[core]) - mean(ref[ring]))``: 1 for a perfect reconstruction, 0 when the lesion is
  gone. The core is the disk of radius ``r - pixel/2`` (partial-volume pixels at the lesion's
  edge excluded; at least the pixel nearest to the centre), the ring the annulus from
  ``r + gap`` to ``r + gap + width`` (:func:`lesion_regions`).
* **Contrast-to-noise ratio** (:func:`contrast_to_noise`): ``(mean(rec[core]) - mean(rec[ring]))
  / max(std((rec - ref)[ring]), std_floor)``: the noise is the fluctuation of the reconstruction
  error in the ring (noise and artifacts, not the anatomy the ring may cross), with a floor of
  1 HU so that a perfect reconstruction gives a finite number. A lesion counts as **detected**
  (:func:`lesion_detected`) when its CNR is at least ``cnr_threshold`` (default 3) *and* at least
  ``min_fraction`` (default 0.5) of its true contrast is recovered, with the true sign.
* **False structure in the air** (:func:`air_error`): mean ``|rec + 1000|`` HU over the pixels
  farther than ``margin_mm`` from the true body mask (default 10 mm, so that the blur of the
  skin edge is not counted).
* **PSNR / SSIM inside the body** (:func:`psnr_ssim_body`): :func:`recon.metrics.psnr` and
  :func:`recon.metrics.ssim` on HU images with ``data_range = 2000`` HU (the display window
  [-1000, 1000] HU), masked by the true body mask.

References: Y. Huang, T. Würfl, K. Breininger, L. Liu, G. Lauritsch, A. Maier, "Some
investigations on robustness of deep learning in limited angle tomography", MICCAI 2018 (the
effects measured here: lost lesions, shifted body outline, structures in the air).
"""

from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple

import numpy as np
import torch
from scipy import ndimage

from operators._checks import real

__all__ = ["HU_WINDOW", "body_mask", "outline", "outline_shift", "lesion_regions",
           "lesion_contrast", "contrast_to_noise", "lesion_detected", "air_error",
           "psnr_ssim_body"]

#: Display window of the study (HU); its width is the data range of PSNR and SSIM.
HU_WINDOW = (-1000.0, 1000.0)

_FOUR = ndimage.generate_binary_structure(2, 1)


def _image(name: str, value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu", torch.float64).numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or torch tensor (H, W), got "
                        f"{type(value).__name__}")
    if value.ndim != 2 or value.size == 0:
        raise ValueError(f"{name} must be a single image of shape (H, W), got shape "
                         f"{value.shape}")
    if value.dtype == bool:
        return value
    value = value.astype(np.float64, copy=False)
    if not np.isfinite(value).all():
        raise ValueError(f"{name} holds non-finite values")
    return value


def _mask(name: str, value, shape) -> np.ndarray:
    m = _image(name, value)
    if m.dtype != bool:
        raise TypeError(f"{name} must be a boolean mask, got dtype {m.dtype}")
    if m.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {m.shape}")
    if not m.any():
        raise ValueError(f"{name} selects no pixel")
    return m


def _spacing(spacing) -> Tuple[float, float]:
    try:
        dy, dx = (float(v) for v in spacing)
    except (TypeError, ValueError):
        raise ValueError(f"spacing must be a pair (dy, dx) in mm, got {spacing!r}") from None
    if not (dy > 0 and dx > 0 and math.isfinite(dy) and math.isfinite(dx)):
        raise ValueError(f"spacing must be positive (mm), got {spacing!r}")
    return dy, dx


# ---------------------------------------------------------------------------------- outline
def body_mask(image_hu, threshold_hu: float = -500.0) -> np.ndarray:
    """The body: largest 4-connected component above ``threshold_hu``, holes filled.

    Parameters
    ----------
    image_hu : array or tensor ``(H, W)``
        Image in HU.
    threshold_hu : float, default -500
        HU threshold of the outline.

    Returns
    -------
    numpy bool array ``(H, W)``; all ``False`` if no pixel exceeds the threshold.
    """
    img = _image("image_hu", image_hu)
    threshold_hu = real("threshold_hu", threshold_hu)
    above = img > threshold_hu
    labels, count = ndimage.label(above, structure=_FOUR)
    if count == 0:
        return np.zeros(img.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    largest = labels == (int(np.argmax(sizes)) + 1)
    return ndimage.binary_fill_holes(largest, structure=_FOUR)


def outline(mask) -> np.ndarray:
    """Boundary pixels of ``mask`` (in the mask, with a 4-neighbour outside it or at the border).

    Returns a numpy bool array of the mask's shape.
    """
    m = _image("mask", mask)
    if m.dtype != bool:
        raise TypeError(f"mask must be boolean, got dtype {m.dtype}")
    inner = ndimage.binary_erosion(m, structure=_FOUR, border_value=0)
    return m & ~inner


def outline_shift(rec_hu, ref_hu, spacing, threshold_hu: float = -500.0) -> Dict[str, float]:
    """Distance between the body outlines of ``rec_hu`` and ``ref_hu`` (module docstring).

    Parameters
    ----------
    rec_hu, ref_hu : arrays or tensors ``(H, W)`` in HU
        Reconstruction and ground truth; the ground truth must have a body.
    spacing : (dy, dx)
        Pixel spacing in mm.
    threshold_hu : float, default -500

    Returns
    -------
    dict with ``mean_mm`` (symmetric mean distance) and ``max_mm`` (Hausdorff distance); both
    ``inf`` when the reconstruction has no pixel above the threshold.
    """
    rec = _image("rec_hu", rec_hu)
    ref = _image("ref_hu", ref_hu)
    if rec.shape != ref.shape:
        raise ValueError(f"rec_hu and ref_hu must have the same shape, got {rec.shape} and "
                         f"{ref.shape}")
    sp = _spacing(spacing)
    ref_line = outline(body_mask(ref, threshold_hu))
    if not ref_line.any():
        raise ValueError(f"ref_hu has no pixel above threshold_hu={threshold_hu}: no body")
    rec_line = outline(body_mask(rec, threshold_hu))
    if not rec_line.any():
        return {"mean_mm": math.inf, "max_mm": math.inf}
    to_ref = ndimage.distance_transform_edt(~ref_line, sampling=sp)[rec_line]
    to_rec = ndimage.distance_transform_edt(~rec_line, sampling=sp)[ref_line]
    both = np.concatenate([to_ref, to_rec])
    return {"mean_mm": float(both.mean()), "max_mm": float(both.max())}


# ----------------------------------------------------------------------------------- lesion
def lesion_regions(center: Sequence[float], radius: float, grid, gap: float = None,
                   width: float = None) -> Tuple[np.ndarray, np.ndarray]:
    """Core and surrounding ring of a round lesion on ``grid``.

    Parameters
    ----------
    center : (x, y) mm
        Lesion centre (``shared/CONVENTIONS.md`` coordinates).
    radius : float
        Lesion radius in mm.
    grid : operators.ImageGrid
    gap : float, optional
        Distance (mm) between the lesion's edge and the ring; default one pixel.
    width : float, optional
        Ring width (mm); default ``max(radius, 2 pixels)``.

    Returns
    -------
    core, ring : numpy bool arrays ``(H, W)``: pixels whose centre lies within ``radius - pixel/2``
    (at least the pixel nearest to the centre), and between ``radius + gap`` and
    ``radius + gap + width``.
    """
    cx, cy = (float(v) for v in center)
    radius = real("radius", radius, positive=True)
    pixel = max(float(s) for s in grid.spacing)
    gap = pixel if gap is None else real("gap", gap, nonnegative=True)
    width = max(radius, 2.0 * pixel) if width is None else real("width", width, positive=True)
    x, y = grid.meshgrid()
    dist = np.hypot(x - cx, y - cy)
    core = dist <= radius - 0.5 * pixel
    if not core.any():
        core = dist == dist.min()
    ring = (dist >= radius + gap) & (dist <= radius + gap + width)
    if not ring.any():
        raise ValueError(f"the ring around the lesion at {center} lies outside the grid")
    return core, ring


def _core_ring_means(img: np.ndarray, core: np.ndarray, ring: np.ndarray) -> Tuple[float, float]:
    return float(img[core].mean()), float(img[ring].mean())


def lesion_contrast(rec_hu, ref_hu, core, ring) -> float:
    """Fraction of the true lesion contrast recovered (1: perfect, 0: gone, < 0: inverted).

    Parameters
    ----------
    rec_hu, ref_hu : arrays or tensors ``(H, W)`` in HU
    core, ring : bool masks ``(H, W)`` (:func:`lesion_regions`)

    Raises
    ------
    ValueError
        If the ground truth has no contrast between core and ring.
    """
    rec = _image("rec_hu", rec_hu)
    ref = _image("ref_hu", ref_hu)
    core = _mask("core", core, ref.shape)
    ring = _mask("ring", ring, ref.shape)
    if rec.shape != ref.shape:
        raise ValueError(f"rec_hu and ref_hu must have the same shape, got {rec.shape} and "
                         f"{ref.shape}")
    l_ref, b_ref = _core_ring_means(ref, core, ring)
    if abs(l_ref - b_ref) < 1e-6:
        raise ValueError("the ground truth has no contrast between the lesion core and its ring")
    l_rec, b_rec = _core_ring_means(rec, core, ring)
    return (l_rec - b_rec) / (l_ref - b_ref)


def contrast_to_noise(rec_hu, core, ring, ref_hu=None, std_floor: float = 1.0) -> float:
    """Signed contrast-to-noise ratio of a lesion in ``rec_hu``.

    ``(mean(rec[core]) - mean(rec[ring])) / max(noise, std_floor)`` where ``noise`` is
    ``std(rec[ring])`` or, with the ground truth ``ref_hu`` given, ``std((rec - ref)[ring])``:
    the fluctuation of the reconstruction error around the lesion (noise and artifacts), so that
    anatomy inside the ring (a lung border, a rib) does not count as noise.
    """
    rec = _image("rec_hu", rec_hu)
    core = _mask("core", core, rec.shape)
    ring = _mask("ring", ring, rec.shape)
    std_floor = real("std_floor", std_floor, positive=True)
    lesion, background = _core_ring_means(rec, core, ring)
    if ref_hu is None:
        noise = float(rec[ring].std())
    else:
        ref = _image("ref_hu", ref_hu)
        if ref.shape != rec.shape:
            raise ValueError(f"rec_hu and ref_hu must have the same shape, got {rec.shape} and "
                             f"{ref.shape}")
        noise = float((rec - ref)[ring].std())
    return (lesion - background) / max(noise, std_floor)


def lesion_detected(fraction: float, cnr: float, true_contrast_sign: float = 1.0,
                    cnr_threshold: float = 3.0, min_fraction: float = 0.5) -> bool:
    """Whether a lesion counts as detected: ``fraction >= min_fraction`` and signed CNR
    (in the direction of the true contrast) ``>= cnr_threshold``."""
    sign = 1.0 if true_contrast_sign >= 0 else -1.0
    return bool(fraction >= min_fraction and sign * cnr >= cnr_threshold)


# -------------------------------------------------------------------------------------- air
def air_error(rec_hu, body, spacing, margin_mm: float = 10.0) -> float:
    """Mean ``|rec + 1000|`` HU over pixels farther than ``margin_mm`` from the body mask ``body``.

    Raises ``ValueError`` when no pixel is that far from the body (grid too tight).
    """
    rec = _image("rec_hu", rec_hu)
    body = _mask("body", body, rec.shape)
    sp = _spacing(spacing)
    margin_mm = real("margin_mm", margin_mm, nonnegative=True)
    far = ndimage.distance_transform_edt(~body, sampling=sp) > margin_mm
    if not far.any():
        raise ValueError(f"no pixel lies more than margin_mm={margin_mm} from the body")
    return float(np.abs(rec[far] + 1000.0).mean())


# -------------------------------------------------------------------------------- PSNR/SSIM
def psnr_ssim_body(rec_hu, ref_hu, body) -> Dict[str, float]:
    """PSNR (dB) and SSIM inside ``body``, data range 2000 HU (the window [-1000, 1000])."""
    from recon.metrics import psnr, ssim

    rec = _image("rec_hu", rec_hu)
    ref = _image("ref_hu", ref_hu)
    body = _mask("body", body, ref.shape)
    data_range = HU_WINDOW[1] - HU_WINDOW[0]
    return {"psnr": float(psnr(rec, ref, data_range, mask=body)),
            "ssim": float(ssim(rec, ref, data_range, mask=body))}
