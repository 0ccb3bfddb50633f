"""What a checkpoint records of the scan it was made with, and the check on loading it.

Layers built for one grid and geometry (:class:`~operators.XRayTransform`, :class:`~operators.FBP`
and the unrolled networks of :mod:`recon.nets`) keep a *scan signature* in their ``state_dict``:
a float64 buffer ``scan_signature`` of :data:`SIGNATURE_FIELDS` (a tensor like every other entry,
so ``torch.load(..., weights_only=True)``, safetensors and code that maps over a state_dict's
tensors keep working). Loading a ``state_dict`` made for another grid or geometry then fails with
an error that names every field that differs, instead of loading weights learned for other
data. Checkpoints written before signatures existed carry none; they load as before (with the
checks those layers had then).
"""

from __future__ import annotations

import math
from typing import List

import numpy as np
import torch

from .geometry import FanGeometry, ImageGrid, ParallelGeometry

__all__ = ["SIGNATURE_FIELDS", "SignatureMismatchError", "angle_fingerprint", "scan_signature",
           "signature_differences"]

#: Name of the buffer, and the meaning of its entries (lengths in mm, angles in radians; the
#: fan-only fields are 0 for parallel beams; the angles are summarised by their count, ends,
#: mean and :func:`angle_fingerprint`).
SIGNATURE_KEY = "scan_signature"
SIGNATURE_FIELDS = (
    "grid_height", "grid_width", "grid_spacing_y", "grid_spacing_x", "fan_beam",
    "detector_count", "detector_spacing", "detector_offset", "source_to_isocenter",
    "source_to_detector", "curved_detector", "views", "first_angle", "last_angle",
    "mean_angle", "angle_fingerprint",
)

#: Fields of the signatures written before ``angle_fingerprint`` existed (they still load,
#: compared on these fields).
_FIELDS_BEFORE_FINGERPRINT = 15

#: Irrational weights make the fingerprint of two different angle lists differ unless built
#: to collide (a subset with the same count, ends and mean, or a permutation, do not).
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


class SignatureMismatchError(RuntimeError):
    """A ``state_dict`` was made for another grid or geometry than the module loading it."""


def is_scan(grid, geometry) -> bool:
    """Whether ``grid`` and ``geometry`` are this package's types (a signature can be made)."""
    return isinstance(grid, ImageGrid) and isinstance(geometry, (ParallelGeometry, FanGeometry))


def angle_fingerprint(angles: np.ndarray) -> float:
    """``mean_k (1 + frac((k + 1) g)) angle_k`` with ``g`` the golden ratio's fraction: a
    summary that depends on every angle and on their order (radians)."""
    k = np.arange(1, angles.size + 1, dtype=np.float64)
    weights = 1.0 + np.mod(k * _GOLDEN, 1.0)
    return float(np.mean(weights * angles))


def scan_signature(grid: ImageGrid, geometry) -> torch.Tensor:
    """The grid and geometry as a float64 vector of :data:`SIGNATURE_FIELDS`."""
    fan = isinstance(geometry, FanGeometry)
    angles = geometry.angle_array()
    values = [
        grid.shape[0], grid.shape[1], grid.spacing[0], grid.spacing[1], float(fan),
        geometry.detector_count, geometry.detector_spacing, geometry.detector_offset,
        geometry.source_to_isocenter if fan else 0.0,
        geometry.source_to_detector if fan else 0.0,
        float(fan and geometry.detector == "curved"),
        angles.size, angles[0], angles[-1], float(np.mean(angles)), angle_fingerprint(angles),
    ]
    return torch.tensor([float(v) for v in values], dtype=torch.float64)


def signature_differences(saved: torch.Tensor, here: torch.Tensor) -> List[str]:
    """``"field: checkpoint X, here Y"`` for every field that differs (empty when they match).

    Both are compared in the coarser of their dtypes (a module cast with ``.float()`` or
    ``.half()`` holds a rounded signature, and so does a checkpoint of it), to a relative 1e-9 in
    float64 and to that dtype's rounding otherwise. A signature from before
    ``angle_fingerprint`` existed is compared on the fields it has.
    """
    sizes = (len(SIGNATURE_FIELDS), _FIELDS_BEFORE_FINGERPRINT)
    if not torch.is_tensor(saved) or saved.dim() != 1 or saved.shape[0] not in sizes \
            or not saved.is_floating_point():
        shape = tuple(saved.shape) if torch.is_tensor(saved) else type(saved).__name__
        return [f"not a scan signature ({shape}): the state_dict was not made by this module"]
    n = saved.shape[0]
    coarse = max((saved.dtype, here.dtype), key=lambda d: torch.finfo(d).eps)
    saved = saved.detach().to("cpu", coarse)
    here = here.detach()[:n].to("cpu", coarse)
    eps = max(1e-9, torch.finfo(coarse).eps)
    out = []
    for name, a, b in zip(SIGNATURE_FIELDS[:n], saved.tolist(), here.tolist()):
        if abs(a - b) > eps * max(abs(a), abs(b)) + 1e-12:
            out.append(f"{name}: checkpoint {a:.10g}, here {b:.10g}")
    return out


def check_signature(module, state_dict, prefix, *args, **kwargs) -> None:
    """Load-state-dict pre-hook of a module with a ``scan_signature`` buffer.

    A ``state_dict`` without one (written before signatures existed) gets the module's own, so
    it loads as it did then, and so does one of the same scan from before ``angle_fingerprint``;
    one made for another scan raises :class:`SignatureMismatchError`.
    """
    key = prefix + SIGNATURE_KEY
    here = getattr(module, SIGNATURE_KEY)
    if key not in state_dict:
        if any(k.startswith(prefix) for k in state_dict):
            state_dict[key] = here.detach().clone()
        return
    diff = signature_differences(state_dict[key], here)
    if not diff and state_dict[key].shape != here.shape:  # from before angle_fingerprint
        state_dict[key] = here.detach().clone()
    if diff:
        raise SignatureMismatchError(
            f"state_dict[{key!r}]: this {type(module).__name__} was built for another scan than "
            f"the checkpoint ({'; '.join(diff)}); build it with the grid and geometry the "
            f"checkpoint was made with (to load the weights anyway, delete that entry)")


def register_signature(module: torch.nn.Module, grid, geometry) -> None:
    """Give ``module`` a ``scan_signature`` buffer and the pre-hook that checks it on load."""
    module.register_buffer(SIGNATURE_KEY, scan_signature(grid, geometry))
    module._register_load_state_dict_pre_hook(check_signature, with_module=True)
