"""``cardiac-landmarks perfusion`` end to end on real data (mlperf validation patient, GE DICOM)."""

from __future__ import annotations

import contextlib
import csv
import io
import json

import numpy as np
import pytest
import SimpleITK as sitk

from CardiacLandmarksLib import cli
from CardiacLandmarksLib.io.load import load_series
from CardiacLandmarksLib.io.markups import read_markups

PATIENT = "1434856"  # a validation patient of the bundled perfusion model (never trained on)
SERIES = [f"{PATIENT}_{c}_{lev}" for c in ("stress", "rest") for lev in ("base", "mid")]


pytestmark = pytest.mark.usefixtures("quiet_image_log")


#: what the module's run printed (the fixture is module-wide, capsys is not)
PRINTED: dict[str, str] = {}


@pytest.fixture(scope="module")
def mlperf_run(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("perf_cli")
    root = data_root / "perfusion" / "mlperf"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        rc = cli.main(["perfusion", *[str(root / f"{s}.nii.gz") for s in SERIES], "-o", str(out), "--no-sax-model"])
    PRINTED["stdout"] = printed.getvalue()
    assert rc == 0
    return out, root


def test_prints_the_global_values_as_study_does(mlperf_run):
    """The global lines name the value in a reader's words with its status first and, when not ok, what to check
    (as ``study`` prints its key values); they read 'global stress upslope_index: ... [review]', the reason only
    in report.csv."""
    out, _ = mlperf_run
    rep = json.loads((out / "report.json").read_text())
    lines = PRINTED["stdout"].splitlines()
    for c in ("stress", "rest"):
        g = rep["global"][c]["upslope_index"]
        line = next(x for x in lines if f"] global {c} upslope index: " in x)
        assert line.startswith(f"[{g['status']:>6}] global {c} upslope index: {g['mean']:.3f} ± {g['sd']:.3f} ratio "
                               f"({g['n_pixels']} pixels)"), line
        assert line.endswith(f"  ({g['check']})") if g["status"] != "ok" else line.endswith("pixels)"), line
    trust = rep["global"]["reserve_trust"]["mpri"]
    line = next(x for x in lines if "] global reserve MPRI (stress/rest): " in x)
    assert line.startswith(f"[{trust['status']:>6}] global reserve MPRI (stress/rest): "
                           f"{rep['global']['reserve']['mpri']:.3f}"), line
    assert "upslope_index" not in PRINTED["stdout"]  # nor in '24 segment value(s) of upslope_index are not ok'


def test_writes_every_file(mlperf_run):
    out, _ = mlperf_run
    for name in ("report.json", "report.csv", "bullseye.png"):
        assert (out / name).stat().st_size > 0
    for s in SERIES:
        for suffix in ("_segmentation.nii.gz", "_aha_segments.nii.gz", "_sectors.png", "_rvi.mrk.json"):
            assert (out / f"{s}{suffix}").stat().st_size > 0, s + suffix
    assert (out / "bullseye.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_json_has_16_segments_global_units_and_inputs(mlperf_run):
    out, _ = mlperf_run
    rep = json.loads((out / "report.json").read_text())
    assert rep["conditions"] == ["stress", "rest"]
    assert [s["segment"] for s in rep["segments"]] == list(range(1, 17))
    assert rep["units"]["upslope_index"] == "ratio"
    assert rep["units"]["time_to_peak"] == "beat"  # mlperf NIfTI has no timing
    by_seg = {s["segment"]: s for s in rep["segments"]}
    # base + mid given: segments 1-12 measured under both conditions, apical ones not
    for seg in range(1, 13):
        for c in ("stress", "rest"):
            st = by_seg[seg][c]["upslope_index"]
            assert st["n_pixels"] > 3 and st["unit"] == "ratio" and np.isfinite(st["mean"])
        assert by_seg[seg]["reserve"]["mpri"] > 0
    for seg in range(13, 17):
        assert by_seg[seg]["stress"] == {} and by_seg[seg]["rest"] == {}
    g = rep["global"]
    assert set(g) == {"stress", "rest", "reserve", "reserve_trust", "status", "check"}
    assert g["status"] in ("ok", "review", "n/a") and set(g["reserve_trust"]) == set(g["reserve"])
    # SI-based indices (no saturation correction): in these stress series the myocardial upslope comes
    # close to the saturated LV blood-pool upslope (also with the expert masks), so only loose bounds
    assert 0.05 < g["rest"]["upslope_index"]["mean"] < g["stress"]["upslope_index"]["mean"] < 2.0
    # stress/rest index of a patient with a working vasodilator response is above 1
    assert g["reserve"]["mpri"] > 1.0
    levels = {i["series"]: i["level"] for i in rep["inputs"]}
    assert levels == {s: s.split("_")[-1] for s in SERIES}
    for i in rep["inputs"]:
        assert i["segmentation_model"]["sha256"]
        assert i["rvi_source"]


def test_report_csv_matches_json(mlperf_run):
    out, _ = mlperf_run
    rep = json.loads((out / "report.json").read_text())
    rows = list(csv.DictReader((out / "report.csv").open()))
    row = next(r for r in rows if r["segment"] == "7" and r["condition"] == "rest" and r["metric"] == "upslope_index")
    assert float(row["mean"]) == pytest.approx(rep["segments"][6]["rest"]["upslope_index"]["mean"], rel=1e-5)
    assert any(r["segment"] == "global" and r["metric"] == "mpri" for r in rows)


def test_label_maps_in_the_input_geometry(mlperf_run):
    out, root = mlperf_run
    for s in SERIES:
        ref = sitk.ReadImage(str(root / f"{s}.nii.gz"))
        for suffix, allowed in (("_segmentation.nii.gz", {0, 1, 2}),
                                ("_aha_segments.nii.gz", set(range(0, 7)) if "base" in s else {0, *range(7, 13)})):
            img = sitk.ReadImage(str(out / f"{s}{suffix}"))
            assert img.GetSize() == ref.GetSize()
            np.testing.assert_allclose(img.GetSpacing(), ref.GetSpacing(), rtol=1e-5)
            np.testing.assert_allclose(img.GetOrigin(), ref.GetOrigin(), atol=1e-3)
            np.testing.assert_allclose(img.GetDirection(), ref.GetDirection(), atol=1e-6)
            vals = set(np.unique(sitk.GetArrayFromImage(img)).tolist())
            assert vals <= allowed and len(vals) > 1, (s, suffix, vals)
        # read back through the library: same [t, 1, j, i] layout as the image
        lab = load_series(out / f"{s}_segmentation.nii.gz")
        assert lab.pixels.shape == load_series(root / f"{s}.nii.gz").pixels.shape


def test_segmentation_matches_expert_on_labelled_frames(mlperf_run):
    out, root = mlperf_run
    dices = []
    for s in SERIES:
        seg = np.rint(load_series(out / f"{s}_segmentation.nii.gz").pixels[:, 0]).astype(int)
        gt = np.rint(load_series(root / f"{s}_gt.nii.gz").pixels[:, 0]).astype(int)
        for t in np.nonzero(gt.reshape(len(gt), -1).max(1))[0]:
            a, b = seg[t] == 1, gt[t] == 1
            dices.append(2 * (a & b).sum() / (a.sum() + b.sum()))
    # motion-tracked reference mask (not the raw per-frame output) vs the expert mask per frame
    assert np.mean(dices) > 0.7


def test_rvi_markups_round_trip_and_rerun_with_user_rvi(mlperf_run, tmp_path):
    out, root = mlperf_run
    s = SERIES[1]
    series = load_series(root / f"{s}.nii.gz")
    lm = read_markups(out / f"{s}_rvi.mrk.json", series)
    names = {x.name for x in lm.landmarks if x.found}
    assert {"A-RVI", "I-RVI", "C-LV"} <= names
    # move A-RVI by 30 deg about C-LV (user correction) and re-run on that one series
    import json as _json

    d = _json.loads((out / f"{s}_rvi.mrk.json").read_text())
    cps = d["markups"][0]["controlPoints"]
    a = next(p for p in cps if p["label"].startswith("A-RVI"))
    c = next(p for p in cps if p["label"].startswith("C-LV"))
    pa, pc = np.array(a["position"]), np.array(c["position"])
    ijk_a, ijk_c = series.lps_to_ijk(pa), series.lps_to_ijk(pc)
    v = ijk_a[:2] - ijk_c[:2]
    rot = np.array([[np.cos(0.5236), -np.sin(0.5236)], [np.sin(0.5236), np.cos(0.5236)]])
    moved = series.ijk_to_lps(np.array([*(ijk_c[:2] + rot @ v), 0.0]))
    a["position"] = [float(x) for x in moved]
    edited = tmp_path / f"{s}_rvi.mrk.json"
    edited.write_text(_json.dumps(d))
    out2 = tmp_path / "rerun"
    assert cli.main(["perfusion", str(root / f"{s}.nii.gz"), "-o", str(out2), "--rvi", str(edited)]) == 0
    rep = json.loads((out2 / "report.json").read_text())
    assert rep["inputs"][0]["rvi_source"] == "user"
    np.testing.assert_allclose(rep["inputs"][0]["A-RVI_ij"], ijk_c[:2] + rot @ v, atol=0.05)


def test_ge_dicom_end_to_end(data_root, tmp_path):
    folder = data_root / "perfusion" / "ge_dicom"
    rc = cli.main(["perfusion", str(folder), "-o", str(tmp_path), "--condition", "stress", "--no-sax-model"])
    assert rc == 0
    rep = json.loads((tmp_path / "report.json").read_text())
    inp = rep["inputs"][0]
    assert inp["time_unit"] == "s" and inp["orientation_known"] is True
    assert inp["level"] == "mid"  # no level in the name, one slice
    stem = inp["series"]
    img = sitk.ReadImage(str(tmp_path / f"{stem}_segmentation.nii.gz"))
    assert img.GetDimension() == 4 and img.GetSize() == (256, 256, 1, 79)
    np.testing.assert_allclose(img.GetSpacing()[:2], (1.40622413, 1.406246185), rtol=1e-6)
    for f in ("bullseye.png", "report.csv", f"{stem}_sectors.png", f"{stem}_rvi.mrk.json", f"{stem}_aha_segments.nii.gz"):
        assert (tmp_path / f).stat().st_size > 0
    # the reference-frame myocardium overlaps the expert mask (GoldStandard.mat)
    from scipy.io import loadmat

    gold = loadmat(folder / "GoldStandard.mat")["MyoMask"] > 0
    lab = sitk.GetArrayFromImage(img)[:, 0]  # [t, j, i]
    ref = lab[inp["reference_frame"]] == 1
    dice = 2 * (ref & gold).sum() / (ref.sum() + gold.sum())
    assert dice > 0.6


def test_a_multi_slice_perfusion_series_is_analysed_slice_by_slice(data_root, tmp_path, capsys):
    """Base, mid and apex in one DICOM series (as many scanners store a first-pass acquisition): `perfusion` said
    'a perfusion input must be one slice over time; got 3 slices (give each slice as its own input)', which a
    user with one series folder cannot do. Each slice is now an input of its own, its level from its position.
    One slice stopped two frames early: refused by name (the reason said once, not per slice) unless
    --allow-incomplete, then analysed on the 77 frames all slices have and the global value review."""
    import study_material as sm

    whole = sm.multi_slice_perfusion(data_root, tmp_path / "whole")
    rc = cli.main(["perfusion", str(whole), "-o", str(tmp_path / "w"), "--condition", "stress", "--no-sax-model",
                   "--no-tta"])
    assert rc == 0
    rep = json.loads((tmp_path / "w" / "report.json").read_text(encoding="utf-8"))
    names = [i["series"] for i in rep["inputs"]]
    assert [n.rsplit("_", 1)[1] for n in names] == ["slice0", "slice1", "slice2"]
    assert sorted(i["level"] for i in rep["inputs"]) == ["apex", "base", "mid"]
    assert "3 slices, analysed as" in capsys.readouterr().err
    from CardiacLandmarksLib.perfusion.report import study_label

    assert study_label(names) == "whole_First_Pass_New"  # the bull's-eye's title ("..._slice" before)
    seg = {n: sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "w" / f"{n}_segmentation.nii.gz")))[:, 0]
           for n in names}  # [t, j, i]; slice 1 is slice 0 mirrored: so is its myocardium
    ref = rep["inputs"][0]["reference_frame"]
    a, b = seg[names[0]][ref] == 1, seg[names[1]][ref][:, ::-1] == 1
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.8
    assert rep["global"]["stress"]["upslope_index"]["status"] == "ok"

    short = sm.multi_slice_perfusion(data_root, tmp_path / "short", short_slice=1, short_by=2)
    rc = cli.main(["perfusion", str(short), "-o", str(tmp_path / "s"), "--no-sax-model", "--no-tta"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "IncompleteSeriesError" in last and last.count("incomplete series") == 1, last
    assert "_slice0, " in last and "_slice2: IncompleteSeriesError" in last
    rc = cli.main(["perfusion", str(short), "-o", str(tmp_path / "s2"), "--no-sax-model", "--no-tta",
                   "--allow-incomplete"])
    assert rc == 0
    rep = json.loads((tmp_path / "s2" / "report.json").read_text(encoding="utf-8"))
    assert {i["frames"] for i in rep["inputs"]} == {77}
    glob = rep["global"]["perfusion"]["upslope_index"]
    assert glob["status"] == "review"
    notes = [x["note"] for x in glob["sources"] if x["kind"] == "input" and x["flag"] == "review"]
    assert len(notes) == 3 and all("incomplete series: slice at -102.7 mm has 77 frames, the others 79" in n
                                   for n in notes), notes

    rc = cli.main(["perfusion", str(whole), "-o", str(tmp_path / "l"), "--level", "mid"])
    assert rc == 1 and "holds 3 slices: --level names one slice; leave it out for this input" in capsys.readouterr().err


def test_no_tta_runs_one_pass_of_each_network(data_root, tmp_path, monkeypatch):
    """``--no-tta`` (cohorts on CPU): the segmenter runs without its card's mirrors and the SAX landmark model that
    places the RV insertions runs without its mirror TTA; by default both run with them."""
    from CardiacLandmarksLib.perfusion import segmentation as ps
    from CardiacLandmarksLib.sax import pipeline as sp

    seen = {"flips": [], "sax_tta": []}
    predict, detect = ps._predict, sp.detect_landmarks

    def spy_predict(net, x, device="cpu", batch=16, flips=()):
        if x.shape[1] == len(ps.SEG_OFFSETS):  # the segmenter (the localiser has 3 channels)
            seen["flips"].append(tuple(flips))
        return predict(net, x, device, batch, flips)

    def spy_detect(*a, **kw):
        seen["sax_tta"].append(kw.get("tta", True))
        return detect(*a, **kw)

    monkeypatch.setattr(ps, "_predict", spy_predict)
    monkeypatch.setattr(sp, "detect_landmarks", spy_detect)
    src = str(data_root / "perfusion" / "mlperf" / f"{SERIES[1]}.nii.gz")
    assert cli.main(["perfusion", src, "-o", str(tmp_path / "fast"), "--no-tta"]) == 0
    assert seen["flips"] and set(seen["flips"]) == {()} and seen["sax_tta"] == [False]
    fast = json.loads((tmp_path / "fast" / "report.json").read_text())
    seen["flips"].clear(), seen["sax_tta"].clear()
    assert cli.main(["perfusion", src, "-o", str(tmp_path / "full")]) == 0
    assert seen["flips"] and all(len(f) == 2 for f in seen["flips"]) and seen["sax_tta"] == [True]
    full = json.loads((tmp_path / "full" / "report.json").read_text())
    # the same series analysed both ways (the reference frame may differ: it is picked on the segmentation)
    assert len(fast["inputs"]) == len(full["inputs"]) == 1 and fast["segments"] and full["segments"]
    assert fast["inputs"][0]["rvi_source"].startswith("SAX landmark model")
