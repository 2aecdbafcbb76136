"""CLI: lax-track from a .mrk.json on one phase of a NIfTI cine, lv-length from the written landmarks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from CardiacLandmarksLib.cli import main


@pytest.fixture()
def cine_and_points(tmp_path):
    from CardiacLandmarksLib.core.landmarks import Landmark, LandmarkSet
    from CardiacLandmarksLib.io.load import load_series
    from CardiacLandmarksLib.io.markups import write_markups

    rng = np.random.default_rng(0)
    base = ndimage.gaussian_filter(rng.normal(size=(96, 96)), 2.0) * 300 + 600
    n_t = 8
    # the apex stays put, the valve region moves towards it: rows shift by up to 4 px below row 50
    frames = []
    for t in range(n_t):
        dy = 4.0 * np.sin(np.pi * t / n_t)
        f = base.copy()
        f[:50] = ndimage.shift(base, (dy, 0), order=3, mode="nearest")[:50]
        frames.append(f.astype(np.float32))
    vols = []
    for f in frames:
        v = sitk.GetImageFromArray(f[None])
        v.SetSpacing((1.5, 1.5, 8.0))
        vols.append(v)
    img = sitk.JoinSeries(vols)
    d4 = np.eye(4)
    d4[:3, :3] = np.column_stack([[0.6, 0.0, -0.8], [0.0, 1.0, 0.0], [0.8, 0.0, 0.6]])
    img.SetDirection(d4.ravel().tolist())
    img.SetOrigin((10.0, 20.0, 30.0, 0.0))
    path = tmp_path / "cine_4ch.nii.gz"
    sitk.WriteImage(img, str(path))
    s = load_series(path)
    pts = {"IS-P": (30.0, 20.0), "AL-P": (66.0, 22.0), "APEX": (48.0, 85.0)}
    lms = [Landmark(n, 0, 0, True, s.ijk_to_lps(np.r_[p, 0]), np.r_[p, 0], 1.0, "high", True) for n, p in pts.items()]
    write_markups(LandmarkSet(str(path), "4ch", {}, lms), tmp_path / "placed.mrk.json")
    return path, tmp_path / "placed.mrk.json", n_t


def test_lax_track_and_lv_length(cine_and_points, tmp_path, capsys, pyplot_untouched):
    path, mrk, n_t = cine_and_points
    out = tmp_path / "out"
    assert main(["lax-track", str(path), "--points", str(mrk), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Longitudinal shortening" in text
    doc = json.loads((out / "landmarks.json").read_text())
    assert doc["view"] == "4ch" and len(doc["landmarks"]) == 3 * n_t
    lengths = [m["value"] for m in doc["measurements"] if m["name"] == "LV length"]
    assert len(lengths) == n_t
    # valve points moved up to 4 px = 6 mm towards the apex (rows increase towards it)
    assert max(lengths) - min(lengths) == pytest.approx(6.0, abs=0.8)
    assert (out / "lv_length.png").stat().st_size > 10000
    assert len(list(out.glob("*.mrk.json"))) == n_t
    assert main(["lv-length", str(out / "landmarks.json"), "--json"]) == 0
    curve = json.loads(capsys.readouterr().out)[0]
    assert curve["ed_phase"] == 0 and curve["es_phase"] == n_t // 2
    assert curve["shortening_pct"] == pytest.approx(100 * (lengths[0] - lengths[n_t // 2]) / lengths[0], rel=1e-6)
    # the per-phase markups folder reads back the same curve
    assert main(["lv-length", str(out), "--ed", "first"]) == 0
    assert "ED phase 0 by first" in capsys.readouterr().out
    # a phase the cine cannot have, or ED and ES as one phase: a named error (a traceback before; 0 % shortening)
    assert main(["lv-length", str(out), "--ed", str(n_t)]) == 1
    assert f"ed phase {n_t} out of range 0..{n_t - 1}" in capsys.readouterr().err
    assert main(["lv-length", str(out), "--ed", "2", "--es", "2"]) == 1
    assert "ED and ES are the same phase (2)" in capsys.readouterr().err
    # lax-track says so before tracking, and writes nothing
    assert main(["lax-track", str(path), "--points", str(mrk), "-o", str(tmp_path / "o2"), "--es", str(n_t)]) == 1
    assert f"es phase {n_t} out of range" in capsys.readouterr().err and not (tmp_path / "o2").exists()


def test_cli_errors(tmp_path, capsys):
    assert main(["lv-length", str(tmp_path / "missing.json")]) == 1
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["lv-length", str(bad)]) == 1


@pytest.mark.parametrize("view", [None, "4ch"])
def test_lv_length_of_short_axis_landmarks_says_what_it_needs(tmp_path, capsys, view):
    """A SAX detect result given to lv-length: before, without --view it asked for --view, and with --view 4ch it
    printed a table of n/a lengths and 'not computable'."""
    from CardiacLandmarksLib.core.landmarks import Landmark, LandmarkSet
    from CardiacLandmarksLib.sax.report import write_landmarks_json

    pts = [Landmark(n, k, 0, True, np.array([k, 1.0, 2.0]), np.array([10.0, 20.0, k]), 0.9, "high")
           for k in range(3) for n in ("A-RVI", "I-RVI", "C-LV")]
    path = write_landmarks_json(LandmarkSet("stack.nii.gz", "sax", {"name": "sax_unet"}, pts), tmp_path / "lm.json")
    with pytest.raises(SystemExit) as exc:
        main(["lv-length", str(path)] + (["--view", view] if view else []))
    assert "these are short-axis landmarks (A-RVI, C-LV, I-RVI)" in str(exc.value)
    assert "LV length" not in capsys.readouterr().out


def test_refused_detect_leaves_no_empty_result_folder(cine_and_points, tmp_path, capsys):
    """No 2CH model is bundled: the run is refused by name, and the folders it had made for its results go again
    (a folder that was there before stays)."""
    path, _, _ = cine_and_points
    out = tmp_path / "new" / "results"
    assert main(["detect", str(path), "--view", "2ch", "--force-view", "-o", str(out), "--no-progress"]) == 1
    assert "No 2CH landmark model" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    assert main(["detect", str(path), "--view", "2ch", "-o", str(kept), "--no-progress"]) == 1
    assert kept.is_dir()


@pytest.mark.data
def test_detect_prints_the_long_axis_notes(tmp_path, capsys):
    """detect on a long-axis file prints its checks as 'note:' lines (they were only in landmarks.json): here
    M&Ms-2 001's 4CH ED and ES frames stored as one 2-frame file, detected frame by frame, not tracked."""
    import nibabel as nib
    from conftest import require_data

    d = require_data("mnms2", "001")
    ed, es = nib.load(d / "001_LA_ED.nii.gz"), nib.load(d / "001_LA_ES.nii.gz")
    both = np.stack([np.asarray(ed.dataobj), np.asarray(es.dataobj)], -1).astype(np.float32)
    nib.save(nib.Nifti1Image(both, ed.affine), tmp_path / "la_frames.nii.gz")
    out = tmp_path / "out"
    assert main(["detect", str(tmp_path / "la_frames.nii.gz"), "--view", "4ch", "-o", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    notes = [line for line in text.splitlines() if line.startswith("note: ")]
    assert any("2 phases, fewer than the 10 that tracking needs" in n for n in notes)
    saved = json.loads((out / "landmarks.json").read_text())["model"]["lax_checks"]
    assert [n[len("note: "):] for n in notes] == saved


@pytest.mark.data
def test_lax_track_uses_the_pixel_size_recorded_with_the_points(tmp_path, capsys):
    """The AMRG 4CH cine has no geometry (1 mm placeholder). ``detect --pixel-size 1.5`` records the size; before,
    ``lax-track --points`` on that result read the cine at 1 mm again and put every seed point 1.5x too far from the
    origin. Now it loads the cine at the recorded size, and its own result records it too."""
    from conftest import reloads_at_pixel_size, require_data

    from CardiacLandmarksLib import results

    cine = require_data("lax", "amrg", "AMRGAtlas_0031.nii.gz")
    first, second = tmp_path / "detect", tmp_path / "track"
    assert main(["detect", str(cine), "--view", "4ch", "--force-view", "--pixel-size", "1.5", "-o", str(first),
                 "--no-progress"]) == 0
    assert main(["lax-track", str(cine), "--points", str(first), "-o", str(second)]) == 0
    assert "pixel size 1.5 x 1.5 mm as given" in capsys.readouterr().out
    tracked = reloads_at_pixel_size(second, 1.5)
    detected = {m.phase: m.value for m in results.read_result(first, point_lists="ignore").measurements
                if m.name == "LV length"}
    again = {m.phase: m.value for m in tracked.measurements if m.name == "LV length"}
    assert abs(again[0] - detected[0]) < 10.0  # same scale (at 1 mm the seed would sit 1.5x further out)


def test_lax_track_takes_points_named_by_hand_with_the_phase_they_were_placed_on(cine_and_points, tmp_path, capsys):
    """The README and `detect` on a 2CH/3CH cine say: place the three points on one phase in Slicer and run
    `lax-track`. A reader names such points AL-P, IS-P, APEX, and the .mrk.json Slicer saves does not record the
    phase shown: each point was skipped ('no <name> s<slice> p<phase> label') and the run ended 'cannot tell the
    long-axis view from the landmark names []; pass --view', which --view does not mend. `--phase N` now says which
    phase they were placed on: the result is the one of the same points labelled 'AL-P s0 pN'; without it the
    error says what to give."""
    from CardiacLandmarksLib.core.landmarks import Landmark, LandmarkSet
    from CardiacLandmarksLib.io.load import load_series
    from CardiacLandmarksLib.io.markups import read_markups, write_markups

    path, mrk, n_t = cine_and_points
    placed = json.loads(mrk.read_text())
    bare = tmp_path / "by_hand.mrk.json"
    doc = json.loads(mrk.read_text())
    for cp in doc["markups"][0]["controlPoints"]:  # as Slicer saves hand-placed, hand-named points
        cp["label"] = cp["label"].split()[0]
        cp.pop("description", None)
    doc.pop("cardiacLandmarks", None)
    bare.write_text(json.dumps(doc))
    assert main(["lax-track", str(path), "--points", str(bare), "-o", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert f"no landmark read from {bare}: label each point with its name and, on a cine, give the phase" in err
    assert "pass --view" not in err and not (tmp_path / "none").exists()
    assert main(["lax-track", str(path), "--points", str(bare), "--phase", str(n_t), "-o", str(tmp_path / "o")]) == 1
    assert f"--phase {n_t}: the cine has {n_t} phases (0-{n_t - 1})" in capsys.readouterr().err

    s = load_series(path)  # the same points labelled with slice and phase 3, the tool's own form
    lms = [Landmark(lm.name, 0, 3, True, lm.position, np.full(3, np.nan), 1.0, "high", True)
           for lm in read_markups(mrk, s).landmarks]
    assert len(lms) == len(placed["markups"][0]["controlPoints"]) == 3
    labelled = tmp_path / "labelled.mrk.json"
    write_markups(LandmarkSet(str(path), "4ch", {}, lms), labelled)
    results = {}
    for name, points, extra in (("bare", bare, ["--phase", "3"]), ("labelled", labelled, [])):
        out = tmp_path / name
        assert main(["lax-track", str(path), "--points", str(points), "-o", str(out), *extra]) == 0
        results[name] = json.loads((out / "landmarks.json").read_text())
    capsys.readouterr()
    assert s.n_phases == n_t and len(results["bare"]["landmarks"]) == 3 * n_t
    for a, b in zip(results["bare"]["landmarks"], results["labelled"]["landmarks"]):
        assert (a["name"], a["phase"]) == (b["name"], b["phase"])
        assert np.allclose(a["position"], b["position"], atol=1e-6)
