"""Loaders: DICOM folders (made from CT_small.dcm), NumPy files and LoDoPaB-style HDF5."""

import h5py
import numpy as np
import pydicom
import pytest
import torch

from recon.data import load_dicom_folder, load_lodopab_hdf5, load_npy, read_dicom_slice
from recon.data.ct_small import ct_small_path


def _write_series(folder, z_positions, instance_numbers, marks=None):
    """Copies of CT_small.dcm at the given z positions; pixel (0, 0) stores ``marks[i]``."""
    folder.mkdir(exist_ok=True)
    for i, (z, inst) in enumerate(zip(z_positions, instance_numbers)):
        ds = pydicom.dcmread(ct_small_path())
        x, y, _ = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, float(z)]
        ds.InstanceNumber = int(inst)
        px = ds.pixel_array.copy()
        px[0, 0] = 1000 + (i if marks is None else marks[i])
        ds.PixelData = px.tobytes()
        ds.save_as(folder / f"slice_{i:02d}.dcm")
    return folder


def test_read_single_slice_hu():
    s = read_dicom_slice(ct_small_path())
    raw = pydicom.dcmread(ct_small_path()).pixel_array
    assert s.hu.dtype == np.float32 and s.hu.shape == (128, 128)
    assert np.array_equal(s.hu, raw.astype(np.float32) - 1024)
    assert s.spacing == pytest.approx((0.661468, 0.661468))


def test_dicom_folder_sorted_by_position(tmp_path):
    # files written in the order z = 10, -5, 0 (marks 0, 1, 2); instance numbers disagree
    folder = _write_series(tmp_path / "series", [10.0, -5.0, 0.0], [1, 2, 3])
    vol, spacing = load_dicom_folder(folder)
    assert vol.shape == (3, 128, 128) and vol.dtype == torch.float32
    assert vol[:, 0, 0].tolist() == [1001 - 1024, 1002 - 1024, 1000 - 1024]  # z = -5, 0, 10
    assert spacing[0] == pytest.approx(7.5)  # median of gaps 5 and 10
    assert spacing[1:] == pytest.approx((0.661468, 0.661468))
    hu = read_dicom_slice(ct_small_path()).hu
    assert np.array_equal(vol[0, 1:, :].numpy(), hu[1:, :])  # rescale applied


def test_dicom_folder_rescale_slope(tmp_path):
    folder = tmp_path / "slope"
    folder.mkdir()
    ds = pydicom.dcmread(ct_small_path())
    ds.RescaleSlope = 2
    ds.RescaleIntercept = -100
    ds.save_as(folder / "a.dcm")
    vol, spacing = load_dicom_folder(folder)
    raw = ds.pixel_array.astype(np.float32)
    assert np.array_equal(vol[0].numpy(), raw * 2 - 100)
    assert spacing[0] == pytest.approx(5.0)  # one slice: SliceThickness


def test_dicom_folder_instance_number_fallback(tmp_path):
    folder = tmp_path / "noposition"
    folder.mkdir()
    for i, inst in enumerate([3, 1, 2]):
        ds = pydicom.dcmread(ct_small_path())
        del ds.ImagePositionPatient
        ds.InstanceNumber = inst
        px = ds.pixel_array.copy()
        px[0, 0] = 1000 + inst
        ds.PixelData = px.tobytes()
        ds.save_as(folder / f"f{i}.dcm")
    vol, spacing = load_dicom_folder(folder)
    assert vol[:, 0, 0].tolist() == [1001 - 1024, 1002 - 1024, 1003 - 1024]
    assert np.isnan(spacing[0])


def test_dicom_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_dicom_folder(tmp_path / "missing")
    with pytest.raises(NotADirectoryError):
        load_dicom_folder(ct_small_path())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        load_dicom_folder(empty)

    # a non-DICOM file among the slices
    folder = _write_series(tmp_path / "mixed", [0.0, 5.0], [1, 2])
    (folder / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="not a readable DICOM"):
        load_dicom_folder(folder)
    vol, _ = load_dicom_folder(folder, strict=False)
    assert vol.shape[0] == 2

    # a DICOM file without pixel data (non-image object)
    nonimage = tmp_path / "nonimage"
    nonimage.mkdir()
    ds = pydicom.dcmread(ct_small_path())
    del ds.PixelData
    ds.save_as(nonimage / "sr.dcm")
    with pytest.raises(ValueError, match="without pixel data"):
        load_dicom_folder(nonimage)
    with pytest.raises(ValueError, match="without pixel data"):
        read_dicom_slice(nonimage / "sr.dcm")
    with pytest.raises(ValueError, match="no readable DICOM image"):
        load_dicom_folder(nonimage, strict=False)

    # a truncated file
    broken = tmp_path / "broken"
    broken.mkdir()
    data = open(ct_small_path(), "rb").read()
    (broken / "cut.dcm").write_bytes(data[:400])
    with pytest.raises(ValueError, match="cut.dcm"):
        load_dicom_folder(broken)

    # slices of different shapes
    shapes = _write_series(tmp_path / "shapes", [0.0, 5.0], [1, 2])
    ds = pydicom.dcmread(shapes / "slice_01.dcm")
    small = ds.pixel_array[:64, :64].copy()
    ds.Rows, ds.Columns = 64, 64
    ds.PixelData = small.tobytes()
    ds.save_as(shapes / "slice_01.dcm")
    with pytest.raises(ValueError, match="different shapes"):
        load_dicom_folder(shapes)

    # two slices at the same position
    dup = _write_series(tmp_path / "dup", [0.0, 0.0], [1, 2])
    with pytest.raises(ValueError, match="same position"):
        load_dicom_folder(dup)


