"""Trainable filtered back-projection: learned sinogram weights and filter, fixed back-projection.

References
----------
* T. Würfl, F. C. Ghesu, V. Christlein, A. Maier, "Deep learning computed tomography",
  MICCAI 2016, LNCS 9902, pp. 432-440: FBP mapped onto a neural network (weighting layer,
  convolution layer for the filter, fixed back-projection layer); the weights are initialised
  with the analytic ones and fine-tuned end to end.
* T. Würfl, M. Hoffmann, V. Christlein, K. Breininger, Y. Huang, M. Unberath, A. Maier,
  "Deep learning computed tomography: learning projection-domain weights from image domain in
  limited angle problems", IEEE TMI 37(6), 2018, pp. 1454-1463: a weight per sinogram sample,
  initialised with cosine x Parker weights, learned from image-domain loss for limited-angle
  fan-beam scans; the learned weights are shown as an image next to Parker's.

The model is :class:`operators.FBP` with its two weighted stages unfrozen:

``image = B( h * (w . y) )``

with ``w`` the ``(views, detectors)`` weights (cosine x redundancy), ``h`` the ramp filter's real
frequency response (Ram-Lak's spatial discretisation, Kak & Slaney eq. 3.61) and ``B`` the fixed
pixel-driven back-projection (no parameters; its gradient is its exact adjoint).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from operators.fbp import FBP, FILTERS, cosine_weights, redundancy_weights
from operators.geometry import FanGeometry, ImageGrid, ParallelGeometry
from operators.projector import FixedAtConstruction

__all__ = ["TrainableFBP"]


def _check_flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


class TrainableFBP(nn.Module):
    """FBP with a learnable weight per sinogram sample and a learnable filter (Würfl et al.).

    Parameters
    ----------
    grid : operators.ImageGrid
        Output image grid ``(H, W)`` (mm).
    geometry : operators.ParallelGeometry or operators.FanGeometry
        Scan geometry; sinograms are ``(*batch, views, detectors)``.
    learn_weights : bool, default True
        Learn the sinogram weights ``fbp.weighting.weights`` (``(views, detectors)``),
        initialised with cosine x redundancy weights (Parker's for a fan short scan, the
        count-based 1 or 1/2 otherwise; see :func:`operators.fbp.redundancy_weights`).
    learn_filter : bool, default True
        Learn the filter's frequency response ``fbp.filter.response`` (``(length // 2 + 1,)``,
        on the rfft grid of the zero-padded detector axis), initialised with ``filter``.
    filter : str, default "ram-lak"
        Initial filter, one of :data:`operators.fbp.FILTERS`.
    short_scan : str, default "auto"
        Redundancy weighting of the initial weights: ``"auto"``, ``"parker"`` or ``"none"``.
    padding : int, optional
        Filter length (default: next power of two >= 2 detectors).

    Shapes
    ------
    ``forward``: sinogram ``(*batch, views, detectors)`` of line integrals -> image
    ``(*batch, H, W)`` in the image's units (1/mm).

    Notes
    -----
    The back-projection is a fixed layer without parameters: ``parameters()`` holds exactly the
    weights and the response, and only those with ``requires_grad=True`` receive gradients.
    """

    grid = FixedAtConstruction()
    geometry = FixedAtConstruction()

    def __init__(self, grid: ImageGrid, geometry, learn_weights: bool = True,
                 learn_filter: bool = True, filter: str = "ram-lak", short_scan: str = "auto",
                 padding: Optional[int] = None):
        super().__init__()
        if not isinstance(grid, ImageGrid):
            raise TypeError(f"grid must be an operators.ImageGrid, got {type(grid).__name__}")
        if not isinstance(geometry, (ParallelGeometry, FanGeometry)):
            raise TypeError("geometry must be an operators.ParallelGeometry or FanGeometry, got "
                            f"{type(geometry).__name__}")
        learn_weights = _check_flag("learn_weights", learn_weights)
        learn_filter = _check_flag("learn_filter", learn_filter)
        if not (learn_weights or learn_filter):
            raise ValueError("learn_weights and learn_filter are both False: nothing to learn "
                             "(use operators.FBP for a fixed reconstruction)")
        if filter not in FILTERS:
            raise ValueError(f"filter must be one of {FILTERS}, got {filter!r}")
        self.fbp = FBP(grid, geometry, filter=filter, short_scan=short_scan, padding=padding)
        self.fbp.set_trainable(weights=learn_weights, filter=learn_filter)
        self.grid = grid
        self.geometry = geometry
        cos = torch.from_numpy(np.ascontiguousarray(cosine_weights(geometry)))
        red = torch.from_numpy(np.ascontiguousarray(redundancy_weights(geometry, short_scan)))
        # Kept as buffers (saved with the weights) for plotting learned vs. analytic weights.
        self.register_buffer("cosine_weights", cos.to(torch.float32))
        self.register_buffer("initial_redundancy", red.to(torch.float32))
        self.register_buffer("initial_response",
                             self.fbp.filter.response.detach().clone())

    # -- stages --------------------------------------------------------------------------
    @property
    def weighting(self):
        """The sinogram-weighting layer (parameter ``weights``, ``(views, detectors)``)."""
        return self.fbp.weighting

    @property
    def filter(self):
        """The ramp-filter layer (parameter ``response``, ``(length // 2 + 1,)``)."""
        return self.fbp.filter

    @property
    def backprojection(self):
        """The fixed pixel-driven back-projection layer."""
        return self.fbp.backprojection

    def forward(self, sinogram: torch.Tensor) -> torch.Tensor:
        """Reconstruct ``(*batch, views, detectors)`` -> ``(*batch, H, W)``."""
        if not isinstance(sinogram, torch.Tensor):
            raise TypeError(f"sinogram must be a torch.Tensor, got {type(sinogram).__name__}")
        return self.fbp(sinogram)

    # -- export --------------------------------------------------------------------------
    def learned_weights(self, redundancy_only: bool = True) -> np.ndarray:
        """The current sinogram weights, float64 array ``(views, detectors)``.

        Parameters
        ----------
        redundancy_only : bool, default True
            Divide by the (fixed, analytic) cosine weights so that the result is comparable with
            Parker's / the count-based redundancy weights (:meth:`reference_weights`); ``False``
            returns the full weight ``cosine x redundancy`` applied to the sinogram.
        """
        w = self.fbp.weighting.weights.detach().to("cpu", torch.float64)
        if redundancy_only:
            w = w / self.cosine_weights.detach().to("cpu", torch.float64)
        return w.numpy()

    def reference_weights(self) -> np.ndarray:
        """The analytic redundancy weights the model started from, ``(views, detectors)``.

        Parker's weights for a fan short scan, count-based ones otherwise (float64).
        """
        return self.initial_redundancy.detach().to("cpu", torch.float64).numpy()

    def learned_response(self) -> np.ndarray:
        """The current filter response on the rfft grid, float64 ``(length // 2 + 1,)``."""
        return self.fbp.filter.response.detach().to("cpu", torch.float64).numpy()

    def extra_repr(self) -> str:
        return (f"learn_weights={self.fbp.weighting.weights.requires_grad}, "
                f"learn_filter={self.fbp.filter.response.requires_grad}")
