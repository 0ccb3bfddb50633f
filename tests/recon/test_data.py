"""Units, random ellipses, the chest phantom, CT_small.dcm and the synthetic datasets."""

import math

import numpy as np
import pytest
import torch

import operators as ops
from recon.data import (MU_WATER, ChestDataset, EllipsesDataset, GaussianNoise, Lesion,
                        PoissonNoise, chest_phantom, exact_sinogram, ct_small, ct_small_grid, ct_small_mu,
                        hu_to_mu, make_dataset, mu_to_hu, random_ellipses, random_lesion,
                        rasterize)
from recon.data.datasets import SPLITS, item_seed
from recon.data.ellipses import ellipse_bounding_box

GRID = ops.ImageGrid((64, 64))
GEOM = ops.ParallelGeometry.full_scan(12, 91, 1.0)


# --- units -------------------------------------------------------------------------------------

def test_hu_mu_fixed_points():
    assert hu_to_mu(-1000.0) == 0.0
    assert hu_to_mu(0.0) == pytest.approx(MU_WATER)
    assert MU_WATER == 0.0192
    assert mu_to_hu(0.0) == pytest.approx(-1000.0)
    assert mu_to_hu(2 * MU_WATER) == pytest.approx(1000.0)
    assert hu_to_mu(1000.0, mu_water=0.02) == pytest.approx(0.04)


@pytest.mark.parametrize("make", [torch.tensor, np.asarray])
def test_hu_mu_round_trip(make):
    hu = make([[-1000.0, -850.0, 0.0], [40.0, 400.0, 3000.0]])
    back = mu_to_hu(hu_to_mu(hu))
    assert type(back) is type(hu)
    assert np.allclose(np.asarray(back), np.asarray(hu), atol=1e-9)
    ints = make([[-1000, 0]])
    assert np.allclose(np.asarray(hu_to_mu(ints)), [[0.0, MU_WATER]])


@pytest.mark.parametrize("bad", [0.0, -0.01, float("nan")])
def test_hu_mu_bad_water(bad):
    with pytest.raises(ValueError, match="mu_water"):
        hu_to_mu(0.0, mu_water=bad)
    with pytest.raises(ValueError, match="mu_water"):
        mu_to_hu(0.0, mu_water=bad)


# --- random ellipses ---------------------------------------------------------------------------

def test_fast_rasterize_equals_reference():
    # per-ellipse pixel classification (inside / outside / boundary) gives the same averages
    p = random_ellipses(np.random.default_rng(3), 32.0)
    small = ops.EllipsePhantom((ops.Ellipse(0.7, (0.3, -0.2), (0.2, 0.1), 0.3),))  # < 1 pixel
    for grid, ss in [(GRID, 2), (ops.ImageGrid((33, 47), (0.9, 1.3)), 3), (GRID, 1), (GRID, 5)]:
        assert torch.allclose(rasterize(p, grid, ss), p.rasterize(grid, ss), rtol=0, atol=1e-13)
        assert torch.allclose(rasterize(small, grid, ss), small.rasterize(grid, ss),
                              rtol=0, atol=1e-13)
    with pytest.raises(ValueError, match="supersample"):
        rasterize(p, GRID, 0)


@pytest.mark.parametrize("geom", [
    GEOM,
    ops.ParallelGeometry.limited_angle(math.pi / 2, 7, 50, 0.8),
    ops.FanGeometry.full_scan(9, 70, 1.3, source_to_isocenter=90.0, source_to_detector=160.0),
    ops.FanGeometry.full_scan(9, 70, 1.3, source_to_isocenter=90.0, source_to_detector=160.0,
                              detector="curved"),
])
def test_exact_sinogram_equals_reference(geom):
    p = random_ellipses(np.random.default_rng(8), 30.0)
    ref = p.sinogram(geom)
    got = exact_sinogram(p, geom, chunk=5)
    assert got.shape == geom.sinogram_shape and got.dtype == torch.float64
    assert torch.allclose(got, ref, rtol=1e-12, atol=1e-12)
    assert float(ref.abs().max()) > 1.0


def test_random_ellipses_in_unit_range_and_disk():
    grid_fine = ops.ImageGrid((96, 96), (0.75, 0.75))
    maxima = []
    for seed in range(12):
        p = random_ellipses(np.random.default_rng(seed), 32.0)
        assert 0 < len(p.ellipses) <= 70
        for img in (rasterize(p, GRID, 2), rasterize(p, grid_fine, 1)):
            assert img.min() >= -1e-12 and img.max() <= 1 + 1e-12
        maxima.append(float(rasterize(p, GRID, 2).max()))
        # point values on a random cloud too (the bound is for every point, not pixels only)
        xy = np.random.default_rng(100 + seed).uniform(-32, 32, (2, 20000))
        v = p.image(xy[0], xy[1])
        assert v.min() >= -1e-12 and v.max() <= 1 + 1e-12
        for e in p.ellipses:  # inside the disk of radius 32 mm
            assert math.hypot(*e.center) + max(e.axes) <= 32.0 + 1e-9
    assert np.mean(maxima) > 0.85  # the normalisation is not uselessly conservative


