"""Cohort batch: manifest, SQLite state and resume, isolation of failing studies, Dask engine.

The Dask test starts a real LocalCluster (2 worker processes, 1 thread each, 127.0.0.1) on
two ACDC patients, a corrupt study and a missing one.
"""

from __future__ import annotations

import csv
import itertools
import json
import sqlite3

import nibabel as nib
import numpy as np
import pytest
from conftest import require_data

from CardiacLandmarksLib.batch.engine import run_batch
from CardiacLandmarksLib.batch.manifest import ManifestError, discover_studies, load_studies, read_manifest
from CardiacLandmarksLib.core.errors import InputNotFoundError


def _write(path, text):
    path.write_text(text)
    return path


def _corrupt_study(tmp_path):
    d = tmp_path / "corrupt_study"
    d.mkdir()
    (d / "cine_ED.nii.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 300)  # a gzip header, then nothing usable
    return d


def test_manifest_reading(tmp_path):
    (tmp_path / "p1_ED.nii.gz").write_bytes(b"")
    (tmp_path / "p1_ES.nii.gz").write_bytes(b"")
    m = _write(tmp_path / "m.csv", "study_id,path,height_cm,weight_kg,site\n"
                                   "p 1,p1_*.nii.gz,170,70.5,A\nb,/nowhere/at/all,,,B\n")
    s = read_manifest(m)
    assert [x.study_id for x in s] == ["p_1", "b"]
    assert [p.rsplit("/", 1)[-1] for p in s[0].paths] == ["p1_ED.nii.gz", "p1_ES.nii.gz"]
    assert (s[0].height_cm, s[0].weight_kg, s[0].extra) == (170.0, 70.5, {"site": "A"})
    assert s[1].paths == ["/nowhere/at/all"] and s[1].height_cm is None  # a missing path fails its study only
    with pytest.raises(ManifestError, match="missing column"):
        read_manifest(_write(tmp_path / "bad.csv", "id,file\nx,y\n"))
    with pytest.raises(ManifestError, match="duplicate"):
        read_manifest(_write(tmp_path / "dup.csv", "study_id,path\nx,a\nx,b\n"))
    with pytest.raises(ManifestError, match="not a number"):
        read_manifest(_write(tmp_path / "num.csv", "study_id,path,height_cm\nx,a,tall\n"))
    with pytest.raises(InputNotFoundError):
        load_studies(tmp_path / "absent.csv")
    # a height in metres (or a weight in grams) made every study's function analysis fail, one by one, after the
    # batch had run them all: now the manifest is refused before any study runs, naming the row; one of the two
    # alone is allowed (the study reports volumes without indexing them)
    with pytest.raises(ManifestError, match=r"row 3 \(y\): height 1.7 cm is not plausible"):
        read_manifest(_write(tmp_path / "m1.csv", "study_id,path,height_cm,weight_kg\nx,a,170,70\ny,b,1.7,70\n"))
    with pytest.raises(ManifestError, match=r"row 2 \(x\): weight 70000.0 kg is not plausible"):
        read_manifest(_write(tmp_path / "m2.csv", "study_id,path,height_cm,weight_kg\nx,a,170,70000\n"))
    (half,) = read_manifest(_write(tmp_path / "m3.csv", "study_id,path,height_cm,weight_kg\nx,a,170,\n"))
    assert (half.height_cm, half.weight_kg) == (170.0, None)


def test_a_manifest_saved_by_excel_on_windows_is_read(tmp_path, progress_log):
    """Excel on Windows saves "CSV (Comma delimited)" as Windows-1252: a manifest with 'Müller, Hans' ended the
    batch in a UnicodeDecodeError traceback. It is read, with a note saying how it was read and how to save it."""
    m = tmp_path / "m.csv"
    m.write_bytes('study_id,path,height_cm\r\n"Müller, Hans",a,172.5\r\nPérez,b,160\r\n'.encode("cp1252"))
    with progress_log.at_level("INFO", logger="CardiacLandmarksLib.progress"):
        studies = read_manifest(m)
    assert [(x.study_id, x.height_cm) for x in studies] == [("Müller_Hans", 172.5), ("Pérez", 160.0)]
    assert "note: m.csv is not UTF-8: read as Windows-1252 (Excel's 'CSV (Comma delimited)')" in progress_log.text


def test_study_ids_keep_their_letters_and_never_silently_merge(tmp_path, progress_log):
    """A study id lost its non-ASCII letters ('Müller, Hans' -> 'M_ller_Hans', and 'Mäller, Hans' gave the same id:
    "duplicate study_id" for a manifest without duplicates); two sub-folders 'Patient 1' and 'Patient_1' gave one id
    and one of the two studies was silently dropped; a spreadsheet's semicolon-separated export was "missing
    columns study_id, path" though both were there."""
    m = _write(tmp_path / "m.csv", 'study_id,path\n"Müller, Hans",a\n"Mäller, Hans",b\n')
    with progress_log.at_level("INFO", logger="CardiacLandmarksLib.progress"):
        assert [x.study_id for x in read_manifest(m)] == ["Müller_Hans", "Mäller_Hans"]
    assert "row 2: study_id 'Müller, Hans' is 'Müller_Hans' as a folder name and in cohort.csv" in progress_log.text
    with pytest.raises(ManifestError, match=r"rows 2 and 3: study_ids 'Müller, Hans' and 'Müller Hans' both give the "
                                             r"folder name 'Müller_Hans'"):
        read_manifest(_write(tmp_path / "m2.csv", 'study_id,path\n"Müller, Hans",a\nMüller Hans,b\n'))
    with pytest.raises(ManifestError, match=r"duplicate study_id 'x' \(row 2\)"):
        read_manifest(_write(tmp_path / "m3.csv", "study_id,path\nx,a\nx,b\n"))
    with pytest.raises(ManifestError, match="separated by semicolons, not commas"):
        read_manifest(_write(tmp_path / "m4.csv", "study_id;path;height_cm\r\np1;a;172,5\r\n"))
    studies = tmp_path / "studies"
    for name in ("Patient 1", "Patient_1"):
        (studies / name).mkdir(parents=True)
    with pytest.raises(ManifestError, match=r"'Patient 1' and the sub-folder 'Patient_1' both give the study id "
                                             r"'Patient_1': rename one"):
        discover_studies(studies)


def test_manifest_pixel_size_and_frame_interval_per_study(tmp_path):
    """A cohort from several sites whose files lost their headers: each study's pixel size and frame interval in
    the manifest win over the batch's options; a blank cell takes the batch's; a non-positive one is an error."""
    m = _write(tmp_path / "m.csv", "study_id,path,pixel_size_mm,frame_interval_s\n"
                                   "a,/x/a,2.0,0.5\nb,/x/b,,\n")
    a, b = read_manifest(m)
    assert (a.pixel_size_mm, a.frame_interval_s, a.extra) == (2.0, 0.5, {})
    batch = {"pixel_size_mm": 1.5, "frame_interval_s": None, "concentration": True}
    assert a.study_options(batch) == {"pixel_size_mm": 2.0, "frame_interval_s": 0.5, "concentration": True}
    assert b.study_options(batch) == batch and b.study_options(None) == {}
    with pytest.raises(ManifestError, match="pixel_size_mm '-1' is not a positive number"):
        read_manifest(_write(tmp_path / "neg.csv", "study_id,path,pixel_size_mm\nx,a,-1\n"))
    # values no cardiac MR series has (a frame interval in ms, a pixel size in cm) are manifest errors too, found
    # before any study runs (before, each such study ran and failed, or gave upslopes 1000 times too shallow)
    with pytest.raises(ManifestError, match=r"ms.csv row 2 \(x\): frame_interval_s: frame interval 800.0 s is not "
                                            r"one of a first-pass perfusion series"):
        read_manifest(_write(tmp_path / "ms.csv", "study_id,path,frame_interval_s\nx,a,800\n"))
    with pytest.raises(ManifestError, match=r"cm.csv row 2 \(x\): pixel_size_mm: pixel size 0.15 mm is not a cardiac MR pixel"):
        read_manifest(_write(tmp_path / "cm.csv", "study_id,path,pixel_size_mm\nx,a,0.15\n"))


def test_folder_of_studies(tmp_path):
    (tmp_path / "studyA").mkdir()
    (tmp_path / ".hidden").mkdir()
    for n in ("patient007_ED.nii.gz", "patient007_ES.nii.gz", "patient008_ED.nii.gz", "notes.txt"):
        (tmp_path / n).write_bytes(b"")
    s = discover_studies(tmp_path)
    assert [x.study_id for x in s] == ["patient007", "patient008", "studyA"]
    assert len(s[0].paths) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ManifestError, match="no study"):
        discover_studies(empty)


