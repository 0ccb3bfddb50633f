"""Matrix-free reference backend in plain PyTorch (CPU and CUDA).

Coefficients are computed on the fly from the ray table, one chunk of rays at a time (rays of
similar length together, dead steps skipped), so peak memory is bounded by ``chunk_entries``
rather than by the size of the system matrix. Forward
projection gathers ``x[..., index] * weight``; the adjoint scatters ``y * weight`` with
``index_add_`` (deterministic on the CPU; atomic, hence not bitwise reproducible, on CUDA).
"""

from __future__ import annotations

import torch

from .._joseph import joseph_coefficients, ray_chunks
from ..geometry import ImageGrid

#: Budget for one chunk: number of (ray, step, neighbour) coefficients times batch size.
DEFAULT_CHUNK_ENTRIES = 1 << 23


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
        # One zero pixel appended, read by the slots outside the grid: a non-finite pixel
        # then reaches only the rays through it (as in the other backends).
        dead = x.shape[-2] * x.shape[-1]
        xf = torch.cat([x.reshape(b, dead), x.new_zeros(b, 1)], 1)
        out = torch.zeros(b, v * d, dtype=x.dtype, device=x.device)
        budget = max(1, self.chunk_entries // max(1, b))
        for rays, first, n_k in ray_chunks(flat_table, self.grid, budget):
            index, weight = joseph_coefficients(flat_table[:, rays], self.grid, x.dtype, first,
                                                n_k, dead_index=dead)
            gathered = xf[:, index.reshape(-1)].reshape(b, rays.numel(), -1)
            out[:, rays] = (gathered * weight).sum(-1)
        return out.reshape(b, v, d)

    def adjoint(self, y: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """``y``: ``(B, V, D)``; ``table``: ``(4, V, D)`` float64. Returns ``(B, H, W)``."""
        b = y.shape[0]
        _, v, d = table.shape
        h, w = self.grid.shape
        flat_table = table.reshape(4, v * d)
        yf = y.reshape(b, v * d)
        # Slots outside the grid add into an extra pixel, dropped at the end (a non-finite
        # ray value times their zero weight would otherwise land on pixel 0).
        out = torch.zeros(b, h * w + 1, dtype=y.dtype, device=y.device)
        budget = max(1, self.chunk_entries // max(1, b))
        for rays, first, n_k in ray_chunks(flat_table, self.grid, budget):
            index, weight = joseph_coefficients(flat_table[:, rays], self.grid, y.dtype, first,
                                                n_k, dead_index=h * w)
            contrib = yf[:, rays, None] * weight
            out.index_add_(1, index.reshape(-1), contrib.reshape(b, -1))
        return out[:, :h * w].reshape(b, h, w)
