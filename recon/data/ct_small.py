"""The real CT slice that ships with pydicom (``CT_small.dcm``), as a held-out anatomical image.

``pydicom.data.get_testdata_file("CT_small.dcm")`` is a 128 x 128 axial slice (120 kVp, 5 mm
slice thickness) through the thoracic spine: vertebral body and spinal canal in the middle,
posterior back muscles below, the aorta at the top right and lung at both top corners. Pixels are
int16 with ``RescaleIntercept = -1024`` and slope 1, pixel spacing 0.661468 mm. It is a crop
inside the patient: its darkest values are lung (about -850 HU), not outside air (-1000 HU), and
the anatomy runs off every edge, so a simulated scan of it is a region-of-interest (interior)
problem unless the image is treated as the whole object (what :func:`ct_small_mu` gives).

The file comes with the installed pydicom (no download).
"""

from __future__ import annotations

from typing import Tuple

import torch

from operators import ImageGrid

from .loaders import read_dicom_slice
from .units import MU_WATER, hu_to_mu

__all__ = ["ct_small", "ct_small_mu", "ct_small_grid", "ct_small_path"]


def ct_small_path() -> str:
    """Path of ``CT_small.dcm`` inside the installed pydicom's test data."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    if path is None:  # pragma: no cover - depends on the pydicom installation
        raise FileNotFoundError("pydicom's test file CT_small.dcm is not installed "
                                "(pydicom.data.get_testdata_file returned None)")
    return str(path)


def ct_small() -> Tuple[torch.Tensor, Tuple[float, float]]:
    """The CT_small.dcm slice in Hounsfield units.

    Returns
    -------
    hu : torch.Tensor, float32, shape ``(128, 128)``
        ``stored value + RescaleIntercept (-1024)``; row 0 at the top (anterior), column 0 at the
        left of the image.
    spacing : (dy, dx)
        Pixel spacing in mm (0.661468, 0.661468).
    """
    s = read_dicom_slice(ct_small_path())
    return torch.from_numpy(s.hu.copy()), (float(s.spacing[0]), float(s.spacing[1]))


def ct_small_mu(mu_water: float = MU_WATER, clip_negative: bool = True
                ) -> Tuple[torch.Tensor, Tuple[float, float]]:
    """The CT_small.dcm slice as linear attenuation in 1/mm.

    Parameters
    ----------
    mu_water : float, default 0.0192 /mm
        Water attenuation used by :func:`recon.data.hu_to_mu`.
    clip_negative : bool, default True
        Clip attenuation below 0 (HU below -1000, which the file does not contain) to 0.

    Returns
    -------
    mu : torch.Tensor, float32, shape ``(128, 128)``, in 1/mm
    spacing : (dy, dx) in mm
    """
    hu, spacing = ct_small()
    mu = hu_to_mu(hu, mu_water)
    if clip_negative:
        mu = mu.clamp_min(0.0)
    return mu, spacing


def ct_small_grid() -> ImageGrid:
    """The :class:`operators.ImageGrid` of the slice: 128 x 128 pixels of 0.661468 mm."""
    hu, spacing = ct_small()
    return ImageGrid(shape=tuple(hu.shape), spacing=spacing)
