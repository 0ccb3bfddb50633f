"""Image-quality metrics per image: PSNR, SSIM, RMSE (and RMSE in HU), optionally inside a mask.

All functions take ``x`` (the reconstruction) and ``ref`` (the ground truth) of the same shape
``(*batch, H, W)`` (tensors or arrays) and return a float64 tensor of shape ``batch`` (a 0-d
tensor for a single image): one value per image, never averaged over the batch. Average with
:func:`experiments.common.mean_std` or ``.mean()``.

A ``mask`` (bool, ``(H, W)`` or ``(*batch, H, W)``) restricts the metric to its pixels, e.g. the
body or a lesion region; an image whose mask is empty raises ``ValueError``.

Conventions
-----------
* PSNR ``= 10 log10(data_range^2 / MSE)`` dB. ``data_range`` is required: a number (e.g. 1.0 for
  images in [0, 1], or a HU window width) or the string ``"ref"`` for the per-image
  ``max(ref) - min(ref)`` (DIVal's default, also used for the LoDoPaB-CT leaderboard). Identical
  images give ``inf``.
* SSIM: :func:`skimage.metrics.structural_similarity` (Wang et al., IEEE TIP 13(4), 2004), with
  scikit-image's defaults (7 x 7 uniform window, sample covariance, ``K1 = 0.01``, ``K2 = 0.03``),
  as DIVal does; pass ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False`` for Wang's
  original. The unmasked value is scikit-image's mean SSIM (which excludes a border of
  ``(win_size - 1) // 2`` pixels); with a mask, it is the mean of the SSIM map over the mask
  pixels outside that border, so an all-true mask gives the unmasked value.
* RMSE ``= sqrt(MSE)`` in the units of the images; :func:`rmse_hu` converts attenuation to HU
  first when told the input is attenuation.
"""

from __future__ import annotations

import numbers
from typing import Optional, Tuple

import numpy as np
import torch

from recon.data.units import MU_WATER, mu_to_hu

__all__ = ["psnr", "ssim", "rmse", "rmse_hu", "mse"]


def _as_tensor(name: str, value) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(value).__name__}")
    if value.is_complex():
        raise TypeError(f"{name} must be real, got {value.dtype}")
    if value.dim() < 2:
        raise ValueError(f"{name} must have shape (*batch, H, W), got shape {tuple(value.shape)}")
    return value.detach().to(device="cpu", dtype=torch.float64)


def _pair(x, ref) -> Tuple[torch.Tensor, torch.Tensor]:
    x = _as_tensor("x", x)
    ref = _as_tensor("ref", ref)
    if x.shape != ref.shape:
        raise ValueError(f"x and ref must have the same shape (*batch, H, W), got "
                         f"{tuple(x.shape)} and {tuple(ref.shape)}")
    if x.numel() == 0:
        raise ValueError(f"x and ref are empty, shape {tuple(x.shape)}")
    return x, ref


def _mask(mask, shape: torch.Size) -> Optional[torch.Tensor]:
    """Broadcast a boolean mask to ``shape``; error on wrong shape or an empty image mask."""
    if mask is None:
        return None
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a boolean tensor or array, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must have dtype bool, got {mask.dtype}")
    mask = mask.detach().cpu()
    if mask.dim() < 2 or tuple(mask.shape[-2:]) != tuple(shape[-2:]):
        raise ValueError(f"mask must have shape (H, W) = {tuple(shape[-2:])} or (*batch, H, W), "
                         f"got {tuple(mask.shape)}")
    try:
        mask = mask.expand(shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to the images "
                         f"of shape {tuple(shape)}") from None
    if not bool(mask.flatten(-2).any(-1).all()):
        raise ValueError("mask selects no pixel in at least one image")
    return mask


