"""Semi-quantitative perfusion indices and the RV-insertion fallback on constructed data."""

from __future__ import annotations

import numpy as np
import pytest

from CardiacLandmarksLib.core.errors import PerfusionInputError
from CardiacLandmarksLib.perfusion import aha
from CardiacLandmarksLib.perfusion import analysis as perfusion


def _gamma(t, t0, alpha=2.5, beta=1.5):
    x = np.clip(t - t0, 0, None)
    g = x**alpha * np.exp(-x / beta)
    return g / g.max()


T = 60


def phantom(myo_scale: np.ndarray | float = 0.25, rv_arc=(100.0, 230.0), size=96):
    """2D+T phantom [t, j, i]: LV blood pool (r < 14), myocardium ring (14..22), RV crescent
    (r 24..34 within the screen-angle arc ``rv_arc``) enhancing 4 frames before the LV."""
    jj, ii = np.mgrid[0:size, 0:size]
    c = np.array([48.0, 48.0])
    r = np.hypot(ii - c[0], jj - c[1])
    ang = np.mod(np.degrees(np.arctan2(-(jj - c[1]), ii - c[0])), 360)
    bp = r < 14
    myo = (r >= 14) & (r < 22)
    rv = (r >= 22) & (r < 34) & (ang >= rv_arc[0]) & (ang <= rv_arc[1])
    t = np.arange(T, dtype=float)
    lv_curve = 100 + 400 * _gamma(t, 14.0)
    rv_curve = 100 + 450 * _gamma(t, 10.0)
    frames = np.full((T, size, size), 50.0, np.float32)
    frames[:, bp] = lv_curve[:, None]
    frames[:, rv] = rv_curve[:, None]
    scale = np.broadcast_to(np.asarray(myo_scale, float), (size, size))
    frames[:, myo] = (100 + 400 * _gamma(t, 14.0)[:, None] * scale[myo][None, :])
    mask = np.zeros((size, size), np.uint8)
    mask[myo] = 1
    mask[bp] = 2
    return frames, mask, c, ang


def test_indices_of_scaled_curves_are_known_ratios():
    frames, mask, _, _ = phantom(0.25)
    maps, blood, timing = perfusion.semi_quantitative_maps(frames, mask, np.arange(T, dtype=float))
    myo = mask == 1
    # myocardium = 0.25 x blood-pool enhancement with the same timing
    np.testing.assert_allclose(maps["upslope_index"][myo], 0.25, rtol=1e-4)
    np.testing.assert_allclose(maps["peak_enhancement"][myo], 0.25 * blood["peak_enhancement"], rtol=1e-4)
    np.testing.assert_allclose(maps["time_to_peak"][myo], blood["time_to_peak"])
    assert np.isnan(maps["upslope_index"][~myo]).all()
    # the blood-pool first pass: foot just before frame 14, peak of the gamma variate at 14 + 2.5 * 1.5
    assert 12 <= timing.foot <= 14
    assert timing.peak in (17, 18)


def test_upslope_index_tracks_regional_hypoperfusion():
    jj, ii = np.mgrid[0:96, 0:96]
    scale = np.where(ii < 48, 0.15, 0.3)  # left half hypoperfused
    frames, mask, c, _ = phantom(scale)
    maps, _, _ = perfusion.semi_quantitative_maps(frames, mask, np.arange(T, dtype=float))
    myo = mask == 1
    left = maps["upslope_index"][myo & (ii < 48)]
    right = maps["upslope_index"][myo & (ii >= 48)]
    np.testing.assert_allclose(left, 0.15, rtol=1e-4)
    np.testing.assert_allclose(right, 0.30, rtol=1e-4)


def test_time_axis_in_seconds_scales_upslope():
    frames, mask, _, _ = phantom(0.25)
    beats, unit_b = perfusion.time_axis(None, T)
    secs, unit_s = perfusion.time_axis(np.arange(T) * 800.0 + 400.0, T)
    assert unit_b == "beat" and unit_s == "s"
    np.testing.assert_allclose(secs, np.arange(T) * 0.8)
    m_b, _, _ = perfusion.semi_quantitative_maps(frames, mask, beats)
    m_s, _, _ = perfusion.semi_quantitative_maps(frames, mask, secs)
    myo = mask == 1
    np.testing.assert_allclose(m_s["upslope"][myo], m_b["upslope"][myo] / 0.8, rtol=1e-4)
    np.testing.assert_allclose(m_s["upslope_index"][myo], m_b["upslope_index"][myo], rtol=1e-4)
    # trigger times that do not increase per frame are not a time base
    assert perfusion.time_axis(np.zeros(T), T)[1] == "beat"


