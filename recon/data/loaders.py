"""Loaders for a user's own data: DICOM series, NumPy files, HDF5 in the LoDoPaB-CT layout.

Every loader returns float32 torch tensors with images on the last two axes ``(..., H, W)`` (row 0
at the top, as stored) and raises a clear error naming the file and what is wrong; nothing is
written. Nothing is downloaded.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = [
    "read_dicom_slice",
    "load_dicom_folder",
    "load_npy",
    "load_lodopab_hdf5",
    "DicomSlice",
]

PathLike = Union[str, os.PathLike]


class DicomSlice:
    """One CT slice read from a DICOM file.

    Attributes
    ----------
    hu : numpy.ndarray, float32, shape ``(H, W)``
        Stored values times ``RescaleSlope`` plus ``RescaleIntercept`` (Hounsfield units for CT).
    spacing : (dy, dx)
        ``PixelSpacing`` in mm (row spacing, column spacing); ``(1.0, 1.0)`` when absent.
    position : tuple of 3 floats or None
        ``ImagePositionPatient`` (mm), the centre of the first transmitted pixel.
    orientation : tuple of 6 floats or None
        ``ImageOrientationPatient`` (row and column direction cosines).
    instance : int or None
        ``InstanceNumber``.
    thickness : float or None
        ``SliceThickness`` in mm.
    path : pathlib.Path
    """

    __slots__ = ("hu", "spacing", "position", "orientation", "instance", "thickness", "path")

    def __init__(self, hu, spacing, position, orientation, instance, thickness, path):
        self.hu = hu
        self.spacing = spacing
        self.position = position
        self.orientation = orientation
        self.instance = instance
        self.thickness = thickness
        self.path = path


def _floats(value, count: int) -> Optional[Tuple[float, ...]]:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == count and all(math.isfinite(v) for v in out) else None


def read_dicom_slice(path: PathLike) -> DicomSlice:
    """Read one DICOM image file and apply its rescale slope and intercept.

    Parameters
    ----------
    path : str or path-like
        A DICOM file holding one single-frame, single-channel image (e.g. one CT slice).

    Returns
    -------
    DicomSlice
        With ``hu`` (float32 ``(H, W)``) = stored value * ``RescaleSlope`` + ``RescaleIntercept``
        (defaults 1 and 0 when absent), its pixel spacing, position and orientation.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Not a readable DICOM file, no pixel data (a non-image object such as a structured report or
        DICOMDIR), pixel data that cannot be decoded, or not a single 2D grey-level frame.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DICOM file {str(path)!r} does not exist")
    try:
        ds = pydicom.dcmread(str(path))
    except InvalidDicomError as exc:
        raise ValueError(f"{str(path)!r} is not a readable DICOM file ({exc})") from None
    except Exception as exc:  # truncated or corrupt files raise assorted errors
        raise ValueError(f"{str(path)!r} is not a readable DICOM file "
                         f"({type(exc).__name__}: {exc})") from None
    if "PixelData" not in ds:
        sop = getattr(ds, "SOPClassUID", None)
        kind = f" (SOP class {getattr(sop, 'name', sop)})" if sop is not None else ""
        raise ValueError(f"{str(path)!r} is a DICOM file without pixel data{kind}: not an image")
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        raise ValueError(f"{str(path)!r}: cannot decode the pixel data "
                         f"({type(exc).__name__}: {exc}); a plug-in for its transfer syntax "
                         f"may be missing") from None
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if pixels.ndim != 2 or frames != 1 or samples != 1:
        raise ValueError(f"{str(path)!r}: expected one 2D grey-level frame, got pixel array of "
                         f"shape {pixels.shape} (frames {frames}, samples per pixel {samples})")
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    hu = (pixels.astype(np.float64) * slope + intercept).astype(np.float32)
    spacing = _floats(getattr(ds, "PixelSpacing", None), 2) or (1.0, 1.0)
    instance = getattr(ds, "InstanceNumber", None)
    thickness = getattr(ds, "SliceThickness", None)
    return DicomSlice(
        hu=hu,
        spacing=spacing,
        position=_floats(getattr(ds, "ImagePositionPatient", None), 3),
        orientation=_floats(getattr(ds, "ImageOrientationPatient", None), 6),
        instance=int(instance) if instance not in (None, "") else None,
        thickness=float(thickness) if thickness not in (None, "") else None,
        path=path,
    )


def _slice_key(s: DicomSlice, normal: Optional[np.ndarray]):
    """Sort key: position along the slice normal, then instance number, then file name."""
    if s.position is not None and normal is not None:
        pos = float(np.dot(normal, s.position))
    elif s.position is not None:
        pos = float(s.position[2])
    else:
        pos = math.inf
    inst = s.instance if s.instance is not None else math.inf
    return (pos, inst, s.path.name)


