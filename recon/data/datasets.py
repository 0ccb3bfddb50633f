"""``torch.utils.data.Dataset`` s of synthetic (sinogram, image) pairs, made on the fly.

Every item is a deterministic function of ``(seed, split, index)``: its phantom and its noise are
drawn from a :class:`numpy.random.SeedSequence` built from ``(seed, split code, index)``, so

* the same arguments give the same data, in any order, in any DataLoader worker;
* the train, validation and test splits never share a random stream (their seed sequences differ
  by the split code), so they are disjoint by construction, whatever their lengths.

Sinograms are the **exact analytic** line integrals of the ellipse phantom in the requested
geometry (:meth:`operators.EllipsePhantom.sinogram`), not a projection of the rasterised image, so
training and testing on them commits no inverse crime. Images are pixel averages of the phantom
over ``supersample x supersample`` points per pixel.

Items are ``(sinogram, image)``: ``sinogram`` of shape ``(views, detectors)``, ``image`` of shape
``(H, W)``, both ``dtype`` (float32 by default) on the CPU; a DataLoader stacks them into
``(batch, views, detectors)`` and ``(batch, H, W)``.
"""

from __future__ import annotations

import numbers
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from operators import EllipsePhantom, ImageGrid
from operators._checks import integer, real

from .chest import ChestPhantom, chest_phantom, random_lesion
from .ellipses import exact_sinogram, random_ellipses, rasterize
from .noise import make_noise

__all__ = ["SPLITS", "DEFAULT_LENGTHS", "item_seed", "SyntheticDataset", "EllipsesDataset",
           "ChestDataset", "make_dataset", "DATASETS"]

#: Split names and the code that enters the seed sequence of each item.
SPLITS = {"train": 0, "validation": 1, "test": 2}

#: Default lengths (DIVal's ellipses dataset: 32000 / 3200 / 3200).
DEFAULT_LENGTHS = {"train": 32000, "validation": 3200, "test": 3200}


