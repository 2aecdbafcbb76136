"""RVI angle / RVI opening angle on constructed geometry where the answer is known analytically."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from CardiacLandmarksLib.core.errors import DegenerateGeometryError
from CardiacLandmarksLib.core.landmarks import Landmark, LandmarkSet
from CardiacLandmarksLib.core.series import CMRSeries
from CardiacLandmarksLib.sax.measurements import (
    angle_about_center_deg,
    angle_between_deg,
    estimate_direction,
    rv_side_cosine,
    rv_side_warning,
    rvi_angle_deg,
    rvi_measurements,
    rvi_opening_angle_deg,
    sax_reference_frame,
)

ANTERIOR = np.array([0.0, -1.0, 0.0])
PATIENT_RIGHT = np.array([-1.0, 0.0, 0.0])
#: base -> apex direction of a typical LV in LPS: to the patient's left, anterior, inferior
APEX_DIR = np.array([1.0, -1.0, -1.0]) / np.sqrt(3.0)


def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _oblique_basis():
    """Orthonormal (e1, e2, n) with e2 = n x e1 (so e1 -> e2 is +90 deg about n), an arbitrary oblique plane."""
    n = _unit([0.3, -0.8, 0.52])
    e1 = _unit(np.cross(n, [0.0, 0.0, 1.0]))
    e2 = np.cross(n, e1)
    return e1, e2, n


def _wrap(a):
    a = (a + 180.0) % 360.0 - 180.0
    return 180.0 if a == -180.0 else a


@pytest.mark.parametrize("theta", [-170.0, -90.0, -30.0, 0.0, 12.5, 45.0, 90.0, 135.0, 179.0, 180.0, 270.0])
def test_angle_about_center_in_oblique_plane(theta):
    e1, e2, n = _oblique_basis()
    c = np.array([10.0, -20.0, 30.0])
    t = np.radians(theta)
    # out-of-plane offsets on the point and on the reference must not matter (both are projected)
    point = c + 17.0 * (np.cos(t) * e1 + np.sin(t) * e2) + 4.0 * n
    ref = 3.0 * e1 - 5.0 * n
    got = angle_about_center_deg(point, c, ref, n)
    assert got == pytest.approx(_wrap(theta), abs=1e-9)
    # seen from the other side the rotation sense flips
    assert angle_about_center_deg(point, c, ref, -n) == pytest.approx(_wrap(-theta), abs=1e-9)
    assert -180.0 < got <= 180.0


def test_angle_about_center_degenerate_inputs():
    e1, e2, n = _oblique_basis()
    c = np.zeros(3)
    with pytest.raises(DegenerateGeometryError):
        angle_about_center_deg(c + 5 * n, c, e1, n)  # point on the centre once projected
    with pytest.raises(DegenerateGeometryError):
        angle_about_center_deg(e1, c, 2 * n, n)  # reference along the normal
    with pytest.raises(DegenerateGeometryError):
        angle_about_center_deg(e1, c, e2, np.zeros(3))
    with pytest.raises(DegenerateGeometryError):
        angle_about_center_deg([np.nan, 0, 0], c, e2, n)
    with pytest.raises(DegenerateGeometryError):
        angle_about_center_deg([1.0, 2.0], c, e2, n)


def test_angle_between_and_opening_angle():
    assert angle_between_deg([1, 0, 0], [0, 3, 0]) == pytest.approx(90.0)
    assert angle_between_deg([1, 0, 0], [-2, 0, 0]) == pytest.approx(180.0)
    assert angle_between_deg([1, 0, 0], [5, 0, 0]) == pytest.approx(0.0, abs=1e-12)
    assert angle_between_deg([1, 0, 0], [0.5, np.sqrt(3) / 2, 0]) == pytest.approx(60.0)
    e1, e2, n = _oblique_basis()
    c = np.array([1.0, 2.0, 3.0])
    for a_deg, i_deg in [(40.0, 150.0), (-20.0, 100.0), (170.0, -170.0)]:
        a = c + 20 * (np.cos(np.radians(a_deg)) * e1 + np.sin(np.radians(a_deg)) * e2)
        i = c + 9 * (np.cos(np.radians(i_deg)) * e1 + np.sin(np.radians(i_deg)) * e2)
        expected = abs(_wrap(i_deg - a_deg))
        assert rvi_opening_angle_deg(a, i, c) == pytest.approx(expected, abs=1e-9)
    with pytest.raises(DegenerateGeometryError):
        rvi_opening_angle_deg(c, c + e1, c)


def test_frame_identity_direction_same_for_anatomy_and_display():
    for known in (True, False):
        f = sax_reference_frame(np.eye(3), orientation_known=known)
        # identity: j (rows, down) = +y = posterior, so up = anterior; i = +x = patient left
        np.testing.assert_allclose(f.anterior, [0, -1, 0], atol=1e-12)
        np.testing.assert_allclose(f.normal, [0, 0, -1], atol=1e-12)  # viewer at the feet (radiological)
        assert f.anatomical is known


def _sax_direction(in_plane_rot_deg: float, mirrored: bool = False) -> np.ndarray:
    """Direction of a SAX stack whose normal is the LV long axis, rotated in-plane by an arbitrary angle."""
    n = APEX_DIR
    a = _unit(ANTERIOR - (ANTERIOR @ n) * n)
    b = np.cross(n, a)
    r = np.radians(in_plane_rot_deg)
    u = np.cos(r) * a + np.sin(r) * b
    v = np.cross(n, u)
    if mirrored:  # i and j swapped: the stored image is a mirror image; k then points to the base
        u, v = v, u
    return np.column_stack([u, v, np.cross(u, v)])


@pytest.mark.parametrize("rot,mirrored", [(0.0, False), (33.0, False), (-120.0, False), (75.0, True)])
def test_frame_oblique_sax_is_anatomical(rot, mirrored):
    f = sax_reference_frame(_sax_direction(rot, mirrored), orientation_known=True)
    expected_anterior = _unit(ANTERIOR - (ANTERIOR @ APEX_DIR) * APEX_DIR)
    np.testing.assert_allclose(f.anterior, expected_anterior, atol=1e-9)
    # the normal points to the apex, whatever the stored in-plane rotation or chirality
    np.testing.assert_allclose(f.normal, APEX_DIR, atol=1e-9)
    # +90 deg from anterior is the patient's right projected on the plane
    right = PATIENT_RIGHT - (PATIENT_RIGHT @ APEX_DIR) * APEX_DIR
    right = _unit(right - (right @ f.anterior) * f.anterior)
    np.testing.assert_allclose(np.cross(f.normal, f.anterior), right, atol=1e-9)


def _series(direction, spacing=(1.25, 1.25, 8.0), n_slices=3, shape=(96, 96), known=True, center=(20.0, -5.0, 40.0)):
    d = np.asarray(direction, float)
    # put the image centre of slice 0 at `center`
    origin0 = np.asarray(center) - (shape[1] / 2) * spacing[0] * d[:, 0] - (shape[0] / 2) * spacing[1] * d[:, 1]
    origins = np.array([origin0 + k * spacing[2] * d[:, 2] for k in range(n_slices)])
    return CMRSeries(pixels=np.zeros((1, n_slices) + tuple(shape), np.float32), spacing=spacing, direction=d,
                     slice_origins=origins, orientation_known=known, view="sax")


def _lm(series, name, k, pos, t=0, conf=0.9):
    if pos is None:
        nan = np.full(3, np.nan)
        return Landmark(name, k, t, False, nan, nan.copy(), 0.0, "absent")
    pos = np.asarray(pos, float)
    return Landmark(name, k, t, True, pos, np.asarray(series.lps_to_ijk(pos), float), conf,
                    "high" if conf >= 0.5 else "low")


def _anatomical_point(center, angle_deg, radius):
    """Point at `angle_deg` about `center` in the SAX plane, from anterior towards the patient's right."""
    a = _unit(ANTERIOR - (ANTERIOR @ APEX_DIR) * APEX_DIR)
    r = np.cross(APEX_DIR, a)
    t = np.radians(angle_deg)
    return np.asarray(center) + radius * (np.cos(t) * a + np.sin(t) * r)


