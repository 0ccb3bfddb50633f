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


# -- the convention calibration, on the CPU with stand-ins for torch-radon's two generations ---
class _FakeVolume:
    def __init__(self, voxel_size):
        self.voxel_size = voxel_size
        self._size = None

    def has_size(self):
        return self._size is not None

    def set_size(self, h, w):
        self._size = (h, w)


class _FakeProjector:
    """Our own projector seen through another convention: the view angle shifted or mirrored
    (``angle_of``), the detector axis reversed, results in other units."""

    def __init__(self, grid, geometry, angles, angle_of, reverse, unit):
        import numpy as np

        true = tuple(float(a) for a in angle_of(np.asarray(angles.cpu(), dtype=np.float64)))
        self._a = op.XRayTransform(grid, geometry.with_angles(true), backend="torch")
        self.reverse, self.unit = reverse, unit
        self.volume = _FakeVolume(None)

    def forward(self, x):
        y = self._a(x) / self.unit
        return y.flip(-1) if self.reverse else y

    def backward(self, y):
        return self._a.T((y.flip(-1) if self.reverse else y) / self.unit)


def _fake_v2(grid, geometry):
    """The fork's API; its fan source sits at beta + pi with the detector reversed."""
    import types

    def parallel(det_count, angles, det_spacing, volume):
        return _FakeProjector(grid, geometry, angles, lambda a: a, False, 1.0)

    def fan(det_count, angles, src_dist, det_dist, det_spacing, volume):
        return _FakeProjector(grid, geometry, angles, lambda a: a + math.pi, True, 1.0)

    return types.SimpleNamespace(ParallelBeam=parallel, FanBeam=fan, Volume2D=_FakeVolume)


def _fake_v1(grid, geometry):
    """The first API: mirrored angles, sums in pixel lengths."""
    import types

    def radon(h, angles, det_count, det_spacing):
        p = _FakeProjector(grid, geometry, angles, lambda a: -a, False, grid.spacing[1])
        p.backprojection = p.backward
        return p

    return types.SimpleNamespace(Radon=radon)


def _fake_broken(grid, geometry):
    """A projector of the transposed image: no mapping of angles or detector fixes that."""
    module = _fake_v2(grid, geometry)
    make = module.ParallelBeam

    def parallel(*args, **kwargs):
        p = make(*args, **kwargs)
        forward = p.forward
        p.forward = lambda x: forward(x.transpose(-1, -2).contiguous())
        return p

    module.ParallelBeam = parallel
    return module


@pytest.mark.parametrize("fake, geom, expected", [
    (_fake_v2, PARALLEL, ("beta", False, 1.0)),
    (_fake_v2, op.FanGeometry.full_scan(48, 131, 2.0, 200.0, 400.0, "flat"),
     ("beta-pi", True, 1.0)),
    (_fake_v1, PARALLEL, ("-beta", False, 0.5)),
], ids=["v2-parallel", "v2-fan-flat", "v1-parallel-half-mm-pixels"])
def test_calibration_finds_the_convention(monkeypatch, fake, geom, expected):
    from operators.backends import torch_radon_backend as trb

    grid = op.ImageGrid(shape=(32, 32), spacing=(0.5, 0.5)) if fake is _fake_v1 else \
        op.ImageGrid(shape=(32, 40), spacing=(1.0, 1.0))
    monkeypatch.setattr(trb, "torch_radon_available", lambda: (fake(grid, geom), ""))
    monkeypatch.setattr(trb, "_DEVICE_TYPES", ("cpu",))
    a_tr = op.XRayTransform(grid, geom, backend="torch-radon")
    a_ref = op.XRayTransform(grid, geom, backend="torch")
    x = torch.rand(2, *grid.shape)
    y = torch.rand(2, *geom.sinogram_shape)
    assert torch.allclose(a_tr(x), a_ref(x), rtol=1e-4, atol=1e-5)
    assert torch.allclose(a_tr.T(y), a_ref.T(y), rtol=1e-4, atol=1e-5)
    backend = a_tr._backends[next(iter(a_tr._backends))]
    got = backend.convention
    assert (got["angles"], got["detector_reversed"], got["unit"]) == expected
    assert got["relative_error"] < 1e-5


def test_calibration_refuses_a_projector_it_cannot_map(monkeypatch):
    from operators.backends import torch_radon_backend as trb

    grid = op.ImageGrid(shape=(40, 40))
    monkeypatch.setattr(trb, "torch_radon_available", lambda: (_fake_broken(grid, PARALLEL), ""))
    monkeypatch.setattr(trb, "_DEVICE_TYPES", ("cpu",))
    a_tr = op.XRayTransform(grid, PARALLEL, backend="torch-radon")
    with pytest.raises(BackendUnavailableError, match="no mapping of torch-radon's geometry"):
        a_tr(torch.rand(40, 40))
