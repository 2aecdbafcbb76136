"""Canvas resampling: exact transform back to input voxels, anatomical orientation, intensity checks."""

import numpy as np
import pytest

from CardiacLandmarksLib.core.errors import InvalidImageError
from CardiacLandmarksLib.core.preprocessing import (
    CANVAS_MM,
    make_grid,
    normalise_intensity,
    resample_to_canvas,
    to_canvas,
)
from CardiacLandmarksLib.core.series import CMRSeries


def oblique_series(direction, shape=(1, 1, 90, 110), spacing=(1.3, 1.1, 8.0)):
    return CMRSeries(np.zeros(shape, np.float32), spacing, np.asarray(direction, float), np.array([[10.0, -20.0, 30.0]]))


def test_canvas_roundtrip_and_mm():
    d = np.array([[0.6, 0.8, 0.0], [-0.8, 0.6, 0.0], [0.0, 0.0, 1.0]]).T
    s = oblique_series(d)
    g = make_grid(s, 0)
    xy = np.array([[3.0, 4.0], [100.5, 20.25], [191.0, 0.0]])
    np.testing.assert_allclose(g.ijk_to_canvas(g.canvas_to_ijk(xy)), xy, atol=1e-9)
    # one canvas pixel = CANVAS_MM in patient space
    p = s.ijk_to_lps(g.canvas_to_ijk(np.array([[10.0, 10.0], [11.0, 10.0], [10.0, 11.0]])))
    assert np.linalg.norm(p[1] - p[0]) == pytest.approx(CANVAS_MM)
    assert np.linalg.norm(p[2] - p[0]) == pytest.approx(CANVAS_MM)
    # canvas centre = image centre
    centre = g.canvas_to_ijk(np.array([(g.size - 1) / 2, (g.size - 1) / 2]))
    np.testing.assert_allclose(centre[:2], [(110 - 1) / 2, (90 - 1) / 2], atol=1e-9)


@pytest.mark.parametrize("mirror", [False, True])
def test_canvas_is_anatomical_when_orientation_known(mirror):
    # an oblique plane; optional mirrored in-plane axes: the long-axis canvas must show anterior up and the patient's
    # left on the right; the short-axis canvas (default) the head up, turned from it in plane, never mirrored
    u = np.array([0.2, 0.9, -0.3])
    u /= np.linalg.norm(u)
    v = np.cross(np.array([0.5, -0.2, 0.8]), u)
    v /= np.linalg.norm(v)
    if mirror:
        u = -u
    d = np.stack([u, v, np.cross(u, v)], 1)
    s = oblique_series(d)
    steps = {}
    for up in ("anterior", "superior"):
        g = make_grid(s, 0, up=up)
        p0, pdown, pright = s.ijk_to_lps(g.canvas_to_ijk(np.array([[96.0, 96.0], [96.0, 97.0], [97.0, 96.0]])))
        steps[up] = (pdown - p0, pright - p0)
    down, right = steps["anterior"]
    assert down[1] > 0  # moving down the canvas goes posterior (+y in LPS)
    assert right[0] > 0  # moving right goes to the patient's left (+x in LPS)
    down_s, right_s = steps["superior"]
    head = np.array([0.0, 0.0, 1.0])
    head_in_plane = head - (head @ d[:, 2]) * d[:, 2]
    np.testing.assert_allclose(-down_s / CANVAS_MM, head_in_plane / np.linalg.norm(head_in_plane), atol=1e-9)
    # same handedness: the two canvases are turned, not mirrored, against each other
    assert np.cross(right_s, down_s) @ np.cross(right, down) > 0


def test_resample_places_a_bright_spot_at_the_mapped_position():
    img = np.zeros((1, 90, 110), np.float32)
    img[0, 40, 70] = 1.0
    d = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])  # i -> +y, j -> +x
    s = oblique_series(d)
    g = make_grid(s, 0)
    can = resample_to_canvas(img, g)[0]
    y, x = np.unravel_index(np.argmax(can), can.shape)
    expected = g.ijk_to_canvas(np.array([70.0, 40.0, 0.0]))
    assert np.hypot(x - expected[0], y - expected[1]) <= 1.0


def test_intensity_normalisation_and_errors():
    rng = np.random.default_rng(0)
    img = rng.normal(500, 100, (64, 64)).astype(np.float32)
    n = normalise_intensity(img)
    assert 0.0 <= n.min() and n.max() <= 1.5 and 0.3 < n.mean() < 0.7
    assert not normalise_intensity(np.full((8, 8), 7.0)).any()  # constant slice -> zeros, not NaN
    bad = img.copy()
    bad[3, 3] = np.nan
    with pytest.raises(InvalidImageError, match="NaN"):
        normalise_intensity(bad)


def test_to_canvas_real_sunnybrook(sunnybrook_dicom):
    from CardiacLandmarksLib.io.load import load_series

    s = load_series(sunnybrook_dicom)
    images, grid = to_canvas(s, 5, phases=[0, 7])
    assert images.shape == (2, grid.size, grid.size)
    assert np.isfinite(images).all() and images.max() > 0.5
    # canvas is centred on the field of view: centre row/column maps to the image centre
    c = grid.canvas_to_ijk(np.array([(grid.size - 1) / 2] * 2))
    np.testing.assert_allclose(c[:2], [127.5, 127.5], atol=1e-6)
