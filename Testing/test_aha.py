"""AHA 17-segment geometry (Cerqueira et al., Circulation 2002) on constructed and real geometry.

Expected segments are written out by hand from the Cerqueira bull's-eye (anterior up, septum
left, seen from the apex; A-RVI = boundary anterior | anteroseptal), not from the code.
"""

from __future__ import annotations

import numpy as np
import pytest

from CardiacLandmarksLib.core.errors import DegenerateGeometryError, MissingGeometryError, PerfusionInputError
from CardiacLandmarksLib.perfusion import aha

C = np.array([50.0, 50.0])  # C-LV (i, j)


def ring(shape=(101, 101), r_in=20.0, r_out=30.0, center=C) -> np.ndarray:
    jj, ii = np.mgrid[0 : shape[0], 0 : shape[1]]
    r = np.hypot(ii - center[0], jj - center[1])
    return (r >= r_in) & (r <= r_out)


def at(angle_deg_screen_ccw: float, radius: float = 25.0, center=C) -> tuple[int, int]:
    """Pixel (j, i) at a counter-clockwise screen angle from 3 o'clock (rows point down)."""
    a = np.radians(angle_deg_screen_ccw)
    return int(round(center[1] - radius * np.sin(a))), int(round(center[0] + radius * np.cos(a)))


# A-RVI up-left at 10:30 (screen angle 135 deg), RV on the viewer's left: the standard view
A_RVI = C + 25.0 * np.array([np.cos(np.radians(135)), -np.sin(np.radians(135))])

# (screen angle, expected mid segment): delta = angle - 135, sectors of 60 deg from A-RVI:
# 8 anteroseptal, 9 inferoseptal, 10 inferior, 11 inferolateral, 12 anterolateral, 7 anterior
MID_EXPECTED = [
    (165, 8),  # upper left, between A-RVI and 9 o'clock: anteroseptal
    (180, 8),  # 9 o'clock: septum, first sector
    (225, 9),  # 7:30: inferoseptal
    (270, 10),  # 6 o'clock: inferior
    (330, 11),  # 4 o'clock: inferolateral
    (0, 11),  # 3 o'clock: delta 225 -> inferolateral
    (45, 12),  # 1:30: anterolateral
    (90, 7),  # 12 o'clock: anterior
    (120, 7),  # just before A-RVI: anterior
]


@pytest.mark.parametrize("angle,expected", MID_EXPECTED)
def test_mid_segments_on_constructed_ring(angle, expected):
    seg = aha.sector_map(ring(), C, A_RVI, "mid")
    j, i = at(angle)
    assert seg[j, i] == expected


@pytest.mark.parametrize("angle,expected", [(180, 2), (225, 3), (270, 4), (330, 5), (45, 6), (90, 1)])
def test_basal_segments(angle, expected):
    seg = aha.sector_map(ring(), C, A_RVI, "base")
    j, i = at(angle)
    assert seg[j, i] == expected


# apical: 90 deg sectors, septal centred on the nominal septum centre (A-RVI + 60 deg = screen 195)
@pytest.mark.parametrize("angle,expected", [(195, 14), (160, 14), (230, 14), (285, 15), (15, 16), (105, 13),
                                            (140, 13)])
def test_apical_segments(angle, expected):
    seg = aha.sector_map(ring(), C, A_RVI, "apex")
    j, i = at(angle)
    assert seg[j, i] == expected


def test_each_sector_covers_its_angle_share():
    m = ring(shape=(301, 301), r_in=60, r_out=90, center=np.array([150.0, 150.0]))
    anchor = np.array([150.0, 150.0]) + 70 * np.array([np.cos(0.3), -np.sin(0.3)])
    for level, segs, share in (("mid", range(7, 13), 1 / 6), ("base", range(1, 7), 1 / 6), ("apex", range(13, 17), 1 / 4)):
        seg = aha.sector_map(m, np.array([150.0, 150.0]), anchor, level)
        assert set(np.unique(seg[m])) == set(segs)
        assert (seg[~m] == 0).all()
        for s in segs:
            assert (seg == s).sum() / m.sum() == pytest.approx(share, abs=0.01)


def test_rotation_moves_sectors_with_the_anatomy():
    m = ring()
    seg = aha.sector_map(m, C, A_RVI, "mid")
    # rotate image and anchor by 90 deg counter-clockwise on screen (np.rot90 of [j, i])
    m_rot = np.rot90(m)
    # np.rot90: new[j', i'] = old[i', W-1-j']  ->  old (i, j) goes to (j, W-1-i)
    a_rot = np.array([A_RVI[1], 100 - A_RVI[0]])
    seg_rot = aha.sector_map(m_rot, np.array([C[1], 100 - C[0]]), a_rot, "mid")
    agree = (np.rot90(seg) == seg_rot)[m_rot].mean()
    assert agree > 0.97  # only pixels on sector boundaries may flip


def test_mirrored_display_runs_clockwise():
    m = ring()
    seg = aha.sector_map(m, C, A_RVI, "mid", seen_from_apex=True)
    mirrored = aha.sector_map(m[:, ::-1], np.array([100 - C[0], C[1]]), np.array([100 - A_RVI[0], A_RVI[1]]), "mid",
                              seen_from_apex=False)
    assert (seg[:, ::-1] == mirrored)[m[:, ::-1]].mean() > 0.97


