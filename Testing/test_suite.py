"""Evaluation suite (issue 16): the ACDC test row holds only test-split patients; a tiny run has the table's shape.

The full suite (every row, all cases) takes minutes and is run by ``cardiac-landmarks evaluate --suite``; here one
ACDC test patient (ED and ES) and one Sunnybrook image go through the real pipeline with the bundled models.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from CardiacLandmarksLib.core.errors import InputNotFoundError
from CardiacLandmarksLib.core.landmarks import LANDMARKS_BY_VIEW, Landmark, LandmarkSet
from CardiacLandmarksLib.datasets.splits import ACDC_TEST_PATIENTS, UNSEEN_BY_V1_3
from CardiacLandmarksLib.evaluation import suite


def test_polygon_centroid_and_fill():
    square = np.array([[10, 10], [20, 10], [20, 30], [10, 30]], float)
    np.testing.assert_allclose(suite.polygon_centroid(square), [15, 20])
    m = suite.fill_polygon(square, (40, 40))
    jj, ii = np.nonzero(m)
    assert 10 <= ii.min() and ii.max() <= 20 and 10 <= jj.min() and jj.max() <= 30
    assert abs(m.sum() - 10 * 20) <= 31  # boundary pixels may go either way


def test_flag_figures_and_dice():
    err = np.array([1.0, 2.0, 12.0, 30.0])
    f = suite.flag_figures(err, np.array(["high", "high", "low", "high"]), 10.0)
    assert f["n_gross"] == 2 and f["gross_flagged_low"] == 0.5
    assert f["mean_error_high"] == pytest.approx(11.0) and f["mean_error_all"] == pytest.approx(11.25)
    assert math.isnan(suite.flag_figures(np.zeros(0), np.zeros(0, str), 10.0)["gross_flagged_low"])
    a = np.zeros((2, 4, 4), np.uint8)
    a[0, :2] = 3
    d = suite.stack_dice(a, a)
    assert d["LV"] == 1.0 and math.isnan(d["RV"]) and math.isnan(d["myo"])


def test_unknown_row_is_a_named_error(tmp_path):
    with pytest.raises(InputNotFoundError):
        suite.run_suite(tmp_path, device="cpu", rows=("no such set",))


@pytest.mark.data
def test_acdc_test_row_never_includes_a_non_test_patient(acdc_dir):
    cases = suite.acdc_test_cases(acdc_dir)
    patients = {c.patient for c in cases}
    assert patients == set(ACDC_TEST_PATIENTS), "the shared data hold all 20 test patients"
    assert len(cases) == 2 * len(ACDC_TEST_PATIENTS)  # ED and ES
    assert {c.patient for c in cases if c.patient in UNSEEN_BY_V1_3} == set(UNSEEN_BY_V1_3)


@pytest.mark.data
@pytest.mark.slow
def test_tiny_suite_has_the_table_shape(data_root):
    table = suite.run_suite(data_root, device="cpu", rows=("ACDC test", "Sunnybrook"), max_cases=2)
    assert [r.name for r in table.rows] == ["ACDC test", "Sunnybrook"]
    acdc, sb = table.rows
    assert acdc.n_cases == 2 and all(c.split("_")[0] in ACDC_TEST_PATIENTS for c in acdc.cases)
    assert acdc.n_slices >= 10 and 0.5 <= acdc.slice_detection <= 1.0
    for name in ("A-RVI", "I-RVI", "C-LV"):
        lm = acdc.landmarks[name]
        assert 0.5 <= lm["detection_rate"] <= 1.0
        assert 0.0 < lm["median"] <= lm["mean"] * 3 and lm["mean"] < 10.0  # mm
    assert 0.0 <= acdc.rvi_angle_deg < 45.0
    assert all(0.6 <= acdc.dice[s] <= 1.0 for s in suite.STRUCTURES)
    assert acdc.n_points > 0 and 0.0 < acdc.fraction_high <= 1.0 and np.isfinite(acdc.mean_error_all)
    assert sb.n_cases == 2 and sb.landmarks["C-LV"]["detection_rate"] >= 0.5  # 17 of 18 in the full run
    # two contoured images only: v1.3.1 5 mm, v1.4.0 5.8 mm there (2.66 mm over all 18); below the gross limit
    assert sb.landmarks["C-LV"]["mean"] < 10.0 and 0.7 <= sb.dice["LV"] <= 1.0
    assert math.isnan(sb.slice_detection)  # only C-LV has a reference there
    text = suite.format_suite(table)
    assert len(text.splitlines()[0].split("  ")) >= 8 and "ACDC test" in text and "Sunnybrook" in text
    md = suite.format_suite_markdown(table)
    assert md.splitlines()[0].count("|") == len(suite.HEADERS) + 1
    data = json.loads(table.to_json())
    assert data["rows"][1]["slice_detection"] is None and data["models"]["sax_unet"]["sha256"]


def test_cli_evaluate_suite_options_and_missing_data(tmp_path, monkeypatch, capsys):
    from CardiacLandmarksLib.cli import build_parser, main

    args = build_parser().parse_args(["evaluate", "--suite", "--json"])
    assert args.suite and args.json == "-"
    assert build_parser().parse_args(["evaluate", "--suite", "--json", "s.json"]).json == "s.json"
    monkeypatch.setenv("CARDIAC_LANDMARKS_DATA", str(tmp_path / "absent"))
    assert main(["evaluate", "--suite", "--device", "cpu"]) == 1
    assert "does not exist" in capsys.readouterr().err
    # --rows: an unknown name is a named error before any model runs
    monkeypatch.setenv("CARDIAC_LANDMARKS_DATA", str(tmp_path))
    assert main(["evaluate", "--suite", "--rows", "ACDC test, no such row", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "unknown suite rows ['no such row']" in err and "perfusion GE (unseen)" in err


@pytest.mark.data
def test_cli_suite_runs_only_the_rows_asked_for(data_root, tmp_path, monkeypatch, capsys):
    from CardiacLandmarksLib.cli import main

    out = tmp_path / "suite.json"
    assert main(["evaluate", "--suite", "--rows", "perfusion GE (unseen)", "--device", "cpu", "--json", str(out)]) == 0
    assert "perfusion GE (unseen)" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert [r["name"] for r in data["rows"]] == ["perfusion GE (unseen)"] and data["rows"][0]["n_cases"] == 1
    assert "perfusion_unet" in data["models"]


def test_table_json_round_trip():
    row = suite.SuiteRow("EMIDEC LGE", ["Case_N006_DE"], ["Case_N006"], 1, 9, unit="px",
                         landmarks={"C-LV": {"n_present": 9, "detection_rate": 1 / 9, "false_positive_rate": float("nan"),
                                             "mean": 2.0, "median": 2.0}})
    table = suite.SuiteTable([row], {"sax_unet": {"version": "1.3.1", "sha256": "0" * 64}}, "/data", 12.0)
    back = suite.SuiteTable.from_dict(json.loads(table.to_json()))
    assert suite.format_suite_markdown(back) == suite.format_suite_markdown(table)
    assert math.isnan(back.rows[0].slice_detection) and back.rows[0].found == pytest.approx(1 / 9)
    assert "2.00 / 2.00 px" in suite.format_suite(back)


@pytest.mark.data
@pytest.mark.slow
def test_cli_suite_json_with_one_set_present(data_root, tmp_path, monkeypatch, capsys):
    """``evaluate --suite --json`` on a data root holding only M&Ms-2: that row measured, the others n = 0 + a note."""
    from CardiacLandmarksLib.cli import main

    (tmp_path / "mnms2").symlink_to(data_root / "mnms2", target_is_directory=True)
    monkeypatch.setenv("CARDIAC_LANDMARKS_DATA", str(tmp_path))
    assert main(["evaluate", "--suite", "--json", "--device", "cpu"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in doc["rows"]}
    assert list(rows) == list(suite.ROW_NAMES)
    lax = {r["name"]: r for r in doc["lax_rows"]}  # the long-axis model's rows: M&Ms-2 there, UK Biobank not
    assert lax["M&Ms-2 001 4CH (seen)"]["n_cases"] == 2
    assert lax["UK Biobank 4CH silver (seen)"]["n_cases"] == 0
    mn = rows["M&Ms-2 001 SAX"]
    assert mn["n_cases"] == 2 and mn["n_slices"] == 24 and mn["patients"] == ["mnms2-001"]
    assert 0 < mn["slice_detection"] <= 1 and all(0 < mn["dice"][s] <= 1 for s in suite.STRUCTURES)
    assert rows["ACDC test"]["n_cases"] == 0 and "no data found under the data root" in rows["ACDC test"]["notes"]


MSCMR_SUBJECTS = ("subject1", "subject29", "subject36", "subject41", "subject8")


@pytest.mark.data
def test_leave_one_out_row_scores_each_subject_with_the_fold_that_never_saw_it(data_root, tmp_path):
    """The MS-CMRSeg leave-one-out row (issue 16: 'unseen subjects or leave-one-out') detects each subject with the
    fold model whose card left that subject out. A fold whose card left out another subject trained on the one it
    would score: refused with a named error. A missing fold is named in the row's notes, never silently dropped."""
    import shutil

    from CardiacLandmarksLib.core.errors import ModelIntegrityError
    from CardiacLandmarksLib.models.catalogue import sha256_file

    folds = suite.mscmr_folds_root()
    for s in MSCMR_SUBJECTS:
        card = json.loads((folds / s / "sax_unet.json").read_text())
        assert card["training"]["config"]["leave_out"] == s and "mscmr" in card["training"]["config"]["sets"]
        assert card["sha256"] == sha256_file(folds / s / "sax_unet.pt")
    mscmr = data_root / "lge" / "mscmr"
    row, models = suite.mscmr_loo_row(mscmr, "cpu", max_cases=1)  # subject1 (the first in file order)
    assert row.patients == ["subject1"] and row.n_slices == 15
    assert models == {"mscmr_loo/subject1": {"version": models["mscmr_loo/subject1"]["version"],
                                             "sha256": sha256_file(folds / "subject1" / "sax_unet.pt")}}
    assert 0.6 <= row.slice_detection <= 1.0 and row.landmarks["A-RVI"]["mean"] < 10.0  # full run: 13 of 15, 5.6 mm
    shutil.copytree(folds / "subject36", tmp_path / "swapped" / "subject1")
    with pytest.raises(ModelIntegrityError, match="subject36"):
        suite.mscmr_loo_row(mscmr, "cpu", max_cases=1, folds=tmp_path / "swapped")
    (tmp_path / "none").mkdir()
    row, models = suite.mscmr_loo_row(mscmr, "cpu", max_cases=1, folds=tmp_path / "none")
    assert row.n_cases == 0 and not models and any("no fold model for subject1" in n for n in row.notes)


