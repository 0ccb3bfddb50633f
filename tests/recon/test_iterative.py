"""Tests of recon.iterative: operator norm, SIRT, CGLS, TV-PDHG and their shared step code."""

import math

import pytest
import torch

import operators as ops
from recon.iterative import (cgls, divergence, gradient, operator_norm, pdhg_init, pdhg_step,
                             pdhg_setup, pdhg_step_sizes, power_method, project_dual_ball, sirt,
                             sirt_weights, tv_objective, tv_pdhg, tv_seminorm)


def _operator(n=24, views=40, dets=None, spacing=1.0):
    grid = ops.ImageGrid((n, n), (spacing, spacing))
    dets = dets or int(math.ceil(n * math.sqrt(2))) + 1
    geom = ops.ParallelGeometry.full_scan(views, dets, spacing)
    return ops.XRayTransform(grid, geom), grid, geom


def _dense(A, dtype=torch.float64):
    h, w = A.domain_shape
    eye = torch.eye(h * w, dtype=dtype).reshape(h * w, h, w)
    return A(eye).reshape(h * w, -1).T  # (rows, pixels)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def _phantom_image(grid, radius):
    return ops.shepp_logan(radius).rasterize(grid)


# ---------------------------------------------------------------------------------- norms ----
def test_operator_norm_matches_dense_svd():
    A, _, _ = _operator(n=12, views=8, dets=19)
    M = _dense(A)
    smax = float(torch.linalg.svdvals(M)[0])
    est = operator_norm(A, iterations=200)
    assert est == pytest.approx(smax, rel=1e-6)
    # from below, and reproducible with the default seed
    assert est <= smax * (1 + 1e-12)
    assert operator_norm(A, iterations=200) == est


def test_operator_norm_float32_and_generator():
    A, _, _ = _operator(n=12, views=8, dets=19)
    smax = float(torch.linalg.svdvals(_dense(A))[0])
    est = operator_norm(A, iterations=200, dtype=torch.float32,
                        generator=torch.Generator().manual_seed(3))
    assert est == pytest.approx(smax, rel=1e-4)


def test_pdhg_norm_of_stacked_operator_matches_dense():
    A, _, _ = _operator(n=10, views=6, dets=15)
    M = _dense(A)
    n = 10 * 10
    eye = torch.eye(n, dtype=torch.float64).reshape(n, 10, 10)
    G = gradient(eye).reshape(n, -1).T
    s = 7.5
    K = torch.cat([M, s * G], dim=0)
    tau, sigma, L = pdhg_step_sizes(A, grad_scale=s, iterations=300)
    assert L == pytest.approx(float(torch.linalg.svdvals(K)[0]), rel=1e-6)
    assert tau * sigma * L ** 2 < 1


def test_power_method_on_known_matrix():
    d = torch.tensor([1.0, 4.0, 9.0, 2.0], dtype=torch.float64)
    assert power_method(lambda v: d * v, torch.ones(4, dtype=torch.float64), 100) == \
        pytest.approx(9.0, rel=1e-10)
    with pytest.raises(ValueError, match="x0"):
        power_method(lambda v: v, torch.zeros(3), 5)


# ----------------------------------------------------------------------- gradient / TV -------
def test_divergence_is_negative_adjoint_of_gradient():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 9, generator=g, dtype=torch.float64)
    q = torch.randn(2, 3, 2, 7, 9, generator=g, dtype=torch.float64)
    lhs = (gradient(x) * q).sum()
    rhs = -(x * divergence(q)).sum()
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-12)


def test_gradient_of_ramp_and_tv_of_step():
    x = torch.arange(5.0).reshape(1, 5).expand(4, 5)  # increases along columns
    g = gradient(x)
    assert torch.all(g[0] == 0)
    assert torch.all(g[1, :, :-1] == 1) and torch.all(g[1, :, -1] == 0)
    step = torch.zeros(6, 6)
    step[:, 3:] = 2.0
    assert float(tv_seminorm(step)) == pytest.approx(6 * 2.0)


def test_project_dual_ball():
    q = torch.tensor([[[3.0, 0.1]], [[4.0, 0.0]]])  # (2, 1, 2): pixel vectors (3, 4) and (0.1, 0)
    p = project_dual_ball(q, 1.0)
    assert torch.allclose(p[:, 0, 0], torch.tensor([0.6, 0.8]))
    assert torch.allclose(p[:, 0, 1], torch.tensor([0.1, 0.0]))


# ------------------------------------------------------------------------------ CGLS ---------
@pytest.mark.parametrize("dtype,res_tol,img_tol", [(torch.float64, 1e-8, 1e-6),
                                                   (torch.float32, 1e-4, 1e-2)])