def load_dicom_folder(path: PathLike, strict: bool = True
                      ) -> Tuple[torch.Tensor, Tuple[float, float, float]]:
    """Load a folder of single-slice DICOM files as a volume in Hounsfield units.

    Slices are sorted by their position along the slice normal (``ImagePositionPatient`` projected
    on the cross product of the ``ImageOrientationPatient`` direction cosines; the z coordinate
    when the orientation is missing), then by ``InstanceNumber``, then by file name. Rescale slope
    and intercept are applied to every slice.

    Parameters
    ----------
    path : str or path-like
        A directory. Hidden files (names starting with ".") and sub-directories are ignored.
    strict : bool, default True
        If True, any other file that is not a readable DICOM image raises ``ValueError``; if False,
        such files are skipped (at least one image must remain).

    Returns
    -------
    volume : torch.Tensor, float32, shape ``(slices, H, W)``
        Values in HU, slice 0 at the lowest position along the normal.
    spacing : (dz, dy, dx)
        In mm: ``dz`` the median distance between consecutive slice positions (``SliceThickness``
        for a single slice, NaN when neither is known), ``(dy, dx)`` the ``PixelSpacing``.

    Raises
    ------
    FileNotFoundError / NotADirectoryError
        ``path`` does not exist or is not a directory.
    ValueError
        Empty folder (no files), unreadable or non-image DICOM files (``strict``), slices with
        different shapes or pixel spacings, or two slices at the same position.
    """
    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"DICOM folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"path {str(folder)!r} is not a directory")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ValueError(f"DICOM folder {str(folder)!r} is empty (no files)")
    slices: List[DicomSlice] = []
    skipped = []
    for f in files:
        try:
            slices.append(read_dicom_slice(f))
        except ValueError as exc:
            if strict:
                raise ValueError(f"in folder {str(folder)!r}: {exc} (pass strict=False to skip "
                                 f"files that are not DICOM images)") from None
            skipped.append(f.name)
    if not slices:
        raise ValueError(f"DICOM folder {str(folder)!r} holds no readable DICOM image "
                         f"(skipped: {', '.join(skipped)})")

    shapes = {s.hu.shape for s in slices}
    if len(shapes) != 1:
        raise ValueError(f"DICOM folder {str(folder)!r}: slices have different shapes "
                         f"{sorted(shapes)}")
    spacings = {tuple(round(v, 6) for v in s.spacing) for s in slices}
    if len(spacings) != 1:
        raise ValueError(f"DICOM folder {str(folder)!r}: slices have different pixel spacings "
                         f"{sorted(spacings)}")

    orient = slices[0].orientation
    normal = None
    if orient is not None:
        normal = np.cross(np.asarray(orient[:3]), np.asarray(orient[3:]))
        norm = np.linalg.norm(normal)
        normal = normal / norm if norm > 0 else None
    slices.sort(key=lambda s: _slice_key(s, normal))

    positions = [_slice_key(s, normal)[0] for s in slices]
    known = [p for p in positions if math.isfinite(p)]
    if len(known) == len(positions) and len(known) > 1:
        gaps = np.diff(np.asarray(known))
        if np.any(gaps < 1e-6):
            i = int(np.argmin(gaps))
            raise ValueError(f"DICOM folder {str(folder)!r}: {slices[i].path.name!r} and "
                             f"{slices[i + 1].path.name!r} are at the same position; one folder "
                             f"must hold one series")
        dz = float(np.median(gaps))
    else:
        thickness = slices[0].thickness
        dz = float(thickness) if thickness is not None and len(slices) == 1 else math.nan
    volume = torch.from_numpy(np.stack([s.hu for s in slices]).astype(np.float32))
    dy, dx = slices[0].spacing
    return volume, (dz, float(dy), float(dx))


