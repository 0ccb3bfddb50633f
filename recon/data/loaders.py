"""Loaders for a user's own data: DICOM series, NumPy files, HDF5 in the LoDoPaB-CT layout.

Every loader returns float32 torch tensors with images on the last two axes ``(..., H, W)`` (row 0
at the top, as stored) and raises a clear error naming the file and what is wrong (values that
are not finite, NaN or +-Inf or beyond the float32 range, included); nothing is written. Nothing is
downloaded.
"""

from __future__ import annotations

import math
import numbers
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
    series : str or None
        ``SeriesInstanceUID``.
    """

    __slots__ = ("hu", "spacing", "position", "orientation", "instance", "thickness", "path",
                 "series")

    def __init__(self, hu, spacing, position, orientation, instance, thickness, path,
                 series=None):
        self.hu = hu
        self.spacing = spacing
        self.position = position
        self.orientation = orientation
        self.instance = instance
        self.thickness = thickness
        self.path = path
        self.series = series


class _BadPixelValues(ValueError):
    """A DICOM image whose values are wrong (zero slope, NaN): raised even with ``strict=False``,
    which skips only files that are not DICOM images."""


def _require_file(path: Path, what: str, hint: str = "") -> None:
    """``FileNotFoundError`` / ``IsADirectoryError`` / ``ValueError`` unless ``path`` is a file."""
    if path.is_file():
        return
    if path.is_dir():
        raise IsADirectoryError(f"{what} {str(path)!r} is a directory, not a file{hint}")
    if path.exists():
        raise ValueError(f"{what} {str(path)!r} is not a regular file")
    raise FileNotFoundError(f"{what} {str(path)!r} does not exist")


def _to_float32(values: np.ndarray, where: str, error=ValueError) -> np.ndarray:
    """``values`` as float32; ``ValueError`` naming ``where`` if any value is NaN or +-Inf
    (in the input, or beyond the float32 range after the conversion)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(values, dtype=np.float32)
    bad = out.size - int(np.count_nonzero(np.isfinite(out)))
    if bad:
        given = 0
        if values.dtype.kind == "f":
            given = values.size - int(np.count_nonzero(np.isfinite(values)))
        parts = []
        if given:
            parts.append(f"{given} NaN or infinite")
        if bad - given:
            parts.append(f"{bad - given} beyond the float32 range of +-3.4e38")
        raise error(f"{where}: {bad} of {out.size} values are not finite "
                         f"({', '.join(parts)})")
    return out


def _rescale(ds, name: str, default: float, where: str) -> float:
    value = getattr(ds, name, None)
    if value is None or value == "":
        return default
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise _BadPixelValues(f"{where}: {name} {value!r} is not a number") from None
    if not math.isfinite(out):
        raise _BadPixelValues(f"{where}: {name} must be finite, got {out!r}")
    return out


def _floats(value, count: int) -> Optional[Tuple[float, ...]]:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == count and all(math.isfinite(v) for v in out) else None


def read_dicom_slice(path: PathLike, force: bool = False) -> DicomSlice:
    """Read one DICOM image file and apply its rescale slope and intercept.

    Parameters
    ----------
    path : str or path-like
        A DICOM file holding one single-frame, single-channel image (e.g. one CT slice).
    force : bool, default False
        Also read files without the DICOM file header (128-byte preamble, ``"DICM"`` prefix and
        file meta information), as some old or exporting systems write them; their transfer
        syntax is taken from the encoding pydicom detects. Off by default, because then any file
        is parsed as DICOM.

    Returns
    -------
    DicomSlice
        With ``hu`` (float32 ``(H, W)``) = stored value * ``RescaleSlope`` + ``RescaleIntercept``
        (defaults 1 and 0 when absent), its pixel spacing, position and orientation.

    Raises
    ------
    FileNotFoundError / IsADirectoryError
        ``path`` does not exist or is a directory.
    TypeError
        ``force`` is not a bool.
    ValueError
        Not a readable DICOM file (a file without the DICOM header unless ``force``), no pixel
        data (a non-image object such as a structured report or DICOMDIR), pixel data that cannot
        be decoded, not a single 2D grey-level frame, a ``RescaleSlope`` of 0 or a rescale value
        that is not a finite number, or values that are not finite (NaN or +-Inf, also after the
        rescale or the conversion to float32).
    """
    if not isinstance(force, (bool, np.bool_)):
        raise TypeError(f"force must be a bool, got {type(force).__name__}")
    try:
        return _read_dicom_slice(Path(path), bool(force))
    except _BadPixelValues as exc:
        raise ValueError(str(exc)) from None