def test_cgls_converges_on_consistent_full_scan(dtype, res_tol, img_tol):
    # 256 unknowns, 960 rays (condition number of A ~ 270): CGLS reaches rounding in < 400 steps
    A, grid, _ = _operator(n=16, views=40)
    x_true = _phantom_image(grid, 7.0).to(dtype)
    y = A(x_true)
    x = cgls(A, y, 400, tol=1e-13 if dtype == torch.float64 else 1e-6)
    assert x.dtype == dtype and x.shape == (16, 16)
    assert _rel(A(x), y) < res_tol
    assert _rel(x, x_true) < img_tol


def test_cgls_tolerance_stops_early_and_residual_decreases():
    A, grid, _ = _operator(n=16, views=30)
    x_true = _phantom_image(grid, 7.0)
    y = A(x_true)
    seen, residuals = [], []

    def cb(k, x):
        seen.append(k)
        residuals.append(float((A(x) - y).norm()))

    cgls(A, y, 500, tol=1e-6, callback=cb)
    assert 1 < len(seen) < 500
    # CGLS minimises ||A x - y|| over growing Krylov spaces: monotone
    assert all(b <= a * (1 + 1e-10) for a, b in zip(residuals, residuals[1:]))


def test_cgls_with_x0_equal_to_solution_stays():
    A, grid, _ = _operator(n=12, views=20)
    x_true = _phantom_image(grid, 5.0)
    y = A(x_true)
    x = cgls(A, y, 10, x0=x_true)
    assert torch.allclose(x, x_true)


# ------------------------------------------------------------------------------ SIRT ---------
@pytest.mark.parametrize("nonneg", [False, True])
def test_sirt_residual_decreases_monotonically(nonneg):
    A, grid, geom = _operator(n=24, views=20)
    ph = ops.shepp_logan(11.0)
    gen = torch.Generator().manual_seed(1)
    y0 = ph.sinogram(geom)
    y = y0 + 0.05 * y0.abs().mean() * torch.randn(y0.shape, generator=gen, dtype=y0.dtype)
    R, _ = sirt_weights(A, y)
    weighted, plain = [], []

    def cb(k, x):
        r = A(x) - y
        weighted.append(float((R * r * r).sum()))
        plain.append(float((r * r).sum()))
        if nonneg:
            assert float(x.min()) >= 0.0

    sirt(A, y, 60, nonneg=nonneg, callback=cb)
    assert len(weighted) == 60
    assert all(b <= a * (1 + 1e-12) for a, b in zip(weighted, weighted[1:]))
    assert all(b <= a * (1 + 1e-9) for a, b in zip(plain, plain[1:]))
    assert plain[-1] < 0.05 * float((y * y).sum())


def test_sirt_converges_on_consistent_data():
    A, grid, _ = _operator(n=16, views=30)
    x_true = _phantom_image(grid, 7.0)
    y = A(x_true)
    x = sirt(A, y, 2000)
    assert _rel(A(x), y) < 1e-3
    assert _rel(x, x_true) < 0.05


def test_sirt_tolerance_and_early_stop_callback():
    A, grid, _ = _operator(n=16, views=20)
    y = A(_phantom_image(grid, 7.0))
    calls = []
    sirt(A, y, 100, callback=lambda k, x: calls.append(k) or k == 3)
    assert calls == [1, 2, 3]
    calls.clear()
    sirt(A, y, 5000, tol=1e-3, callback=lambda k, x: calls.append(k))
    assert 1 < len(calls) < 5000


# ------------------------------------------------------------------------------ TV -----------
def _noisy_sparse_problem(n=48, views=16, seed=0, dtype=torch.float64):
    A, grid, geom = _operator(n=n, views=views)
    ph = ops.shepp_logan(0.45 * n)
    x_true = ph.rasterize(grid).to(dtype)
    y0 = ph.sinogram(geom).to(dtype)  # analytic: no inverse crime
    gen = torch.Generator().manual_seed(seed)
    y = y0 + 0.05 * y0.abs().mean() * torch.randn(y0.shape, generator=gen, dtype=torch.float64
                                                  ).to(dtype)
    return A, grid, geom, x_true, y