def test_failing_studies_recorded_and_resume(tmp_path):
    """No model needed: a corrupt and a missing study fail, are recorded, and are skipped next time."""
    m = _write(tmp_path / "m.csv", f"study_id,path\ncorrupt,{_corrupt_study(tmp_path)}\nmissing,{tmp_path / 'nope'}\n")
    out = tmp_path / "out"
    s = run_batch(m, out, engine="local", progress=False)
    assert (s.n_run, s.n_done, s.n_failed) == (2, 0, 2)
    rows = list(csv.DictReader(open(out / "cohort.csv")))
    assert [(r["study_id"], r["status"]) for r in rows] == [("corrupt", "failed"), ("missing", "failed")]
    assert "CorruptFileError" in rows[0]["error"] and "InputNotFoundError" in rows[1]["error"]
    assert (out / "studies" / "missing" / "error.txt").read_text().startswith("Traceback")
    assert not list((out / "studies").glob(".*partial*"))
    db = sqlite3.connect(out / "batch.sqlite")
    assert dict(db.execute("SELECT study_id, status FROM studies")) == {"corrupt": "failed", "missing": "failed"}
    first = (out / "cohort.csv").read_text()
    s2 = run_batch(m, out, engine="local", progress=False)
    assert (s2.n_skipped, s2.n_run) == (2, 0)
    assert (out / "cohort.csv").read_text() == first
    # a kill during a run leaves the study 'running' and a hidden partial folder: the next run redoes it
    db.execute("UPDATE studies SET status='running' WHERE study_id='corrupt'")
    db.commit()
    (out / "studies" / ".corrupt.partial-99999").mkdir()
    s_kill = run_batch(m, out, engine="local", progress=False)
    assert (s_kill.n_skipped, s_kill.n_run, s_kill.n_failed) == (1, 1, 1)
    assert not list((out / "studies").glob(".*partial*"))
    assert (out / "cohort.csv").read_text() == first
    (out / "studies" / "missing" / "my_notes.txt").write_text("a file the user put there")
    s3 = run_batch(m, out, engine="local", progress=False, redo=True)
    assert s3.n_run == 2
    # the earlier output is kept where the new run did not write the same: the user's file, not the error.txt that
    # came out identical (before, a full copy of every study folder at each --redo)
    (bak,) = (out / "studies").glob("missing.bak-*")
    assert sorted(p.name for p in bak.rglob("*")) == ["my_notes.txt"]
    assert (out / "studies" / "missing" / "error.txt").is_file()
    assert not list((out / "studies").glob("corrupt.bak-*"))
    assert db.execute("SELECT attempts FROM studies WHERE study_id='missing'").fetchone()[0] == 2