def test_segment_stats_and_reserve():
    values = np.array([[1.0, 2.0, np.nan], [3.0, 5.0, 7.0]])
    segs = np.array([[7, 7, 7], [8, 8, 0]])
    st = perfusion.segment_stats(values, segs)
    assert st[7] == {"mean": 1.5, "sd": pytest.approx(np.std([1, 2], ddof=1)), "n_pixels": 2}
    assert st[8]["mean"] == 4.0 and st[8]["n_pixels"] == 2
    assert 0 not in st
    assert perfusion.reserve_index(2.0, 1.0) == 2.0
    assert np.isnan(perfusion.reserve_index(2.0, 0.0))


def test_missing_blood_pool_is_a_named_error():
    frames, mask, _, _ = phantom()
    with pytest.raises(PerfusionInputError):
        perfusion.semi_quantitative_maps(frames, np.where(mask == 2, 0, mask), np.arange(T, dtype=float))


def test_rv_insertions_from_early_enhancement():
    """RV crescent from screen angle 100 to 230 deg (RV up-left): A-RVI at the 100 deg end
    (counter-clockwise from it runs over the septum), I-RVI at the 230 deg end."""
    frames, mask, c, _ = phantom(0.25, rv_arc=(100.0, 230.0))
    est = perfusion.estimate_rv_insertions(frames, mask, (2.0, 2.0), baseline_frames=8)
    assert est.a_rvi_ij is not None
    a_ang = np.degrees(np.arctan2(-(est.a_rvi_ij[1] - c[1]), est.a_rvi_ij[0] - c[0])) % 360
    i_ang = np.degrees(np.arctan2(-(est.i_rvi_ij[1] - c[1]), est.i_rvi_ij[0] - c[0])) % 360
    assert a_ang == pytest.approx(100.0, abs=12.0)
    assert i_ang == pytest.approx(230.0, abs=12.0)
    assert 10 <= est.peak_frame <= 15  # RV peaks at 10 + 3.75
    # the septum (under the RV) then falls in segments 8 and 9
    seg = aha.sector_map(mask == 1, c, est.a_rvi_ij, "mid")
    jj, ii = np.mgrid[0:96, 0:96]
    ang = np.mod(np.degrees(np.arctan2(-(jj - c[1]), ii - c[0])), 360)
    under_rv = (mask == 1) & (ang > 110) & (ang < 220)
    assert np.isin(seg[under_rv], (8, 9)).mean() > 0.95
    assert perfusion.check_rvi_consistency(c, est.a_rvi_ij, est.i_rvi_ij, True) is None
    # swapped names are flagged
    assert perfusion.check_rvi_consistency(c, est.i_rvi_ij, est.a_rvi_ij, True) is not None


def test_rv_not_found_without_early_enhancement():
    frames, mask, _, _ = phantom(0.25, rv_arc=(0.0, 0.0))
    est = perfusion.estimate_rv_insertions(frames, mask, (2.0, 2.0), baseline_frames=8)
    assert est.a_rvi_ij is None and est.notes


def test_nominal_septum_for_a_narrow_contact_arc():
    c = np.array([0.0, 0.0])

    def pt(screen_deg):
        a = np.radians(screen_deg)
        return np.array([10 * np.cos(a), -10 * np.sin(a)])

    # plausible 110 deg septum: unchanged
    a, i, span, adjusted = perfusion.nominal_septum(c, pt(120), pt(230))
    assert not adjusted and span == pytest.approx(110)
    np.testing.assert_allclose(a, pt(120))
    # a 30 deg arc centred at screen 180 deg (9 o'clock) -> insertions at 120 and 240 deg
    a, i, span, adjusted = perfusion.nominal_septum(c, pt(165), pt(195))
    assert adjusted and span == pytest.approx(30)
    np.testing.assert_allclose(a, pt(120), atol=1e-9)
    np.testing.assert_allclose(i, pt(240), atol=1e-9)
    # swapped names (I clockwise of A): same arc centre, names put right
    a, i, _, adjusted = perfusion.nominal_septum(c, pt(195), pt(165))
    assert adjusted
    np.testing.assert_allclose(a, pt(120), atol=1e-9)