@pytest.mark.data
def test_the_shipped_lge_model_row_says_it_trained_on_ms_cmrseg(data_root):
    """Since sax_unet_lge v1.6.0 was fine-tuned on all five MS-CMRSeg subjects, the plain MS-CMRSeg row is seen data
    and must say so (the leave-one-out row is the estimate for unseen subjects)."""
    from CardiacLandmarksLib.models.loader import load_model

    lge = load_model("sax", "cpu", sequence="lge")
    assert lge.name == "sax_unet_lge" and "mscmr" in lge.card["training"]["config"]["sets"]
    assert not lge.card["training"]["config"].get("leave_out")
    row = suite.mscmr_row(data_root / "lge" / "mscmr", lge, max_cases=1)
    assert "TRAINED ON all five" in row.seen_by


def test_figures_near_a_target_are_not_rounded_onto_it():
    """Perfusion v1.2.0's validation myocardium Dice 0.876 and a slice detection of 94.6% must not print as
    the targets 0.88 and 95%."""
    row = suite.SuiteRow("perfusion val", ["a"], ["a"], 1, 185, dice={"RV": float("nan"), "myo": 0.876, "LV": 0.887},
                         slice_detection=0.946)
    md = suite.format_suite_markdown(suite.SuiteTable([row], {}, "", 1.0))
    line = md.splitlines()[2]
    assert "n/a / 0.876 / 0.887" in line and "94.6%" in line
    assert "0.88 " not in line and "95%" not in line