def test_redo_with_the_same_results_keeps_no_backup(tmp_path, monkeypatch):
    """A --redo that computes the same writes the same study folder, so no backup is kept: the analysis times
    were in study.json, so a slower re-run (here 1 s per clock reading; in CI, a loaded machine now and then)
    kept study.json and run.json in a corrupt.bak-* folder (an intermittent failure of
    test_failing_studies_recorded_and_resume). The times are in run.json's 'timings' now."""
    from CardiacLandmarksLib.study import analyse

    m = _write(tmp_path / "m.csv", f"study_id,path\ncorrupt,{_corrupt_study(tmp_path)}\n")
    out = tmp_path / "out"
    assert run_batch(m, out, engine="local", progress=False).n_failed == 1
    first = (out / "studies" / "corrupt" / "study.json").read_text()
    clock = itertools.count()  # (the time module's own clock: every reading in the process moves it)
    monkeypatch.setattr(analyse.time, "perf_counter", lambda: float(next(clock)))
    assert run_batch(m, out, engine="local", progress=False, redo=True).n_run == 1
    assert not list((out / "studies").glob("corrupt.bak-*"))
    assert (out / "studies" / "corrupt" / "study.json").read_text() == first
    run = json.loads((out / "studies" / "corrupt" / "run.json").read_text())
    assert run["timings"]["study_s"] >= 1.0 and run["timings"]["analyses"] == []

def _acdc_manifest(tmp_path, patients):
    acdc = require_data("acdc")
    info = {r["patient"]: r for r in csv.DictReader(open(acdc / "acdc_info.csv"))}
    lines = ["study_id,path,height_cm,weight_kg"]
    for p in patients:
        lines.append(f"{p},{acdc}/{p}_*.nii.gz,{info[p]['height_cm']},{info[p]['weight_kg']}")
    lines.append(f"corrupt,{_corrupt_study(tmp_path)},,")
    lines.append(f"missing,{tmp_path / 'not_there'},,")
    return _write(tmp_path / "manifest.csv", "\n".join(lines) + "\n")


