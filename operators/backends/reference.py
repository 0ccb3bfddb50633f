"""Matrix-free reference backend in plain PyTorch (CPU and CUDA).

Coefficients are computed on the fly from the ray table, one chunk of rays at a time, so peak
memory is bounded by ``chunk_entries`` rather than by the size of the system matrix. Forward
projection gathers ``x[..., index] * weight``; the adjoint scatters ``y * weight`` with
``index_add_`` (deterministic on the CPU; atomic, hence not bitwise reproducible, on CUDA).
"""

from __future__ import annotations

import torch

from .._joseph import coefficients_per_ray, joseph_coefficients
from ..geometry import ImageGrid

#: Budget for one chunk: number of (ray, slot) coefficient pairs times batch size.
DEFAULT_CHUNK_ENTRIES = 1 << 23


def _rays_per_chunk(grid: ImageGrid, batch: int, n_rays: int, chunk_entries: int) -> int:
    per_ray = coefficients_per_ray(grid) * max(1, batch)
    return max(1, min(n_rays, chunk_entries // per_ray))


class ReferenceBackend:
    """Joseph projector evaluated chunk by chunk (see :mod:`operators._joseph`)."""

    name = "torch"

    def __init__(self, grid: ImageGrid, chunk_entries: int = DEFAULT_CHUNK_ENTRIES):
        self.grid = grid
        self.chunk_entries = int(chunk_entries)

    def forward(self, x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, H, W)``; ``table``: ``(4, V, D)`` float64. Returns ``(B, V, D)``."""
        b = x.shape[0]
        _, v, d = table.shape
        flat_table = table.reshape(4, v * d)
        n_rays = v * d
        xf = x.reshape(b, -1)
        out = torch.empty(b, n_rays, dtype=x.dtype, device=x.device)
        step = _rays_per_chunk(self.grid, b, n_rays, self.chunk_entries)
        for start in range(0, n_rays, step):
            stop = min(n_rays, start + step)
            index, weight = joseph_coefficients(flat_table[:, start:stop], self.grid, x.dtype)
            gathered = xf[:, index.reshape(-1)].reshape(b, stop - start, -1)
            out[:, start:stop] = (gathered * weight).sum(-1)
        return out.reshape(b, v, d)

    def adjoint(self, y: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """``y``: ``(B, V, D)``; ``table``: ``(4, V, D)`` float64. Returns ``(B, H, W)``."""
        b = y.shape[0]
        _, v, d = table.shape
        h, w = self.grid.shape
        flat_table = table.reshape(4, v * d)
        n_rays = v * d
        yf = y.reshape(b, n_rays)
        out = torch.zeros(b, h * w, dtype=y.dtype, device=y.device)
        step = _rays_per_chunk(self.grid, b, n_rays, self.chunk_entries)
        for start in range(0, n_rays, step):
            stop = min(n_rays, start + step)
            index, weight = joseph_coefficients(flat_table[:, start:stop], self.grid, y.dtype)
            contrib = yf[:, start:stop, None] * weight
            out.index_add_(1, index.reshape(-1), contrib.reshape(b, -1))
        return out.reshape(b, h, w)
