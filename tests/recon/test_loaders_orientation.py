"""DICOM series of any orientation are sorted along the slice normal."""

import numpy as np
import pydicom
import pytest

from recon.data import load_dicom_folder
from recon.data.ct_small import ct_small_path


def test_coronal_series_is_sorted_along_its_normal(tmp_path):
    # Coronal slices: rows along -z, columns along x, normal = row x col = (0, -1, 0) direction;
    # every slice has the same z, so sorting by z alone cannot order them (docstring: "sorted by
    # their position along the slice normal").
    folder = tmp_path / "coronal"
    folder.mkdir()
    ys = [20.0, -10.0, 5.0]
    for i, y in enumerate(ys):
        ds = pydicom.dcmread(ct_small_path())
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        ds.ImagePositionPatient = [0.0, y, 0.0]
        ds.InstanceNumber = i + 1
        px = ds.pixel_array.copy()
        px[0, 0] = 1000 + i
        ds.PixelData = px.tobytes()
        ds.save_as(folder / f"s{i}.dcm")
    vol, spacing = load_dicom_folder(folder)
    normal = np.cross([1, 0, 0], [0, 0, -1])          # (0, 1, 0)
    order = np.argsort([normal[1] * y for y in ys])  # positions along the normal, ascending
    assert vol[:, 0, 0].tolist() == [1000 + int(i) - 1024 for i in order]
    assert spacing[0] == pytest.approx(15.0)        # gaps 15 and 15


def test_slices_with_different_orientations_refused(tmp_path):
    folder = tmp_path / "tilted"
    folder.mkdir()
    for i, iop in enumerate([[1, 0, 0, 0, 1, 0], [1, 0, 0, 0, 1, 0.00005], [1, 0, 0, 0, 0.8, 0.6]]):
        ds = pydicom.dcmread(ct_small_path())
        ds.ImageOrientationPatient = iop
        ds.ImagePositionPatient = [0.0, 0.0, float(i)]
        ds.save_as(folder / f"s{i}.dcm")
    with pytest.raises(ValueError,
                       match=r"different orientations.*'s2\.dcm'.*differs from 's0\.dcm'"):
        load_dicom_folder(folder)
    (folder / "s2.dcm").unlink()  # within the 1e-4 tolerance: loads
    assert load_dicom_folder(folder)[0].shape == (2, 128, 128)