def _masked_mean(values: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    if mask is None:
        return values.mean(dim=(-2, -1))
    m = mask.to(values.dtype)
    return (values * m).sum(dim=(-2, -1)) / m.sum(dim=(-2, -1))


def mse(x, ref, mask=None) -> torch.Tensor:
    """Mean squared error per image, shape ``batch`` (units of the images squared)."""
    x, ref = _pair(x, ref)
    return _masked_mean((x - ref) ** 2, _mask(mask, x.shape))


def rmse(x, ref, mask=None) -> torch.Tensor:
    """Root-mean-square error per image, shape ``batch``, in the units of the images.

    Parameters
    ----------
    x, ref : tensor or array, shape ``(*batch, H, W)``
    mask : bool tensor or array, ``(H, W)`` or ``(*batch, H, W)``, optional
    """
    return torch.sqrt(mse(x, ref, mask))


def rmse_hu(x, ref, mask=None, *, unit: str = "hu", mu_water: float = MU_WATER) -> torch.Tensor:
    """RMSE in Hounsfield units per image, shape ``batch``.

    Parameters
    ----------
    x, ref : tensor or array, shape ``(*batch, H, W)``
        Images in HU (``unit="hu"``) or in attenuation 1/mm (``unit="mu"``, converted with
        :func:`recon.data.mu_to_hu` and ``mu_water`` first).
    mask : bool tensor or array, optional
        E.g. the body mask, so that air around the patient does not dilute the error.
    unit : {"hu", "mu"}
    mu_water : float, default 0.0192 /mm
    """
    if unit not in ("hu", "mu"):
        raise ValueError(f"unit must be 'hu' or 'mu', got {unit!r}")
    x, ref = _pair(x, ref)
    if unit == "mu":
        x, ref = mu_to_hu(x, mu_water), mu_to_hu(ref, mu_water)
    return rmse(x, ref, mask)


def _data_range(data_range, ref: torch.Tensor) -> torch.Tensor:
    batch = ref.shape[:-2]
    if isinstance(data_range, str):
        if data_range != "ref":
            raise ValueError(f"data_range must be a positive number, a tensor of shape batch or "
                             f"'ref', got {data_range!r}")
        dr = ref.amax(dim=(-2, -1)) - ref.amin(dim=(-2, -1))
        if not bool((dr > 0).all()):
            raise ValueError("data_range='ref' needs a non-constant reference image")
        return dr
    if isinstance(data_range, (np.ndarray, torch.Tensor)):
        dr = torch.as_tensor(data_range, dtype=torch.float64).detach().cpu()
        try:
            dr = dr.expand(batch) if dr.dim() <= len(batch) else dr.reshape(batch)
        except RuntimeError:
            raise ValueError(f"data_range of shape {tuple(dr.shape)} does not match the batch "
                             f"shape {tuple(batch)}") from None
    elif isinstance(data_range, numbers.Real) and not isinstance(data_range, bool):
        dr = torch.full(batch, float(data_range), dtype=torch.float64)
    else:
        raise TypeError(f"data_range must be a positive number, a tensor or 'ref', got "
                        f"{type(data_range).__name__}")
    if not bool(torch.isfinite(dr).all()) or not bool((dr > 0).all()):
        raise ValueError(f"data_range must be positive and finite, got {data_range!r}")
    return dr


def psnr(x, ref, data_range, mask=None) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, shape ``batch``.

    Parameters
    ----------
    x, ref : tensor or array, shape ``(*batch, H, W)``
        Reconstruction and ground truth.
    data_range : float, tensor of shape ``batch``, or "ref"
        The peak value range (required, e.g. 1.0 for [0, 1] images); ``"ref"`` takes
        ``max(ref) - min(ref)`` per image (DIVal's convention).
    mask : bool tensor or array, ``(H, W)`` or ``(*batch, H, W)``, optional
        Restrict the MSE to these pixels.

    Returns
    -------
    torch.Tensor, float64, shape ``batch``: ``10 log10(data_range^2 / MSE)`` (``inf`` if equal).
    """
    x, ref = _pair(x, ref)
    dr = _data_range(data_range, ref)
    err = _masked_mean((x - ref) ** 2, _mask(mask, x.shape))
    return 10.0 * torch.log10(dr ** 2 / err)  # err = 0 gives inf


def ssim(x, ref, data_range, mask=None, **kwargs) -> torch.Tensor:
    """Structural similarity per image, shape ``batch``, via scikit-image.

    Parameters
    ----------
    x, ref : tensor or array, shape ``(*batch, H, W)``; H and W at least ``win_size`` (7)
    data_range : float, tensor of shape ``batch``, or "ref"
        Required (as in :func:`psnr`); sets the constants ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``.
    mask : bool tensor or array, ``(H, W)`` or ``(*batch, H, W)``, optional
        Mean of the SSIM map over the mask pixels (outside the window border; module docstring).
    **kwargs
        Passed to :func:`skimage.metrics.structural_similarity` (``win_size``,
        ``gaussian_weights``, ``sigma``, ``use_sample_covariance``, ``K1``, ``K2``).

    Returns
    -------
    torch.Tensor, float64, shape ``batch``.
    """
    from skimage.metrics import structural_similarity

    x, ref = _pair(x, ref)
    for bad in ("data_range", "full", "channel_axis", "multichannel"):
        if bad in kwargs:
            raise TypeError(f"ssim() does not accept {bad!r} as a keyword for scikit-image")
    dr = _data_range(data_range, ref)
    m = _mask(mask, x.shape)
    batch = x.shape[:-2]
    h, w = x.shape[-2:]
    win = kwargs.get("win_size")
    if win is None:  # scikit-image's default window: 7, or the Gaussian's truncated at 3.5 sigma
        if kwargs.get("gaussian_weights", False):
            win = 2 * int(3.5 * float(kwargs.get("sigma", 1.5)) + 0.5) + 1
        else:
            win = 7
    if min(h, w) < win:
        raise ValueError(f"images of shape ({h}, {w}) are smaller than the SSIM window {win}")
    pad = (win - 1) // 2
    xf = x.reshape(-1, h, w).numpy()
    rf = ref.reshape(-1, h, w).numpy()
    drf = dr.reshape(-1).numpy()
    mf = None if m is None else m.reshape(-1, h, w).numpy()
    out = np.empty(xf.shape[0])
    for i in range(xf.shape[0]):
        if mf is None:
            out[i] = structural_similarity(rf[i], xf[i], data_range=float(drf[i]), **kwargs)
            continue
        _, smap = structural_similarity(rf[i], xf[i], data_range=float(drf[i]), full=True,
                                        **kwargs)
        sel = np.zeros((h, w), dtype=bool)
        sel[pad:h - pad, pad:w - pad] = mf[i][pad:h - pad, pad:w - pad]
        if not sel.any():
            raise ValueError("mask selects no pixel outside the SSIM window border in at least "
                             "one image")
        out[i] = float(smap[sel].mean(dtype=np.float64))
    return torch.from_numpy(out).reshape(batch)
