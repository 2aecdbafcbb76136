"""Derived SAX landmarks on constructed masks where the right answer is known, and on real ACDC masks."""

import numpy as np
import SimpleITK as sitk

from CardiacLandmarksLib.sax.labels import derive_sax_landmarks


def ring_mask(shape=(120, 120), center=(60.0, 60.0), r_in=15, r_out=22, rv_from_deg=120, rv_to_deg=240):
    """LV cavity disc, myocardium ring and an RV crescent touching the ring over an angular arc.

    Angles are measured in image (i, j) coordinates from +i (column axis), so 180 deg = viewer's left,
    90 deg = down (j increases downwards).
    """
    jj, ii = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    di, dj = ii - center[0], jj - center[1]
    r = np.hypot(di, dj)
    ang = np.degrees(np.arctan2(dj, di)) % 360
    m = np.zeros(shape, np.int16)
    m[r < r_in] = 3
    m[(r >= r_in) & (r < r_out)] = 2
    m[(r >= r_out) & (r < r_out + 10) & (ang >= rv_from_deg) & (ang <= rv_to_deg)] = 1
    return m


def test_center_is_cavity_centroid():
    m = ring_mask(center=(50.0, 70.0))
    lm = derive_sax_landmarks(m)
    np.testing.assert_allclose(lm["C-LV"], [50.0, 70.0], atol=0.05)


def test_rvi_at_arc_ends_and_named_by_display_convention():
    # RV on the viewer's left from 150 deg (down-left) to 230 deg (up-left); j grows downwards,
    # so the 230 deg end is the upper one = anterior in the display convention.
    m = ring_mask(rv_from_deg=150, rv_to_deg=230)
    lm = derive_sax_landmarks(m)
    c = lm["C-LV"]
    ang = {k: np.degrees(np.arctan2(*(lm[k] - c)[::-1])) % 360 for k in ("A-RVI", "I-RVI")}
    assert abs(ang["A-RVI"] - 230) < 6
    assert abs(ang["I-RVI"] - 150) < 6
    assert lm["A-RVI"][1] < lm["I-RVI"][1]  # anterior end is higher on screen
    # the points lie on the epicardial border (radius ~ r_out)
    for k in ("A-RVI", "I-RVI"):
        assert 19 < np.linalg.norm(lm[k] - c) < 24


def test_rotation_keeps_names_mirror_swaps_them():
    m = ring_mask(rv_from_deg=150, rv_to_deg=230)
    rot = np.rot90(m, 1).copy()  # 90 deg rotation: chirality kept
    lm, lr = derive_sax_landmarks(m), derive_sax_landmarks(rot)
    # np.rot90 maps (j, i) -> (W-1-i, j): point (i, j) goes to (j, W-1-i)
    w = m.shape[1]
    expect_a = np.array([lm["A-RVI"][1], w - 1 - lm["A-RVI"][0]])
    np.testing.assert_allclose(lr["A-RVI"], expect_a, atol=1.0)
    mir = m[:, ::-1].copy()  # mirror: RV on the right; names swap (chirality rule)
    lf = derive_sax_landmarks(mir)
    np.testing.assert_allclose(lf["I-RVI"], [w - 1 - lm["A-RVI"][0], lm["A-RVI"][1]], atol=1.0)


def test_superior_direction_overrides_display():
    m = ring_mask(rv_from_deg=150, rv_to_deg=230)
    assert derive_sax_landmarks(m)["A-RVI"][1] < derive_sax_landmarks(m)["I-RVI"][1]  # display: A-RVI up
    lm = derive_sax_landmarks(m, superior_dir=np.array([0.0, 1.0]))  # head = down on screen
    assert lm["A-RVI"][1] > lm["I-RVI"][1]


def test_absent_cases():
    m = ring_mask()
    no_lv = m.copy()
    no_lv[no_lv == 3] = 2
    assert all(v is None for v in derive_sax_landmarks(no_lv).values())
    no_rv = m.copy()
    no_rv[no_rv == 1] = 0
    lm = derive_sax_landmarks(no_rv)
    assert lm["C-LV"] is not None and lm["A-RVI"] is None and lm["I-RVI"] is None


def test_real_acdc_mid_slice(acdc_dir):
    gt = sitk.GetArrayFromImage(sitk.ReadImage(str(acdc_dir / "patient001_ED_gt.nii.gz")))
    k = gt.shape[0] // 2
    lm = derive_sax_landmarks(gt[k])
    assert all(v is not None for v in lm.values())
    c = lm["C-LV"]
    # RV lies on the viewer's left of the LV in ACDC's stored display; both insertions left of C-LV
    rv_i = np.argwhere(gt[k] == 1)[:, 1].mean()
    assert rv_i < c[0]
    assert lm["A-RVI"][1] < lm["I-RVI"][1]
    # insertion points touch both RV and myocardium
    for name in ("A-RVI", "I-RVI"):
        i, j = np.round(lm[name]).astype(int)
        patch = gt[k, j - 3 : j + 4, i - 3 : i + 4]
        assert (patch == 1).any() and (patch == 2).any()
