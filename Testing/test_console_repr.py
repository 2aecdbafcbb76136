"""What a Python console (Slicer's, or a plain one) shows for the objects the analysis APIs return.

Typing ``series`` or ``result`` at a console prints the object's repr. The dataclass default printed every pixel
of the ``[t, k, j, i]`` array, the DICOM file list and every landmark (the Sunnybrook cine: several hundred
thousand characters); a measurement's repr showed its value without saying it needs review. These tests hold the
reprs to one short summary that carries each value's status and reason.
"""

from __future__ import annotations

import numpy as np
import pytest

from CardiacLandmarksLib.core.landmarks import Landmark, LandmarkSet, Measurement, Source
from CardiacLandmarksLib.core.series import CMRSeries


def _series(t=20, k=12, n=256) -> CMRSeries:
    return CMRSeries(pixels=np.zeros((t, k, n, n), np.float32), spacing=(1.367188, 1.367188, 10.0),
                     direction=np.eye(3), slice_origins=np.c_[np.zeros((k, 2)), 10.0 * np.arange(k)],
                     sequence="cine", view="sax", source="/data/study/cine", description="SAX cine",
                     metadata={"files": [[f"/data/study/cine/{i}.dcm" for i in range(t * k)]]})


def _point(name, k, t, flag="high", conf=0.9, **kw) -> Landmark:
    found = flag != "absent"
    pos = np.array([-12.34, 40.06, 88.0]) if found else np.full(3, np.nan)
    return Landmark(name, k, t, found, pos, pos.copy(), conf if found else 0.0, flag, **kw)


def test_series_repr_is_one_line_without_pixels_or_files():
    s = _series()
    text = repr(s)
    assert "\n" not in text and len(text) < 200, text
    assert text == ("CMRSeries('SAX cine': cine, view sax, 20 phase(s) x 12 slice(s) x 256 x 256 px, "
                    "1.37 x 1.37 x 10 mm, orientation from the header)")
    s.orientation_known = False
    assert repr(s).endswith("orientation unknown)")


def test_real_dicom_series_repr_stays_short(sunnybrook_dicom):
    from CardiacLandmarksLib.io.load import load_series

    s = load_series(sunnybrook_dicom)
    text = repr(s)
    assert len(text) < 200 and "20 phase(s) x 12 slice(s) x 256 x 256 px" in text, text
    assert ".dcm" not in text and "0., 0." not in text


def test_landmark_repr_gives_position_trust_and_reason():
    low = _point("A-RVI", 5, 0, "low", 0.41, doubt="the detector's estimates disagree by 5.3 mm")
    assert repr(low) == ("Landmark('A-RVI', slice 5, phase 0: LPS (-12.3, 40.1, 88.0) mm, low 0.41: "
                         "the detector's estimates disagree by 5.3 mm)")
    assert repr(_point("C-LV", 0, 3, "absent")) == "Landmark('C-LV', slice 0, phase 3: absent)"
    moved = _point("I-RVI", 2, 0, "high", 1.0, corrected=True)
    assert repr(moved).endswith("high 1.00, placed by a reader)")
    kept = _point("I-RVI", 2, 0, "high", 1.0, corrected=True, confirmed=True)
    assert repr(kept).endswith("high 1.00, confirmed by a reader)")


def test_measurement_repr_never_shows_a_doubtful_value_alone():
    ok = Measurement("RVI angle", 3, 0, 62.25, "deg", sources=[Source("A-RVI s3 p0", "high", 0.9),
                                                                 Source("I-RVI s3 p0", "high", 0.8)])
    assert repr(ok) == "Measurement('RVI angle', slice 3, phase 0: 62.25 deg, ok)"
    doubtful = Measurement("RVI angle", 3, 0, 62.25, "deg", sources=[Source("A-RVI s3 p0", "low", 0.15),
                                                                       Source("I-RVI s3 p0", "high", 0.8)])
    assert repr(doubtful) == "Measurement('RVI angle', slice 3, phase 0: 62.25 deg, review: check A-RVI (low 0.15))"
    missing = Measurement("Longitudinal shortening", None, None, float("nan"), "%",
                          sources=[Source("APEX s0 p9", "absent", 0.0)])
    assert repr(missing) == "Measurement('Longitudinal shortening': no value, n/a: APEX (absent))"


