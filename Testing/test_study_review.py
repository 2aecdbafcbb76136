"""A reader's review carried into the study report and the cohort table (study.review, ``apply-review``), on the
real M&Ms-2 subject-001 study (SAX ED/ES pair + 4CH cine) analysed by ``study`` and by ``batch``."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import study_material as sm
from conftest import require_data

from CardiacLandmarksLib.cli import main as cli_main
from CardiacLandmarksLib.core.errors import InputNotFoundError, MixedSeriesError, SeriesMismatchError
from CardiacLandmarksLib.io.load import load_phase_files, load_series
from CardiacLandmarksLib.lax.tracking import retrack_landmark
from CardiacLandmarksLib.results import (
    confirm_landmark,
    correct_landmark,
    load_source,
    read_result,
    recompute_measurements,
    save_result,
)
from CardiacLandmarksLib.study.analyse import analyse_study
from CardiacLandmarksLib.study.review import apply_review

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def analysed(tmp_path_factory) -> Path:
    """``study`` output of M&Ms-2 001, once per module (tests work on copies)."""
    require_data("mnms2", "001")
    study = sm.mnms2_study(require_data(), tmp_path_factory.mktemp("mnms") / "001")
    out = tmp_path_factory.mktemp("mnms_out") / "001"
    analyse_study(study, out).write(out)
    return out


@pytest.fixture
def out(analysed, tmp_path) -> Path:
    dst = tmp_path / "001"
    shutil.copytree(analysed, dst)
    return dst


def _pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _kv(doc: dict) -> dict:
    return {v["name"]: v for v in doc["key_values"]}


def _review_lax(folder: Path) -> tuple[int, dict]:
    """What a reader does in the review app: confirm every low point of the ED phase (re-tracked from each), then
    Save. Returns the ED phase and the saved points of that phase (LPS)."""
    lm = read_result(folder)
    series = load_source(lm, folder)
    ed = next(m for m in lm.measurements if m.name == "LV length ED").phase
    low = [x.name for x in lm.landmarks if x.phase == ed and x.flag == "low"]
    assert low, "the bundled 4CH model flags points of M&Ms-2 001's ED phase low"
    for name in low:
        confirm_landmark(lm, name, 0, ed)
        new = retrack_landmark(series, lm, name, 0)
        lm.landmarks, lm.model = new.landmarks, new.model
    recompute_measurements(lm, series)
    save_result(folder, lm, series)
    return ed, {x.name: np.asarray(x.position, float) for x in lm.landmarks if x.phase == ed}


def test_pair_result_records_its_files_and_loads_both_phases(out):
    """The SAX ED/ES pair's landmarks.json names both files (before: the ED file only, so the review app loaded a
    one-phase image for two-phase landmarks and crashed on an ES point); an old result without them is refused
    with a named error."""
    folder = out / "001_SA_sax"
    lm = read_result(folder)
    assert [Path(f).name for f in lm.source_files] == ["001_SA_ED.nii.gz", "001_SA_ES.nii.gz"]
    series = load_source(lm, folder)
    assert series.n_phases == 2 and series.metadata["phase_labels"] == ["ED", "ES"]
    es = load_series(lm.source_files[1])
    np.testing.assert_array_equal(series.pixels[1], es.pixels[0])
    doc = json.loads((folder / "landmarks.json").read_text())
    doc.pop("source_files")
    (folder / "landmarks.json").write_text(json.dumps(doc))
    with pytest.raises(SeriesMismatchError, match="phases 0-1.*1 phase"):
        load_source(read_result(folder), folder)
    mnms = require_data("mnms2", "001")
    with pytest.raises(SeriesMismatchError, match="not the single-phase ED and ES frames"):
        load_phase_files([mnms / "001_SA_ED.nii.gz", mnms / "001_LA_ES.nii.gz"])


def test_apply_review_without_review_reproduces_the_report(out):
    """Recomputed from the saved result folders, every key value and cross-check equals what the study run
    computed in memory; the old report is kept as a backup and the new one says when the review was applied."""
    before = json.loads((out / "study.json").read_text())
    summary = _pixels(out / "summary.png")
    upd = apply_review(out)
    after = json.loads((out / "study.json").read_text())
    assert upd.changes == [] and upd.n_set == 0
    # the same picture, pixel for pixel: the function panel read back from its folder (before: the analysis'
    # every-slice picture in its place)
    np.testing.assert_array_equal(_pixels(out / "summary.png"), summary)
    assert after["key_values"] == before["key_values"] and after["crosschecks"] == before["crosschecks"]
    assert after["status"] == before["status"]
    assert [(a.task, a.series) for a in upd.analyses] == [("sax", "001_SA"), ("lax", "001_LA_CINE")]
    assert after["review"]["status_before"] == before["status"] and after["notes"] == before["notes"]
    assert [p.name for p in upd.written] == ["study.json", "summary.png"]
    backups = list(out.glob("study.json.bak-*"))
    assert len(backups) == 1 and json.loads(backups[0].read_text()) == before


def test_apply_review_again_keeps_the_report_until_something_is_saved(out, capsys):
    """apply-review a second time with nothing saved since rewrote study.json (a new study.json.bak-<time> each
    time: on a batch folder, one per study per run) and drew summary.png again. Now the report is kept byte for
    byte, no backup is made and the command says so; a point list saved again in another form (the same points)
    only gets its new checksum in run.json; a reader's drag makes the report follow again."""
    from CardiacLandmarksLib.io.outputs import RUN_FILE

    (out / RUN_FILE).write_text(json.dumps({"files": []}))  # what 'study' writes last (analyse_study does not)
    first = apply_review(out)
    assert not first.unchanged and [p.name for p in first.written] == ["study.json", "summary.png"]
    report, png = (out / "study.json").read_bytes(), (out / "summary.png").stat().st_mtime_ns
    edits = len(json.loads((out / RUN_FILE).read_text())["edits"])
    again = apply_review(out)
    assert again.unchanged and again.written == [] and again.changes == []
    assert again.applied == json.loads(report)["review"]["applied"] and again.status_after == first.status_after
    assert (out / "study.json").read_bytes() == report and (out / "summary.png").stat().st_mtime_ns == png
    assert len(list(out.glob("study.json.bak-*"))) == 1
    assert len(json.loads((out / RUN_FILE).read_text())["edits"]) == edits  # nothing to record
    assert cli_main(["apply-review", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"nothing saved since the review was applied ({again.applied}): {out / 'study.json'} kept as it is" in printed
    # the picture deleted since: drawn again from the kept report (the same pixels), nothing else written
    summary = _pixels(out / "summary.png")
    (out / "summary.png").unlink()
    redrawn = apply_review(out)
    assert redrawn.unchanged and [p.name for p in redrawn.written] == ["summary.png"]
    np.testing.assert_array_equal(_pixels(out / "summary.png"), summary)
    assert (out / "study.json").read_bytes() == report and len(list(out.glob("study.json.bak-*"))) == 1
    assert json.loads((out / RUN_FILE).read_text())["edits"][-1]["files"] == ["summary.png"]
    # the same points saved again in another layout: the report stays, run.json learns the file's new checksum
    path = out / "001_SA_sax" / "landmarks_phase00.mrk.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps(doc, indent=4))
    assert apply_review(out).unchanged and (out / "study.json").read_bytes() == report
    run = json.loads((out / RUN_FILE).read_text())
    assert run["edits"][-1]["files"] == ["001_SA_sax/landmarks_phase00.mrk.json"]
    from CardiacLandmarksLib.io.atomic import sha256_file

    listed = {e["name"]: e["sha256"] for e in run["files"]}
    assert listed["001_SA_sax/landmarks_phase00.mrk.json"] == sha256_file(path)
    # a reader's drag in Slicer: the report follows again, with a backup of the one before
    before = _kv(json.loads(report))
    k = int(before["RVI angle (mid, ED)"]["detail"].split()[1].rstrip(","))
    cp = next(c for c in doc["markups"][0]["controlPoints"] if c["label"] == f"I-RVI s{k} p0")
    cp["position"] = [cp["position"][0] + 5.0, cp["position"][1], cp["position"][2]]
    path.write_text(json.dumps(doc))
    upd = apply_review(out)
    assert not upd.unchanged and [p.name for p in upd.written] == ["study.json", "summary.png"]
    assert len(list(out.glob("study.json.bak-*"))) == 2 and (out / "study.json").read_bytes() != report


def test_apply_review_of_a_relative_folder(out, monkeypatch, capsys):
    """'apply-review out/001' from the folder above it: the run record's update joined the folder twice
    ('001/001/001_SA_sax/landmarks.json') and the command ended in a FileNotFoundError traceback."""
    from CardiacLandmarksLib.cli import main
    from CardiacLandmarksLib.io.outputs import RUN_FILE

    (out / RUN_FILE).write_text(json.dumps({"files": []}))  # what 'study' writes last (analyse_study does not)
    monkeypatch.chdir(out.parent)
    assert main(["apply-review", out.name]) == 0
    assert "study status:" in capsys.readouterr().out
    run = json.loads((out / "run.json").read_text())
    assert run["edits"][-1]["by"].startswith("apply-review") and "study.json" in run["edits"][-1]["files"]


@pytest.mark.slow
def test_function_panel_of_a_dicom_study_is_read_back_after_a_review(tmp_path):
    """A DICOM study folder holds several series: function.json recorded only the folder, so after apply-review the
    summary's function panel could not load its cine (two MR series in the folder) and fell back on the analysis'
    every-slice picture. It records each input's series UIDs now, and the page after a review without changes is
    the study run's, pixel for pixel (Sunnybrook's cine beside GE's perfusion series)."""
    study = sm.sunnybrook_perfusion_study(require_data(), tmp_path / "study")
    out = tmp_path / "out"
    analyse_study(study, out, tta=False).write(out)
    fdoc = json.loads((out / "s300_function" / "function.json").read_text())
    assert fdoc["input_series_uids"] == [["2.16.124.113543.6006.99.08975550791105350405"]]
    before = _pixels(out / "summary.png")
    apply_review(out)
    np.testing.assert_array_equal(_pixels(out / "summary.png"), before)


def test_reviewed_points_change_the_report(out, caplog):
    """The reader confirms the low mitral points of the 4CH ED phase and moves the mid-slice A-RVI of the SAX stack
    4 mm; apply-review gives LV length ED from the reviewed points (apex to mitral midpoint, computed here from
    the saved points) as 'ok', the RVI angle of the saved measurements, the cross-check from the reviewed apex,
    and counts the reader's points."""
    before = _kv(json.loads((out / "study.json").read_text()))
    assert before["LV length ED (4CH)"]["status"] == "review"
    ed, pts = _review_lax(out / "001_LA_CINE_lax")
    k = int(before["RVI angle (mid, ED)"]["detail"].split()[1].rstrip(","))
    sax_folder = out / "001_SA_sax"
    lm = read_result(sax_folder)
    series = load_source(lm, sax_folder)
    a = lm.get("A-RVI", k, 0)
    target = np.asarray(a.position, float) + 4.0 * series.direction[:, 0]
    correct_landmark(lm, "A-RVI", k, 0, target, series)
    recompute_measurements(lm, series)
    save_result(sax_folder, lm, series)
    saved_angle = next(m.value for m in read_result(sax_folder).measurements
                       if m.name == "RVI angle" and m.slice == k and m.phase == 0)

    summary_before = (out / "summary.png").read_bytes()
    with caplog.at_level(logging.ERROR, logger="CardiacLandmarksLib.study"):
        upd = apply_review(out)
    # every panel drawn: the function panel falls back on the analysis' own picture (it raised before, logged)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    doc = json.loads((out / "study.json").read_text())
    kv = _kv(doc)
    summary = (out / "summary.png").read_bytes()
    assert summary[:8] == b"\x89PNG\r\n\x1a\n" and summary != summary_before  # drawn again from the review
    length = float(np.linalg.norm(pts["APEX"] - (pts["AL-P"] + pts["IS-P"]) / 2.0))
    assert kv["LV length ED (4CH)"]["value"] == pytest.approx(length, abs=1e-3)
    assert kv["LV length ED (4CH)"]["status"] == "ok" and kv["LV length ED (4CH)"]["flags"] == ["high"] * 3
    assert kv["RVI angle (mid, ED)"]["value"] == pytest.approx(saved_angle, abs=1e-3)
    assert abs(kv["RVI angle (mid, ED)"]["value"] - before["RVI angle (mid, ED)"]["value"]) > 1.0
    # still 'review': this file's header puts the RV behind the LV, a check no reader's point can lift
    assert kv["RVI angle (mid, ED)"]["status"] == "review" and "orientation review" in kv["RVI angle (mid, ED)"]["flags"]
    names = {c[0] for c in upd.changes}
    assert {"LV length ED (4CH)", "RVI angle (mid, ED)"} <= names
    assert {(a.task, a.corrected, a.confirmed > 0) for a in upd.analyses} == {("sax", 1, False), ("lax", 0, True)}
    assert doc["review"]["analyses"][0] == {"task": "sax", "series": "001_SA", "corrected": 1, "confirmed": 0}
    # the cross-check uses the reviewed apex: its distance from the SAX LV axis, computed here
    sax = read_result(sax_folder)
    clv = np.array([x.position for x in sax.landmarks if x.name == "C-LV" and x.phase == 0 and x.found])
    n = np.cross(series.direction[:, 0], series.direction[:, 1])
    n /= np.linalg.norm(n)
    d = pts["APEX"] - clv.mean(axis=0)
    axis = kv["LAX apex to SAX LV axis (001_LA_CINE)"]
    assert axis["value"] == pytest.approx(float(np.linalg.norm(d - (d @ n) * n)), abs=1e-3)
    assert doc["status"] == "review" and upd.status_after == "review"
    assert upd.cohort["lv_length_ed_mm_status"] == "ok"
    assert upd.cohort["lv_length_ed_mm"] == pytest.approx(length, abs=1e-3)


def test_point_list_edited_and_saved_in_slicer_counts(out):
    """A reader who drags a point in Slicer and saves the folder's point list (Slicer's own markups file, newer than
    landmarks.json) is reviewed too: apply-review reads the point list and recomputes from the moved point."""
    before = _kv(json.loads((out / "study.json").read_text()))
    k = int(before["RVI angle (mid, ED)"]["detail"].split()[1].rstrip(","))
    path = out / "001_SA_sax" / "landmarks_phase00.mrk.json"
    doc = json.loads(path.read_text())
    cp = next(c for c in doc["markups"][0]["controlPoints"] if c["label"] == f"I-RVI s{k} p0")
    cp["position"] = [cp["position"][0] + 5.0, cp["position"][1], cp["position"][2]]  # what a drag in Slicer does
    path.write_text(json.dumps(doc))  # saved after landmarks.json
    upd = apply_review(out)
    kv = _kv(json.loads((out / "study.json").read_text()))
    assert [(a.task, a.corrected) for a in upd.analyses] == [("sax", 1), ("lax", 0)]
    assert kv["RVI opening angle (mid, ED)"]["value"] != pytest.approx(before["RVI opening angle (mid, ED)"]["value"],
                                                                        abs=0.5)
    assert kv["RVI angle (mid, ED)"] == before["RVI angle (mid, ED)"]  # the A-RVI did not move


@pytest.mark.slow
def test_dicom_study_series_are_found_again(tmp_path):
    """A DICOM study folder holding several series (the Sunnybrook cine written as one series per slice, as Siemens
    stores SAX stacks, next to the GE perfusion series): the SAX result records the series UIDs of its stack, so
    load_source assembles the same stack again (before, 'source' named the study folder, which load_series refuses
    with 'several series': neither the review app nor apply-review could open it), and apply-review without a
    review reproduces the report."""
    require_data("sunnybrook", "SCD0000101", "dicom")
    require_data("perfusion", "ge_dicom")
    study = sm.split_per_slice(require_data(), tmp_path / "study")
    for f in sorted((require_data() / "perfusion" / "ge_dicom").glob("I*")):
        (study / f"ge_{f.name}").symlink_to(f)
    out = tmp_path / "out"
    res = analyse_study(study, out)
    res.write(out)
    sax = next(o for o in res.outcomes if o.task == "sax" and o.ok)
    folder = out / f"{sax.series_key}_sax"
    lm = read_result(folder)
    assert Path(lm.source) == study and len(lm.source_series_uids) > 1  # a stack of per-slice series
    with pytest.raises(MixedSeriesError, match="MR image series"):
        load_series(study)  # the folder alone is ambiguous
    series = load_source(lm, folder)
    entry = next(e for e in res.routing.series if e.key == sax.series_key)
    np.testing.assert_array_equal(series.pixels, entry.load().pixels)
    before = json.loads((out / "study.json").read_text())
    upd = apply_review(out)
    assert upd.changes == [] and json.loads((out / "study.json").read_text())["key_values"] == before["key_values"]


def test_apply_review_errors_are_named_and_write_nothing(out, tmp_path, capsys):
    with pytest.raises(InputNotFoundError, match="not a study output folder"):
        apply_review(tmp_path / "nothing")
    assert cli_main(["apply-review", str(tmp_path / "nothing")]) == 1
    assert "not a study output folder" in capsys.readouterr().err
    shutil.rmtree(out / "001_LA_CINE_lax")
    text = (out / "study.json").read_text()
    with pytest.raises(InputNotFoundError, match="landmarks.json"):
        apply_review(out)
    assert (out / "study.json").read_text() == text and not list(out.glob("study.json.bak-*"))


def test_apply_review_waits_for_a_study_running_into_the_folder(out):
    """apply-review on a study folder while `study` is run again into it (another terminal) rewrote study.json
    between the study's files; it is now refused by name while the folder is held, and writes nothing."""
    from conftest import held_by_another_process

    from CardiacLandmarksLib.core.errors import OutputPathError

    text = (out / "study.json").read_text(encoding="utf-8")
    with held_by_another_process(out, "study") as holder:
        with pytest.raises(OutputPathError, match=rf"another run is writing into .* \(study: process {holder.pid} "):
            apply_review(out)
    assert (out / "study.json").read_text(encoding="utf-8") == text and not list(out.glob("study.json.bak-*"))
    assert apply_review(out).study_dir == out  # the lock went with its process


@pytest.mark.slow
def test_batch_cohort_table_follows_the_review(tmp_path, capsys):
    """A batch of two copies of the study (and one that fails); the reader reviews study 'b'; apply-review on the
    batch folder updates b's row of cohort.csv (LV length ED ok, the reviewed value), keeps a's row and the
    input order, and stores the new row in batch.sqlite; a study whose result folder is gone is reported and
    keeps its values."""
    from CardiacLandmarksLib.batch.engine import run_batch

    require_data("mnms2", "001")
    study = sm.mnms2_study(require_data(), tmp_path / "src" / "001")
    m = tmp_path / "m.csv"
    m.write_text(f"study_id,path\nb,{study}\nmissing,{tmp_path / 'nope'}\na,{study}\n")
    out = tmp_path / "out"
    s = run_batch(m, out, engine="local", progress=False)
    assert (s.n_done, s.n_failed) == (2, 1)
    rows0 = list(csv.DictReader(open(out / "cohort.csv")))
    assert [r["study_id"] for r in rows0] == ["b", "missing", "a"]
    assert rows0[0]["lv_length_ed_mm_status"] == "review"
    _ed, pts = _review_lax(out / "studies" / "b" / "001_LA_CINE_lax")
    assert cli_main(["apply-review", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "LV length ED (4CH): " in printed and "2 studies updated, 0 not" in printed
    rows = {r["study_id"]: r for r in csv.DictReader(open(out / "cohort.csv"))}
    assert list(rows) == ["b", "missing", "a"]
    length = float(np.linalg.norm(pts["APEX"] - (pts["AL-P"] + pts["IS-P"]) / 2.0))
    assert rows["b"]["lv_length_ed_mm_status"] == "ok"
    assert float(rows["b"]["lv_length_ed_mm"]) == pytest.approx(length, abs=1e-3)
    assert rows["a"] == {**rows0[2]}  # not reviewed: the same row
    assert rows["missing"]["status"] == "failed"
    rec = json.loads(sqlite3.connect(out / "batch.sqlite").execute(
        "SELECT record FROM studies WHERE study_id='b'").fetchone()[0])
    assert rec["row"]["lv_length_ed_mm_status"] == "ok" and rec["reviewed"]["points"] > 0
    applied = json.loads((out / "studies" / "b" / "study.json").read_text())["review"]["applied"]
    assert rec["reviewed"]["applied"] == applied
    # a study whose result folder is gone: named, kept, the others still updated
    shutil.rmtree(out / "studies" / "a" / "001_SA_sax")
    assert cli_main(["apply-review", str(out)]) == 1
    cap = capsys.readouterr()
    assert "a: review not applied, values kept: InputNotFoundError" in cap.err
    assert "0 studies updated, 1 not, 1 as reviewed before (nothing saved since: report kept, no backup)" in cap.out
    rec = json.loads(sqlite3.connect(out / "batch.sqlite").execute(
        "SELECT record FROM studies WHERE study_id='b'").fetchone()[0])
    assert rec["reviewed"]["applied"] == applied  # the report kept: the time its review was applied
    assert {r["study_id"]: r for r in csv.DictReader(open(out / "cohort.csv"))}["a"] == rows0[2]
