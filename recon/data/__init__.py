"""Data for reconstruction experiments: phantoms, a real CT slice, loaders, noise, datasets.

Everything is generated or shipped with an installed package; nothing is downloaded.

* units: :func:`hu_to_mu`, :func:`mu_to_hu` (water 0.0192 /mm, :data:`MU_WATER`);
* phantoms: :func:`random_ellipses` (DIVal / Adler & Oktem style, values in [0, 1]),
  :func:`chest_phantom` with :class:`Lesion` (HU anatomy as attenuation ellipses);
* the pydicom CT slice: :func:`ct_small` (HU), :func:`ct_small_mu` (1/mm);
* loaders: :func:`load_dicom_folder`, :func:`load_npy`, :func:`load_lodopab_hdf5`;
* noise: :func:`poisson_noise`, :func:`gaussian_noise` (and :class:`PoissonNoise`,
  :class:`GaussianNoise`, :func:`make_noise`);
* datasets: :class:`EllipsesDataset`, :class:`ChestDataset`, :func:`make_dataset`.
"""

from .units import MU_WATER, hu_to_mu, mu_to_hu
from .ellipses import exact_sinogram, random_ellipses, rasterize
from .chest import ChestPhantom, Lesion, chest_phantom, random_lesion
from .ct_small import ct_small, ct_small_grid, ct_small_mu
from .loaders import load_dicom_folder, load_lodopab_hdf5, load_npy, read_dicom_slice
from .noise import GaussianNoise, PoissonNoise, gaussian_noise, make_noise, poisson_noise
from .datasets import ChestDataset, EllipsesDataset, make_dataset

__all__ = [
    "MU_WATER", "hu_to_mu", "mu_to_hu",
    "random_ellipses", "rasterize", "exact_sinogram",
    "ChestPhantom", "Lesion", "chest_phantom", "random_lesion",
    "ct_small", "ct_small_mu", "ct_small_grid",
    "load_dicom_folder", "load_npy", "load_lodopab_hdf5", "read_dicom_slice",
    "poisson_noise", "gaussian_noise", "PoissonNoise", "GaussianNoise", "make_noise",
    "EllipsesDataset", "ChestDataset", "make_dataset",
]
