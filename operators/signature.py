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

from typing import List

import numpy as np
import torch

from .geometry import FanGeometry, ImageGrid, ParallelGeometry

__all__ = ["SIGNATURE_FIELDS", "SignatureMismatchError", "scan_signature",
           "signature_differences"]

#: Name of the buffer, and the meaning of its entries (lengths in mm, angles in radians; the
#: fan-only fields are 0 for parallel beams; the angles are summarised).
SIGNATURE_KEY = "scan_signature"
SIGNATURE_FIELDS = (
    "grid_height", "grid_width", "grid_spacing_y", "grid_spacing_x", "fan_beam",
    "detector_count", "detector_spacing", "detector_offset", "source_to_isocenter",
    "source_to_detector", "curved_detector", "views", "first_angle", "last_angle",
    "mean_angle",
)


class SignatureMismatchError(RuntimeError):
    """A ``state_dict`` was made for another grid or geometry than the module loading it."""


def is_scan(grid, geometry) -> bool:
    """Whether ``grid`` and ``geometry`` are this package's types (a signature can be made)."""
    return isinstance(grid, ImageGrid) and isinstance(geometry, (ParallelGeometry, FanGeometry))


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
        angles.size, angles[0], angles[-1], float(np.mean(angles)),
    ]
    return torch.tensor([float(v) for v in values], dtype=torch.float64)


def signature_differences(saved: torch.Tensor, here: torch.Tensor) -> List[str]:
    """``"field: checkpoint X, here Y"`` for every field that differs (empty when they match).

    ``here`` is compared in ``saved``'s dtype (a model cast with ``.half()`` stores a rounded
    signature), to a relative 1e-9 in float64.
    """
    if not torch.is_tensor(saved) or saved.shape != (len(SIGNATURE_FIELDS),) \
            or not saved.is_floating_point():
        shape = tuple(saved.shape) if torch.is_tensor(saved) else type(saved).__name__
        return [f"not a scan signature ({shape}): the state_dict was not made by this module"]
    saved = saved.detach().to("cpu")
    here = here.detach().to("cpu", saved.dtype)
    eps = max(1e-9, torch.finfo(saved.dtype).eps)
    out = []
    for name, a, b in zip(SIGNATURE_FIELDS, saved.tolist(), here.tolist()):
        if abs(a - b) > eps * max(abs(a), abs(b)) + 1e-12:
            out.append(f"{name}: checkpoint {a:.10g}, here {b:.10g}")
    return out


def check_signature(module, state_dict, prefix, *args, **kwargs) -> None:
    """Load-state-dict pre-hook of a module with a ``scan_signature`` buffer.

    A ``state_dict`` without one (written before signatures existed) gets the module's own, so
    it loads as it did then; one made for another scan raises :class:`SignatureMismatchError`.
    """
    key = prefix + SIGNATURE_KEY
    here = getattr(module, SIGNATURE_KEY)
    if key not in state_dict:
        if any(k.startswith(prefix) for k in state_dict):
            state_dict[key] = here.detach().clone()
        return
    diff = signature_differences(state_dict[key], here)
    if diff:
        raise SignatureMismatchError(
            f"state_dict[{key!r}]: this {type(module).__name__} was built for another scan than "
            f"the checkpoint ({'; '.join(diff)}); build it with the grid and geometry the "
            f"checkpoint was made with (to load the weights anyway, delete that entry)")


def register_signature(module: torch.nn.Module, grid, geometry) -> None:
    """Give ``module`` a ``scan_signature`` buffer and the pre-hook that checks it on load."""
    module.register_buffer(SIGNATURE_KEY, scan_signature(grid, geometry))
    module._register_load_state_dict_pre_hook(check_signature, with_module=True)
