"""Metrics against hand-computed values and scikit-image, per image, masks and errors."""

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from recon.data import MU_WATER
from recon.metrics import mse, psnr, rmse, rmse_hu, ssim


def test_psnr_hand_computed():
    ref = torch.zeros(4, 4)
    x = torch.full((4, 4), 0.1)
    assert float(psnr(x, ref, 1.0)) == pytest.approx(20.0)      # 10 log10(1 / 0.01)
    assert float(psnr(x, ref, 2.0)) == pytest.approx(20.0 + 20 * math.log10(2))
    assert psnr(x, ref, 1.0).shape == ()
    assert math.isinf(float(psnr(ref, ref, 1.0)))


def test_psnr_matches_skimage_and_ref_range():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0.2, 0.9, (32, 32))
    x = ref + 0.05 * rng.standard_normal((32, 32))
    got = float(psnr(x, ref, 1.0))
    assert got == pytest.approx(peak_signal_noise_ratio(ref, x, data_range=1.0))
    by_ref = float(psnr(x, ref, "ref"))
    assert by_ref == pytest.approx(peak_signal_noise_ratio(ref, x, data_range=ref.max() - ref.min()))


def test_per_image_batch_shapes():
    ref = torch.zeros(2, 3, 8, 8)
    x = ref + torch.arange(1, 7, dtype=torch.float32).reshape(2, 3, 1, 1) * 0.1
    p = psnr(x, ref, 1.0)
    assert p.shape == (2, 3) and p.dtype == torch.float64
    expected = torch.tensor([[20.0, 20 - 20 * math.log10(2), 20 - 20 * math.log10(3)],
                             [20 - 20 * math.log10(4), 20 - 20 * math.log10(5),
                              20 - 20 * math.log10(6)]], dtype=torch.float64)
    assert torch.allclose(p, expected)
    assert rmse(x, ref).shape == (2, 3)
    assert torch.allclose(rmse(x, ref)[1, 2], torch.tensor(0.6, dtype=torch.float64))
    assert ssim(x, ref, 1.0).shape == (2, 3)
    # data range per image
    dr = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert torch.allclose(psnr(x, ref, dr), torch.full((2, 3), 20.0, dtype=torch.float64))


def test_rmse_and_mask_hand_computed():
    ref = torch.zeros(2, 2)
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert float(rmse(x, ref)) == pytest.approx(math.sqrt(25 / 4))
    assert float(mse(x, ref)) == pytest.approx(25 / 4)
    mask = torch.tensor([[True, True], [False, False]])
    assert float(rmse(x, ref, mask)) == pytest.approx(math.sqrt(12.5))
    assert math.isinf(float(psnr(x, ref, 1.0, mask=~mask)))  # no error inside the mask
    # a per-image mask in a batch
    xb = torch.stack([x, 2 * x])
    mb = torch.stack([mask, ~mask])
    assert torch.allclose(rmse(xb, torch.zeros(2, 2, 2), mb),
                          torch.tensor([math.sqrt(12.5), 0.0], dtype=torch.float64))


def test_rmse_hu():
    ref_mu = torch.full((4, 4), MU_WATER, dtype=torch.float64)
    x_mu = ref_mu * 1.01  # +10 HU
    assert float(rmse_hu(x_mu, ref_mu, unit="mu")) == pytest.approx(10.0)
    assert float(rmse_hu(torch.full((3, 3), 40.0), torch.zeros(3, 3))) == pytest.approx(40.0)
    with pytest.raises(ValueError, match="unit"):
        rmse_hu(x_mu, ref_mu, unit="kev")


