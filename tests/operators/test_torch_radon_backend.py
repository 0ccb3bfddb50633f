"""The optional torch-radon backend: a loud, helpful error when absent; loose agreement when present.

torch-radon's pair is unmatched (texture forward, pixel-driven back-projection), so where it runs
we only check shapes and agreement with the reference to interpolation accuracy (5%), and report
its dot-product mismatch instead of asserting adjointness.
"""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

import operators as op
from operators.backends import BackendUnavailableError, make_backend
from operators.backends.torch_radon_backend import torch_radon_available

HAVE_TORCH_RADON = importlib.util.find_spec("torch_radon") is not None
RUNNABLE = torch_radon_available()[0] is not None

GRID = op.ImageGrid(shape=(64, 64), spacing=(1.0, 1.0))
PARALLEL = op.ParallelGeometry.full_scan(48, 91, 1.0)


@pytest.mark.skipif(RUNNABLE, reason="torch-radon runs here; the error path is not reachable")
def test_unavailable_error_says_what_to_install():
    with pytest.raises(BackendUnavailableError) as info:
        make_backend("torch-radon", GRID, PARALLEL)
    message = str(info.value)
    assert "backend='torch-radon'" in message
    if not HAVE_TORCH_RADON:
        assert "not on PyPI" in message and "carterbox/torch-radon" in message
        assert "backend='triton'" in message
    else:
        assert "CUDA" in message


@pytest.mark.skipif(RUNNABLE, reason="torch-radon runs here; the error path is not reachable")
def test_operator_construction_fails_loudly():
    with pytest.raises(BackendUnavailableError, match="torch-radon"):
        op.XRayTransform(GRID, PARALLEL, backend="torch-radon")


@pytest.mark.skipif(not RUNNABLE, reason="torch_radon is not installed or no CUDA device")
def test_curved_fan_is_refused():
    geom = op.FanGeometry.full_scan(16, 91, 2.0, 200.0, 400.0, "curved")
    with pytest.raises(BackendUnavailableError, match="flat detector"):
        make_backend("torch-radon", GRID, geom)


@pytest.mark.skipif(not RUNNABLE, reason="torch_radon is not installed or no CUDA device")
@pytest.mark.parametrize("geom", [
    PARALLEL,
    op.FanGeometry.full_scan(48, 131, 2.0, 200.0, 400.0, "flat"),
], ids=["parallel", "fan-flat"])
def test_agrees_with_reference_to_interpolation_accuracy(geom):
    a_ref = op.XRayTransform(GRID, geom, backend="torch").cuda()
    a_tr = op.XRayTransform(GRID, geom, backend="torch-radon").cuda()
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    x = (((yy - 30) ** 2 + (xx - 36) ** 2) < 20 ** 2).float()[None].cuda() * 0.02
    y_ref, y_tr = a_ref(x), a_tr(x)
    assert y_tr.shape == y_ref.shape
    assert float((y_tr - y_ref).norm() / y_ref.norm()) < 0.05
    y = torch.rand_like(y_ref)
    lhs, rhs = float((y_tr * y).sum()), float((x * a_tr.T(y)).sum())
    assert math.isfinite(lhs) and math.isfinite(rhs)
    print(f"torch-radon dot-product mismatch ({geom.__class__.__name__}): "
          f"{abs(lhs - rhs) / abs(lhs):.2e} (unmatched pair)")
