"""The global perfusion value rests on the myocardium mask, not on the RV-insertion anchor (issue 16).

The AHA sectors (Cerqueira et al. 2002) split a slice's myocardium at angles measured from A-RVI; their union is
the whole myocardium wherever A-RVI lies. So a segment value hangs on its anchor, while the global value (all
myocardial pixels, Xue et al. 2020) and the stress/rest reserve of the global values do not move with it. Before,
the global value and the reserve were ``review`` whenever an anchor was flagged low, so the mlperf study of
patient 1132584 (every A-RVI low, confidence 0.0001-0.35) reported its global upslope indices and MPRI as
``review`` although nothing they rest on was doubtful.

Real data: mlperf patient 1132584, stress and rest mid slices. The RV insertions come from the RV-enhancement
fallback (``use_sax_model=False``), which is always flagged low.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from CardiacLandmarksLib.io.load import load_series
from CardiacLandmarksLib.perfusion import aha
from CardiacLandmarksLib.perfusion import pipeline as pp
from CardiacLandmarksLib.perfusion import segmentation as ps
from CardiacLandmarksLib.study import tasks

PATIENT = "1132584"


pytestmark = pytest.mark.usefixtures("quiet_image_log")


@pytest.fixture(scope="module")
def result(mlperf_dir):
    inputs = [pp.SeriesInput(load_series(mlperf_dir / f"{PATIENT}_{c}_mid.nii.gz"), f"{c}_mid")
              for c in ("stress", "rest")]
    return pp.analyse_perfusion(inputs, model=ps.load_model(), use_sax_model=False)


def _rotated_anchor(an: pp.SliceAnalysis, degrees: float) -> np.ndarray:
    """A-RVI turned about C-LV by ``degrees`` in the image plane (pixel (i, j))."""
    c, a = np.asarray(an.center_ij, float), np.asarray(an.a_rvi_ij, float)
    t = np.radians(degrees)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return c + rot @ (a - c)


@pytest.mark.data
def test_global_value_is_ok_where_only_the_anchor_is_doubtful(result):
    """Fallback anchors (low): every segment value with pixels is review for them; the global values and the
    MPRI are ok, and their sources are the two myocardium masks (high), no anchor."""
    assert all(an.rvi_trust[aha.ANCHOR_RVI][1] == "low" for an in result.analyses)
    summary = result.summary
    seg_values = [st for seg in summary["segments"].values() for c in summary["conditions"]
                  for st in seg.get(c, {}).values()]
    assert seg_values and all(st["status"] == "review" for st in seg_values if st["n_pixels"] >= pp.MIN_SEGMENT_PIXELS)
    for c in ("stress", "rest"):
        g = summary["global"][c]["upslope_index"]
        assert g["status"] == "ok", g["check"]
        kinds = {(s["id"], s["kind"], s["flag"]) for s in g["sources"] if s["kind"] != "curve"}
        assert kinds == {(f"myocardium {c}_mid", "mask", "high"), (f"global {c} pixels", "mask", "ok")}
    assert summary["global"]["reserve_trust"]["mpri"]["status"] == "ok"


@pytest.mark.data
def test_moving_the_anchor_moves_segments_not_the_global_value(result):
    """The claim the rule rests on, on the real masks: A-RVI turned 90 degrees about C-LV changes the segment
    values and leaves the global mean and its pixel count as they were."""
    an = result.analyses[0]
    before = pp.summarise(result.analyses)
    a0, i0, source, trust, warnings = an.a_rvi_ij.copy(), an.i_rvi_ij.copy(), an.rvi_source, dict(an.rvi_trust), \
        list(an.warnings)
    try:
        pp.set_rvi(an, _rotated_anchor(an, 90.0), None, source="user", frame=an.rvi_frame)
        after = pp.summarise(result.analyses)
    finally:  # the module's result as it was, for the other tests
        pp.set_rvi(an, a0, i0, source=source, frame=an.rvi_frame, trust=trust)
        an.warnings = warnings
    c = an.condition
    g0, g1 = before["global"][c]["upslope_index"], after["global"][c]["upslope_index"]
    assert g1["n_pixels"] == g0["n_pixels"]
    assert g1["mean"] == pytest.approx(g0["mean"], rel=1e-9)
    seg0 = [before["segments"][s].get(c, {}).get("upslope_index", {}).get("mean") for s in range(1, 17)]
    seg1 = [after["segments"][s].get(c, {}).get("upslope_index", {}).get("mean") for s in range(1, 17)]
    changed = [s for s, (x, y) in enumerate(zip(seg0, seg1), 1) if x is not None and y is not None
               and abs(x - y) > 1e-6]
    assert len(changed) >= 3, (seg0, seg1)


@pytest.mark.data
def test_a_slice_without_rv_insertions_still_counts_in_the_global_value(result):
    """A slice whose RV insertions were not found has no sectors (its segment values are left out) but its
    myocardium is still in the global value: the same mean and pixel count as with an anchor. Before, the slice
    was dropped from the global value without a word."""
    an = result.analyses[0]
    before = pp.summarise(result.analyses)
    kept_anchor, kept_segments, kept_stats = an.a_rvi_ij, an.segments, an.stats
    try:
        an.a_rvi_ij = None
        pp.recompute_sectors(an)
        assert an.segments is None
        after = pp.summarise(result.analyses)
    finally:
        an.a_rvi_ij, an.segments, an.stats = kept_anchor, kept_segments, kept_stats
    c = an.condition
    g0, g1 = before["global"][c]["upslope_index"], after["global"][c]["upslope_index"]
    assert g1["n_pixels"] == g0["n_pixels"] > 100
    assert g1["mean"] == pytest.approx(g0["mean"], rel=1e-9)
    assert all(c not in after["segments"][s] for s in range(1, 17))


@pytest.mark.data
def test_a_doubtful_mask_still_makes_the_global_value_review(result):
    """A segmentation confidence below 0.5 flags the mask low: the global value and the reserve become review
    and name the mask."""
    stress = next(a for a in result.analyses if a.condition == "stress")
    kept = stress.seg
    try:
        stress.seg = dataclasses.replace(kept, confidence=0.3)
        summary = pp.summarise(result.analyses)
    finally:
        stress.seg = kept
    g = summary["global"]["stress"]["upslope_index"]
    assert g["status"] == "review"
    assert ("myocardium stress_mid", "low") in {(s["id"], s["flag"]) for s in g["sources"]}
    assert summary["global"]["rest"]["upslope_index"]["status"] == "ok"
    assert summary["global"]["reserve_trust"]["mpri"]["status"] == "review"


@pytest.mark.data
def test_study_key_values_follow_the_global_trust(mlperf_dir, tmp_path, monkeypatch):
    """The study's key values on the same slices with fallback anchors: the global values and the MPRI are ok
    with no anchor named; a warning on the series' input (here a placeholder voxel size) still makes the global
    value review and is named in its flags; the anchor and level warnings are not."""
    real = pp.analyse_perfusion
    monkeypatch.setattr(pp, "analyse_perfusion", lambda *a, **k: real(*a, **{**k, "use_sax_model": False}))
    slices = [(f"{c}_mid", load_series(mlperf_dir / f"{PATIENT}_{c}_mid.nii.gz")) for c in ("stress", "rest")]
    out = tasks.run_perfusion(slices, tasks.Models("cpu"), tmp_path / "perf", tmp_path, "study")
    kv = {v.name: v for v in out.values}
    assert set(kv) == {"perfusion stress upslope index (global)", "perfusion rest upslope index (global)",
                       "perfusion reserve MPRI (global)"}
    for v in kv.values():
        assert v.status == "ok" and v.flags == [], (v.name, v.status, v.flags)
    assert any("RV-enhancement fallback" in n for n in out.notes)  # the anchors' warnings are still told

    warned = load_series(mlperf_dir / f"{PATIENT}_stress_mid.nii.gz")
    warned.metadata = {**(warned.metadata or {}), "warnings": ["voxel size 1 x 1 mm is a placeholder"]}
    out = tasks.run_perfusion([("stress_mid", warned), slices[1]], tasks.Models("cpu"), tmp_path / "perf2",
                              tmp_path, "study")
    kv = {v.name: v for v in out.values}
    stress = kv["perfusion stress upslope index (global)"]
    assert stress.status == "review"
    assert stress.flags == ["stress_mid: voxel size 1 x 1 mm is a placeholder"]
    assert kv["perfusion rest upslope index (global)"].status == "ok"


@pytest.mark.data
def test_reserve_flags_name_the_doubtful_condition(mlperf_dir, tmp_path):
    """mlperf patient 119151 (four slices): the stress myocardium's upslope indices spread more than their mean,
    so the stress value and the MPRI are review. The MPRI's flag says that it is the stress value, as the stress
    value's own flag does; before, both read 'mpri review: sd ... > mean ...' / 'upslope_index review: ...'."""
    slices = [(f"{c}_{lv}", load_series(mlperf_dir / f"119151_{c}_{lv}.nii.gz"))
              for c in ("stress", "rest") for lv in ("base", "mid")]
    out = tasks.run_perfusion(slices, tasks.Models("cpu"), tmp_path / "perf", tmp_path, "study")
    kv = {v.name: v for v in out.values}
    _, summary = out.result
    g = summary["global"]["stress"]["upslope_index"]
    assert g["sd"] > g["mean"] > 0  # the data's own spread, from the pixels
    stress, rest = kv["perfusion stress upslope index (global)"], kv["perfusion rest upslope index (global)"]
    mpri = kv["perfusion reserve MPRI (global)"]
    assert stress.status == mpri.status == "review" and rest.status == "ok"
    assert stress.flags == mpri.flags
    assert len(stress.flags) == 1 and stress.flags[0].startswith("stress upslope index review: sd ")