def _read_dicom_slice(path: Path, force: bool) -> DicomSlice:
    """:func:`read_dicom_slice`, raising :class:`_BadPixelValues` for wrong values."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    _require_file(path, "DICOM file", " (use load_dicom_folder for a folder of slices)")
    try:
        ds = pydicom.dcmread(str(path), force=force)
    except InvalidDicomError as exc:
        # pydicom's message ends "Use force=True to force reading."; say how to do that here
        reason = str(exc).replace("Use force=True to force reading.", "").strip()
        raise ValueError(f"{str(path)!r} is not a readable DICOM file ({reason}); if it is a "
                         f"DICOM file written without that header, pass force=True") from None
    except Exception as exc:  # truncated or corrupt files raise assorted errors
        raise ValueError(f"{str(path)!r} is not a readable DICOM file "
                         f"({type(exc).__name__}: {exc})") from None
    headerless = "TransferSyntaxUID" not in (getattr(ds, "file_meta", None) or {})
    if "PixelData" not in ds:
        sop = getattr(ds, "SOPClassUID", None)
        kind = f" (SOP class {getattr(sop, 'name', sop)})" if sop is not None else ""
        also = (" (read with force=True and no DICOM file header: perhaps not a DICOM file)"
                if force and headerless else "")
        raise ValueError(f"{str(path)!r} is a DICOM file without pixel data{kind}: not an "
                         f"image{also}")
    if force and headerless:
        encoding = getattr(ds, "original_encoding", None)
        syntax = {(True, True): pydicom.uid.ImplicitVRLittleEndian,
                  (False, True): pydicom.uid.ExplicitVRLittleEndian,
                  (False, False): pydicom.uid.ExplicitVRBigEndian}.get(tuple(encoding or ()))
        if syntax is None:
            raise ValueError(f"{str(path)!r}: no DICOM file header and no transfer syntax could "
                             f"be inferred for its pixel data")
        if getattr(ds, "file_meta", None) is None:
            ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = syntax
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
    where = repr(str(path))
    slope = _rescale(ds, "RescaleSlope", 1.0, where)
    if slope == 0:
        raise _BadPixelValues(f"{where}: RescaleSlope is 0, which maps every pixel to the "
                         f"RescaleIntercept; the file's rescale tags are wrong")
    intercept = _rescale(ds, "RescaleIntercept", 0.0, where)
    with np.errstate(over="ignore", invalid="ignore"):
        hu = pixels.astype(np.float64) * slope + intercept
    hu = _to_float32(hu, f"{where} (after RescaleSlope {slope:g}, RescaleIntercept "
                         f"{intercept:g})", _BadPixelValues)
    series = getattr(ds, "SeriesInstanceUID", None)
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
        series=str(series) if series not in (None, "") else None,
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


_ORIENTATION_TOL = 1e-4


def load_dicom_folder(path: PathLike, strict: bool = True, series: Optional[str] = None,
                      force: bool = False
                      ) -> Tuple[torch.Tensor, Tuple[float, float, float]]:
    """Load a folder of single-slice DICOM files (one series) as a volume in Hounsfield units.

    Slices are sorted by their position along the slice normal (``ImagePositionPatient`` projected
    on the cross product of the ``ImageOrientationPatient`` direction cosines; the z coordinate
    when the orientation is missing), then by ``InstanceNumber``, then by file name. Rescale slope
    and intercept are applied to every slice.

    The slices must form one series: a folder whose slices carry more than one
    ``SeriesInstanceUID`` is refused unless ``series`` picks one, and so are slices whose
    ``ImageOrientationPatient`` differs from the first slice's by more than 1e-4. Slices without
    these tags are not checked.

    Parameters
    ----------
    path : str or path-like
        A directory. Hidden files (names starting with ".") and sub-directories are ignored.
    strict : bool, default True
        If True, any other file that is not a readable DICOM image raises ``ValueError``; if False,
        such files are skipped (at least one image must remain). Images with wrong values (a
        ``RescaleSlope`` of 0, values that are not finite) raise ``ValueError`` either way.
    series : str, optional
        A ``SeriesInstanceUID``: load only the slices of that series (slices without the tag are
        left out), for a folder that holds several series.
    force : bool, default False
        Passed to :func:`read_dicom_slice`: also read DICOM files written without the file header.

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
    TypeError
        ``series`` is not a string or None, ``force`` not a bool.
    ValueError
        Empty folder (no files), unreadable or non-image DICOM files (``strict``; see
        :func:`read_dicom_slice`), slices of more than one series (``SeriesInstanceUID``) or no
        slice of ``series``, slices with different orientations, shapes or pixel spacings, or two
        slices at the same position.
    """
    if series is not None and not isinstance(series, str):
        raise TypeError(f"series must be a SeriesInstanceUID string or None, "
                        f"got {type(series).__name__}")
    if not isinstance(force, (bool, np.bool_)):
        raise TypeError(f"force must be a bool, got {type(force).__name__}")
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
            slices.append(_read_dicom_slice(f, bool(force)))
        except _BadPixelValues as exc:  # an image with wrong values: never skipped
            raise ValueError(f"in folder {str(folder)!r}: {exc}") from None
        except ValueError as exc:
            if strict:
                raise ValueError(f"in folder {str(folder)!r}: {exc} (pass strict=False to skip "
                                 f"files that are not DICOM images)") from None
            skipped.append(f.name)
    if not slices:
        raise ValueError(f"DICOM folder {str(folder)!r} holds no readable DICOM image "
                         f"(skipped: {', '.join(skipped)})")

    def n_files(n):
        return f"{n} file{'s' if n != 1 else ''}"

    counts = {}
    for s in slices:
        if s.series is not None:
            counts[s.series] = counts.get(s.series, 0) + 1
    if series is not None:
        series = series.strip()
        if series not in counts:
            found = ", ".join(f"{uid!r} ({n_files(n)})" for uid, n in sorted(counts.items()))
            raise ValueError(f"DICOM folder {str(folder)!r} holds no slice of series "
                             f"{series!r}; its series: {found or 'none (no SeriesInstanceUID)'}")
        slices = [s for s in slices if s.series == series]
    elif len(counts) > 1:
        found = ", ".join(f"{uid!r} ({n_files(n)})" for uid, n in sorted(counts.items()))
        raise ValueError(f"DICOM folder {str(folder)!r} holds slices of {len(counts)} series "
                         f"(SeriesInstanceUID): {found}; load one series at a time: pass "
                         f"series=<SeriesInstanceUID>, or put each series in its own folder")

    ref = next((s for s in slices if s.orientation is not None), None)
    if ref is not None:
        differ = [s for s in slices if s.orientation is not None and
                  max(abs(a - b) for a, b in zip(s.orientation, ref.orientation))
                  > _ORIENTATION_TOL]
        if differ:
            names = ", ".join(f"{s.path.name!r} {tuple(round(v, 6) for v in s.orientation)}"
                              for s in differ[:3])
            more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
            verb = "differs" if len(differ) == 1 else "differ"
            raise ValueError(f"DICOM folder {str(folder)!r}: slices have different orientations "
                             f"(ImageOrientationPatient, tolerance {_ORIENTATION_TOL:g}): "
                             f"{names}{more} {verb} from {ref.path.name!r} "
                             f"{tuple(round(v, 6) for v in ref.orientation)}; one folder must "
                             f"hold one series of parallel slices")

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
    volume = torch.from_numpy(np.stack([s.hu for s in slices]).astype(np.float32, copy=False))
    dy, dx = slices[0].spacing
    return volume, (dz, float(dy), float(dx))


def _check_array(arr: np.ndarray, where: str) -> torch.Tensor:
    if arr.dtype.kind not in "iubf":
        raise ValueError(f"{where}: expected a real numeric array, got dtype {arr.dtype}")
    if arr.ndim < 2:
        raise ValueError(f"{where}: expected images of shape (..., H, W), got shape {arr.shape}")
    if 0 in arr.shape:
        raise ValueError(f"{where}: array is empty, shape {arr.shape}")
    return torch.from_numpy(_to_float32(arr, where))


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
    FileNotFoundError / IsADirectoryError
        No such file, or ``path`` is a directory.
    KeyError
        ``key`` not in the archive (the message lists the keys).
    ValueError
        Unreadable file, unknown suffix, several arrays and no ``key``, a key for a ``.npy``,
        non-numeric, empty or fewer-than-2D arrays, or values that are not finite (NaN, +-Inf, or
        beyond the float32 range).
    """
    path = Path(path)
    _require_file(path, "NumPy file")
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


