"""Tests of the limited-angle robustness study (issue 7): its measures and a tiny run."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from experiments import limited_angle_measures as lm
from operators import ImageGrid


def _disk(shape, center_rc, radius, inside=40.0, outside=-1000.0):
    r, c = np.mgrid[:shape[0], :shape[1]]
    img = np.full(shape, outside)
    img[(r - center_rc[0]) ** 2 + (c - center_rc[1]) ** 2 <= radius ** 2] = inside
    return img


# ------------------------------------------------------------------------------ outline
def test_body_mask_fills_holes_and_keeps_the_largest_component():
    img = _disk((64, 64), (32, 32), 20)
    img[25:35, 25:35] = -850.0          # a "lung" inside the body
    img[2:5, 2:5] = 40.0                # a small blob in the air
    mask = lm.body_mask(img)
    assert mask[30, 30] and not mask[3, 3]
    assert mask.sum() == (_disk((64, 64), (32, 32), 20) > -500).sum()


@pytest.mark.parametrize("shift", [0, 2, 5])
@pytest.mark.parametrize("spacing", [(1.0, 1.0), (2.5, 2.5)])
def test_outline_shift_of_a_translated_disk_is_the_translation(shift, spacing):
    ref = _disk((80, 80), (40, 40), 20)
    rec = _disk((80, 80), (40, 40 + shift), 20)
    d = lm.outline_shift(rec, ref, spacing)
    # Hausdorff distance of two translated disks = the translation (pixel-quantised)
    assert d["max_mm"] == pytest.approx(shift * spacing[1], abs=0.5 * spacing[1])
    assert d["mean_mm"] <= d["max_mm"] + 1e-9
    if shift == 0:
        assert d["mean_mm"] == 0.0 and d["max_mm"] == 0.0


@pytest.mark.parametrize("grow", [1, 3, 6])
def test_outline_shift_of_a_grown_disk_is_the_growth_everywhere(grow):
    ref = _disk((90, 90), (45, 45), 25)
    rec = _disk((90, 90), (45, 45), 25 + grow)
    d = lm.outline_shift(rec, ref, (2.0, 2.0))
    assert d["mean_mm"] == pytest.approx(2.0 * grow, abs=0.6 * 2.0)
    assert d["max_mm"] == pytest.approx(2.0 * grow, abs=1.0 * 2.0)


def test_outline_shift_without_body_in_the_reconstruction_is_infinite():
    ref = _disk((32, 32), (16, 16), 8)
    d = lm.outline_shift(np.full((32, 32), -1000.0), ref, (1.0, 1.0))
    assert math.isinf(d["mean_mm"]) and math.isinf(d["max_mm"])
    with pytest.raises(ValueError, match="ref_hu has no pixel"):
        lm.outline_shift(ref, np.full((32, 32), -1000.0), (1.0, 1.0))


def test_outline_shift_checks_its_arguments():
    ref = _disk((32, 32), (16, 16), 8)
    with pytest.raises(ValueError, match="spacing"):
        lm.outline_shift(ref, ref, (0.0, 1.0))
    with pytest.raises(ValueError, match="same shape"):
        lm.outline_shift(ref[:-1], ref, (1.0, 1.0))
    with pytest.raises(ValueError, match=r"rec_hu must be a single image"):
        lm.outline_shift(ref[None], ref, (1.0, 1.0))


# ------------------------------------------------------------------------------- lesion
def _lesion_image(grid, center, radius, contrast, background=-850.0):
    x, y = grid.meshgrid()
    img = np.full(grid.shape, background)
    img[np.hypot(x - center[0], y - center[1]) <= radius] += contrast
    return img


def test_lesion_contrast_of_a_perfect_reconstruction_is_one_and_of_a_missing_lesion_zero():
    grid = ImageGrid(shape=(64, 64), spacing=(2.0, 2.0))
    center, radius = (10.0, -6.0), 9.0
    ref = _lesion_image(grid, center, radius, 850.0)
    core, ring = lm.lesion_regions(center, radius, grid)
    assert core.any() and ring.any() and not (core & ring).any()
    assert lm.lesion_contrast(ref, ref, core, ring) == pytest.approx(1.0)
    assert lm.lesion_contrast(np.full(grid.shape, -850.0), ref, core, ring) == pytest.approx(0.0)
    half = _lesion_image(grid, center, radius, 425.0)
    assert lm.lesion_contrast(half, ref, core, ring) == pytest.approx(0.5)
    # a global offset changes nothing
    assert lm.lesion_contrast(ref + 37.0, ref, core, ring) == pytest.approx(1.0)


def test_contrast_to_noise_and_detection():
    grid = ImageGrid(shape=(64, 64), spacing=(2.0, 2.0))
    center, radius = (0.0, 0.0), 10.0
    ref = _lesion_image(grid, center, radius, 100.0)
    core, ring = lm.lesion_regions(center, radius, grid)
    # flat background: std floored at 1 HU
    assert lm.contrast_to_noise(ref, core, ring) == pytest.approx(100.0)
    noisy = ref + np.random.default_rng(0).normal(0.0, 100.0, ref.shape)
    cnr = lm.contrast_to_noise(noisy, core, ring)
    assert 0.3 < cnr < 2.0
    # with the truth, the noise is the error's fluctuation: anatomy in the ring does not count
    crossed = ref.copy()
    crossed[ring & (np.arange(64)[None, :] > 32)] = -780.0   # other tissue in half the ring
    assert lm.contrast_to_noise(crossed, core, ring) < 3.0
    assert lm.contrast_to_noise(crossed, core, ring, ref_hu=crossed) > 30.0
    noisy_crossed = crossed + (noisy - ref)
    assert lm.contrast_to_noise(noisy_crossed, core, ring, ref_hu=crossed) == pytest.approx(
        lm.contrast_to_noise(noisy, core, ring, ref_hu=ref), rel=0.5)
    assert lm.lesion_detected(1.0, 100.0)
    assert not lm.lesion_detected(1.0, cnr)
    assert not lm.lesion_detected(0.2, 100.0)
    assert not lm.lesion_detected(1.0, -5.0)           # wrong sign
    assert lm.lesion_detected(1.0, -5.0, true_contrast_sign=-1.0)


def test_lesion_contrast_needs_true_contrast():
    grid = ImageGrid(shape=(32, 32), spacing=(1.0, 1.0))
    core, ring = lm.lesion_regions((0.0, 0.0), 4.0, grid)
    flat = np.zeros(grid.shape)
    with pytest.raises(ValueError, match="no contrast"):
        lm.lesion_contrast(flat, flat, core, ring)
    with pytest.raises(TypeError, match="boolean"):
        lm.lesion_contrast(flat, flat, core.astype(float), ring)


def test_lesion_regions_of_a_subpixel_lesion_keep_the_nearest_pixel():
    grid = ImageGrid(shape=(16, 16), spacing=(4.0, 4.0))
    core, ring = lm.lesion_regions((2.0, 2.0), 1.0, grid)
    assert core.sum() >= 1 and ring.sum() > 0


# ---------------------------------------------------------------------------------- air
def test_air_error_counts_only_pixels_away_from_the_body():
    ref = _disk((64, 64), (32, 32), 15)
    body = lm.body_mask(ref)
    assert lm.air_error(ref, body, (1.0, 1.0), margin_mm=3.0) == 0.0
    rec = ref.copy()
    rec[32, 32 + 16] = 0.0          # one pixel from the body: inside the margin, ignored
    assert lm.air_error(rec, body, (1.0, 1.0), margin_mm=3.0) == 0.0
    rec[2, 2] = 0.0                 # far in the air
    far = ndimage.distance_transform_edt(~body) > 3.0
    assert far[2, 2] and not far[32, 32 + 16]
    expected = 1000.0 / np.count_nonzero(far)
    assert lm.air_error(rec, body, (1.0, 1.0), margin_mm=3.0) == pytest.approx(expected)
    # the margin is in mm: with 2 mm pixels the same 3 mm margin is 1.5 pixels
    far2 = ndimage.distance_transform_edt(~body, sampling=(2.0, 2.0)) > 3.0
    assert lm.air_error(rec, body, (2.0, 2.0), margin_mm=3.0) == pytest.approx(
        1000.0 / np.count_nonzero(far2))
    with pytest.raises(ValueError, match="margin_mm"):
        lm.air_error(rec, body, (1.0, 1.0), margin_mm=-1.0)


def test_psnr_ssim_body_of_identical_images():
    ref = _disk((32, 32), (16, 16), 10)
    body = lm.body_mask(ref)
    m = lm.psnr_ssim_body(ref, ref, body)
    assert math.isinf(m["psnr"]) and m["ssim"] == pytest.approx(1.0)
    m = lm.psnr_ssim_body(ref + 20.0, ref, body)
    assert m["psnr"] == pytest.approx(20 * math.log10(2000.0 / 20.0))


# --------------------------------------------------------------------------- the study
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import torch

    from experiments import limited_angle as la

    out = tmp_path_factory.mktemp("limited_angle")
    metrics = la.run(la.PRESETS["tiny"], out, device=torch.device("cpu"), seeds=[0])
    return la, out, metrics


def test_tiny_run_writes_metrics_claims_and_figures(tiny_run):
    la, out, metrics = tiny_run
    for name in ("fig8.png", "differences.png", "measures_vs_photons.png", "ct_small.png"):
        assert (out / name).stat().st_size > 1000, name
    assert set(metrics["methods"]) == set(la.METHODS)
    claims = metrics["claims"]
    assert len(claims) == 5
    for c in claims:
        assert isinstance(c["held"], bool) and c["numbers"]
        assert "U-Net" in c["claim"]
    cond = metrics["methods"]["unet"]
    assert set(cond) == {"noise_free", "poisson_1e5", "poisson_1e3", "adversarial"}
    row = cond["noise_free"]
    for key in ("psnr", "ssim", "outline_mean_mm", "outline_max_mm", "air_hu",
                "lesion_contrast", "lesion_detected", "ct_small_psnr"):
        assert key in row and row[key]["n"] == 1, key
    adv = cond["adversarial"]
    assert adv["relative_l2"]["mean"] <= 0.01 * (1 + 1e-5)
    assert "psnr_clean" in adv
    # each trained model has the trainer's checkpoints and a cached evaluation
    for m in la.LEARNED:
        folder = out / "models" / m / "seed0"
        assert (folder / "checkpoint.pt").is_file() and (folder / "eval.json").is_file()
    # the json is serialisable as the runner writes it
    from experiments.common import to_jsonable
    import json
    json.dumps(to_jsonable(metrics))


def test_tiny_run_resumes_from_its_cache(tiny_run):
    import torch

    la, out, metrics = tiny_run
    again = la.run(la.PRESETS["tiny"], out, device=torch.device("cpu"), seeds=[0])
    assert again["methods"]["lpd"]["noise_free"]["psnr"] == \
        metrics["methods"]["lpd"]["noise_free"]["psnr"]
    assert again["fits"]["unet"][0]["steps"] == metrics["fits"]["unet"][0]["steps"]


def test_cached_evaluation_is_redone_when_the_model_trained_further(tiny_run):
    import json

    la, out, metrics = tiny_run
    path = out / "models" / "unet" / "seed0" / "eval.json"
    cached = json.loads(path.read_text())
    assert cached["stamp"] == {"model": metrics["fits"]["unet"][0]["steps"],
                               "measures": la.MEASURES_VERSION}
    cached["stamp"]["model"] = -1
    cached["conditions"]["noise_free"]["psnr"] = 1234.0
    path.write_text(json.dumps(cached))
    import torch
    again = la.run(la.PRESETS["tiny"], out, device=torch.device("cpu"), seeds=[0])
    assert again["methods"]["unet"]["noise_free"]["psnr"]["mean"] == pytest.approx(
        metrics["methods"]["unet"]["noise_free"]["psnr"]["mean"])


def test_fbp_noise_free_beats_fbp_with_few_photons(tiny_run):
    la, out, metrics = tiny_run
    fbp = metrics["methods"]["fbp"]
    assert fbp["noise_free"]["psnr"]["mean"] > fbp["poisson_1e3"]["psnr"]["mean"]


def test_config_rejects_bad_values():
    from experiments import limited_angle as la

    with pytest.raises(ValueError, match="arc_deg"):
        la.Config(arc_deg=400.0)
    with pytest.raises(ValueError, match="methods"):
        la.Config(methods=("unet", "magic"))
    with pytest.raises(ValueError, match="photons"):
        la.Config(photons=(0.0,))
    with pytest.raises(ValueError, match="short scan"):
        la.setup_geometry(la.Config(size=32, arc_deg=250.0))


@pytest.mark.parametrize("arc", [120.0, 150.0, None])
def test_geometry_options(arc):
    from experiments import limited_angle as la
    from operators import FanGeometry

    grid, geom = la.setup_geometry(la.Config(size=32, pixel_mm=10.0, arc_deg=arc,
                                             views_per_degree=0.25))
    assert isinstance(geom, FanGeometry) and geom.detector == "flat"
    span = math.degrees(float(np.ptp(geom.angle_array())))
    if arc is None:
        assert span == pytest.approx(180 + 2 * math.degrees(geom.half_fan_angle))
    else:
        assert span == pytest.approx(arc, rel=0.05)


def test_adversarial_perturbation_is_bounded_and_increases_the_error():
    import torch

    from experiments import limited_angle as la
    from recon.data import hu_to_mu

    gen = torch.Generator().manual_seed(0)
    y = torch.rand(2, 8, 8, generator=gen)
    weight = torch.rand(8, 8, generator=gen) + 0.5

    def fn(v):  # a differentiable "reconstruction" whose output has the shape of the truth
        return v * weight

    truth_hu = torch.zeros(2, 8, 8)
    body = torch.ones(2, 8, 8, dtype=torch.bool)
    ya = la.adversarial(fn, y, truth_hu, body, rel=0.05, steps=5, device=torch.device("cpu"))
    rel = (ya - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)
    assert bool((rel <= 0.05 * (1 + 1e-5)).all()) and bool((rel > 0.04).all())
    target = hu_to_mu(truth_hu)
    err = lambda v: ((fn(v) - target) ** 2).sum()
    assert err(ya) > err(y)


def test_short_scan_with_a_subset_of_methods(tmp_path):
    import dataclasses

    import torch

    from experiments import limited_angle as la

    config = dataclasses.replace(la.PRESETS["tiny"], arc_deg=None,
                                 methods=("fbp", "unet", "tfbp"),
                                 ct_small=False, adversarial_rel=0.0)
    metrics = la.run(config, tmp_path, device=torch.device("cpu"), seeds=[0, 1])
    assert set(metrics["methods"]) == {"fbp", "unet", "tfbp"}
    assert metrics["methods"]["unet"]["noise_free"]["psnr"]["n"] == 2
    assert metrics["geometry"]["first_to_last_view_deg"] > 180.0
    assert "adversarial" not in metrics["methods"]["unet"]
    assert len(metrics["claims"]) == 4
    assert (tmp_path / "models" / "unet" / "seed1" / "best.pt").is_file()
    assert not (tmp_path / "ct_small.png").exists()


def test_outline_shift_mean_is_symmetric_over_both_outlines():
    ref = _disk((80, 80), (40, 40), 20)
    rec = ref.copy()
    rec[38:43, 60:75] = 40.0                     # a spike sticking out of the body
    a = lm.outline_shift(rec, ref, (1.0, 1.0))
    b = lm.outline_shift(ref, rec, (1.0, 1.0))
    assert a["mean_mm"] == pytest.approx(b["mean_mm"], rel=1e-12)
    # and it is the mean over the union of both distance sets (independent computation)
    lr = lm.outline(lm.body_mask(ref))
    lc = lm.outline(lm.body_mask(rec))
    d = np.concatenate([ndimage.distance_transform_edt(~lr)[lc],
                        ndimage.distance_transform_edt(~lc)[lr]])
    assert a["mean_mm"] == pytest.approx(d.mean(), rel=1e-12)


def test_lesion_core_excludes_the_partial_volume_rim():
    grid = ImageGrid((33, 33), (1.0, 1.0))
    core, ring = lm.lesion_regions((0.0, 0.0), 3.0, grid)
    x, y = grid.meshgrid()
    dist = np.hypot(x, y)
    assert core.sum() == int((dist <= 2.5).sum()) == 21
    assert dist[core].max() <= 2.5
    assert dist[ring].min() >= 4.0            # default gap: one pixel


def _summary(outline_clean, outline_noisy, config):
    """A summary as :func:`summarise` writes it, with only the outline distance varying."""
    from experiments import limited_angle as la
    noisy = la._photon_key(min(config.photons))
    base = {"psnr": 30.0, "lesion_detected": 0.5, "air_hu": 10.0}
    out = {}
    for m in ("unet",) + la.KNOWN_OPERATOR:
        out[m] = {}
        for cond, outline in ((la.NOISE_FREE, outline_clean[m]), (noisy, outline_noisy[m])):
            out[m][cond] = {k: {"mean": v} for k, v in
                            {**base, "outline_mean_mm": outline, "outline_max_mm": outline}
                            .items()}
    return out


def test_an_undefined_change_decides_no_claim():
    """A network with no body outline (-500 HU) in either condition has an outline distance
    of inf in both, so its change is inf - inf = NaN; a comparison with NaN is always False,
    which used to decide the claim silently. It is now not held, and says for whom."""
    from experiments import limited_angle as la
    config = la.PRESETS["tiny"]
    inf = math.inf
    clean = {"unet": 2.0, "tfbp": 2.0, "vn": 2.0, "lpd": 2.0}

    def outline_claim(noisy, clean=clean):
        claims = la.make_claims(_summary(clean, noisy, config), config, "test")
        return next(c for c in claims if "outline" in c["claim"])

    shown = outline_claim({"unet": 9.0, "tfbp": 2.5, "vn": 2.5, "lpd": 3.0})
    assert shown["held"] and shown["numbers"]["change_undefined_for"] == []
    lost = outline_claim({"unet": 9.0, "tfbp": 2.5, "vn": 2.5, "lpd": inf})  # lost under noise
    assert not lost["held"] and lost["numbers"]["change_undefined_for"] == []
    never = outline_claim({"unet": 9.0, "tfbp": 2.5, "vn": 2.5, "lpd": inf},
                          clean={**clean, "lpd": inf})
    assert not never["held"] and never["numbers"]["change_undefined_for"] == ["lpd"]
