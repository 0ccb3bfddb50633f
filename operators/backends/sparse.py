"""Cached sparse-matrix backend: the Joseph system matrix assembled once, applied with SpMM.

The matrix ``A`` (rays x pixels, CSR) and its transpose are built from exactly the same
coefficients as :mod:`.reference` and kept per (device, dtype), so ``A^T`` is the transpose of
``A`` by construction. Memory is about 8 bytes per non-zero per matrix (int32 indices when they
fit): for 256x256 with 256 views and 363 detectors about 0.5 GB for the pair, which is why
:func:`operators.backends.select_backend` only picks this backend below a memory budget.
"""

from __future__ import annotations

import warnings
from typing import Dict, Tuple

import scipy.sparse
import torch

from .._graph_pools import build_outside_graph_pools
from .._joseph import coefficients_per_ray, joseph_coefficients, ray_chunks
from ..geometry import ImageGrid

_BUILD_CHUNK_ENTRIES = 1 << 24
_INTEGER_OF_SIZE = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def estimated_bytes(grid: ImageGrid, n_rays: int, itemsize: int = 4) -> int:
    """Upper bound of the memory of ``A`` and ``A^T`` together (bytes)."""
    nnz = n_rays * coefficients_per_ray(grid)
    return 2 * nnz * (4 + itemsize)


class MatrixCache(dict):
    """A dict of cached matrices that copies and pickles as empty (CSR tensors do neither).

    ``copy.deepcopy(model)`` and ``torch.save(model)`` then work; the copy rebuilds its matrices
    on first use.
    """

    def __deepcopy__(self, memo):
        return MatrixCache()

    def __reduce__(self):
        return (MatrixCache, ())


def _csr(crow, col, val, size) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        return torch.sparse_csr_tensor(crow, col, val, size=size, device=crow.device,
                                       check_invariants=False)


def _build(table: torch.Tensor, grid: ImageGrid, dtype: torch.dtype,
           device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    _, v, d = table.shape
    n_rays = v * d
    n_pix = grid.shape[0] * grid.shape[1]
    flat_table = table.reshape(4, n_rays).to("cpu")
    # Peak memory: the chunks' non-zeros are kept in the final index and value types (int32
    # columns, ``dtype`` values: each weight is computed in float64 and rounded once) and
    # released as they are placed; the transpose allocates only its result, so the build peaks
    # at about 1.1x the finished pair (benchmarks/memory.py --backend sparse).
    col_dtype = torch.int32 if n_pix < 2**31 - 1 else torch.int64
    counts = torch.zeros(n_rays, dtype=torch.int64, device="cpu")
    pieces = []
    for rays, first, n_k in ray_chunks(flat_table, grid, _BUILD_CHUNK_ENTRIES):
        index, weight = joseph_coefficients(flat_table[:, rays], grid, torch.float64, first, n_k)
        keep = weight != 0
        per_ray = keep.sum(1)
        counts[rays] = per_ray
        pieces.append((rays, per_ray, index[keep].to(col_dtype), weight[keep].to(dtype)))
        del index, weight, keep
    # Each chunk lists its rays' non-zeros ray after ray (rays were visited by length): move
    # every ray's run to its row of the matrix.
    crow = torch.zeros(n_rays + 1, dtype=torch.int64, device="cpu")
    torch.cumsum(counts, 0, out=crow[1:])
    nnz = int(crow[-1])
    col = torch.empty(nnz, dtype=col_dtype, device="cpu")
    val = torch.empty(nnz, dtype=dtype, device="cpu")
    pieces.reverse()
    while pieces:
        rays, per_ray, c, w = pieces.pop()
        run_start = torch.cumsum(per_ray, 0) - per_ray
        pos = torch.repeat_interleave(crow[rays] - run_start, per_ray,
                                      output_size=c.numel())
        pos += torch.arange(c.numel(), device="cpu")
        col[pos] = c
        val[pos] = w
        del rays, per_ray, c, w, run_start, pos
    return csr_pair(counts, col, val, (n_rays, n_pix), device)


def csr_pair(counts: torch.Tensor, col: torch.Tensor, val: torch.Tensor, shape: Tuple[int, int],
             device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(M, M^T)`` in CSR from non-zeros listed row by row.

    ``counts[i]`` non-zeros of row ``i`` follow each other in ``col`` / ``val`` (rows in order).
    Both matrices hold exactly the same values, so ``M^T`` is the transpose of ``M`` bit for bit.
    """
    n_rows, n_cols = shape
    nnz = col.numel()
    index_dtype = torch.int32 if max(nnz, n_rows, n_cols) < 2**31 - 1 else torch.int64
    crow = torch.zeros(n_rows + 1, dtype=index_dtype, device="cpu")
    torch.cumsum(counts, 0, out=crow[1:])
    col = col.to(index_dtype)
    a = _csr(crow, col, val, (n_rows, n_cols))
    # The transpose is scipy's CSR -> CSC conversion: one counting sort in O(nnz), stable, so
    # each column lists its rows in order, and it allocates only the result. The values move
    # as raw bits (an integer view of their dtype), so any dtype passes unchanged.
    bits = _INTEGER_OF_SIZE[val.element_size()]
    m = scipy.sparse.csr_matrix((val.view(bits).numpy(), col.numpy(), crow.numpy()),
                                shape=(n_rows, n_cols))
    m_t = m.tocsc()
    del m
    at = _csr(torch.from_numpy(m_t.indptr).to(index_dtype),
              torch.from_numpy(m_t.indices).to(index_dtype),
              torch.from_numpy(m_t.data).view(val.dtype), (n_cols, n_rows))
    return a.to(device), at.to(device)


class SparseBackend:
    """Joseph projector as a cached CSR matrix pair (see :mod:`operators._joseph`)."""

    name = "sparse"

    def __init__(self, grid: ImageGrid):
        self.grid = grid
        self._cache: Dict[Tuple[str, torch.dtype], Tuple[torch.Tensor, torch.Tensor]] = \
            MatrixCache()

    def matrices(self, table: torch.Tensor, dtype: torch.dtype,
                 device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(A, A^T)`` as CSR tensors of ``dtype`` on ``device``, built on first use."""
        key = (str(device), dtype)
        if key not in self._cache:
            self._cache[key] = build_outside_graph_pools(
                lambda: _build(table, self.grid, dtype, device), device)
        return self._cache[key]

    def clear(self) -> None:
        self._cache.clear()

    def forward(self, x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        _, v, d = table.shape
        a, _ = self.matrices(table, x.dtype, x.device)
        out = torch.sparse.mm(a, x.reshape(b, -1).t())  # (rays, B)
        return out.t().reshape(b, v, d)

    def adjoint(self, y: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        b = y.shape[0]
        h, w = self.grid.shape
        _, at = self.matrices(table, y.dtype, y.device)
        out = torch.sparse.mm(at, y.reshape(b, -1).t())  # (pixels, B)
        return out.t().reshape(b, h, w)