@pytest.mark.data
@pytest.mark.slow
def test_dask_two_workers_same_cohort_as_one(tmp_path):
    m = _acdc_manifest(tmp_path, ["patient001", "patient002"])
    s1 = run_batch(m, tmp_path / "w1", workers=1, progress=False)
    s2 = run_batch(m, tmp_path / "w2", workers=2, progress=False)
    assert (s1.n_done, s1.n_failed, s2.n_done, s2.n_failed) == (2, 2, 2, 2)
    c1 = (tmp_path / "w1" / "cohort.csv").read_text().replace(str(tmp_path / "w1"), "")
    c2 = (tmp_path / "w2" / "cohort.csv").read_text().replace(str(tmp_path / "w2"), "")
    assert c1 == c2
    rows = {r["study_id"]: r for r in csv.DictReader(open(tmp_path / "w2" / "cohort.csv"))}
    assert rows["patient001"]["status"] == "done" and "sax" in rows["patient001"]["analyses"].split(";")
    assert float(rows["patient001"]["height_cm"]) == 184.0 and rows["patient001"]["rvi_angle_deg"]
    # LV mass and the indexed values (MESA / UK Biobank report them): the mass is 1.05 g/ml times the myocardium
    # of the ED segmentation the study wrote, each index the value over the Mosteller BSA of the manifest's height
    # and weight; a study without height and weight has mass but blank indices
    r1 = rows["patient001"]
    seg = nib.load(tmp_path / "w2" / "studies" / "patient001" / "patient001_function" /
                   "patient001_ED_segmentation.nii.gz")
    myo_ml = float((np.asarray(seg.dataobj) == 2).sum()) * float(np.prod(seg.header.get_zooms()[:3])) / 1000.0
    assert float(r1["lv_mass_g"]) == pytest.approx(1.05 * myo_ml, rel=1e-3) and r1["lv_mass_g_status"] in ("ok", "review")
    bsa = (float(r1["height_cm"]) * float(r1["weight_kg"]) / 3600.0) ** 0.5
    for col in ("lv_edv", "lv_esv", "rv_edv", "rv_esv"):
        assert float(r1[f"{col}_index_ml_m2"]) == pytest.approx(float(r1[f"{col}_ml"]) / bsa, rel=2e-3), col
    assert float(r1["lv_mass_index_g_m2"]) == pytest.approx(float(r1["lv_mass_g"]) / bsa, rel=2e-3)
    assert float(r1["lv_sv_ml"]) == pytest.approx(float(r1["lv_edv_ml"]) - float(r1["lv_esv_ml"]), abs=2e-3)
    assert float(r1["lv_edv_ml"]) != float(r1["lv_edv_index_ml_m2"])  # the plain column is not the index
    assert rows["corrupt"]["status"] == "failed" and rows["missing"]["status"] == "failed"
    assert len(s2.worker_peak_rss_mb) == 2
    # each model is loaded once per worker: the records say how many loads each study caused
    db = sqlite3.connect(tmp_path / "w1" / "batch.sqlite")
    recs = [json.loads(r) for (r,) in db.execute("SELECT record FROM studies")]
    assert sum(r.get("model_loads", {}).get("sax", 0) for r in recs) == 1  # one worker: one load
    assert {r["tta"] for r in recs} == {True}  # the default: mirror TTA (batch --no-tta turns it off)
    for d in ("w1", "w2"):
        assert (tmp_path / d / "studies" / "patient001" / "study.json").exists()
    if s2.cohort_parquet is not None:
        import pyarrow.parquet as pq

        assert pq.read_table(s2.cohort_parquet).num_rows == 4
    # resume: a second run skips every finished study
    s3 = run_batch(m, tmp_path / "w2", workers=2, progress=False)
    assert (s3.n_skipped, s3.n_run) == (4, 0)


@pytest.mark.data
def test_batch_no_tta_reaches_the_workers_and_is_recorded(tmp_path, monkeypatch):
    """``batch --no-tta`` (cohorts on CPU): the worker's analyses run the SAX network without its mirror pass, and
    the study record and study.json say so."""
    from CardiacLandmarksLib.cli import main
    from CardiacLandmarksLib.models.loader import LoadedModel

    seen = []
    orig = LoadedModel.predict_maps

    def spy(self, images, tta=True, *a, **kw):
        seen.append((self.name, bool(tta)))
        return orig(self, images, tta, *a, **kw)

    monkeypatch.setattr(LoadedModel, "predict_maps", spy)
    m = _acdc_manifest(tmp_path, ["patient001"])
    out = tmp_path / "out"
    assert main(["batch", str(m), "-o", str(out), "--engine", "local", "--no-tta", "--no-progress"]) == 0
    assert ("sax_unet", False) in seen and not [x for x in seen if x[1]], sorted(set(seen))
    db = sqlite3.connect(out / "batch.sqlite")
    recs = {json.loads(r)["study_id"]: json.loads(r) for (r,) in db.execute("SELECT record FROM studies")}
    assert recs["patient001"]["status"] == "done" and recs["patient001"]["tta"] is False
    d = json.loads((out / "studies" / "patient001" / "study.json").read_text())
    assert d["settings"] == {"device": "cpu", "tta": False}