def test_ssim_matches_skimage_and_mask():
    rng = np.random.default_rng(1)
    ref = rng.uniform(0, 1, (40, 40))
    x = np.clip(ref + 0.1 * rng.standard_normal((40, 40)), 0, 1)
    expected = structural_similarity(ref, x, data_range=1.0)
    assert float(ssim(torch.from_numpy(x), torch.from_numpy(ref), 1.0)) == pytest.approx(expected)
    assert float(ssim(x, ref, 1.0, mask=np.ones((40, 40), bool))) == pytest.approx(expected)
    assert float(ssim(ref, ref, 1.0)) == pytest.approx(1.0)
    gauss = structural_similarity(ref, x, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False)
    assert float(ssim(x, ref, 1.0, gaussian_weights=True, sigma=1.5,
                      use_sample_covariance=False)) == pytest.approx(gauss)
    # an all-true mask crops scikit-image's border for every Gaussian sigma (window 7/11/23)
    for sigma in (0.8, 1.5, 3.0):
        kw = dict(gaussian_weights=True, sigma=sigma, use_sample_covariance=False)
        unmasked = structural_similarity(ref, x, data_range=1.0, **kw)
        assert float(ssim(x, ref, 1.0, mask=np.ones((40, 40), bool), **kw)) == \
            pytest.approx(unmasked, abs=1e-12)
    assert float(ssim(x[:8, :8], ref[:8, :8], 1.0, gaussian_weights=True, sigma=0.5)) == \
        pytest.approx(structural_similarity(ref[:8, :8], x[:8, :8], data_range=1.0,
                                            gaussian_weights=True, sigma=0.5))
    # masked: mean of the SSIM map over the mask (outside the 3-pixel border)
    _, smap = structural_similarity(ref, x, data_range=1.0, full=True)
    mask = np.zeros((40, 40), bool)
    mask[10:20, 5:30] = True
    assert float(ssim(x, ref, 1.0, mask=mask)) == pytest.approx(smap[10:20, 5:30].mean())
    # x is damaged only inside the mask: masked SSIM drops, outside stays 1
    y = ref.copy()
    y[10:20, 5:30] = 0.5
    assert float(ssim(y, ref, 1.0, mask=mask)) < 0.5
    far = np.zeros((40, 40), bool)
    far[30:37, 30:37] = True
    assert float(ssim(y, ref, 1.0, mask=far)) == pytest.approx(1.0)


def test_metric_errors():
    a = torch.zeros(2, 8, 8)
    with pytest.raises(ValueError, match="same shape"):
        psnr(a, torch.zeros(2, 8, 9), 1.0)
    with pytest.raises(ValueError, match="same shape"):
        ssim(a, torch.zeros(8, 8), 1.0)
    with pytest.raises(ValueError, match="same shape"):
        rmse(a, torch.zeros(3, 8, 8))
    with pytest.raises(TypeError):
        psnr(a, a)  # data_range is required
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="data_range"):
            psnr(a, a, bad)
    with pytest.raises(ValueError, match="data_range"):
        psnr(a, a, "max")
    with pytest.raises(ValueError, match="non-constant"):
        psnr(a, a, "ref")
    with pytest.raises(ValueError, match="data_range"):
        psnr(a, a, torch.ones(3))
    with pytest.raises(ValueError, match="mask"):
        rmse(a, a, mask=torch.zeros(8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask"):
        rmse(a, a, mask=torch.ones(7, 8, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask"):
        rmse(a, a, mask=torch.ones(8, 8))
    with pytest.raises(ValueError, match="window"):
        ssim(torch.zeros(5, 5), torch.zeros(5, 5), 1.0)
    with pytest.raises(ValueError, match="shape"):
        rmse(torch.zeros(8), torch.zeros(8))
    with pytest.raises(TypeError):
        rmse([1.0], [1.0])
    with pytest.raises(TypeError, match="data_range"):
        ssim(a, a, 1.0, data_range=2.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metrics_accept_cuda_tensors():
    ref = torch.rand(3, 16, 16, device="cuda")
    x = ref + 0.1
    p = psnr(x, ref, 1.0)
    assert p.device.type == "cpu" and torch.allclose(p, torch.full((3,), 20.0, dtype=torch.float64))
    assert ssim(x, ref, 1.0).shape == (3,)
    assert rmse(x, ref, mask=torch.ones(16, 16, dtype=torch.bool, device="cuda")).shape == (3,)
