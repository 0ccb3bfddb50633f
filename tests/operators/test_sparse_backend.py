"""The sparse backend's matrix pair: the transpose holds A's values bit for bit, each column's
entries in row order."""

import pytest
import torch

from operators import FanGeometry, ImageGrid, XRayTransform
from operators.backends import sparse


@pytest.mark.parametrize("n_rows, n_cols, per_row, dtype", [
    (1, 5, 3, torch.float32), (1000, 300, 7, torch.float64), (20000, 4000, 13, torch.float32),
    (500, 200, 9, torch.bfloat16), (500, 200, 9, torch.float16), (50, 7, 1, torch.float32)])
def test_transpose_is_the_stable_column_sort_of_the_rows(n_rows, n_cols, per_row, dtype):
    """Each column of A^T lists its entries in row order, duplicates included, exactly as a
    stable sort of the whole would, with the values' bits unchanged in every dtype."""
    gen = torch.Generator().manual_seed(n_rows)
    counts = torch.randint(0, per_row, (n_rows,), generator=gen)
    nnz = int(counts.sum())
    col = torch.randint(0, n_cols, (nnz,), generator=gen)
    val = torch.randn(nnz, generator=gen).to(dtype)
    a, at = sparse.csr_pair(counts, col, val, (n_rows, n_cols), torch.device("cpu"))
    row = torch.repeat_interleave(torch.arange(n_rows), counts)
    order = torch.argsort(col, stable=True)
    assert torch.equal(at.col_indices().long(), row[order])
    assert torch.equal(at.values(), val[order])
    assert torch.equal(at.crow_indices().long()[1:], torch.cumsum(torch.bincount(
        col, minlength=n_cols), 0))
    assert torch.equal(at.to_dense(), a.to_dense().t())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_built_matrices_use_compact_indices_and_the_data_dtype(dtype):
    grid = ImageGrid(shape=(20, 23))
    geom = FanGeometry.full_scan(30, 81, 1.0, 60.0, 120.0, "curved")
    op = XRayTransform(grid, geom, backend="sparse")
    ref = XRayTransform(grid, geom, backend="torch")
    x = torch.rand(2, 20, 23, dtype=dtype)
    torch.testing.assert_close(op(x), ref(x), rtol=1e-12 if dtype == torch.float64 else 1e-5,
                               atol=1e-12 if dtype == torch.float64 else 1e-5)
    a, at = op._backends[next(iter(op._backends))].matrices(op.ray_table, dtype, x.device)
    for m in (a, at):
        assert m.values().dtype == dtype and m.col_indices().dtype == torch.int32