@pytest.mark.parametrize("rot,mirrored", [(0.0, False), (140.0, False), (75.0, True)])
def test_rvi_measurements_oblique_known_orientation(rot, mirrored):
    s = _series(_sax_direction(rot, mirrored), spacing=(1.3, 1.1, 8.0))
    lms = []
    truth = {0: (40.0, 150.0), 1: (25.0, 135.0), 2: (60.0, None)}  # slice: (A-RVI angle, I-RVI angle)
    for k, (a_deg, i_deg) in truth.items():
        c = s.ijk_to_lps(np.array([48.0, 47.0, k]))
        lms.append(_lm(s, "C-LV", k, c))
        lms.append(_lm(s, "A-RVI", k, _anatomical_point(c, a_deg, 22.0), conf=0.4))
        lms.append(_lm(s, "I-RVI", k, None if i_deg is None else _anatomical_point(c, i_deg, 18.0)))
    lmset = LandmarkSet("synthetic", "sax", {}, lms)
    got = {(m.name, m.slice, m.phase): (m.value, m.unit) for m in rvi_measurements(lmset, s)}
    expected = {("RVI angle", 0, 0): 40.0, ("RVI opening angle", 0, 0): 110.0,
                ("RVI angle", 1, 0): 25.0, ("RVI opening angle", 1, 0): 110.0,
                ("RVI angle", 2, 0): 60.0}  # I-RVI absent on slice 2: no opening angle entry
    assert set(got) == set(expected)
    for key, val in expected.items():
        assert got[key][0] == pytest.approx(val, abs=1e-6)
        assert got[key][1] == "deg"
    # without the series the frame is recovered from the (ijk, position) pairs: same numbers
    fallback = {(m.name, m.slice, m.phase): m.value for m in rvi_measurements(lmset)}
    assert set(fallback) == set(expected)
    for key, val in expected.items():
        assert fallback[key] == pytest.approx(val, abs=1e-6)


