"""The modified Shepp-Logan phantom against an independent reference (scikit-image)."""

import numpy as np

import operators as ops


def test_shepp_logan_matches_scikit_image_reference():
    # An independent reference (Toft's modified Shepp-Logan, scikit-image, 400 x 400 on
    # [-1, 1]^2, row 0 at the top): pins values, positions and the sign of the rotations.
    from skimage.data import shepp_logan_phantom
    ref = shepp_logan_phantom()
    grid = ops.ImageGrid((400, 400), (2 / 400, 2 / 400))
    x = ops.shepp_logan(1.0).rasterize(grid, 2).numpy()
    assert np.abs(x - ref).mean() < 0.01
