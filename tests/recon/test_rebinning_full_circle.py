"""The parallel-to-fan network on a parallel scan over the full circle."""

import math

import numpy as np
import torch

import operators as ops
from recon.nets import ParallelToFanNet


def test_parallel_to_fan_net_on_a_full_circle_scan_equals_the_half_scan():
    # Views over 2 pi see every line twice: the per-view weights are scaled so the angular
    # weights sum to pi, and the back-projection equals that of the pi scan.
    grid = ops.ImageGrid((32, 32), (1.0, 1.0))
    fan = ops.FanGeometry.full_scan(24, 61, 1.5, 80.0, 160.0)
    half = ops.ParallelGeometry(angles=tuple(np.arange(30) * math.pi / 30), detector_count=47,
                                detector_spacing=1.0)
    full = ops.ParallelGeometry(angles=tuple(np.arange(60) * math.pi / 30), detector_count=47,
                                detector_spacing=1.0)
    ph = ops.shepp_logan(12.0)
    net_h = ParallelToFanNet.from_geometries(grid, half, fan)
    net_f = ParallelToFanNet.from_geometries(grid, full, fan)
    with torch.no_grad():
        bh = net_h.backproject(ph.sinogram(half))
        bf = net_f.backproject(ph.sinogram(full))
    assert float((bf - bh).norm() / bh.norm()) < 1e-3