def _in_plane_axes():
    """Anterior and the patient's right projected onto the SAX plane (normal APEX_DIR), orthonormal."""
    a = _unit(ANTERIOR - (ANTERIOR @ APEX_DIR) * APEX_DIR)
    return a, np.cross(APEX_DIR, a)


@pytest.mark.parametrize("phi", [0.0, 45.0, 95.0, 135.0, 180.0, 250.0, 300.0])
def test_rv_side_cosine_against_the_projected_right_anterior(phi):
    a, r = _in_plane_axes()
    ra = np.array([-1.0, -1.0, 0.0]) / np.sqrt(2.0)  # the patient's right-anterior, LPS
    ra = ra - (ra @ APEX_DIR) * APEX_DIR
    psi = np.degrees(np.arctan2(ra @ r, ra @ a))  # its angle from anterior towards the right, in the plane
    c = np.array([5.0, -12.0, 40.0])

    def at(deg, radius):
        t = np.radians(deg)
        return c + radius * (np.cos(t) * a + np.sin(t) * r)
    # equal radii 55 deg either side of phi: the septum midpoint lies at phi; out-of-plane offsets do not count
    got = rv_side_cosine(at(phi - 55.0, 21.0) + 3.0 * APEX_DIR, at(phi + 55.0, 21.0), c, -2.0 * APEX_DIR)
    assert got == pytest.approx(np.cos(np.radians(phi - psi)), abs=1e-9)


def test_rv_side_cosine_degenerate():
    a, r = _in_plane_axes()
    c = np.zeros(3)
    with pytest.raises(DegenerateGeometryError):  # A-RVI and I-RVI opposite: the septum midpoint is C-LV
        rv_side_cosine(c + 20.0 * a, c - 20.0 * a, c, APEX_DIR)
    with pytest.raises(DegenerateGeometryError):  # a plane normal to right-anterior has no right-anterior in it
        rv_side_cosine(c + np.array([0.0, 0.0, 10.0]), c + np.array([0.0, 0.0, 20.0]), c, np.array([1.0, 1.0, 0.0]))


