"""Argument checks shared by every package of the toolkit; each error names the argument.

A value of the wrong kind raises ``TypeError`` and one of the right kind but out of range
``ValueError``, as Python's built-ins do (``range(2.5)``, ``math.sqrt(-1.0)``). Numbers are what
the :mod:`numbers` ABCs accept, so numpy scalars pass (``np.int64(3)`` from a sweep, a
``np.float32`` learning rate); bools are refused where a number is meant (``True`` for a count
is a slip, not 1); one-element real tensors pass where ``tensor=True``.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

__all__ = ["real", "integer", "random_seed"]


def real(name: str, value, *, positive: bool = False, nonnegative: bool = False,
         finite: bool = True, optional: bool = False, tensor: bool = False) -> Optional[float]:
    """``value`` as a float.

    Parameters
    ----------
    name : str
        How the error names the argument (``"lr"``, ``"TrainConfig.lr"``).
    positive, nonnegative : bool
        Require ``value > 0`` / ``value >= 0`` (NaN fails either).
    finite : bool
        Refuse NaN and +-Inf (default). ``False`` passes every float through.
    optional : bool
        ``None`` is allowed and returned as it is.
    tensor : bool
        Accept a one-element real tensor (a step size computed on the device).

    Raises
    ------
    TypeError
        Not a real number (strings, ``None`` unless ``optional``, bools, complex numbers).
    ValueError
        A real number outside the range asked for.
    """
    if value is None and optional:
        return None
    if not (tensor and _is_real_scalar_tensor(value)) \
            and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise TypeError(f"{name} must be a real number{' or None' if optional else ''}, "
                        f"got {type(value).__name__}")
    value = float(value)
    in_range = ((not finite or math.isfinite(value))
                and (not positive or value > 0) and (not nonnegative or value >= 0))
    if not in_range:
        kind = "positive" if positive else "non-negative" if nonnegative else None
        wanted = (f"a {kind} finite number" if kind and finite else f"{kind}" if kind
                  else "finite")
        raise ValueError(f"{name} must be {wanted}{' or None' if optional else ''}, "
                         f"got {value!r}")
    return value


def _is_real_scalar_tensor(value) -> bool:
    import torch  # here, so that the geometries stay importable without loading torch

    return (isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex()
            and value.dtype != torch.bool)


def integer(name: str, value, *, minimum: Optional[int] = 1,
            optional: bool = False) -> Optional[int]:
    """``value`` as an int, at least ``minimum`` (``None``: no bound).

    Raises ``TypeError`` unless ``value`` is an integer (floats such as ``2.0`` and bools are
    refused; ``None`` passes with ``optional``) and ``ValueError`` below ``minimum``.
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer{' or None' if optional else ''}, "
                        f"got {type(value).__name__}")
    if minimum is not None and value < minimum:
        wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {wanted}{' or None' if optional else ''}, "
                         f"got {value!r}")
    return int(value)


def random_seed(name: str, value) -> Optional[int]:
    """A random seed: an integer or ``None`` (``TypeError`` otherwise)."""
    return integer(name, value, minimum=None, optional=True)