def test_folder_of_studies_leaves_out_its_own_results(tmp_path):
    """``batch STUDIES -o STUDIES/out`` ran, and at its resume took ``out`` for a study and failed it ("no DICOM
    series and no image file found in STUDIES/out"); a ``study -o`` folder there was taken for a study too."""
    (tmp_path / "p001").mkdir()
    (tmp_path / "p001" / "cine.nii.gz").write_bytes(b"")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "batch.sqlite").write_bytes(b"")
    (tmp_path / "one_study").mkdir()
    for name in ("study.json", "run.json"):
        (tmp_path / "one_study" / name).write_text("{}")
    (tmp_path / "notes_only").mkdir()
    (tmp_path / "notes_only" / "study.json").write_text("{}")  # not our result without its run.json: kept
    (tmp_path / "detect_out").mkdir()  # a detect output (run.json, no study.json): a result, as the routing says
    for name in ("run.json", "landmarks.json"):
        (tmp_path / "detect_out" / name).write_text("{}")
    assert [s.study_id for s in discover_studies(tmp_path)] == ["notes_only", "p001"]


def test_cli_counts_one_study_in_the_singular(tmp_path, capsys):
    """The batch summary line read "1 studies: ..." for a one-study cohort (fixed for apply-review, not here)."""
    from CardiacLandmarksLib.cli import main

    m = _write(tmp_path / "m.csv", f"study_id,path\nmissing,{tmp_path / 'nope'}\n")
    assert main(["batch", str(m), "-o", str(tmp_path / "out"), "--engine", "local", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 study: 0 already finished (skipped), 1 run (0 done, 1 failed)"), out


@pytest.mark.data
def test_height_and_weight_from_the_dicom_header(tmp_path):
    """A DICOM cohort whose manifest gives no height or weight: the scanner recorded them (PatientSize in m,
    PatientWeight in kg), so volumes and mass are indexed with them, and cohort.csv says where they came from. A
    manifest's own values win."""
    import study_material as sm

    study = sm.with_patient_size(require_data(), tmp_path / "sb", "1.75", "80")
    m = _write(tmp_path / "m.csv", f"study_id,path,height_cm,weight_kg\nfrom_header,{study},,\n"
                                   f"from_manifest,{study},160,60\n")
    s = run_batch(m, tmp_path / "out", engine="local", progress=False, tta=False)
    assert (s.n_done, s.n_failed) == (2, 0)
    rows = {r["study_id"]: r for r in csv.DictReader(open(tmp_path / "out" / "cohort.csv"))}
    head, man = rows["from_header"], rows["from_manifest"]
    assert (float(head["height_cm"]), float(head["weight_kg"]), head["height_weight_source"]) == (175.0, 80.0,
                                                                                                  "DICOM header")
    assert (float(man["height_cm"]), float(man["weight_kg"]), man["height_weight_source"]) == (160.0, 60.0, "manifest")
    for row, (h, w) in ((head, (175.0, 80.0)), (man, (160.0, 60.0))):
        bsa = (h * w / 3600.0) ** 0.5
        assert float(row["lv_edv_index_ml_m2"]) == pytest.approx(float(row["lv_edv_ml"]) / bsa, rel=2e-3)
    doc = json.loads((tmp_path / "out" / "studies" / "from_header" / "study.json").read_text())
    assert doc["subject"] == {"height_cm": 175.0, "weight_kg": 80.0, "source": "DICOM header"}
    assert any(n.startswith("height 175 cm and weight 80 kg from the DICOM header") for n in doc["notes"])


def test_ctrl_c_keeps_what_finished_and_says_how_to_go_on(tmp_path, monkeypatch, capsys):
    """Ctrl-C during a batch printed a KeyboardInterrupt traceback (one per Dask worker too). Now the batch says how
    many studies are recorded as finished and that the same command resumes; exit status 130, as a shell gives."""
    from CardiacLandmarksLib.batch import engine
    from CardiacLandmarksLib.cli import main

    m = _write(tmp_path / "m.csv", f"study_id,path\ncorrupt,{_corrupt_study(tmp_path)}\n"
                                   f"missing,{tmp_path / 'nope'}\nmissing2,{tmp_path / 'nope2'}\n")
    out = tmp_path / "out"
    real, calls = engine.run_study, []

    def stopped_at_the_second(spec, *args, **kwargs):
        calls.append(spec.study_id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(engine, "run_study", stopped_at_the_second)
    assert main(["batch", str(m), "-o", str(out), "--engine", "local", "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("cardiac-landmarks: interrupted (Ctrl-C): 1 of the 3 studies to run finished (0 done, "
                          f"1 failed) and are recorded in {out / 'batch.sqlite'}; the same command again goes on "
                          "with the rest"), err
    monkeypatch.undo()
    s = run_batch(m, out, engine="local", progress=False)
    assert (s.n_skipped, s.n_run) == (1, 2)


@pytest.mark.data
@pytest.mark.slow
def test_ctrl_c_in_the_terminal_stops_a_dask_batch_without_tracebacks(tmp_path):
    """A terminal's Ctrl-C reaches the whole foreground process group: the batch and its Dask worker processes.
    Each worker printed a KeyboardInterrupt traceback and the batch its own (five in all). The workers now start
    with SIGINT ignored, so the batch alone stops: it closes the cluster and says how to go on, with the cluster's
    shutdown logs off (a worker still inside a study logged a heartbeat traceback in two runs of five)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    m = _acdc_manifest(tmp_path, ["patient001", "patient002"])
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from CardiacLandmarksLib.cli import main; sys.exit(main())",
                             "batch", str(m), "-o", str(out),
                             "--workers", "2", "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and not list((out / "studies").glob(".patient*")):
        time.sleep(0.2)  # until a worker has begun a study (its hidden partial folder)
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    # nor the workers' and nannies' shutdown lines (a cancelled task, a failed heartbeat, 'killing'): two runs in five
    # printed a heartbeat traceback before the batch turned the cluster's logs off as it stops
    assert "distributed." not in stderr, stderr
    assert "cardiac-landmarks: interrupted (Ctrl-C): " in stderr and "the same command again goes on" in stderr
    s = run_batch(m, out, workers=1, progress=False)  # resumes
    assert s.n_skipped + s.n_run == 4 and s.n_done == 2


def test_one_batch_at_a_time_per_output_folder(tmp_path):
    """A second batch into a folder where one was running removed the first's hidden partial study folders as
    leftovers of a killed run (its studies failed with FileNotFoundError) and overwrote its records. The folder is
    now held by an OS file lock: here another process holds it, and batch and apply-review are refused by name."""
    import time

    from conftest import held_by_another_process

    from CardiacLandmarksLib.core.errors import OutputPathError
    from CardiacLandmarksLib.study.review import apply_review_batch

    m = _write(tmp_path / "m.csv", f"study_id,path\nmissing,{tmp_path / 'nope'}\n")
    out = tmp_path / "out"
    run_batch(m, out, engine="local", progress=False)
    with held_by_another_process(out, "batch") as holder:
        in_flight = out / ".cohort.csv.1a2b.tmp"  # the running batch's file being written (io.atomic's naming)
        in_flight.write_text("study_id,status\n", encoding="utf-8")
        with pytest.raises(OutputPathError, match=rf"another run is writing into .*out \(batch: process {holder.pid} "
                                                  r"on .+, started .+\): wait for it to end"):
            run_batch(m, out, engine="local", progress=False, redo=True)
        with pytest.raises(OutputPathError, match="another run is writing into"):
            apply_review_batch(out)
        assert in_flight.exists()  # the refused batch removed it as a killed run's leftover before being refused
    db = sqlite3.connect(out / "batch.sqlite")
    assert db.execute("SELECT attempts FROM studies").fetchone()[0] == 1  # the refused batch ran nothing
    time.sleep(0.1)
    assert run_batch(m, out, engine="local", progress=False, redo=True).n_run == 1  # the lock went with its process


@pytest.mark.data
def test_a_full_disk_fails_the_study_not_the_batch(tmp_path, monkeypatch):
    """With a full disk, each study's first unwritten file fails that study (recorded failed, so `--retry-failed`
    runs it once there is room); before, the study went on and was recorded done with its analyses missing."""
    import errno

    from CardiacLandmarksLib.io import atomic

    m = _acdc_manifest(tmp_path, ["patient001"])
    real_mkstemp = atomic.tempfile.mkstemp

    def full_in_studies(*args, **kwargs):  # no room for a new file under studies/ (the state and cohort have room)
        if "studies" in str(kwargs.get("dir", "")):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(atomic.tempfile, "mkstemp", full_in_studies)
    s = run_batch(m, tmp_path / "out", engine="local", progress=False)
    errors = dict(s.failed)
    assert errors["patient001"].startswith("OutputPathError: cannot write ") and "No space left" in errors["patient001"]
    monkeypatch.undo()
    s2 = run_batch(m, tmp_path / "out", engine="local", progress=False, retry_failed=True)
    assert s2.n_done == 1


def test_local_cluster_size_follows_the_studies_and_says_when_it_outruns_the_machine(monkeypatch, progress_log):
    caplog = progress_log
    """`--workers 6` for 4 studies on this 2-core machine started 6 processes (2 idle, 200 MB each) and ran
    the cohort in 27 s against 18 s with 2 workers, without a word."""
    from types import SimpleNamespace

    import psutil

    from CardiacLandmarksLib.batch import engine

    monkeypatch.setattr(engine.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=64e9))
    with caplog.at_level("INFO", logger="CardiacLandmarksLib"):
        assert engine._local_workers(6, 4) == 4 and engine._local_workers(2, 40) == 2
        assert engine._local_workers(3, 0) == 1
    notes = [r.getMessage() for r in caplog.records if r.name == "CardiacLandmarksLib.progress"]
    assert notes == ["note: 4 workers on 2 CPU cores: each study runs on one core, so workers beyond the cores "
                     "share them and every study runs slower (--workers 2 is usually the fastest here)"]
    caplog.clear()
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=1.5e9))
    with caplog.at_level("INFO", logger="CardiacLandmarksLib"):
        engine._local_workers(2, 10)
    assert "2 workers need about 2 GB of memory at their peak (1.0 GB each, measured), 1.5 GB is free" in caplog.text


@pytest.mark.data
def test_batch_says_what_is_left_to_review(tmp_path, capsys):
    """A cohort analyst learnt how many studies ran, not how many a reader must still look at: the batch (and
    apply-review on its folder) now ends with the studies by status and, per cohort.csv column, how many of the
    studies that have the value hold it as 'review'. One real ACDC study (ED/ES pair) and a missing one."""
    import shutil

    from CardiacLandmarksLib.cli import main

    study = tmp_path / "p001"
    study.mkdir()
    for ph in ("ED", "ES"):
        shutil.copy(require_data("acdc", f"patient001_{ph}.nii.gz"), study)
    m = _write(tmp_path / "m.csv", f"study_id,path\np001,{study}\nmissing,{tmp_path / 'nope'}\n")
    out = tmp_path / "out"
    assert main(["batch", str(m), "-o", str(out), "--engine", "local", "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    (row,) = [r for r in csv.DictReader(open(out / "cohort.csv")) if r["status"] == "done"]
    assert row["study_status"] in ("ok", "review")
    assert f"study status: {'1 ok, 0 review' if row['study_status'] == 'ok' else '0 ok, 1 review'}, 1 failed" in lines
    doubted = [c[: -len("_status")] for c, v in row.items() if c.endswith("_status") and c != "study_status"
               and v == "review"]
    assert doubted and "lv_edv_ml" not in doubted  # ACDC has no orientation: its RVI angles are review
    expected = "values to review (cohort.csv *_status, of the studies that have the value): " + ", ".join(
        f"{c} 1 of 1" for c in doubted)
    assert expected in lines
    # the same after apply-review on the batch folder (nothing reviewed: nothing changes)
    assert main(["apply-review", str(out)]) == 0
    assert expected in capsys.readouterr().out.splitlines()


@pytest.mark.data
def test_batch_gives_unrecognised_series_the_sequence_asked_for(tmp_path, capsys):
    """A cohort of anonymised exports: each study a folder with one one-phase SAX stack named 'scan.nii.gz' (real
    ACDC frames), whose sequence neither tags nor shape tell. Without `--sequence` every study is listed only
    (nothing analysed, no RVI angle in cohort.csv); `batch --sequence lge` analyses each stack with the LGE model,
    and each study.json records the setting and the series' evidence."""
    from CardiacLandmarksLib.cli import main

    root = tmp_path / "cohort"
    for pid in ("patient001", "patient002"):
        (root / pid).mkdir(parents=True)
        (root / pid / "scan.nii.gz").symlink_to(require_data("acdc", f"{pid}_ED.nii.gz"))
    assert main(["batch", str(root), "-o", str(tmp_path / "plain"), "--engine", "local", "--no-progress"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "plain" / "cohort.csv")))
    assert [r["study_status"] for r in rows] == ["n/a", "n/a"] and not any(r["rvi_angle_lge_deg"] for r in rows)
    capsys.readouterr()
    out = tmp_path / "lge"
    assert main(["batch", str(root), "-o", str(out), "--engine", "local", "--no-progress", "--sequence", "lge"]) == 0
    rows = list(csv.DictReader(open(out / "cohort.csv")))
    assert len(rows) == 2 and all(r["status"] == "done" and float(r["rvi_angle_lge_deg"]) > 0 for r in rows)
    assert all(r["rvi_angle_lge_deg_status"] in ("ok", "review") and not r["rvi_angle_deg"] for r in rows)
    for pid in ("patient001", "patient002"):
        doc = json.loads((out / "studies" / pid / "study.json").read_text())
        assert doc["settings"]["sequence_of_unrecognised_series"] == "lge"
        assert list(doc["models"]) == ["sax_unet_lge"]
        (series,) = doc["routing"]["series"]
        assert series["sequence"] == "lge" and series["analyses"] == ["sax"]
        assert "sequence lge: given by the user (--sequence; from the tags and shape: unknown)" in series["evidence"]
    # a manifest's `sequence` column gives one study's (over --sequence); another word is a manifest error
    m = _write(tmp_path / "m.csv", f"study_id,path,sequence\np1,{root / 'patient001'},LGE\np2,{root / 'patient002'},\n")
    specs = read_manifest(m)
    assert [s.sequence for s in specs] == ["lge", None] and specs[0].extra == {}
    assert specs[0].study_options({"sequence": "cine"}) == {"sequence": "lge"}
    assert main(["batch", str(m), "-o", str(tmp_path / "mixed"), "--engine", "local", "--no-progress"]) == 0
    rows = {r["study_id"]: r for r in csv.DictReader(open(tmp_path / "mixed" / "cohort.csv"))}
    assert float(rows["p1"]["rvi_angle_lge_deg"]) > 0 and rows["p2"]["study_status"] == "n/a"
    with pytest.raises(ManifestError, match=r"bad.csv row 2 \(p1\): sequence 't2': one of cine, lge, perfusion"):
        read_manifest(_write(tmp_path / "bad.csv", "study_id,path,sequence\np1,a,t2\n"))


def test_a_cluster_worker_with_other_models_is_refused_before_any_study(tmp_path):
    """`batch --scheduler ADDRESS` runs the studies on the cluster's own installs. A worker machine with an older
    install (other models, other code) put its values into the same cohort.csv as the others, and nothing said so
    (each study's run.json records its models, the cohort table does not). The workers' code and models are now
    compared with the client's before any study is submitted; a worker that differs is named with what differs.
    Real LocalClusters on 127.0.0.1 reached by their scheduler address, as a cluster's is; the odd worker reads
    a copy of the models whose catalogue names another version of the SAX model."""
    import shutil

    from distributed import LocalCluster

    from CardiacLandmarksLib.batch.engine import BatchEngineError
    from CardiacLandmarksLib.core.config import models_root

    alt = tmp_path / "old_models"
    shutil.copytree(models_root(), alt)
    cat = json.loads((alt / "catalogue.json").read_text())
    sax = next(e for e in cat["models"] if e["name"] == "sax_unet")
    here = sax["version"]
    sax["version"] = "1.5.0"
    (alt / "catalogue.json").write_text(json.dumps(cat))
    m = _write(tmp_path / "m.csv", f"study_id,path\nmissing,{tmp_path / 'nowhere'}\n")
    for env, ok in (({"CARDIAC_LANDMARKS_MODELS": str(alt)}, False), ({}, True)):
        out = tmp_path / ("odd" if not ok else "same")
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, env=env) as cluster:
            if ok:  # the same install: the batch runs on the cluster (its one study fails: a missing path)
                s = run_batch(m, out, scheduler=cluster.scheduler_address, progress=False)
                assert (s.n_run, s.n_failed) == (1, 1)
                continue
            with pytest.raises(BatchEngineError, match=(
                    rf"^1 of 1 Dask workers run other code or models than this client \(tcp://127\.0\.0\.1:\d+: "
                    rf"sax_unet 1\.5\.0 \w+ \(here {here} \w+\)\); install the same version")):
                run_batch(m, out, scheduler=cluster.scheduler_address, progress=False)
            assert not (out / "studies").exists() or not any((out / "studies").iterdir())
    # a worker that joins after the check (a job queue starting it late) and runs the other install: its study is
    # recorded as failed, with why, and left out of the cohort's values (--retry-failed runs it again)
    import threading

    late = _write(tmp_path / "late.csv", f"study_id,path\nlate,{_corrupt_study(tmp_path)}\n")
    with LocalCluster(n_workers=0, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      env={"CARDIAC_LANDMARKS_MODELS": str(alt)}) as cluster:
        threading.Timer(2.0, cluster.scale, [1]).start()
        s = run_batch(late, tmp_path / "late", scheduler=cluster.scheduler_address, progress=False)
    assert (s.n_run, s.n_failed) == (1, 1)
    row = next(csv.DictReader(open(tmp_path / "late" / "cohort.csv")))
    assert row["status"] == "failed" and row["error"].startswith(
        "analysed on a Dask worker with other code or models than this client (sax_unet 1.5.0 ")
    assert row["error"].endswith("run the batch again with --retry-failed once every worker runs this install")