def test_bullseye_angles_match_cerqueira_layout():
    # A-RVI at 120 deg (10 o'clock) on the bull's-eye; mid anterior (7) centred at 12 o'clock
    assert aha.bullseye_angle_deg(0.0) == pytest.approx(120.0)
    centre_7 = np.mean([d for s, d0, d1 in aha.segment_boundaries_deg("mid") if s == 7 for d in (d0, d1)])
    assert aha.bullseye_angle_deg(centre_7) == pytest.approx(90.0)
    centre_14 = np.mean([d for s, d0, d1 in aha.segment_boundaries_deg("apex") if s == 14 for d in (d0, d1)])
    assert aha.bullseye_angle_deg(centre_14) == pytest.approx(180.0)  # apical septal on the left


def test_levels_from_names_and_positions():
    assert aha.level_from_name("1132584_stress_base") == "base"
    assert aha.level_from_name("P1 rest MID") == "mid"
    assert aha.level_from_name("perf_apical_sl3") == "apex"
    assert aha.level_from_name("First Pass New") is None
    assert aha.level_from_name("midazolam") is None
    assert aha.assign_levels([0.0, 10.0, 20.0]) == ["base", "mid", "apex"]
    assert aha.assign_levels([20.0, 0.0, 10.0]) == ["apex", "base", "mid"]
    assert aha.assign_levels(np.arange(9.0)) == ["base"] * 3 + ["mid"] * 3 + ["apex"] * 3
    assert aha.assign_levels([5.0]) == ["mid"]
    with pytest.raises(PerfusionInputError):
        aha.normalise_level("septal")
    with pytest.raises(PerfusionInputError):
        aha.assign_levels([3.0, 3.0])


def test_degenerate_anchor_is_a_named_error():
    with pytest.raises(DegenerateGeometryError):
        aha.sector_map(ring(), C, C, "mid")


def test_display_side_from_geometry():
    # axial-like display (i = patient left, j = posterior) is seen from the feet; for a SAX plane
    # whose normal points from apex to base the display is seen from the apex
    apex = aha.TYPICAL_APEX_DIR_LPS
    u = np.cross(apex, [0.0, 0.0, 1.0])
    u /= np.linalg.norm(u)
    v = np.cross(-apex, u)  # u x v = -apex: viewer looks from apex to base
    d = np.column_stack([u, v, np.cross(u, v)])
    assert aha.display_seen_from_apex(d) is True
    d_mirror = np.column_stack([-u, v, np.cross(-u, v)])
    assert aha.display_seen_from_apex(d_mirror) is False
    with pytest.raises(MissingGeometryError):
        # a plane containing the long axis is not a short-axis plane
        w = np.cross(apex, u)
        aha.display_seen_from_apex(np.column_stack([apex, w, np.cross(apex, w)]))


def test_ge_dicom_septum_falls_in_septal_segments(data_root):
    """Real DICOM geometry: RV (expert mask) lies in the septal sectors 8-9 when A-RVI is taken from
    the expert masks and named by patient geometry."""
    from scipy.io import loadmat

    from CardiacLandmarksLib.io.load import load_series
    from CardiacLandmarksLib.sax.labels import derive_sax_landmarks

    folder = data_root / "perfusion" / "ge_dicom"
    s = load_series(folder)
    assert s.orientation_known
    seen = aha.display_seen_from_apex(s.direction)
    assert seen is True  # slice normal points from the apex to the base
    m = loadmat(folder / "GoldStandard.mat")
    mask = np.zeros(m["MyoMask"].shape, np.uint8)
    mask[m["DXmask"] > 0] = 1
    mask[m["MyoMask"] > 0] = 2
    mask[m["SXmask"] > 0] = 3
    lm = derive_sax_landmarks(mask, rv=1, myo=2, lv=3, superior_dir=s.superior_in_plane())
    seg = aha.sector_map(mask == 2, lm["C-LV"], lm["A-RVI"], "mid", seen)
    # myocardium touching the RV cavity = septum
    from scipy import ndimage

    septum = ndimage.binary_dilation(mask == 1, iterations=2) & (mask == 2)
    frac = np.isin(seg[septum], (8, 9)).mean()
    assert frac > 0.8


def test_sector_overlay_title_judges_rvi_points_as_the_report_does():
    """The report's sector status hangs on A-RVI and C-LV only (pipeline.anchor_sources): the overlay must not
    call the sector values review for a low I-RVI alone (the GE series: A-RVI high 0.59, I-RVI low 0.23)."""
    from CardiacLandmarksLib.perfusion.bullseye import rvi_warning

    assert rvi_warning({"A-RVI": (0.59, "high"), "I-RVI": (0.23, "low")}) == (
        "I-RVI flagged low: check it (the sectors hang on A-RVI and C-LV, not on it)")
    assert rvi_warning({"A-RVI": (0.2, "low"), "I-RVI": (0.9, "high")}) == (
        "A-RVI flagged low: check it; sector values are review")
    assert "A-RVI and I-RVI flagged low: check them; sector values are review" == rvi_warning(
        {"A-RVI": (0.2, "low"), "I-RVI": (0.1, "low")})
    assert rvi_warning({"A-RVI": (0.9, "high"), "I-RVI": (0.8, "high")}) == "" and rvi_warning(None) == ""
