"""The cost model of the GPU kernels (``benchmarks/kernel_model.py``): its sector counting and
the property the v4 tiles were chosen by. No GPU and no Triton needed (the counting emulates
the kernels' addresses in numpy)."""

from __future__ import annotations

import numpy as np
import pytest

km = pytest.importorskip("benchmarks.kernel_model")


def test_sectors_of_contiguous_vectors_and_of_rows():
    """32 lanes reading consecutive 16-byte vectors touch 16 sectors of 32 bytes; 4 lanes
    reading 128-byte rows 128 bytes apart touch the same 16; inactive lanes and repeated
    addresses count nothing extra; the per-program count takes the union of all gathers."""
    lanes = np.arange(32)
    start = (16 * lanes)[None, :]
    on = np.ones_like(start, dtype=bool)
    assert km._sectors([(start, on)], 16, 32) == (16, 16)
    rows = (128 * np.arange(4))[None, :]
    assert km._sectors([(rows, np.ones_like(rows, dtype=bool))], 128, 4) == (16, 16)
    half_off = on & (lanes < 16)[None, :]
    assert km._sectors([(start, half_off)], 16, 32) == (8, 8)
    same = np.zeros_like(start)
    assert km._sectors([(same, on)], 16, 32) == (1, 1)
    # Two gathers of one iteration: L1 counts both requests, L2 their union.
    assert km._sectors([(start, on), (start + 16, on)], 16, 32) == (33, 17)


def test_planar_tiles_of_v4_need_fewer_l1_sectors_than_v2s():
    """The reason for v4's forward tiles, at a small parallel case (64x64, 64 views, batch 32,
    planar layout): warps of 4 views x 8 detectors read fewer sectors than warps of 32
    detectors of one view, for the same loop iterations (within the union's slack)."""
    from operators.backends.triton_backend import KernelConfig
    case = km.Case("small", 64, 64, 91, 32)
    base = KernelConfig.planar(32).as_dict()
    v4 = km.forward_counts(case, KernelConfig(**base))
    v2_tiles = km.forward_counts(case, KernelConfig(**{**base, "view_block": 4,
                                                       "det_block": 32}))
    assert v4["l1"] < 0.75 * v2_tiles["l1"], (v4, v2_tiles)
    assert v4["iterations"] < 1.1 * v2_tiles["iterations"]
