"""geometry.py: ijk <-> LPS round trips on oblique stacks with uneven gaps, LPS <-> RAS, anatomical axes.

Expected positions are built by hand from the definition (origin + i*si*u + j*sj*v on the
slice's own origin), not taken from the functions under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from CardiacLandmarksLib.core import geometry
from CardiacLandmarksLib.core.errors import MissingGeometryError


def _rotation(axis, angle) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


@pytest.fixture()
def stack():
    d = _rotation([0.2, -0.7, 0.4], 1.1)
    heights = np.array([0.0, 8.0, 18.0, 26.5])  # uneven gaps along the normal
    base = np.array([-40.0, 12.0, 95.0])
    origins = base + heights[:, None] * d[:, 2]
    origins[2] += 0.3 * d[:, 0]  # slice 2 shifted in plane (origins need not be collinear)
    return d, (1.25, 1.5), origins


def test_integer_voxels_match_definition(stack):
    d, sp, origins = stack
    for i, j, k in [(0, 0, 0), (10, 3, 1), (255, 200, 3), (7, 9, 2)]:
        expected = origins[k] + i * sp[0] * d[:, 0] + j * sp[1] * d[:, 1]
        np.testing.assert_allclose(geometry.ijk_to_lps(np.array([i, j, k], float), d, sp, origins), expected, atol=1e-9)


def test_roundtrip_including_fractional_and_outside_slices(stack):
    d, sp, origins = stack
    rng = np.random.default_rng(3)
    ijk = np.column_stack([rng.uniform(-5, 260, 200), rng.uniform(-5, 260, 200), rng.uniform(-0.8, 3.9, 200)])
    lps = geometry.ijk_to_lps(ijk, d, sp, origins)
    back = geometry.lps_to_ijk(lps, d, sp, origins)
    np.testing.assert_allclose(back, ijk, atol=1e-6)


def test_fractional_k_interpolates_between_uneven_slices(stack):
    d, sp, origins = stack
    # halfway between slices 1 (8 mm) and 2 (18 mm) lies 13 mm along the normal
    p = geometry.ijk_to_lps(np.array([0.0, 0.0, 1.5]), d, sp, origins)
    assert (p - origins[0]) @ d[:, 2] == pytest.approx(13.0)
    k = geometry.lps_to_ijk(origins[0] + 13.0 * d[:, 2], d, sp, origins)[2]
    assert k == pytest.approx(1.5)


def test_single_slice(stack):
    d, sp, origins = stack
    one = origins[:1]
    p = one[0] + 4 * sp[0] * d[:, 0] + 6 * sp[1] * d[:, 1] + 2.0 * d[:, 2]  # 2 mm off the plane
    ijk = geometry.lps_to_ijk(p, d, sp, one)
    np.testing.assert_allclose(ijk, [4.0, 6.0, 0.0], atol=1e-9)


def test_unsorted_origins_rejected(stack):
    d, sp, origins = stack
    with pytest.raises(MissingGeometryError, match="increase"):
        geometry.lps_to_ijk(origins[0], d, sp, origins[::-1])


def test_lps_ras():
    p = np.array([[1.0, -2.0, 3.0], [0.0, 5.5, -7.0]])
    np.testing.assert_allclose(geometry.lps_to_ras(p), [[-1.0, 2.0, 3.0], [0.0, -5.5, -7.0]])
    np.testing.assert_allclose(geometry.ras_to_lps(geometry.lps_to_ras(p)), p)


def test_anatomical_axes_of_an_axial_plane():
    # axial slice, i along patient left (+x LPS), j along posterior (+y LPS)
    d = np.eye(3)
    col, row = geometry.in_plane_anatomical_axes(d)
    np.testing.assert_allclose(row, [0.0, 1.0, 0.0], atol=1e-12)  # rows run anterior -> posterior
    np.testing.assert_allclose(col, [1.0, 0.0, 0.0], atol=1e-12)  # columns run right -> left
    # a coronal plane (i = left, j = superior) contains no anterior-posterior direction
    coronal = np.column_stack([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    with pytest.raises(MissingGeometryError, match="anterior"):
        geometry.in_plane_anatomical_axes(coronal)


def test_superior_up_frame_is_the_anterior_frame_turned_until_the_head_is_up():
    # i runs left and up (45 degrees), j posterior: anterior-up frame = (i, j); the head lies along +i (to the
    # right on screen), so the superior-up frame is that frame turned by 90 degrees: right = posterior,
    # down = -(i) = right and towards the feet; never mirrored
    u = np.array([1.0, 0.0, 1.0]) / np.sqrt(2.0)
    d = np.column_stack([u, [0.0, 1.0, 0.0], np.cross(u, [0.0, 1.0, 0.0])])
    col_a, row_a = geometry.in_plane_anatomical_axes(d)
    np.testing.assert_allclose(col_a, u, atol=1e-12)
    np.testing.assert_allclose(row_a, [0.0, 1.0, 0.0], atol=1e-12)
    col, row = geometry.in_plane_anatomical_axes(d, up="superior")
    np.testing.assert_allclose(col, [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(row, -u, atol=1e-12)
    assert np.cross(col, row) @ np.cross(col_a, row_a) == pytest.approx(1.0)
    # an axial plane has no head-foot component: the anterior-up frame stands
    for a, b in zip(geometry.in_plane_anatomical_axes(np.eye(3), up="superior"), geometry.in_plane_anatomical_axes(np.eye(3))):
        np.testing.assert_allclose(a, b)
    with pytest.raises(ValueError, match="up must be"):
        geometry.in_plane_anatomical_axes(d, up="left")


def test_superior_up_frame_survives_an_lps_ras_mix_up_that_turns_the_anterior_frame_over():
    """A header written with x and y negated (the M&Ms-2 copies: RV left and posterior of the LV in LPS) turns the
    anterior-up frame upside down on screen; the superior-up frame, seen in the image, does not move."""
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    d = q * np.sign(np.linalg.det(q))
    flipped = np.diag([-1.0, -1.0, 1.0]) @ d

    def on_screen(direction, up):  # the frame's axes in image (i, j) coordinates
        col, row = geometry.in_plane_anatomical_axes(direction, up)
        return np.array([[col @ direction[:, 0], col @ direction[:, 1]], [row @ direction[:, 0], row @ direction[:, 1]]])

    np.testing.assert_allclose(on_screen(flipped, "superior"), on_screen(d, "superior"), atol=1e-12)
    np.testing.assert_allclose(on_screen(flipped, "anterior"), -on_screen(d, "anterior"), atol=1e-12)


def test_mnms2_header_puts_the_rv_left_and_behind_the_lv_but_the_superior_up_canvas_shows_it_on_the_left(data_root):
    """The shared M&Ms-2 SAX copy: its header is x/y-negated (RV left-posterior of the LV in LPS, impossible in a
    normal heart), and its LAX copy agrees with it, so the loader is not at fault. On the superior-up canvas the
    RV lies on the viewer's left all the same (as on the ACDC images the models learnt from)."""
    from CardiacLandmarksLib.core.preprocessing import make_grid
    from CardiacLandmarksLib.io.load import load_series

    folder = data_root / "mnms2" / "001"
    s, m = load_series(folder / "001_SA_ED.nii.gz"), load_series(folder / "001_SA_ED_gt.nii.gz")
    lab = np.rint(m.pixels[0]).astype(int)  # 1 LV, 2 myocardium, 3 RV

    def centroid_ijk(v):
        kji = np.argwhere(lab == v).mean(0)
        return np.array([kji[2], kji[1], kji[0]])

    lv, rv = centroid_ijk(1), centroid_ijk(3)
    rv_minus_lv = s.ijk_to_lps(rv) - s.ijk_to_lps(lv)
    assert rv_minus_lv[0] > 10 and rv_minus_lv[1] > 10  # left (+x) and posterior (+y) in LPS: a mixed-up header
    k = int(round(lv[2]))
    for up, rv_left in (("superior", True), ("anterior", False)):
        g = make_grid(s, k, up=up)
        x_lv, x_rv = g.ijk_to_canvas(lv[:2])[0], g.ijk_to_canvas(rv[:2])[0]
        assert (x_rv < x_lv - 10) == rv_left, up