@pytest.mark.data
def test_perfusion_row_on_a_scanner_no_model_has_seen(data_root):
    """GE 1.5 T first pass with expert masks (GoldStandard.mat), never used in training or choices:
    v1.0.0 measured myocardium Dice 0.818, LV 0.920, C-LV 1.40 mm; v1.2.0 0.846, 0.952, 0.62 mm; the RV
    insertions from the SAX landmark model 2.6 / 6.4 mm (the second flagged low)."""
    row = suite.perfusion_ge_row(data_root / "perfusion" / "ge_dicom", device="cpu")
    assert row.name in suite.ROW_NAMES and (row.n_cases, row.n_slices) == (1, 1) and "never seen" in row.seen_by
    assert row.dice["myo"] > 0.78 and row.dice["LV"] > 0.88 and math.isnan(row.dice["RV"])
    assert row.landmarks["C-LV"]["mean"] < 3.0  # mm: one voxel is 1.41 mm
    assert row.landmarks["A-RVI"]["mean"] < 10.0 and row.landmarks["I-RVI"]["mean"] < 10.0
    assert row.n_points == 2 and row.slice_detection == 1.0  # the RV insertions carry the pipeline's flags
    assert any("reference-frame mask" in n for n in row.notes)


def test_perfusion_row_without_its_data_says_so(tmp_path):
    row = suite.perfusion_ge_row(tmp_path / "ge_dicom", device="cpu")
    assert row.n_cases == 0 and row.notes[0].startswith("no data") and "GoldStandard.mat" in row.notes[0]


