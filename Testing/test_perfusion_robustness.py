"""One perfusion series that cannot be analysed is named, and the rest of the study is reported (issue 16).

Real data: mlperf series of patient 1434856 (a validation patient of the bundled perfusion model). The failing
series are made from a real one: every pixel set to one value (a constant series), cut to its first 12 frames
(truncated before the contrast arrives) or to 6 frames (too short), and a series of another patient with another
matrix (the odd one out). What is asserted is behaviour: which series are analysed, which are named as failed and
why, and that the values of the analysed ones are physiological (positive upslope index, stress >= rest).
"""

from __future__ import annotations

import copy
import json

import nibabel as nib
import numpy as np
import pytest

from CardiacLandmarksLib.core.errors import PerfusionInputError
from CardiacLandmarksLib.io.load import load_series
from CardiacLandmarksLib.perfusion import pipeline as pp
from CardiacLandmarksLib.perfusion import segmentation as ps
from CardiacLandmarksLib.study import tasks
from CardiacLandmarksLib.study.analyse import analyse_study

PATIENT = "1434856"


pytestmark = pytest.mark.usefixtures("quiet_image_log")


@pytest.fixture(scope="module")
def model():
    return ps.load_model()


def _variant(series, fn):
    s = copy.deepcopy(series)
    s.pixels = np.ascontiguousarray(fn(s.pixels.astype(np.float32)))
    s.metadata = {}
    return s


@pytest.fixture(scope="module")
def study(mlperf_dir, model):
    stress, rest = (load_series(mlperf_dir / f"{PATIENT}_{c}_mid.nii.gz") for c in ("stress", "rest"))
    base = load_series(mlperf_dir / f"{PATIENT}_stress_base.nii.gz")
    inputs = [pp.SeriesInput(stress, "stress_mid"), pp.SeriesInput(rest, "rest_mid"),
              pp.SeriesInput(_variant(base, lambda p: np.full_like(p, 100.0)), "stress_base_constant"),
              pp.SeriesInput(_variant(base, lambda p: p[:12]), "stress_base_precontrast"),
              pp.SeriesInput(_variant(base, lambda p: p[:6]), "stress_base_6frames")]
    return pp.analyse_perfusion(inputs, model=model, use_sax_model=False)


@pytest.mark.data
def test_failed_series_are_named_and_the_others_reported(study):
    assert [a.name for a in study.analyses] == ["stress_mid", "rest_mid"]
    why = dict(study.failed)
    assert set(why) == {"stress_base_constant", "stress_base_precontrast", "stress_base_6frames"}
    assert why["stress_base_constant"].startswith("ConstantImageError")
    assert why["stress_base_precontrast"].startswith("NoContrastPassageError")
    assert "at least 8 frames" in why["stress_base_6frames"]
    assert [w.split(":")[0] for w in study.failure_warnings] == [n for n, _ in study.failed]
    # the analysed series still give the study its values: both conditions, a physiological reserve
    g = study.summary["global"]
    assert study.summary["conditions"] == ["stress", "rest"]
    for c in ("stress", "rest"):
        assert g[c]["upslope_index"]["mean"] > 0 and g[c]["upslope_index"]["n_pixels"] > 50
    assert g["reserve"]["mpri"] > 1.0  # adenosine stress raises the myocardial upslope relative to rest
    # the stress global value misses the failed stress slices: review, naming them (before, ok in the report while
    # the study's key value said review); the reserve through it; the rest value and a segment value keep theirs
    v = g["stress"]["upslope_index"]
    checks = [(x["id"], x["note"]) for x in v["sources"] if x["kind"] == "check"]
    assert checks == [(n, f"not analysed ({why.split(':')[0]})") for n, why in study.failed], checks
    assert v["status"] == "review" and "stress_base_constant (review: not analysed (ConstantImageError))" in v["check"]
    assert study.failed_conditions == {n: "stress" for n, _ in study.failed}
    assert not any(x["kind"] == "check" for x in g["rest"]["upslope_index"]["sources"])
    assert g["reserve_trust"]["mpri"]["status"] == "review"
    assert "stress_base_constant" in g["reserve_trust"]["mpri"]["check"]
    seg = study.summary["segments"][8]["rest"]["upslope_index"]
    assert not any(x["kind"] == "check" for x in seg["sources"])


