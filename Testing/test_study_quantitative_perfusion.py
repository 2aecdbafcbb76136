"""Quantitative perfusion in a study: arterial input functions found beside the series, a pixel size and a
frame interval for headers that lost them (``study``/``batch`` ``--pixel-size``, ``--dt``, ``--concentration``).

Before, ``study`` on QPerf's folder (Xue et al., MRM 2020: Gd concentration, an AIF per series, 0.5 s per frame,
no pixel size recorded) listed the AIFs "for 'perfusion --aif'" and reported only upslope indices, from a
segmentation run at a 1 mm pixel size that the crops do not have (stress: myocardial area 2.5 cm2, a negative
upslope index). The physiological ranges asserted below are those of test_perfusion_qperf.py (rest MBF about
0.5-1.5 ml/min/g, stress 1.5-4), where the perfusion pipeline is run on the same files directly.
"""

from __future__ import annotations

import csv
import json

import pytest
from conftest import reloads_at_pixel_size, require_data

from CardiacLandmarksLib.core.errors import ImplausibleSpacingError
from CardiacLandmarksLib.io.checks import given_pixel_size, placeholder_spacing_warning
from CardiacLandmarksLib.io.load import load_series
from CardiacLandmarksLib.study.analyse import analyse_study
from CardiacLandmarksLib.study.routing import RoutedSeries, StudyRouting, pair_aifs

EMIDEC = ("lge", "emidec", "Case_N006_DE.nii.gz")


def _perf(label, frames):
    return RoutedSeries(key=label.split(".")[0], label=label, source=label, n_slices=1, n_phases=frames,
                        view="sax", sequence="perfusion", analyses=["perfusion"])


def _curve(label, samples):
    return RoutedSeries(key=label.split(".")[0], label=label, source=label, view="-", sequence="curve",
                        samples=samples, reason="a curve")


def test_pairing_by_length_then_by_condition():
    """One curve of the series' length pairs; of two that fit, the one naming the same condition; two that fit
    equally pair with nothing (and the series says why); slices of one acquisition share their curve."""
    stress_base, stress_mid, rest_mid = _perf("P_stress_base.nii.gz", 60), _perf("P_stress_mid.nii.gz", 60), \
        _perf("P_rest_mid.nii.gz", 60)
    aif_s, aif_r = _curve("aif_stress.txt.nii.gz", 60), _curve("aif_rest.nii.gz", 60)
    other = _curve("aif_other.nii.gz", 45)
    r = StudyRouting("x", "images", [stress_base, stress_mid, rest_mid, aif_s, aif_r, other])
    pair_aifs(r)
    assert (stress_base.aif, stress_mid.aif, rest_mid.aif) == (aif_s.key, aif_s.key, aif_r.key)
    assert aif_s.reason.startswith("arterial input function of P_stress_base.nii.gz, P_stress_mid.nii.gz (60")
    assert other.reason == "a curve"  # no series of 45 frames: left as it was

    unnamed = _perf("data.nii.gz", 60)
    r2 = StudyRouting("y", "images", [unnamed, _curve("aif1.nii.gz", 60), _curve("aif2.nii.gz", 60)])
    pair_aifs(r2)
    assert unnamed.aif is None and "aif1.nii.gz, aif2.nii.gz all fit" in unnamed.evidence[-1]

    lone = _perf("data.nii.gz", 60)
    r3 = StudyRouting("z", "images", [lone, _curve("aif.nii.gz", 59)])
    pair_aifs(r3)
    assert lone.aif is None  # one sample short: not this series' curve

    rest, stress_curve = _perf("P_rest_mid.nii.gz", 60), _curve("aif_stress.nii.gz", 60)
    r4 = StudyRouting("w", "images", [rest, stress_curve])
    pair_aifs(r4)
    assert rest.aif is None  # the only curve of its length is the stress one: never a rest series' input
    assert stress_curve.reason.endswith("not paired: P_rest_mid.nii.gz has one frame per sample but its name says "
                                        "rest")