def test_tv_beats_cgls_and_fbp_on_piecewise_constant_phantom():
    A, grid, geom, x_true, y = _noisy_sparse_problem()
    objective = []
    lam = 1.0
    x_tv = tv_pdhg(A, y, lam, 400,
                   callback=lambda k, x: objective.append(float(tv_objective(A, y, x, lam))))
    err_tv = _rel(x_tv, x_true)
    # CGLS at its best iteration (an oracle early stop, favouring CGLS)
    cg_errs = []
    cgls(A, y, 40, callback=lambda k, x: cg_errs.append(_rel(x, x_true)))
    assert err_tv < 0.8 * min(cg_errs)
    if hasattr(ops, "FBP"):
        err_fbp = _rel(ops.FBP(grid, geom)(y), x_true)
        assert err_tv < 0.7 * err_fbp
    # the objective decreases (PDHG is not monotone step by step: compare stages)
    stages = [objective[i] for i in (0, 24, 99, 199, 399)]
    assert all(b < a for a, b in zip(stages, stages[1:]))
    # and is close to its optimum: a longer run improves it by < 0.1 %
    longer = float(tv_objective(A, y, tv_pdhg(A, y, lam, 1500), lam))
    assert longer <= objective[-1] + 1e-9 * abs(longer)
    assert objective[-1] - longer < 1e-3 * longer
    assert float(x_tv.min()) >= 0.0


def test_tv_with_zero_lambda_is_nonneg_least_squares():
    A, grid, _ = _operator(n=16, views=30)
    x_true = _phantom_image(grid, 7.0)
    y = A(x_true)
    x = tv_pdhg(A, y, 0.0, 3000)
    assert _rel(x, x_true) < 0.02


def test_tv_tolerance_and_plain_gradient_scale():
    A, _, _, _, y = _noisy_sparse_problem(n=24, views=10)
    calls = []
    tv_pdhg(A, y, 0.5, 3000, tol=1e-4, callback=lambda k, x: calls.append(k))
    assert 1 < len(calls) < 3000
    x1 = tv_pdhg(A, y, 0.5, 2000, grad_scale=1.0)
    x2 = tv_pdhg(A, y, 0.5, 2000)
    assert _rel(x1, x2) < 0.02  # same problem, different dual scaling


def test_pdhg_step_can_be_driven_by_hand():
    A, _, _, _, y = _noisy_sparse_problem(n=24, views=10)
    s = 5.0
    tau, sigma, _ = pdhg_step_sizes(A, s)
    state = pdhg_init(torch.zeros(24, 24, dtype=y.dtype), y)
    for _ in range(20):
        state = pdhg_step(A, y, state, 0.5, tau, sigma, s)
    ref = tv_pdhg(A, y, 0.5, 20, grad_scale=s)
    assert torch.allclose(state.x, ref)
    # precomputed constants give the same result as the defaults
    s, tau, sigma = pdhg_setup(A)
    assert torch.equal(tv_pdhg(A, y, 0.5, 20, grad_scale=s, step_sizes=(tau, sigma)),
                       tv_pdhg(A, y, 0.5, 20))


# ---------------------------------------------------------------- batching and dtypes --------
SOLVERS = {
    "sirt": lambda A, y: sirt(A, y, 15, nonneg=True),
    "cgls": lambda A, y: cgls(A, y, 6),
    "tv": lambda A, y: tv_pdhg(A, y, 0.5, 40),
}


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_batched_equals_one_by_one(name):
    # CG in floating point amplifies rounding differences (different summation orders of the
    # batched and single runs) by up to ~10x per step on noisy data once it loses orthogonality,
    # in any CGLS implementation (checked against a dense textbook CGLS): 6 steps keep them small
    A, grid, geom = _operator(n=16, views=20)
    gen = torch.Generator().manual_seed(2)
    base = A(_phantom_image(grid, 7.0))
    y = base + 0.1 * torch.randn((2, 3) + base.shape, generator=gen, dtype=base.dtype)
    solve = SOLVERS[name]
    batched = solve(A, y)
    assert batched.shape == (2, 3, 16, 16)
    for i in range(2):
        for j in range(3):
            single = solve(A, y[i, j])
            assert _rel(batched[i, j], single) < 1e-9, (i, j)
    if name != "tv":  # positively homogeneous solvers (TV is not: lam is fixed)
        # each image has its own scalars: a batch of one image and its scaled copy
        pair = solve(A, torch.stack([y[0, 0], 100.0 * y[0, 0]]))
        assert _rel(pair[1], 100.0 * pair[0]) < 1e-9


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_float32_matches_float64(name):
    A, grid, geom = _operator(n=16, views=20)
    y64 = A(_phantom_image(grid, 7.0))
    x64 = SOLVERS[name](A, y64)
    x32 = SOLVERS[name](A, y64.float())
    assert x32.dtype == torch.float32 and x64.dtype == torch.float64
    assert _rel(x32.double(), x64) < 1e-4


