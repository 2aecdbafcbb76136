"""A reader's correction vouches for points, not for the file: the detection's warnings on the input itself (a
voxel size that is a header's placeholder, a forced view, an incomplete series) stay on every measurement
recomputed after a correction, in the library (review app, carried reviews, saving), on long-axis curves and
re-tracking, and in the study's SAX analysis, which now runs the input checks of ``detect``.

Before: confirming every point of an EMIDEC stack (no geometry: 1 x 1 x 1 mm placeholder) turned its RVI angles from
``review`` (input) to ``ok``; ``study`` on the same file never warned at all.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_data

from CardiacLandmarksLib import results
from CardiacLandmarksLib.analysis import analyse_landmarks
from CardiacLandmarksLib.core.landmarks import Landmark, LandmarkSet, input_sources
from CardiacLandmarksLib.io.checks import mark_input_warnings
from CardiacLandmarksLib.io.load import load_series
from CardiacLandmarksLib.lax.measurements import lv_length_curve, lv_length_measurements
from CardiacLandmarksLib.sax.pipeline import SaxOptions

EMIDEC_CASE = ("lge", "emidec", "Case_N006_DE.nii.gz")


@pytest.fixture(scope="module")
def emidec_result(tmp_path_factory):
    series = load_series(require_data(*EMIDEC_CASE))
    res = analyse_landmarks(series, "sax", SaxOptions(tta=False))
    folder = tmp_path_factory.mktemp("emidec") / "result"
    res.write(folder)
    return series, folder


@pytest.mark.data
def test_confirming_every_point_keeps_the_placeholder_warning(emidec_result):
    series, folder = emidec_result
    lmset = results.read_result(folder)
    (warning,) = [w for w in lmset.warnings if "placeholder affine" in w]
    assert {m.status for m in lmset.measurements} == {"review"}
    assert all(any(s.kind == "input" for s in m.sources) for m in lmset.measurements)
    for lm in [lm for lm in lmset.landmarks if lm.found]:
        results.confirm_landmark(lmset, lm.name, lm.slice, lm.phase)
    results.recompute_measurements(lmset, series)
    angles = [m for m in lmset.measurements if m.name == "RVI angle"]
    assert angles and {m.status for m in angles} == {"review"}, {m.status for m in angles}
    for m in angles:  # the points are the reader's; the input still is what it was
        assert [s.kind for s in m.sources if s.doubtful] == ["input"] and warning in m.sources[-1].note
    results.save_result(folder, lmset, series)
    back = results.read_result(folder)
    assert {m.status for m in back.measurements if m.name == "RVI angle"} == {"review"}
    csv = (folder / "measurements.csv").read_text()
    assert "input:review" in csv and ":confirmed" in csv


def _lax_set(shortening_pct: float = 18.0) -> LandmarkSet:
    """A 4CH set on one slice, two phases: mitral points fixed, apex moving (LPS mm), all high."""
    lms = []
    for t, apex_y in ((0, 100.0), (1, 100.0 * (1 - shortening_pct / 100))):
        for name, pos in (("AL-P", (-12.0, 0.0, 0.0)), ("IS-P", (12.0, 0.0, 0.0)), ("APEX", (0.0, apex_y, 0.0))):
            lms.append(Landmark(name, 0, t, True, np.array(pos), np.array([0.0, 0.0, 0.0]), 0.95, "high"))
    s = LandmarkSet("built", "4ch", {"ed_es": {"ed": 0, "es": 1}}, lms)
    s.measurements = lv_length_measurements(s, "4ch")
    return s


def test_long_axis_curve_and_recompute_keep_the_input_warning():
    s = _lax_set()
    assert {m.status for m in s.measurements} == {"ok"}
    mark_input_warnings(s, ["view forced: the image does not look like a 4CH view"])
    assert {m.status for m in s.measurements} == {"review"}
    curve = lv_length_curve(s, "4ch", 0)
    assert curve.shortening_status == "review" and curve.status_of_phase(0) == "review"
    # a reader's correction, then the measurements recomputed as the review app and the Slicer module do
    results.correct_landmark(s, "APEX", 0, 1, np.array([0.0, 80.0, 0.0]))
    results.recompute_measurements(s)
    assert {m.status for m in s.measurements} == {"review"}
    (src,) = input_sources(s.measurements)
    assert src.note == "view forced: the image does not look like a 4CH view"
    # recomputing twice adds no second copy
    results.recompute_measurements(s)
    assert all(sum(x.kind == "input" for x in m.sources) == 1 for m in s.measurements)


def test_a_set_without_input_warnings_is_unchanged():
    s = _lax_set()
    results.correct_landmark(s, "APEX", 0, 1, np.array([0.0, 80.0, 0.0]))
    results.recompute_measurements(s)
    assert {m.status for m in s.measurements} == {"ok"} and input_sources(s.measurements) == []


@pytest.mark.data
def test_study_sax_analysis_runs_the_input_checks(tmp_path):
    """The study's SAX analysis went straight to the SAX pipeline: no input check at all. Now an EMIDEC stack in a
    study carries the placeholder warning as `detect` does, and its key values are review because of it."""
    from CardiacLandmarksLib.study.analyse import analyse_study

    study = tmp_path / "study"
    study.mkdir()
    (study / EMIDEC_CASE[-1]).symlink_to(require_data(*EMIDEC_CASE))
    res = analyse_study(study, tmp_path / "out", tta=False)
    (o,) = [o for o in res.outcomes if o.task == "sax"]
    assert o.ok and any("placeholder affine" in w for w in o.result.warnings)
    assert o.values and all(v.status == "review" and "input review" in v.flags for v in o.values if v.value)