def test_random_ellipses_reproducible_and_varied():
    a = random_ellipses(np.random.default_rng(5), 20.0)
    b = random_ellipses(np.random.default_rng(5), 20.0)
    c = random_ellipses(np.random.default_rng(6), 20.0)
    assert a == b
    assert a != c
    counts = [len(random_ellipses(np.random.default_rng(s), 20.0, mean_count=10).ellipses)
              for s in range(40)]
    assert 7 < np.mean(counts) < 13  # Poisson(10)


def test_random_ellipses_errors():
    with pytest.raises(TypeError, match="rng"):
        random_ellipses(0, 10.0)
    with pytest.raises(ValueError, match="radius"):
        random_ellipses(np.random.default_rng(0), 0.0)
    with pytest.raises(ValueError, match="value_range"):
        random_ellipses(np.random.default_rng(0), 1.0, value_range=(1.0, 0.5))


def test_bounding_box():
    e = ops.Ellipse(1.0, (0.0, 0.0), (3.0, 1.0), math.pi / 2)
    wx, wy = ellipse_bounding_box(e)
    assert wx == pytest.approx(1.0) and wy == pytest.approx(3.0)


# --- chest phantom -----------------------------------------------------------------------------

def test_chest_canonical_hu_values():
    c = chest_phantom()
    by_name = {s.name: s for s in c.structures}
    assert c.hu_at(*by_name["lung"].ellipse.center) == pytest.approx(-850.0)
    assert c.hu_at(*by_name["vertebral body"].ellipse.center) == pytest.approx(400.0)
    assert c.hu_at(*by_name["spinal canal"].ellipse.center) == pytest.approx(10.0)
    assert c.hu_at(*by_name["heart"].ellipse.center) == pytest.approx(45.0)
    assert c.hu_at(0.0, -0.0) == pytest.approx(45.0)  # heart region contains the centre
    assert c.hu_at(300.0, 0.0) == pytest.approx(-1000.0)  # air
    a = c.body.axes[0]
    assert c.hu_at(a - 1.0, 0.0) == pytest.approx(-100.0)  # fat layer
    names = {s.name for s in c.structures}
    assert {"body", "lung", "heart", "vertebral body", "rib", "vessel", "aorta"} <= names
    assert sum(s.name == "rib" for s in c.structures) == 10


@pytest.mark.parametrize("seed", [None, 1, 2])
def test_chest_structures_do_not_overlap(seed):
    """Every point value is one of the stated HU values: no two siblings overlap."""
    c = chest_phantom(None if seed is None else np.random.default_rng(seed))
    allowed = np.array([-1000.0] + [s.hu for s in c.structures])
    xy = np.random.default_rng(7).uniform(-170, 170, (2, 40000))
    hu = mu_to_hu(c.phantom.image(xy[0], xy[1]), c.mu_water)
    dist = np.abs(hu[:, None] - allowed[None, :]).min(axis=1)
    assert dist.max() < 1e-6


def test_chest_random_variation_reproducible():
    a = chest_phantom(np.random.default_rng(4))
    b = chest_phantom(np.random.default_rng(4))
    c = chest_phantom(np.random.default_rng(5))
    assert a.phantom == b.phantom
    assert a.phantom != c.phantom
    assert a.phantom != chest_phantom().phantom


def test_chest_lesion_and_masks():
    c = chest_phantom()
    lung = [s for s in c.structures if s.name == "lung"][0].ellipse
    lesion = Lesion(center=lung.center, diameter=12.0, contrast=850.0)
    cl = chest_phantom(lesion=lesion)
    assert cl.lesion == lesion
    assert cl.hu_at(*lung.center) == pytest.approx(0.0)  # -850 + 850
    assert cl.hu_at(lung.center[0] + 5.0, lung.center[1]) == pytest.approx(0.0)
    assert cl.hu_at(lung.center[0] + 7.0, lung.center[1]) != pytest.approx(0.0)
    grid = ops.ImageGrid((128, 128), (2.6, 2.6))
    img = cl.hu_image(grid)
    assert img.shape == (128, 128) and img.dtype == torch.float32
    assert img.min() >= -1000.0 - 1e-3 and img.max() < 1000.0
    body = cl.body_mask(grid)
    assert body.dtype == torch.bool and 0.4 < body.float().mean() < 0.9
    outside = img[~body]  # air, except partial volume in pixels cut by the outline
    assert float((outside == -1000.0).float().mean()) > 0.9 and float(outside.max()) < -90
    lm = cl.lesion_mask(grid)
    assert 10 <= int(lm.sum()) <= 20  # pi 6^2 / 2.6^2 ~ 17 pixels
    assert abs(float(img[lm].mean())) < 60
    assert cl.with_lesion(None).lesion is None
    with pytest.raises(ValueError, match="no lesion"):
        c.lesion_mask(grid)
    with pytest.raises(ValueError, match="unknown structure"):
        c.mask("liver", grid)


