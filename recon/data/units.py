"""Hounsfield units <-> linear attenuation coefficients, in one place.

The Hounsfield scale is defined by ``HU = 1000 (mu - mu_water) / (mu_water - mu_air)``. We take
``mu_air = 0`` (air attenuates about 1000 times less than water), so

    mu = mu_water (1 + HU / 1000),      HU = 1000 (mu / mu_water - 1),

with ``mu`` in 1/mm. Air is -1000 HU (mu = 0), water 0 HU (mu = mu_water).

The default water attenuation ``MU_WATER = 0.0192 /mm`` is the linear attenuation coefficient of
water at about 70 keV, the effective energy of a 120 kVp spectrum (NIST XCOM gives a mass
attenuation of about 0.193 cm^2/g at 70 keV, i.e. 0.0193 /mm for water; the project conventions,
``shared/CONVENTIONS.md``, fix 0.0192 /mm). Every conversion in the project goes through these two
functions, so a change of energy is one argument.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from operators._checks import real

__all__ = ["MU_WATER", "hu_to_mu", "mu_to_hu"]

#: Linear attenuation coefficient of water at ~70 keV, in 1/mm.
MU_WATER = 0.0192


def _check_mu_water(mu_water) -> float:
    """``mu_water`` as a positive finite float (1/mm), or an error naming it."""
    return real("mu_water (1/mm)", mu_water, positive=True)


def _as_float(values):
    """Promote integer/bool tensors and arrays to floating point; leave floats alone."""
    if isinstance(values, torch.Tensor):
        if values.is_complex():
            raise TypeError("expected real values, got a complex tensor")
        return values if values.is_floating_point() else values.to(torch.get_default_dtype())
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "iubf":
            raise TypeError(f"expected a real numeric array, got dtype {values.dtype}")
        return values if values.dtype.kind == "f" else values.astype(np.float64)
    if isinstance(values, bool) or not isinstance(values, numbers.Real):
        raise TypeError(f"expected a tensor, an array or a real number, got {type(values).__name__}")
    return float(values)


def hu_to_mu(hu, mu_water: float = MU_WATER):
    """Hounsfield units to linear attenuation, ``mu = mu_water (1 + HU / 1000)``.

    Parameters
    ----------
    hu : torch.Tensor, numpy.ndarray or float
        Values in HU, any shape.
    mu_water : float, default :data:`MU_WATER` (0.0192 /mm)
        Attenuation of water at the effective energy, in 1/mm.

    Returns
    -------
    Same type and shape as ``hu``: attenuation in 1/mm (air -1000 HU -> 0).
    Integer inputs are promoted to floating point.
    """
    mu_water = _check_mu_water(mu_water)
    hu = _as_float(hu)
    return mu_water * (1.0 + hu / 1000.0)


def mu_to_hu(mu, mu_water: float = MU_WATER):
    """Linear attenuation (1/mm) to Hounsfield units, ``HU = 1000 (mu / mu_water - 1)``.

    Parameters
    ----------
    mu : torch.Tensor, numpy.ndarray or float
        Attenuation in 1/mm, any shape.
    mu_water : float, default :data:`MU_WATER` (0.0192 /mm)
        Attenuation of water in 1/mm.

    Returns
    -------
    Same type and shape as ``mu``: values in HU (mu = 0 -> -1000 HU).
    """
    mu_water = _check_mu_water(mu_water)
    mu = _as_float(mu)
    return 1000.0 * (mu / mu_water - 1.0)