def _case(patient: str, n: int, ok: int, errors: dict[str, list[float]]):
    from CardiacLandmarksLib.evaluation.sax import CaseResult

    r = CaseResult(patient, f"{patient}_ED")
    r.n_slices, r.slices_detected = n, ok
    r.errors = {k: list(map(float, errors.get(k, []))) for k in ("A-RVI", "I-RVI", "C-LV")}
    return r


def test_patient_interval_collapses_when_every_patient_is_alike():
    """Ten patients with the same 9 of 10 slices and the same errors: every draw gives the same figures."""
    res = [_case(f"p{n}", 10, 9, {"A-RVI": [2.0, 4.0], "I-RVI": [1.0], "C-LV": [0.5, 1.5]}) for n in range(10)]
    ci = suite.patient_bootstrap_ci(res)
    assert ci["slice_detection"] == pytest.approx([0.9, 0.9])
    assert ci["A-RVI"] == pytest.approx([3.0, 3.0]) and ci["C-LV"] == pytest.approx([1.0, 1.0])


def test_patient_interval_widens_when_the_failures_sit_in_few_patients():
    """The same pooled 90% (20 failed slices of 200), spread over all ten patients or all in two: resampling patients,
    the second is far less certain; both intervals hold 0.9, and a patient's two stacks (ED, ES) count as one."""
    spread = [_case(f"p{n}", 20, 18, {}) for n in range(10)]
    clustered = [_case(f"p{n}", 20, 20 if n >= 2 else 10, {}) for n in range(10)]
    split = [_case(f"p{n}", 10, 10 if n >= 2 else 5, {}) for n in range(10)] * 2  # ED + ES of each patient
    a, b, c = (suite.patient_bootstrap_ci(x, slices=True)["slice_detection"] for x in (spread, clustered, split))
    assert a == pytest.approx([0.9, 0.9])
    assert b[0] < 0.85 and b[1] == pytest.approx(1.0) and b[0] < 0.9 < b[1]
    assert c == pytest.approx(b)
    # a landmark without any compared point gets no interval (rather than a made-up one)
    assert "A-RVI" not in suite.patient_bootstrap_ci(spread)


def test_no_interval_from_fewer_than_five_patients_and_the_table_prints_them():
    four = [_case(f"p{n}", 10, 10 - n, {"C-LV": [1.0 + n]}) for n in range(4)]
    assert suite.patient_bootstrap_ci(four) == {}
    five = four + [_case("p4", 10, 6, {"C-LV": [5.0]})]
    ci = suite.patient_bootstrap_ci(five, landmarks=("C-LV",))
    assert ci["slice_detection"][0] < 0.8 < ci["slice_detection"][1] and ci["C-LV"][0] < 3.0 < ci["C-LV"][1]
    row = suite.SuiteRow("ACDC test", ["p"], ["p0", "p1", "p2", "p3", "p4"], 5, 50, slice_detection=0.8,
                         ci95={"slice_detection": [0.7, 0.9], "C-LV": [1.5, 4.25]})
    other = suite.SuiteRow("M&Ms-2 001 SAX", ["m"], ["m"], 1, 12)
    table = suite.SuiteTable([row, other])
    text = suite.format_suite(table)
    block = text.split(suite.CI_HEAD)[1].split("\n\n")[0]
    assert block.strip() == "ACDC test: slice det. 70.0-90.0%, C-LV 1.50-4.25 mm"  # the one-patient row has none
    assert "- ACDC test: slice det. 70.0-90.0%" in suite.format_suite_markdown(table)
    back = suite.SuiteTable.from_dict(json.loads(table.to_json()))
    assert back.rows[0].ci95 == row.ci95 and suite.format_suite(back) == text
    assert "95% intervals" not in suite.format_suite(suite.SuiteTable([other]))