@pytest.mark.data
def test_given_pixel_size_only_where_the_header_lost_it():
    """A placeholder header (QPerf 2D+T, EMIDEC stack) takes the given size; a real one (ACDC) keeps its own; the
    EMIDEC stack still warns that its 1 mm between slices is a placeholder; absurd sizes are a named error."""
    qperf = load_series(require_data("perfusion", "qperf") / "data.hdr")
    assert placeholder_spacing_warning(qperf) is not None
    note = given_pixel_size(qperf, 2.0)
    assert note.endswith("pixel size 2 x 2 mm as given (the header's 1 x 1 mm is a placeholder)")
    assert tuple(qperf.spacing[:2]) == (2.0, 2.0) and placeholder_spacing_warning(qperf) is None
    assert given_pixel_size(qperf, 3.0) is None and tuple(qperf.spacing[:2]) == (2.0, 2.0)  # once only

    acdc = load_series(require_data("acdc", "patient001_ED.nii.gz"))
    before = tuple(acdc.spacing)
    assert given_pixel_size(acdc, 2.0) is None and tuple(acdc.spacing) == before

    emidec = load_series(require_data(*EMIDEC))
    assert emidec.n_slices > 1 and given_pixel_size(emidec, 1.6) is not None
    warning = placeholder_spacing_warning(emidec)
    assert warning is not None and "1 mm between slices is the header's placeholder" in warning

    for bad in (0.0, 55.0):
        with pytest.raises(ImplausibleSpacingError):
            given_pixel_size(load_series(require_data("perfusion", "qperf") / "data.hdr"), bad)


@pytest.fixture(scope="module")
def quantitative(tmp_path_factory):
    out = tmp_path_factory.mktemp("qperf_study")
    res = analyse_study(require_data("perfusion", "qperf"), out, tta=False, pixel_size_mm=2.0,
                        frame_interval_s=0.5, concentration=True)
    return res, out


@pytest.mark.data
def test_study_reports_fermi_mbf_from_the_paired_aifs(quantitative):
    res, out = quantitative
    kv = {v.name: v for v in res.key_values()}
    rest = kv["perfusion (stress/rest?) MBF (global)"]  # 'data' names no condition
    stress = kv["perfusion stress MBF (global)"]
    assert rest.unit == stress.unit == "ml/min/g"
    assert 0.5 <= rest.value <= 1.5 and 1.5 <= stress.value <= 4.0
    notes = [n for o in res.outcomes for n in o.notes]
    assert "data: Fermi MBF from the arterial input function aif.hdr" in notes
    assert "data_stress: Fermi MBF from the arterial input function aif_stress.hdr" in notes
    assert sum("pixel size 2 x 2 mm as given" in n for n in res.notes) == 2
    row = res.cohort_row()
    assert row["perfusion_stress_metric"] == "mbf (ml/min/g)" and row["perfusion_stress"] == pytest.approx(
        stress.value, abs=1e-3)
    res.write(out)
    d = json.loads((out / "study.json").read_text())
    assert d["settings"] == {"device": "cpu", "tta": False, "pixel_size_mm": 2.0, "frame_interval_s": 0.5,
                             "concentration": True}
    rep = json.loads((out / "study_perfusion" / "report.json").read_text())  # one report of both series
    assert rep["units"]["mbf"] == "ml/min/g"
    assert rep["units"]["time_to_peak"] == "s" and rep["units"]["upslope"] == "SI/s"  # the given interval, not beats


@pytest.mark.data
def test_report_and_key_value_give_a_warned_global_value_one_status(quantitative):
    """QPerf's crops (74 and 94 mm field of view) are segmented as 'taken as cropped around the LV', a warning on
    each series that makes the study's global MBF key values review. The perfusion report's own global values
    (report.json, report.csv, the bull's-eye titles) are the same numbers with the same status and say why; before,
    the report gave them as ok (its rule looked at the masks and curves only, the study's at the warnings too)."""
    res, out = quantitative
    kv = {v.name: v for v in res.key_values()}
    rep = json.loads((out / "study_perfusion" / "report.json").read_text())
    rows = {(r["condition"], r["metric"]): r for r in csv.DictReader(
        (out / "study_perfusion" / "report.csv").read_text().splitlines()) if r["segment"] == "global"}
    for cond, name, series in (("stress", "perfusion stress MBF (global)", "data_stress"),
                               ("perfusion", "perfusion (stress/rest?) MBF (global)", "data")):
        g, v = rep["global"][cond]["mbf"], kv[name]
        warned = [x for x in g["sources"] if x["kind"] == "check"]
        assert [(x["id"], x["flag"]) for x in warned] == [(series, "review")], g["sources"]
        assert warned[0]["note"].startswith("field of view ") and "taken as cropped around the LV" in warned[0]["note"]
        assert g["status"] == v.status == rows[(cond, "mbf")]["status"] == "review"
        assert g["mean"] == pytest.approx(v.value)
        assert f"{series}: {warned[0]['note']}" in v.flags and warned[0]["note"] in rows[(cond, "mbf")]["check"]


