"""``torch.compile`` through the operators: one graph, the eager numbers, the eager gradients.

The projector pair and the FBP back-projection enter a compiled graph as opaque custom ops
(:mod:`operators._custom_ops`); without them Inductor traced into the ``torch`` backend and
failed on dynamic batch sizes (torch 2.13).
"""

import copy
import gc
import os
import shutil

import pytest
import torch
from torch import nn

from operators import FBP, FanGeometry, ImageGrid, ParallelGeometry, XRayTransform
from operators import _custom_ops

pytestmark = pytest.mark.skipif(not _custom_ops.HAVE_CUSTOM_OPS,
                                reason="custom ops need torch >= 2.4")

#: Inductor compiles CPU graphs with a C++ compiler ($CXX, else g++).
HAVE_CXX = bool(shutil.which(os.environ.get("CXX", "") or "g++"))
needs_cxx = pytest.mark.skipif(not HAVE_CXX, reason="Inductor on the CPU needs a C++ compiler")

GRID = ImageGrid(shape=(24, 20), spacing=(1.0, 1.0))
GEOMETRIES = {
    "parallel": ParallelGeometry.limited_angle(arc=2.0, views=18, detector_count=35,
                                               detector_spacing=1.0),
    "fan-curved": FanGeometry.short_scan(views=20, detector_count=41, detector_spacing=1.5,
                                         source_to_isocenter=60.0, source_to_detector=110.0,
                                         detector="curved"),
}


class _Unrolled(nn.Module):
    """Two gradient steps with a learned convolution: the shape of an unrolled network."""

    def __init__(self, A):
        super().__init__()
        self.A = A
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        torch.nn.init.normal_(self.conv.weight, std=0.3)
        self.step = nn.Parameter(torch.tensor(0.01))

    def forward(self, y):
        x = self.A.T(y)
        for _ in range(2):
            x = x - self.step * self.A.T(self.A(x) - y)
            x = x + self.conv(x.reshape(-1, 1, *x.shape[-2:])).reshape(x.shape)
        return x


def _run(model, y):
    model.zero_grad()
    y = y.clone().requires_grad_(True)
    out = model(y)
    (out * out).sum().backward()
    return out.detach(), y.grad, [p.grad.clone() for p in model.parameters()]


def _assert_close(a, b, what):
    err = ((a - b).norm() / b.norm()).item()
    assert err < 1e-5, f"{what}: relative error {err:.2e}"


@pytest.mark.parametrize("backend", ["sparse", "torch"])
@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_compiled_unrolled_model_equals_eager(name, backend):
    """fullgraph=True: the operators cause no graph break; values and every gradient match."""
    torch.manual_seed(0)
    eager = _Unrolled(XRayTransform(GRID, GEOMETRIES[name], backend=backend))
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, fullgraph=True, backend="aot_eager")
    y = torch.rand(3, *GEOMETRIES[name].sinogram_shape)
    out_e, gy_e, gp_e = _run(eager, y)
    out_c, gy_c, gp_c = _run(compiled, y)
    _assert_close(out_c, out_e, "output")
    _assert_close(gy_c, gy_e, "gradient of the sinogram")
    for i, (gc_, ge) in enumerate(zip(gp_c, gp_e)):
        _assert_close(gc_, ge, f"gradient of parameter {i}")


@needs_cxx
def test_inductor_with_dynamic_batches():
    """The case that failed before the custom ops: Inductor, batch sizes that change (the
    second shape makes the batch dimension symbolic), extra batch dimensions."""
    torch.manual_seed(1)
    A = XRayTransform(GRID, GEOMETRIES["fan-curved"], backend="torch")
    eager = _Unrolled(A)
    compiled = torch.compile(copy.deepcopy(eager), fullgraph=True)
    for shape in [(2,), (5,), (2, 3)]:
        y = torch.rand(*shape, *A.range_shape)
        out_e, gy_e, gp_e = _run(eager, y)
        out_c, gy_c, gp_c = _run(compiled, y)
        assert out_c.shape == (*shape, *A.domain_shape)
        _assert_close(out_c, out_e, f"output, batch {shape}")
        _assert_close(gy_c, gy_e, f"gradient, batch {shape}")
        _assert_close(gp_c[0], gp_e[0], f"gradient of the convolution, batch {shape}")


def test_compiled_trainable_fbp_equals_eager():
    """FBP's back-projection is an operator too: a trainable FBP compiles in one graph."""
    geom = GEOMETRIES["fan-curved"]
    eager = FBP(GRID, geom)
    eager.set_trainable(weights=True, filter=True)
    compiled = torch.compile(copy.deepcopy(eager), fullgraph=True, backend="aot_eager")
    y = XRayTransform(GRID, geom)(torch.rand(2, *GRID.shape))
    out_e, _, gp_e = _run(eager, y)
    out_c, _, gp_c = _run(compiled, y)
    _assert_close(out_c, out_e, "FBP")
    for ge, gc_ in zip(gp_e, gp_c):
        _assert_close(gc_, ge, "FBP parameter gradient")


@pytest.mark.parametrize("direction", ["forward", "adjoint"])
def test_custom_ops_pass_opcheck(direction):
    """torch.library.opcheck: schema, fake (meta) implementation, autograd registration and
    AOT dispatch with static and dynamic shapes."""
    A = XRayTransform(GRID, GEOMETRIES["parallel"], backend="sparse")
    if direction == "forward":
        op, t = _custom_ops.forward_op, torch.rand(2, *A.domain_shape, requires_grad=True)
    else:
        op, t = _custom_ops.adjoint_op, torch.rand(2, *A.range_shape, requires_grad=True)
    torch.library.opcheck(op, (t, A._op_handle))


def test_copies_get_their_own_handle_and_dead_handles_fail_clearly():
    A = XRayTransform(GRID, GEOMETRIES["parallel"])
    B = copy.deepcopy(A)
    assert A._op_handle != B._op_handle
    assert _custom_ops.lookup(A._op_handle) is A
    assert _custom_ops.lookup(B._op_handle) is B
    handle = B._op_handle
    del B
    gc.collect()
    with pytest.raises(RuntimeError, match=f"no live operator has handle {handle}"):
        _custom_ops.lookup(handle)


def test_static_input_checks_still_apply_when_compiled():
    A = XRayTransform(GRID, GEOMETRIES["parallel"])
    compiled = torch.compile(A, backend="aot_eager")
    with pytest.raises(ValueError, match="x must end in"):
        compiled(torch.rand(2, 7, 7))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_triton_backend_on_the_gpu(mode):  # pragma: no cover - GPU machine only
    """Inductor on CUDA around our Triton kernels; ``reduce-overhead`` captures them in a CUDA
    graph (no host synchronisation inside the operators after their first call)."""
    torch.manual_seed(2)
    A = XRayTransform(GRID, GEOMETRIES["fan-curved"], backend="triton").cuda()
    eager = _Unrolled(A).cuda()
    compiled = torch.compile(copy.deepcopy(eager), mode=mode, fullgraph=True)
    y = torch.rand(4, *A.range_shape, device="cuda")
    out_e, gy_e, _ = _run(eager, y)
    for _ in range(3):  # the CUDA graph is recorded on a later call than the first
        out_c, gy_c, _ = _run(compiled, y)
    _assert_close(out_c, out_e, "output")
    _assert_close(gy_c, gy_e, "gradient")
