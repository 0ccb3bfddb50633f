"""Noise models: statistics against theory, zero counts, reproducibility, batching, errors."""

import math

import pytest
import torch

from recon.data import GaussianNoise, PoissonNoise, gaussian_noise, make_noise, poisson_noise
from recon.data.noise import ZERO_COUNT


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("p", [0.2, 1.5, 3.0])
def test_poisson_log_data_mean_and_variance(p):
    """High counts: -log(N/N0) has mean ~ p and variance ~ exp(p) / N0 (delta method)."""
    n0 = 1e5
    y = torch.full((200, 500), p, dtype=torch.float64)
    noisy = poisson_noise(y, n0, _gen(1))
    var_theory = math.exp(p) / n0
    n = y.numel()
    # mean: within 5 standard errors (+ the O(1/N) bias of the log, exp(p)/(2 N0))
    assert abs(float(noisy.mean()) - p) < 5 * math.sqrt(var_theory / n) + math.exp(p) / n0
    assert float(noisy.var()) == pytest.approx(var_theory, rel=0.03)


def test_poisson_counts_are_integers_and_zero_rule():
    n0 = 50.0
    y = torch.tensor([[0.0, 1.0, 2.0, 60.0]], dtype=torch.float64).expand(1000, 4)
    noisy = poisson_noise(y, n0, _gen(2))
    counts = n0 * torch.exp(-noisy)
    low = counts[:, :3]
    is_int = (low - low.round()).abs() < 1e-6
    is_zero_rule = (low - 0.1).abs() < 1e-9  # a zero count, replaced
    assert torch.all(is_int | is_zero_rule)
    # exp(-60) * 50 ~ 0: every count is zero, replaced by 0.1 (LoDoPaB-CT rule)
    assert ZERO_COUNT == 0.1
    assert torch.allclose(noisy[:, 3], torch.full((1000,), math.log(n0 / 0.1), dtype=torch.float64))
    assert torch.isfinite(noisy).all()
    alt = poisson_noise(y, n0, _gen(2), zero_count=1.0)
    assert torch.allclose(alt[:, 3], torch.full((1000,), math.log(n0), dtype=torch.float64))


def test_poisson_reproducible_batched_dtype():
    y = torch.rand(2, 3, 10, 20) * 3
    a = poisson_noise(y, 1e3, _gen(5))
    b = poisson_noise(y, 1e3, _gen(5))
    c = poisson_noise(y, 1e3, _gen(6))
    assert a.shape == y.shape and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not a.requires_grad
    assert poisson_noise(y.double(), 1e3).dtype == torch.float64


def test_poisson_per_detector_photons():
    y = torch.zeros(4000, 3, dtype=torch.float64)
    n0 = torch.tensor([1e2, 1e4, 1e6])
    noisy = poisson_noise(y, n0, _gen(3))
    var = noisy.var(dim=0)
    assert torch.allclose(var, 1.0 / n0.double(), rtol=0.15)


@pytest.mark.parametrize("bad", [0, -10.0, float("nan"), float("inf"),
                                 torch.tensor([1.0, 0.0]), torch.tensor([-1.0])])
def test_poisson_non_positive_photons(bad):
    with pytest.raises(ValueError, match="photons"):
        poisson_noise(torch.ones(3, 4), bad)


def test_poisson_errors():
    with pytest.raises(TypeError, match="photons"):
        poisson_noise(torch.ones(3, 4), "many")
    with pytest.raises(ValueError, match="photons"):
        poisson_noise(torch.ones(3, 4), torch.ones(5) * 10)  # does not broadcast
    with pytest.raises(ValueError, match="photons"):
        poisson_noise(torch.ones(3, 4), torch.ones(2, 3, 4) * 10)  # would grow the sinogram
    with pytest.raises(ValueError, match="zero_count"):
        PoissonNoise(100.0, zero_count=5.0)
    with pytest.raises(ValueError, match="zero_count"):
        poisson_noise(torch.ones(3, 4), 10.0, zero_count=0.0)
    with pytest.raises(ValueError, match="sinogram"):
        poisson_noise(torch.ones(4), 10.0)
    with pytest.raises(TypeError, match="sinogram"):
        poisson_noise(torch.ones(3, 4, dtype=torch.int64), 10.0)
    with pytest.raises(ValueError, match="NaN"):
        poisson_noise(torch.full((3, 4), float("nan")), 10.0)
    with pytest.raises(TypeError, match="generator"):
        poisson_noise(torch.ones(3, 4), 10.0, generator=1)