@pytest.mark.data
def test_study_shows_perfusion_ratios_to_two_decimals(mlperf_dir, tmp_path, capsys):
    """``study`` on mlperf patient 119151's four files: stress and rest upslope indices (0.266 and 0.262 in
    study.json) are printed apart, and as the summary page shows them; with one decimal both read '0.3 ratio' and
    the MPRI '1.0'."""
    from CardiacLandmarksLib.cli import main as cli_main

    study = tmp_path / "119151"
    study.mkdir()
    for c in ("stress", "rest"):
        for lv in ("base", "mid"):
            (study / f"119151_{c}_{lv}.nii.gz").symlink_to(mlperf_dir / f"119151_{c}_{lv}.nii.gz")
    assert cli_main(["study", str(study), "-o", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    values = {d["name"]: d for d in json.loads((tmp_path / "out" / "study.json").read_text())["key_values"]}
    stress, rest = (values[f"perfusion {c} upslope index (global)"] for c in ("stress", "rest"))
    assert abs(stress["value"] - rest["value"]) >= 0.001
    lines = {name: next(x for x in printed.splitlines() if f"] {name}: " in x) for name in values}
    shown = {name: line.split(f"] {name}: ")[1].split("  (")[0] for name, line in lines.items()}
    for name, d in values.items():  # the shown value is the file's value to the shown precision
        number, unit = shown[name].split(" ", 1)
        assert unit == d["unit"] and len(number.split(".")[1]) == 2
        assert abs(float(number) - d["value"]) <= 0.005 + 1e-9
    assert shown["perfusion stress upslope index (global)"] != shown["perfusion rest upslope index (global)"]
