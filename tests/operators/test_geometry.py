import math
import warnings
from dataclasses import FrozenInstanceError

import numpy as np
import pytest

from operators import FanGeometry, GeometryWarning, ImageGrid, ParallelGeometry, uniform_angles


def fan(**kw):
    args = dict(angles=(0.0, 1.0), detector_count=10, detector_spacing=1.0,
                source_to_isocenter=100.0, source_to_detector=200.0)
    args.update(kw)
    return FanGeometry(**args)


def test_repr_round_trips():
    for g in (ImageGrid(shape=(3, 4), spacing=(0.5, 0.25)),
              ParallelGeometry.limited_angle(2.0, 5, 7, 0.3, start=0.1, detector_offset=0.2),
              FanGeometry.short_scan(9, 11, 1.5, 300.0, 500.0, "curved")):
        assert eval(repr(g), {"ImageGrid": ImageGrid, "ParallelGeometry": ParallelGeometry,
                              "FanGeometry": FanGeometry}) == g


def test_immutable_and_keyword_only():
    g = ParallelGeometry.full_scan(4, 5)
    with pytest.raises(FrozenInstanceError):
        g.detector_count = 3
    with pytest.raises(TypeError):
        ParallelGeometry((0.0,), 5)  # positional arguments are refused


def test_slicing_returns_geometry():
    g = FanGeometry.full_scan(8, 5, 1.0, 50.0, 90.0)
    half = g[::2]
    assert isinstance(half, FanGeometry) and half.views == 4
    assert half.angles == g.angles[::2] and half.source_to_detector == 90.0
    assert g[3].angles == (g.angles[3],)
    assert g[[0, 7]].angles == (g.angles[0], g.angles[7])
    with pytest.raises(IndexError):
        g[10:]
    for index in (None, True, [[0, 1]]):  # a 2-D selection is not a set of views
        with pytest.raises(IndexError, match="1-D list of indices"):
            g[index]


@pytest.mark.parametrize("offset, expected", [(0.0, 5.0), (2.0, 3.0), (-2.0, 3.0),
                                              (5.0, 0.0), (50.0, 0.0), (-50.0, 0.0)])
def test_fov_radius_is_zero_when_the_detector_misses_the_centre(offset, expected):
    """10 cells of 1 mm: edges at offset -+ 5 mm; the centred disk that every view sees."""
    p = ParallelGeometry.full_scan(4, 10, 1.0, detector_offset=offset)
    assert p.fov_radius() == pytest.approx(expected, abs=1e-12)
    f = fan(detector_offset=offset)  # flat, 10 cells of 1 mm at D = 200 mm, R = 100 mm
    lo, hi = np.arctan((np.array([-5.0, 5.0]) + offset) / 200.0)
    fan_expected = 100.0 * max(0.0, min(-math.sin(lo), math.sin(hi)))
    assert f.fov_radius() == pytest.approx(fan_expected, abs=1e-12)
    assert (f.fov_radius() == 0.0) == (expected == 0.0)


@pytest.mark.parametrize("offset, every_view, scan", [(0.0, 5.0, 5.0), (2.0, 3.0, 7.0),
                                                      (-2.0, 3.0, 7.0), (5.0, 0.0, 10.0),
                                                      (6.0, 0.0, 0.0)])
def test_a_full_rotation_reaches_the_far_end_of_an_offset_detector(offset, every_view, scan):
    """Half-fan: over 2 pi each side measures what the other misses, so the scan's disk reaches
    the far edge (as long as the detector touches the centre); a half rotation does not."""
    full = ParallelGeometry(angles=tuple(np.arange(8) * math.pi / 4), detector_count=10,
                            detector_offset=offset)
    assert full.covers_full_rotation() and full.scan_arc() == pytest.approx(2 * math.pi)
    assert full.fov_radius() == pytest.approx(every_view, abs=1e-12)
    assert full.scan_fov_radius() == pytest.approx(scan, abs=1e-12)
    half = ParallelGeometry.full_scan(4, 10, 1.0, detector_offset=offset)
    assert not half.covers_full_rotation()
    assert half.scan_fov_radius() == pytest.approx(every_view, abs=1e-12)
    f = FanGeometry.full_scan(16, 10, 1.0, 100.0, 200.0, detector_offset=offset)
    lo, hi = f.line_offset_range()
    assert hi == pytest.approx(100.0 * math.sin(math.atan((5.0 + offset) / 200.0)))
    assert f.scan_fov_radius() == pytest.approx(max(-lo, hi) if scan else 0.0, abs=1e-12)


@pytest.mark.parametrize("start, error", [("a", TypeError), (float("nan"), ValueError)])
def test_short_scan_names_a_bad_start(start, error):
    with pytest.raises(error, match="start"):
        FanGeometry.short_scan(5, 10, 1.0, 100.0, 200.0, start=start)