def test_landmark_set_and_result_repr_summarise_instead_of_listing():
    from CardiacLandmarksLib.sax.report import LandmarkResult

    points = []
    for t in range(20):
        for k in range(12):
            points += [_point("A-RVI", k, t, "low" if k == 5 else "high"), _point("I-RVI", k, t, "high"),
                       _point("C-LV", k, t, "absent" if k == 0 else "high")]
    points[0] = _point("A-RVI", 0, 0, "high", 1.0, corrected=True, confirmed=True)
    meas = [Measurement("RVI angle", k, 0, 60.0, "deg", sources=[Source.of_landmark(points[3 * k])])
            for k in range(12)]
    lmset = LandmarkSet("/data/study/cine", "sax", {"name": "sax_unet", "version": "1.7.0", "sha256": "ab" * 32},
                        points, meas, warnings=["view forced to SAX"])
    text = repr(lmset)
    assert text == ("LandmarkSet(sax, sax_unet 1.7.0, 12 slice(s) x 20 phase(s): 700 of 720 points found "
                    "(high 680, low 20, 1 by a reader); 12 measurement(s) (ok 11, review 1); 1 input warning(s))")
    result = LandmarkResult(_series(), lmset, png_writer=lambda *a: a[-1], png_suffix="_overlay.png",
                            elapsed_s=6.07)
    shown = repr(result)
    assert shown.splitlines() == ["LandmarkResult(", f"  {_series()!r},", f"  {text},", "  6.1 s)"]


def test_function_result_repr_shows_values_as_the_cli_with_their_status():
    from CardiacLandmarksLib.function import measurements as fm
    from CardiacLandmarksLib.function.pipeline import FunctionResult

    def v(name, value, unit, flags=()):
        return fm.Value(name, value, unit, fm._status(value, list(flags)), list(flags), "LV cavity at ED (phase 18)")
    lv = {"EDV_ml": v("EDV_ml", 196.3, "ml"), "ESV_ml": v("ESV_ml", 132.5, "ml"), "SV_ml": v("SV_ml", 63.8, "ml"),
          "EF_pct": v("EF_pct", 32.5, "%"), "mass_g": v("mass_g", 147.1, "g", ["lv_segmentation_uncertain"])}
    rv = {"EDV_ml": v("EDV_ml", None, "ml"), "ESV_ml": v("ESV_ml", 30.9, "ml"), "SV_ml": v("SV_ml", None, "ml"),
          "EF_pct": v("EF_pct", None, "%")}
    s = _series(t=20, k=3, n=8)
    labels = np.zeros((20, 3, 8, 8), np.uint8)
    res = FunctionResult([s], ["cine"], [labels], "cine", 18, 7, {"LV": lv, "RV": rv}, None, {}, None,
                         {"name": "sax_unet_function", "version": "1.3.1"})
    lines = repr(res).splitlines()
    assert lines[0] == "FunctionResult(cine 'cine', ED phase 18, ES phase 7 of 20, sax_unet_function 1.3.1"
    assert lines[1] == "  LV  EDV 196.3 ml  ESV 132.5 ml  SV 63.8 ml  EF 32.5 %  mass 147.1 g [review]"
    assert lines[2] == "  RV  EDV n/a  ESV 30.9 ml  SV n/a  EF n/a"
    assert lines[3].startswith("    check LV cavity at ED (phase 18): ") and "uncertain" in lines[3]
    assert lines[-1] == ")" and len(lines) == 5