def test_load_npy_and_npz(tmp_path):
    arr = np.arange(2 * 4 * 5, dtype=np.int16).reshape(2, 4, 5)
    np.save(tmp_path / "a.npy", arr)
    got = load_npy(tmp_path / "a.npy")
    assert got.dtype == torch.float32 and torch.equal(got, torch.from_numpy(arr).float())
    np.savez(tmp_path / "one.npz", images=arr)
    assert torch.equal(load_npy(tmp_path / "one.npz"), got)
    np.savez(tmp_path / "two.npz", images=arr, labels=np.zeros((3, 3)))
    assert torch.equal(load_npy(tmp_path / "two.npz", key="images"), got)

    with pytest.raises(ValueError, match="pass key"):
        load_npy(tmp_path / "two.npz")
    with pytest.raises(KeyError, match="available keys"):
        load_npy(tmp_path / "two.npz", key="sinograms")
    with pytest.raises(ValueError, match="key must be None"):
        load_npy(tmp_path / "a.npy", key="images")
    np.save(tmp_path / "vec.npy", np.zeros(7))
    with pytest.raises(ValueError, match="shape"):
        load_npy(tmp_path / "vec.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a readable NumPy file"):
        load_npy(tmp_path / "obj.npy")
    np.save(tmp_path / "cplx.npy", np.zeros((3, 3), complex))
    with pytest.raises(ValueError, match="real numeric"):
        load_npy(tmp_path / "cplx.npy")
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable"):
        load_npy(tmp_path / "bad.npy")
    (tmp_path / "img.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="suffix"):
        load_npy(tmp_path / "img.png")
    with pytest.raises(FileNotFoundError):
        load_npy(tmp_path / "none.npy")


def test_load_lodopab_hdf5(tmp_path):
    data = np.random.default_rng(0).random((5, 8, 6)).astype(np.float32)
    path = tmp_path / "ground_truth_test_000.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data)
        f.create_dataset("flat", data=np.zeros(4))
        f.create_group("group")
    got = load_lodopab_hdf5(path)
    assert got.shape == (5, 8, 6) and torch.equal(got, torch.from_numpy(data))
    assert torch.equal(load_lodopab_hdf5(path, indices=slice(1, 3)), torch.from_numpy(data[1:3]))
    assert torch.equal(load_lodopab_hdf5(path, indices=[-2, 0]), torch.from_numpy(data[[3, 0]]))
    assert torch.equal(load_lodopab_hdf5(path, indices=[4, 0, 2]),
                       torch.from_numpy(data[[4, 0, 2]]))

    with pytest.raises(KeyError, match="no dataset 'observation'"):
        load_lodopab_hdf5(path, key="observation")
    with pytest.raises(ValueError, match=r"shape \(n, A, B\)"):
        load_lodopab_hdf5(path, key="flat")
    with pytest.raises(ValueError, match="group"):
        load_lodopab_hdf5(path, key="group")
    with pytest.raises(ValueError, match="out of range"):
        load_lodopab_hdf5(path, indices=[7])
    with pytest.raises(ValueError, match="repeat"):
        load_lodopab_hdf5(path, indices=[1, 1])
    (tmp_path / "fake.hdf5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        load_lodopab_hdf5(tmp_path / "fake.hdf5")
    with pytest.raises(FileNotFoundError):
        load_lodopab_hdf5(tmp_path / "missing.hdf5")


def test_dicom_folder_refuses_two_series(tmp_path):
    # two series at interleaved z in one folder: refused, naming both UIDs; series= picks one
    folder = _write_series(tmp_path / "two", [0.0, 1.0, 2.0, 3.0], [1, 2, 3, 4])
    uids = ["1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"]
    for i in range(4):
        ds = pydicom.dcmread(folder / f"slice_{i:02d}.dcm")
        ds.SeriesInstanceUID = uids[i % 2]
        ds.save_as(folder / f"slice_{i:02d}.dcm")
    with pytest.raises(ValueError, match=r"2 series.*\.498\.1' \(2 files\).*\.498\.2' \(2 files\)"
                       r".*series="):
        load_dicom_folder(folder)
    vol, spacing = load_dicom_folder(folder, series=uids[1])
    assert vol[:, 0, 0].tolist() == [1001 - 1024, 1003 - 1024] and spacing[0] == 2.0
    with pytest.raises(ValueError, match="no slice of series '9.9'"):
        load_dicom_folder(folder, series="9.9")
    with pytest.raises(TypeError, match="series"):
        load_dicom_folder(folder, series=1)


def test_lodopab_indices_checked(tmp_path):
    data = np.arange(5 * 2 * 2, dtype=np.float32).reshape(5, 2, 2)
    path = tmp_path / "x.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data)
    first = lambda ind: load_lodopab_hdf5(path, indices=ind)[:, 0, 0].tolist()  # noqa: E731
    with pytest.raises(TypeError, match="indices"):
        first([1.7])
    with pytest.raises(TypeError, match="indices"):
        first(["a"])
    with pytest.raises(TypeError, match="indices"):
        first([True, 2])
    assert first([True, False, True, False, True]) == [0.0, 8.0, 16.0]  # a mask, not [1, 0, ...]
    with pytest.raises(ValueError, match="one entry per sample"):
        first([True, False])
    assert first(slice(None, None, -1)) == [16.0, 12.0, 8.0, 4.0, 0.0]
    assert first(slice(3, 0, -2)) == [12.0, 4.0]
    assert first([np.int64(-1), 0]) == [16.0, 0.0]
    with pytest.raises(ValueError, match=r"x\.hdf5.*out of range"):
        first([9])
    with pytest.raises(ValueError, match="step cannot be zero"):
        first(slice(None, None, 0))


def test_load_npy_directory(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        load_npy(tmp_path)


def test_rescale_slope_zero_refused(tmp_path):
    folder = tmp_path / "zero"
    folder.mkdir()
    ds = pydicom.dcmread(ct_small_path())
    ds.RescaleSlope = 0
    ds.save_as(folder / "z.dcm")
    with pytest.raises(ValueError, match=r"z\.dcm.*RescaleSlope is 0"):
        read_dicom_slice(folder / "z.dcm")
    with pytest.raises(ValueError, match="RescaleSlope is 0"):  # not skipped as a non-image
        load_dicom_folder(folder, strict=False)


def test_non_finite_values_refused(tmp_path):
    arr = np.ones((2, 3, 3))
    arr[0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", arr.astype(np.float32))
    with pytest.raises(ValueError, match=r"nan\.npy.*1 of 18 values are not finite"):
        load_npy(tmp_path / "nan.npy")
    arr[0, 0, 0] = 1e300  # finite in float64, inf in float32
    np.save(tmp_path / "big.npy", arr)
    with pytest.raises(ValueError, match=r"big\.npy.*1 of 18.*float32 range"):
        load_npy(tmp_path / "big.npy")
    with h5py.File(tmp_path / "inf.hdf5", "w") as f:
        f.create_dataset("data", data=arr)
    with pytest.raises(ValueError, match=r"inf\.hdf5.*not finite"):
        load_lodopab_hdf5(tmp_path / "inf.hdf5")
    assert load_lodopab_hdf5(tmp_path / "inf.hdf5", indices=[1]).shape == (1, 3, 3)
    ds = pydicom.dcmread(ct_small_path())
    ds.RescaleSlope = "1e38"  # overflows float32
    ds.save_as(tmp_path / "huge.dcm")
    with pytest.raises(ValueError, match=r"huge\.dcm.*not finite"):
        read_dicom_slice(tmp_path / "huge.dcm")


def test_dicom_without_file_header_needs_force(tmp_path):
    from pydicom.filebase import DicomFileLike
    from pydicom.filewriter import write_dataset

    ds = pydicom.dcmread(ct_small_path())
    fp = DicomFileLike(open(tmp_path / "nometa.dcm", "wb"))
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)  # no preamble, no "DICM", no file meta
    fp.close()
    with pytest.raises(ValueError, match="not a readable DICOM file.*pass force=True"):
        read_dicom_slice(tmp_path / "nometa.dcm")
    s = read_dicom_slice(tmp_path / "nometa.dcm", force=True)
    assert np.array_equal(s.hu, read_dicom_slice(ct_small_path()).hu)
    vol, _ = load_dicom_folder(tmp_path, force=True)
    assert vol.shape == (1, 128, 128)
