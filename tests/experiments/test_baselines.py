"""The baselines experiment: protocol, tiny run via the runner, outputs, validation-only choice."""

import json
from dataclasses import replace

import pytest
import torch

from experiments import baselines, registry
from experiments.runner import run_experiment


def test_protocol_and_presets():
    registry.validate(baselines, expected_name="baselines")
    full = baselines.PRESETS["full"]
    assert (full.size, full.views, full.detectors, full.noise) == (128, 30, 183, 0.05)
    assert full.pixel_size == 1.0
    quick = baselines.PRESETS["quick"]
    assert quick.validation_images == 20 and quick.test_images == 50
    assert baselines.PRESETS["tiny"].size == 64


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="tv_lams"):
        baselines.Config(tv_lams=(1.0, -2.0))
    with pytest.raises(ValueError, match="fbp_filters"):
        baselines.Config(fbp_filters=("box",))
    with pytest.raises(ValueError, match="test_images"):
        baselines.Config(test_images=0)


def test_splits_are_disjoint_and_seeded():
    cfg = baselines.PRESETS["tiny"]
    y_val, x_val = baselines.load_split(cfg, "validation", 2, seed=0)
    y_test, x_test = baselines.load_split(cfg, "test", 2, seed=0)
    again, _ = baselines.load_split(cfg, "test", 2, seed=0)
    assert y_val.shape == (2, cfg.views, cfg.detectors) and x_val.shape == (2, 64, 64)
    assert torch.equal(y_test, again)
    assert not torch.equal(x_val, x_test)
    assert float(x_test.min()) >= 0.0 and float(x_test.max()) <= 1.0 + 1e-6


def test_ct_small_sinogram_is_not_from_the_reconstruction_operator():
    import operators as ops

    cfg = replace(baselines.PRESETS["tiny"], noise=0.0, noise_realisations=1)
    grid, geometry, mu, sino = baselines.ct_small_case(cfg, torch.Generator().manual_seed(0))
    assert sino.shape == (1, cfg.views, 183) and mu.shape == (128, 128)
    coarse = ops.XRayTransform(grid, geometry)(mu.double())
    rel = float((coarse - sino[0].double()).norm() / coarse.norm())
    assert 1e-5 < rel < 1e-2  # a different discretisation of the same object


def test_tiny_run_writes_metrics_claims_and_figures(tmp_path):
    outcome = run_experiment("baselines", tmp_path, preset="tiny", device="cpu", seeds=1)
    assert outcome.status == "finished", outcome
    folder = tmp_path / "baselines"
    metrics = json.loads((folder / "metrics.json").read_text())
    for png in ("baselines_examples.png", "baselines_validation.png"):
        assert (folder / png).stat().st_size > 10_000
    assert (folder / "selection.json").exists()

    assert set(metrics["results"]) == {"ellipses", "shepp_logan", "ct_small"}
    for case in metrics["results"].values():
        for method in baselines.METHODS:
            r = case["methods"][method]
            assert r["psnr"]["n"] == case["images"]
            assert 5.0 < r["psnr"]["mean"] < 60.0
            assert -1.0 <= r["ssim"]["mean"] <= 1.0
            assert r["seconds_per_image"] > 0
    chosen = metrics["chosen"]
    cfg = baselines.PRESETS["tiny"]
    assert chosen["tv"]["lam"] in cfg.tv_lams
    assert 1 <= chosen["sirt"]["iterations"] <= cfg.sirt_max_iterations
    assert 1 <= chosen["cgls"]["iterations"] <= cfg.cgls_max_iterations
    assert (chosen["fbp"]["filter"], chosen["fbp"]["cutoff"]) in [
        (f, c) for f in cfg.fbp_filters for c in cfg.fbp_cutoffs]
    # the choice is the validation argmax, recorded with its grid
    grid = metrics["validation"]["tv"]["grid"]
    assert chosen["tv"]["validation_psnr"] == max(r["psnr"] for r in grid)
    curve = metrics["validation"]["sirt"]["curve"]
    assert len(curve) == cfg.sirt_max_iterations
    assert chosen["sirt"]["validation_psnr"] == max(curve)

    claims = metrics["claims"]
    assert len(claims) >= 3
    for c in claims:
        assert isinstance(c["claim"], str) and isinstance(c["held"], bool) and c["numbers"]
    first = claims[0]
    assert "TV is above FBP" in first["claim"]
    assert first["held"] == (first["numbers"]["tv_psnr"] > first["numbers"]["fbp_psnr"])
    assert "| TV |" in metrics["table_markdown"]

    # a second run with the same config is skipped; the runner keeps the metrics
    again = run_experiment("baselines", tmp_path, preset="tiny", device="cpu", seeds=1)
    assert again.status == "skipped"


def test_missing_pydicom_skips_ct_small_only(tmp_path, monkeypatch):
    def no_pydicom(config, generator):
        raise ModuleNotFoundError("No module named 'pydicom'", name="pydicom")

    monkeypatch.setattr(baselines, "ct_small_case", no_pydicom)
    cfg = replace(baselines.PRESETS["tiny"], validation_images=2, test_images=2, oracle=False,
                  tv_lams=(1.0, 2.0), tv_iterations=20, sirt_max_iterations=20)
    metrics = baselines.run(cfg, tmp_path, device=torch.device("cpu"), seeds=[0])
    assert set(metrics["results"]) == {"ellipses", "shepp_logan"}
    assert "pydicom" in metrics["skipped"]["ct_small"]
    assert not any("CT_small" in c["claim"] for c in metrics["claims"])
    assert (tmp_path / "baselines_examples.png").exists()