@pytest.mark.data
def test_study_says_what_an_unused_aif_needs(tmp_path):
    """Without --concentration the curves are not used, and the study's notes say what to give; with it but no
    frame timing, the notes ask for --dt (before: a series without timing failed with a traceback-like error)."""
    qperf = require_data("perfusion", "qperf")
    plain = analyse_study(qperf, tmp_path / "a", tta=False)
    assert all(o.ok for o in plain.outcomes)
    assert {v.unit for v in plain.key_values()} == {"ratio"}
    assert sum("give --concentration when they hold contrast concentration" in n for n in plain.notes) == 2
    no_dt = analyse_study(qperf, tmp_path / "b", tta=False, concentration=True, pixel_size_mm=2.0)
    assert all(o.ok for o in no_dt.outcomes) and {v.unit for v in no_dt.key_values()} == {"ratio"}
    assert sum("the frames carry no timing; give the frame interval (--dt)" in n for n in no_dt.notes) == 2


@pytest.mark.data
@pytest.mark.slow
def test_batch_passes_the_study_options_to_dask_workers(tmp_path):
    """``batch --dt --concentration`` with the study's pixel size in the manifest, on a real LocalCluster: the
    worker's study reports MBF, its study.json records the options (the manifest's 2 mm over the batch's 3), and
    cohort.csv says which metric each perfusion column holds."""
    from CardiacLandmarksLib.cli import main

    manifest = tmp_path / "m.csv"
    manifest.write_text(f"study_id,path,pixel_size_mm\nqperf,{require_data('perfusion', 'qperf')},2\n")
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "-o", str(out), "--no-progress", "--no-tta", "--pixel-size", "3",
                 "--dt", "0.5", "--concentration"]) == 0
    d = json.loads((out / "studies" / "qperf" / "study.json").read_text())
    assert d["settings"]["pixel_size_mm"] == 2.0 and d["settings"]["concentration"] is True
    assert d["settings"]["frame_interval_s"] == 0.5
    (row,) = list(csv.DictReader(open(out / "cohort.csv")))
    assert row["perfusion_stress_metric"] == "mbf (ml/min/g)" and 1.5 <= float(row["perfusion_stress"]) <= 4.0
    assert row["perfusion_unlabelled_metric"] == "mbf (ml/min/g)"
    assert row["perfusion_rest_metric"] == "" and row["perfusion_rest_status"] == "n/a"


