"""FBP layers: weights, filters, back-projection scale, accuracy against scikit-image."""

import math
import warnings

import numpy as np
import pytest
import torch

from operators import FBP, FanGeometry, ImageGrid, ParallelGeometry, disk, shepp_logan
from operators.fbp import (filter_response, naive_ramp_response, padded_length, parker_weights,
                           ram_lak_kernel, redundancy_weights)

GRID = ImageGrid(shape=(96, 96), spacing=(1.0, 1.0))


def disk_mean(geom, grid=GRID, radius=35.0, value=0.02):
    rec = FBP(grid, geom)(disk(radius, value).sinogram(geom))
    x, y = grid.meshgrid()
    inner = torch.from_numpy(np.hypot(x, y) < radius - 8)
    return rec[inner].mean() / value, rec[inner].std() / value


@pytest.mark.parametrize("geom", [
    ParallelGeometry.full_scan(180, 137, 1.0),
    ParallelGeometry.full_scan(120, 160, 0.9, detector_offset=0.4),
    FanGeometry.short_scan(200, 240, 1.0, 200.0, 400.0, "flat"),
    FanGeometry.short_scan(200, 240, 1.0, 200.0, 400.0, "curved"),
    FanGeometry.full_scan(300, 240, 1.0, 200.0, 400.0, "flat"),
], ids=["parallel", "parallel-offset", "fan-flat-short", "fan-curved-short", "fan-flat-full"])
def test_uniform_disk_is_recovered_within_one_percent(geom):
    mean, std = disk_mean(geom)
    assert abs(float(mean) - 1) < 0.01
    assert float(std) < 0.01


def test_parker_weights_make_conjugate_rays_sum_to_one():
    g = FanGeometry.short_scan(721, 41, 2.0, 300.0, 600.0, "flat")
    w = parker_weights(g)
    beta = g.angle_array()
    gamma = g.fan_angles()
    assert w.min() >= 0 and w.max() <= 1
    # the conjugate of (beta, gamma) is (beta + pi + 2 gamma, -gamma)
    for i in range(0, 60, 7):
        for j in range(41):
            bc = beta[i] + math.pi + 2 * gamma[j]
            if bc <= beta[-1]:
                jc = 40 - j
                delta = 0.5 * (beta[-1] - beta[0] - math.pi)
                wc = parker_weights(g.with_angles((beta[0], bc)), overscan=delta)[1, jc]
                assert abs(w[i, j] + wc - 1) < 1e-12
    # the weights vanish at both ends of the scan
    assert np.all(w[0] < 1e-12) and np.all(w[-1] < 1e-3)


def test_redundancy_weights_for_full_and_limited_scans():
    full = FanGeometry.full_scan(360, 41, 2.0, 300.0, 600.0)
    assert np.allclose(redundancy_weights(full), 0.5)
    par = ParallelGeometry.full_scan(90, 21)
    assert np.allclose(redundancy_weights(par), 1.0)
    limited = FanGeometry.limited_angle(math.radians(120), 60, 41, 2.0, 300.0, 600.0)
    assert np.allclose(redundancy_weights(limited), 1.0)
    with pytest.raises(ValueError, match="Parker weights need"):
        redundancy_weights(limited, "parker")


