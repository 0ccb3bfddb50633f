"""Projector backends. Each applies the same Joseph model (:mod:`operators._joseph`).

=============  ==========================================  ===================================
name           where                                       pair
=============  ==========================================  ===================================
``sparse``     CPU or CUDA, below a memory budget          exact (A^T is the transpose of A)
``torch``      CPU or CUDA, any size (chunked, matrix-free) exact (same coefficients)
``triton``     CUDA (or CPU under ``TRITON_INTERPRET=1``)   exact to float32 rounding
``torch-radon`` CUDA, if the package is importable          unmatched (texture, pixel-driven)
=============  ==========================================  ===================================

``select_backend`` picks one for a tensor's device when the operator was built with
``backend="auto"``.
"""

from __future__ import annotations

import os

import torch

from ..geometry import ImageGrid
from .reference import ReferenceBackend
from .sparse import SparseBackend, estimated_bytes

__all__ = ["BACKENDS", "make_backend", "select_backend", "SPARSE_MEMORY_BUDGET",
           "BackendUnavailableError"]

#: Largest estimated size (bytes) of the cached matrix pair for ``auto`` to choose ``sparse``.
SPARSE_MEMORY_BUDGET = int(os.environ.get("KNOWN_OPERATORS_SPARSE_BUDGET", 3 << 30))

BACKENDS = ("auto", "sparse", "torch", "triton", "torch-radon")


class BackendUnavailableError(RuntimeError):
    """A backend was requested that cannot run in this environment."""


def _triton_factory():
    try:
        from .triton_backend import TritonBackend, triton_available
    except ImportError:  # pragma: no cover - module missing
        return None, "the triton backend module is not available"
    ok, why = triton_available()
    return (TritonBackend if ok else None), why


def make_backend(name: str, grid: ImageGrid, geometry):
    """Instantiate backend ``name`` (not ``auto``) or raise :class:`BackendUnavailableError`."""
    if name == "sparse":
        return SparseBackend(grid)
    if name == "torch":
        return ReferenceBackend(grid)
    if name == "triton":
        factory, why = _triton_factory()
        if factory is None:
            raise BackendUnavailableError(f"backend='triton' cannot run here: {why}")
        return factory(grid, geometry)
    if name == "torch-radon":
        from .torch_radon_backend import TorchRadonBackend  # raises BackendUnavailableError
        return TorchRadonBackend(grid, geometry)
    raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")


def _one_image_fits_int32(grid: ImageGrid, geometry) -> bool:
    """Whether the triton kernels' copies of one image (the image and its framed transpose;
    the sinogram with a frame of at most 16 rays per side) stay below their int32 offsets'
    2**31 elements; beyond (a 32768 x 32768 image) ``auto`` takes the ``torch`` backend."""
    h, w = grid.shape
    per_image = max(2 * (h + 2) * (w + 2), geometry.views * (geometry.detector_count + 32))
    return per_image < 2**31 - 1


def select_backend(device: torch.device, grid: ImageGrid, geometry) -> str:
    """The backend ``auto`` uses for tensors on ``device``."""
    n_rays = geometry.views * geometry.detector_count
    if device.type == "cuda" and _one_image_fits_int32(grid, geometry):
        factory, _ = _triton_factory()
        if factory is not None:
            return "triton"
    if estimated_bytes(grid, n_rays) <= SPARSE_MEMORY_BUDGET:
        return "sparse"
    return "torch"