def test_gaussian_std_relative_to_mean_abs_per_sample():
    clean = torch.stack([torch.full((100, 200), 2.0), -torch.rand(100, 200) * 0.5])
    clean = clean.double()
    noisy = gaussian_noise(clean, 0.05, _gen(4))
    expected = 0.05 * clean.abs().mean(dim=(-2, -1))
    std = (noisy - clean).std(dim=(-2, -1))
    assert torch.allclose(std, expected, rtol=0.02)
    assert abs(float((noisy - clean).mean(dim=(-2, -1))[0])) < 3 * 0.1 / math.sqrt(20000)
    assert torch.equal(gaussian_noise(clean, 0.0), clean)


def test_gaussian_reproducible_and_errors():
    y = torch.rand(3, 8, 9)
    assert torch.equal(gaussian_noise(y, 0.1, _gen(1)), gaussian_noise(y, 0.1, _gen(1)))
    assert not torch.equal(gaussian_noise(y, 0.1, _gen(1)), gaussian_noise(y, 0.1, _gen(2)))
    for bad, error in ((-0.1, ValueError), (float("nan"), ValueError), ("5%", TypeError)):
        with pytest.raises(error, match="relative"):
            gaussian_noise(y, bad)
    with pytest.raises(ValueError, match="relative"):
        GaussianNoise(-1.0)


def test_noise_models_and_spec():
    y = torch.rand(2, 5, 6) + 0.5
    assert make_noise(None) is None and make_noise("none") is None
    g = make_noise("gaussian:0.1")
    assert g == GaussianNoise(0.1) and make_noise("gaussian") == GaussianNoise(0.05)
    assert torch.equal(g(y, _gen(0)), gaussian_noise(y, 0.1, _gen(0)))
    p = make_noise("poisson:1e4")
    assert p == PoissonNoise(1e4)
    assert torch.equal(p(y, _gen(0)), poisson_noise(y, 1e4, _gen(0)))
    assert make_noise({"kind": "poisson", "photons": 100.0, "scale": 2.0}) == PoissonNoise(100.0, 2.0)
    scaled = PoissonNoise(1e4, scale=2.0)(y, _gen(0))
    assert torch.allclose(scaled, poisson_noise(2 * y, 1e4, _gen(0)) / 2)
    f = lambda s, g: s  # noqa: E731
    assert make_noise(f) is f
    for bad in ("speckle", "poisson", "gaussian:abc", {"kind": "salt"}):
        with pytest.raises(ValueError):
            make_noise(bad)
    with pytest.raises(ValueError, match="photons"):
        PoissonNoise(0.0)
    with pytest.raises(TypeError):
        make_noise(3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_noise_on_cuda():
    y = torch.rand(2, 6, 7, device="cuda") * 2
    # a CPU generator gives the same noise for CUDA data as for CPU data
    a = poisson_noise(y, 1e4, _gen(3))
    b = poisson_noise(y.cpu(), 1e4, _gen(3))
    assert a.device.type == "cuda" and torch.allclose(a.cpu(), b, atol=1e-6)
    g = torch.Generator(device="cuda").manual_seed(3)
    c = poisson_noise(y, 1e4, g)
    assert c.device.type == "cuda" and torch.isfinite(c).all()
    d = gaussian_noise(y, 0.05, torch.Generator(device="cuda").manual_seed(1))
    e = gaussian_noise(y, 0.05, torch.Generator(device="cuda").manual_seed(1))
    assert d.device.type == "cuda" and torch.equal(d, e)
    assert torch.allclose(gaussian_noise(y, 0.05, _gen(2)).cpu(),
                          gaussian_noise(y.cpu(), 0.05, _gen(2)), atol=1e-6)
