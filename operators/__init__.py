"""known-operators: CT operators as fixed, differentiable layers.

Public surface (see ``shared/CONVENTIONS.md``): :class:`ImageGrid`, :class:`ParallelGeometry`,
:class:`FanGeometry`, :class:`XRayTransform` (``A``, with ``A.T`` its exact adjoint) and
:class:`FBP` (filtered back-projection built from trainable/freezable layers).
"""

from .fbp import FBP
from .geometry import (FanGeometry, FieldOfViewWarning, GeometryWarning, ImageGrid,
                       ParallelGeometry, uniform_angles)
from .phantoms import Ellipse, EllipsePhantom, disk, shepp_logan
from .projector import AdjointXRayTransform, XRayTransform
from .signature import SignatureMismatchError

__all__ = [
    "ImageGrid", "ParallelGeometry", "FanGeometry", "uniform_angles",
    "GeometryWarning", "FieldOfViewWarning",
    "XRayTransform", "AdjointXRayTransform", "FBP",
    "Ellipse", "EllipsePhantom", "disk", "shepp_logan", "SignatureMismatchError",
]
