"""End-to-end SAX detection with the bundled model on real data, model integrity, cancel/progress, CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from matplotlib.path import Path as Polygon

from CardiacLandmarksLib.core.config import models_root
from CardiacLandmarksLib.core.errors import ModelIntegrityError, WrongViewError
from CardiacLandmarksLib.core.landmarks import Landmark, LandmarkSet


@pytest.fixture(scope="module")
def sunnybrook_series(sunnybrook_dicom):
    from CardiacLandmarksLib.io.load import load_series

    return load_series(sunnybrook_dicom)


@pytest.fixture(scope="module")
def sunnybrook_result(sunnybrook_series):
    from CardiacLandmarksLib.sax.pipeline import detect_landmarks

    calls = []
    res = detect_landmarks(sunnybrook_series, device="cpu", progress=lambda d, t: calls.append((d, t)))
    return res, calls


def test_model_checksum_mismatch_is_named(tmp_path):
    from CardiacLandmarksLib.models.loader import load_model

    for ext in (".pt", ".json"):
        shutil.copy(models_root() / f"sax_unet{ext}", tmp_path / f"sax_unet{ext}")
    with open(tmp_path / "sax_unet.pt", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelIntegrityError, match="SHA256"):
        load_model("sax", "cpu", models_dir=tmp_path)
    (tmp_path / "sax_unet.json").unlink()
    with pytest.raises(ModelIntegrityError, match="model card"):
        load_model("sax", "cpu", models_dir=tmp_path)


def test_sunnybrook_cine_every_slice_and_phase(sunnybrook_series, sunnybrook_result):
    res, calls = sunnybrook_result
    s = sunnybrook_series
    assert len(res.landmarks) == 3 * s.n_slices * s.n_phases
    assert calls[-1] == (s.n_slices * s.n_phases, s.n_slices * s.n_phases)
    assert all(b[0] >= a[0] for a, b in zip(calls, calls[1:]))
    # geometry-based naming: A-RVI is the one nearer the head (larger LPS z) of the pair; the insertions come as a pair
    # (sax.presence) and only with C-LV
    pairs = 0
    for k, t in res.slices_phases():
        a, i = res.get("A-RVI", k, t), res.get("I-RVI", k, t)
        assert a.found == i.found, (k, t)
        assert not a.found or res.get("C-LV", k, t).found, (k, t)
        pairs += a.found
        if a.found and i.found:
            assert a.position[2] >= i.position[2] - 1e-9
    assert pairs > 0.3 * s.n_slices * s.n_phases
    # positions and ijk agree through the series geometry
    found = [lm for lm in res.landmarks if lm.found]
    assert len(found) > 0.5 * len(res.landmarks)
    for lm in found[:50]:
        np.testing.assert_allclose(s.ijk_to_lps(lm.ijk), lm.position, atol=1e-6)
    assert any(m.name == "RVI angle" for m in res.measurements)


def test_sunnybrook_c_lv_inside_expert_endocardial_contour(sunnybrook_dicom, sunnybrook_series, sunnybrook_result):
    """C-LV must fall inside the expert LV endocardial contour (independent manual label) on contoured images."""
    res, _ = sunnybrook_result
    s = sunnybrook_series
    inst = np.asarray(s.metadata["instance_numbers"])  # [t][k]
    contours = sorted((sunnybrook_dicom.parent / "contours" / "i-contours").glob("*-icontour-manual.txt"))
    assert contours
    inside = total = 0
    for f in contours:
        number = int(f.name.split("-")[2])
        t, k = map(int, np.argwhere(inst == number)[0])
        xy = np.loadtxt(f)  # x = column, y = row (pixels)
        lm = res.get("C-LV", k, t)
        total += 1
        if lm.found and Polygon(xy).contains_point(lm.ijk[:2]):
            inside += 1
    assert inside / total >= 0.85, f"C-LV inside the expert contour on {inside}/{total} images"


def test_acdc_validation_patient_accuracy(acdc_dir):
    from CardiacLandmarksLib.datasets.sax import acdc_cases
    from CardiacLandmarksLib.evaluation.sax import evaluate_case, summarise
    from CardiacLandmarksLib.models.loader import load_model, read_card
    from CardiacLandmarksLib.sax.pipeline import detect_landmarks

    val = read_card("sax_unet")["training"]["val_patients"]
    val = [p for p in val if p.startswith("patient")]  # ACDC ones (v1.4 also chose on EMIDEC cases)
    cases = [c for c in acdc_cases(acdc_dir) if c.patient in val[:3]]
    assert len(cases) == 6
    model = load_model("sax", "cpu")
    summary = summarise([evaluate_case(c, lambda s: detect_landmarks(s, model=model)) for c in cases])
    assert summary["C-LV"]["detection_rate"] >= 0.9
    assert summary["C-LV"]["mean_error_mm"] < 4.0
    for name in ("A-RVI", "I-RVI"):
        assert summary[name]["detection_rate"] >= 0.8
        assert summary[name]["mean_error_mm"] < 7.0


def test_wrong_view_and_cancel(sunnybrook_series):
    from dataclasses import replace

    from CardiacLandmarksLib.sax.pipeline import Cancelled, detect_landmarks

    with pytest.raises(WrongViewError, match="4CH"):
        detect_landmarks(replace(sunnybrook_series, view="4ch"), device="cpu")
    with pytest.raises(Cancelled):
        detect_landmarks(sunnybrook_series, device="cpu", cancel=lambda: True)


def test_geometry_naming_swaps_an_a_rvi_below_its_i_rvi():
    from CardiacLandmarksLib.core.series import CMRSeries
    from CardiacLandmarksLib.sax.pipeline import name_rvi_by_geometry

    # a coronal-oblique plane (i = left, j = feet): "A-RVI" 10 mm more anterior but 20 mm nearer the feet than
    # "I-RVI" -> swapped, since A-RVI is the insertion nearer the head (the anterior rule kept them before)
    d = np.column_stack([[1.0, 0.0, 0.0], [0.0, -0.447214, -0.894427], [0.0, 0.894427, -0.447214]])
    s = CMRSeries(np.zeros((1, 1, 4, 4), np.float32), (1, 1, 1), d, np.zeros((1, 3)))
    a = Landmark("A-RVI", 0, 0, True, np.array([0.0, -5.0, -10.0]), np.array([0.0, 11.18, 0.0]), 0.9, "high")
    i = Landmark("I-RVI", 0, 0, True, np.array([0.0, 5.0, 10.0]), np.array([0.0, -11.18, 0.0]), 0.4, "low",
                 doubt="PHD-Net does not confirm the point")
    ls = LandmarkSet("x", "sax", {}, [a, i])
    assert name_rvi_by_geometry(ls, s) == 1
    assert ls.get("A-RVI", 0).position[2] == 10.0 and ls.get("A-RVI", 0).confidence == 0.4
    assert ls.get("A-RVI", 0).doubt == "PHD-Net does not confirm the point" and ls.get("I-RVI", 0).doubt == ""
    s.orientation_known = False
    assert name_rvi_by_geometry(ls, s) == 0


def test_stack_gate_lowers_an_rv_insertion_that_jumps_from_its_neighbours():
    from CardiacLandmarksLib.core.series import CMRSeries
    from CardiacLandmarksLib.sax.pipeline import stack_gate

    # 4 slices 10 mm apart along z; A-RVI drifts 2 mm per slice in plane except slice 2, 15 mm off; I-RVI steady;
    # C-LV jumps too but is not judged; one phase
    s = CMRSeries(np.zeros((1, 4, 8, 8), np.float32), (1, 1, 10), np.eye(3), np.array([[0, 0, 10.0 * k] for k in range(4)]))
    ax = [0.0, 2.0, 19.0, 6.0]

    def lm(name, k, x, flag="high", conf=0.8):
        return Landmark(name, k, 0, True, np.array([x, 0.0, 10.0 * k]), np.array([x, 0.0, k]), conf, flag)

    pts = [lm("A-RVI", k, x) for k, x in enumerate(ax)] + [lm("I-RVI", k, -30.0 + k) for k in range(4)]
    pts += [lm("C-LV", k, 40.0 + (20.0 if k == 1 else 0.0)) for k in range(4)]
    pts[3] = lm("A-RVI", 3, 6.0, "low", 0.3)  # already low: keeps its own reason and confidence
    pts[3].doubt = "PHD-Net does not confirm the point"
    ls = LandmarkSet("x", "sax", {}, pts)
    assert stack_gate(ls, s, 6.0) == 1
    gated = ls.get("A-RVI", 2, 0)
    # nearest neighbour in plane: slice 3 at 13 mm (slice 1 at 17 mm): lowered, confidence 0.5 * 6 / 13, says why
    assert gated.flag == "low" and gated.confidence == pytest.approx(0.5 * 6.0 / 13.0)
    assert "13.0 mm" in gated.doubt and "neighbouring slices" in gated.doubt
    # its neighbours are 2 mm from the other side and stay high; the C-LV jump is not judged by default
    assert [ls.get("A-RVI", k, 0).flag for k in (0, 1)] == ["high", "high"]
    assert ls.get("A-RVI", 3, 0).doubt == "PHD-Net does not confirm the point"
    assert all(ls.get(n, k, 0).flag == "high" for n in ("I-RVI", "C-LV") for k in range(4))
    assert stack_gate(ls, s, 6.0, ("C-LV",)) == 2  # judged when asked: slice 1 is 20 mm from both neighbours...
    # ...and so are slices 0 and 2 from slice 1, but each has another neighbour in place, except slice 0
    assert [ls.get("C-LV", k, 0).flag for k in range(4)] == ["low", "low", "high", "high"]
    one = CMRSeries(np.zeros((1, 1, 8, 8), np.float32), (1, 1, 10), np.eye(3), np.zeros((1, 3)))
    assert stack_gate(LandmarkSet("x", "sax", {}, [lm("A-RVI", 0, 0.0)]), one, 6.0) == 0


def test_a_doubt_just_past_its_limit_does_not_read_as_within_it():
    """Seen on the GPU check of issue 16: an A-RVI 6.03 mm from its neighbours was flagged low with the doubt
    "6.0 mm ... (limit 6 mm)", which a reader takes for within the limit."""
    from CardiacLandmarksLib.core.landmarks import past_limit
    from CardiacLandmarksLib.core.series import CMRSeries
    from CardiacLandmarksLib.sax.pipeline import low_flag_reasons, stack_gate

    assert [past_limit(v, 6.0) for v in (6.03, 6.004, 13.0, 6.06, 5.96)] == ["6.03", "6.004", "13.0", "6.1", "6.0"]
    # 5 slices 10 mm apart; the middle A-RVI lies 6.03 mm in plane from both neighbours, the others in line
    s = CMRSeries(np.zeros((1, 5, 8, 8), np.float32), (1, 1, 10), np.eye(3), np.array([[0, 0, 10.0 * k] for k in range(5)]))
    pts = [Landmark("A-RVI", k, 0, True, np.array([6.03 if k == 2 else 0.0, 0.0, 10.0 * k]), np.zeros(3), 0.8, "high")
           for k in range(5)]
    ls = LandmarkSet("x", "sax", {}, pts)
    assert stack_gate(ls, s, 6.0) == 1
    assert ls.get("A-RVI", 2, 0).doubt == ("it lies 6.03 mm in plane from the same point on the neighbouring slices "
                                           "(limit 6 mm)")
    reasons = low_flag_reasons(np.array([["low", "low", "high"]]), np.array([[3.04, np.nan, 1.0]]),
                               np.array([[True, True, False]]), 3.0, True)
    assert reasons == [["the network's own estimates disagree (3.04 mm; limit 3 mm)",
                        "the network's own estimates disagree (no segmentation point; limit 3 mm)", ""]]


def test_stray_c_lv_far_from_its_neighbours_and_the_stack_is_called_absent():
    from CardiacLandmarksLib.core.series import CMRSeries
    from CardiacLandmarksLib.sax.pipeline import drop_stray_clv

    # 5 slices 8 mm apart along an oblique normal; C-LV drifts 2 mm per slice except slice 1 (60 mm off in plane)
    # and slice 4 (30 mm off: under the limit); 2 phases, the second without strays
    d = np.linalg.qr(np.array([[1.0, 0.2, 0.1], [0.1, 1.0, 0.3], [0.2, 0.1, 1.0]]))[0]
    normal, u = d[:, 2], d[:, 0]
    origins = np.array([8.0 * k * normal for k in range(5)])
    s = CMRSeries(np.zeros((2, 5, 8, 8), np.float32), (1, 1, 8), d, origins)
    offs = {0: [0.0, 60.0, 4.0, 6.0, 36.0], 1: [0.0, 2.0, 4.0, 6.0, 8.0]}

    def clv(k, t):
        p = origins[k] + offs[t][k] * u
        return Landmark("C-LV", k, t, True, p, np.zeros(3), 0.9, "high")

    def rvi(name, k, t, side):
        p = origins[k] + offs[t][k] * u + side * 20.0 * d[:, 1]
        return Landmark(name, k, t, True, p, np.zeros(3), 0.8, "high")

    # RV insertions on the stray slice (they hang on the stray C-LV) and on slice 2 (a good C-LV)
    pairs = [rvi(n, k, 0, side) for k in (1, 2) for n, side in (("A-RVI", 1.0), ("I-RVI", -1.0))]
    ls = LandmarkSet("x", "sax", {}, [clv(k, t) for t in (0, 1) for k in range(5)] + pairs)
    assert drop_stray_clv(ls, s, 35.0) == 1
    gone = ls.get("C-LV", 1, 0)
    assert not gone.found and gone.flag == "absent" and gone.confidence == 0.0 and np.isnan(gone.position).all()
    # no RV insertion without C-LV (sax.presence): the stray slice's pair goes with it, slice 2 keeps its own
    for name in ("A-RVI", "I-RVI"):
        q = ls.get(name, 1, 0)
        assert not q.found and q.flag == "absent" and q.confidence == 0.0 and np.isnan(q.position).all()
        assert ls.get(name, 2, 0).found and ls.get(name, 2, 0).flag == "high"
    # slice 0's only neighbour is the stray one (60 mm away), but it sits on the stack's median: kept; slice 4 moved
    # 30 mm, under the limit: kept; the second phase is untouched
    assert [ls.get("C-LV", k, 0).found for k in range(5)] == [True, False, True, True, True]
    assert all(ls.get("C-LV", k, 1).found for k in range(5))
    assert drop_stray_clv(ls, s, 25.0) == 1 and not ls.get("C-LV", 4, 0).found  # a lower limit drops slice 4 too


def test_cli_detect_acdc_writes_every_output(acdc_dir, tmp_path):
    from CardiacLandmarksLib.cli import main

    out = tmp_path / "out"
    assert main(["detect", str(acdc_dir / "patient001_ED.nii.gz"), "-o", str(out), "--device", "cpu", "--no-progress"]) == 0
    doc = json.loads((out / "landmarks.json").read_text())
    assert doc["coordinate_system"] == "LPS" and doc["units"] == "mm" and doc["view"] == "sax"
    assert set(doc["model"]) >= {"name", "version", "sha256"}
    assert len(doc["landmarks"]) == 3 * 10
    keys = {"name", "slice", "phase", "found", "position", "ijk", "confidence", "flag"}
    assert all(keys <= set(lm) for lm in doc["landmarks"])
    assert {lm["flag"] for lm in doc["landmarks"]} <= {"high", "low", "absent"}
    # every low point says why (the confidence gate's disagreement in mm, or PHD-Net not confirming it); no other
    low = [lm for lm in doc["landmarks"] if lm["flag"] == "low"]
    assert low and all(lm["doubt"] for lm in low)
    assert not any(lm["doubt"] for lm in doc["landmarks"] if lm["flag"] != "low")
    assert any("disagree" in lm["doubt"] and "mm" in lm["doubt"] for lm in low)
    # the stack gate as shipped: no RV insertion left high lies > the card's limit in plane from its neighbours
    from CardiacLandmarksLib.confidence.phdnet import PhdNetConfidence
    from CardiacLandmarksLib.core.geometry import stack_jump_mm
    from CardiacLandmarksLib.io.load import load_series

    limit = PhdNetConfidence.load("cpu").max_stack_jump_mm
    normal = load_series(acdc_dir / "patient001_ED.nii.gz").direction[:, 2]
    for name in ("A-RVI", "I-RVI"):
        pts = sorted((lm for lm in doc["landmarks"] if lm["name"] == name), key=lambda lm: lm["slice"])
        pos = np.array([lm["position"] if lm["found"] else [np.nan] * 3 for lm in pts], float)
        jumps = stack_jump_mm(pos, np.array([lm["found"] for lm in pts]), normal)
        assert all(not (j > limit) for lm, j in zip(pts, jumps) if lm["flag"] == "high")
    mrk = json.loads(next(out.glob("*.mrk.json")).read_text())
    descriptions = [cp["description"] for cp in mrk["markups"][0]["controlPoints"]]
    assert any("why low: " in d for d in descriptions)
    assert list(out.glob("*.mrk.json")) and list(out.glob("*_overlay.png"))
    assert (out / "measurements.csv").read_text().startswith("name,slice,phase,value,unit")
    assert doc["model"]["name"] == "sax_unet"  # a NIfTI named after nothing: the general SAX model
    # --sequence lge: the same file with the LGE model, named in the result and the run record
    lge = tmp_path / "lge"
    assert main(["detect", str(acdc_dir / "patient001_ED.nii.gz"), "-o", str(lge), "--device", "cpu", "--no-progress",
                 "--no-tta", "--sequence", "lge"]) == 0
    assert json.loads((lge / "landmarks.json").read_text())["model"]["name"] == "sax_unet_lge"
    assert json.loads((lge / "run.json").read_text())["models"][0]["name"] == "sax_unet_lge"


def test_cli_reports_missing_input(tmp_path, capsys):
    from CardiacLandmarksLib.cli import main

    assert main(["detect", str(tmp_path / "nope.nii.gz"), "-o", str(tmp_path / "o")]) == 1
    assert "nope.nii.gz" in capsys.readouterr().err
