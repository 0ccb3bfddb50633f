"""The rebinning experiment (Syben et al. GCPR 2018): protocol, measures, training loop, tiny run."""

import json
import math

import numpy as np
import pytest
import torch
from scipy.special import erfc

import operators as op
from experiments import rebinning as exp
from experiments.registry import validate
from recon.nets.rebinning import ParallelToFanNet


def test_protocol():
    validate(exp, expected_name="rebinning")
    assert set(exp.PRESETS) >= {"tiny", "quick", "full"}
    assert exp.PRESETS["full"].parallel_views == (720, 360, 180)


@pytest.mark.parametrize("kwargs, match", [
    ({"parallel_views": (1,)}, "parallel_views"),
    ({"fan_detector": "round"}, "fan_detector"),
    ({"filter_init": "hann"}, "filter_init"),
    ({"magnification": 1.0}, "magnification"),
    ({"image_size": 8}, "image_size"),
    ({"steps": 0}, "steps"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        exp.Config(**kwargs)


def test_setup_covers_every_fan_ray_and_the_grid():
    for detector in ("flat", "curved"):
        cfg = exp.Config(image_size=40, pixel_mm=1.5, parallel_views=(30,), fan_views=40,
                         fan_detector=detector)
        s = exp.make_setup(cfg)
        assert s.fan.fov_radius() >= s.grid.radius
        par = s.parallel(30)
        _, fan_s = s.fan.lines()
        assert par.detector_positions()[-1] >= np.abs(fan_s).max()
        assert par.fov_radius() >= s.grid.radius


def _blurred_disk(grid, centre, radius, sigma):
    xx, yy = grid.meshgrid()
    r = np.hypot(xx - centre[0], yy - centre[1])
    return 0.5 * erfc((r - radius) / (math.sqrt(2) * sigma))


def test_edge_width_and_mtf50_of_a_gaussian_edge():
    grid = op.ImageGrid((96, 96), (1.0, 1.0))
    sigma = 1.2
    img = _blurred_disk(grid, (3.0, -2.0), 25.0, sigma)
    r, esf = exp.edge_spread(img, grid, (3.0, -2.0), 25.0, half_width=8.0, bin_width=0.25)
    assert exp.edge_width_10_90(r, esf, 5.0) == pytest.approx(2 * 1.2816 * sigma, rel=0.05)
    assert exp.mtf50(r, esf) == pytest.approx(math.sqrt(math.log(2) / 2) / (math.pi * sigma),
                                              rel=0.08)
    sharper = _blurred_disk(grid, (3.0, -2.0), 25.0, 0.6)
    r2, esf2 = exp.edge_spread(sharper, grid, (3.0, -2.0), 25.0, half_width=8.0, bin_width=0.25)
    assert exp.edge_width_10_90(r2, esf2, 5.0) < exp.edge_width_10_90(r, esf, 5.0)


def test_resolution_phantom_measures_on_its_own_raster():
    setup = exp.make_setup(exp.Config(image_size=96, pixel_mm=1.0, fan_views=90))
    phantom, layout = exp.resolution_phantom(setup)
    truth = phantom.rasterize(setup.grid, supersample=8).numpy()
    s = exp.sharpness(truth, setup, layout)
    assert s["edge_10_90_mm"] < 1.0        # a pixel-sharp edge
    assert s["bar_modulation_3_pitches"] == pytest.approx(1.0, abs=0.1)
    assert s["bar_modulation_2_pitches"] == pytest.approx(1.0, abs=0.2)
    # everything inside the object disk
    for e in phantom.ellipses:
        assert math.hypot(*e.center) + max(e.axes) <= setup.object_radius + 1e-9


def test_train_filter_lowers_the_loss_and_touches_only_the_filter():
    setup = exp.make_setup(exp.Config(image_size=24, pixel_mm=2.0, fan_views=32))
    par = setup.parallel(24)
    net = ParallelToFanNet.from_geometries(setup.grid, par, setup.fan)
    rng = np.random.default_rng(0)
    phantoms = exp.draw_phantoms(rng, 4, setup.object_radius)
    x = exp.exact_sinograms(phantoms, par)
    y = exp.exact_sinograms(phantoms, setup.fan)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    losses = exp.train_filter(net, x, y, steps=40, batch_size=4, lr=0.003,
                              generator=torch.Generator().manual_seed(0))
    assert len(losses) == 40 and all(math.isfinite(v) for v in losses)
    assert min(losses[-5:]) < losses[0]
    after = net.state_dict()
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert changed == {"filter.response"}


def test_tiny_run_writes_figures_metrics_and_resumes(tmp_path, monkeypatch):
    cfg = exp.PRESETS["tiny"]
    metrics = exp.run(cfg, tmp_path, device=torch.device("cpu"), seeds=[0])
    json.dumps(metrics)  # JSON-serialisable as returned (the runner converts numpy anyway)
    for name in ("filters.png", "sinogram_errors.png", "reconstructions.png", "sharpness.png"):
        assert (tmp_path / name).stat().st_size > 1000
    views = cfg.parallel_views
    assert len(metrics["claims"]) == 2 * len(views)
    for c in metrics["claims"]:
        assert isinstance(c["held"], bool)
        assert all(v is None or math.isfinite(v) for v in c["numbers"].values())
    for v in views:
        entry = metrics["per_view_count"][str(v)]
        for method in ("network", "interpolation"):
            err = entry[method]["sinogram_rel_error"]["mean"]
            assert 0 < err < 0.5
            assert entry[method]["edge_10_90_mm"]["mean"] > 0
        assert (tmp_path / f"filter_seed0_views{v}.pt").exists()

    def no_training(*args, **kwargs):
        raise AssertionError("a rerun must load the checkpointed filters")

    monkeypatch.setattr(exp, "train_filter", no_training)
    again = exp.run(cfg, tmp_path, device=torch.device("cpu"), seeds=[0])
    for v in views:
        a = again["per_view_count"][str(v)]["network"]["sinogram_rel_error"]["mean"]
        b = metrics["per_view_count"][str(v)]["network"]["sinogram_rel_error"]["mean"]
        assert a == pytest.approx(b, rel=1e-6)