def item_seed(seed: int, split: str, index: int, family: str = "") -> np.random.SeedSequence:
    """The seed sequence of one item: ``SeedSequence([seed, split code, index, family code])``.

    ``family`` separates dataset families (ellipses, chest) that share a seed.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    family_code = int.from_bytes(family.encode("utf-8")[:8].ljust(8, b"\0"), "little")
    return np.random.SeedSequence([int(seed), SPLITS[split], int(index), family_code])


def _torch_generator(ss: np.random.SeedSequence) -> torch.Generator:
    state = ss.generate_state(2, np.uint32)
    g = torch.Generator()
    g.manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)  # < 2**63
    return g


class SyntheticDataset(Dataset):
    """Base class: split, length, grid, geometry, noise and seeding shared by the families.

    Subclasses implement :meth:`phantom` (the phantom of one item from its numpy generator) and
    :meth:`image` (its rasterised image); sinograms come from :meth:`clean_sinogram`.
    """

    family = "synthetic"

    def __init__(self, split: str, length: Optional[int], grid: ImageGrid, geometry,
                 noise=None, seed: int = 0, supersample: int = 4,
                 dtype: torch.dtype = torch.float32):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        if length is None:
            length = DEFAULT_LENGTHS[split]
        length = integer("length", length)
        if not isinstance(grid, ImageGrid):
            raise TypeError(f"grid must be an operators.ImageGrid, got {type(grid).__name__}")
        if not hasattr(geometry, "lines"):
            raise TypeError(f"geometry must be an operators geometry (ParallelGeometry, "
                            f"FanGeometry), got {type(geometry).__name__}")
        seed = integer("seed", seed, minimum=0)
        supersample = integer("supersample", supersample)
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.split = split
        self.length = int(length)
        self.grid = grid
        self.geometry = geometry
        self.noise = make_noise(noise)
        self.seed = int(seed)
        self.supersample = int(supersample)
        self.dtype = dtype

    def __len__(self) -> int:
        return self.length

    def _index(self, index) -> int:
        if isinstance(index, torch.Tensor) and index.numel() == 1:
            index = int(index)
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"index must be an integer, got {type(index).__name__}")
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for a {self.split} split of length "
                             f"{self.length}")
        return int(index) % self.length

    def seed_sequence(self, index: int) -> np.random.SeedSequence:
        """The seed sequence of item ``index`` (:func:`item_seed`)."""
        return item_seed(self.seed, self.split, self._index(index), self.family)

    def _generators(self, index: int) -> Tuple[np.random.Generator, torch.Generator]:
        phantom_ss, noise_ss = self.seed_sequence(index).spawn(2)
        return np.random.default_rng(phantom_ss), _torch_generator(noise_ss)

    # -- to implement -------------------------------------------------------------------------
    def make_phantom(self, rng: np.random.Generator):  # pragma: no cover - abstract
        raise NotImplementedError

    def image_of(self, phantom) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _ellipses(self, phantom) -> EllipsePhantom:
        return phantom

    # -- public ---------------------------------------------------------------------------------
    def phantom(self, index: int):
        """The phantom of item ``index`` (deterministic)."""
        rng, _ = self._generators(index)
        return self.make_phantom(rng)

    def clean_sinogram(self, phantom) -> torch.Tensor:
        """Exact line integrals of ``phantom`` in ``self.geometry``, ``(views, detectors)``."""
        return exact_sinogram(self._ellipses(phantom), self.geometry, torch.float64)

    def sample(self, index: int) -> Dict[str, Any]:
        """Everything about item ``index``: ``phantom``, ``image``, ``clean`` and noisy ``sinogram``."""
        rng, gen = self._generators(index)
        phantom = self.make_phantom(rng)
        clean = self.clean_sinogram(phantom)
        noisy = clean if self.noise is None else self.noise(clean, gen)
        return {
            "phantom": phantom,
            "image": self.image_of(phantom).to(self.dtype),
            "clean": clean.to(self.dtype),
            "sinogram": noisy.to(self.dtype),
        }

    def __getitem__(self, index) -> Tuple[torch.Tensor, torch.Tensor]:
        s = self.sample(index)
        return s["sinogram"], s["image"]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(split={self.split!r}, length={self.length}, "
                f"grid={self.grid!r}, geometry=<{type(self.geometry).__name__}, "
                f"{self.geometry.views} views>, noise={self.noise!r}, seed={self.seed})")


class EllipsesDataset(SyntheticDataset):
    """Random-ellipse phantoms (values in [0, 1]) and their exact sinograms.

    The DIVal / Adler & Oktem family (:func:`recon.data.random_ellipses`): a Poisson number of
    random ellipses inside the disk inscribed in the grid.

    Parameters
    ----------
    split : {"train", "validation", "test"}
    length : int, optional
        Number of items (default 32000 / 3200 / 3200 as DIVal).
    grid : operators.ImageGrid
        Image grid, e.g. ``ImageGrid((128, 128))``.
    geometry : operators geometry
        Scan geometry of the sinograms (any: parallel, fan, limited angle, sparse view).
    noise : None, str, mapping or callable, default None
        Noise model (:func:`recon.data.make_noise`): e.g. ``"gaussian:0.05"`` (the Adler & Oktem /
        DIVal protocol) or ``PoissonNoise(photons, scale=...)``. ``None``: noise-free sinograms.
    seed : int, default 0
        Base seed; items depend on ``(seed, split, index)`` only.
    radius : float, optional
        Radius (mm) of the disk holding the ellipses; default half the smaller grid extent.
    mean_count : float, default 40
        Mean number of ellipses (DIVal).
    supersample : int, default 4
        Sample points per pixel and axis for the image.
    dtype : torch.float32 or torch.float64

    Items
    -----
    ``(sinogram (views, detectors), image (H, W))``: line integrals of the image read as 1/mm.
    """

    family = "ellipses"

    def __init__(self, split: str, length: Optional[int] = None, grid: ImageGrid = None,
                 geometry=None, noise=None, seed: int = 0, radius: Optional[float] = None,
                 mean_count: float = 40.0, supersample: int = 4,
                 dtype: torch.dtype = torch.float32):
        if grid is None or geometry is None:
            raise TypeError("EllipsesDataset needs grid= (operators.ImageGrid) and geometry=")
        super().__init__(split, length, grid, geometry, noise, seed, supersample, dtype)
        if radius is None:
            radius = 0.5 * min(grid.extent)
        self.radius = real("radius (mm)", radius, positive=True)
        self.mean_count = real("mean_count", mean_count, nonnegative=True)

    def make_phantom(self, rng: np.random.Generator) -> EllipsePhantom:
        return random_ellipses(rng, self.radius, mean_count=self.mean_count)

    def image_of(self, phantom: EllipsePhantom) -> torch.Tensor:
        return rasterize(phantom, self.grid, self.supersample, torch.float64)


class ChestDataset(SyntheticDataset):
    """Random chest phantoms: images in HU, sinograms of the attenuation (1/mm).

    Parameters
    ----------
    split, length, grid, geometry, noise, seed, supersample, dtype
        As :class:`EllipsesDataset`. For physical transmission noise use
        ``PoissonNoise(photons)`` (the sinogram holds physical line integrals).
    body_fill : float, default 0.9
        Body width as a fraction of the grid (the body keeps the adult aspect ratio 160:115 and
        fits the grid in both directions; random sizes vary by +-5%).
    lesion_probability : float, default 0.0
        Probability that an item has a lesion (:func:`recon.data.chest.random_lesion`).
    lesion_diameter : (low, high) mm, default (5, 20)
    lesion_contrast : (low, high) HU, default (800, 900)
    lesion_region : str, default "lung"
    vessels_per_lung : int, default 8
    output : {"hu", "mu"}, default "hu"
        Units of the image in the items.

    Items
    -----
    ``(sinogram (views, detectors) of attenuation line integrals, image (H, W) in HU)``.
    :meth:`sample` also gives the :class:`ChestPhantom` (body and lesion masks).
    """

    family = "chest"

    def __init__(self, split: str, length: Optional[int] = None, grid: ImageGrid = None,
                 geometry=None, noise=None, seed: int = 0, body_fill: float = 0.9,
                 lesion_probability: float = 0.0, lesion_diameter: Tuple[float, float] = (5.0, 20.0),
                 lesion_contrast: Tuple[float, float] = (800.0, 900.0),
                 lesion_region: str = "lung", vessels_per_lung: int = 8, output: str = "hu",
                 supersample: int = 4, dtype: torch.dtype = torch.float32):
        if grid is None or geometry is None:
            raise TypeError("ChestDataset needs grid= (operators.ImageGrid) and geometry=")
        super().__init__(split, length, grid, geometry, noise, seed, supersample, dtype)
        if not 0 < real("body_fill", body_fill) <= 0.95:
            raise ValueError(f"body_fill must be in (0, 0.95], got {body_fill!r}")
        if not 0 <= real("lesion_probability", lesion_probability) <= 1:
            raise ValueError(f"lesion_probability must be in [0, 1], got {lesion_probability!r}")
        if output not in ("hu", "mu"):
            raise ValueError(f"output must be 'hu' or 'mu', got {output!r}")
        height, width = grid.extent
        ratio = 115.0 / 160.0
        a = float(body_fill) * min(0.5 * width, 0.5 * height / ratio)
        self.body_axes = (a, a * ratio)
        self.lesion_probability = float(lesion_probability)
        self.lesion_diameter = tuple(float(v) for v in lesion_diameter)
        self.lesion_contrast = tuple(float(v) for v in lesion_contrast)
        self.lesion_region = str(lesion_region)
        self.vessels_per_lung = int(vessels_per_lung)
        self.output = output

    def make_phantom(self, rng: np.random.Generator) -> ChestPhantom:
        chest = chest_phantom(rng, body_axes=self.body_axes,
                              vessels_per_lung=self.vessels_per_lung)
        has_lesion = rng.random() < self.lesion_probability  # always drawn: stable streams
        if has_lesion:
            lesion = random_lesion(chest, rng, self.lesion_diameter, self.lesion_contrast,
                                   self.lesion_region)
            chest = chest.with_lesion(lesion)
        return chest

    def _ellipses(self, phantom: ChestPhantom) -> EllipsePhantom:
        return phantom.phantom

    def image_of(self, phantom: ChestPhantom) -> torch.Tensor:
        if self.output == "hu":
            return phantom.hu_image(self.grid, self.supersample, torch.float64)
        return phantom.mu_image(self.grid, self.supersample, torch.float64)


#: Dataset families by name, for :func:`make_dataset`.
DATASETS = {"ellipses": EllipsesDataset, "chest": ChestDataset}


def make_dataset(name: str, **kwargs) -> SyntheticDataset:
    """Build a dataset family by name: ``make_dataset("ellipses", split="train", grid=..., ...)``.

    Raises
    ------
    ValueError
        Unknown ``name`` (the message lists the known ones).
    """
    if not isinstance(name, str) or name.lower() not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {sorted(DATASETS)}")
    return DATASETS[name.lower()](**kwargs)
