"""known-operators: CT operators as fixed, differentiable layers.

Public surface (see ``shared/CONVENTIONS.md``): :class:`ImageGrid`, :class:`ParallelGeometry`,
:class:`FanGeometry`, :class:`XRayTransform` (``A``, with ``A.T`` its exact adjoint) and
:class:`FBP` (filtered back-projection built from trainable/freezable layers).
"""

from .geometry import FanGeometry, ImageGrid, ParallelGeometry, uniform_angles
from .projector import AdjointXRayTransform, XRayTransform
from .phantoms import Ellipse, EllipsePhantom, disk, shepp_logan

__all__ = [
    "ImageGrid", "ParallelGeometry", "FanGeometry", "uniform_angles",
    "XRayTransform", "AdjointXRayTransform",
    "Ellipse", "EllipsePhantom", "disk", "shepp_logan",
]

try:  # FBP layers (operators/fbp.py)
    from .fbp import FBP  # noqa: F401
    __all__.append("FBP")
except ImportError:  # pragma: no cover - during bootstrap only
    pass
