"""Tests of recon.nets.trainable_fbp (Würfl et al.) and recon.nets.learned_filter (Syben et al.)."""

import math

import numpy as np
import pytest
import torch

from operators import FanGeometry, ImageGrid, ParallelGeometry, disk
from operators.fbp import FBP, filter_response, naive_ramp_response, parker_weights
from recon.nets.learned_filter import (LearnedFilterFBP, effective_kernel, kernel_response,
                                       relative_distance)
from recon.nets.trainable_fbp import TrainableFBP

GRID = ImageGrid(shape=(24, 24), spacing=(1.0, 1.0))


def fan_short():
    return FanGeometry.short_scan(40, 40, 1.5, source_to_isocenter=60.0,
                                  source_to_detector=90.0)


def fan_limited():
    return FanGeometry.limited_angle(math.pi, 36, 40, 1.5, source_to_isocenter=60.0,
                                     source_to_detector=90.0)


def parallel():
    return ParallelGeometry.full_scan(30, 37, 1.0)


def data(geometry, count=3, seed=0):
    rng = np.random.default_rng(seed)
    ys, xs = [], []
    for _ in range(count):
        ph = disk(rng.uniform(4, 9), 1.0, tuple(rng.uniform(-3, 3, 2)))
        ys.append(ph.sinogram(geometry))
        xs.append(ph.rasterize(GRID))
    return torch.stack(ys).float(), torch.stack(xs).float()


@pytest.mark.parametrize("geometry", [fan_short(), fan_limited(), parallel()])
def test_trainable_fbp_matches_fbp_at_init_and_shapes(geometry):
    model = TrainableFBP(GRID, geometry)
    y, _ = data(geometry, 2)
    out = model(y)
    assert out.shape == (2, 24, 24)
    torch.testing.assert_close(out, FBP(GRID, geometry)(y))
    assert model(y[0]).shape == (24, 24)
    assert model(y.reshape(1, 2, *y.shape[-2:])).shape == (1, 2, 24, 24)
    assert model.learned_weights().shape == geometry.sinogram_shape


def test_short_scan_starts_from_parker():
    g = fan_short()
    model = TrainableFBP(GRID, g)
    np.testing.assert_allclose(model.reference_weights(), parker_weights(g), atol=1e-6)
    np.testing.assert_allclose(model.learned_weights(), parker_weights(g), atol=1e-6)
    full = model.learned_weights(redundancy_only=False)
    assert not np.allclose(full, parker_weights(g))  # the cosine weight is in there


@pytest.mark.parametrize("learn_weights,learn_filter", [(True, True), (True, False),
                                                        (False, True)])
def test_gradient_reaches_only_learned_parts(learn_weights, learn_filter):
    g = fan_limited()
    model = TrainableFBP(GRID, g, learn_weights=learn_weights, learn_filter=learn_filter)
    names = {n for n, _ in model.named_parameters()}
    assert names == {"fbp.weighting.weights", "fbp.filter.response"}
    y, x = data(g, 2)
    y.requires_grad_(True)
    ((model(y) - x) ** 2).mean().backward()
    w, r = model.weighting.weights, model.filter.response
    assert (w.grad is not None and w.grad.abs().sum() > 0) == learn_weights
    assert (r.grad is not None and r.grad.abs().sum() > 0) == learn_filter
    assert list(model.backprojection.parameters()) == []
    assert y.grad is not None  # the fixed layers still pass gradients through


def test_learned_filter_only_filter_trains():
    g = parallel()
    model = LearnedFilterFBP(GRID, g)
    np.testing.assert_allclose(model.learned_response(), naive_ramp_response(model.length),
                               atol=1e-7)
    assert not model.weighting.weights.requires_grad
    y, x = data(g, 2)
    ((model(y) - x) ** 2).mean().backward()
    assert model.weighting.weights.grad is None
    assert model.filter.response.grad.abs().sum() > 0
    rl = LearnedFilterFBP(GRID, g, init="ram-lak")
    np.testing.assert_allclose(rl.learned_response(), filter_response("ram-lak", rl.length),
                               atol=1e-7)


@pytest.mark.parametrize("make,lr,factor", [
    (lambda: TrainableFBP(GRID, fan_limited(), learn_filter=False), 2e-3, 0.95),
    # the naive ramp is already close to the optimum: a smaller, but certain, decrease
    (lambda: LearnedFilterFBP(GRID, parallel()), 2e-4, 0.98),
])
def test_a_few_adam_steps_lower_the_loss(make, lr, factor):
    torch.manual_seed(0)
    model = make()
    y, x = data(model.geometry, 4, seed=1)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)

    def loss():
        return ((model(y) - x) ** 2).mean()

    start = loss().item()
    for _ in range(15):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    assert loss().item() < factor * start


def test_naive_ramp_has_a_smaller_dc_gain_than_ram_lak():
    # The naive ramp's periodic kernel sums to 0 over the padded length; truncated to the lags
    # the detector sees, its DC gain stays below Ram-Lak's, the cause of its negative offset.
    n, length = 37, 128
    rl = effective_kernel(filter_response("ram-lak", length), length, n)
    nv = effective_kernel(naive_ramp_response(length), length, n)
    assert rl[0] == pytest.approx(0.25) and nv[0] == pytest.approx(0.25)
    assert kernel_response(rl, 0.0)[0] > kernel_response(nv, 0.0)[0] > 0
    assert abs(np.fft.irfft(naive_ramp_response(length), length).sum()) < 1e-12
    assert relative_distance(nv, rl) < 1e-3
    g = parallel()
    geometry_disk = disk(8.0, 1.0)
    y = geometry_disk.sinogram(g).float()
    x = geometry_disk.rasterize(GRID).float()
    inside = x > 0.999
    err_naive = (LearnedFilterFBP(GRID, g)(y) - x)[inside].mean()
    err_rl = (LearnedFilterFBP(GRID, g, init="ram-lak")(y) - x)[inside].mean()
    assert err_naive < err_rl - 2e-3  # the naive ramp shifts the disk down


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="nothing to learn"):
        TrainableFBP(GRID, parallel(), learn_weights=False, learn_filter=False)
    with pytest.raises(ValueError, match="filter"):
        TrainableFBP(GRID, parallel(), filter="box")
    with pytest.raises(TypeError, match="grid"):
        TrainableFBP((24, 24), parallel())
    with pytest.raises(TypeError, match="learn_weights"):
        TrainableFBP(GRID, parallel(), learn_weights=1)
    with pytest.raises(ValueError, match="init"):
        LearnedFilterFBP(GRID, parallel(), init="ramp")
    curved = FanGeometry.full_scan(20, 30, 1.0, 60.0, 90.0, detector="curved")
    with pytest.raises(ValueError, match="curved"):
        LearnedFilterFBP(GRID, curved)
    with pytest.raises(ValueError, match="shape"):
        relative_distance(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="response"):
        effective_kernel(np.ones(5), 16, 4)
    with pytest.raises(ValueError, match="sinogram"):
        TrainableFBP(GRID, parallel())(torch.zeros(3, 5))