@pytest.mark.data
def test_a_failed_series_doubts_the_global_values_of_its_own_condition(study):
    """Which global values a failed series puts in doubt: its condition's (given, or stated by its name), every
    condition's when none is known."""
    def checked(summary):
        return {c: [x["id"] for x in summary["global"][c]["upslope_index"]["sources"] if x["kind"] == "check"]
                for c in ("stress", "rest")}

    err = [("rest_apex", "ConstantImageError: constant"), ("series 7", "CorruptFileError: truncated"),
           ("slice_b", "NoContrastPassageError: no bolus")]
    # by name: rest_apex -> rest only; 'series 7' and 'slice_b' state nothing -> both conditions
    assert checked(pp.summarise(study.analyses, err)) == {"stress": ["series 7", "slice_b"],
                                                          "rest": ["rest_apex", "series 7", "slice_b"]}
    # a condition given with the input outranks the name
    assert checked(pp.summarise(study.analyses, err, {"slice_b": "stress", "rest_apex": None})) == {
        "stress": ["rest_apex", "series 7", "slice_b"], "rest": ["rest_apex", "series 7"]}


@pytest.mark.data
def test_report_json_names_the_failed_series(study, tmp_path):
    study.write(tmp_path)
    rep = json.loads((tmp_path / "report.json").read_text())
    assert [f["series"] for f in rep["failed"]] == [n for n, _ in study.failed]
    for name, _ in study.failed:
        assert any(w.startswith(f"{name}: not analysed (") for w in rep["warnings"])
        assert not (tmp_path / f"{name}_segmentation.nii.gz").exists()
    assert [i["series"] for i in rep["inputs"]] == ["stress_mid", "rest_mid"]
    assert (tmp_path / "stress_mid_segmentation.nii.gz").exists()


@pytest.mark.data
def test_the_odd_series_out_is_named_not_the_study_aborted(mlperf_dir, model):
    """A series of another patient (another matrix and pixel size) among three of one patient is left out and
    named; two series alone that differ still stop the analysis (nothing tells which one is wrong)."""
    from CardiacLandmarksLib.core.errors import SeriesMismatchError

    own = [pp.SeriesInput(load_series(mlperf_dir / f"{PATIENT}_{c}_mid.nii.gz"), f"{c}_mid") for c in ("stress", "rest")]
    other = pp.SeriesInput(load_series(mlperf_dir / "1450949_stress_mid.nii.gz"), "other_patient")
    res = pp.analyse_perfusion([*own, other], model=model, use_sax_model=False)
    assert [a.name for a in res.analyses] == ["stress_mid", "rest_mid"]
    assert [n for n, _ in res.failed] == ["other_patient"]
    assert res.failed[0][1].startswith("SeriesMismatchError") and "matrices differ" in res.failed[0][1]
    assert "mpri" in res.summary["global"]["reserve"]  # the matching pair keeps its stress/rest reserve
    with pytest.raises(SeriesMismatchError):
        pp.analyse_perfusion([own[0], other], model=model, use_sax_model=False)


@pytest.mark.data
def test_study_task_reports_slices_that_failed(mlperf_dir, model, tmp_path):
    """A multi-slice perfusion series of a study: one slice constant -> the task is ok, names that slice, and its
    key values are review."""
    good = load_series(mlperf_dir / f"{PATIENT}_stress_mid.nii.gz")
    bad = _variant(good, np.zeros_like)
    models = tasks.Models("cpu")  # loads the bundled model (cached per process)
    out = tasks.run_perfusion([("stress_slice0", good), ("stress_slice1", bad)], models, tmp_path / "perf", tmp_path,
                              "stress")
    assert out.ok
    assert any(n.startswith("stress_slice1: not analysed (ConstantImageError") for n in out.notes)
    assert out.values and all(v.status == "review" and "stress_slice1" in v.detail for v in out.values)
    assert out.values[0].value > 0


