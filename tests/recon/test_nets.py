"""Tests of the learned reconstruction models (recon.nets): U-Net, VN, LPD. Tiny, CPU, float32."""

import copy
import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import operators
from recon.nets import (LearnedPrimalDual, RBFActivation, UNet, UNetPostProcessing,
                        VariationalNetwork)
from recon.nets.common import OperatorModel
from recon.nets.variational import rbf_activation, rbf_activation_table, rbf_tables

H = 16
VIEWS = 6
DETS = 23


@pytest.fixture(scope="module")
def setup():
    grid = operators.ImageGrid((H, H))
    geom = operators.ParallelGeometry.full_scan(VIEWS, DETS)
    A = operators.XRayTransform(grid, geom)
    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, H), indexing="ij")
    disk = ((xx ** 2 + yy ** 2) < 0.5).float()
    x = torch.stack([disk * (0.5 + 0.5 * torch.rand((), generator=gen)) for _ in range(3)])
    x[1, 4:8, 5:9] += 0.7
    y = A(x)
    return grid, geom, A, x, y


def build(name, grid, geom, A):
    torch.manual_seed(0)
    if name == "unet":
        return UNetPostProcessing(operators.FBP(grid, geom), UNet(width=4, depth=2))
    if name == "vn":
        return VariationalNetwork(A, stages=2, filters=4, kernel_size=5, seed=0)
    if name == "lpd":
        return LearnedPrimalDual(A, n_iter=2, n_primal=3, n_dual=3, width=8, seed=0)
    if name == "lpd-fbp":
        return LearnedPrimalDual(A, n_iter=2, n_primal=3, n_dual=3, width=8, init="fbp", seed=0)
    if name == "lpd-fbp-zero":
        return LearnedPrimalDual(A, n_iter=2, n_primal=3, n_dual=3, width=8, init="fbp",
                                 update_init="zero", seed=0)
    raise KeyError(name)


MODELS = ["unet", "vn", "lpd", "lpd-fbp", "lpd-fbp-zero"]


def operator_snapshot(A):
    return {k: v.clone() for k, v in A._buffers.items() if v is not None}