def test_chest_sinogram_is_exact_line_integral():
    c = chest_phantom(body_axes=(40.0, 29.0))
    grid = ops.ImageGrid((96, 96), (1.0, 1.0))
    geom = ops.ParallelGeometry.full_scan(8, 141, 1.0)
    sino = c.sinogram(geom, torch.float64)
    assert torch.allclose(sino, c.phantom.sinogram(geom), rtol=1e-12, atol=1e-12)
    A = ops.XRayTransform(grid, geom)
    approx = A(c.mu_image(grid, 4, torch.float64))
    rel = float((approx - sino).norm() / sino.norm())
    assert rel < 0.05  # discrete projector of the image ~ exact line integrals


def test_chest_random_lesion():
    c = chest_phantom(np.random.default_rng(0))
    les = random_lesion(c, np.random.default_rng(1), diameter=(8.0, 8.0), contrast=(850, 850))
    assert les.diameter == 8.0
    cl = c.with_lesion(les)
    assert cl.hu_at(*les.center) == pytest.approx(
        c.hu_at(*les.center) + 850.0)
    with pytest.raises(ValueError, match="unknown region"):
        random_lesion(c, np.random.default_rng(1), region="kidney")


def test_chest_errors():
    with pytest.raises(ValueError, match="inside the body"):
        chest_phantom(lesion=Lesion((400.0, 0.0), 10.0, 100.0))
    with pytest.raises(ValueError, match="diameter"):
        Lesion((0.0, 0.0), -1.0, 100.0)
    with pytest.raises(ValueError, match="contrast"):
        Lesion((0.0, 0.0), 5.0, float("nan"))
    with pytest.raises(ValueError, match="center"):
        Lesion((0.0,), 5.0, 10.0)
    with pytest.raises(ValueError, match="body_axes"):
        chest_phantom(body_axes=(0.0, 10.0))
    with pytest.raises(TypeError, match="rng"):
        chest_phantom(rng=3)


# --- CT_small.dcm ------------------------------------------------------------------------------

def test_ct_small_in_hu():
    hu, spacing = ct_small()
    assert hu.shape == (128, 128) and hu.dtype == torch.float32
    assert spacing == pytest.approx((0.661468, 0.661468))
    # a crop through the thoracic spine: lung at the top corners (no outside air in this slice)
    lung = hu[:20, :5]
    assert -900 < float(lung.mean()) < -800
    assert float(hu.min()) == pytest.approx(128 - 1024)  # smallest stored value 128
    assert -50 < float(hu.median()) < 100                # mostly soft tissue
    muscle = hu[80:92, 100:115]                           # paraspinal muscle
    assert 0 < float(muscle.mean()) < 100
    fat = hu[120:128, 50:70]                              # subcutaneous fat of the back
    assert -150 < float(fat.mean()) < -50
    assert float(hu.max()) > 1000                         # cortical bone of the vertebra
    mu, sp = ct_small_mu()
    assert sp == spacing
    assert torch.allclose(mu, hu_to_mu(hu).clamp_min(0))
    assert ct_small_grid() == ops.ImageGrid((128, 128), spacing)


# --- datasets ----------------------------------------------------------------------------------

def test_item_seed_disjoint_by_split():
    states = {split: item_seed(0, split, 3, "ellipses").generate_state(4) for split in SPLITS}
    assert len({tuple(s) for s in states.values()}) == 3
    assert not np.array_equal(item_seed(0, "train", 3, "ellipses").generate_state(4),
                              item_seed(0, "train", 3, "chest").generate_state(4))
    with pytest.raises(ValueError, match="split"):
        item_seed(0, "training", 0)