@pytest.mark.parametrize("rot,mirrored", [(0.0, False), (140.0, False), (75.0, True)])
def test_rv_on_the_patients_left_posterior_marks_the_rvi_angle_review(rot, mirrored):
    """Slice 0 is a heart as every heart lies (A-RVI 40 deg, I-RVI 150 deg from anterior towards the patient's
    right); slice 1 the same points turned 180 deg in plane, which is how a header with x and y negated shows
    it (the M&Ms-2 copies). Only slice 1's RVI angle turns review; the opening angle does not depend on the
    patient's sides and stays ok."""
    for direction_known in (True, False):
        s = _series(_sax_direction(rot, mirrored), spacing=(1.3, 1.1, 8.0), n_slices=2, known=direction_known)
        lms = []
        for k, turn in ((0, 0.0), (1, 180.0)):
            c = s.ijk_to_lps(np.array([48.0, 47.0, k]))
            lms.append(_lm(s, "C-LV", k, c))
            lms.append(_lm(s, "A-RVI", k, _anatomical_point(c, 40.0 + turn, 22.0)))
            lms.append(_lm(s, "I-RVI", k, _anatomical_point(c, 150.0 + turn, 18.0)))
        ms = rvi_measurements(LandmarkSet("synthetic", "sax", {}, lms), s)
        by = {(m.name, m.slice): m for m in ms}
        assert {m.status for m in ms if m.name == "RVI opening angle"} == {"ok"}
        assert by[("RVI angle", 0)].status == "ok"
        assert [src.id for src in by[("RVI angle", 0)].sources] == ["A-RVI s0 p0", "C-LV s0 p0"]
        if not direction_known:  # the display convention knows nothing of the patient's sides: no check
            assert by[("RVI angle", 1)].status == "ok" and rv_side_warning(ms) is None
            continue
        wrong = by[("RVI angle", 1)]
        assert wrong.status == "review" and wrong.value == pytest.approx(_wrap(220.0), abs=1e-6)
        assert [(src.id, src.flag, src.kind) for src in wrong.sources][-1] == ("orientation", "review", "input")
        assert wrong.caveat().startswith("check orientation (review: RV on the patient's left-posterior")
        assert wrong.caveat(inputs_by_id=True) == "check orientation (review)"  # the CLI's per-value lines
        assert rv_side_warning(ms).startswith("on 1 of the 2 slices x phases with an RVI angle, the RV lies on")
        # the slice-by-slice recomputation (the Slicer module's, on one slice's points) marks the same
        one = [lm for lm in lms if lm.slice == 1]
        again = rvi_measurements(LandmarkSet("synthetic", "sax", {}, one), direction=s.direction, orientation_known=True)
        assert [m.status for m in again] == ["review", "ok"]


def test_estimate_direction_recovers_in_plane_axes():
    d = _sax_direction(21.0)
    s = _series(d, spacing=(1.4, 0.9, 10.0))
    lms = []
    for k in range(3):
        for name, ij in (("C-LV", (40.2, 50.7)), ("A-RVI", (30.0, 38.5)), ("I-RVI", (33.3, 66.1))):
            lms.append(_lm(s, name, k, s.ijk_to_lps(np.array([ij[0] + k, ij[1] - k, k]))))
    est = estimate_direction(LandmarkSet("x", "sax", {}, lms))
    np.testing.assert_allclose(est[:, 0], d[:, 0], atol=1e-9)
    np.testing.assert_allclose(est[:, 1], d[:, 1], atol=1e-9)
    # one point per slice cannot give the axes
    assert estimate_direction(LandmarkSet("x", "sax", {}, [lm for lm in lms if lm.name == "C-LV"])) is None


