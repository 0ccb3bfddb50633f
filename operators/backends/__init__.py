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


def select_backend(device: torch.device, grid: ImageGrid, geometry) -> str:
    """The backend ``auto`` uses for tensors on ``device``."""
    n_rays = geometry.views * geometry.detector_count
    if device.type == "cuda":
        factory, _ = _triton_factory()
        if factory is not None:
            from .triton_backend import one_image_fits
            if one_image_fits(grid, geometry):
                return "triton"
    if estimated_bytes(grid, n_rays) <= SPARSE_MEMORY_BUDGET:
        return "sparse"
    return "torch"