def test_ram_lak_is_the_spatial_discretisation_not_a_sampled_ramp():
    n = 128
    k = ram_lak_kernel(n)
    assert k[0] == 0.25 and k[2] == 0 and math.isclose(k[1], -1 / math.pi ** 2)
    resp = filter_response("ram-lak", n)
    naive = naive_ramp_response(n)
    # the DC gain of Ram-Lak is positive (0.25 - 2 sum 1/(pi n)^2 over odd n within the window),
    # the naive ramp has none: the source of its DC offset and cupping
    assert resp[0] > 1e-3 and naive[0] == 0
    assert np.allclose(resp[n // 4], naive[n // 4], atol=0.01)
    for name in ("shepp-logan", "cosine", "hamming", "hann"):
        w = filter_response(name, n)
        assert np.all(w <= resp + 1e-12) and w[0] == resp[0]
    assert filter_response("ram-lak", n, cutoff=0.5)[n // 4 + 1:].max() == 0
    assert padded_length(183) == 512


def test_fbp_error_no_worse_than_skimage_iradon():
    iradon = pytest.importorskip("skimage.transform").iradon
    n = 127
    grid = ImageGrid(shape=(n, n))
    geom = ParallelGeometry.full_scan(180, 181, 1.0)
    ph = shepp_logan(60.0)
    ref = ph.rasterize(grid, 4)
    sino = ph.sinogram(geom)
    x, y = grid.meshgrid()
    inside = torch.from_numpy(np.hypot(x, y) < 62)
    ours = FBP(grid, geom)(sino)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = torch.from_numpy(iradon(sino.numpy().T, theta=np.degrees(geom.angle_array()),
                                     output_size=n, filter_name="ramp", circle=False))
    err = lambda r: float((r - ref)[inside].norm() / ref[inside].norm())  # noqa: E731
    assert err(ours) <= err(sk) * 1.001


def test_parallel_fbp_theta_equals_theta_plus_pi():
    grid = ImageGrid(shape=(48, 48))
    ph = shepp_logan(20.0)
    g1 = ParallelGeometry.full_scan(90, 71, 1.0)
    g2 = g1.with_angles(tuple(a + math.pi for a in g1.angles))
    r1 = FBP(grid, g1)(ph.sinogram(g1))
    r2 = FBP(grid, g2)(ph.sinogram(g2))
    assert torch.allclose(r1, r2, atol=1e-10)


def test_layers_are_frozen_by_default_and_trainable_on_request():
    geom = FanGeometry.short_scan(40, 61, 1.0, 100.0, 200.0)
    fbp = FBP(ImageGrid(shape=(32, 32)), geom)
    assert all(not p.requires_grad for p in fbp.parameters())
    fbp.set_trainable(weights=True, filter=True)
    y = torch.rand(2, *geom.sinogram_shape, dtype=torch.float32)
    fbp(y).pow(2).sum().backward()
    assert fbp.weighting.weights.grad is not None and fbp.filter.response.grad is not None
    assert fbp.weighting.weights.grad.abs().sum() > 0


def test_backprojection_layer_is_an_exact_adjoint_pair():
    geom = FanGeometry.full_scan(20, 31, 1.0, 60.0, 120.0, "curved")
    fbp = FBP(ImageGrid(shape=(15, 16)), geom)
    bp = fbp.backprojection
    q = torch.rand(3, *geom.sinogram_shape, dtype=torch.float64)
    x = torch.rand(3, 15, 16, dtype=torch.float64)
    lhs = (bp(q) * x).sum()
    rhs = (q * bp.adjoint(x)).sum()
    assert abs(float(lhs - rhs)) < 1e-12 * abs(float(lhs))
    assert torch.autograd.gradcheck(bp, (q[:1].clone().requires_grad_(),))
    bp.use_sparse = False  # the matrix-free path gives the same numbers, both directions
    sparse_bp = FBP(ImageGrid(shape=(15, 16)), geom).backprojection
    assert torch.allclose(bp(q), sparse_bp(q), atol=1e-12)
    assert torch.allclose(bp.adjoint(x), sparse_bp.adjoint(x), atol=1e-12)


def test_fbp_errors():
    geom = ParallelGeometry.full_scan(10, 31)
    with pytest.raises(ValueError, match="filter must be one of"):
        FBP(ImageGrid(shape=(16, 16)), geom, filter="ramp")
    with pytest.raises(ValueError, match="padding"):
        FBP(ImageGrid(shape=(16, 16)), geom, padding=32)
    fbp = FBP(ImageGrid(shape=(16, 16)), geom)
    with pytest.raises(ValueError, match="sinogram must end in"):
        fbp(torch.zeros(10, 30))
    with pytest.raises(TypeError, match="sinogram has integer"):
        fbp(torch.zeros(10, 31, dtype=torch.int64))
