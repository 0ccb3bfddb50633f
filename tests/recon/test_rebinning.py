"""Parallel <-> fan conversion: interpolation rebinning (recon.rebinning) and the derived network
(recon.nets.rebinning, Syben et al. GCPR 2018)."""

import math

import numpy as np
import pytest
import torch

import operators as op
from recon.nets.rebinning import (DetectorFilter, ParallelToFanNet, ram_lak_response,
                                  ramp_response)
from recon.rebinning import InterpolationRebinning, fan_to_parallel, parallel_to_fan

PHANTOM = op.shepp_logan(30.0)  # fits in a disk of 30 mm
R, D = 150.0, 300.0
FOV = 40.0                       # mm, radius the fan covers


def fan(detector="flat", views=180, spacing=0.5, short=False, fov=FOV):
    gamma = math.asin(fov / R)
    umax = D * math.tan(gamma) if detector == "flat" else D * gamma
    n = 2 * int(math.ceil(umax / spacing)) + 1
    make = op.FanGeometry.short_scan if short else op.FanGeometry.full_scan
    return make(views, n, spacing, R, D, detector=detector)


def parallel(views, spacing, half_width=FOV + 1.0, **kw):
    return op.ParallelGeometry.full_scan(views, 2 * int(math.ceil(half_width / spacing)) + 1,
                                         spacing, **kw)


def rel(a, b):
    return float((a - b).detach().norm() / b.norm())


# ---------------------------------------------------------------------------------------------
# interpolation rebinning: accuracy on an analytic phantom
# ---------------------------------------------------------------------------------------------
# Stated accuracy (measured 1.4 % flat, 1.7 % curved): dense parallel sampling (720 views over
# [0, pi), 0.25 mm detector) converts the exact Shepp-Logan sinogram into the exact fan sinogram
# within 2.5 % relative L2 error.
@pytest.mark.parametrize("detector", ["flat", "curved"])
def test_parallel_to_fan_matches_exact_fan_sinogram(detector):
    fg = fan(detector)
    pg = parallel(720, 0.25)
    out = parallel_to_fan(PHANTOM.sinogram(pg), pg, fg)
    assert out.shape == fg.sinogram_shape
    assert rel(out, PHANTOM.sinogram(fg)) < 0.025


@pytest.mark.parametrize("detector", ["flat", "curved"])
def test_parallel_to_fan_error_drops_with_denser_sampling(detector):
    fg = fan(detector, views=90)
    exact = PHANTOM.sinogram(fg)
    errors = []
    for views, spacing in ((180, 1.0), (360, 0.5), (720, 0.25)):
        pg = parallel(views, spacing)
        errors.append(rel(InterpolationRebinning(pg, fg)(PHANTOM.sinogram(pg)), exact))
    assert errors[0] > 1.6 * errors[1] > 1.6 ** 2 * errors[2]


# Stated accuracy (measured 0.7 % flat, 0.8 % curved): a dense fan full scan (1440 views,
# 0.25 mm) converts to 180 parallel views within 1.5 %; a short scan (720 views) within 2.5 %
# (measured 1.3 % / 1.8 %).
@pytest.mark.parametrize("detector", ["flat", "curved"])
@pytest.mark.parametrize("short", [False, True])
def test_fan_to_parallel_matches_exact_parallel_sinogram(detector, short):
    pg = parallel(180, 0.5, half_width=FOV)
    fg = fan(detector, views=720 if short else 1440, spacing=0.25, short=short)
    out = fan_to_parallel(PHANTOM.sinogram(fg), fg, pg)
    assert out.shape == pg.sinogram_shape
    assert rel(out, PHANTOM.sinogram(pg)) < (0.025 if short else 0.015)


def test_parallel_angles_are_used_modulo_pi_with_flipped_detector():
    """p(theta + pi, s) = p(theta, -s): any half-turn of views, or a full turn, gives the same
    accuracy; an offset detector too."""
    fg = fan("flat", views=60)
    exact = PHANTOM.sinogram(fg)
    base = rel(parallel_to_fan(PHANTOM.sinogram(parallel(360, 0.5)), parallel(360, 0.5), fg),
               exact)
    n = parallel(360, 0.5).detector_count
    for pg in (op.ParallelGeometry.limited_angle(math.pi, 360, n, 0.5, start=2.345),
               op.ParallelGeometry.limited_angle(math.pi, 360, n, 0.5, start=-7.0),
               op.ParallelGeometry.limited_angle(2 * math.pi, 720, n, 0.5, start=1.0),
               op.ParallelGeometry.full_scan(360, n, 0.5, detector_offset=0.17)):
        err = rel(parallel_to_fan(PHANTOM.sinogram(pg), pg, fg), exact)
        assert err < 1.3 * base, pg


