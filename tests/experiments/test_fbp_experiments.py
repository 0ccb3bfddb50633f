"""The fbp-demo, learned-filter and trainable-fbp experiments run at their tiny presets (CI)."""

import dataclasses
import json
import math

import pytest
import torch

from experiments import fbp_demo, learned_filter, registry, trainable_fbp
from operators import ImageGrid
from operators.fbp import is_half_fan_scan
from experiments.common import to_jsonable

CPU = torch.device("cpu")


def _check_claims(metrics):
    assert metrics["claims"]
    for c in metrics["claims"]:
        assert set(c) == {"claim", "held", "numbers"}
        assert isinstance(c["held"], bool) and c["numbers"]
    json.dumps(to_jsonable(metrics))  # JSON-serialisable


@pytest.mark.parametrize("module", [learned_filter, trainable_fbp])
def test_protocol(module):
    registry.validate(module, expected_name=module.NAME)
    assert registry.get(module.NAME).module == module.__name__.split(".")[-1]


def test_learned_filter_tiny(tmp_path):
    cfg = learned_filter.PRESETS["tiny"]
    metrics = learned_filter.run(cfg, tmp_path, device=CPU, seeds=[0])
    for name in ("filter_taps.png", "filter_response.png", "profiles.png", "training.png",
                 "filters.npz"):
        assert (tmp_path / name).stat().st_size > 0
    _check_claims(metrics)
    seed = metrics["per_seed"][0]
    # The naive start is measurably shifted down in a uniform disk, Ram-Lak much less.
    assert seed["disk_mean_error_naive"] < -0.005
    assert abs(seed["disk_mean_error_ram-lak"]) < abs(seed["disk_mean_error_naive"])
    assert seed["dc_bin_naive"] == 0.0 and seed["dc_gain_ram-lak"] > seed["dc_gain_naive"]
    assert seed["steps"] == cfg.epochs * math.ceil(cfg.train_count / cfg.batch_size)
    # Resuming finds the finished training run and reproduces the metrics.
    again = learned_filter.run(cfg, tmp_path, device=CPU, seeds=[0])
    assert again["per_seed"][0]["taps_distance_learned"] == pytest.approx(
        seed["taps_distance_learned"])


def test_trainable_fbp_tiny(tmp_path):
    cfg = trainable_fbp.PRESETS["tiny"]
    metrics = trainable_fbp.run(cfg, tmp_path, device=CPU, seeds=[0, 1])
    for name in ("weights_short_scan.png", "weights_limited_angle.png", "reconstructions.png"):
        assert (tmp_path / name).stat().st_size > 0
    _check_claims(metrics)
    assert len(metrics["per_seed"]) == 2
    assert metrics["summary"]["limited_angle_psnr_gain_db"]["n"] == 2
    for seed in metrics["per_seed"]:
        assert math.isfinite(seed["limited_angle_psnr_learned"])
        assert 0 < seed["short_scan_weights_distance"] < 1


def test_trainable_fbp_geometries_and_bad_config():
    cfg = trainable_fbp.PRESETS["tiny"]
    grid, short, limited = trainable_fbp.geometries(cfg)
    assert short.detector == limited.detector == "flat"
    arc_short = math.pi + 2 * short.half_fan_angle
    assert math.radians(cfg.limited_arc_deg) < arc_short
    assert short.fov_radius() >= grid.shape[0] / math.sqrt(2) - 1e-9
    with pytest.raises(ValueError, match="limited_arc_deg"):
        trainable_fbp.geometries(dataclasses.replace(cfg, limited_arc_deg=250.0))
    with pytest.raises(TypeError, match="config"):
        trainable_fbp.run({}, None, device=CPU, seeds=[0])
    with pytest.raises(ValueError, match="seeds"):
        learned_filter.run(learned_filter.PRESETS["tiny"], "unused", device=CPU, seeds=[])


def test_fbp_demo_tiny_recovers_the_disk_in_every_geometry_half_fan_included(tmp_path):
    """The half-fan geometry sees only part of the disk in every view (its per-view field of
    view is smaller than the disk), yet FBP recovers it like the others (before Wang's weights
    and the symmetric detector: twice its value)."""
    cfg = fbp_demo.PRESETS["tiny"]
    half_fan = fbp_demo.geometries(cfg)["fan flat half-fan"]
    grid = ImageGrid((cfg.size, cfg.size), (cfg.pixel, cfg.pixel))
    assert is_half_fan_scan(half_fan) and half_fan.scan_fov_radius() >= grid.radius
    assert half_fan.fov_radius() < 0.8 * 0.45 * cfg.size * cfg.pixel  # the disk's radius
    metrics = fbp_demo.run(cfg, tmp_path, device=CPU)
    _check_claims(metrics)
    assert len(metrics["geometries"]) == 5
    assert all(c["held"] for c in metrics["claims"])
    assert metrics["geometries"]["fan flat half-fan"]["disk_max_deviation"] < 0.02