def test_evaluate_table_gives_the_intervals_only_when_asked():
    """``cardiac-landmarks evaluate`` (a user's own labelled folder) prints the intervals beside the pooled figures."""
    from CardiacLandmarksLib.evaluation.sax import format_table, patient_bootstrap_ci, summarise

    res = [_case(f"p{n}", 10, 10 if n % 2 else 7, {"A-RVI": [1.0 + n], "I-RVI": [2.0], "C-LV": [1.0]}) for n in range(6)]
    summary = summarise(res)
    plain = format_table(res, summary)
    assert "interval" not in plain and "85.0% of 60" in plain
    summary["ci95"] = patient_bootstrap_ci(res)
    text = format_table(res, summary)
    lo, hi = summary["ci95"]["slice_detection"]
    assert 0.7 <= lo < 0.85 < hi <= 1.0
    assert f"85.0% of 60 (95% interval over patients {100 * lo:.1f}-{100 * hi:.1f}%)" in text
    assert "I-RVI " in text and "mean's 95% interval over patients 2.00-2.00" in text  # every patient 2.0 mm


def _ring_case(tmp_path):
    """Three 48 x 48 slices (1.5 mm pixels): slices 0 and 1 an LV cavity in a myocardial ring with the RV cavity
    against its left side (every landmark present), slice 2 empty (no landmark)."""
    import SimpleITK as sitk

    from CardiacLandmarksLib.datasets.sax import Case

    jj, ii = np.mgrid[0:48, 0:48]
    r = np.hypot(ii - 26, jj - 24)
    sl = np.zeros((48, 48), np.uint8)
    sl[r <= 6] = 3
    sl[(r > 6) & (r <= 10)] = 2
    sl[(np.hypot(ii - 13, jj - 24) <= 7) & (r > 10)] = 1
    mask = np.stack([sl, sl, np.zeros_like(sl)])
    paths = []
    for name, arr in (("img", (mask * 50 + 20).astype(np.float32)), ("img_gt", mask)):
        im = sitk.GetImageFromArray(arr)
        im.SetSpacing((1.5, 1.5, 8.0))
        paths.append(tmp_path / f"{name}.nii.gz")
        sitk.WriteImage(im, str(paths[-1]))
    return Case("p0", paths[0], paths[1])


def test_points_found_where_the_reference_has_none_are_counted_with_their_flags(tmp_path):
    """A reader who checks only the low points keeps a high one: the suite says how many of the extra points
    (a landmark on a slice the reference has none on) are flagged low; built case, answers known by construction."""
    from CardiacLandmarksLib.datasets.sax import case_landmarks_ijk
    from CardiacLandmarksLib.evaluation.sax import evaluate_case, summarise

    case = _ring_case(tmp_path)
    SAX = LANDMARKS_BY_VIEW["sax"]

    def detect(series, extra_flags=("low", "low", "high")):
        ref = case_landmarks_ijk(case, series=series)
        assert all(ref[k][n] is not None for k in (0, 1) for n in SAX) and all(v is None for v in ref[2].values())
        out = LandmarkSet(source="built", view="sax", model={})
        for k in range(3):
            for n, name in enumerate(SAX):
                ij = ref[k][name] if k < 2 else np.array([26.0, 24.0])
                if ij is None or (k == 2 and extra_flags[n] is None):
                    out.landmarks.append(Landmark(name, k, 0, False, np.full(3, np.nan), np.full(3, np.nan), 0.0, "absent"))
                    continue
                ijk = np.array([ij[0], ij[1], k], float)
                out.landmarks.append(Landmark(name, k, 0, True, series.ijk_to_lps(ijk), ijk, 0.9,
                                              "high" if k < 2 else extra_flags[n]))
        return out

    res = evaluate_case(case, detect)
    assert (res.n_slices, res.slices_detected) == (3, 2)
    assert res.extra_flags == {"A-RVI": ["low"], "I-RVI": ["low"], "C-LV": ["high"]}
    assert res.flags["C-LV"] == ["high", "high"] and res.errors["C-LV"] == pytest.approx([0.0, 0.0], abs=1e-6)
    s = summarise([res])
    assert (s["C-LV"]["n_extra"], s["C-LV"]["extra_flagged_low"]) == (1, 0.0)
    assert (s["A-RVI"]["n_extra"], s["A-RVI"]["extra_flagged_low"]) == (1, 1.0)
    row = suite.sax_row("ACDC test", [suite._CaseRun(case, res, {st: float("nan") for st in suite.STRUCTURES})])
    assert (row.n_absent, row.n_extra) == (3, 3) and row.extra_flagged_low == pytest.approx(2 / 3)
    cells = dict(zip(suite.HEADERS, suite._cells(row)))
    assert cells["extra flagged low"] == "67% of 3" and cells["gross flagged low"] == "no gross error"
    back = suite.SuiteRow.from_dict(json.loads(json.dumps(row.to_dict())))
    assert (back.n_absent, back.n_extra, back.extra_flagged_low) == (3, 3, pytest.approx(2 / 3))
    # the same case with nothing reported on the empty slice: absences were measurable, none was broken
    clean = evaluate_case(case, lambda s: detect(s, (None, None, None)))
    row = suite.sax_row("ACDC test", [suite._CaseRun(case, clean, {st: float("nan") for st in suite.STRUCTURES})])
    assert clean.slices_detected == 3 and row.n_extra == 0 and math.isnan(row.extra_flagged_low)
    assert dict(zip(suite.HEADERS, suite._cells(row)))["extra flagged low"] == "no extra point"
    assert summarise([clean])["C-LV"]["n_extra"] == 0 and math.isnan(summarise([clean])["C-LV"]["extra_flagged_low"])
    # a row whose reference never says "absent" (Sunnybrook: contoured images only) cannot measure it
    assert dict(zip(suite.HEADERS, suite._cells(suite.SuiteRow("Sunnybrook"))))["extra flagged low"] == "n/a"


