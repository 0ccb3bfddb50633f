"""Reference forward passes of LPD and VN written from their documented update equations."""
import pytest
import torch
import torch.nn.functional as F

import operators
from recon.nets import LearnedPrimalDual, VariationalNetwork

H, VIEWS, DETS = 16, 6, 23


@pytest.fixture(scope="module")
def setup():
    grid = operators.ImageGrid((H, H))
    geom = operators.ParallelGeometry.full_scan(VIEWS, DETS)
    A = operators.XRayTransform(grid, geom)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, H, H, generator=g)
    return A, A(x)


def test_lpd_forward_follows_adler_oktem_updates(setup):
    A, y = setup
    s = 2.0
    m = LearnedPrimalDual(A, n_iter=3, n_primal=3, n_dual=3, width=8, seed=0, image_scale=s)
    norm = float(m.operator_norm)
    with torch.no_grad():
        g = (y / (s * norm)).reshape(-1, 1, VIEWS, DETS)
        f = torch.zeros(2, 3, H, H)
        h = torch.zeros(2, 3, VIEWS, DETS)
        for i in range(3):
            af1 = A(f[:, 1]).unsqueeze(1) / norm                         # A f^(1)
            h = h + m.dual_nets[i](torch.cat([h, af1, g], 1))
            ath0 = A.T(h[:, 0]).unsqueeze(1) / norm                      # A^T h^(0)
            f = f + m.primal_nets[i](torch.cat([f, ath0], 1))
        want = f[:, 0] * s
        got = m(y)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_vn_forward_follows_the_gradient_step(setup):
    A, y = setup
    s = 2.0
    m = VariationalNetwork(A, init="zeros", stages=3, filters=4, kernel_size=5, seed=0,
                           image_scale=s)
    with torch.no_grad():               # non-trivial activations and steps
        for act in m.activations:
            act.weights.normal_(generator=torch.Generator().manual_seed(1))
        m.step_raw.copy_(torch.tensor([0.3, -0.5, 1.2]))
        m.kernels.add_(0.05)            # as after training: no longer zero-mean as stored
    norm = float(m.operator_norm)
    with torch.no_grad():
        yn = (y / (s * norm)).reshape(-1, 1, VIEWS, DETS)
        x = torch.zeros(2, 1, H, H)
        lam = torch.log1p(torch.exp(m.step_raw))                      # softplus
        for t in range(3):
            k = m.kernels[t] - m.kernels[t].mean(dim=(-2, -1), keepdim=True)   # zero-mean
            data = A.T((A(x[:, 0]) / norm - yn[:, 0])).unsqueeze(1) / norm
            z = F.conv2d(x, k, padding=2)
            reg = F.conv_transpose2d(m.activations[t](z), k, padding=2)
            x = x - lam[t] * data - reg
        want = x[:, 0] * s
        got = m(y)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_unet_post_processing_works_in_units_of_image_scale(setup):
    from recon.nets import UNet, UNetPostProcessing
    A, y = setup
    grid, geom = A.grid, A.geometry
    s = 4.0
    torch.manual_seed(0)
    unet = UNet(width=4, depth=2)
    with torch.no_grad():                     # a non-identity correction
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    m = UNetPostProcessing(operators.FBP(grid, geom), unet, image_scale=s).eval()
    with torch.no_grad():
        x0 = operators.FBP(grid, geom)(y)
        want = unet.eval()(x0.unsqueeze(1) / s).squeeze(1) * s
        got = m(y)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