def test_angular_weights_of_uneven_views():
    """Inner views: half the two gaps; an end view: its one gap; two copies share."""
    g = ParallelGeometry(angles=(0.0, 0.1, 0.3), detector_count=3)
    assert np.allclose(g.angular_weights(), [0.1, 0.15, 0.2])
    rep = ParallelGeometry(angles=(0.0, 0.2, 0.2, 0.4), detector_count=3)
    assert np.allclose(rep.angular_weights(), [0.2, 0.1, 0.1, 0.2])


def test_scan_helpers():
    p = ParallelGeometry.full_scan(180, 10)
    assert p.angles[0] == 0 and math.isclose(p.angles[-1], math.pi * 179 / 180)
    la = ParallelGeometry.limited_angle(math.radians(120), 60, 10)
    assert math.isclose(la.angles[-1] - la.angles[0] + math.radians(2), math.radians(120))
    s = FanGeometry.short_scan(100, 50, 1.0, 500.0, 1000.0)
    gmax = math.atan(25.0 / 1000.0)
    assert math.isclose(s.half_fan_angle, gmax)
    assert math.isclose(s.angles[-1] - s.angles[0], math.pi + 2 * gmax)
    f = FanGeometry.full_scan(360, 50, 1.0, 500.0, 1000.0)
    assert math.isclose(f.angles[1] - f.angles[0], 2 * math.pi / 360)
    assert np.allclose(p.angular_weights(), math.pi / 180)
    assert uniform_angles(4, math.pi) == (0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4)


def test_lines_follow_the_convention():
    g = fan(detector="flat", detector_offset=0.5)
    theta, s = g.lines()
    u = g.detector_positions()
    gamma = np.arctan(u / 200.0)
    assert np.allclose(theta[1], 1.0 + gamma) and np.allclose(s[0], 100.0 * np.sin(gamma))
    gc = fan(detector="curved")
    assert np.allclose(gc.fan_angles(), gc.detector_positions() / 200.0)
    # every line of a fan passes through its source
    src = g.source_positions()
    assert np.allclose(src[:, :1] * np.cos(theta) + src[:, 1:] * np.sin(theta), s)
    p = ParallelGeometry(angles=(0.3,), detector_count=3, detector_spacing=2.0, detector_offset=1.0)
    assert np.allclose(p.lines()[1], [[-1.0, 1.0, 3.0]])


@pytest.mark.parametrize("kwargs, match", [
    (dict(source_to_isocenter=0.0), "source_to_isocenter"),
    (dict(source_to_isocenter=-5.0), "source_to_isocenter"),
    (dict(source_to_detector=50.0), "must exceed source_to_isocenter"),
    (dict(detector="round"), "detector must be one of"),
    (dict(detector_count=0), "detector_count"),
    (dict(detector_spacing=float("nan")), "detector_spacing"),
    (dict(angles=()), "at least one view"),
    (dict(angles=(0.0, float("inf"))), "finite"),
    (dict(angles=[[0.0, 1.0]]), "1-D"),
    (dict(detector="curved", detector_count=1000, detector_spacing=1.0), "fan angle of pi"),
])
def test_impossible_fan_geometries(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fan(**kwargs)


def test_grid_validation():
    with pytest.raises(ValueError, match="shape"):
        ImageGrid(shape=(3,))
    with pytest.raises(ValueError, match="H"):
        ImageGrid(shape=(0, 4))
    with pytest.raises(ValueError, match="dx"):
        ImageGrid(shape=(4, 4), spacing=(1.0, -1.0))
    with pytest.raises(TypeError, match="integer"):
        ImageGrid(shape=(4.5, 4))
    g = ImageGrid(shape=(4, 5), spacing=(2.0, 1.0))
    assert np.allclose(g.x_coordinates(), [-2, -1, 0, 1, 2])
    assert np.allclose(g.y_coordinates(), [3, 1, -1, -3])


def test_angles_spanning_more_than_two_rotations_warn_of_degrees():
    with pytest.warns(GeometryWarning, match="angles are in radians"):
        ParallelGeometry(angles=list(range(180)), detector_count=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FanGeometry(angles=tuple(np.linspace(0, 3 * math.pi, 90)), detector_count=10,
                    detector_spacing=1.0, source_to_isocenter=100.0, source_to_detector=200.0)


@pytest.mark.parametrize("angles", [np.array([0.1 + 1j, 0.2]), [True, False], ["0.1", "0.2"]])
def test_angles_that_are_not_real_numbers_are_refused(angles):
    """Complex angles used to lose their imaginary part and booleans became 0 and 1."""
    with pytest.raises(TypeError, match="angles must be a 1-D sequence of real numbers"):
        ParallelGeometry(angles=angles, detector_count=4)


def test_angles_of_any_real_type_give_the_same_geometry():
    from fractions import Fraction

    import torch
    ref = ParallelGeometry(angles=(0.0, 0.5), detector_count=4)
    for angles in ([0, 0.5], np.array([0.0, 0.5], dtype=np.float32), torch.tensor([0.0, 0.5]),
                   [Fraction(0), Fraction(1, 2)], np.array([0, 1]) / 2):
        assert ParallelGeometry(angles=angles, detector_count=4) == ref