def test_constant_sinogram_is_reproduced_exactly():
    """The interpolation weights of every covered ray sum to one."""
    pg = parallel(90, 1.0)
    fg = fan("curved", views=45)
    out = parallel_to_fan(torch.ones(pg.sinogram_shape, dtype=torch.float64), pg, fg)
    assert torch.allclose(out, torch.ones_like(out), atol=1e-12)
    pg = parallel(90, 1.0, half_width=FOV - 1)
    back = fan_to_parallel(torch.ones(fg.sinogram_shape, dtype=torch.float64), fg, pg)
    assert torch.allclose(back, torch.ones_like(back), atol=1e-12)


def test_exact_on_sample_rays():
    """A fan ray that is also a parallel sample line takes exactly that sample's value."""
    pg = op.ParallelGeometry.full_scan(8, 9, 1.0)
    # curved detector element at gamma = 0 of view beta = theta_k is the parallel line (theta_k, 0)
    fg = op.FanGeometry(angles=pg.angles, detector_count=3, detector_spacing=1.0,
                        source_to_isocenter=100.0, source_to_detector=200.0, detector="curved")
    p = torch.randn(pg.sinogram_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = parallel_to_fan(p, pg, fg)
    assert torch.allclose(out[:, 1], p[:, 4], atol=1e-12)


def test_round_trip_parallel_fan_parallel():
    pg = parallel(360, 0.5, half_width=FOV)
    fg = fan("flat", views=720, spacing=0.25, fov=FOV - 5)
    inner = parallel(360, 0.5, half_width=FOV - 6)  # inside the fan's field of view
    back = fan_to_parallel(parallel_to_fan(PHANTOM.sinogram(pg), pg, fg), fg, inner)
    assert rel(back, PHANTOM.sinogram(inner)) < 0.03


# ---------------------------------------------------------------------------------------------
# interpolation rebinning: shapes, batching, dtype, autograd
# ---------------------------------------------------------------------------------------------
def test_batch_dimensions_and_dtype():
    pg = parallel(60, 2.0)
    fg = fan("flat", views=30, spacing=2.0)
    conv = InterpolationRebinning(pg, fg)
    x = torch.randn(2, 3, *pg.sinogram_shape, dtype=torch.float32)
    y = conv(x)
    assert y.shape == (2, 3, *fg.sinogram_shape) and y.dtype == torch.float32
    assert torch.allclose(y[1, 2], conv(x[1, 2]), atol=1e-6)
    inner = parallel(60, 2.0, half_width=FOV - 4)
    inv = InterpolationRebinning(fg, inner)
    assert inv(y).shape == (2, 3, *inner.sinogram_shape)
    assert inv.direction == "fan-to-parallel" and conv.direction == "parallel-to-fan"


def test_gradcheck_is_linear_and_differentiable():
    pg = op.ParallelGeometry.full_scan(6, 11, 1.0)
    fg = op.FanGeometry.full_scan(5, 7, 1.0, 20.0, 40.0, detector="flat")
    conv = InterpolationRebinning(pg, fg)
    x = torch.randn(pg.sinogram_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


# ---------------------------------------------------------------------------------------------
# interpolation rebinning: geometry errors
# ---------------------------------------------------------------------------------------------
def test_fan_rays_beyond_parallel_detector_raise_or_zero_fill():
    fg = fan("flat", views=30)
    narrow = parallel(90, 1.0, half_width=20.0)
    with pytest.raises(ValueError, match="parallel detector"):
        InterpolationRebinning(narrow, fg)
    with pytest.warns(UserWarning, match="set to zero"):
        conv = InterpolationRebinning(narrow, fg, fill="zero")
    out = conv(torch.ones(narrow.sinogram_shape, dtype=torch.float64))
    _, s = fg.lines()
    s = torch.from_numpy(s)
    assert torch.all(out[s.abs() > 20.0] == 0)
    assert torch.allclose(out[s.abs() < 19.0], torch.ones((), dtype=out.dtype), atol=1e-12)


def test_missing_parallel_wedge_raises():
    fg = fan("flat", views=30)
    limited = op.ParallelGeometry.limited_angle(math.pi / 2, 45, 83, 1.0)
    with pytest.raises(ValueError, match="gap of the parallel view angles"):
        InterpolationRebinning(limited, fg)


def test_fan_limited_arc_to_parallel_raises():
    pg = parallel(90, 1.0)
    arc = op.FanGeometry.limited_angle(math.pi / 2, 60, fan().detector_count, 0.5, R, D)
    with pytest.raises(ValueError, match="neither the direct nor the complementary"):
        InterpolationRebinning(arc, pg)


def test_bad_arguments():
    pg, fg = parallel(30, 2.0), fan(views=20, spacing=2.0)
    with pytest.raises(TypeError, match="source"):
        InterpolationRebinning("parallel", fg)
    with pytest.raises(TypeError, match="target"):
        InterpolationRebinning(pg, pg)
    with pytest.raises(TypeError, match="parallel_geometry"):
        parallel_to_fan(torch.zeros(pg.sinogram_shape), fg, fg)
    with pytest.raises(ValueError, match="fill"):
        InterpolationRebinning(pg, fg, fill="nearest")
    with pytest.raises(ValueError, match="views"):
        InterpolationRebinning(pg[:1], fg)
    with pytest.raises(ValueError, match="detector_count"):
        InterpolationRebinning(op.ParallelGeometry.full_scan(30, 1, 2.0), fg, fill="zero")
    conv = InterpolationRebinning(pg, fg)
    with pytest.raises(ValueError, match="source geometry"):
        conv(torch.zeros(30, 5))
    with pytest.raises(TypeError, match="dtype"):
        conv(torch.zeros(pg.sinogram_shape, dtype=torch.int64))


# ---------------------------------------------------------------------------------------------
# the derived network
# ---------------------------------------------------------------------------------------------
GRID = op.ImageGrid((48, 48), (1.25, 1.25))  # 30 mm half width, corners at 42.4 mm


def net_geometries(detector="flat"):
    gamma = math.asin(44.0 / R)
    umax = D * math.tan(gamma) if detector == "flat" else D * gamma
    fg = op.FanGeometry.full_scan(90, 2 * int(math.ceil(umax / 2.5)) + 1, 2.5, R, D,
                                  detector=detector)
    pg = op.ParallelGeometry.full_scan(120, 71, 1.25)
    return pg, fg


def test_filter_is_a_linear_convolution_with_its_kernel():
    n = 9
    filt = DetectorFilter(n, ram_lak_response(32, 1.0))
    p = torch.randn(3, n, dtype=torch.float64)
    out = filt(p)
    k = filt.kernel().detach().numpy()
    full = np.concatenate([k[-(n - 1):], k[:n]])  # kernel at offsets -(n-1) .. n-1
    ref = np.stack([np.convolve(row, full, mode="full")[n - 1: 2 * n - 1] for row in p.numpy()])
    assert np.allclose(out.detach().numpy(), ref, atol=1e-12)
    with pytest.raises(ValueError, match="padded length"):
        DetectorFilter(20, ram_lak_response(32, 1.0))


def test_ram_lak_response_reaches_ramp_at_nyquist():
    r = ram_lak_response(64, 0.5)
    assert r[-1] == pytest.approx(1.0, rel=2e-2)          # |f| = 1 / (2 * 0.5) at Nyquist
    assert 0 < r[0] < 0.05 and ramp_response(64, 0.5)[0] == 0


@pytest.mark.parametrize("detector", ["flat", "curved"])
def test_network_with_ram_lak_is_fbp_then_fan_projection(detector):
    pg, fg = net_geometries(detector)
    net = ParallelToFanNet.from_geometries(GRID, pg, fg)
    phantom = op.shepp_logan(28.0, scale=0.02)
    image = net.backproject(phantom.sinogram(pg))
    truth = phantom.rasterize(GRID)
    assert rel(image, truth) < 0.3                        # an FBP at 48x48 of Shepp-Logan
    disk = op.disk(20.0, 0.02)
    with torch.no_grad():
        flat = net.backproject(disk.sinogram(pg))
    assert float(flat[20:28, 20:28].mean()) == pytest.approx(0.02, rel=0.03)  # no bias
    out = net(phantom.sinogram(pg))
    assert out.shape == fg.sinogram_shape
    assert rel(out, phantom.sinogram(fg)) < 0.12


def test_network_batches_and_only_the_filter_is_trainable():
    pg, fg = net_geometries("curved")
    net = ParallelToFanNet.from_geometries(GRID, pg, fg, filter_init="ramp")
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert trainable == ["filter.response"]
    assert not net.ray_weights.requires_grad
    x = torch.randn(2, *pg.sinogram_shape, dtype=torch.float64, requires_grad=True)
    y = net(x)
    assert y.shape == (2, *fg.sinogram_shape)
    y.square().sum().backward()
    assert net.filter.response.grad is not None
    assert float(net.filter.response.grad.abs().max()) > 0
    assert x.grad is not None  # the input gradient flows through the fixed operators
    grads = {n for n, p in net.named_parameters() if p.grad is not None}
    assert grads == {"filter.response"}
    buffers_with_grad = [n for n, b in net.named_buffers() if b.requires_grad or b.grad is not None]
    assert buffers_with_grad == []
    assert torch.allclose(net(x[1].detach()), y[1].detach(), atol=1e-10)


def test_network_zero_init_and_state_dict_round_trip():
    pg, fg = net_geometries()
    net = ParallelToFanNet.from_geometries(GRID, pg, fg, filter_init="zeros")
    assert float(net(torch.ones(pg.sinogram_shape, dtype=torch.float64)).detach().abs().max()) == 0
    other = ParallelToFanNet.from_geometries(GRID, pg, fg)
    net.load_state_dict(other.state_dict())
    assert torch.equal(net.filter.response, other.filter.response)


def test_network_operator_errors():
    pg, fg = net_geometries()
    a_par = op.XRayTransform(GRID, pg)
    a_fan = op.XRayTransform(GRID, fg)
    other_grid = op.ImageGrid((48, 48), (1.0, 1.0))
    with pytest.raises(ValueError, match="same ImageGrid"):
        ParallelToFanNet(a_par, op.XRayTransform(other_grid, fg))
    with pytest.raises(TypeError, match="parallel_operator must have a ParallelGeometry"):
        ParallelToFanNet(a_fan, a_fan)
    with pytest.raises(TypeError, match="fan_operator must have a FanGeometry"):
        ParallelToFanNet(a_par, a_par)
    with pytest.raises(TypeError, match="XRayTransform"):
        ParallelToFanNet(pg, a_fan)
    with pytest.raises(ValueError, match="filter_init"):
        ParallelToFanNet(a_par, a_fan, filter_init="hann")
    with pytest.raises(ValueError, match="padded"):
        ParallelToFanNet(a_par, a_fan, padded=100)
    for bad in (512.7, "abc", True):  # 512.7 was silently cut to 512
        with pytest.raises(TypeError, match="padded must be an integer"):
            ParallelToFanNet(a_par, a_fan, padded=bad)
    net = ParallelToFanNet(a_par, a_fan)
    with pytest.raises(ValueError, match="detectors"):
        net(torch.zeros(120, 70))


def test_network_counts_every_line_once_on_arcs_between_half_and_full_turns():
    """The per-view weights were scaled by pi / arc, right only for whole half turns: on a
    1.25 pi arc the lines of the first quarter turn were counted twice as much as the rest
    (Shepp-Logan back-projection 0.384 from the truth instead of 0.253). With the redundancy
    weights every arc from a half turn up gives the half turn's image."""
    _, fg = net_geometries()
    phantom = op.shepp_logan(28.0, scale=0.02)
    images = {}
    for turns, views in ((1.0, 120), (1.25, 150), (1.5, 180), (2.0, 240)):
        pg = op.ParallelGeometry.limited_angle(turns * math.pi, views, 71, 1.25)
        net = ParallelToFanNet.from_geometries(GRID, pg, fg)
        with torch.no_grad():
            images[turns] = net.backproject(phantom.sinogram(pg))
    for turns in (1.25, 1.5, 2.0):
        assert rel(images[turns], images[1.0]) < 0.02, turns


def test_network_input_checks_and_half_precision():
    """An integer sinogram was filtered with its weights cast to integers (all zeros out)."""
    pg, fg = net_geometries()
    net = ParallelToFanNet.from_geometries(GRID, pg, fg)
    y = op.disk(20.0, 0.02).sinogram(pg).float()
    with pytest.raises(TypeError, match="p_par has integer"):
        net(y.long())
    with pytest.raises(ValueError, match=r"p_par must end in \(views, detectors\) = \(120, 71\)"):
        net(y[:-1])
    with torch.no_grad():
        full = net(y)
        for dtype in (torch.float16, torch.bfloat16):
            half = net(y.to(dtype))
            assert half.dtype == dtype
            assert rel(half.float(), full) < 0.01


def test_network_loads_checkpoints_with_the_former_view_weights():
    """Checkpoints from before the ray weights hold ``view_weights`` (V, 1): derived from the
    geometry, not learned, so they are skipped and the filter loads."""
    pg, fg = net_geometries()
    net = ParallelToFanNet.from_geometries(GRID, pg, fg, filter_init="ramp")
    state = dict(net.state_dict(), view_weights=torch.ones(pg.views, 1, dtype=torch.float64))
    other = ParallelToFanNet.from_geometries(GRID, pg, fg, filter_init="zeros")
    other.load_state_dict(state)
    assert torch.equal(other.filter.response, net.filter.response)
    assert "view_weights" not in net.state_dict() and "ray_weights" not in net.state_dict()