def _sample_indices(indices, n: int, where: str):
    """``indices`` for ``n`` samples as a ``range`` (from a slice) or an int64 array of indices in
    ``[0, n)`` (from integers, negative counting from the end, or a boolean mask of length ``n``).
    """
    wrong = "indices must be a slice, a sequence of integers or a boolean mask"
    if isinstance(indices, slice):
        try:
            return range(n)[indices]
        except TypeError:
            raise TypeError(f"indices: slice bounds and step must be integers or None, got "
                            f"{indices!r}") from None
        except ValueError as exc:  # step 0
            raise ValueError(f"indices: {exc}, got {indices!r}") from None
    if isinstance(indices, (set, frozenset, dict)):  # no order to read the samples in
        raise TypeError(f"{wrong} (in order), got {type(indices).__name__}")
    if isinstance(indices, (bool, np.bool_, str, bytes, numbers.Number)) and not (
            isinstance(indices, numbers.Integral) and not isinstance(indices, (bool, np.bool_))):
        raise TypeError(f"{wrong}, got {type(indices).__name__}")
    if isinstance(indices, numbers.Integral):  # a single index, read as a one-sample batch
        indices = [indices]
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    if isinstance(indices, np.ndarray):
        arr = indices.reshape(-1)
        if arr.dtype == bool:
            mask = indices
        elif arr.dtype.kind in "iu" or arr.size == 0:
            mask = None
            arr = arr.astype(np.int64) if arr.size == 0 else arr
        else:
            raise TypeError(f"{wrong}, got an array of dtype {arr.dtype}")
    else:
        try:
            values = list(indices)
        except TypeError:
            raise TypeError(f"{wrong}, got {type(indices).__name__}") from None
        flags = [isinstance(v, (bool, np.bool_)) for v in values]
        if values and all(flags):
            mask = np.asarray(values, dtype=bool)
        else:
            for v, flag in zip(values, flags):
                if flag or not isinstance(v, numbers.Integral):
                    raise TypeError(f"{wrong}, got an element {v!r} of type {type(v).__name__}")
            mask = None
            bad = [int(v) for v in values if not -n <= int(v) < n]
            if bad:
                raise ValueError(f"{where}: indices out of range for {n} samples: {bad[:10]}")
            arr = np.asarray([int(v) for v in values], dtype=np.int64)
    if mask is not None:
        if mask.shape != (n,):
            raise ValueError(f"{where}: a boolean mask for indices needs one entry per sample, "
                             f"shape ({n},), got shape {mask.shape}")
        return np.flatnonzero(mask).astype(np.int64)
    if arr.size and (arr.min() < -n or arr.max() >= n):
        bad = arr[(arr < -n) | (arr >= n)]
        raise ValueError(f"{where}: indices out of range for {n} samples: {bad[:10].tolist()}")
    arr = arr.astype(np.int64)
    return np.where(arr < 0, arr + n, arr)