def test_ellipses_dataset_reproducible_and_exact():
    ds = EllipsesDataset("train", 5, GRID, GEOM, noise="gaussian:0.05", seed=1)
    sino, img = ds[2]
    assert sino.shape == (12, 91) and img.shape == (64, 64)
    assert sino.dtype == torch.float32 and img.dtype == torch.float32
    assert 0 <= float(img.min()) and float(img.max()) <= 1
    again = EllipsesDataset("train", 5, GRID, GEOM, noise="gaussian:0.05", seed=1)[2]
    assert torch.equal(sino, again[0]) and torch.equal(img, again[1])
    assert torch.equal(ds[-3][0], sino)
    s = ds.sample(2)
    # the clean sinogram is the analytic line integral (no inverse crime), not A(image)
    exact = s["phantom"].sinogram(GEOM).to(torch.float32)
    assert torch.allclose(s["clean"], exact, rtol=1e-6, atol=1e-6)
    assert not torch.equal(s["sinogram"], s["clean"])
    A = ops.XRayTransform(GRID, GEOM)
    assert not torch.allclose(A(img), s["clean"], rtol=1e-3, atol=1e-3)
    assert float((A(img) - s["clean"]).norm() / s["clean"].norm()) < 0.05
    # other items, other seeds differ
    assert not torch.equal(ds[3][1], img)
    assert not torch.equal(EllipsesDataset("train", 5, GRID, GEOM, seed=2)[2][1], img)


def test_ellipses_splits_never_overlap():
    images = {split: [EllipsesDataset(split, 6, GRID, GEOM)[i][1] for i in range(6)]
              for split in SPLITS}
    flat = [(split, i, img) for split, imgs in images.items() for i, img in enumerate(imgs)]
    for n, (s1, i1, a) in enumerate(flat):
        for s2, i2, b in flat[n + 1:]:
            assert not torch.equal(a, b), (s1, i1, s2, i2)


def test_dataset_noise_free_and_poisson():
    clean = EllipsesDataset("test", 2, GRID, GEOM)
    s = clean.sample(0)
    assert torch.equal(s["sinogram"], s["clean"])
    noisy = EllipsesDataset("test", 2, GRID, GEOM, noise=PoissonNoise(1e5, scale=0.02))
    sn = noisy.sample(0)
    assert torch.equal(sn["clean"], s["clean"])
    assert 0 < float((sn["sinogram"] - sn["clean"]).abs().max()) < 5.0
    assert torch.equal(noisy[0][0], sn["sinogram"])


def test_dataset_loader_batches():
    ds = make_dataset("ellipses", split="validation", length=4, grid=GRID, geometry=GEOM,
                      noise=GaussianNoise(0.05))
    sino, img = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert sino.shape == (4, 12, 91) and img.shape == (4, 64, 64)


def test_chest_dataset():
    grid = ops.ImageGrid((64, 64), (5.0, 5.0))
    geom = ops.ParallelGeometry.full_scan(10, 91, 5.0)
    ds = ChestDataset("train", 3, grid, geom, noise=PoissonNoise(1e4), lesion_probability=1.0)
    sino, img = ds[0]
    assert sino.shape == (10, 91) and img.shape == (64, 64)
    assert float(img.min()) >= -1000.5 and float(img.max()) < 1000
    s = ds.sample(0)
    assert s["phantom"].lesion is not None
    assert torch.equal(s["sinogram"], sino)
    assert torch.allclose(s["clean"], s["phantom"].sinogram(geom).float(), rtol=1e-6, atol=1e-6)
    assert 4.0 < float(s["clean"].max()) < 8.0  # ~300 mm of tissue at 0.0192 /mm
    a, b = ds.body_axes
    assert a <= 0.9 * 160 + 1e-9 and b / a == pytest.approx(115 / 160)
    for i in range(3):  # random sizes (+-5%) still fit the grid
        ax, ay = ds.phantom(i).body.axes
        assert ax < 0.5 * grid.extent[1] and ay < 0.5 * grid.extent[0]
    assert not torch.equal(ds[1][1], img)
    mu = ChestDataset("train", 3, grid, geom, output="mu")[0][1]
    assert float(mu.max()) < 0.05 and float(mu.min()) >= 0


def test_dataset_errors():
    with pytest.raises(ValueError, match="unknown dataset"):
        make_dataset("mayo", split="train")
    with pytest.raises(ValueError, match="split"):
        EllipsesDataset("training", 4, GRID, GEOM)
    with pytest.raises(ValueError, match="length"):
        EllipsesDataset("train", 0, GRID, GEOM)
    with pytest.raises(TypeError, match="grid"):
        EllipsesDataset("train", 4, (64, 64), GEOM)
    with pytest.raises(TypeError, match="geometry"):
        EllipsesDataset("train", 4, GRID, "parallel")
    with pytest.raises(ValueError, match="noise"):
        EllipsesDataset("train", 4, GRID, GEOM, noise="speckle")
    ds = EllipsesDataset("train", 4, GRID, GEOM)
    with pytest.raises(IndexError):
        ds[4]
    with pytest.raises(ValueError, match="lesion_probability"):
        ChestDataset("train", 2, GRID, GEOM, lesion_probability=2.0)
    assert len(EllipsesDataset("test", None, GRID, GEOM)) == 3200