def test_study_result_repr_lists_key_values_with_status_and_reason():
    from CardiacLandmarksLib.study.analyse import StudyResult
    from CardiacLandmarksLib.study.routing import RoutedSeries, StudyRouting
    from CardiacLandmarksLib.study.tasks import KeyValue, TaskOutcome

    routing = StudyRouting("/data/study", "dicom", [
        RoutedSeries("s300", "#300 'SAX cine'", "1.2.3", 12, 20, "sax", "cine", ["sax", "function"],
                     "SAX cine stack (reference)"),
        RoutedSeries("s6", "#6 'First Pass'", "1.2.4", 1, 79, "sax", "perfusion", ["perfusion"],
                     "first-pass perfusion")])
    ef = KeyValue("LV EF", 32.46, "%", "ok")
    mass = KeyValue("LV mass", 147.1, "g", "review", ["lv_segmentation_uncertain"],
                    check="check LV myocardium contours (uncertain segmentation)")
    outcomes = [TaskOutcome("function", "s300", values=[ef, mass], files=["a", "b"]),
                TaskOutcome("perfusion", "s6", ok=False, error="NoContrastPassageError: no bolus")]
    result = StudyResult(routing, outcomes, name="study")
    assert repr(result).splitlines() == [
        "StudyResult('study', status review: 2 series routed; analyses: function on s300, perfusion on s6 FAILED",
        "  [    ok] LV EF: 32.5 %",
        "  [review] LV mass: 147.1 g  (check LV myocardium contours (uncertain segmentation))",
        "  error: perfusion on s6: NoContrastPassageError: no bolus",
        ")"]
    assert repr(routing.series[1]) == ("RoutedSeries('s6', \"#6 'First Pass'\": 1 x 79, SAX, perfusion, "
                                       "analyses perfusion: first-pass perfusion)")
    assert repr(routing).splitlines()[0] == "StudyRouting('study', dicom, 2 series"
    assert repr(routing).splitlines()[1:-1] == routing.table().splitlines()
    assert repr(outcomes[1]).splitlines()[0] == "TaskOutcome(perfusion on s6: FAILED: NoContrastPassageError: no bolus, 0 file(s)"


def test_perfusion_result_repr_gives_global_values_with_their_trust():
    from CardiacLandmarksLib.perfusion.pipeline import PerfusionResult

    summary = {"conditions": ["stress", "rest"], "metrics": ["upslope_index"], "units": {"upslope_index": "ratio"},
               "global": {"stress": {"upslope_index": {"mean": 0.2712, "status": "review",
                                                        "check": "check myocardium stress_mid (low 0.31)"}},
                          "rest": {"upslope_index": {"mean": 0.1504, "status": "ok", "check": ""}},
                          "reserve": {"mpri": 1.803},
                          "reserve_trust": {"mpri": {"status": "review", "check": "check stress (review)"}}}}
    res = PerfusionResult([], summary, {}, "", failed=[("rest_base", "NoContrastPassageError: no bolus")])
    assert repr(res).splitlines() == [
        "PerfusionResult(0 series analysed, 1 not analysed",
        "  rest_base: not analysed (NoContrastPassageError: no bolus)",
        "  global stress upslope index: 0.27 ratio, review: check myocardium stress_mid (low 0.31)",
        "  global rest upslope index: 0.15 ratio, ok",
        "  global reserve MPRI: 1.80 ratio, review: check stress (review)",
        ")"]


@pytest.mark.parametrize("status", ["ok", "review", "n/a"])
def test_key_value_line_is_the_study_console_line(status):
    from CardiacLandmarksLib.study.tasks import KeyValue

    kv = KeyValue("LV EDV", None if status == "n/a" else 150.26, "ml", status, ["x"] if status == "review" else [])
    expected = {"ok": "[    ok] LV EDV: 150.3 ml", "review": "[review] LV EDV: 150.3 ml  (x)",
                "n/a": "[   n/a] LV EDV: -  (not measured)"}[status]
    assert kv.line() == expected
    assert repr(kv) == f"KeyValue({expected})"
