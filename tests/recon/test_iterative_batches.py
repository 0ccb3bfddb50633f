"""Iterative solvers on batches (tol waits for every image), the isotropic TV seminorm and the
residual per image."""

import math

import torch

import operators as ops
from recon.iterative import sirt, tv_pdhg


def _operator(n=24, views=40):
    grid = ops.ImageGrid((n, n), (1.0, 1.0))
    dets = int(math.ceil(n * math.sqrt(2))) + 1
    geom = ops.ParallelGeometry.full_scan(views, dets, 1.0)
    return ops.XRayTransform(grid, geom), grid


def test_sirt_tol_waits_for_every_image_of_the_batch():
    # An all-zero sinogram "converges" at once (relative change 0); the other image must not be
    # stopped with it: tol is documented as "for every image of the batch".
    A, grid = _operator()
    y1 = A(ops.shepp_logan(10.0).rasterize(grid))
    y = torch.stack([torch.zeros_like(y1), y1])
    calls = []
    xb = sirt(A, y, 2000, tol=1e-3, callback=lambda k, x: calls.append(k))
    x1 = sirt(A, y1, 2000, tol=1e-3)
    assert len(calls) > 5
    assert torch.allclose(xb[1], x1, rtol=1e-6, atol=1e-9)
    assert float(xb[0].abs().max()) == 0.0


def test_tv_pdhg_tol_waits_for_every_image_of_the_batch():
    A, grid = _operator()
    y1 = A(ops.shepp_logan(10.0).rasterize(grid))
    y = torch.stack([torch.zeros_like(y1), y1])
    xb = tv_pdhg(A, y, 0.5, 3000, tol=1e-4)
    x1 = tv_pdhg(A, y1, 0.5, 3000, tol=1e-4)
    assert torch.allclose(xb[1], x1, rtol=1e-5, atol=1e-8)


def test_tv_seminorm_is_isotropic():
    # gradient at (0,0) is (1, 1): isotropic TV counts sqrt(2), anisotropic 2.
    from recon.iterative import tv_seminorm
    x = torch.tensor([[0.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    assert abs(float(tv_seminorm(x)) - (2.0 + math.sqrt(2.0))) < 1e-12
    # and for a diagonal ramp the value is sqrt(2) per interior pixel
    n = 6
    r = torch.arange(n, dtype=torch.float64)
    ramp = r[:, None] + r[None, :]
    expected = (n - 1) ** 2 * math.sqrt(2.0) + 2 * (n - 1) * 1.0
    assert abs(float(tv_seminorm(ramp)) - expected) < 1e-9


def test_least_squares_residual_is_the_norm_per_image():
    from recon.iterative import least_squares_residual
    A, grid = _operator(n=12, views=10)
    x = torch.stack([ops.shepp_logan(5.0).rasterize(grid), torch.zeros(12, 12, dtype=torch.float64)])
    y = torch.randn((2,) + tuple(A.range_shape), dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = least_squares_residual(A, y, x)
    want = (A(x) - y).flatten(-2).norm(dim=-1)
    assert got.shape == (2,)
    assert torch.allclose(got, want, rtol=1e-12)
