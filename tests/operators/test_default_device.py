"""The operators make their own tensors (coefficients, matrices, index ranges) on the data's
device, never on torch's default device: a user may call ``torch.set_default_device("cuda")``
and still project CPU data, or the reverse. On the CPU the default device is set to ``meta``
(which holds no data), so any tensor left to the default breaks the call.

This caught ``torch.searchsorted`` in the matrix-free coefficients with a default-device
operand, which broke the ``torch`` backend on every CUDA tensor (found on an H100). The Triton
backend is checked the same way in ``test_triton_backend.py``.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import operators as op

GRID = op.ImageGrid(shape=(12, 14), spacing=(1.0, 0.9))
GEOMETRIES = {
    "parallel": op.ParallelGeometry.full_scan(views=9, detector_count=25, detector_spacing=1.0),
    "fan-flat": op.FanGeometry.short_scan(views=11, detector_count=27, detector_spacing=1.1,
                                          source_to_isocenter=60.0, source_to_detector=110.0,
                                          detector="flat"),
    "fan-curved": op.FanGeometry.short_scan(views=11, detector_count=27, detector_spacing=1.1,
                                            source_to_isocenter=60.0, source_to_detector=110.0,
                                            detector="curved"),
}


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", op.FieldOfViewWarning)
        yield


@pytest.mark.parametrize("backend", ["torch", "sparse"])
@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_projector_and_fbp_ignore_the_default_device(name, backend):
    geom = GEOMETRIES[name]
    a = op.XRayTransform(GRID, geom, backend=backend)
    fbp = op.FBP(GRID, geom)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, *GRID.shape, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, *geom.sinogram_shape, generator=gen, dtype=torch.float64)
    expected = (a(x.detach()), a.T(y), fbp(y))
    a_fresh = op.XRayTransform(GRID, geom, backend=backend)  # nothing cached yet
    fbp_fresh = op.FBP(GRID, geom)
    with torch.device("meta"):
        got = (a_fresh(x.detach()), a_fresh.T(y), fbp_fresh(y))
        (grad,) = torch.autograd.grad((a_fresh(x) * y).sum(), x)
    for e, g in zip(expected, got):
        assert g.device == x.device
        torch.testing.assert_close(g, e, rtol=0, atol=0)
    torch.testing.assert_close(grad, expected[1], rtol=1e-12, atol=0)
