"""A reader's review survives a re-run: ``study`` / ``detect`` into the folder of an earlier run and ``batch --redo``
carry the points a reader corrected or confirmed into the new detection of the same image
(:func:`CardiacLandmarksLib.results.carry_review`), the earlier run is kept as a backup, and the earlier review is
refused, with the reason, when the image is not the same. Real data: the M&Ms-2 subject-001 study (SAX ED/ES pair +
4CH cine) and ACDC patient001 ED."""

from __future__ import annotations

import copy
import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import study_material as sm
from conftest import require_data

from CardiacLandmarksLib.cli import main as cli_main
from CardiacLandmarksLib.io.load import load_series
from CardiacLandmarksLib.lax.tracking import retrack_landmark
from CardiacLandmarksLib.results import (
    carry_review,
    confirm_landmark,
    correct_landmark,
    find_results,
    load_source,
    read_result,
    recompute_measurements,
    save_result,
)
from CardiacLandmarksLib.study.review import apply_review

pytestmark = pytest.mark.data


def _pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _kv(doc: dict) -> dict:
    return {v["name"]: v for v in doc["key_values"] + doc["crosschecks"]}


def _review(out: Path) -> dict:
    """What a reader does in the review app on a study output: confirm the low points of the 4CH ED phase (each
    re-tracked), move the mid-slice A-RVI of the SAX stack 4 mm in plane and unset the C-LV of the most basal slice
    at ED; Save each folder. Returns the reader's points: {(folder, name, slice, phase): position or None}."""
    mine = {}
    lax = out / "001_LA_CINE_lax"
    lm = read_result(lax)
    series = load_source(lm, lax)
    ed = next(m for m in lm.measurements if m.name == "LV length ED").phase
    for name in [x.name for x in lm.landmarks if x.phase == ed and x.flag == "low"]:
        confirm_landmark(lm, name, 0, ed)
        new = retrack_landmark(series, lm, name, 0)
        lm.landmarks, lm.model = new.landmarks, new.model
        mine[("lax", name, 0, ed)] = np.asarray(lm.get(name, 0, ed).position, float)
    assert mine, "the bundled 4CH model flags points of M&Ms-2 001's ED phase low"
    recompute_measurements(lm, series)
    save_result(lax, lm, series)

    sax = out / "001_SA_sax"
    lm = read_result(sax)
    series = load_source(lm, sax)
    found = sorted({x.slice for x in lm.landmarks if x.phase == 0 and x.name == "C-LV" and x.found})
    k = found[len(found) // 2]
    target = np.asarray(lm.get("A-RVI", k, 0).position, float) + 4.0 * series.direction[:, 0]
    correct_landmark(lm, "A-RVI", k, 0, target, series)
    correct_landmark(lm, "C-LV", found[0], 0, None, series)
    mine[("sax", "A-RVI", k, 0)] = target
    mine[("sax", "C-LV", found[0], 0)] = None
    recompute_measurements(lm, series)
    save_result(sax, lm, series)
    return mine


def _check_points(out: Path, mine: dict) -> None:
    """The result folders hold the reader's points as the reader left them (moved, confirmed or unset)."""
    sets = {"lax": read_result(out / "001_LA_CINE_lax"), "sax": read_result(out / "001_SA_sax")}
    for (task, name, k, t), pos in mine.items():
        lm = sets[task].get(name, k, t)
        assert lm.corrected, (task, name, k, t)
        if pos is None:
            assert not lm.found and lm.flag == "absent"
        else:
            np.testing.assert_allclose(lm.position, pos, atol=1e-6)
            assert lm.flag == "high" and lm.confidence == 1.0


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    require_data("mnms2", "001")
    return sm.mnms2_study(require_data(), tmp_path_factory.mktemp("mnms") / "001")


@pytest.mark.slow
def test_study_rerun_keeps_the_review(study, tmp_path, capsys):
    """``study`` run again into a reviewed output folder: the new report equals the reviewed one (apply-review's)
    value for value, the folders hold the reader's points, the earlier run is in backup-<time>/ with a run.json
    manifest for both runs; ``--discard-review`` starts afresh and keeps the reviewed points in its backup.
    Before, the re-run overwrote the reviewed landmarks.json and study.json without a backup (only the point lists
    were kept, as .bak files), and the report went back to the detection's values."""
    out = tmp_path / "out"
    assert cli_main(["study", str(study), "-o", str(out)]) == 0
    assert json.loads((out / "run.json").read_text())["complete"] is True
    detected = _kv(json.loads((out / "study.json").read_text()))
    mine = _review(out)
    # each Save of an analysis folder brings the study's manifest up to date at once
    run = json.loads((out / "run.json").read_text())
    sums = {f["name"]: f["sha256"] for f in run["files"]}
    assert sums["001_SA_sax/landmarks.json"] == hashlib.sha256((out / "001_SA_sax/landmarks.json").read_bytes()).hexdigest()
    assert run["edits"][-1]["by"] == "review app (corrections of 001_SA_sax saved)"
    apply_review(out)
    reviewed = json.loads((out / "study.json").read_text())
    assert _kv(reviewed) != detected  # the review changed the report
    # the run manifest follows the review: the reader's files and the new report with their checksums
    run = json.loads((out / "run.json").read_text())
    sums = {f["name"]: f["sha256"] for f in run["files"]}
    for name in ("001_SA_sax/landmarks.json", "001_LA_CINE_lax/landmarks.json", "study.json", "summary.png"):
        assert sums[name] == hashlib.sha256((out / name).read_bytes()).hexdigest(), name
    assert run["edits"][-1]["by"].startswith("apply-review")
    summary = _pixels(out / "summary.png")
    capsys.readouterr()

    assert cli_main(["study", str(study), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    doc = json.loads((out / "study.json").read_text())
    assert _kv(doc) == _kv(reviewed) and doc["status"] == reviewed["status"]
    _check_points(out, mine)
    # the same page as apply-review drew, title 'reviewed: N point(s) set by a reader' included
    np.testing.assert_array_equal(_pixels(out / "summary.png"), summary)
    sax = next(a for a in doc["analyses"] if a["task"] == "sax")
    assert sax["review_carried"] == sum(1 for key in mine if key[0] == "sax")
    assert f"the reader's review of {sax['review_carried']} point(s) kept from the earlier run" in printed
    backups = sorted(out.glob("backup-*"))
    assert len(backups) == 1
    # the earlier run's report is kept (it differs from the new one in its timings and review entry)
    assert json.loads((backups[0] / "study.json").read_text())["key_values"] == reviewed["key_values"]
    assert "earlier results kept in" in printed and not list(out.glob("study.json.bak-*"))
    # 'cardiac-landmarks review OUT' offers the new run's points only, never the backup's
    assert [p.name for p in find_results(out)] == ["001_LA_CINE_lax", "001_SA_sax"]
    listed = {f["name"] for f in json.loads((out / "run.json").read_text())["files"]}
    assert {"study.json", "summary.png", "001_SA_sax/landmarks.json", "001_LA_CINE_lax/landmarks.json"} <= listed

    assert cli_main(["study", str(study), "-o", str(out), "--discard-review"]) == 0
    fresh = json.loads((out / "study.json").read_text())
    assert _kv(fresh) == detected
    assert not any(x.corrected for x in read_result(out / "001_SA_sax").landmarks)
    newest = sorted(out.glob("backup-*"))[-1]
    assert newest != backups[0]
    kept = read_result(newest / "001_SA_sax")  # the reviewed points are in the backup
    assert sum(x.corrected for x in kept.landmarks) == sax["review_carried"]


def test_carry_review_is_refused_for_another_image(tmp_path):
    """A review is carried only into a detection of the same image: another file, another view, a slice the new
    series does not have, or an image whose geometry moved are refused with the reason, and nothing is carried."""
    require_data("acdc")
    path = require_data() / "acdc" / "patient001_ED.nii.gz"
    out = tmp_path / "d"
    assert cli_main(["detect", str(path), "-o", str(out), "--no-progress"]) == 0
    new = read_result(out)
    series = load_series(path)
    earlier = copy.deepcopy(new)
    k = next(x.slice for x in earlier.landmarks if x.name == "A-RVI" and x.found)
    moved = np.asarray(earlier.get("A-RVI", k, 0).position, float) + 3.0 * series.direction[:, 1]
    correct_landmark(earlier, "A-RVI", k, 0, moved, series)

    ok = carry_review(earlier, new, series)
    assert ok.points == [f"A-RVI s{k} p0"] and ok.reason == ""
    np.testing.assert_allclose(ok.lmset.get("A-RVI", k, 0).position, moved)
    assert not new.get("A-RVI", k, 0).corrected  # the new detection itself is not changed

    other = copy.deepcopy(earlier)
    other.source = str(path.with_name("patient001_ES.nii.gz"))
    assert "patient001_ES.nii.gz" in carry_review(other, new, series).reason
    other = copy.deepcopy(earlier)
    other.view = "4ch"
    assert "4CH view" in carry_review(other, new, series).reason
    other = copy.deepcopy(earlier)
    other.get("A-RVI", k, 0).slice = series.n_slices + 2
    other._index = None
    assert "outside this series" in carry_review(other, new, series).reason
    shifted = copy.deepcopy(series)
    shifted.slice_origins = shifted.slice_origins + 2.0 * series.direction[:, 0]  # the image moved 2 mm
    res = carry_review(earlier, new, shifted)
    assert "geometry changed" in res.reason and res.points == [] and res.lmset is new


def test_detect_rerun_keeps_the_review_and_says_so(tmp_path, capsys):
    """``detect`` run again into a folder whose result a reader reviewed (one point confirmed, one moved): the new
    landmarks.json holds both as the reader left them, the RVI angle of the moved point's slice is recomputed from
    it (computed here), and the run says what it kept; the ES image into the same folder is refused with the
    reason."""
    require_data("acdc")
    path = require_data() / "acdc" / "patient001_ED.nii.gz"
    out = tmp_path / "d"
    assert cli_main(["detect", str(path), "-o", str(out), "--no-progress"]) == 0
    lm = read_result(out)
    series = load_source(lm, out)
    low = next(x for x in lm.landmarks if x.flag == "low" and x.found)
    confirm_landmark(lm, low.name, low.slice, low.phase)
    k = next(x.slice for x in lm.landmarks if x.name == "I-RVI" and x.found and not x.corrected)
    moved = np.asarray(lm.get("I-RVI", k, 0).position, float) - 3.0 * series.direction[:, 0]
    correct_landmark(lm, "I-RVI", k, 0, moved, series)
    recompute_measurements(lm, series)
    save_result(out, lm, series)
    capsys.readouterr()

    assert cli_main(["detect", str(path), "-o", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "the reader's review of 2 point(s) kept from the earlier result" in printed
    again = read_result(out)
    kept = again.get(low.name, low.slice, low.phase)
    assert kept.confirmed and kept.flag == "high"
    np.testing.assert_allclose(kept.position, low.position)
    np.testing.assert_allclose(again.get("I-RVI", k, 0).position, moved)
    # measurements.csv tells a value on a reader's point from one on a model point of the same flag
    assert f"I-RVI s{k} p0:high:1.00:corrected" in (out / "measurements.csv").read_text()
    # the opening angle at C-LV between the two insertions, from the saved points
    a, i, c = (np.asarray(again.get(n, k, 0).position, float) for n in ("A-RVI", "I-RVI", "C-LV"))
    u, v = a - c, i - c
    angle = np.degrees(np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v)))
    m = next(m for m in again.measurements if m.name == "RVI opening angle" and m.slice == k and m.phase == 0)
    assert m.value == pytest.approx(angle, abs=0.05)

    es = path.with_name("patient001_ES.nii.gz")
    assert cli_main(["detect", str(es), "-o", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "review was not carried over: the earlier result was made from patient001_ED.nii.gz" in printed
    assert not any(x.corrected for x in read_result(out).landmarks)


@pytest.mark.slow
def test_batch_redo_keeps_the_review(study, tmp_path, capsys):
    """``batch --redo`` after a reader's review of one study: that study's new run carries the review (its cohort
    row equals the reviewed row that apply-review wrote), the other study is detected afresh, and the summary
    names the study whose review was kept."""
    m = tmp_path / "m.csv"
    m.write_text(f"study_id,path\nb,{study}\na,{study}\n")
    out = tmp_path / "out"
    assert cli_main(["batch", str(m), "-o", str(out), "--engine", "local", "--no-progress"]) == 0
    rows0 = {r["study_id"]: r for r in csv.DictReader(open(out / "cohort.csv"))}
    mine = _review(out / "studies" / "b")
    assert cli_main(["apply-review", str(out)]) == 0
    reviewed = {r["study_id"]: r for r in csv.DictReader(open(out / "cohort.csv"))}
    assert reviewed["b"] != rows0["b"] and reviewed["a"] == rows0["a"]
    capsys.readouterr()

    assert cli_main(["batch", str(m), "-o", str(out), "--engine", "local", "--no-progress", "--redo"]) == 0
    printed = capsys.readouterr().out
    rows = {r["study_id"]: r for r in csv.DictReader(open(out / "cohort.csv"))}
    assert rows["b"] == reviewed["b"] and rows["a"] == rows0["a"]
    assert rows["b"]["reader_points"] == str(len(mine)) and rows["a"]["reader_points"] == "0"
    _check_points(out / "studies" / "b", mine)
    assert "readers' reviews kept from the earlier run: " in printed and "in 1 study (b)" in printed
    assert len(list((out / "studies").glob("b.bak-*"))) == 1
    # the backups keep what the re-run changed or did not write again, not a full copy (before: every file)
    for sid in ("a", "b"):
        for bak in (out / "studies").glob(f"{sid}.bak-*"):
            kept = {p.relative_to(bak).as_posix() for p in bak.rglob("*") if p.is_file()}
            new = out / "studies" / sid
            assert all(not (new / k).is_file() or (new / k).read_bytes() != (bak / k).read_bytes()
                       for k in kept if k != "run.json"), (sid, kept)
            assert "summary.png" not in kept or sid == "b"
            assert not any(k.endswith("landmarks.json") for k in kept) or sid == "b", kept
    # each study folder's run manifest lists every file it holds, with its SHA-256
    for sid in ("a", "b"):
        folder = out / "studies" / sid
        run = json.loads((folder / "run.json").read_text())
        assert run["complete"] is True and run["command"] == "batch"
        listed = {f["name"]: f["sha256"] for f in run["files"]}
        held = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != "run.json"
                and not p.name.startswith(".")}
        assert set(listed) == held, set(listed) ^ held
        for name in held:
            assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == listed[name], (sid, name)
    # reviewing the cohort after the re-run: the studies' result folders, not the backup's (before, b.bak-<time>'s
    # folders were cases of 'cardiac-landmarks review OUT/studies' too)
    assert {p.relative_to(out / "studies").parts[0] for p in find_results(out / "studies")} == {"a", "b"}


def test_output_path_that_is_a_file_is_named_before_any_work(tmp_path, capsys):
    """``study`` and ``batch`` with an output path that is a file: a named error and exit status 1, not a
    traceback (FileExistsError) after the analysis; ``study`` into the study folder itself, ``detect`` into its DICOM
    folder: a named error, nothing written or moved."""
    f = tmp_path / "file"
    f.write_text("x")
    require_data("mnms2", "001")
    assert cli_main(["study", str(require_data() / "mnms2" / "001"), "-o", str(f)]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err
    assert cli_main(["batch", str(require_data() / "mnms2"), "-o", str(f)]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err
    # the study folder itself as output: refused before any work (results would mix with the study's files, and a
    # re-run would move the study's own PNGs and point lists into its backup); nothing written there
    src = tmp_path / "study"
    src.mkdir()
    for name in ("001_SA_ED.nii.gz", "001_SA_ES.nii.gz"):
        (src / name).symlink_to(require_data() / "mnms2" / "001" / name)
    assert cli_main(["study", str(src), "-o", str(src)]) == 1
    assert "is an input folder" in capsys.readouterr().err
    assert sorted(p.name for p in src.iterdir()) == ["001_SA_ED.nii.gz", "001_SA_ES.nii.gz"]
    # and detect on a DICOM folder into that folder (before: the user's own PNG there was moved into a backup)
    require_data("sunnybrook", "SCD0000101", "dicom")
    dicom = tmp_path / "dicom"
    dicom.mkdir()
    for f in sorted((require_data() / "sunnybrook" / "SCD0000101" / "dicom").iterdir())[:3]:
        (dicom / f.name).symlink_to(f)
    (dicom / "my_notes.png").write_bytes(b"not ours")
    assert cli_main(["detect", str(dicom), "-o", str(dicom), "--no-progress"]) == 1
    assert "is an input folder" in capsys.readouterr().err
    assert (dicom / "my_notes.png").read_bytes() == b"not ours" and not list(dicom.glob("backup-*"))


def test_long_axis_carry_that_cannot_retrack_keeps_the_new_detection(tmp_path, monkeypatch):
    """A long-axis review whose re-tracking fails (here made to fail) is not carried: the new detection stands, the
    reason says so, and nothing raises (a re-run never fails where a fresh run would not)."""
    import CardiacLandmarksLib.lax.tracking as tracking
    from CardiacLandmarksLib.core.errors import InvalidImageError
    from CardiacLandmarksLib.results import carry_review_from

    require_data("mnms2", "001")
    out = tmp_path / "lax"
    assert cli_main(["detect", str(require_data() / "mnms2" / "001" / "001_LA_CINE.nii.gz"), "--view", "4ch", "-o",
                     str(out), "--no-progress"]) == 0
    lm = read_result(out)
    series = load_source(lm, out)
    low = next(x for x in lm.landmarks if x.flag == "low" and x.found)
    confirm_landmark(lm, low.name, low.slice, low.phase)
    save_result(out, lm, series)
    fresh = read_result(out)  # stands in for a new detection: the reader's point back to the model's state
    back = fresh.get(low.name, low.slice, low.phase)
    back.corrected, back.confirmed, back.flag, back.confidence = False, False, low.flag, low.confidence
    ok = carry_review_from(out, fresh, series)
    assert ok.points == [f"{low.name} s{low.slice} p{low.phase}"] and ok.lmset.get(low.name, 0, low.phase).confirmed

    def broken(*args, **kwargs):
        raise InvalidImageError("no frames")

    monkeypatch.setattr(tracking, "retrack_landmark", broken)
    res = carry_review_from(out, fresh, series)
    assert res.points == [] and res.lmset is fresh and "re-tracking from the reader's points failed" in res.reason