@pytest.mark.data
def test_study_folder_with_a_constant_and_a_truncated_series(mlperf_dir, tmp_path):
    """A study folder: two real series, one constant, one truncated before the contrast arrives. The study
    completes, reports the two real series and names the two others as failed."""
    folder = tmp_path / "study"
    folder.mkdir()
    for c in ("stress", "rest"):
        (folder / f"{PATIENT}_{c}_mid.nii.gz").symlink_to(mlperf_dir / f"{PATIENT}_{c}_mid.nii.gz")
    img = nib.load(mlperf_dir / f"{PATIENT}_stress_base.nii.gz")
    nib.save(nib.Nifti1Image(np.full(img.shape, 100, np.int16), img.affine, img.header),
             folder / f"{PATIENT}_stress_base.nii.gz")
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj)[:12], img.affine, img.header),
             folder / f"{PATIENT}_rest_base.nii.gz")
    res = analyse_study(folder, tmp_path / "out")
    (perf,) = [o for o in res.outcomes if o.task == "perfusion"]  # one report of the study's four series
    assert perf.ok and perf.series_key == "study"
    failed = dict(perf.failed_series)
    assert set(failed) == {f"{PATIENT}_stress_base", f"{PATIENT}_rest_base"}
    assert "ConstantImageError" in failed[f"{PATIENT}_stress_base"]
    assert "NoContrastPassageError" in failed[f"{PATIENT}_rest_base"]
    assert res.status == "review" and len(res.errors) == 2
    kv = {v.name: v for v in perf.values}
    for c in ("stress", "rest"):  # the two real series are reported, review: each misses its own failed slice
        v = kv[f"perfusion {c} upslope index (global)"]
        assert v.value > 0 and v.status == "review" and v.detail == f"1 slice(s); not analysed: {PATIENT}_{c}_base"
        assert [f.split(" (")[0] for f in v.flags if "not analysed" in f] == [  # and the flags say which
            f"{PATIENT}_{c}_base: not analysed"], v.flags
    mpri = kv["perfusion reserve MPRI (global)"]  # the ratio misses both
    assert mpri.status == "review" and mpri.detail == (f"stress / rest; not analysed: {PATIENT}_stress_base, "
                                                       f"{PATIENT}_rest_base")
    res.write(tmp_path / "out")
    rep = json.loads((tmp_path / "out" / "study.json").read_text())
    assert sorted(e.split(":")[0] for e in rep["errors"]) == [f"perfusion on {PATIENT}_rest_base",
                                                              f"perfusion on {PATIENT}_stress_base"]


@pytest.mark.data
def test_a_failed_series_is_named_once(acdc_dir, model):
    """The failure list names the series once: the error of :func:`analyse_series` starts with the name and
    the study's list added it again ('cine_stack: PerfusionInputError: cine_stack: a perfusion input ...')."""
    stack = load_series(acdc_dir / "patient001_ED.nii.gz")  # a cine SAX stack: 10 slices, one frame
    with pytest.raises(PerfusionInputError) as err:
        pp.analyse_perfusion([pp.SeriesInput(stack, "cine_stack")], model=model, use_sax_model=False)
    msg = str(err.value)
    assert "cine_stack: PerfusionInputError: a perfusion input must be one slice over time; got 10 slices" in msg
    assert msg.count("cine_stack") == 1, msg


@pytest.mark.data
def test_study_key_value_carries_the_global_value_trust(data_root, tmp_path, monkeypatch):
    """The study's global perfusion key value takes the global value's own trust: on the QPerf stress series (Gd
    concentration, cropped) the myocardial upslope index comes out negative, which perfusion.pipeline flags
    'review: mean not positive'. With the series' RV insertions relabelled as the landmark model's and its
    warnings cleared (so that only the value itself is doubtful), the key value is still 'review' and names why;
    before, it was 'ok' (the study rule looked at the RVI source and the warnings only)."""
    series = load_series(data_root / "perfusion" / "qperf" / "data_stress.hdr")
    real = pp.analyse_perfusion

    def trusted_anchor(*args, **kwargs):
        res = real(*args, **kwargs)
        for an in res.analyses:
            an.rvi_source, an.warnings = "SAX landmark model (frame 17)", []
        return res

    monkeypatch.setattr(pp, "analyse_perfusion", trusted_anchor)
    monkeypatch.setattr(pp, "warning_sources", lambda an: [])  # the warnings, sources of the value themselves
    out = tasks.run_perfusion([("data_stress", series)], tasks.Models("cpu"), tmp_path / "perf", tmp_path, "stress")
    kv = next(v for v in out.values if "upslope index" in v.name)
    assert kv.value < 0
    assert kv.status == "review"
    assert kv.flags[0].startswith("stress upslope index review: mean ") and kv.flags[0].endswith("not positive")
