"""Noise models for sinograms (line integrals), batched and reproducible.

Both functions take a sinogram ``(*batch, views, detectors)`` of line integrals and return a noisy
sinogram of the same shape, dtype and device. Randomness comes from an optional
``torch.Generator`` (the same generator state gives the same noise); without one, torch's global
generator is used. Noise is data simulation: the result carries no gradient.

* :func:`poisson_noise` -- transmission (photon-counting) noise: the detector counts
  ``N ~ Poisson(N0 exp(-p))`` for ``N0`` incident photons per detector element and view, zero counts
  are replaced by ``zero_count = 0.1`` (the rule of LoDoPaB-CT, Leuschner et al., Sci. Data 8,
  2021: ``max(N, 0.1)``), and the data are ``-log(N / N0)``. At high counts the log data have
  mean ``p`` and variance ``exp(p) / N0`` (first-order delta method).
* :func:`gaussian_noise` -- additive white Gaussian noise with standard deviation
  ``relative * mean(|p|)`` per sinogram, the mean taken over the views and detectors of each
  sinogram of the batch. This is the convention of Adler & Oktem (2018, learned primal-dual: 5%
  of the mean absolute value of the data) and of DIVal's ``ellipses`` standard dataset
  (``noise_type='white'``, ``relative_stddev=True``, ``stddev=0.05``).

:class:`PoissonNoise` and :class:`GaussianNoise` are the same models as frozen, picklable values
``model(sinogram, generator)`` for datasets; :func:`make_noise` builds one from a short spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Union

import torch

from operators._checks import real

__all__ = [
    "poisson_noise",
    "gaussian_noise",
    "PoissonNoise",
    "GaussianNoise",
    "make_noise",
    "NoiseModel",
]

NoiseModel = Callable[[torch.Tensor, Optional[torch.Generator]], torch.Tensor]

#: Replacement for zero photon counts before the log (LoDoPaB-CT rule).
ZERO_COUNT = 0.1


def _check_sinogram(sinogram) -> torch.Tensor:
    if not isinstance(sinogram, torch.Tensor):
        raise TypeError(f"sinogram must be a torch.Tensor, got {type(sinogram).__name__}")
    if not sinogram.is_floating_point():
        raise TypeError(f"sinogram must have a floating-point dtype, got {sinogram.dtype}")
    if sinogram.dim() < 2:
        raise ValueError(f"sinogram must have shape (*batch, views, detectors), got shape "
                         f"{tuple(sinogram.shape)}")
    if sinogram.numel() and not bool(torch.isfinite(sinogram).all()):
        raise ValueError("sinogram contains NaN or Inf")
    return sinogram


def _check_generator(generator) -> Optional[torch.Generator]:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got "
                        f"{type(generator).__name__}")
    return generator


def _sample_device(sinogram: torch.Tensor, generator: Optional[torch.Generator]) -> torch.device:
    """Sample where the generator lives (a CPU generator works for CUDA data, and vice versa)."""
    return sinogram.device if generator is None else generator.device


def poisson_noise(sinogram: torch.Tensor, photons, generator: Optional[torch.Generator] = None,
                  zero_count: float = ZERO_COUNT) -> torch.Tensor:
    """Poisson transmission noise on line integrals, then the log.

    Parameters
    ----------
    sinogram : torch.Tensor, shape ``(*batch, views, detectors)``
        Noise-free line integrals ``p`` (dimensionless: attenuation in 1/mm times length in mm).
    photons : float or torch.Tensor
        Incident photon count ``N0`` per detector element and view (blank scan); a tensor must
        broadcast against ``sinogram`` (e.g. ``(detectors,)`` for a bow-tie filter). Must be > 0.
    generator : torch.Generator, optional
        Random source; the same state gives the same noise. The counts are drawn on the
        generator's device.
    zero_count : float, default 0.1
        Counts below this value (i.e. zero counts) are replaced by it before the log
        (LoDoPaB-CT: ``max(N, 0.1)``), so the data stay finite: at most ``log(N0 / zero_count)``.

    Returns
    -------
    torch.Tensor, same shape, dtype and device as ``sinogram``:
        ``-log(max(N, zero_count) / N0)`` with ``N ~ Poisson(N0 exp(-p))``.

    Raises
    ------
    ValueError
        ``photons`` not positive and finite, ``zero_count`` not in (0, 1], bad ``sinogram``.
    """
    sinogram = _check_sinogram(sinogram)
    generator = _check_generator(generator)
    if isinstance(photons, torch.Tensor):
        n0 = photons.detach().to(device=sinogram.device, dtype=torch.float64)
        if n0.numel() == 0 or not bool(torch.isfinite(n0).all()) or not bool((n0 > 0).all()):
            raise ValueError("photons must be positive and finite (incident photons per detector "
                             "element and view)")
        try:
            shape = torch.broadcast_shapes(n0.shape, sinogram.shape)
        except RuntimeError:
            shape = None
        if shape != sinogram.shape:
            raise ValueError(f"photons of shape {tuple(n0.shape)} does not broadcast against the "
                             f"sinogram of shape {tuple(sinogram.shape)} (the result keeps the "
                             "sinogram's shape)")
    else:
        photons = real("photons (incident photons per detector element and view)", photons,
                       positive=True)
        n0 = torch.tensor(photons, dtype=torch.float64, device=sinogram.device)
    if not 0 < real("zero_count", zero_count) <= 1:
        raise ValueError(f"zero_count must be in (0, 1], got {zero_count!r}")

    with torch.no_grad():
        p = sinogram.detach().to(torch.float64)
        rate = n0 * torch.exp(-p)
        device = _sample_device(sinogram, generator)
        counts = torch.poisson(rate.to(device), generator=generator).to(sinogram.device)
        counts = counts.clamp_min(float(zero_count))
        noisy = -torch.log(counts / n0)
    return noisy.to(sinogram.dtype)


def gaussian_noise(sinogram: torch.Tensor, relative: float = 0.05,
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Additive white Gaussian noise relative to the mean absolute data value.

    Parameters
    ----------
    sinogram : torch.Tensor, shape ``(*batch, views, detectors)``
        Noise-free data.
    relative : float, default 0.05
        Noise level: standard deviation ``relative * mean(|sinogram|)``, the mean over the last two
        axes of each sinogram of the batch (Adler & Oktem 2018; DIVal ``relative_stddev``).
        ``0`` returns a copy. Must be >= 0 and finite.
    generator : torch.Generator, optional
        Random source; the same state gives the same noise (drawn on the generator's device).

    Returns
    -------
    torch.Tensor, same shape, dtype and device as ``sinogram``.
    """
    sinogram = _check_sinogram(sinogram)
    generator = _check_generator(generator)
    relative = real("relative", relative, nonnegative=True)
    with torch.no_grad():
        y = sinogram.detach()
        std = float(relative) * y.abs().mean(dim=(-2, -1), keepdim=True)
        device = _sample_device(sinogram, generator)
        white = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=device)
        return y + std * white.to(y.device)


