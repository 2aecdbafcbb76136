"""Result folders (CardiacLandmarksLib.results) on a real ACDC result of ``cardiac-landmarks detect``:
result/cohort discovery, review queue, corrections, recomputed RVI angles, locked save with backups,
and the files read back by the command line's readers (landmarks.json, Slicer point lists)."""

from __future__ import annotations

import csv
import json
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from CardiacLandmarksLib.cli import main as cli_main
from CardiacLandmarksLib.core.errors import CorruptFileError, InputNotFoundError
from CardiacLandmarksLib.core.landmarks import LANDMARKS_BY_VIEW
from CardiacLandmarksLib.core.review import flagged_points
from CardiacLandmarksLib.io.load import load_series
from CardiacLandmarksLib.io.markups import read_markups
from CardiacLandmarksLib.results import (
    ReviewError,
    SaveInProgressError,
    confirm_landmark,
    correct_landmark,
    find_results,
    read_result,
    recompute_measurements,
    save_result,
)
from CardiacLandmarksLib.results import folders as review_results

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def detected(tmp_path_factory, acdc_dir) -> Path:
    """``cardiac-landmarks detect`` on ACDC patient001 ED (10 slices), once per module."""
    out = tmp_path_factory.mktemp("detect") / "patient001_ED"
    assert cli_main(["detect", str(acdc_dir / "patient001_ED.nii.gz"), "-o", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture
def result(detected, tmp_path) -> Path:
    """A fresh copy of the detection result (tests change it)."""
    dst = tmp_path / "cohort" / "patient001_ED"
    shutil.copytree(detected, dst)
    return dst


def flagged_landmarks(lmset):
    """The set's review queue by rising confidence (core.review), as its Landmark objects."""
    return [lmset.get(p.name, p.slice, p.phase)
            for p in flagged_points(lmset.landmarks, LANDMARKS_BY_VIEW["sax"], by_confidence=True)]


def _angle(lmset, k, name="RVI angle"):
    return next(m.value for m in lmset.measurements if m.name == name and m.slice == k and m.phase == 0)


def test_find_results_single_and_cohort(result, tmp_path):
    assert find_results(result) == [result.resolve()]
    cohort = result.parent
    shutil.copytree(result, cohort / "nested" / "patient001_copy")
    (cohort / "empty").mkdir()
    found = find_results(cohort)
    assert [p.relative_to(cohort.resolve()).as_posix() for p in found] == ["nested/patient001_copy", "patient001_ED"]
    (tmp_path / "nothing").mkdir()
    with pytest.raises(InputNotFoundError, match="no landmarks.json"):
        find_results(tmp_path / "nothing")
    with pytest.raises(InputNotFoundError):
        find_results(tmp_path / "missing")
    # a study output whose only analysis is perfusion: said so, not 'not a result or cohort folder'
    perf = tmp_path / "perfusion_study"
    (perf / "s6_perfusion").mkdir(parents=True)
    (perf / "study.json").write_text(json.dumps({"analyses": [{"task": "perfusion", "series": "s6"}]}))
    with pytest.raises(InputNotFoundError, match=r"is a study output without a SAX or long-axis landmark result "
                                                 r"\(analyses: perfusion\)"):
        find_results(perf)


def test_read_result_and_errors(result, tmp_path):
    lmset = read_result(result)
    assert lmset.view == "sax" and len(lmset.landmarks) == 30
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "landmarks.json").write_text("{not json")
    with pytest.raises(CorruptFileError):
        read_result(bad)
    (bad / "landmarks.json").write_text('{"landmarks": 3}')
    with pytest.raises(CorruptFileError):
        read_result(bad)
    with pytest.raises(InputNotFoundError):
        read_result(tmp_path)


def test_flagged_queue_order(result):
    lmset = read_result(result)
    queue = flagged_landmarks(lmset)
    assert queue, "patient001 ED has low / absent points with the bundled model"
    assert all(lm.flag in ("low", "absent") and not lm.corrected for lm in queue)
    conf = [lm.confidence for lm in queue]
    assert conf == sorted(conf)
    n_flagged = sum(lm.flag in ("low", "absent") for lm in lmset.landmarks)
    assert len(queue) == n_flagged
    first_low = next(lm for lm in queue if lm.flag == "low")
    # left where it is: still the model's point (the shared correction rule), still flagged
    same = correct_landmark(lmset, first_low.name, first_low.slice, first_low.phase, first_low.position)
    assert not same.corrected and same.flag == "low" and len(flagged_landmarks(lmset)) == n_flagged
    moved = correct_landmark(lmset, first_low.name, first_low.slice, first_low.phase,
                             np.asarray(first_low.position) + [1.0, 0, 0])
    assert moved.corrected and len(flagged_landmarks(lmset)) == n_flagged - 1  # a corrected point leaves the queue


def test_correction_recomputes_rvi_angle_and_errors(result):
    lmset = read_result(result)
    series = load_series(lmset.source)
    k = next(lm.slice for lm in lmset.landmarks if lm.name == "A-RVI" and lm.flag == "low"
             and lmset.get("I-RVI", lm.slice, 0).found and lmset.get("C-LV", lm.slice, 0).found)
    before = {m.slice: m.value for m in lmset.measurements if m.name == "RVI angle"}
    a_ijk = np.array(lmset.get("A-RVI", k, 0).ijk, float)  # copy: the correction changes the landmark in place
    # 8 mm along the image columns (+i), in the slice plane
    new_pos = series.ijk_to_lps(a_ijk + [8.0 / series.spacing[0], 0, 0])
    lm = correct_landmark(lmset, "A-RVI", k, 0, new_pos, series)
    assert lm.corrected and lm.flag == "high" and lm.confidence == 1.0
    assert np.allclose(lm.ijk, a_ijk + [8.0 / series.spacing[0], 0, 0])
    recompute_measurements(lmset, series)
    after = {m.slice: m.value for m in lmset.measurements if m.name == "RVI angle"}
    assert abs(after[k] - before[k]) > 1.0  # an 8 mm move changes the angle by degrees
    assert all(after[s] == pytest.approx(before[s]) for s in before if s != k)
    # removing a point removes its slice's angles
    correct_landmark(lmset, "A-RVI", k, 0, None, series)
    recompute_measurements(lmset, series)
    assert not any(m.slice == k for m in lmset.measurements)
    with pytest.raises(ReviewError, match="not a landmark"):
        correct_landmark(lmset, "APEX", k, 0, new_pos, series)
    with pytest.raises(ReviewError, match="outside the series"):
        correct_landmark(lmset, "A-RVI", series.n_slices, 0, new_pos, series)
    with pytest.raises(ReviewError, match="finite"):
        correct_landmark(lmset, "A-RVI", k, 0, [np.nan, 0, 0], series)
    with pytest.raises(ReviewError, match="not on slice"):
        correct_landmark(lmset, "A-RVI", k, 0, series.ijk_to_lps(a_ijk + [0, 0, 1.0]), series)


def test_save_writes_cli_files_with_backups_and_reads_back(result):
    lmset = read_result(result)
    series = load_series(lmset.source)
    # a slice whose only doubtful point is A-RVI: once the reader corrects it, the angle is trusted ("ok")
    low = next(lm for lm in flagged_landmarks(lmset) if lm.flag == "low" and lm.name == "A-RVI" and lm.phase == 0
               and all(lmset.get(n, lm.slice, 0).flag == "high" for n in ("I-RVI", "C-LV")))
    k = low.slice
    old_angle = _angle(lmset, k)
    target = np.asarray(low.position) + [0.0, -6.0, 0.0]
    correct_landmark(lmset, "A-RVI", k, 0, target, series)
    recompute_measurements(lmset, series)
    written = save_result(result, lmset, series)
    names = sorted(p.name for p in written)
    assert names == ["landmarks.json", "landmarks.mrk.json", "measurements.csv", "patient001_ED_overlay.png"]
    # the command line's rule: the point lists are kept, the other files replaced
    assert len(list(result.glob("landmarks.mrk.json.bak-*"))) == 1
    assert not list(result.glob("landmarks.json.bak-*")) and not list(result.glob("measurements.csv.bak-*"))
    # landmarks.json: what the CLI writes, with the correction
    back = read_result(result)
    lm = back.get("A-RVI", k, 0)
    assert lm.corrected and lm.flag == "high" and lm.confidence == 1.0
    assert np.allclose(lm.position, target)
    assert _angle(back, k) != pytest.approx(old_angle)
    # the Slicer point lists read back the same corrected point
    mk = read_markups(result, series)
    m = mk.get("A-RVI", k, 0)
    assert m.corrected and np.allclose(m.position, target, atol=1e-6)
    # measurements.csv holds the new angle, with its trust from the corrected point
    with open(result / "measurements.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["name"] == "RVI angle" and r["slice"] == str(k)]
    assert len(rows) == 1 and float(rows[0]["value"]) == pytest.approx(_angle(back, k), abs=1e-4)
    assert rows[0]["status"] == "ok" and f"A-RVI s{k} p0:high:1.00" in rows[0]["sources"]
    # the kept point list is the model's
    old = read_markups(next(result.glob("landmarks.mrk.json.bak-*")), series)
    assert not any(x.corrected for x in old.landmarks)
    assert np.allclose(old.get("A-RVI", k, 0).position, low.position, atol=0.01)


def test_confirmed_point_is_trusted_saved_and_read_back(result):
    """A reader confirms a low A-RVI where the model put it: it leaves the queue, its slice's angles become 'ok',
    and landmarks.json, the Slicer point list and measurements.csv all say it was confirmed, not moved."""
    lmset = read_result(result)
    series = load_series(lmset.source)
    low = next(lm for lm in flagged_landmarks(lmset) if lm.flag == "low" and lm.name == "A-RVI" and lm.phase == 0
               and all(lmset.get(n, lm.slice, 0).flag == "high" for n in ("I-RVI", "C-LV")))
    k, position, angle = low.slice, np.asarray(low.position, float).copy(), _angle(lmset, k=low.slice)
    assert next(m for m in lmset.measurements if m.name == "RVI angle" and m.slice == k).status == "review"
    n_queue = len(flagged_landmarks(lmset))
    lm = confirm_landmark(lmset, "A-RVI", k, 0)
    assert (lm.corrected, lm.confirmed, lm.flag, lm.confidence) == (True, True, "high", 1.0)
    assert np.array_equal(lm.position, position) and len(flagged_landmarks(lmset)) == n_queue - 1
    assert confirm_landmark(lmset, "A-RVI", k, 0).confirmed  # twice: the same
    recompute_measurements(lmset, series)
    m = next(m for m in lmset.measurements if m.name == "RVI angle" and m.slice == k)
    assert m.status == "ok" and m.value == pytest.approx(angle)  # trusted, same value: the point did not move
    save_result(result, lmset, series)
    back = read_result(result)
    assert back.get("A-RVI", k, 0).confirmed and np.allclose(back.get("A-RVI", k, 0).position, position)
    mk = read_markups(result, series).get("A-RVI", k, 0)
    assert mk.corrected and mk.confirmed and np.allclose(mk.position, position, atol=1e-6)
    doc = json.loads((result / "landmarks.mrk.json").read_text())
    assert f"A-RVI s{k} p0" in {cp["label"] for cp in doc["markups"][0]["controlPoints"]
                                if cp["description"] == "confirmed by user"}
    with open(result / "measurements.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["name"] == "RVI angle" and r["slice"] == str(k))
    assert row["status"] == "ok" and f"A-RVI s{k} p0:high:1.00" in row["sources"]
    # nothing to confirm on an absent point, nor on a point that is not there
    absent = next(x for x in lmset.landmarks if not x.found)  # patient001 ED: RV insertions absent at the apex
    with pytest.raises(ReviewError, match="not found"):
        confirm_landmark(lmset, absent.name, absent.slice, absent.phase)
    with pytest.raises(ReviewError, match="no A-RVI"):
        confirm_landmark(lmset, "A-RVI", series.n_slices + 3, 0)


def test_save_never_interleaves(result):
    """A second save of the same folder waits for the first (same process: thread lock; other process: the folder
    hold every run takes) and gives up with SaveInProgressError after its timeout."""
    from conftest import held_by_another_process

    lmset = read_result(result)
    series = load_series(lmset.source)
    before = (result / "landmarks.json").read_bytes()
    with review_results._save_lock(result, 1.0):
        errors = []
        t = threading.Thread(target=lambda: errors.append(pytest.raises(
            SaveInProgressError, save_result, result, lmset, series, timeout_s=0.3)))
        t.start()
        t.join(10)
        assert errors, "the second save did not give up"
        assert (result / "landmarks.json").read_bytes() == before  # nothing written meanwhile
    # another process holding the folder (a run writing into it, or the review app of another reader saving)
    with held_by_another_process(result, "review app save") as holder:
        with pytest.raises(SaveInProgressError, match=rf"another program is writing into {re.escape(str(result))} "
                                                      rf"\(review app save: process {holder.pid} on .*save again"):
            save_result(result, lmset, series, timeout_s=0.3)
        assert (result / "landmarks.json").read_bytes() == before
    assert save_result(result, lmset, series, timeout_s=5)  # free again
    # two concurrent saves with different corrections: the three files always come from the same save
    a = next(lm for lm in lmset.landmarks if lm.name == "A-RVI" and lm.found)
    sets = []
    for dx in (3.0, -3.0):
        s = read_result(result)
        correct_landmark(s, "A-RVI", a.slice, 0, np.asarray(a.position) + [dx, 0, 0], series)
        recompute_measurements(s, series)
        sets.append(s)
    threads = [threading.Thread(target=save_result, args=(result, s, series)) for s in sets for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    js = read_result(result).get("A-RVI", a.slice, 0).position
    mk = read_markups(result / "landmarks.mrk.json").get("A-RVI", a.slice, 0).position
    assert np.allclose(js, mk, atol=1e-6)



def test_a_save_gives_way_to_a_run_rewriting_its_study(result, tmp_path):
    """The review app's Save took only its own save lock: an analysis of a study output saved while `study` ran
    again into that study (which moves the analyses into its backup and writes them anew) or while `apply-review`
    rewrote it mixed the two. A save now holds the analysis and its study folder as a run does: while another
    process holds the study it gives up by name and writes nothing; after, it saves and the study's run.json lists
    the new files."""
    from conftest import held_by_another_process

    from CardiacLandmarksLib.io import outputs

    study = tmp_path / "study"
    analysis = study / "s300_sax"
    shutil.copytree(result, analysis)
    (study / "study.json").write_text("{}", encoding="utf-8")
    (study / "run.json").write_text(json.dumps({"files": []}), encoding="utf-8")
    lmset = read_result(analysis)
    series = load_series(lmset.source)
    before = {p.name: p.read_bytes() for p in analysis.iterdir()}
    with held_by_another_process(study, "study") as holder:
        with pytest.raises(SaveInProgressError, match=rf"writing into {re.escape(str(study.resolve()))} \(study: "
                                                      rf"process {holder.pid} on "):
            save_result(analysis, lmset, series, timeout_s=0.3)
        assert {p.name: p.read_bytes() for p in analysis.iterdir()} == before
        assert not (analysis / outputs.HOLD_LOCK_FILE).exists()  # the analysis it took first is given back
    written = save_result(analysis, lmset, series, timeout_s=5)
    assert written and outputs._HELD == {}
    assert not list(study.glob(".cardiac-landmarks*")) and not list(analysis.glob(".cardiac-landmarks*"))
    edits = json.loads((study / "run.json").read_text(encoding="utf-8"))["edits"]
    assert "s300_sax" in edits[-1]["by"]


def test_long_axis_correction_recomputes_lv_length():
    """Long-axis result (constructed 4CH set with known lengths, as in test_lax_measurements): moving the
    apex changes that phase's LV length and the shortening; measurements of other kinds are kept."""
    from CardiacLandmarksLib.core.landmarks import Landmark, LandmarkSet, Measurement
    from CardiacLandmarksLib.lax.measurements import lv_length_measurements

    lms = []
    for t, length in enumerate((90.0, 80.0, 72.0)):
        for n, p in (("IS-P", (-15.0, 0, 0)), ("AL-P", (15.0, 0, 0)), ("APEX", (0, length, 0))):
            lms.append(Landmark(n, 0, t, True, np.array(p, float), np.full(3, np.nan), 0.9, "high"))
    lmset = LandmarkSet("synthetic", "4ch", {}, lms)
    lmset.measurements = lv_length_measurements(lmset, "4ch") + [Measurement("LV EF", None, None, 55.0, "%")]
    short_before = next(m.value for m in lmset.measurements if m.name == "Longitudinal shortening")
    correct_landmark(lmset, "APEX", 0, 2, [0.0, 60.0, 0.0])
    recompute_measurements(lmset)
    lengths = {m.phase: m.value for m in lmset.measurements if m.name == "LV length"}
    assert lengths[2] == pytest.approx(60.0) and lengths[0] == pytest.approx(90.0)
    short_after = next(m.value for m in lmset.measurements if m.name == "Longitudinal shortening")
    assert short_after == pytest.approx(100 * (90 - 60) / 90) and short_after > short_before
    assert [m.value for m in lmset.measurements if m.name == "LV EF"] == [55.0]


def test_point_lists_saved_in_slicer_are_read_back(result, detected):
    """A reader moves a point in Slicer and saves the point list (Slicer's own markups JSON writer):
    read_result takes the newer point list, the point comes back corrected, the angles are recomputed;
    point_lists='ignore' gives landmarks.json as it was."""
    slicer = pytest.importorskip("slicer")
    lmset = read_result(result)
    series = load_series(lmset.source)
    low = next(lm for lm in flagged_landmarks(lmset) if lm.flag == "low" and lm.name == "A-RVI")
    k, old_pos, old_angle = low.slice, np.array(low.position, float), _angle(lmset, low.slice)

    scene = slicer.vtkMRMLScene()
    storage = slicer.vtkMRMLMarkupsJsonStorageNode()
    scene.AddNode(storage)
    node = storage.AddNewMarkupsNodeFromFile(str(result / "landmarks.mrk.json"))
    assert node is not None
    idx = next(i for i in range(node.GetNumberOfControlPoints())
               if node.GetNthControlPointLabel(i) == f"A-RVI s{k} p0")
    ras = [0.0, 0.0, 0.0]
    node.GetNthControlPointPosition(idx, ras)
    node.SetNthControlPointPosition(idx, ras[0] - 5.0, ras[1], ras[2])  # 5 mm towards patient's right = +x LPS
    node.GetStorageNode().SetFileName(str(result / "landmarks.mrk.json"))
    assert node.GetStorageNode().WriteData(node)

    back = read_result(result, series)
    lm = back.get("A-RVI", k, 0)
    assert lm.corrected and lm.confidence == 1.0
    assert np.allclose(lm.position, old_pos + [5.0, 0, 0], atol=1e-3)
    assert np.all(np.isfinite(lm.ijk))
    assert _angle(back, k) != pytest.approx(old_angle)
    kept = read_result(result, point_lists="ignore")
    assert not kept.get("A-RVI", k, 0).corrected and _angle(kept, k) == pytest.approx(old_angle)
    # a fresh detect result: its point lists are written after landmarks.json and hold the same points
    assert review_results.newer_point_lists(detected)
    assert json.dumps(read_result(detected).to_dict(), default=str) == json.dumps(
        read_result(detected, point_lists="ignore").to_dict(), default=str)


def _slicer_edit(result, label, edit):
    """Open the result's point list with Slicer's markups storage, apply ``edit(node, index)`` to the control point
    ``label`` and save it with Slicer's own writer, as a reader does in Slicer."""
    slicer = pytest.importorskip("slicer")
    scene = slicer.vtkMRMLScene()
    storage = slicer.vtkMRMLMarkupsJsonStorageNode()
    scene.AddNode(storage)
    node = storage.AddNewMarkupsNodeFromFile(str(result / "landmarks.mrk.json"))
    idx = next(i for i in range(node.GetNumberOfControlPoints()) if node.GetNthControlPointLabel(i) == label)
    edit(node, idx)
    node.GetStorageNode().SetFileName(str(result / "landmarks.mrk.json"))
    assert node.GetStorageNode().WriteData(node)


def test_a_point_deleted_in_slicer_is_absent_and_a_point_off_its_image_is_refused(result, caplog):
    """A reader who deletes a wrong point in Slicer (Delete in the point list) means it is not there, but the
    model's point silently stayed and kept its angles. A point dragged off its slice or out of the image (a 3D
    view, a slip) was taken as a correction. Now the deleted point is read as marked absent, with a warning, and
    a point off its slice or outside the image is a ReviewError naming it."""
    lmset = read_result(result)
    series = load_series(lmset.source)
    k = next(lm.slice for lm in lmset.landmarks if lm.name == "A-RVI" and lm.found and lm.phase == 0)
    assert any(m.slice == k for m in lmset.measurements)
    _slicer_edit(result, f"A-RVI s{k} p0", lambda node, i: node.RemoveNthControlPoint(i))
    with caplog.at_level("WARNING"):
        back = read_result(result, series)
    lm = back.get("A-RVI", k, 0)
    assert lm.corrected and not lm.found and lm.flag == "absent"
    assert f"1 point(s) deleted from the point lists, taken as marked absent by the reader: A-RVI s{k} p0" in caplog.text
    assert not any(m.slice == k and m.name == "RVI angle" for m in back.measurements)
    assert sum(x.corrected for x in back.landmarks) == 1  # the others are the model's

    def off(delta_ijk):
        def edit(node, i):
            c = back.get("C-LV", k, 0)
            lps = series.ijk_to_lps(np.asarray(c.ijk, float) + delta_ijk)
            node.SetNthControlPointPosition(i, -lps[0], -lps[1], lps[2])  # RAS, as Slicer holds it
        return edit

    _slicer_edit(result, f"C-LV s{k} p0", off([0.0, 0.0, 1.0]))  # onto the next slice
    with pytest.raises(ReviewError, match=rf"C-LV s{k} p0: the position LPS .* mm lies on slice {k + 1}.00, not on "
                                          rf"slice {k}"):
        read_result(result, series)
    _slicer_edit(result, f"C-LV s{k} p0", off([1000.0, 0.0, 0.0]))  # on its slice, 1000 columns out
    with pytest.raises(ReviewError, match=rf"C-LV s{k} p0: the position LPS .* mm lies outside the image \(column"):
        read_result(result, series)


def test_save_brings_run_json_up_to_date(result):
    """After a save, run.json lists the rewritten files with their new checksums and records the edit; the
    run's inputs stay as detect recorded them (a stale run.json would say the files are not the run's)."""
    from CardiacLandmarksLib.io.atomic import sha256_file

    before = json.loads((result / "run.json").read_text())
    lmset = read_result(result)
    series = load_series(lmset.source)
    low = next(lm for lm in flagged_landmarks(lmset) if lm.found)
    correct_landmark(lmset, low.name, low.slice, low.phase, np.asarray(low.position) + [0.0, -4.0, 0.0], series)
    recompute_measurements(lmset, series)
    written = save_result(result, lmset, series)
    run = json.loads((result / "run.json").read_text())
    files = {f["name"]: f for f in run["files"]}
    for p in written:
        assert files[p.name]["sha256"] == sha256_file(p)
    assert files["landmarks.json"]["sha256"] != {f["name"]: f for f in before["files"]}["landmarks.json"]["sha256"]
    assert run["inputs"] == before["inputs"] and run["complete"] is True
    assert run["edits"][-1]["files"] == sorted(p.name for p in written)


def test_unsaved_corrections_are_kept_until_saved(result):
    """keep_unsaved / read_unsaved / discard_unsaved: what a reader changed and did not save comes back as it was
    (positions, corrected and confirmed states); a result written since (a Save, a re-run) makes the kept copy
    stale, and it is not restored; the copy is hidden, so a re-run never takes it for a result file."""
    import os
    import time

    from CardiacLandmarksLib.io.outputs import OutputDir
    from CardiacLandmarksLib.results import discard_unsaved, keep_unsaved, read_unsaved

    assert read_unsaved(result) is None
    lmset = read_result(result)
    low = flagged_landmarks(lmset)[0]
    while not low.found:
        low = flagged_landmarks(lmset)[flagged_landmarks(lmset).index(low) + 1]
    confirm_landmark(lmset, low.name, low.slice, low.phase)
    path = keep_unsaved(result, lmset)
    assert path.name.startswith(".")
    back, when = read_unsaved(result)
    assert abs(when - time.time()) < 60
    kept = back.get(low.name, low.slice, low.phase)
    assert kept.confirmed and kept.corrected and np.allclose(kept.position, low.position)
    assert [x.to_dict() for x in back.landmarks] == [x.to_dict() for x in lmset.landmarks]
    assert path not in OutputDir(result).earlier_files()  # never moved with an earlier run's files
    # the result written after the copy (a Save, a re-run, a Slicer export): the copy would undo it
    t = path.stat().st_mtime
    os.utime(result / "landmarks.json", (t + 5, t + 5))
    assert read_unsaved(result) is None and path.exists()
    os.utime(result / "landmarks.json", (t - 5, t - 5))
    assert read_unsaved(result) is not None
    discard_unsaved(result)
    assert read_unsaved(result) is None and not path.exists()
