"""Contracts of the data layer that no other test pins down: lesions, noise, metrics' masks,
random ellipses, the learned filter's response (found by mutation testing)."""

import math

import numpy as np
import pytest
import torch

import operators as ops
from recon.data.chest import Lesion, chest_phantom, random_lesion
from recon.data.noise import gaussian_noise
from recon.metrics import mse, psnr, rmse, ssim


def _circle(center, r, n=360):
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return center[0] + r * np.cos(t), center[1] + r * np.sin(t)


@pytest.mark.parametrize("seed", range(20))
def test_random_lesion_keeps_the_margin_to_its_region(seed):
    c = chest_phantom()
    margin = 6.0
    les = random_lesion(c, np.random.default_rng(seed), diameter=(5.0, 8.0), margin=margin)
    lungs = [s.ellipse for s in c.structures if s.name == "lung"]
    x, y = _circle(les.center, les.radius + 0.99 * margin)
    assert any(bool(l.contains(x, y).all()) for l in lungs)


def test_with_lesion_drops_the_vessels_it_overlaps():
    c = chest_phantom()
    vessel = [s.ellipse for s in c.structures if s.name == "vessel"][0]
    lesion = Lesion(center=vessel.center, diameter=2 * max(vessel.axes) + 4.0, contrast=850.0)
    cl = c.with_lesion(lesion)
    for s in cl.structures:
        if s.name == "vessel":
            d = math.hypot(s.ellipse.center[0] - lesion.center[0],
                           s.ellipse.center[1] - lesion.center[1])
            assert d > lesion.radius + max(s.ellipse.axes) - 1e-9
    # the lesion is uniform: lung (-850) + 850 = 0 HU at its centre, not vessel + 850
    assert cl.hu_at(*lesion.center) == pytest.approx(0.0, abs=1e-6)


def test_gaussian_std_uses_mean_absolute_value_for_signed_data():
    # A signed sinogram (e.g. of a difference image): mean(|p|) = 2, mean(p) = 0.
    y = torch.full((64, 256), 2.0, dtype=torch.float64)
    y[:, 128:] = -2.0
    g = torch.Generator().manual_seed(0)
    noise = gaussian_noise(y, 0.05, g) - y
    assert abs(float(noise.std()) - 0.1) < 0.005


@pytest.mark.parametrize("fn", [mse, rmse, lambda x, r, mask: psnr(x, r, 1.0, mask=mask),
                                lambda x, r, mask: ssim(x, r, 1.0, mask=mask)])
def test_a_batch_mask_empty_for_one_image_raises(fn):
    # module docstring: "an image whose mask is empty raises ValueError" -- per image, not
    # only when the whole batch mask is empty.
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 16, 16, generator=g, dtype=torch.float64)
    ref = torch.rand(2, 16, 16, generator=g, dtype=torch.float64)
    mask = torch.zeros(2, 16, 16, dtype=torch.bool)
    mask[0, 4:12, 4:12] = True          # image 1 has an empty mask
    with pytest.raises(ValueError, match="mask"):
        fn(x, ref, mask=mask)


def test_poisson_per_detector_photons_keep_the_mean():
    # bow-tie photons: each detector's log data must have mean p (here 0), not be offset by
    # log(N0_j / mean N0)
    from recon.data.noise import poisson_noise
    y = torch.zeros(4000, 3, dtype=torch.float64)
    n0 = torch.tensor([1e3, 1e4, 1e6])
    noisy = poisson_noise(y, n0, torch.Generator().manual_seed(3))
    assert noisy.mean(dim=0).abs().max() < 0.01


def test_random_ellipses_have_random_orientations():
    from recon.data.ellipses import random_ellipses
    rots = []
    for seed in range(10):
        ph = random_ellipses(np.random.default_rng(seed), 1.0)
        rots += [e.rotation % math.pi for e in ph.ellipses if abs(e.axes[0] - e.axes[1]) > 1e-9]
    rots = np.asarray(rots)
    assert rots.size > 50
    # uniform on [0, pi): std pi / sqrt(12) ~ 0.91
    assert 0.7 < rots.std() < 1.1


def test_kernel_response_hand_computed():
    from recon.nets.learned_filter import kernel_response
    # H(nu) = h0 + 2 sum_k h_k cos(2 pi nu k)
    h = kernel_response([1.0, 0.5, -0.25], [0.0, 0.25, 0.5])
    np.testing.assert_allclose(h, [1.0 + 1.0 - 0.5, 1.0 + 0.0 + 0.5, 1.0 - 1.0 - 0.5], atol=1e-12)


def test_learned_filter_initial_response_is_the_naive_ramp():
    from operators.fbp import naive_ramp_response
    from recon.nets import LearnedFilterFBP
    grid = ops.ImageGrid((16, 16))
    geom = ops.ParallelGeometry.full_scan(8, 23, 1.0)
    m = LearnedFilterFBP(grid, geom, init="naive-ramp")
    start = torch.as_tensor(naive_ramp_response(m.length), dtype=m.initial_response.dtype)
    torch.testing.assert_close(m.initial_response, start)
    torch.testing.assert_close(m.fbp.filter.response.detach(), m.initial_response)