@dataclass(frozen=True)
class PoissonNoise:
    """:func:`poisson_noise` as a value.

    ``scale`` converts the sinogram to physical line integrals first (``p_phys = scale * y``) and
    the noisy data back (divided by ``scale``): use it for images in normalised units. LoDoPaB-CT
    reads its [0, 1] images as multiples of ``mu_max = 81.35858 /m = 0.08135858 /mm`` and uses
    ``photons = 4096``, i.e. ``PoissonNoise(4096, scale=0.08135858)`` for sinograms computed with
    lengths in mm. ``photons`` must be > 0.
    """

    photons: float
    scale: float = 1.0
    zero_count: float = ZERO_COUNT

    def __post_init__(self):
        object.__setattr__(self, "photons", real("photons", self.photons, positive=True))
        object.__setattr__(self, "scale", real("scale", self.scale, positive=True))
        object.__setattr__(self, "zero_count", real("zero_count", self.zero_count))
        if not 0 < self.zero_count <= 1:
            raise ValueError(f"zero_count must be in (0, 1], got {self.zero_count!r}")

    def __call__(self, sinogram: torch.Tensor,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        noisy = poisson_noise(sinogram * self.scale, self.photons, generator, self.zero_count)
        return noisy / self.scale


@dataclass(frozen=True)
class GaussianNoise:
    """:func:`gaussian_noise` as a value: std ``relative * mean(|y|)`` per sinogram."""

    relative: float = 0.05

    def __post_init__(self):
        object.__setattr__(self, "relative", real("relative", self.relative, nonnegative=True))

    def __call__(self, sinogram: torch.Tensor,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return gaussian_noise(sinogram, self.relative, generator)


def make_noise(spec: Union[None, str, Mapping, NoiseModel]) -> Optional[NoiseModel]:
    """A noise model from a short specification.

    Parameters
    ----------
    spec : None, str, mapping or callable
        ``None`` or ``"none"``: no noise (returns ``None``). ``"gaussian"`` / ``"gaussian:0.05"``:
        :class:`GaussianNoise` (relative level). ``"poisson:1e4"``: :class:`PoissonNoise` with that
        photon count. A mapping ``{"kind": "gaussian" | "poisson", **fields}`` passes the fields.
        A callable ``f(sinogram, generator) -> sinogram`` is returned unchanged.

    Raises
    ------
    ValueError
        Unknown kind or unparsable level.
    """
    if spec is None:
        return None
    if callable(spec):
        return spec
    if isinstance(spec, str):
        kind, _, level = spec.strip().lower().partition(":")
        if kind == "none" and not level:
            return None
        try:
            value = float(level) if level else None
        except ValueError:
            raise ValueError(f"noise spec {spec!r}: level {level!r} is not a number") from None
        if kind == "gaussian":
            return GaussianNoise() if value is None else GaussianNoise(value)
        if kind == "poisson":
            if value is None:
                raise ValueError(f"noise spec {spec!r}: give the photon count, e.g. 'poisson:1e4'")
            return PoissonNoise(value)
        raise ValueError(f"unknown noise kind {kind!r} in {spec!r}; use 'none', 'gaussian[:rel]' "
                         f"or 'poisson:photons'")
    if isinstance(spec, Mapping):
        fields = dict(spec)
        kind = str(fields.pop("kind", "")).lower()
        if kind == "gaussian":
            return GaussianNoise(**fields)
        if kind == "poisson":
            return PoissonNoise(**fields)
        raise ValueError(f"unknown noise kind {kind!r}; use 'gaussian' or 'poisson'")
    raise TypeError(f"noise must be None, a string, a mapping or a callable, got "
                    f"{type(spec).__name__}")