def test_cli_refuses_a_non_positive_pixel_size_or_interval(capsys):
    from CardiacLandmarksLib.cli import main

    for argv in (["study", "x", "-o", "y", "--pixel-size", "0"], ["batch", "x", "-o", "y", "--dt", "-0.5"],
                 ["study", "x", "-o", "y", "--dt", "nan"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--pixel-size must be a positive number" in err and "--dt must be a positive number" in err
    # a frame interval in milliseconds, a pixel size in centimetres: refused by name before any work (perfusion's
    # --dt took any number before, study's and batch's any positive one)
    for argv in (["perfusion", "x", "-o", "y", "--dt", "800"], ["study", "x", "-o", "y", "--dt", "600"],
                 ["batch", "x", "-o", "y", "--pixel-size", "0.1"], ["detect", "x", "-o", "y", "--pixel-size", "25"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "frame interval 800.0 s is not one of a first-pass perfusion series" in err
    assert "frame interval 600.0 s" in err and "--dt takes seconds, not milliseconds" in err
    assert "argument --pixel-size: pixel size 0.1 mm is not a cardiac MR pixel (0.2 to 20 mm)" in err
    assert "argument --pixel-size: pixel size 25 mm is not a cardiac MR pixel" in err


@pytest.mark.data
def test_a_given_pixel_size_is_kept_for_the_review(tmp_path, capsys):
    """``detect --pixel-size`` on an EMIDEC stack: landmarks.json records the size, and a review (the app, Slicer's
    Open result folder: ``results.load_source``) loads the image at that size again, so every point maps back onto
    its pixel. Without the record the image came back at 1 mm and the points lay ~1.6 x too far from the origin."""
    from CardiacLandmarksLib import results
    from CardiacLandmarksLib.cli import main

    src = require_data(*EMIDEC)
    out = tmp_path / "r"
    assert main(["detect", str(src), "-o", str(out), "--pixel-size", "1.6", "--no-progress", "--no-tta"]) == 0
    assert "pixel size 1.6 x 1.6 mm as given" in capsys.readouterr().out
    reloads_at_pixel_size(out, 1.6)
    # a real header is never overridden: ACDC keeps its 1.5625 mm and says so
    acdc = require_data("acdc", "patient001_ED.nii.gz")
    assert main(["detect", str(acdc), "-o", str(tmp_path / "a"), "--pixel-size", "1.6", "--no-progress",
                 "--no-tta"]) == 0
    assert "--pixel-size 1.6 not applied: the header of" in capsys.readouterr().out
    assert results.read_result(tmp_path / "a", point_lists="ignore").source_pixel_size_mm is None


@pytest.mark.data
def test_study_gives_one_perfusion_report_with_the_reserve(tmp_path):
    """mlperf patient 1132584 as a study folder (stress and rest, base and mid: four files). Before, the study made
    four reports: two 'perfusion rest upslope index (global)' key values of single slices (0.2 and 0.3; the cohort
    column took the first), no stress/rest reserve, four bull's-eyes. Now one report, as the perfusion task API
    gives on the same four files: the global value per condition over both slices, the MPRI, and each key value
    with the status the report gives the same number (before, 'ok' where the report said 'review')."""
    from CardiacLandmarksLib.perfusion import pipeline as pp

    src = require_data("perfusion", "mlperf")
    folder = tmp_path / "study"
    folder.mkdir()
    names = [f"1132584_{c}_{lv}" for c in ("stress", "rest") for lv in ("base", "mid")]
    for n in names:
        (folder / f"{n}.nii.gz").symlink_to(src / f"{n}.nii.gz")
    res = analyse_study(folder, tmp_path / "out", tta=False)
    (perf,) = [o for o in res.outcomes if o.task == "perfusion"]
    assert perf.ok and perf.series_key == "study" and perf.files[0].startswith("study_perfusion/")
    kv = {v.name: v for v in perf.values}
    assert sorted(kv) == ["perfusion reserve MPRI (global)", "perfusion rest upslope index (global)",
                          "perfusion stress upslope index (global)"]
    direct = pp.analyse_perfusion([pp.SeriesInput(load_series(src / f"{n}.nii.gz"), n) for n in names], tta=False)
    glob = direct.summary["global"]
    for c in ("stress", "rest"):
        v, ref = kv[f"perfusion {c} upslope index (global)"], glob[c]["upslope_index"]
        assert v.value == pytest.approx(ref["mean"], rel=1e-6) and v.detail == "2 slice(s)"
        assert v.status == ref["status"]
    mpri = kv["perfusion reserve MPRI (global)"]
    assert mpri.value == pytest.approx(glob["reserve"]["mpri"], rel=1e-6)
    assert mpri.status == glob["reserve_trust"]["mpri"]["status"] and mpri.unit == "ratio"
    row = res.cohort_row()
    assert row["perfusion_reserve_metric"] == "mpri (ratio)" and row["perfusion_reserve"] == pytest.approx(
        mpri.value, abs=1e-3)
    assert row["perfusion_rest"] == pytest.approx(kv["perfusion rest upslope index (global)"].value, abs=1e-3)


def test_frame_interval_limits_hold_for_the_python_api_too(tmp_path):
    """The console and Slicer reach the same check as the CLI: a SeriesInput or a study with a frame interval in
    milliseconds is a named error before any work."""
    import numpy as np

    from CardiacLandmarksLib.core.errors import PerfusionInputError
    from CardiacLandmarksLib.core.series import CMRSeries
    from CardiacLandmarksLib.perfusion.pipeline import SeriesInput
    from CardiacLandmarksLib.study.analyse import analyse_study

    s = CMRSeries(np.zeros((30, 1, 32, 32), np.float32), (2.0, 2.0, 8.0), np.eye(3), np.zeros((1, 3)))
    assert SeriesInput(s, dt_s=0.5).dt_s == 0.5 and SeriesInput(s).dt_s is None
    for bad in (800.0, 0.0, float("nan")):
        with pytest.raises(PerfusionInputError, match="is not one of a first-pass perfusion series"):
            SeriesInput(s, dt_s=bad)
    with pytest.raises(PerfusionInputError, match="frame interval 750"):
        analyse_study(tmp_path / "no such study", tmp_path / "out", frame_interval_s=750)
    assert not (tmp_path / "out").exists()  # refused before the output folder was made
