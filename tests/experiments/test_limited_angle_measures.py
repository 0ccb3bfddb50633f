"""Measures of the limited-angle study: outline shift and lesion regions."""

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
