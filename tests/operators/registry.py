"""Readable operator configurations shared by the operator contract tests (STYLE.md 7).

Each id reads ``<geometry>-<detail>-<size>-<backend>``; :func:`build` returns ``(grid, geometry)``.
"""

from __future__ import annotations

import math

from operators import FanGeometry, ImageGrid, ParallelGeometry

_GEOMETRIES = {
    "parallel-full": lambda: ParallelGeometry.full_scan(13, 19, 0.8),
    "parallel-offset": lambda: ParallelGeometry.full_scan(11, 21, 0.7, detector_offset=0.45),
    "parallel-limited": lambda: ParallelGeometry.limited_angle(math.radians(120), 9, 19, 0.8,
                                                                start=0.3),
    "parallel-sparse": lambda: ParallelGeometry.sparse_view(4, 19, 0.8),
    "fan-flat": lambda: FanGeometry.full_scan(14, 25, 1.1, 40.0, 80.0, "flat"),
    "fan-flat-offset": lambda: FanGeometry.short_scan(12, 25, 1.1, 40.0, 70.0, "flat",
                                                      detector_offset=0.6),
    "fan-curved": lambda: FanGeometry.full_scan(14, 25, 1.1, 40.0, 80.0, "curved"),
    "fan-curved-limited": lambda: FanGeometry.limited_angle(math.radians(100), 8, 25, 1.1,
                                                            40.0, 80.0, "curved"),
}
_GRIDS = {"even": ImageGrid(shape=(12, 10), spacing=(0.9, 1.0)),
          "odd": ImageGrid(shape=(11, 13), spacing=(0.8, 0.8))}

OPERATOR_IDS = [f"{g}-{s}-{b}" for g in _GEOMETRIES for s in ("even", "odd")
                for b in ("sparse", "torch")]


def build(op_id: str):
    """``(grid, geometry, backend)`` of an operator id."""
    head, size, backend = op_id.rsplit("-", 2)
    return _GRIDS[size], _GEOMETRIES[head](), backend