def load_lodopab_hdf5(path: PathLike, key: str = "data",
                      indices: Optional[Union[slice, Sequence[int], Sequence[bool]]] = None
                      ) -> torch.Tensor:
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
    indices : slice, sequence of int, or boolean mask, optional
        Samples to read (along axis 0), in the order given; all by default. A slice may have any
        non-zero step (negative steps read backwards); integers may be negative (counting from
        the end) but must not repeat; a boolean mask has one entry per sample.

    Returns
    -------
    torch.Tensor, float32, shape ``(n, A, B)``.

    Raises
    ------
    FileNotFoundError / IsADirectoryError
        No such file, or ``path`` is a directory.
    KeyError
        No dataset ``key`` (the message lists what the file holds).
    TypeError
        ``indices`` is neither a slice, a sequence of integers nor a boolean mask (floats, strings
        and bools mixed with integers are refused).
    ValueError
        Not an HDF5 file, ``key`` is a group, the dataset is not 3D ``(n, A, B)``, ``indices``
        out of range, repeated, selecting no sample, a slice step of 0, a mask of the wrong
        length, or values that are not finite (NaN, +-Inf, or beyond the float32 range).
    """
    import h5py

    path = Path(path)
    _require_file(path, "HDF5 file")
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
        where = f"{str(path)!r}[{key!r}]"
        if indices is None:
            arr = ds[()]
        else:
            idx = _sample_indices(indices, ds.shape[0], where)
            if len(idx) == 0:
                raise ValueError(f"{where}: indices {indices!r} select no sample (the dataset "
                                 f"holds {ds.shape[0]})")
            if isinstance(idx, range):
                if idx.step > 0:
                    arr = ds[idx.start:idx.stop:idx.step]
                else:  # h5py reads increasing steps only: read forwards, then reverse
                    fwd = idx[::-1]
                    arr = ds[fwd.start:fwd.stop:fwd.step][::-1]
            else:
                order = np.argsort(idx, kind="stable")
                if np.unique(idx).size != idx.size:
                    raise ValueError(f"{where}: indices must not repeat, got {idx.tolist()[:20]}")
                got = ds[np.sort(idx)]  # h5py needs increasing indices
                arr = np.empty_like(got)
                arr[order] = got
    return _check_array(np.asarray(arr), where)
