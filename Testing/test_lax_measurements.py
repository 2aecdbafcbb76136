"""LV length and longitudinal shortening on constructed landmark sets with known lengths."""

from __future__ import annotations

import numpy as np
import pytest

from CardiacLandmarksLib.core.errors import DegenerateGeometryError
from CardiacLandmarksLib.core.landmarks import Landmark, LandmarkSet
from CardiacLandmarksLib.lax.measurements import (
    longitudinal_shortening_pct,
    lv_length_curve,
    lv_length_measurements,
    lv_length_mm,
)


def lax_set(lengths, view="4ch", names=("IS-P", "AL-P", "APEX"), low=(), missing=()):
    """Valve points at (+-15, 0, 0) mm, apex at (0, L, 0) rotated by 30 deg about z: length L exactly."""
    rot = np.array([[np.cos(0.5), -np.sin(0.5), 0], [np.sin(0.5), np.cos(0.5), 0], [0, 0, 1]])
    lms = []
    for t, length in enumerate(lengths):
        pts = {names[0]: np.array([-15.0, 0, 0]), names[1]: np.array([15.0, 0, 0]), names[2]: np.array([0, length, 0])}
        for n, p in pts.items():
            found = (n, t) not in missing
            pos = rot @ p + np.array([100.0, -20.0, 7.0]) if found else np.full(3, np.nan)
            lms.append(Landmark(n, 0, t, found, pos, np.full(3, np.nan), 0.9 if found else 0.0,
                                ("low" if t in low else "high") if found else "absent"))
    return LandmarkSet("synthetic", view, {}, lms)


def test_lv_length_is_apex_to_mitral_midpoint():
    assert lv_length_mm([0, 90, 0], [-20, 0, 0], [10, 0, 0]) == pytest.approx(np.hypot(5, 90))
    with pytest.raises(DegenerateGeometryError):
        lv_length_mm([0, 0, 0], [-1, 0, 0], [1, 0, 0])
    with pytest.raises(DegenerateGeometryError):
        lv_length_mm([0, np.nan, 0], [-1, 0, 0], [1, 0, 0])


def test_shortening_formula():
    assert longitudinal_shortening_pct(100.0, 82.0) == pytest.approx(18.0)
    with pytest.raises(DegenerateGeometryError):
        longitudinal_shortening_pct(0.0, 10.0)


def test_curve_ed_max_es_min_and_rules():
    # a cine that does not start at ED: maximum at phase 7, minimum at phase 2
    lengths = [88.0, 80.0, 74.0, 79.0, 84.0, 87.0, 89.0, 92.0, 90.0]
    c = lv_length_curve(lax_set(lengths))
    assert np.allclose(c.lengths_mm, lengths)
    assert (c.ed_phase, c.es_phase, c.ed_rule, c.es_rule) == (7, 2, "max", "min")
    assert c.shortening_pct == pytest.approx(100 * (92 - 74) / 92)
    first = lv_length_curve(lax_set(lengths), ed="first")
    assert first.ed_phase == 0 and first.shortening_pct == pytest.approx(100 * (88 - 74) / 88)
    given = lv_length_curve(lax_set(lengths), ed=6, es=3)
    assert given.ed_rule == "given" and given.shortening_pct == pytest.approx(100 * (89 - 79) / 89)
    with pytest.raises(ValueError):
        lv_length_curve(lax_set(lengths), ed="last")
    with pytest.raises(ValueError):
        lv_length_curve(lax_set(lengths), es=40)


def test_missing_and_low_phases_and_other_views():
    lengths = [90.0, 85.0, 75.0, 88.0]
    c = lv_length_curve(lax_set(lengths, low=(1,), missing={("APEX", 3)}))
    assert np.isnan(c.lengths_mm[3]) and c.low_phases == [1]
    assert c.ed_phase == 0 and c.es_phase == 2
    c2 = lv_length_curve(lax_set(lengths, view="2ch", names=("A-P", "I-P", "APEX")))
    assert c2.view == "2ch" and c2.shortening_pct == pytest.approx(100 * 15 / 90)
    with pytest.raises(ValueError):
        lv_length_curve(LandmarkSet("x", "sax", {}, []))


def test_shortening_outside_the_normal_range_is_review_even_from_high_points():
    """Six high points, shortening 3.3 % (90 -> 87 mm) or 30 % (100 -> 70 mm): review, with the range named in
    the caveat; 20 % from the same high points stays ok; from a low point the caveat names both."""
    for lengths, short in (([90.0, 88.0, 87.0], 100 * 3 / 90), ([100.0, 85.0, 70.0], 30.0)):
        c = lv_length_curve(lax_set(lengths))
        assert not c.notes  # said once, in the caveat
        assert c.shortening.value == pytest.approx(short)
        assert c.shortening.status == "review"
        assert "plausibility (review" in c.shortening.caveat() and "10-25 %" in c.shortening.caveat()
        assert all(m.status == "ok" for m in c.length_measurements)  # the lengths themselves stay ok
    normal = lv_length_curve(lax_set([90.0, 80.0, 72.0]))
    assert normal.shortening.status == "ok" and not normal.notes
    both = lv_length_curve(lax_set([90.0, 88.0, 87.0], low=(0,))).shortening
    assert both.status == "review" and "APEX (low" in both.caveat() and "plausibility" in both.caveat()
    # a known ED + ES pair whose ES comes out longer: negative shortening, review
    pair = lax_set([80.0, 84.0])
    pair.model["ed_es"] = {"ed": 0, "es": 1}
    assert lv_length_curve(pair).shortening.status == "review"


def test_measurement_entries():
    ms = lv_length_measurements(lax_set([90.0, 80.0, 72.0, 85.0]))
    names = [m.name for m in ms]
    assert names.count("LV length") == 4
    sh = [m for m in ms if m.name == "Longitudinal shortening"][0]
    assert sh.unit == "%" and sh.phase is None and sh.value == pytest.approx(20.0)
    ed = [m for m in ms if m.name == "LV length ED"][0]
    es = [m for m in ms if m.name == "LV length ES"][0]
    assert (ed.phase, es.phase, ed.value, es.value) == (0, 2, pytest.approx(90.0), pytest.approx(72.0))


def test_known_ed_es_phases_are_kept_through_recomputation(tmp_path):
    """An ED + ES file pair: the set records {"ed": 0, "es": 1} and every path uses it, even where the ES
    length comes out longer (max/min would swap the files and report a positive shortening); an explicit
    rule still wins; the record survives landmarks.json."""
    from CardiacLandmarksLib.results import recompute_measurements

    pair = lax_set([80.0, 84.0])
    assert lv_length_curve(pair).ed_phase == 1  # max/min: the longer frame is called ED
    pair.model["ed_es"] = {"ed": 0, "es": 1}
    c = lv_length_curve(pair)
    assert (c.ed_phase, c.es_phase, c.ed_rule, c.es_rule) == (0, 1, "given", "given")
    assert c.shortening_pct == pytest.approx(100 * (80 - 84) / 80)
    assert lv_length_curve(pair, ed="max", es="min").ed_phase == 1
    ms = {(m.name, m.phase): m.value for m in recompute_measurements(pair)}
    assert ms[("LV length ED", 0)] == pytest.approx(80.0) and ms[("LV length ES", 1)] == pytest.approx(84.0)
    assert ms[("Longitudinal shortening", None)] == pytest.approx(-5.0)
    back = LandmarkSet.from_dict(pair.to_dict())
    assert back.model["ed_es"] == {"ed": 0, "es": 1} and lv_length_curve(back).ed_phase == 0