def test_ijk_to_ras_matrix_maps_like_the_series_on_an_oblique_scanner_stack(data_root):
    """The one IJK->RAS matrix (Slicer volume nodes, browser app) agrees with the series' own ijk->LPS map."""
    from CardiacLandmarksLib.core.errors import MissingGeometryError
    from CardiacLandmarksLib.core.geometry import ijk_to_ras_matrix, lps_to_ras
    from CardiacLandmarksLib.io.load import load_series

    s = load_series(data_root / "mnms2" / "001" / "001_SA_ED.nii.gz")
    m = ijk_to_ras_matrix(s.direction, s.spacing, s.slice_origins)
    for ijk in ([0, 0, 0], [10.5, 20.25, 3], [s.shape_ji[1] - 1, s.shape_ji[0] - 1, s.n_slices - 1]):
        np.testing.assert_allclose((m @ np.append(ijk, 1.0))[:3], lps_to_ras(s.ijk_to_lps(np.asarray(ijk, float))),
                                   atol=1e-6)
    uneven = np.asarray(s.slice_origins, float).copy()
    uneven[-1] += 5.0 * np.asarray(s.direction)[:, 2]
    with pytest.raises(MissingGeometryError, match="not evenly spaced"):
        ijk_to_ras_matrix(s.direction, s.spacing, uneven, "sheared")


def test_a_series_whose_geometry_does_not_match_its_pixels_is_refused_by_name(stack):
    """A series is refused when it is built, before any analysis, when its geometry cannot place its pixels: one
    slice position per slice, a 3 x 3 direction, 4-D pixels (a perfusion study once reached a ValueError deep in
    the spacing check with such a hand-built series)."""
    from CardiacLandmarksLib.core.errors import InvalidImageError
    from CardiacLandmarksLib.core.series import CMRSeries

    d, sp, origins = stack
    px = np.zeros((3, 4, 8, 8), np.float32)
    ok = CMRSeries(px, (*sp, 8.0), d, origins, source="stack.nii.gz")
    assert ok.n_slices == 4
    with pytest.raises(InvalidImageError, match=r"stack.nii.gz: 4 slice\(s\) in the pixels but slice positions of shape \(1, 3\)"):
        CMRSeries(px, (*sp, 8.0), d, origins[:1], source="stack.nii.gz")
    with pytest.raises(InvalidImageError, match="pixels must be 4-D"):
        CMRSeries(px[0], (*sp, 8.0), d, origins)
    with pytest.raises(InvalidImageError, match="direction must be a 3 x 3"):
        CMRSeries(px, (*sp, 8.0), d[:2], origins)