# ------------------------------------------------------------------------------ errors -------
def test_clear_errors():
    A, grid, _ = _operator(n=12, views=8)
    y = torch.zeros(A.range_shape, dtype=torch.float64)
    with pytest.raises(ValueError, match="y must have shape"):
        sirt(A, torch.zeros(8, 5, dtype=torch.float64), 3)
    with pytest.raises(ValueError, match="iterations"):
        cgls(A, y, 0)
    with pytest.raises(TypeError, match="iterations"):
        cgls(A, y, 2.5)
    with pytest.raises(ValueError, match="lam"):
        tv_pdhg(A, y, -1.0, 3)
    with pytest.raises(ValueError, match="x0"):
        sirt(A, y, 3, x0=torch.zeros(5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="x0"):
        cgls(A, torch.zeros((2,) + A.range_shape, dtype=torch.float64), 3,
             x0=torch.zeros(3, 12, 12, dtype=torch.float64))
    with pytest.raises(ValueError, match="tol"):
        sirt(A, y, 3, tol=-1.0)
    with pytest.raises(TypeError, match="y must be float32 or float64"):
        cgls(A, y.long(), 3)
    with pytest.raises(ValueError, match="relaxation"):
        sirt(A, y, 3, relaxation=2.5)
    with pytest.raises(TypeError, match="domain_shape"):
        cgls(lambda x: x, y, 3)


def test_every_argument_is_named_in_its_error():
    A, grid, _ = _operator(n=12, views=8)
    y = A(_phantom_image(grid, 7.0))
    checks = [
        (TypeError, "tol must be a real number", lambda: sirt(A, y, 3, tol="a")),
        (TypeError, "relaxation must be a real number", lambda: sirt(A, y, 3, relaxation="a")),
        (TypeError, "lam must be a real number", lambda: tv_pdhg(A, y, "a", 3)),
        (TypeError, "lam must be a real number", lambda: tv_pdhg(A, y, None, 3)),
        (ValueError, "step_sizes must be a pair", lambda: tv_pdhg(A, y, 0.1, 3,
                                                                  step_sizes=(1.0,))),
        (ValueError, "norm_iterations must be a positive integer", lambda: tv_pdhg(A, y, 0.1, 3,
                                                                     norm_iterations=0)),
        (ValueError, "x0 contains NaN", lambda: sirt(A, y, 3, x0=torch.full((12, 12), math.nan,
                                                                         dtype=y.dtype))),
    ]
    for call in (lambda cb: sirt(A, y, 3, callback=cb), lambda cb: cgls(A, y, 3, callback=cb),
                 lambda cb: tv_pdhg(A, y, 0.1, 3, callback=cb)):
        checks.append((TypeError, "callback must be callable", lambda call=call: call(1)))
    for error, match, run in checks:
        with pytest.raises(error, match=match):
            run()
    # a one-element tensor is a number
    assert torch.equal(tv_pdhg(A, y, torch.tensor(0.1, dtype=torch.float64), 3),
                       tv_pdhg(A, y, 0.1, 3))


def test_diverging_step_sizes_are_named():
    """Steps beyond tau sigma ||K||^2 < 1 make the iterates blow up; the error names them
    instead of the operator's input."""
    A, grid, _ = _operator(n=12, views=8)
    y = A(_phantom_image(grid, 7.0))
    with pytest.raises(ValueError, match=r"diverged .* step_sizes \(10.0, 10.0\) must satisfy"):
        tv_pdhg(A, y, 0.1, 500, step_sizes=(10.0, 10.0))


def test_divergence_is_named_where_the_operator_does_not_check_its_input():
    """On a GPU (and with check_inputs=False) the operators do not look for NaN/Inf; tv_pdhg
    checks its result once instead."""
    A, grid, geom = _operator(n=12, views=8)
    unchecked = ops.XRayTransform(grid, geom, check_inputs=False)
    y = A(_phantom_image(grid, 7.0))
    with pytest.raises(ValueError, match=r"diverged \(the iterates are no longer finite\): "
                                         r"step_sizes \(10.0, 10.0\)"):
        tv_pdhg(unchecked, y, 0.1, 500, step_sizes=(10.0, 10.0))


def test_zero_data_gives_zero_image():
    A, _, _ = _operator(n=12, views=8)
    y = torch.zeros(A.range_shape, dtype=torch.float64)
    for x in (cgls(A, y, 5), sirt(A, y, 5), tv_pdhg(A, y, 1.0, 5)):
        assert torch.all(x == 0) and torch.isfinite(x).all()


# ------------------------------------------------------------------------------ CUDA ---------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_cuda_matches_cpu(name):
    A, grid, geom = _operator(n=16, views=20)
    y = A(_phantom_image(grid, 7.0)).float()
    x_cpu = SOLVERS[name](A, y)
    A_gpu = ops.XRayTransform(grid, geom).to("cuda")
    x_gpu = SOLVERS[name](A_gpu, y.cuda())
    assert x_gpu.device.type == "cuda" and x_gpu.dtype == torch.float32
    assert _rel(x_gpu.cpu().double(), x_cpu.double()) < 1e-3
    assert operator_norm(A_gpu) == pytest.approx(operator_norm(A), rel=1e-6)
