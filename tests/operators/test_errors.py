"""Bad input gets a clear error that names the argument."""

import warnings

import pytest
import torch

from operators import (FBP, FanGeometry, FieldOfViewWarning, GeometryWarning, ImageGrid,
                       ParallelGeometry, XRayTransform)
from operators.backends import BackendUnavailableError

GRID = ImageGrid(shape=(8, 9))
GEOM = ParallelGeometry.full_scan(5, 13)
A = XRayTransform(GRID, GEOM)


@pytest.mark.parametrize("x, error, match", [
    (torch.zeros(9), ValueError, "x must have shape"),
    (torch.zeros(8, 8), ValueError, r"x must end in \(H, W\) = \(8, 9\)"),
    (torch.zeros(9, 8), ValueError, "x must end in"),
    (torch.zeros(8, 9, dtype=torch.int32), TypeError, "x has integer"),
    (torch.zeros(8, 9, dtype=torch.complex64), TypeError, "x has complex"),
    (torch.zeros(8, 9, dtype=torch.float8_e4m3fn), TypeError, "x has unsupported floating"),
    (torch.full((8, 9), float("nan")), ValueError, "x contains NaN or Inf"),
    (torch.full((2, 8, 9), float("inf")), ValueError, "x contains NaN or Inf"),
    ([[0.0] * 9] * 8, TypeError, "x must be a torch.Tensor"),
])
def test_forward_rejects(x, error, match):
    with pytest.raises(error, match=match):
        A(x)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32_and_returned_in_its_dtype(dtype):
    """The CPU backends have no half-precision arithmetic: they compute in float32 and round
    the result once, so the error is that rounding (unit roundoff 2**-11 / 2**-8)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 8, 9, generator=gen).to(dtype)
    y = torch.rand(2, 5, 13, generator=gen).to(dtype)
    unit = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}[dtype]
    for out, exact in ((A(x), A(x.float())), (A.T(y), A.T(y.float()))):
        assert out.dtype == dtype
        assert float(((out.float() - exact).abs() / exact.abs().clamp_min(1e-6)).max()) <= unit


def test_the_back_projection_layer_alone_refuses_half_precision():
    """FBP computes half precision in float32 (test_fbp.py); its layer on its own does not."""
    from operators import FBP
    fbp = FBP(GRID, GEOM)
    assert fbp(torch.zeros(5, 13, dtype=torch.float16)).dtype == torch.float16
    with pytest.raises(TypeError, match="sinogram has half-precision"):
        fbp.backprojection(torch.zeros(5, 13, dtype=torch.float16))


def test_adjoint_rejects_wrong_sinogram():
    with pytest.raises(ValueError, match=r"y must end in \(views, detectors\) = \(5, 13\)"):
        A.T(torch.zeros(5, 12))
    with pytest.raises(ValueError, match="y contains NaN"):
        A.T(torch.full((5, 13), float("nan")))


def test_the_nan_check_reads_values_on_the_cpu_only():
    """On a GPU the check would make every call wait for the device; the static checks run on
    every device ("meta" stands in for it here: it holds no values to read)."""
    from operators.projector import check_tensor
    nan = torch.full((2, 5, 13), float("nan"))
    with pytest.raises(ValueError, match="y contains NaN or Inf"):
        check_tensor("y", nan, (5, 13), "views, detectors")
    check_tensor("y", nan.to("meta"), (5, 13), "views, detectors")  # not read
    with pytest.raises(ValueError, match=r"y must end in \(views, detectors\)"):
        check_tensor("y", nan.to("meta"), (5, 12), "views, detectors")


def test_no_silent_broadcast_of_batch():
    y = A(torch.zeros(2, 3, 8, 9))
    assert y.shape == (2, 3, 5, 13)


def test_wrong_arguments_to_the_operator():
    with pytest.raises(TypeError, match="grid must be"):
        XRayTransform((8, 9), GEOM)
    with pytest.raises(TypeError, match="geometry must be"):
        XRayTransform(GRID, {"angles": [0.0]})
    with pytest.raises(ValueError, match="backend must be one of"):
        XRayTransform(GRID, GEOM, backend="cuda-magic")
    with pytest.raises(ValueError, match="inside the image"):
        XRayTransform(ImageGrid(shape=(100, 100)), FanGeometry.full_scan(4, 200, 1.0, 60.0, 200.0))


def test_unavailable_backend_is_a_clear_error():
    if torch.cuda.is_available():  # pragma: no cover
        pytest.skip("a GPU is present")
    with pytest.raises(BackendUnavailableError, match="triton"):
        XRayTransform(GRID, GEOM, backend="triton")


def test_device_mismatch_is_named():
    if not torch.cuda.is_available():
        # emulate: an operator on the 'meta' device cannot take CPU tensors
        a = XRayTransform(GRID, GEOM)
        a.ray_table = a.ray_table.to("meta")
        with pytest.raises(RuntimeError, match="x is on cpu but the operator is on meta"):
            a(torch.zeros(8, 9))
    else:  # pragma: no cover
        with pytest.raises(RuntimeError, match="operator is on"):
            A(torch.zeros(8, 9, device="cuda"))


def test_small_detector_warns():
    with pytest.warns(FieldOfViewWarning, match="field of view"):
        XRayTransform(GRID, ParallelGeometry.full_scan(5, 6))


def test_the_field_of_view_warning_can_be_silenced_alone():
    """N detectors for N x N pixels leaves the corners unscanned: a common, deliberate set-up,
    so its warning has its own category; the other geometry warnings still come through."""
    assert issubclass(FieldOfViewWarning, GeometryWarning)
    assert issubclass(GeometryWarning, UserWarning)
    grid = ImageGrid(shape=(16, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", FieldOfViewWarning)
        XRayTransform(grid, ParallelGeometry.full_scan(8, 16))
        FBP(grid, ParallelGeometry.full_scan(8, 16))
        with pytest.raises(GeometryWarning, match="passes through the image"):
            XRayTransform(grid, FanGeometry.full_scan(8, 64, 1.0, source_to_isocenter=100.0,
                                                      source_to_detector=105.0))


def test_a_detector_beside_the_centre_warns():
    """Edges at 40..60 mm: every ray misses a centred 8x9 image; fov_radius is 0, not 40."""
    with pytest.warns(UserWarning, match="field of view"):
        XRayTransform(GRID, ParallelGeometry.full_scan(5, 20, 1.0, detector_offset=50.0))


@pytest.mark.parametrize("backend", ["sparse", "torch"])
@pytest.mark.parametrize("batch", [(0,), (2, 0)])
def test_an_empty_batch_gives_an_empty_result(backend, batch):
    op = XRayTransform(GRID, GEOM, backend=backend)
    assert op(torch.zeros(*batch, 8, 9)).shape == (*batch, 5, 13)
    assert op.T(torch.zeros(*batch, 5, 13)).shape == (*batch, 8, 9)
    x = torch.zeros(*batch, 8, 9, requires_grad=True)
    op(x).sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(axes=(float("nan"), 1.0)), ValueError, "axes must be two finite"),
    (dict(axes=(0.0, 1.0)), ValueError, "axes must be positive"),
    (dict(axes=(1.0,)), ValueError, "axes must be two"),
    (dict(center=(0.0, float("inf"))), ValueError, "center must be two finite"),
    (dict(center="ab"), TypeError, "center must be a pair"),
    (dict(value=float("nan")), ValueError, "value must be finite"),
    (dict(rotation="x"), TypeError, "rotation must be a real number"),
])
def test_ellipse_validation(kwargs, error, match):
    from operators import Ellipse
    args = dict(value=1.0, center=(0.0, 0.0), axes=(2.0, 1.0))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        Ellipse(**args)


def test_a_triton_older_than_the_tested_floor_is_reported(monkeypatch):
    """CUDA builds of older torch ship older Triton (torch 2.1: triton 2.1): the backend says so
    instead of failing inside a launch. The floor depends on where the kernels run: Triton
    3.6.0 (torch 2.11's) runs them compiled on a GPU but not in its interpreter."""
    import sys
    import types

    from operators.backends import triton_backend as tb

    monkeypatch.setitem(sys.modules, "triton", types.SimpleNamespace(__version__="3.6.0"))
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    ok, why = tb.triton_available()
    assert not ok and "triton 3.6.0 is older than 3.7" in why and "interpreter" in why

    monkeypatch.setitem(sys.modules, "triton", types.SimpleNamespace(__version__="3.5.1"))
    monkeypatch.delenv("TRITON_INTERPRET")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    ok, why = tb.triton_available()
    assert not ok and "triton 3.5.1 is older than 3.6" in why and "GPU" in why

    assert tb.triton_version_problem("3.6.0", interpreting=False) == ""
    assert tb.triton_version_problem("3.6.0+git1234", interpreting=True) != ""
    assert tb.triton_version_problem("3.7.1", interpreting=True) == ""
    assert tb.min_triton(interpreting=True) == tb.MIN_TRITON_INTERPRETER == (3, 7)
    assert tb.min_triton(interpreting=False) == tb.MIN_TRITON_COMPILED == (3, 6)


def test_a_detector_inside_the_image_warns():
    """R = 100 mm, D = 110 mm: the detector 10 mm from the isocentre cuts a 64 x 64 mm image."""
    geom = FanGeometry.full_scan(8, 200, 1.0, 100.0, 110.0)
    with pytest.warns(GeometryWarning, match="passes through the image"):
        XRayTransform(ImageGrid(shape=(64, 64)), geom)


def test_a_layers_scan_cannot_be_swapped_after_construction():
    """Reassigning ``A.geometry`` left the old tables in place: the projection still followed
    the old scan (or failed on a shape). The scan is fixed; copies keep it."""
    import copy
    import pickle

    from operators.fbp import PixelBackprojection
    from recon.nets import TrainableFBP

    grid, geom = ImageGrid(shape=(8, 8)), ParallelGeometry.full_scan(6, 12)
    other = ParallelGeometry.full_scan(6, 12, detector_offset=2.0)
    layers = [XRayTransform(grid, geom), FBP(grid, geom), PixelBackprojection(grid, geom),
              TrainableFBP(grid, geom)]
    for layer in layers:
        name = type(layer).__name__
        with pytest.raises(AttributeError, match=f"{name}.geometry is fixed at construction"):
            layer.geometry = other
        with pytest.raises(AttributeError, match=f"{name}.grid is fixed at construction"):
            layer.grid = ImageGrid(shape=(9, 9))
        for twin in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
            assert twin.geometry == geom and twin.grid == grid
    # The backend too: the operator caches which backend object serves each device.
    a = layers[0]
    with pytest.raises(AttributeError, match="XRayTransform.backend is fixed at construction"):
        a.backend = "torch"
    assert a.backend == "auto" and copy.deepcopy(a).backend == "auto"
