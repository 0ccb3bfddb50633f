"""One rule for bad arguments across the packages (``operators._checks``): a value of the wrong
kind is a ``TypeError``, one out of range a ``ValueError``, each naming the argument; numpy
scalars are numbers (a sweep over ``np.arange`` or ``np.float32`` values must not be refused)."""

import json
import math

import numpy as np
import pytest
import torch

from operators import ImageGrid, ParallelGeometry, XRayTransform
from operators._checks import integer, random_seed, real
from recon.data import GaussianNoise, PoissonNoise
from recon.iterative import sirt, tv_pdhg
from recon.nets import LearnedPrimalDual, UNet, VariationalNetwork
from recon.train import TrainConfig


@pytest.mark.parametrize("value, kwargs, expected", [
    (2, {}, 2.0), (np.float32(0.5), {}, 0.5), (np.int64(3), {"positive": True}, 3.0),
    (0.0, {"nonnegative": True}, 0.0), (math.inf, {"finite": False}, math.inf),
    (None, {"optional": True}, None), (torch.tensor([0.25]), {"tensor": True}, 0.25),
])
def test_real_accepts_numbers_of_every_kind(value, kwargs, expected):
    assert real("x", value, **kwargs) == expected


@pytest.mark.parametrize("value, kwargs, error, message", [
    ("1", {}, TypeError, "x must be a real number, got str"),
    (True, {}, TypeError, "x must be a real number, got bool"),
    (None, {}, TypeError, "x must be a real number, got NoneType"),
    (1j, {}, TypeError, "x must be a real number, got complex"),
    (torch.tensor(1.0), {}, TypeError, "x must be a real number, got Tensor"),
    (torch.tensor([1.0, 2.0]), {"tensor": True}, TypeError, "x must be a real number"),
    (math.nan, {}, ValueError, "x must be finite, got nan"),
    (math.inf, {"positive": True}, ValueError, "x must be a positive finite number, got inf"),
    (0.0, {"positive": True}, ValueError, "x must be a positive finite number, got 0.0"),
    (-1.0, {"nonnegative": True, "optional": True}, ValueError,
     "x must be a non-negative finite number or None, got -1.0"),
    (math.nan, {"positive": True, "finite": False}, ValueError, "x must be positive, got nan"),
])
def test_real_refuses_by_kind_and_by_range(value, kwargs, error, message):
    with pytest.raises(error, match=message):
        real("x", value, **kwargs)


def test_integer_and_seed():
    assert integer("n", np.int64(4)) == 4 and type(integer("n", np.int64(4))) is int
    assert integer("n", 0, minimum=0) == 0 and integer("n", -5, minimum=None) == -5
    assert integer("n", None, optional=True) is None
    assert random_seed("seed", None) is None and random_seed("seed", -3) == -3
    for bad in (2.0, True, "3", None):
        with pytest.raises(TypeError, match="n must be an integer"):
            integer("n", bad)
    with pytest.raises(ValueError, match="n must be a positive integer, got 0"):
        integer("n", 0)
    with pytest.raises(ValueError, match="n must be an integer >= 2, got 1"):
        integer("n", 1, minimum=2)
    with pytest.raises(TypeError, match="seed must be an integer or None, got float"):
        random_seed("seed", 1.0)


def test_numpy_scalars_configure_a_training_run():
    """``TrainConfig`` refused ``np.int64`` and ``np.float32``; it now stores them as Python
    numbers, so its ``config.json`` and the resume check see the same values."""
    cfg = TrainConfig(epochs=np.int64(3), batch_size=np.int32(4), lr=np.float32(1e-3),
                      grad_clip=np.float64(1.0), seed=np.int64(7), max_steps=np.int16(10))
    assert (cfg.epochs, cfg.batch_size, cfg.seed, cfg.max_steps) == (3, 4, 7, 10)
    assert all(type(getattr(cfg, name)) is int
               for name in ("epochs", "batch_size", "seed", "max_steps"))
    assert type(cfg.lr) is float and cfg.lr == pytest.approx(1e-3)
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()
    assert cfg == TrainConfig(epochs=3, batch_size=4, lr=float(np.float32(1e-3)),
                              grad_clip=1.0, seed=7, max_steps=10)


@pytest.mark.parametrize("build, error, name", [
    (lambda: TrainConfig(epochs=2.0), TypeError, "TrainConfig.epochs"),
    (lambda: TrainConfig(epochs=0), ValueError, "TrainConfig.epochs"),
    (lambda: TrainConfig(lr="1e-3"), TypeError, "TrainConfig.lr"),
    (lambda: TrainConfig(seed=-1), ValueError, "TrainConfig.seed"),
    (lambda: ParallelGeometry.full_scan(views=8.0, detector_count=8), TypeError, "views"),
    (lambda: ParallelGeometry.full_scan(views=0, detector_count=8), ValueError, "views"),
    (lambda: PoissonNoise("1e4"), TypeError, "photons"),
    (lambda: PoissonNoise(0.0), ValueError, "photons"),
    (lambda: GaussianNoise(True), TypeError, "relative"),
    (lambda: UNet(width=4.0), TypeError, "width"),
    (lambda: UNet(width=0), ValueError, "width"),
])
def test_every_package_follows_the_rule(build, error, name):
    with pytest.raises(error, match=name):
        build()


def test_numpy_scalars_everywhere_else():
    grid = ImageGrid(shape=(np.int64(12), np.int64(12)), spacing=np.float32(1.0))
    geom = ParallelGeometry.full_scan(views=np.int64(10), detector_count=np.int64(17),
                                      detector_spacing=np.float32(1.0))
    A = XRayTransform(grid, geom)
    y = A(torch.rand(12, 12))
    assert sirt(A, y, np.int64(3), relaxation=np.float32(1.0)).shape == (12, 12)
    assert tv_pdhg(A, y, np.float32(0.1), np.int32(3)).shape == (12, 12)
    VariationalNetwork(A, stages=np.int64(1), filters=np.int64(2), seed=np.int64(0))
    LearnedPrimalDual(A, n_iter=np.int64(1), seed=np.int64(0))
    assert PoissonNoise(np.float32(1e4)).photons == 1e4