@pytest.mark.data
def test_suite_loads_the_perfusion_model_once_for_its_rows(data_root, monkeypatch):
    from CardiacLandmarksLib.perfusion import segmentation

    loads = []
    real = segmentation.load_model

    def counting(*args, **kwargs):
        loads.append(kwargs.get("device"))
        return real(*args, **kwargs)

    monkeypatch.setattr(segmentation, "load_model", counting)
    table = suite.run_suite(data_root, device="cpu", rows=("perfusion val", "perfusion train (seen)"), max_cases=1)
    assert [r.name for r in table.rows] == ["perfusion val", "perfusion train (seen)"]
    assert all(r.n_cases == 1 for r in table.rows)
    assert table.models["perfusion_unet"]["sha256"] == real(device="cpu").sha256
    assert len(loads) == 1  # one model for every perfusion row and the table's model list


@pytest.mark.data
@pytest.mark.slow
def test_the_long_axis_model_is_on_the_suite(data_root):
    """Every bundled model is to be judged on `evaluate --suite`, but the long-axis model had no row: the suite ran
    the SAX, LGE and perfusion models only. Its rows are now a table of their own (landmarks AL-P, IS-P, APEX, through
    the shipped long-axis pipeline, against landmarks derived from the masks), marked as seen data: every labelled
    long-axis frame of the shared data trained it."""
    table = suite.run_suite(data_root, device="cpu", rows=suite.LAX_ROW_NAMES)
    assert table.rows == [] and [r.name for r in table.lax_rows] == list(suite.LAX_ROW_NAMES)
    assert "lax4ch_unet" in table.models
    mnms, ukbb = table.lax_rows
    assert (mnms.n_cases, mnms.n_slices, mnms.patients) == (2, 2, ["mnms2-001"])  # ED and ES, one frame each
    assert ukbb.n_cases == 2 and ukbb.n_slices >= 90 and ukbb.patients == ["ukbb-1", "ukbb-2"]  # 2 x 50 frames
    for row in table.lax_rows:
        assert "trained lax4ch_unet" in row.seen_by and row.n_points > 0
        for name in suite.LAX_NAMES:
            lm = row.landmarks[name]
            assert lm["n_present"] == row.n_slices and 0.9 <= lm["detection_rate"] <= 1.0
            assert 0.0 < lm["median"] and lm["mean"] < 10.0  # mm: seen frames, well within the gross limit
    text = suite.format_suite(table)
    assert "Long-axis model (lax4ch_unet" in text and "M&Ms-2 001 4CH (seen)" in text
    assert "data set  n cases" not in text  # no empty SAX table when only long-axis rows were asked for
    md = suite.format_suite_markdown(table)
    header = next(x for x in md.splitlines() if x.startswith("| long-axis data set"))
    assert header.count("|") == len(suite.LAX_HEADERS) + 1 and "| M&Ms-2 001 4CH (seen) | 2 (2) |" in md
    back = suite.SuiteTable.from_dict(json.loads(table.to_json()))
    assert suite.format_suite_markdown(back) == md