def test_display_convention_with_anisotropic_pixels():
    """Orientation unknown, identity direction, pixels 1 x 2 mm: angles are in mm, from image up towards image left."""
    s = _series(np.eye(3), spacing=(1.0, 2.0, 10.0), n_slices=1, known=False, center=(0.0, 0.0, 0.0))

    def at(i, j):
        return s.ijk_to_lps(np.array([i, j, 0.0]))

    c = (50.0, 50.0)
    # A-RVI 10 mm left and 10 mm up: 10 columns, 5 rows -> 45 deg; I-RVI 10 mm left, 10 mm down -> 135 deg
    lms = [_lm(s, "C-LV", 0, at(*c)), _lm(s, "A-RVI", 0, at(40.0, 45.0)), _lm(s, "I-RVI", 0, at(40.0, 55.0))]
    res = {m.name: m.value for m in rvi_measurements(LandmarkSet("x", "sax", {}, lms), s)}
    assert res["RVI angle"] == pytest.approx(45.0, abs=1e-9)
    assert res["RVI opening angle"] == pytest.approx(90.0, abs=1e-9)
    # A-RVI up and to the right (towards the patient's left in the display convention) is negative
    lms[1] = _lm(s, "A-RVI", 0, at(60.0, 45.0))
    res = {m.name: m.value for m in rvi_measurements(LandmarkSet("x", "sax", {}, lms), s)}
    assert res["RVI angle"] == pytest.approx(-45.0, abs=1e-9)
    # the pure function agrees with the frame it is given
    f = sax_reference_frame(s.direction, orientation_known=False)
    assert rvi_angle_deg(at(40.0, 45.0), at(*c), f.anterior, f.normal) == pytest.approx(45.0)


def test_missing_and_degenerate_points_give_no_entry(caplog):
    s = _series(np.eye(3), n_slices=3, known=False)
    c0 = s.ijk_to_lps(np.array([40.0, 40.0, 0.0]))
    c2 = s.ijk_to_lps(np.array([40.0, 40.0, 2.0]))
    lms = [
        _lm(s, "C-LV", 0, c0), _lm(s, "A-RVI", 0, c0), _lm(s, "I-RVI", 0, s.ijk_to_lps(np.array([30.0, 50.0, 0.0]))),
        _lm(s, "C-LV", 1, None), _lm(s, "A-RVI", 1, s.ijk_to_lps(np.array([30.0, 30.0, 1.0]))),
        _lm(s, "C-LV", 2, c2), _lm(s, "A-RVI", 2, s.ijk_to_lps(np.array([40.0, 30.0, 2.0]))),
    ]
    with caplog.at_level(logging.WARNING):
        res = rvi_measurements(LandmarkSet("x", "sax", {}, lms), s)
    # slice 0: A-RVI on C-LV -> skipped with a warning; slice 1: no C-LV; slice 2: RVI angle only (0 deg, straight up)
    assert [(m.name, m.slice) for m in res] == [("RVI angle", 2)]
    assert res[0].value == pytest.approx(0.0, abs=1e-9)
    assert "slice 0" in caplog.text


def test_no_frame_reports_opening_angle_only(caplog):
    s = _series(np.eye(3), n_slices=1, known=False)
    lms = [_lm(s, n, 0, s.ijk_to_lps(np.array(ij + (0.0,)))) for n, ij in
           (("C-LV", (40.0, 40.0)), ("A-RVI", (30.0, 30.0)), ("I-RVI", (30.0, 50.0)))]
    for lm in lms:  # as read from a markups file without a series: no ijk
        lm.ijk = np.full(3, np.nan)
    with caplog.at_level(logging.WARNING):
        res = rvi_measurements(LandmarkSet("x", "sax", {}, lms))
    assert [m.name for m in res] == ["RVI opening angle"]
    assert res[0].value == pytest.approx(90.0)
    assert "RVI angle not computed" in caplog.text
    # given the direction explicitly, both come back
    res = rvi_measurements(LandmarkSet("x", "sax", {}, lms), direction=np.eye(3), orientation_known=False)
    assert {m.name: round(m.value, 6) for m in res} == {"RVI angle": 45.0, "RVI opening angle": 90.0}