def _check_array(arr: np.ndarray, where: str) -> torch.Tensor:
    if arr.dtype.kind not in "iubf":
        raise ValueError(f"{where}: expected a real numeric array, got dtype {arr.dtype}")
    if arr.ndim < 2:
        raise ValueError(f"{where}: expected images of shape (..., H, W), got shape {arr.shape}")
    if 0 in arr.shape:
        raise ValueError(f"{where}: array is empty, shape {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def load_npy(path: PathLike, key: Optional[str] = None) -> torch.Tensor:
    """Load images from a NumPy ``.npy`` or ``.npz`` file (no pickles).

    Parameters
    ----------
    path : str or path-like
        ``.npy`` (one array) or ``.npz`` (an archive of named arrays).
    key : str, optional
        For ``.npz``: the array to load; may be omitted when the archive holds exactly one array.
        Must be None for ``.npy``.

    Returns
    -------
    torch.Tensor, float32, shape ``(..., H, W)`` (at least 2D), values as stored.

    Raises
    ------
    FileNotFoundError
        No such file.
    KeyError
        ``key`` not in the archive (the message lists the keys).
    ValueError
        Unreadable file, unknown suffix, several arrays and no ``key``, a key for a ``.npy``,
        non-numeric, empty or fewer-than-2D arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NumPy file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise ValueError(f"{str(path)!r}: expected a .npy or .npz file, got suffix {suffix!r}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"{str(path)!r} is not a readable NumPy file "
                         f"({type(exc).__name__}: {exc})") from None
    if isinstance(loaded, np.ndarray):
        if key is not None:
            raise ValueError(f"{str(path)!r} is a .npy file holding one array; key must be None, "
                             f"got {key!r}")
        return _check_array(loaded, repr(str(path)))
    with loaded as archive:
        keys = list(archive.files)
        if key is None:
            if len(keys) != 1:
                raise ValueError(f"{str(path)!r} holds {len(keys)} arrays {keys}; pass key= to "
                                 f"choose one")
            key = keys[0]
        if key not in keys:
            raise KeyError(f"key {key!r} not in {str(path)!r}; available keys: {keys}")
        try:
            arr = archive[key]
        except Exception as exc:
            raise ValueError(f"{str(path)!r}[{key!r}] cannot be read "
                             f"({type(exc).__name__}: {exc})") from None
        return _check_array(arr, f"{str(path)!r}[{key!r}]")


def load_lodopab_hdf5(path: PathLike, key: str = "data",
                      indices: Optional[Union[slice, Sequence[int]]] = None) -> torch.Tensor:
    """Load an HDF5 file in the LoDoPaB-CT layout.

    LoDoPaB-CT (Leuschner et al., Sci. Data 8, 2021) ships files such as
    ``ground_truth_train_000.hdf5`` and ``observation_train_000.hdf5``, each with one dataset
    ``"data"`` of shape ``(n, ...)``: ``n = 128`` samples per file, images ``(362, 362)`` in
    normalised attenuation (``mu / mu_max`` with ``mu_max = 81.35858 /m``) and observations
    ``(1000 angles, 513 detectors)`` of ``-log(N / N0) / mu_max``-scaled line integrals. The last
    file of a part may be padded with zeros.

    Parameters
    ----------
    path : str or path-like
        The HDF5 file.
    key : str, default "data"
        The dataset to read.
    indices : slice or sequence of int, optional
        Samples to read (along axis 0); all by default.

    Returns
    -------
    torch.Tensor, float32, shape ``(n, A, B)``.

    Raises
    ------
    FileNotFoundError
        No such file.
    KeyError
        No dataset ``key`` (the message lists what the file holds).
    ValueError
        Not an HDF5 file, ``key`` is a group, or the dataset is not 3D ``(n, A, B)``.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HDF5 file {str(path)!r} does not exist")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{str(path)!r} is not a readable HDF5 file ({exc})") from None
    with handle as f:
        if key not in f:
            raise KeyError(f"HDF5 file {str(path)!r} has no dataset {key!r}; it holds "
                           f"{sorted(f.keys())} (LoDoPaB-CT files hold 'data')")
        ds = f[key]
        if not isinstance(ds, h5py.Dataset):
            raise ValueError(f"{str(path)!r}[{key!r}] is a group, not a dataset")
        if ds.ndim != 3:
            raise ValueError(f"{str(path)!r}[{key!r}] must have shape (n, A, B) as in LoDoPaB-CT, "
                             f"got shape {ds.shape}")
        if indices is None:
            arr = ds[()]
        elif isinstance(indices, slice):
            arr = ds[indices]
        else:
            idx = np.asarray(indices, dtype=np.int64).reshape(-1)
            if idx.size and (idx.min() < -ds.shape[0] or idx.max() >= ds.shape[0]):
                raise ValueError(f"indices out of range for {ds.shape[0]} samples: {idx.tolist()}")
            idx = np.where(idx < 0, idx + ds.shape[0], idx)
            order = np.argsort(idx, kind="stable")
            if np.unique(idx).size != idx.size:
                raise ValueError(f"indices must not repeat, got {idx.tolist()}")
            got = ds[np.sort(idx)]  # h5py needs increasing indices
            arr = np.empty_like(got)
            arr[order] = got
    return _check_array(np.asarray(arr), f"{str(path)!r}[{key!r}]")
