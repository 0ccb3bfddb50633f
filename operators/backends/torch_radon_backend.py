"""Optional torch-radon backend (UNMATCHED pair: texture interpolation, pixel-driven adjoint).

torch-radon (Ronchetti 2020, https://github.com/matteo-ronchetti/torch-radon; maintained fork
https://github.com/carterbox/torch-radon) is not on PyPI and must be built from source against
the installed PyTorch and CUDA. Its forward projection samples the image through the GPU's
texture units (bilinear interpolation with 8-bit fractional weights) at unit steps along each
ray, and its back-projection is pixel-driven (linear interpolation on the detector). The two are
**not** each other's transpose: the dot-product test fails at the 1e-3..1e-1 level, and neither
direction equals our Joseph model (``operators._joseph``) beyond interpolation accuracy. Use it
for speed comparisons or inference, never where exact gradients matter; our ``triton`` kernels
are the default on CUDA.

Supported here: parallel beam without detector offset and fan beam with a flat detector, both
with square or rectangular pixels, float32, CUDA tensors. Both package generations are accepted:
v2 (``torch_radon.ParallelBeam`` / ``FanBeam`` with ``Volume2D``, the fork) and v1
(``torch_radon.Radon`` / ``RadonFanbeam``). Their conventions differ from ours and between
releases (read from their CUDA sources: the fork's fan source starts at ``beta + pi`` with the
detector axis reversed; v1 sums in pixel lengths), so on first use the backend projects a test
image with every candidate mapping and keeps the one that matches our reference projection
(``backend.convention``); none within 10 % is an error.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ..geometry import FanGeometry, ImageGrid, ParallelGeometry

__all__ = ["TorchRadonBackend", "torch_radon_available", "INSTALL_HINT"]

INSTALL_HINT = (
    "torch-radon is not on PyPI: build it from source against your PyTorch and CUDA, e.g. "
    "`git clone https://github.com/carterbox/torch-radon && cd torch-radon && "
    "pip install . --no-build-isolation` (needs nvcc), or use backend='triton' (the default on "
    "CUDA, exact adjoint)")


#: How torch-radon's view angle may relate to ours (``beta``), tried by the calibration.
_ANGLE_MAPS = {
    "beta": lambda b: b,
    "-beta": lambda b: -b,
    "beta-pi": lambda b: b - math.pi,
    "pi-beta": lambda b: math.pi - b,
}
#: The largest relative L2 difference from our projection of the test image that a convention
#: may leave (texture interpolation alone gives about 1 %).
CALIBRATION_TOLERANCE = 0.10
#: Where torch-radon runs (a test substitutes a CPU fake).
_DEVICE_TYPES = ("cuda",)


def _unavailable(message: str):
    from . import BackendUnavailableError
    return BackendUnavailableError(f"backend='torch-radon' cannot run here: {message}")


def torch_radon_available():
    """``(module or None, reason)``: the importable ``torch_radon`` module and why not."""
    try:
        import torch_radon  # noqa: F401
    except Exception as exc:  # ImportError, or a build that fails to load its CUDA library
        return None, (f"the torch_radon package cannot be imported ({type(exc).__name__}: "
                      f"{exc}). {INSTALL_HINT}")
    if not torch.cuda.is_available():
        return None, "torch-radon needs a CUDA device and none is available"
    return torch_radon, ""


class TorchRadonBackend:
    """torch-radon's projector pair behind the backend interface (unmatched; see module doc).

    Parameters
    ----------
    grid : ImageGrid
    geometry : ParallelGeometry (no detector offset) or FanGeometry (flat detector)

    Raises
    ------
    operators.backends.BackendUnavailableError
        When ``torch_radon`` cannot be imported or no CUDA device is present (the message says
        what to install), or when the geometry is one torch-radon cannot express.
    """

    name = "torch-radon"
    matched = False

    def __init__(self, grid: ImageGrid, geometry):
        module, why = torch_radon_available()
        if module is None:
            raise _unavailable(why)
        if isinstance(geometry, ParallelGeometry):
            if geometry.detector_offset != 0.0:
                raise _unavailable("torch-radon has no detector offset for parallel beam; "
                                   f"got detector_offset={geometry.detector_offset}")
        elif isinstance(geometry, FanGeometry):
            if geometry.detector != "flat":
                raise _unavailable("torch-radon's fan beam has a flat detector only; got "
                                   f"detector={geometry.detector!r}")
            if geometry.detector_offset != 0.0:
                raise _unavailable("torch-radon has no detector offset for fan beam; got "
                                   f"detector_offset={geometry.detector_offset}")
        else:
            raise TypeError(f"geometry must be a ParallelGeometry or FanGeometry, got "
                            f"{type(geometry).__name__}")
        self.grid = grid
        self.geometry = geometry
        self._module = module
        self._projector: Optional[object] = None
        #: The mapping found on first use: angles, detector direction, unit, residual error.
        self.convention: Optional[dict] = None
        self._device: Optional[torch.device] = None

    def clear(self) -> None:
        self._projector = None
        self._device = None

    def _build(self, device: torch.device, angle_map: str = "beta"):
        """torch-radon's projector for this geometry, its angles mapped by ``angle_map``."""
        tr = self._module
        g = self.geometry
        mapped = _ANGLE_MAPS[angle_map](g.angle_array())
        angles = torch.tensor(mapped, dtype=torch.float32, device=device)
        dy, dx = self.grid.spacing
        if hasattr(tr, "ParallelBeam"):  # v2 API (carterbox fork)
            volume = tr.Volume2D(voxel_size=(dx, dy))
            if isinstance(g, ParallelGeometry):
                return tr.ParallelBeam(g.detector_count, angles, det_spacing=g.detector_spacing,
                                       volume=volume)
            return tr.FanBeam(g.detector_count, angles, src_dist=g.source_to_isocenter,
                              det_dist=g.source_to_detector - g.source_to_isocenter,
                              det_spacing=g.detector_spacing, volume=volume)
        if dx != dy:  # v1 API: square pixels of size 1 only
            raise _unavailable("torch-radon v1 supports square pixels only; got spacing "
                               f"{self.grid.spacing}")
        h, w = self.grid.shape
        if h != w:
            raise _unavailable(f"torch-radon v1 supports square images only; got {self.grid.shape}")
        scale = 1.0 / dx
        if isinstance(g, ParallelGeometry):
            return tr.Radon(h, angles, det_count=g.detector_count,
                            det_spacing=g.detector_spacing * scale)
        return tr.RadonFanbeam(h, angles, source_distance=g.source_to_isocenter * scale,
                               det_distance=(g.source_to_detector - g.source_to_isocenter) * scale,
                               det_count=g.detector_count, det_spacing=g.detector_spacing * scale)

    def _probe(self, device: torch.device) -> torch.Tensor:
        """An asymmetric test image ``(1, H, W)``: an off-centre disk and an off-centre bar,
        so that a mirrored angle, a reversed detector or a wrong unit shows as a large error."""
        h, w = self.grid.shape
        dy, dx = self.grid.spacing
        y = ((h - 1) / 2.0 - torch.arange(h, dtype=torch.float32, device="cpu"))[:, None] * dy
        x = (torch.arange(w, dtype=torch.float32, device="cpu") - (w - 1) / 2.0)[None, :] * dx
        ry, rx = 0.5 * h * dy, 0.5 * w * dx
        disk = ((x - 0.25 * rx) ** 2 + (y - 0.2 * ry) ** 2) < (0.3 * min(rx, ry)) ** 2
        bar = ((x + 0.45 * rx).abs() < 0.08 * rx) & ((y + 0.3 * ry).abs() < 0.35 * ry)
        return (disk.float() + 0.5 * bar.float())[None].to(device)

    def _calibrate(self, device: torch.device, table: torch.Tensor):
        """Find how torch-radon's angles, detector direction and units map to ours.

        Releases differ (the fan beam's source starts on the other side in the fork; v1 scans
        the other way round and sums in pixel lengths), so the backend projects a test image
        with every candidate (angle map x detector direction x unit) and keeps the one closest
        to our reference projection; none within 10 % (relative L2) is an error.
        """
        from .reference import ReferenceBackend

        probe = self._probe(device)
        reference = ReferenceBackend(self.grid).forward(probe, table.to(device))
        norm = float(reference.norm())
        units = sorted({1.0, float(self.grid.spacing[1])})
        tried = []
        for angle_map in _ANGLE_MAPS:
            projector = self._build(device, angle_map)
            y = projector.forward(probe.contiguous())
            for flip in (False, True):
                yf = y.flip(-1) if flip else y
                for unit in units:
                    err = float((yf * unit - reference).norm()) / norm
                    tried.append((err, angle_map, flip, unit, projector))
        # Parallel beam has equivalent pairs ((beta, u) and (beta - pi, -u)): of the candidates
        # as good as the best, keep the first (the plainest) rather than a rounding winner.
        least = min(t[0] for t in tried)
        err, angle_map, flip, unit, projector = next(t for t in tried if t[0] <= least + 1e-4)
        if not err < CALIBRATION_TOLERANCE:
            raise _unavailable(
                f"no mapping of torch-radon's geometry onto this package's conventions agrees "
                f"with the reference projection (best: angles {angle_map}, detector "
                f"{'reversed' if flip else 'as is'}, unit {unit}: {err:.1%} relative error)")
        self.convention = {"angles": angle_map, "detector_reversed": flip, "unit": unit,
                           "relative_error": err}
        return projector

    def _projector_for(self, device: torch.device, table: torch.Tensor):
        if device.type not in _DEVICE_TYPES:
            raise RuntimeError(f"the torch-radon backend needs CUDA tensors, got {device}")
        if self._projector is None or self._device != device:
            self._projector = self._calibrate(device, table)
            self._device = device
        return self._projector

    @staticmethod
    def _check(name: str, t: torch.Tensor) -> None:
        if t.dtype != torch.float32:
            raise TypeError(f"{name} must be float32 for the torch-radon backend, got {t.dtype}")

    def forward(self, x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, H, W)`` -> ``(B, V, D)``: torch-radon's forward projection (texture)."""
        self._check("x", x)
        proj = self._projector_for(x.device, table)
        y = proj.forward(x.contiguous())
        if self.convention["detector_reversed"]:
            y = y.flip(-1)
        return y * self.convention["unit"] if self.convention["unit"] != 1.0 else y

    def adjoint(self, y: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """``y`` ``(B, V, D)`` -> ``(B, H, W)``: torch-radon's back-projection (NOT the exact
        transpose of :meth:`forward`)."""
        self._check("y", y)
        proj = self._projector_for(y.device, table)
        if self.convention["detector_reversed"]:
            y = y.flip(-1)
        if self.convention["unit"] != 1.0:
            y = y * self.convention["unit"]
        if hasattr(proj, "backprojection"):  # v1
            return proj.backprojection(y.contiguous())
        h, w = self.grid.shape
        if not proj.volume.has_size():
            proj.volume.set_size(h, w)
        return proj.backward(y.contiguous())
