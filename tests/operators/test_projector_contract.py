"""The operator contract over every configuration of the registry (STYLE.md 6-7)."""

import io
import re
import warnings
from dataclasses import replace

import pytest
import torch

from operators import (FanGeometry, ImageGrid, ParallelGeometry, SignatureMismatchError,
                       XRayTransform)

from .registry import OPERATOR_IDS, build

warnings.filterwarnings("ignore", message="the scan covers")


def make(op_id, **kw):
    grid, geom, backend = build(op_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return XRayTransform(grid, geom, backend=backend, **kw)


def rand(shape, dtype=torch.float64, seed=0):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("op_id", OPERATOR_IDS)
def test_adjoint_float64_exact(op_id):
    a = make(op_id)
    x = rand((3, *a.domain_shape), seed=1)
    y = rand((3, *a.range_shape), seed=2)
    lhs = (a(x) * y).sum()
    rhs = (x * a.T(y)).sum()
    assert abs(float(lhs - rhs)) / abs(float(lhs)) < 1e-10


@pytest.mark.parametrize("op_id", OPERATOR_IDS)
def test_adjoint_float32_to_rounding(op_id):
    a = make(op_id)
    x = rand((2, *a.domain_shape), torch.float32, 1)
    y = rand((2, *a.range_shape), torch.float32, 2)
    lhs = (a(x).double() * y.double()).sum()
    rhs = (x.double() * a.T(y).double()).sum()
    assert abs(float(lhs - rhs)) / abs(float(lhs)) < 1e-5


@pytest.mark.parametrize("op_id", OPERATOR_IDS)
def test_linearity_and_batching(op_id):
    a = make(op_id)
    x1 = rand((2, 1, *a.domain_shape), seed=3)
    x2 = rand((2, 1, *a.domain_shape), seed=4)
    assert torch.allclose(a(2.5 * x1 - x2), 2.5 * a(x1) - a(x2), atol=1e-12)
    y = a(x1)
    assert y.shape == (2, 1, *a.range_shape)
    for i in range(2):  # batched equals one by one
        assert torch.allclose(y[i, 0], a(x1[i, 0]), atol=1e-12)


@pytest.mark.parametrize("op_id", [i for i in OPERATOR_IDS if i.endswith("odd-sparse")]
                         + ["fan-curved-even-torch"])
def test_gradcheck_and_double_backward(op_id):
    a = make(op_id)
    x = rand((1, *a.domain_shape), seed=5).requires_grad_()
    y = rand((1, *a.range_shape), seed=6).requires_grad_()
    assert torch.autograd.gradcheck(a, (x,), eps=1e-6, atol=1e-7)
    assert torch.autograd.gradcheck(a.T, (y,), eps=1e-6, atol=1e-7)
    assert torch.autograd.gradgradcheck(lambda t: a(t) ** 2, (x,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("op_id", ["parallel-offset-even-sparse", "fan-flat-odd-torch"])
def test_autograd_equals_explicit_adjoint(op_id):
    a = make(op_id)
    x = rand((2, *a.domain_shape), seed=7).requires_grad_()
    y = rand((2, *a.range_shape), seed=8)
    (g,) = torch.autograd.grad((a(x) * y).sum(), x)
    assert torch.allclose(g, a.T(y), atol=1e-12)
    ys = y.clone().requires_grad_()
    xs = rand((2, *a.domain_shape), seed=9)
    (g2,) = torch.autograd.grad((a.T(ys) * xs).sum(), ys)
    assert torch.allclose(g2, a(xs), atol=1e-12)


def test_gradient_of_data_term_through_a_gradient_step():
    """Unrolled networks differentiate through x - t A^T(Ax - y): second derivatives work."""
    a = make("fan-flat-even-sparse")
    y = rand((1, *a.range_shape), seed=10)
    x = rand((1, *a.domain_shape), seed=11).requires_grad_()
    step = torch.tensor(0.01, dtype=torch.float64, requires_grad=True)
    x1 = x - step * a.T(a(x) - y)
    loss = (a(x1) - y).pow(2).sum()
    gx, gs = torch.autograd.grad(loss, (x, step), create_graph=True)
    (hs,) = torch.autograd.grad(gs, step)
    assert torch.isfinite(hs) and float(hs) > 0  # the loss is a convex quadratic in step


def test_backends_agree():
    for head in ("parallel-offset", "fan-flat", "fan-curved-limited"):
        a = make(f"{head}-odd-sparse")
        b = make(f"{head}-odd-torch")
        x = rand((2, *a.domain_shape), seed=12)
        y = rand((2, *a.range_shape), seed=13)
        assert torch.allclose(a(x), b(x), rtol=1e-12, atol=1e-12)
        assert torch.allclose(a.T(y), b.T(y), rtol=1e-12, atol=1e-12)


def test_adjoint_module_identity_and_shapes():
    a = make("parallel-full-even-sparse")
    assert a.T.T is a
    assert a.T.domain_shape == a.range_shape and a.T.range_shape == a.domain_shape
    assert list(a.parameters()) == []


def test_vmap_and_jvp():
    a = make("fan-curved-odd-sparse")
    x = rand((4, *a.domain_shape), seed=14)
    assert torch.allclose(torch.vmap(a)(x), a(x), atol=1e-12)
    t = rand((4, *a.domain_shape), seed=15)
    _, tangent = torch.func.jvp(a, (x,), (t,))
    assert torch.allclose(tangent, a(t), atol=1e-12)


def test_forward_mode_ad_with_dual_tensors():
    """``torch.autograd.forward_ad`` (no functorch transform): the eager path sees the open
    dual level and goes through the autograd function's ``jvp``, for ``A`` and ``A^T``, also
    for an input that does not require grad."""
    import torch.autograd.forward_ad as fwAD
    a = make("fan-flat-odd-sparse")
    x, t = rand((2, *a.domain_shape), seed=16), rand((2, *a.domain_shape), seed=17)
    y, s = rand((2, *a.range_shape), seed=18), rand((2, *a.range_shape), seed=19)
    with fwAD.dual_level():
        out = fwAD.unpack_dual(a(fwAD.make_dual(x, t)))
        back = fwAD.unpack_dual(a.T(fwAD.make_dual(y, s)))
    assert out.tangent is not None and back.tangent is not None
    assert torch.allclose(out.primal, a(x), atol=1e-12)
    assert torch.allclose(out.tangent, a(t), atol=1e-12)
    assert torch.allclose(back.tangent, a.T(s), atol=1e-12)


def test_calls_without_gradients_skip_the_autograd_function(monkeypatch):
    """A call no gradient can flow through goes straight to the backend (no autograd node, the
    host's cheapest path); one that needs a gradient goes through the autograd function."""
    from operators import projector
    a = make("parallel-full-odd-sparse")
    x = rand((2, *a.domain_shape), seed=20)
    applied = []
    for cls in (projector._EagerForward, projector._EagerAdjoint):
        real = cls.apply
        monkeypatch.setattr(cls, "apply", lambda *args, real=real, cls=cls:
                            applied.append(cls.__name__) or real(*args))
    assert a(x).grad_fn is None and a.T(a(x)).grad_fn is None
    xg = x.clone().requires_grad_()
    with torch.no_grad():
        assert a(xg).grad_fn is None
    assert applied == []
    assert a(xg).grad_fn is not None and applied == ["_EagerForward"]
    (g,) = torch.autograd.grad(a(xg).sum(), xg)
    assert torch.allclose(g, a.T(torch.ones(2, *a.range_shape, dtype=x.dtype)), atol=1e-12)


def test_state_dict_round_trip_and_geometry_guard():
    a = make("parallel-full-odd-sparse")
    b = make("parallel-full-odd-torch")
    b.load_state_dict(a.state_dict())
    x = rand((1, *a.domain_shape))
    assert torch.allclose(a(x), b(x), atol=1e-12)
    other = make("parallel-limited-odd-sparse")
    with pytest.raises(RuntimeError, match="holds 13 view angles, this operator has 9"):
        other.load_state_dict(a.state_dict())


def test_a_state_dict_names_the_scan_it_was_made_for():
    """Any change of grid or geometry is refused by name, through torch.save and a
    weights-only load; a state_dict from before signatures (no extra state) still loads."""
    grid = ImageGrid(shape=(12, 13))
    geom = ParallelGeometry.full_scan(9, 21, 1.0)
    a = XRayTransform(grid, geom)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    XRayTransform(grid, geom, backend="torch").load_state_dict(state)
    fan = FanGeometry(angles=geom.angles, detector_count=21, detector_spacing=1.0,
                      source_to_isocenter=100.0, source_to_detector=200.0)
    for field, grid_b, geom_b in [
            ("detector_spacing: checkpoint 1, here 1.1", grid, replace(geom, detector_spacing=1.1)),
            ("detector_offset: checkpoint 0, here 0.5", grid, replace(geom, detector_offset=0.5)),
            ("grid_spacing_x: checkpoint 1, here 0.9",
             ImageGrid(shape=(12, 13), spacing=(1.0, 0.9)), geom),
            ("fan_beam: checkpoint 0, here 1", grid, fan)]:
        with pytest.raises(SignatureMismatchError, match=re.escape(field)):
            XRayTransform(grid_b, geom_b).load_state_dict(state)
    assert all(torch.is_tensor(v) for v in state.values())  # safetensors and the like work
    half = XRayTransform(grid, geom).half()  # keeps its float64 tables and signature
    assert half.scan_signature.dtype == torch.float64
    before_fingerprint = dict(state, scan_signature=state["scan_signature"][:15])
    XRayTransform(grid, geom).load_state_dict(before_fingerprint)  # 15 fields, compared as such
    with pytest.raises(SignatureMismatchError, match="detector_offset: checkpoint 0, here 0.5"):
        XRayTransform(grid, replace(geom, detector_offset=0.5)).load_state_dict(before_fingerprint)
    legacy = {k: v for k, v in state.items() if k != "scan_signature"}
    XRayTransform(grid, geom).load_state_dict(legacy)
    with pytest.raises(SignatureMismatchError, match="at other values"):  # as at that time
        XRayTransform(grid, geom[::-1]).load_state_dict(legacy)


def test_to_device_moves_adjoint_and_keeps_results():
    a = make("fan-flat-odd-sparse")
    x = rand((1, *a.domain_shape))
    y = a(x)
    a.to(torch.float32).to(torch.float64)  # buffers round-trip; caches rebuilt lazily
    assert torch.allclose(a(x), y, atol=1e-12)
    if torch.cuda.is_available():  # pragma: no cover - GPU machine only
        a.cuda()
        assert a.T(y.cuda()).device.type == "cuda"


def test_deepcopy_and_pickle_after_use():
    import copy
    import io

    from operators import FBP

    a = make("fan-flat-odd-sparse")
    fbp = FBP(a.grid, a.geometry)
    x = rand((1, *a.domain_shape))
    y = a(x)
    r = fbp(y)  # both caches are filled now
    a2, fbp2 = copy.deepcopy(a), copy.deepcopy(fbp)
    assert a2.T.T is a2 and torch.allclose(a2(x), y) and torch.allclose(fbp2(y), r)
    buf = io.BytesIO()
    torch.save(a, buf)
    buf.seek(0)
    a3 = torch.load(buf, weights_only=False)
    assert torch.allclose(a3(x), y)


@pytest.mark.parametrize("op_id", ["parallel-offset-even-sparse", "fan-curved-odd-torch"])
def test_autocast_leaves_the_operators_in_the_input_dtype(op_id):
    """Inside torch.autocast the operators compute in their input's dtype (the sparse backend
    has no bfloat16 product: before, a float32 input failed there), the FBP included, and
    gradients flow; the result equals the one outside autocast."""
    from operators import FBP

    a = make(op_id)
    fbp = FBP(a.grid, a.geometry)
    x = rand((2, *a.domain_shape), torch.float32).requires_grad_(True)
    y = a(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_ac = a(x)
        back = a.T(y_ac)
        rec = fbp(y_ac)
        low = torch.nn.functional.linear(back, torch.eye(back.shape[-1]))  # autocast: bf16
    assert y_ac.dtype == back.dtype == rec.dtype == torch.float32 and low.dtype == torch.bfloat16
    assert torch.equal(y_ac, y) and torch.allclose(rec, fbp(y))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a(low.float()).square().sum().backward()  # through a bf16 layer and back
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = a(x.detach().bfloat16())  # half-precision input: half-precision output
    assert half.dtype == torch.bfloat16
    assert torch.allclose(half.float(), a(x.detach().bfloat16().float()), rtol=1e-2, atol=1e-2)