@pytest.mark.parametrize("name", MODELS)
def test_shapes_batch(setup, name):
    grid, geom, A, x, y = setup
    model = build(name, grid, geom, A).eval()
    out = model(y)
    assert out.shape == (3, H, H) and out.dtype == torch.float32
    # extra batch dimensions and a single sinogram
    assert model(y.reshape(3, 1, VIEWS, DETS)).shape == (3, 1, H, H)
    single = model(y[1])
    assert single.shape == (H, H)
    torch.testing.assert_close(single, out[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_operator_not_trained(setup, name):
    grid, geom, A, x, y = setup
    model = build(name, grid, geom, A)
    before = operator_snapshot(A)
    n_learned = 0
    for p in model.parameters():
        assert not any(p is b for b in A.buffers())
    out = model(y)
    ((out - x) ** 2).mean().backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            n_learned += 1
            assert p.grad is not None, pname
        else:  # frozen FBP layers of the U-Net / init: no gradient
            assert p.grad is None and pname.split(".")[0] in ("fbp", "init"), pname
    assert n_learned > 0
    assert list(A.parameters()) == []
    assert all(b.grad is None for b in A.buffers())
    # the operator's tables are in neither parameters nor the model's state_dict
    keys = set(model.state_dict())
    assert not any(k.endswith("ray_table") for k in keys)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    opt.step()
    after = operator_snapshot(A)
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k


@pytest.mark.parametrize("name", MODELS)
def test_training_step_lowers_loss(setup, name):
    grid, geom, A, x, y = setup
    model = build(name, grid, geom, A)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3)
    model.train()
    losses = []
    for _ in range(4):
        opt.zero_grad()
        loss = ((model(y) - x) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        final = ((model(y) - x) ** 2).mean().item()
    if name == "unet":  # batch-norm statistics change between train and eval mode
        assert losses[-1] < losses[0]
    else:
        assert final < losses[0]


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_round_trip(setup, name):
    grid, geom, A, x, y = setup
    model = build(name, grid, geom, A)
    with torch.no_grad():  # move away from the initialisation
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    model.eval()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    torch.manual_seed(123)
    other = build(name, grid, geom, A)
    with torch.no_grad():
        for p in other.parameters():
            if p.requires_grad:
                p.add_(1.0)
    other.load_state_dict(state)
    other.eval()
    with torch.no_grad():
        assert torch.equal(model(y), other(y))


def test_operator_norm_stored_and_checked(setup):
    grid, geom, A, x, y = setup
    lpd = build("lpd", grid, geom, A)
    s = torch.linalg.svdvals(torch.stack([A(e.reshape(H, H)).flatten()
                                          for e in torch.eye(H * H, dtype=torch.float64)], 1))
    assert float(lpd.operator_norm) == pytest.approx(float(s[0]), rel=1e-4)
    state = lpd.state_dict()
    state["operator_norm"] = state["operator_norm"] * 2
    with pytest.warns(UserWarning, match="operator norm"):
        lpd.load_state_dict(state)
    assert float(lpd.operator_norm) == pytest.approx(2 * float(s[0]), rel=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_a_checkpoint_for_another_scan_is_refused_by_name(setup, name):
    """Same layer shapes, other detector spacing: the weights were learned for other data.
    A state_dict without signatures (written before them) loads as it did."""
    grid, geom, A, x, y = setup
    state = build(name, grid, geom, A).state_dict()
    other_geom = operators.ParallelGeometry.full_scan(VIEWS, DETS, 1.25)
    other = build(name, grid, other_geom, operators.XRayTransform(grid, other_geom))
    with pytest.raises(operators.SignatureMismatchError,
                       match="detector_spacing: checkpoint 1, here 1.25"):
        other.load_state_dict(state)
    legacy = {k: v for k, v in state.items() if not k.endswith("scan_signature")}
    assert len(legacy) < len(state)
    build(name, grid, geom, A).load_state_dict(legacy)


@pytest.mark.parametrize("name", MODELS)
def test_a_cast_model_loads_checkpoints_of_its_scan(setup, name):
    """Casting a model (``.float()``, ``.half()``) rounds its signature buffer; the checkpoint
    of the same scan must still load (it was refused: grid_spacing 0.661468 vs 0.661468029),
    and so must the checkpoint of a cast model into a float32 one."""
    _, _, A, _, _ = setup
    grid = operators.ImageGrid(shape=A.grid.shape, spacing=0.661468029)
    geom = operators.ParallelGeometry.full_scan(VIEWS, DETS, 0.7071)
    A = operators.XRayTransform(grid, geom)
    state = build(name, grid, geom, A).state_dict()
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        cast = build(name, grid, geom, A).to(dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nor a warning that ||A|| differs (rounded to half)
            cast.load_state_dict(state)
            build(name, grid, geom, A).load_state_dict(cast.state_dict())
        if name != "unet":  # the scan's constants keep float64 (OperatorModel)
            assert cast.operator_norm.dtype == cast.scan_signature.dtype == torch.float64


@pytest.mark.parametrize("name", MODELS)
def test_a_checkpoint_for_other_views_with_the_same_summary_is_refused(setup, name):
    """Two view subsets with the same count, ends and mean angle (the signature's summary
    before ``angle_fingerprint``): the weights were learned for other views."""
    grid, _, _, _, _ = setup
    full = operators.ParallelGeometry.full_scan(9, DETS, 1.0)
    geom_a, geom_b = full[[0, 2, 4, 6, 8]], full[[0, 1, 4, 7, 8]]
    assert np.mean(geom_a.angle_array()) == pytest.approx(np.mean(geom_b.angle_array()))
    model_a = build(name, grid, geom_a, operators.XRayTransform(grid, geom_a))
    model_b = build(name, grid, geom_b, operators.XRayTransform(grid, geom_b))
    with pytest.raises(operators.SignatureMismatchError, match="angle_fingerprint"):
        model_b.load_state_dict(model_a.state_dict())


@pytest.mark.parametrize("regularizer_init", [0.5, 0.2])
def test_untrained_vn_stages_are_stable_smoothing_steps(setup, regularizer_init):
    """The linearised regulariser phi'(0) sum K^T K starts with the requested norm (below 1),
    so no stage amplifies detail; with the former fixed slope 0.1 it was about 4."""
    grid, geom, A, x, y = setup
    vn = VariationalNetwork(A, stages=2, filters=24, kernel_size=7, seed=1,
                            regularizer_init=regularizer_init).double()
    gen = torch.Generator().manual_seed(0)
    for t in range(vn.stages):
        v = torch.randn(1, 1, 64, 64, generator=gen, dtype=torch.float64)  # any image size
        with torch.no_grad():
            for _ in range(50):  # power method at a small amplitude, where phi is linear
                v = 1e-3 * v / v.norm()
                r = vn.regularizer_gradient(v, t)
                norm, v = float(r.norm() / v.norm()), r
        assert norm == pytest.approx(regularizer_init, rel=0.06)
        assert norm <= regularizer_init * 1.06
        assert 0.1 * float(vn.filter_bank_norm(t)) > 2.0  # the former slope: not a descent step
        checker = 1e-3 * (-1.0) ** (torch.arange(64)[:, None] + torch.arange(64)[None, :])
        checker = checker.reshape(1, 1, 64, 64).double()
        with torch.no_grad():
            assert float((checker - vn.regularizer_gradient(checker, t)).norm()) < \
                float(checker.norm())
    for bad, error in ((0.0, ValueError), (1.0, ValueError), (-0.5, ValueError),
                       ("0.5", TypeError)):
        with pytest.raises(error, match="regularizer_init"):
            VariationalNetwork(A, stages=1, filters=2, regularizer_init=bad)


def test_dtype_cast_leaves_operator_tables(setup):
    grid, geom, A, x, y = setup
    model = build("lpd", grid, geom, A)
    dtypes = {k: v.dtype for k, v in A._buffers.items()}
    model.double()
    assert {k: v.dtype for k, v in A._buffers.items()} == dtypes
    assert model(y.double()).dtype == torch.float64


@pytest.mark.parametrize("name", MODELS)
def test_deepcopy_is_independent_of_the_original(setup, name):
    """A copy computes the same, learns apart, and can be cast or moved without touching the
    original: copies used to share the operator and the frozen FBP, so ``copy.deepcopy(m)
    .double()`` turned the original's FBP to float64 (which then refused float32 data) and
    moving a copy moved the original's operator."""
    grid, geom, A, x, y = setup
    model = build(name, grid, geom, A).eval()
    model(y)  # builds the operator's caches
    clone = copy.deepcopy(model)
    with torch.no_grad():
        assert torch.equal(model(y), clone(y))
        [p for p in clone.parameters() if p.requires_grad][-1].add_(1.0)
        assert not torch.equal(model(y), clone(y))
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    clone.double()
    assert {n: p.dtype for n, p in model.named_parameters()} == dtypes
    assert model(y).dtype == torch.float32 and clone(y.double()).dtype == torch.float64
    clone.to("meta")  # a device move, without a GPU
    assert A.device == torch.device("cpu") and model(y).device == torch.device("cpu")
    if name != "unet":
        assert model.operator is A and clone.operator is not A


def test_rbf_activation_gradcheck():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(3, 7, dtype=torch.float64, generator=gen, requires_grad=True)
    c = torch.linspace(-1, 1, 7, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z, w: rbf_activation(z, w, c, 1 / 3), (z, w))
    # agrees with the naive broadcast formula
    naive = (w[None, :, None, None, :] * torch.exp(
        -(z[..., None] - c) ** 2 / (2 / 9))).sum(-1)
    torch.testing.assert_close(rbf_activation(z, w, c, 1 / 3), naive)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rbf_table_matches_exact(dtype):
    gen = torch.Generator().manual_seed(1)
    c = torch.linspace(-1, 1, 31, dtype=torch.float64)
    sigma = 2 / 30
    z = (1.6 * torch.randn(2, 3, 9, 7, generator=gen, dtype=torch.float64)).to(dtype)
    w = torch.randn(3, 31, generator=gen, dtype=torch.float64).to(dtype)
    zr, wr = z.clone().requires_grad_(), w.clone().requires_grad_()
    zt, wt = z.clone().requires_grad_(), w.clone().requires_grad_()
    ref = rbf_activation(zr, wr, c, sigma)
    fast = rbf_activation_table(zt, wt, *rbf_tables(c, sigma))
    scale = float(w.abs().max())
    assert float((ref - fast).detach().abs().max()) < 2e-4 * scale
    g = torch.randn(ref.shape, generator=gen, dtype=torch.float64).to(dtype)
    (ref * g).sum().backward()
    (fast * g).sum().backward()
    torch.testing.assert_close(zt.grad, zr.grad, rtol=0, atol=1e-3 * scale / sigma)
    torch.testing.assert_close(wt.grad, wr.grad, rtol=1e-3, atol=1e-3)


def test_rbf_initialised_linear():
    act = RBFActivation(2, count=31, value_range=1.0, init_slope=0.1)
    t = torch.linspace(-0.8, 0.8, 50)
    out = act(t.reshape(1, 1, -1).expand(1, 2, -1))
    torch.testing.assert_close(out[0, 0], 0.1 * t, atol=2e-3, rtol=0)


def test_vn_regularizer_is_adjoint_pair(setup):
    grid, geom, A, x, y = setup
    vn = build("vn", grid, geom, A)
    k = vn.kernel(0)
    assert torch.allclose(k.mean(dim=(-2, -1)), torch.zeros(()), atol=1e-6)  # zero-mean
    u = torch.randn(2, 1, H, H)
    v = torch.randn(2, 4, H, H)
    ku = torch.nn.functional.conv2d(u, k, padding=2)
    ktv = torch.nn.functional.conv_transpose2d(v, k, padding=2)
    torch.testing.assert_close((ku * v).sum(), (u * ktv).sum(), rtol=1e-4, atol=1e-4)


def test_unet_odd_sizes_and_identity_init():
    unet = UNet(width=4, depth=3).eval()
    x = torch.randn(2, 1, 13, 10)
    with torch.no_grad():
        torch.testing.assert_close(unet(x), x)  # zero-initialised head: identity
    assert UNet(width=4, depth=2, residual=False)(x).shape == (2, 1, 13, 10)


def test_bad_inputs(setup):
    grid, geom, A, x, y = setup
    with pytest.raises(TypeError, match="operator"):
        LearnedPrimalDual("not an operator")
    with pytest.raises(ValueError, match="n_iter"):
        LearnedPrimalDual(A, n_iter=0)
    with pytest.raises(ValueError, match="kernel_size"):
        VariationalNetwork(A, kernel_size=4)
    with pytest.raises(ValueError, match="image_scale"):
        VariationalNetwork(A, image_scale=-1.0)
    with pytest.raises(ValueError, match="residual"):
        UNet(in_channels=2, out_channels=1)
    lpd = build("lpd", grid, geom, A)
    with pytest.raises(ValueError, match="y must have shape"):
        lpd(torch.zeros(2, VIEWS + 1, DETS))
    with pytest.raises(TypeError, match="y must be"):
        lpd(y.numpy())
    with pytest.raises(ValueError, match="x must be a tensor"):
        UNet(width=4, depth=1)(torch.zeros(1, 2, 8, 8))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(step_init=0), ValueError, "step_init"),
    (dict(step_init=float("nan")), ValueError, "step_init"),
    (dict(rbf_range=float("inf")), ValueError, "rbf_range"),
    (dict(rbf_range="1"), TypeError, "rbf_range"),
    (dict(rbf_count=2.5), TypeError, "rbf_count"), (dict(rbf_count=1), ValueError, "rbf_count"),
    (dict(seed="a"), TypeError, "seed"), (dict(kernel_size=True), TypeError, "kernel_size"),
])
def test_vn_arguments_are_checked_by_name(setup, kwargs, error, match):
    """A value of the wrong kind is a TypeError, one out of range a ValueError (as in the
    geometries, the solvers and TrainConfig: ``operators._checks``)."""
    _, _, A, _, _ = setup
    with pytest.raises(error, match=match):
        VariationalNetwork(A, stages=1, filters=2, **kwargs)


def test_vn_large_initial_step_is_kept():
    """softplus^-1 is computed stably: step_init 1000 used to overflow in expm1."""
    A = operators.XRayTransform(operators.ImageGrid((8, 8)),
                                operators.ParallelGeometry.full_scan(6, 12))
    for step in (1e-6, 1.0, 1000.0):
        vn = VariationalNetwork(A, stages=1, filters=2, step_init=step)
        assert float(vn.steps()[0]) == pytest.approx(step, rel=1e-6)


def test_other_nets_check_their_integer_arguments(setup):
    _, _, A, _, _ = setup
    with pytest.raises(TypeError, match="n_iter must be an integer, got bool"):
        LearnedPrimalDual(A, n_iter=True)
    with pytest.raises(ValueError, match="n_iter must be a positive integer, got 0"):
        LearnedPrimalDual(A, n_iter=0)
    with pytest.raises(TypeError, match="seed must be an integer or None, got str"):
        LearnedPrimalDual(A, seed="a")
    with pytest.raises(TypeError, match="depth must be an integer, got float"):
        UNet(depth=1.5)
    with pytest.raises(ValueError, match="depth must be an integer >= 0, got -1"):
        UNet(depth=-1)


@pytest.mark.parametrize("name", ["unet", "lpd"])
def test_a_sinogram_of_another_dtype_is_named(setup, name):
    """Convolutions do not promote dtypes: the mismatch is reported up front; a model cast to
    float64 takes float64 sinograms, and autocast takes float32 into a float32 model."""
    grid, geom, A, x, y = setup
    model = build(name, grid, geom, A)
    for dtype in (torch.float64, torch.float16):
        with pytest.raises(TypeError, match=f"y has dtype {dtype} but the parameters"):
            model(y.to(dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(y).shape == x.shape
    assert model.double()(y.double()).dtype == torch.float64
    with pytest.raises(TypeError, match="x must be floating point"):
        UNet(width=4, depth=1)(torch.zeros(1, 1, 8, 8, dtype=torch.int64))


def test_lpd_zero_updates_start_at_fbp(setup):
    grid, geom, A, x, y = setup
    lpd = build("lpd-fbp-zero", grid, geom, A).eval()
    with torch.no_grad():
        torch.testing.assert_close(lpd(y), operators.FBP(grid, geom)(y))


def test_models_are_operator_models(setup):
    grid, geom, A, x, y = setup
    assert isinstance(build("vn", grid, geom, A), OperatorModel)
    assert build("lpd", grid, geom, A).operator is A


@pytest.mark.parametrize("name", MODELS + ["trainable-fbp", "learned-filter", "rebinning"])
def test_models_compile_into_one_graph(setup, name):
    """torch.compile(fullgraph=True): no graph break anywhere in a model (the operators are
    opaque custom ops); the compiled model gives the eager output and parameter gradients."""
    from operators._custom_ops import HAVE_CUSTOM_OPS
    from recon.nets import LearnedFilterFBP, ParallelToFanNet, TrainableFBP

    if not HAVE_CUSTOM_OPS:
        pytest.skip("custom ops need torch >= 2.4")
    grid, geom, A, x, y = setup
    torch.manual_seed(0)
    if name == "trainable-fbp":
        model = TrainableFBP(grid, geom)
    elif name == "learned-filter":
        model = LearnedFilterFBP(grid, geom)
    elif name == "rebinning":
        fan = operators.FanGeometry.full_scan(views=8, detector_count=31, detector_spacing=2.0,
                                              source_to_isocenter=40.0, source_to_detector=80.0)
        model = ParallelToFanNet(A, operators.XRayTransform(grid, fan))
    else:
        model = build(name, grid, geom, A)
    compiled = torch.compile(copy.deepcopy(model), fullgraph=True, backend="aot_eager")
    outs, grads = [], []
    for m in (model, compiled):
        m.zero_grad()
        out = m(y)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append([p.grad for p in m.parameters() if p.requires_grad])
    assert torch.allclose(outs[1], outs[0], rtol=1e-5, atol=1e-6 * outs[0].abs().max())
    for g_c, g_e in zip(grads[1], grads[0]):
        assert torch.allclose(g_c, g_e, rtol=1e-4, atol=1e-5 * g_e.abs().max())


# Reference forward passes written from the documented update equations.
def test_lpd_forward_follows_adler_oktem_updates(setup):
    grid, geom, A, x, y = setup
    s = 2.0
    m = LearnedPrimalDual(A, n_iter=3, n_primal=3, n_dual=3, width=8, seed=0, image_scale=s)
    norm = float(m.operator_norm)
    with torch.no_grad():
        g = (y / (s * norm)).reshape(-1, 1, VIEWS, DETS)
        f = torch.zeros(y.shape[0], 3, H, H)
        h = torch.zeros(y.shape[0], 3, VIEWS, DETS)
        for i in range(3):
            af1 = A(f[:, 1]).unsqueeze(1) / norm                         # A f^(1)
            h = h + m.dual_nets[i](torch.cat([h, af1, g], 1))
            ath0 = A.T(h[:, 0]).unsqueeze(1) / norm                      # A^T h^(0)
            f = f + m.primal_nets[i](torch.cat([f, ath0], 1))
        want = f[:, 0] * s
        got = m(y)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_vn_forward_follows_the_gradient_step(setup):
    grid, geom, A, x, y = setup
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
        x = torch.zeros(y.shape[0], 1, H, H)
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
    grid, geom, A, x, y = setup
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
