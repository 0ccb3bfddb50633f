"""Joseph coefficients: path lengths on non-square pixels, live-step ranges, chunk budgets."""

import math

import pytest
import torch

from operators import FanGeometry, ImageGrid, ParallelGeometry, XRayTransform
from operators._joseph import joseph_coefficients


def test_theta_zero_sums_columns_times_dy_on_non_square_pixels():
    grid = ImageGrid(shape=(4, 5), spacing=(0.5, 1.0))           # dy = 0.5, dx = 1.0
    x = torch.arange(20, dtype=torch.float64).reshape(4, 5)
    g0 = ParallelGeometry(angles=(0.0,), detector_count=5, detector_spacing=1.0)
    y0 = XRayTransform(grid, g0, backend="torch")(x)
    assert torch.allclose(y0[0], x.sum(0) * 0.5)                # path length per row: dy
    g1 = ParallelGeometry(angles=(math.pi / 2,), detector_count=4, detector_spacing=0.5)
    y1 = XRayTransform(grid, g1, backend="torch")(x)
    assert torch.allclose(y1[0], x.sum(1).flip(0) * 1.0)        # path length per column: dx


@pytest.mark.parametrize("geom", [
    ParallelGeometry.full_scan(37, 41, 0.7),
    FanGeometry.full_scan(29, 57, 1.3, 60.0, 120.0),
])
def test_step_ranges_skip_only_dead_steps(geom):
    # The torch backend evaluates only the steps step_ranges() declares live; the result must
    # equal evaluating all K = max(H, W) steps of every ray.
    grid = ImageGrid(shape=(17, 23), spacing=(0.9, 1.1))
    A = XRayTransform(grid, geom, backend="torch")
    x = torch.rand(17, 23, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    table = A.ray_table.reshape(4, -1)
    index, weight = joseph_coefficients(table, grid, torch.float64)
    full = (x.reshape(-1)[index] * weight).sum(-1).reshape(A.range_shape)
    torch.testing.assert_close(A(x), full, rtol=1e-12, atol=1e-12)
    # and per ray (independent of how rays are grouped into chunks): every step with a
    # non-zero weight lies in [first, first + count)
    from operators._joseph import step_ranges
    first, count = step_ranges(table, grid)
    k = max(grid.shape)
    live = (weight[:, :k] != 0) | (weight[:, k:] != 0)
    steps = torch.arange(k)[None, :]
    inside = (steps >= first[:, None]) & (steps < (first + count)[:, None])
    assert bool((inside | ~live).all())


@pytest.mark.parametrize("budget", [64, 500, 4096])
def test_ray_chunks_honour_the_entry_budget(budget):
    # Documented: len(ray_index) * 2 * n_steps_chunk <= max_entries (at least one ray per chunk),
    # every ray that meets the grid appears exactly once.
    from operators._joseph import ray_chunks, step_ranges
    grid = ImageGrid(shape=(17, 23), spacing=(0.9, 1.1))
    A = XRayTransform(grid, FanGeometry.full_scan(29, 57, 1.3, 60.0, 120.0), backend="torch")
    table = A.ray_table.reshape(4, -1)
    seen = []
    for idx, first, n_k in ray_chunks(table, grid, budget):
        assert idx.numel() == 1 or idx.numel() * 2 * n_k <= budget
        seen.append(idx)
    _, count = step_ranges(table, grid)
    seen = torch.cat(seen).sort().values
    assert torch.equal(seen, torch.nonzero(count > 0).flatten())


def test_torch_backend_divides_the_chunk_budget_by_the_batch(monkeypatch):
    import operators.backends.reference as ref
    budgets = []
    real = ref.ray_chunks

    def spy(table, grid, max_entries):
        budgets.append(max_entries)
        return real(table, grid, max_entries)

    monkeypatch.setattr(ref, "ray_chunks", spy)
    grid = ImageGrid(shape=(16, 16))
    A = XRayTransform(grid, ParallelGeometry.full_scan(8, 23, 1.0), backend="torch")
    x = torch.rand(4, 16, 16, dtype=torch.float64)
    A(x)
    A.T(A(x))
    assert budgets and all(b * 4 <= ref.DEFAULT_CHUNK_ENTRIES for b in budgets)


@pytest.mark.parametrize("pixel", [(0, 0), (3, 5), (7, 12)])
def test_a_non_finite_value_reaches_only_the_rays_through_it(pixel):
    """With the input check off (check_inputs=False, or inside torch.compile) an inf pixel
    makes NaN/inf exactly where the system matrix has a non-zero: the torch backend's slots
    outside the grid used to read pixel 0 with weight 0 (0 * inf = NaN in most rays)."""
    import math

    from operators import FanGeometry, ImageGrid, XRayTransform
    grid = ImageGrid(shape=(8, 13))
    geometry = FanGeometry.full_scan(9, 20, 1.5, source_to_isocenter=60.0,
                                     source_to_detector=100.0)
    x = torch.zeros(8, 13, dtype=torch.float64)
    x[pixel] = math.inf
    y = torch.zeros(9, 20, dtype=torch.float64)
    y[4, 10 + pixel[0] % 3] = math.inf
    ones = torch.ones_like(x)
    pattern = {}
    for backend in ("sparse", "torch"):
        op = XRayTransform(grid, geometry, backend=backend, check_inputs=False)
        pattern[backend] = (~torch.isfinite(op(x)), ~torch.isfinite(op.T(y)))
        assert torch.isfinite(op(ones)).all()
    for ours, matrix in zip(pattern["torch"], pattern["sparse"]):
        assert torch.equal(ours, matrix) and 0 < int(ours.sum()) < ours.numel() // 4
