"""Study routing and analysis on real multi-series material (assembled in temporary folders)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import study_material as sm
from conftest import require_data

from CardiacLandmarksLib.io import dicom_study as io_dicom_study
from CardiacLandmarksLib.io.load import load_series
from CardiacLandmarksLib.study.analyse import analyse_study
from CardiacLandmarksLib.study.routing import route_study


@pytest.fixture(scope="module")
def sb_study(tmp_path_factory):
    require_data("sunnybrook", "SCD0000101", "dicom")
    require_data("perfusion", "ge_dicom")
    return sm.sunnybrook_perfusion_study(require_data(), tmp_path_factory.mktemp("sb") / "study")


@pytest.fixture(scope="module")
def siemens_like(tmp_path_factory):
    require_data("sunnybrook", "SCD0000101", "dicom")
    return sm.split_per_slice(require_data(), tmp_path_factory.mktemp("split") / "study")


@pytest.fixture(scope="module")
def mnms_study(tmp_path_factory):
    require_data("mnms2", "001")
    return sm.mnms2_study(require_data(), tmp_path_factory.mktemp("mnms") / "001")


def _by_label(routing, text):
    return next(s for s in routing.series if text in s.label)


@pytest.mark.data
def test_route_sunnybrook_cine_and_ge_perfusion(sb_study):
    r = route_study(sb_study)
    assert len(r.series) == 2
    cine = _by_label(r, "#300")
    assert (cine.view, cine.sequence, cine.n_slices, cine.n_phases) == ("sax", "cine", 12, 20)
    assert cine.is_sax_reference and cine.analyses[0] == "sax"
    perf = _by_label(r, "First Pass")
    assert (perf.view, perf.sequence, perf.analyses) == ("sax", "perfusion", ["perfusion"])
    assert perf.angle_to_sax_deg < 30
    assert "non-DICOM" in " ".join(r.notes)  # GoldStandard.mat is ignored, and said so
    table = r.table()
    assert "First Pass New" in table and "perfusion" in table
    # two patients put together (as this test material is): an error of the study, which makes it review
    assert r.problems() == ["series of more than one patient (PatientID): s6 'NOID', s300 'SCD0000101'"]


@pytest.mark.data
def test_linked_series_folders_are_read(tmp_path, data_root):
    """A study assembled with links to the series folders of a PACS export (`ln -s /export/.../series6 study/perf`):
    the linked folders were skipped without a word (os.walk does not follow links), so the study had neither series
    ('no DICOM series and no image file found'), or, beside a real folder, silently lacked the linked one. Linked
    folders are now read, each real folder once: a link back up to the study is no loop, and a folder linked twice
    is one series."""
    import os

    study = tmp_path / "study"
    (study / "cine").mkdir(parents=True)
    for f in sorted((data_root / "sunnybrook" / "SCD0000101" / "dicom").iterdir()):
        os.symlink(f, study / "cine" / f.name)
    os.symlink(data_root / "perfusion" / "ge_dicom", study / "perf")
    os.symlink(data_root / "perfusion" / "ge_dicom", study / "perf_again")
    os.symlink(study, study / "cine" / "up")  # a loop
    r = route_study(study)
    assert sorted(s.label for s in r.series) == ["#300 '<no description>'", "#6 'First Pass New'"]
    assert _by_label(r, "First Pass").analyses == ["perfusion"]


@pytest.mark.data
def test_per_slice_series_assembled_into_one_stack(siemens_like, sunnybrook_dicom):
    scan = io_dicom_study.scan_study_folder(siemens_like)
    assert len(scan.series) == 12 and all(h.n_slices == 1 and h.n_phases == 20 for h in scan.series)
    groups = [st.uids for st in io_dicom_study.slice_stacks(scan.series)]
    assert [len(g) for g in groups] == [12]
    stack = scan.load(groups[0])
    ref = load_series(sunnybrook_dicom)
    assert stack.pixels.shape == (20, 12, 256, 256)
    np.testing.assert_array_equal(stack.pixels, ref.pixels)
    np.testing.assert_allclose(stack.slice_origins, ref.slice_origins)
    # `detect` (load_series on the folder) assembles the stack too instead of stopping at 'several series'
    np.testing.assert_array_equal(load_series(siemens_like).pixels, ref.pixels)
    r = route_study(siemens_like)
    assert len(r.series) == 1
    s = r.series[0]
    assert (s.view, s.sequence, s.n_slices, s.is_sax_reference) == ("sax", "cine", 12, True)
    assert "assembled" in " ".join(s.evidence)


@pytest.mark.data
def test_a_slice_acquired_twice_keeps_the_later_series_in_the_stack(tmp_path, siemens_like, progress_log):
    """One slice of a per-slice SAX stack re-acquired (the same protocol run again after a failed breath-hold: the
    same description and position, a later series number) broke the whole stack: `study` ran 13 single-slice SAX
    analyses and no LV/RV function, and `detect` refused the folder as 'several series'. The stack now uses the
    later series at that position (as a reader would), and the earlier one is named as left out."""
    import logging
    import shutil
    import warnings

    import pydicom
    from pydicom.uid import generate_uid

    study = tmp_path / "study"
    shutil.copytree(siemens_like, study)
    repeat_uid, again = generate_uid(), {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in sorted(study.glob("*.dcm")):
            ds = pydicom.dcmread(f)
            if ds.SeriesNumber != 1005:
                continue
            ds.SeriesInstanceUID, ds.SeriesNumber = repeat_uid, 1100
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            pixels = (ds.pixel_array // 2).astype(ds.pixel_array.dtype)  # another acquisition of the slice
            ds.PixelData = pixels.tobytes()
            again[float(ds.TriggerTime)] = pixels
            ds.save_as(study / f"again_{f.name}")
    r = route_study(study)
    assert [(s.label, s.n_slices, s.analyses) for s in r.series] == [
        ("#1000-1100 'cine_sax'", 12, ["sax", "function"]), ("#1005 'cine_sax'", 1, [])]
    assert r.series[1].reason == ("slice acquired again later: #1100 'cine_sax' is used in the stack "
                                  "#1000-1100 'cine_sax'")
    assert ("#1000-1100 'cine_sax': slice 6 of 12 was acquired twice: #1100 'cine_sax' (acquired later) is used in "
            "the stack, #1005 'cine_sax' is left out") in r.notes
    stack, plain = r.series[0].load(), load_series(siemens_like)
    times = sorted(again)
    for t in range(stack.n_phases):
        np.testing.assert_array_equal(stack.pixels[t, 5], again[times[t]])
        np.testing.assert_array_equal(np.delete(stack.pixels[t], 5, axis=0), np.delete(plain.pixels[t], 5, axis=0))
    assert repeat_uid in stack.metadata["series_uids"]
    progress_log.set_level(logging.INFO)
    detected = load_series(study)  # what `detect` reads from the folder: the same stack, and the note
    np.testing.assert_array_equal(detected.pixels, stack.pixels)
    assert "slice 6 of 12 was acquired twice" in progress_log.text


@pytest.mark.data
@pytest.mark.parametrize("shift_mm", [3.0, 0.0])
def test_a_stack_acquired_twice_uses_the_later_acquisition_whole(tmp_path, siemens_like, progress_log, shift_mm):
    """A per-slice SAX stack acquired a second time (the protocol run again, re-planned 3 mm along the normal, or at
    the same positions) under the same description. Re-planned, the two interleaved into one stack of 24 slices
    ('1 slice position(s) missing' between every other slice, LV EDV 117 ml for 196): now the later acquisition is
    the stack, whole, and the earlier one is listed with why; at the same positions the note says so once, not as
    12 slices each acquired twice."""
    import logging
    import shutil

    study = tmp_path / "study"
    shutil.copytree(siemens_like, study)
    sm.acquire_stack_again(siemens_like, study, shift_mm)
    r = route_study(study)
    assert [(s.label, s.n_slices, s.n_phases, s.analyses) for s in r.series] == [
        ("#2000-2011 'cine_sax'", 12, 20, ["sax", "function"]), ("#1000-1011 'cine_sax'", 12, 20, [])]
    earlier = r.series[1]  # one row for the earlier acquisition, not one per slice: listed, loadable by itself
    assert (earlier.view, earlier.sequence, earlier.analyses) == ("-", "-", []) and earlier.reason == (
        "an earlier acquisition of the stack: #2000-2011 'cine_sax', acquired later, is used in the stack "
        "#2000-2011 'cine_sax'")
    text = ("the stack was acquired twice: #2000-2011 'cine_sax' (12 slices x 20 phases, acquired later) is used, "
            "#1000-1011 'cine_sax' (12 slices x 20 phases) is left out")
    assert r.notes == [f"#2000-2011 'cine_sax': {text}"]
    stack, plain = r.series[0].load(), load_series(siemens_like)
    np.testing.assert_array_equal(stack.pixels, plain.pixels // 2)
    first = earlier.load()  # the Slicer panel's chooser offers it (it was listed only, and could not be loaded)
    np.testing.assert_array_equal(first.pixels, plain.pixels)
    np.testing.assert_allclose(first.slice_origins, plain.slice_origins, atol=1e-6)
    shift = np.linalg.norm(np.asarray(stack.slice_origins) - np.asarray(plain.slice_origins), axis=1)
    np.testing.assert_allclose(shift, shift_mm, atol=1e-3)
    progress_log.set_level(logging.INFO)
    detected = load_series(study)  # what `detect` reads from the folder: the same stack, and the note
    np.testing.assert_array_equal(detected.pixels, stack.pixels)
    assert text in progress_log.text and "acquired twice: #20" not in progress_log.text.replace(text, "")


@pytest.mark.data
def test_a_stack_acquired_twice_is_replaced_only_when_its_numbers_say_so(tmp_path, siemens_like):
    """Which acquisition is later comes from the series numbers: with the second one numbered after the first it
    replaces it; with every series under one number (an export that renumbers) nothing is replaced on a guess."""
    import dataclasses
    import shutil

    study = tmp_path / "study"
    shutil.copytree(siemens_like, study)
    sm.acquire_stack_again(siemens_like, study, 3.0)
    headers = io_dicom_study.scan_study_folder(study).series
    (stack,) = io_dicom_study.slice_stacks(headers)
    assert len(stack.uids) == 12 and len(stack.superseded) == 1
    shared = [dataclasses.replace(h, series_number=7) for h in headers]
    assert not any(st.superseded for st in io_dicom_study.slice_stacks(shared))


def _drop_files(study, series_number: int, keep_phases: int | None = None) -> None:
    """Remove the files of one per-slice series (all, or those after its first ``keep_phases`` phases)."""
    import pydicom

    files = sorted((float(pydicom.dcmread(f, stop_before_pixels=True).TriggerTime), f) for f in study.glob("*.dcm")
                   if pydicom.dcmread(f, stop_before_pixels=True).SeriesNumber == series_number)
    for _, f in files[keep_phases or 0:]:
        f.unlink()


@pytest.mark.data
def test_a_slice_with_fewer_phases_joins_its_stack(tmp_path, siemens_like, progress_log):
    """A prospectively triggered cine stored one series per slice has fewer phases on a slice whose breath-hold had
    shorter heartbeats. Such a slice (18 phases, the others 20) was split off: the stack had a gap there, its LV EDV
    came out 172 ml instead of 196 ml and was reported ok, and `detect` refused the folder as 12 series. It now joins
    the stack, which keeps the first 18 phases of every slice, and a note says so; a slice with too few phases
    (10 of 20) still stays out."""
    import logging
    import shutil

    study = tmp_path / "study"
    shutil.copytree(siemens_like, study)
    _drop_files(study, 1005, keep_phases=18)
    r = route_study(study)
    assert [(s.label, s.n_slices, s.n_phases, s.analyses) for s in r.series] == [
        ("#1000-1011 'cine_sax'", 12, 18, ["sax", "function"])]
    text = ("slice 6 of 12 has 18 phases, the others 20 (a faster heart rate in its breath-hold, with prospective "
            "triggering): the stack keeps the first 18 phases of every slice, leaving out up to 2 late-diastolic "
            "phases of the others")
    assert f"#1000-1011 'cine_sax': {text}" in r.notes
    stack, plain = r.series[0].load(), load_series(siemens_like)
    np.testing.assert_array_equal(stack.pixels, plain.pixels[:18])
    assert stack.metadata["phases_cut"] == {"n_phases": 18, "phases_per_slice": [20] * 5 + [18] + [20] * 6}
    assert stack.metadata["completeness"]["problems"] == []  # cut on purpose: not 'phases missing'
    progress_log.set_level(logging.INFO)
    detected = load_series(study)  # what `detect` and `function` read from the folder
    np.testing.assert_array_equal(detected.pixels, stack.pixels)
    assert text in progress_log.text
    _drop_files(study, 1005, keep_phases=10)  # half the phases: not the same acquisition's timing
    assert [(s.label, s.n_slices) for s in route_study(study).series] == [
        ("#1000-1011 'cine_sax'", 11), ("#1005 'cine_sax'", 1)]


@pytest.mark.data
def test_function_on_a_stack_with_a_missing_slice_is_never_plain(tmp_path, siemens_like, capsys):
    """A per-slice stack with one slice position missing (its files lost): `study` measured LV/RV volumes on the
    stack with the gap and reported them ok (EDV 172 ml for 196 ml), and `function` measured it without a word.
    `function` now refuses an incomplete cine unless --allow-incomplete, and then, as in `study`, every value is
    review, saying the slice positions are missing."""
    import shutil

    from CardiacLandmarksLib.cli import main as cli_main

    study = tmp_path / "study"
    shutil.copytree(siemens_like, study)
    _drop_files(study, 1005)
    capsys.readouterr()
    assert cli_main(["function", str(study), "-o", str(tmp_path / "f1"), "--no-tta"]) == 1
    err = capsys.readouterr().err
    assert "incomplete series: 1 slice position(s) missing between slices 4 and 5" in err
    assert "--allow-incomplete" in err and "Traceback" not in err and not (tmp_path / "f1").exists()
    assert cli_main(["function", str(study), "-o", str(tmp_path / "f2"), "--no-tta", "--allow-incomplete"]) == 0
    doc = json.loads((tmp_path / "f2" / "function.json").read_text(encoding="utf-8"))
    for ventricle in ("LV", "RV"):
        for name in ("EDV_ml", "ESV_ml", "EF_pct"):
            v = doc[ventricle]
            assert v["status"][name] == "review" and "slices_missing" in v["flags"][name], (ventricle, name)
    out = tmp_path / "s"
    res = analyse_study(study, out, tta=False)
    key = {k.name: k for k in res.key_values()}
    assert key["LV EDV"].status == "review"
    assert "slice positions missing" in key["LV EDV"].check_text()
    # the RVI angle names its input doubt briefly ('input (review)' before) and the analysis keeps the text
    assert key["RVI angle (mid, ED)"].check_text() == "check input (incomplete series)"
    sax = next(o for o in res.outcomes if o.task == "sax")
    assert any("incomplete series: 1 slice position(s) missing between slices 4 and 5" in n for n in sax.notes)



def _short_slice_copy(src, dst, keep_phases: int):
    """A copy of the Sunnybrook cine (one series of 12 slices x 20 phases) whose sixth slice keeps only its first
    ``keep_phases`` phases (files lost in a transfer, or fewer phases recorded in that breath-hold)."""
    import shutil
    import warnings

    import pydicom

    shutil.copytree(src, dst)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        heads = [(pydicom.dcmread(f, stop_before_pixels=True), f) for f in sorted(dst.glob("*.dcm"))]
    sixth = sorted({round(float(ds.SliceLocation), 1) for ds, _ in heads})[5]
    for _, f in sorted((float(ds.TriggerTime), f) for ds, f in heads
                       if round(float(ds.SliceLocation), 1) == sixth)[keep_phases:]:
        f.unlink()
    return dst


@pytest.mark.data
@pytest.mark.data
def test_a_perfusion_series_with_a_slice_short_of_frames_is_analysed_and_review(tmp_path, data_root):
    """A three-slice perfusion series whose middle slice stopped two frames early failed its analysis inside `study`
    ('none of the 3 perfusion series could be analysed', the reason once per slice). As a cine with a missing phase,
    it is now analysed on the frames all slices have, and its value is review, naming why briefly."""
    import study_material as sm

    study = tmp_path / "study"
    sm.multi_slice_perfusion(data_root, study / "perfusion", short_slice=1, short_by=2)
    res = analyse_study(study, tmp_path / "out", tta=False)
    (perf,) = [o for o in res.outcomes if o.task == "perfusion"]
    assert perf.ok, perf.error
    (value,) = [v for v in perf.values if v.name.startswith("perfusion")]
    assert value.status == "review" and value.flags == ["check input (incomplete series)"]
    assert value.line().endswith("(check input (incomplete series))")
    assert any("incomplete series: slice at -102.7 mm has 77 frames" in n for n in perf.notes)


def test_a_series_with_a_slice_short_of_phases(tmp_path, sunnybrook_dicom, capsys):
    """One series whose sixth slice has 18 phases and the others 20 was refused by every command, also with
    --allow-incomplete, and ended `study` (all its other series too) in that error. It is now an incomplete series
    like any other: refused by name unless --allow-incomplete, then read with the first 18 phases of every slice and
    every function value review."""
    from CardiacLandmarksLib.cli import main as cli_main
    from CardiacLandmarksLib.core.errors import IncompleteSeriesError
    from CardiacLandmarksLib.io.checks import check_series

    cine = _short_slice_copy(sunnybrook_dicom, tmp_path / "cine", 18)
    capsys.readouterr()
    assert cli_main(["detect", str(cine), "-o", str(tmp_path / "d"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert ("incomplete series: slice at -98.9 mm has 18 phases, the others 20: the first 18 phases of every slice "
            "are used (use --allow-incomplete") in err
    series, plain = load_series(cine), load_series(sunnybrook_dicom)
    np.testing.assert_array_equal(series.pixels, plain.pixels[:18])
    with pytest.raises(IncompleteSeriesError):
        check_series(series, "sax")
    assert check_series(series, "sax", allow_incomplete=True)
    r = route_study(cine)
    assert [(s.n_slices, s.n_phases, s.analyses) for s in r.series] == [(12, 18, ["sax", "function"])]
    assert cli_main(["function", str(cine), "-o", str(tmp_path / "f"), "--no-tta", "--allow-incomplete"]) == 0
    doc = json.loads((tmp_path / "f" / "function.json").read_text(encoding="utf-8"))
    assert all(doc[v]["status"][n] == "review" and "phases_missing" in doc[v]["flags"][n]
               for v in ("LV", "RV") for n in ("EDV_ml", "ESV_ml", "EF_pct"))


@pytest.mark.data
def test_a_series_the_loader_refuses_does_not_stop_the_study(tmp_path, sunnybrook_dicom, data_root):
    """A SAX cine whose sixth slice has only 10 of 20 phases (not one acquisition's slices: still refused by the
    loader) ended the whole study in its IncompleteSeriesError when routing loaded it to tell its view, so the
    study's perfusion series was not analysed either. That series is now listed as unreadable, naming the error, the
    study is review for it, and the rest is analysed."""
    study = tmp_path / "study"
    _short_slice_copy(sunnybrook_dicom, study / "cine", 10)
    sm._link_tree(data_root / "perfusion" / "ge_dicom", study / "perfusion")
    r = route_study(study)
    cine = next(s for s in r.series if s.key == "s300")
    assert cine.reason.startswith("unreadable: IncompleteSeriesError: the series in ") and cine.analyses == []
    assert cine.reason.endswith("slices have different numbers of phases (20 on 11 of 12 slices; -98.90 mm: 10)")
    assert any(u.startswith("#300 ") and "unreadable: IncompleteSeriesError" in u for u in r.unread)
    res = analyse_study(study, tmp_path / "out", tta=False)
    assert [(o.task, o.ok) for o in res.outcomes] == [("perfusion", True)]
    assert res.status == "review" and any("IncompleteSeriesError" in e for e in res.errors)

    # a reference stack whose pixels fail to decode only when loaded (its headers read well): its landmark and
    # function analyses fail by name, and the perfusion series is still analysed (the function's header read for
    # height and weight stopped the study)
    from CardiacLandmarksLib.core.errors import CorruptFileError

    whole = tmp_path / "whole"
    sm.sunnybrook_perfusion_study(data_root, whole)
    r = route_study(whole)
    ref = r.sax_reference

    def undecodable():
        raise CorruptFileError("cannot decode the pixel data of 221.dcm")

    ref._load = undecodable
    res = analyse_study(whole, tmp_path / "out2", tta=False, routing=r)
    assert [(o.task, o.ok) for o in res.outcomes] == [("sax", False), ("function", False), ("perfusion", True)]
    assert all("CorruptFileError: cannot decode" in o.error for o in res.outcomes[:2])


@pytest.mark.data
def test_a_result_folder_inside_the_study_is_not_read_as_part_of_it(tmp_path, sunnybrook_dicom):
    """`study S -o S/results` run again: the scan read the first run's files as part of the study ('34 non-DICOM
    file(s) ignored in S', written into its study.json and routing.txt, so every re-run 'changed' them). A result
    folder of this tool (run.json, batch.sqlite, or a run's lock) inside a study is now left out of the scan."""
    study = tmp_path / "S"
    study.mkdir()
    for p in sorted(sunnybrook_dicom.glob("*.dcm")):
        (study / p.name).symlink_to(p)
    results = study / "results" / "s300_sax"
    results.mkdir(parents=True)
    for name in ("run.json", "study.json", "summary.png", "s300_sax/landmarks.json", "s300_sax/overlay.png"):
        (study / "results" / name).write_text("{}", encoding="utf-8")
    r = route_study(study)
    assert [s.label for s in r.series] == ["#300 '<no description>'"]
    assert not any("non-DICOM" in n for n in r.notes), r.notes
    (study / "notes.txt").write_text("a file of the user's own", encoding="utf-8")
    assert any("1 non-DICOM file(s) ignored" in n for n in route_study(study).notes)


@pytest.mark.data
def test_damaged_file_lists_its_series(tmp_path, sunnybrook_dicom):
    study = tmp_path / "study"
    study.mkdir()
    files = sorted(p for p in sunnybrook_dicom.iterdir() if p.suffix == ".dcm")
    for p in files:
        (study / p.name).symlink_to(p)
    victim = study / files[0].name
    victim.unlink()
    victim.write_bytes(files[0].read_bytes()[:-5000])  # cut inside the pixel data
    r = route_study(study)
    s = r.series[0]
    assert s.analyses == [] and s.reason.startswith("damaged") and files[0].name in s.reason
    assert r.unread == [f"{s.label}: {s.reason}"]


@pytest.mark.data
def test_a_study_with_a_series_not_read_is_review(tmp_path, sunnybrook_dicom):
    """The Sunnybrook SAX cine with one truncated file beside the GE perfusion series: the perfusion analysis ran and
    its value is ok, and the study was 'ok' too, though its SAX cine (function, landmarks) was never read; the
    cohort row said ok. It is now review, with the series named in its errors, on the console and on the page."""
    from CardiacLandmarksLib.cli import main

    study = tmp_path / "study"
    sm.sunnybrook_perfusion_study(require_data(), study)
    victim = study / "cine" / "5.dcm"  # a link into the data: replaced by a copy cut inside the pixel data
    victim.unlink()
    victim.write_bytes((sunnybrook_dicom / "5.dcm").read_bytes()[:3000])
    out = tmp_path / "out"
    assert main(["study", str(study), "-o", str(out), "--no-tta"]) == 0
    doc = json.loads((out / "study.json").read_text())
    unread = [e for e in doc["errors"] if e.startswith("not read: ")]
    assert doc["status"] == "review" and len(unread) == 1 and "damaged: 1 file(s) unreadable" in unread[0], doc
    assert all(v["status"] == "ok" for v in doc["key_values"])  # the perfusion value itself stays ok


@pytest.mark.data
def test_a_study_of_two_exam_dates_names_them(tmp_path):
    """One patient's LGE stack from another day (its StudyDate rewritten on the copies) beside the cine: a baseline
    and a follow-up in one folder would share one cohort row. Routing names both dates, so the study is review."""
    import pydicom

    require_data("sunnybrook", "SCD0000101", "dicom")
    study = sm.tag_variants(require_data(), tmp_path / "study")
    for f in (study / "lge").iterdir():
        ds = pydicom.dcmread(f)
        ds.StudyDate = "20130601"
        ds.save_as(f)
    r = route_study(study)
    assert r.problems() == ["series of more than one exam date (StudyDate): s1 '20120000', s300 '20120000', "
                            "s900 '20130601', s910 '20120000'"]


@pytest.mark.data
def test_tag_rules_lge_t1_localiser(tmp_path):
    require_data("sunnybrook", "SCD0000101", "dicom")
    r = route_study(sm.tag_variants(require_data(), tmp_path / "study"))
    assert r.problems() == []  # series of one patient
    got = {s.label.split(" ")[0]: (s.sequence, s.analyses, s.reason) for s in r.series}
    assert got["#900"][0] == "lge" and got["#900"][1] == ["sax"] and got["#900"][2].startswith("LGE SAX stack")
    assert got["#910"][0] == "t1" and got["#910"][1] == []
    assert got["#1"][0] == "localiser" and got["#1"][1] == []
    loc = next(s for s in r.series if s.label.startswith("#1 "))
    assert loc.view == "-" and "3 plane orientations: no single view" in loc.evidence  # was 4CH, then LAX
    assert got["#300"][0] == "cine" and got["#300"][1][0] == "sax"
    lge = next(s for s in r.series if s.label.startswith("#900"))
    assert lge.view == "sax" and lge.n_slices == 12  # parallel to the cine stack
    # the loaded stack is analysed as the routing decided: LGE model, key values named LGE. Its description says
    # nothing, so the loader alone guessed 'cine' and the study ran the cine model and called it '(mid, ED)'
    from CardiacLandmarksLib.study import tasks

    series = lge.load()
    assert series.sequence == "lge" and tasks.sax_phase_word(series) == "LGE"
    from CardiacLandmarksLib.models.catalogue import model_for

    assert model_for("landmarks", "sax", sequence=series.sequence) == "sax_unet_lge"  # what Models.sax loads
    # and detect, which reads the folder alone, applies the same rule
    alone = load_series(tmp_path / "study" / "lge")
    assert alone.sequence == "lge" and "InversionTime" in alone.metadata["sequence_evidence"]


@pytest.mark.data
def test_route_mnms2_nifti_study(mnms_study):
    r = route_study(mnms_study)
    labels = [s for s in r.series if s.sequence == "label"]
    assert len(labels) == 4 and all(not s.analyses and "label map" in s.reason for s in labels)
    sa = _by_label(r, "001_SA_ED.nii.gz +")
    assert sa.phase_labels == ["ED", "ES"] and sa.is_sax_reference and sa.n_slices == 12
    cine = _by_label(r, "001_LA_CINE")
    assert cine.view == "lax" and cine.analyses == ["lax"] and cine.angle_to_sax_deg > 80
    pair = _by_label(r, "001_LA_ED.nii.gz +")
    assert pair.analyses == [] and "001_LA_CINE" in pair.reason


@pytest.mark.data
def test_route_uk_biobank_long_axis_cines(tmp_path):
    """UK Biobank long-axis cines carry 50 frames and no timing. They were read as first-pass perfusion
    (">= 40 frames of unknown timing") and never analysed; the last frame of a cine is nearly its first
    (one cardiac cycle). The 2CH and 3CH cines have no bundled model and are listed, not failed."""
    r = route_study(require_data("lax", "cinema_ukb", "1"))
    by_view = {s.view: s for s in r.series}
    assert sorted(by_view) == ["2ch", "3ch", "4ch"]
    for s in by_view.values():
        assert s.sequence == "cine" and s.n_phases == 50 and s.n_slices == 1
        assert any("the last frame is nearly the first" in ev for ev in s.evidence)
    assert by_view["4ch"].analyses == ["lax"]
    for view in ("2ch", "3ch"):
        assert by_view[view].analyses == []
        assert f"no bundled {view.upper()} landmark model (only 4CH)" in by_view[view].reason

    demo = require_data("lax", "ukbb_demo", "1")
    study = tmp_path / "ukbb"
    study.mkdir()
    (study / "la_4ch.nii.gz").symlink_to(demo / "la_4ch.nii.gz")
    # the silver mask under a name that says nothing: its pixels (0-5) make it a label map
    (study / "series_b.nii.gz").symlink_to(demo / "seg4_la_4ch.nii.gz")
    # a first-pass perfusion series under a name without a keyword: its frames decide
    (study / "series_c.nii.gz").symlink_to(require_data("perfusion", "mlperf") / "1132584_rest_base.nii.gz")
    r = route_study(study)
    la, seg, perf = (_by_label(r, n) for n in ("la_4ch", "series_b", "series_c"))
    assert la.sequence == "cine" and la.analyses == ["lax"]
    assert seg.sequence == "label" and seg.analyses == [] and "6 integer values (0, 1, 2, 3, 4, 5)" in seg.evidence[0]
    assert perf.sequence == "perfusion" and perf.analyses == ["perfusion"] and perf.n_phases == 49
    assert any("the last frame differs from the first" in ev for ev in perf.evidence)


@pytest.mark.data
def test_route_names_links_to_nothing(tmp_path):
    """A cohort folder of links into a data disk: patient050 is not in ACDC here, so both its links point at
    nothing. Before, the study failed with "no DICOM series and no image file found" beside two files the user can
    see, and a study with one good and one broken link went on without a word about the missing one."""
    from CardiacLandmarksLib.core.errors import InputNotFoundError, NoDicomError

    acdc = require_data("acdc")
    gone = tmp_path / "patient050"
    gone.mkdir()
    for ph in ("ED", "ES"):
        (gone / f"patient050_{ph}.nii.gz").symlink_to(acdc / f"patient050_{ph}.nii.gz")
    with pytest.raises(NoDicomError, match=r"2 file\(s\) are links to nothing.*patient050_ED.nii.gz -> "):
        route_study(gone)
    with pytest.raises(InputNotFoundError, match="a link to .*patient050_ES.nii.gz, which does not exist"):
        route_study(gone / "patient050_ES.nii.gz")
    with pytest.raises(InputNotFoundError, match="^input not found: .*a link to .*patient050_ED.nii.gz, which does"):
        load_series(gone / "patient050_ED.nii.gz")  # what detect, function and perfusion read through
    half = tmp_path / "patient003"
    half.mkdir()
    (half / "patient003_ED.nii.gz").symlink_to(acdc / "patient003_ED.nii.gz")
    (half / "patient003_ES.nii.gz").symlink_to(tmp_path / "moved" / "patient003_ES.nii.gz")
    r = route_study(half)
    assert [e.label for e in r.series] == ["patient003_ED.nii.gz"]
    assert any(n.startswith("1 file(s) are links to nothing") and "patient003_ES.nii.gz" in n for n in r.notes)
    assert len(r.unread) == 1 and "patient003_ES.nii.gz" in r.unread[0]  # an error of the study: it is review
    from CardiacLandmarksLib.study.analyse import StudyResult
    from CardiacLandmarksLib.study.report import write_study_report

    write_study_report(StudyResult(routing=r), tmp_path / "out")
    assert "note: 1 file(s) are links to nothing" in (tmp_path / "out" / "routing.txt").read_text()


def test_route_qperf_analyze_folder():
    """QPerf's folder (Analyze .hdr + .img pairs, .mat workspaces, a README) was taken for a DICOM folder
    ("no DICOM series and no image file found"); read as a stack, data_stress.hdr became 59 one-frame perfusion
    series, 59 failures. Now: two 2D+T series with their frames, the AIFs listed as curves, each paired with the
    series it has one sample per frame of (test_study_quantitative_perfusion.py)."""
    r = route_study(require_data("perfusion", "qperf"))
    rest, stress = _by_label(r, "data.hdr"), _by_label(r, "data_stress.hdr")
    assert (rest.n_slices, rest.n_phases, stress.n_slices, stress.n_phases) == (1, 68, 1, 59)
    assert rest.sequence == stress.sequence == "perfusion" and rest.analyses == stress.analyses == ["perfusion"]
    assert any("the last frame differs from the first" in ev for ev in rest.evidence)  # no keyword in 'data'
    for name, n in (("aif.hdr", 68), ("aif_stress.hdr", 59)):
        aif = _by_label(r, name)
        assert aif.sequence == "curve" and aif.analyses == [] and f"({n} samples, one per frame)" in aif.reason
    assert (rest.aif, stress.aif) == ("aif", "aif_stress")
    assert len(r.series) == 4


@pytest.mark.data
def test_long_axis_ed_es_pair_keeps_the_files_phases(tmp_path):
    """lax_4c_ed + lax_4c_es (M&Ms-2 via CineMA): ED is the file named ED whatever the lengths say; the
    max/min rule called the ES file ED when its LV came out longer."""
    res = analyse_study(require_data("lax", "mnms2_cinema"), tmp_path / "out")
    (o,) = [o for o in res.outcomes if o.task == "lax"]
    assert o.ok and o.result.model["ed_es"] == {"ed": 0, "es": 1}
    per_phase = {m.phase: m.value for m in o.result.measurements if m.name == "LV length"}
    ms = {m.name: m for m in o.result.measurements}
    assert ms["LV length ED"].phase == 0 and ms["LV length ES"].phase == 1
    assert ms["Longitudinal shortening"].value == pytest.approx(100 * (per_phase[0] - per_phase[1]) / per_phase[0])
    saved = json.loads((tmp_path / "out" / "lax_4c_lax" / "landmarks.json").read_text())
    assert saved["model"]["ed_es"] == {"ed": 0, "es": 1}


@pytest.mark.data
def test_long_axis_ed_es_pair_is_detected_frame_by_frame(tmp_path):
    """M&Ms-2 001's 4CH ED and ES files as a study: the two frames are a systole apart, so each keeps its own
    detection. Tracked from the better frame, AL-P at ED stayed 23.6 mm from the mask-derived point and the
    shortening read 5.8 % for a reference 21.5 %. (The 4CH model was trained on this subject: this checks the
    pair's handling, not the model's accuracy.)"""
    from CardiacLandmarksLib.lax.labels import derive_from_series

    d = require_data("mnms2", "001")
    study = tmp_path / "pair"
    study.mkdir()
    for ph in ("ED", "ES"):
        for suffix in ("", "_gt"):
            (study / f"001_LA_{ph}{suffix}.nii.gz").symlink_to(d / f"001_LA_{ph}{suffix}.nii.gz")
    res = analyse_study(study, tmp_path / "out")
    (o,) = [o for o in res.outcomes if o.task == "lax"]
    lm = o.result
    ref, lengths = {}, {}
    for t, ph in enumerate(("ED", "ES")):
        img = load_series(d / f"001_LA_{ph}.nii.gz")
        pts = derive_from_series(img, load_series(d / f"001_LA_{ph}_gt.nii.gz"), "4ch").points
        ref[t] = {n: img.ijk_to_lps(np.r_[ij, 0.0]) for n, ij in pts.items()}
        lengths[t] = np.linalg.norm(ref[t]["APEX"] - (ref[t]["AL-P"] + ref[t]["IS-P"]) / 2)
    errors = [np.linalg.norm(lm.get(n, 0, t).position - ref[t][n]) for t in (0, 1) for n in ref[t]]
    assert max(errors) < 10.0
    ms = {m.name: m.value for m in lm.measurements}
    reference = 100 * (lengths[0] - lengths[1]) / lengths[0]
    assert reference == pytest.approx(21.5, abs=0.1)
    assert ms["Longitudinal shortening"] == pytest.approx(reference, abs=5.0)
    assert any("not tracked" in n for n in lm.model["lax_checks"]) and "tracking" not in lm.model


@pytest.mark.data
def test_lge_short_axis_stack_gets_landmarks_with_the_lge_model(tmp_path):
    """An LGE SAX stack is analysed (it used to be listed only, though the LGE landmark model is bundled): the
    LGE model runs, and its key values are named '(mid, LGE)', apart from the cine's '(mid, ED)' column: a cohort
    table has them in columns of their own (they were in none)."""
    from CardiacLandmarksLib.study.analyse import COHORT_VALUES, cohort_values

    mscmr = require_data("lge", "mscmr")
    study = tmp_path / "lge"
    study.mkdir()
    for name in ("subject8_DE.nii.gz", "subject8_DE_manual.nii.gz"):
        (study / name).symlink_to(mscmr / name)
    res = analyse_study(study, tmp_path / "out")
    lge = _by_label(res.routing, "subject8_DE.nii.gz")
    assert (lge.sequence, lge.view, lge.analyses) == ("lge", "sax", ["sax"])
    assert _by_label(res.routing, "subject8_DE_manual").sequence == "label"
    (o,) = res.outcomes
    assert o.ok and o.task == "sax" and o.result.model["name"] == "sax_unet_lge"
    names = [v.name for v in o.values]
    assert names == ["RVI angle (mid, LGE)", "RVI opening angle (mid, LGE)"]
    assert not set(names) & {name for name, _ in COHORT_VALUES if name.endswith("ED)")}
    row = cohort_values(o.values)
    assert row["rvi_angle_lge_deg"] == pytest.approx(o.values[0].value, abs=1e-3)  # rounded as in the table
    assert row["rvi_opening_lge_deg"] == pytest.approx(o.values[1].value, abs=1e-3)
    assert row["rvi_angle_lge_deg_status"] == o.values[0].status and row["rvi_angle_deg_status"] == "n/a"
    res.write(tmp_path / "out")
    assert (tmp_path / "out" / "summary.png").stat().st_size > 10000


@pytest.mark.data
def test_refined_chamber_without_a_model_is_listed_not_run(mnms_study, monkeypatch):
    """A long-axis plane whose chamber is decided from the SAX landmarks as one with no bundled model leaves
    the analyses with the reason (it used to fail in run_lax with a ModelIntegrityError)."""
    from CardiacLandmarksLib.study import routing as routing_mod

    r = route_study(mnms_study)
    cine = _by_label(r, "001_LA_CINE")
    assert cine.view == "lax" and cine.analyses == ["lax"]
    sax_normal = np.cross(cine.normal, [1.0, 0.0, 0.0])
    sax_normal /= np.linalg.norm(sax_normal)
    line = np.cross(cine.normal, sax_normal)
    rv_dir = np.cross(sax_normal, line)  # in the SAX plane, 90 deg from the line: a 2CH plane
    assert routing_mod.refine_lax_chamber(cine, np.zeros(3), rv_dir, sax_normal) == "2ch"
    assert cine.analyses == [] and "no bundled 2CH landmark model (only 4CH): not analysed" in cine.reason
    monkeypatch.setattr(routing_mod, "lax_model_views", lambda: {"2ch", "4ch"})
    cine = _by_label(route_study(mnms_study), "001_LA_CINE")
    routing_mod.refine_lax_chamber(cine, np.zeros(3), rv_dir, sax_normal)
    assert cine.analyses == ["lax"] and cine.reason == "long-axis cine (2CH from geometry)"


@pytest.mark.data
@pytest.mark.slow
def _summary_texts(monkeypatch) -> list:
    """Patch savefig to record every text of the figures saved: ``(text, window extent, figure bbox, image axes
    extents)`` at the save dpi."""
    import matplotlib.figure
    from matplotlib.text import Text

    seen = []
    real = matplotlib.figure.Figure.savefig

    def record(fig, *args, **kwargs):
        fig.set_dpi(kwargs.get("dpi", fig.dpi))
        renderer = fig.canvas.get_renderer()
        axes = [ax.get_window_extent(renderer).frozen() for ax in fig.axes if ax.images]
        seen.extend((t.get_text(), t.get_window_extent(renderer), fig.bbox.frozen(), axes)
                    for t in fig.findobj(Text) if t.get_visible() and t.get_text())
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    return seen


def test_analyse_mnms2_study(mnms_study, tmp_path, monkeypatch):
    out = tmp_path / "out"
    res = analyse_study(mnms_study, out, subject={"height_cm": 170.0, "weight_kg": 70.0})
    # (plus ("function", True) on the SAX pair where the function package is installed)
    assert [(o.task, o.ok) for o in res.outcomes if o.task != "function"] == [("sax", True), ("lax", True)]
    cine = _by_label(res.routing, "001_LA_CINE")
    assert cine.view == "4ch"  # the chamber from the SAX landmarks (the data set's 4CH cine)
    assert any("4CH" in ev and "geometry" in ev for ev in cine.evidence)
    cc = {v.name.split(" (")[0]: v for v in res.crosschecks}
    assert set(cc) == {"mitral plane to basal SAX slice", "LAX apex beyond apical SAX slice",
                       "LAX plane to mid C-LV", "LAX apex to SAX LV axis"}
    assert cc["LAX plane to mid C-LV"].value < 10.0
    assert abs(cc["mitral plane to basal SAX slice"].value) < 25.0
    texts = _summary_texts(monkeypatch)
    written = res.write(out)
    assert {p.name for p in written} == {"study.json", "routing.txt", "summary.png"}
    d = json.loads((out / "study.json").read_text())
    assert d["status"] in ("ok", "review") and len(d["routing"]["series"]) == 7
    assert d["settings"] == {"device": "cpu", "tta": True}  # the default: mirror TTA (study --no-tta turns it off)
    assert all(v["status"] in ("ok", "review", "n/a") and "flags" in v for v in d["key_values"])
    # key values carry their measurement's own status (one trust rule): this file's header puts the RV on the
    # patient's left-posterior, so the RVI angle is review for 'orientation' though its points are high
    kv = {v["name"]: v for v in d["key_values"]}
    sax = next(o for o in res.outcomes if o.task == "sax").result
    k = int(kv["RVI angle (mid, ED)"]["detail"].split()[1].rstrip(","))
    for name in ("RVI angle", "RVI opening angle"):
        m = next(m for m in sax.measurements if m.name == name and m.slice == k and m.phase == 0)
        assert kv[f"{name} (mid, ED)"]["status"] == m.status
    assert kv["RVI angle (mid, ED)"]["status"] == "review" and "orientation review" in kv["RVI angle (mid, ED)"]["flags"]
    lax = next(o for o in res.outcomes if o.task == "lax").result
    for name in ("LV length ED", "LV length ES", "Longitudinal shortening"):
        m = next(m for m in lax.measurements if m.name == name and m.slice == 0)
        assert kv[f"{name} (4CH)"]["status"] == m.status, name
        # what to check names the measurement's doubtful points, each with its flag and confidence
        low = {s.id.split(" s", 1)[0]: s for s in m.sources if s.kind == "landmark" and s.flag != "high"}
        check = kv[f"{name} (4CH)"]["check"]
        assert (check == "") == (m.status == "ok"), (name, check)
        for point, src in low.items():
            assert f"{point} ({src.flag} " in check, (name, check)
    assert kv["RVI angle (mid, ED)"]["check"] == "check orientation (review)"
    assert all((v["check"] == "") == (v["status"] == "ok") for v in d["key_values"]), d["key_values"]
    # the summary page shows it under each value that is not ok, inside the page and off the image panels
    shown = [t for t in texts if t[0].startswith(" " * 8)]  # whole, over more lines when long
    assert " ".join(t[0].strip() for t in shown) == " ".join(
        v["check"] for v in d["key_values"] if v["check"] and not v["name"].endswith((" index", " SV")))  # beside
    assert all(len(t[0].strip()) <= 74 for t in shown)
    for text, box, page, images in [t for t in texts if t[0].startswith(("review", "    ok", " " * 8))]:
        assert page.x0 <= box.x0 and box.x1 <= page.x1, (text, box, page)
        assert not any(box.overlaps(img) for img in images), text
    # the routing table on the page: a row too long for its place ends in an ellipsis (it was cut mid-word)
    table = next(t[0] for t in texts if t[0].startswith("series "))
    cut = [line for line in table.splitlines() if len(line) == 140]
    assert cut and all(line.endswith("\u2026") for line in cut), table
    assert max(map(len, table.splitlines())) <= 140
    # each image panel has its orientation compass, as the analyses' own figures: the panels show the images as
    # stored, so without it the page did not say where anterior or the patient's left is (SAX and function: A, L
    # and S, as the SAX overlay; the 4CH view: its two most in-plane axes)
    letters = [(t[0], t[1]) for t in texts if t[0] in ("A", "P", "L", "R", "S", "I")]
    per_panel = [sorted(x for x, box in letters if img.contains((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2))
                 for img in texts[0][3]]
    assert sorted(map(len, per_panel)) == [2, 3, 3], per_panel
    # every key value is on the page: on its own line, or an index beside its volume or mass and the stroke volume
    # beside the EF, in brackets (one status); none left to "... more in study.json"
    lines = [t[0] for t in texts if t[0].startswith(("review", "    ok", "   n/a"))]
    assert not any("more in study.json" in t[0] for t in texts)
    for v in d["key_values"]:
        shown_value = f"{v['value']:.{2 if v['unit'] in ('ratio', 'ml/min/g') else 1}f} {v['unit']}"
        assert any(f" {v['name'][:52]}: {shown_value}" in line for line in lines) or any(
            line.split(": ")[0].endswith(f" {host}") and f"({'SV ' if v['name'].endswith(' SV') else ''}{shown_value})"
            in line for host in [v["name"].removesuffix(" index"), v["name"][:3] + "EF"] for line in lines), v["name"]
    assert "LV mass index" in kv and "RV ESV index" in kv and "LV SV" in kv  # with the subject's height and weight
    assert kv["LV mass index"]["value"] == pytest.approx(kv["LV mass"]["value"] / (170.0 * 70.0 / 3600.0) ** 0.5,
                                                         rel=1e-3)
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "001_SA_sax" / "landmarks.json").exists()
    assert (out / "001_LA_CINE_lax" / "landmarks.json").exists()
    row = res.cohort_row()
    assert row["lv_length_ed_mm"] > row["lv_length_es_mm"] > 0
    assert row["lax_view"] == "4CH"  # the view the three long-axis columns come from


def test_cohort_long_axis_columns_come_from_one_view():
    """The cohort's LV length ED / ES and shortening columns took, each on its own, the first key value of that name:
    with a site's 2CH model copied in beside the bundled 4CH one (now catalogued by `models --refresh`), a study
    whose 4CH cine gave only an ED length filled ED from the 4CH and ES and shortening from the 2CH, one row mixing
    two views without saying so. They now come from one view, the one with the most values (4CH first on a tie),
    named in `lax_view`; `cohort.csv` has the column after the shortening's status."""
    from CardiacLandmarksLib.batch.engine import cohort_columns
    from CardiacLandmarksLib.study.analyse import cohort_values
    from CardiacLandmarksLib.study.tasks import KeyValue

    def lax(view, ed, es, short):
        return [KeyValue(f"LV length ED ({view})", ed, "mm", "review" if ed else "n/a"),
                KeyValue(f"LV length ES ({view})", es, "mm", "review" if es else "n/a"),
                KeyValue(f"Longitudinal shortening ({view})", short, "%", "review" if short else "n/a")]

    partial_4ch, whole_2ch = lax("4CH", 101.0, None, None), lax("2CH", 95.0, 80.0, 15.8)
    row = cohort_values([*partial_4ch, *whole_2ch])
    assert (row["lax_view"], row["lv_length_ed_mm"], row["lv_length_es_mm"], row["lax_shortening_pct"]) == (
        "2CH", 95.0, 80.0, 15.8)
    row = cohort_values([*whole_2ch, *lax("4CH", 100.0, 82.0, 18.0)])  # a tie: the 4CH
    assert (row["lax_view"], row["lv_length_ed_mm"], row["lv_length_es_mm"], row["lax_shortening_pct"]) == (
        "4CH", 100.0, 82.0, 18.0)
    row = cohort_values(lax("4CH", None, None, None))
    assert row["lax_view"] is None and row["lv_length_ed_mm"] is None and row["lv_length_ed_mm_status"] == "n/a"
    cols = cohort_columns()
    assert cols[cols.index("lax_shortening_pct_status") + 1] == "lax_view"


@pytest.mark.data
@pytest.mark.slow
def test_analyse_sunnybrook_perfusion_study(sb_study, tmp_path, monkeypatch):
    res = analyse_study(sb_study, tmp_path)
    assert [(o.task, o.ok) for o in res.outcomes if o.task != "function"] == [("sax", True), ("perfusion", True)]
    perf = next(o for o in res.outcomes if o.task == "perfusion")
    assert (tmp_path / perf.files[0]).exists()
    assert perf.values and perf.values[0].value > 0
    # the GE series names no stress/rest: said in words (it read "perfusion perfusion upslope_index", then
    # "perfusion, stress/rest unknown upslope_index (global)", cut on the summary page), and the cohort table still
    # finds it, its metric column as the report's key
    assert perf.values[0].name == "perfusion (stress/rest?) upslope index (global)"
    assert perf.values[0].detail == "1 slice(s); stress or rest not named in the series"
    assert res.cohort_row()["perfusion_unlabelled"] == round(perf.values[0].value, 3)
    assert res.cohort_row()["perfusion_unlabelled_metric"] == "upslope_index (ratio)"  # no AIF: not MBF
    texts = _summary_texts(monkeypatch)
    res.write(tmp_path)
    # no analysis failed; the one error is the study's two patients (Sunnybrook's cine, GE's perfusion series)
    assert json.loads((tmp_path / "study.json").read_text())["errors"] == [
        "series of more than one patient (PatientID): s6 'NOID', s300 'SCD0000101'"]
    # the summary page shows the whole name (the earlier one was cut: "... upslope_index (globa\u2026: 0.37 ratio")
    line = next(t[0] for t in texts if "stress/rest?" in t[0])
    assert line.endswith(f"perfusion (stress/rest?) upslope index (global): {perf.values[0].value:.2f} ratio"), line


@pytest.mark.data
def test_cli_study_route_only(sb_study, tmp_path, capsys):
    from CardiacLandmarksLib.cli import main

    assert main(["study", str(sb_study), "-o", str(tmp_path), "--route-only"]) == 0
    out = capsys.readouterr().out
    assert "First Pass New" in out and "SAX cine stack (reference)" in out
    assert "series of more than one patient (PatientID): s6 'NOID', s300 'SCD0000101'" in out  # seen before a run
    assert main(["study", str(tmp_path / "absent"), "-o", str(tmp_path)]) == 1  # a named error, no traceback


@pytest.mark.data
def test_study_without_tta_runs_every_network_once_and_says_so(mnms_study, tmp_path, monkeypatch):
    """``study --no-tta`` (cohorts on CPU): the SAX landmark and function networks run without their mirror pass,
    and the report records it; by default study.json says mirror TTA was used (test_analyse_mnms2_study). The
    long-axis network keeps its rotated / scaled copies: they are part of its points' flags, not of their
    positions (lax.pipeline.analyse_lax)."""
    from CardiacLandmarksLib.cli import main
    from CardiacLandmarksLib.lax import pipeline as lp
    from CardiacLandmarksLib.models.loader import LoadedModel

    seen = []
    orig, orig_lax = LoadedModel.predict_maps, lp.predict_with_tta

    def spy(self, images, tta=True, *a, **kw):
        if self.card.get("input", {}).get("mirror_tta"):  # a network with mirror TTA (the SAX ones)
            seen.append((self.name, bool(tta)))
        return orig(self, images, tta, *a, **kw)

    lax_tta = []

    def spy_lax(model, canvases, tta=True):
        lax_tta.append(bool(tta))
        return orig_lax(model, canvases, tta)

    monkeypatch.setattr(LoadedModel, "predict_maps", spy)
    monkeypatch.setattr(lp, "predict_with_tta", spy_lax)
    assert main(["study", str(mnms_study), "-o", str(tmp_path / "fast"), "--no-tta"]) == 0
    names = {n for n, _ in seen}
    assert "sax_unet" in names and [x for x in seen if x[1]] == [], sorted(set(seen))
    assert lax_tta and all(lax_tta)  # the long-axis confidence copies still run
    d = json.loads((tmp_path / "fast" / "study.json").read_text())
    assert d["settings"] == {"device": "cpu", "tta": False}
    assert {"sax", "lax"} <= {a["task"] for a in d["analyses"] if a["ok"]}


def test_key_value_flags_name_input_warnings_and_value_checks():
    """A study key value names a warning on the input and a check on the value by id, so its flags say why it is
    review ('plausibility review' for a shortening outside 10-25 %), not a bare 'review'."""
    from CardiacLandmarksLib.core.landmarks import Measurement, Source
    from CardiacLandmarksLib.lax.measurements import shortening_range_source
    from CardiacLandmarksLib.study.tasks import _source_flags

    m = Measurement("Longitudinal shortening", 0, None, 3.3, "%",
                    sources=[Source("AL-P s0 p0", "high", 0.9), Source("orientation", "review", kind="input"),
                             shortening_range_source(3.3)])
    assert _source_flags(m) == ["high", "orientation review", "plausibility review"]


def test_cohort_columns_take_the_value_of_their_own_name():
    """``LV EDV index`` starts with ``LV EDV``: each cohort column takes its own key value, wherever the other
    stands in the list, and an index left out (no height or weight) leaves its column blank, not the plain value."""
    from CardiacLandmarksLib.study.analyse import cohort_values
    from CardiacLandmarksLib.study.tasks import KeyValue

    kvs = [KeyValue("LV EDV index", 80.0, "ml/m2", "ok"), KeyValue("LV EDV", 150.0, "ml", "ok"),
           KeyValue("LV mass", 120.0, "g", "review", ["myo_segmentation_uncertain"])]
    row = cohort_values(kvs)
    assert (row["lv_edv_ml"], row["lv_edv_index_ml_m2"], row["lv_mass_g"], row["lv_mass_g_status"]) == (
        150.0, 80.0, 120.0, "review")
    row = cohort_values(kvs[1:])
    assert row["lv_edv_index_ml_m2"] is None and row["lv_edv_index_ml_m2_status"] == "n/a"
    assert row["lv_mass_index_g_m2"] is None and row["lv_edv_ml"] == 150.0


def test_cohort_perfusion_columns_read_the_names_of_earlier_versions():
    """The perfusion key values are named in a reader's words ('perfusion (stress/rest?) upslope index (global)',
    'perfusion reserve MPRI (global)'); a ``study.json`` written before, under the report's keys ('perfusion,
    stress/rest unknown upslope_index (global)', 'perfusion reserve mpri (global)'), still fills the same cohort
    columns with the same ``_metric`` text (a resumed batch mixes both)."""
    from CardiacLandmarksLib.study.analyse import cohort_values
    from CardiacLandmarksLib.study.tasks import KeyValue

    now = [KeyValue("perfusion stress MBF (global)", 2.9, "ml/min/g", "ok"),
           KeyValue("perfusion (stress/rest?) upslope index (global)", 0.37, "ratio", "review", ["x"]),
           KeyValue("perfusion reserve MPR (global)", 2.6, "ratio", "ok")]
    before = [KeyValue("perfusion stress mbf (global)", 2.9, "ml/min/g", "ok"),
              KeyValue("perfusion, stress/rest unknown upslope_index (global)", 0.37, "ratio", "review", ["x"]),
              KeyValue("perfusion reserve mpr (global)", 2.6, "ratio", "ok")]
    expected = {"perfusion_stress": 2.9, "perfusion_stress_status": "ok", "perfusion_stress_metric": "mbf (ml/min/g)",
                "perfusion_rest": None, "perfusion_rest_status": "n/a", "perfusion_rest_metric": None,
                "perfusion_unlabelled": 0.37, "perfusion_unlabelled_status": "review",
                "perfusion_unlabelled_metric": "upslope_index (ratio)", "perfusion_reserve": 2.6,
                "perfusion_reserve_status": "ok", "perfusion_reserve_metric": "mpr (ratio)"}
    for kvs in (now, before):
        row = cohort_values(kvs)
        assert {k: row[k] for k in expected} == expected, kvs


@pytest.mark.data
def test_height_without_weight_keeps_the_volumes(tmp_path):
    """A cohort row with a height and no weight: the function analysis failed as a whole ('give both --height and
    --weight'), and the study lost its volumes, EF and mass. Now they are reported, not indexed, with a note."""
    acdc = require_data("acdc")
    study = tmp_path / "p003"
    study.mkdir()
    for ph in ("ED", "ES"):
        (study / f"patient003_{ph}.nii.gz").symlink_to(acdc / f"patient003_{ph}.nii.gz")
    res = analyse_study(study, tmp_path / "out", subject={"height_cm": 165.0, "weight_kg": None})
    assert [(o.task, o.ok) for o in res.outcomes] == [("sax", True), ("function", True)], res.errors
    kv = {v.name: v for v in res.key_values()}
    assert kv["LV EDV"].value > 0 and kv["LV mass"].value > 0
    assert not any(name.endswith(" index") for name in kv)
    assert "the subject's height is given without its weight: volumes and mass not indexed" in res.notes


def test_subject_from_header_rules():
    """Header values only where the caller gave neither; 0 (anonymised) gives nothing; a pair no person has is
    left out with a note; PatientSize is in metres."""
    from types import SimpleNamespace

    from CardiacLandmarksLib.function.measurements import subject_from_header

    def run(subject, size, weight):
        notes = []
        subject_from_header(subject, SimpleNamespace(metadata={"patient_size_m": size, "patient_weight_kg": weight}),
                            "#3 'cine'", notes)
        return subject, notes

    assert run({}, 1.8, 90.0) == ({"height_cm": 180.0, "weight_kg": 90.0, "source": "DICOM header"},
                                  ["height 180 cm and weight 90 kg from the DICOM header of #3 'cine' (PatientSize, "
                                   "PatientWeight): volumes and mass indexed to the body-surface area"])
    assert run({"height_cm": 170.0}, 1.8, 90.0) == ({"height_cm": 170.0}, [])  # the caller's value wins
    assert run({}, 0.0, 0.0) == ({}, [])
    assert run({}, None, 80.0) == ({}, [])
    subject, notes = run({}, 180.0, 90.0)  # centimetres where metres belong: 18000 cm
    assert subject == {} and notes[0].startswith("height and weight in the DICOM header of #3 'cine' not used: height")


def test_summary_keeps_the_perfusion_panel_of_a_full_study():
    """A study with a SAX cine, an LGE stack, a 4CH cine, function and perfusion has five image panels for four
    places: the LGE stack's gives way (its values are in the key values); before, the perfusion bull's-eye was the
    one left out."""
    from CardiacLandmarksLib.study.report import _choose_panels

    page = [("sax", "cine"), ("sax", "lge"), ("lax", "4ch"), ("function", "cine"), ("perfusion", "study")]
    assert _choose_panels(page) == [("sax", "cine"), ("lax", "4ch"), ("function", "cine"), ("perfusion", "study")]
    assert _choose_panels(page[:4]) == page[:4]
    two_lax = [("sax", "cine"), ("lax", "2ch"), ("lax", "4ch"), ("function", "cine"), ("perfusion", "study")]
    assert _choose_panels(two_lax) == two_lax[:4]  # no second SAX stack: the page order decides



def test_summary_panels_take_the_room_the_text_leaves(tmp_path, monkeypatch):
    """A study of few key values (GE perfusion: one routing row, one value): the top block was 0.85 : 1.15 of the
    page whatever its text, an empty band above small pictures. The picture now takes what the text leaves (here
    more than 60 % of the page height), and every text of the top block stays above it."""
    import matplotlib.image

    from CardiacLandmarksLib.study.analyse import StudyResult
    from CardiacLandmarksLib.study.report import render_summary_png
    from CardiacLandmarksLib.study.routing import StudyRouting
    from CardiacLandmarksLib.study.tasks import KeyValue, TaskOutcome

    matplotlib.image.imsave(tmp_path / "bullseye.png", np.random.default_rng(0).random((300, 300)))
    values = [KeyValue("perfusion stress upslope index (global)", 0.37, "ratio", "ok", [], ""),
              KeyValue("cross-check LV length, long axis vs short-axis stack (4ch, ED)", 3.2, "mm", "ok", [], ""),
              KeyValue("LV mass", 120.0, "g", "review", ["myo_segmentation_uncertain"], "",
                       "check LV myocardium contours (uncertain segmentation)")]
    res = StudyResult(StudyRouting(str(tmp_path), "images", []),
                      [TaskOutcome("perfusion", "p", values=values, files=["bullseye.png"])])
    texts = _summary_texts(monkeypatch)
    assert render_summary_png(res, tmp_path)[:8] == b"\x89PNG\r\n\x1a\n"
    (page, images) = texts[0][2], texts[0][3]
    assert len(images) == 1 and images[0].height > 0.6 * page.height, (images, page)
    block = [t for t in texts if t[0].startswith(("key values", "series", "  ", "    ok", "review"))]
    assert len(block) >= 4
    for text, box, *_ in block:
        assert box.y0 > images[0].y1, text
    # a name longer than the column is cut with an ellipsis, not silently ("... (4ch, E: 3.2 mm" would hide it)
    cut = next(t[0] for t in texts if "cross-check" in t[0])
    assert cut.endswith("\u2026: 3.2 mm") and "(4ch, ED)" not in cut, cut

def test_summary_key_values_go_on_under_the_routing_table(tmp_path, monkeypatch, pyplot_untouched):
    """More key values than the right-hand column holds (a full study: SAX, LGE, function, long axis, perfusion and
    cross-checks, 30 here) go on under the routing table, each once, inside the page; before, the rest was only
    counted ('... 6 more in study.json')."""
    from CardiacLandmarksLib.study.analyse import StudyResult
    from CardiacLandmarksLib.study.report import render_summary_png
    from CardiacLandmarksLib.study.routing import StudyRouting
    from CardiacLandmarksLib.study.tasks import KeyValue, TaskOutcome

    values = [KeyValue(f"value {n:02d}", float(n), "mm", "review" if n % 2 else "ok", [], "",
                       "check A-RVI (low 0.10)" if n % 2 else "") for n in range(30)]
    res = StudyResult(StudyRouting(str(tmp_path), "images", []), [TaskOutcome("perfusion", "p", values=values)])
    texts = _summary_texts(monkeypatch)
    png = render_summary_png(res, tmp_path)  # drawn through savefig, which the recorder wraps
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    shown = [t for t in texts if t[0].lstrip().startswith(("ok", "review")) and "value " in t[0]]
    assert sorted(t[0].split("value ")[1][:2] for t in shown) == [f"{n:02d}" for n in range(30)]
    assert not any("more in study.json" in t[0] for t in texts)
    assert {round(t[1].x0) for t in shown} and min(t[1].x0 for t in shown) < 100  # the second column, at the left
    for text, box, page, _ in shown:
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0, text


def test_summary_check_text_is_not_cut(tmp_path, monkeypatch, pyplot_untouched):
    """A value doubted for several points and its input names each under it; the summary cut that line at 74
    characters ('check A-RVI s2 (low 0.21), I-RVI s2 (low 0.33), A-RVI s5 (low 0.40), I-…'), so the reader did not
    see which other points to check. It goes on over up to three lines, inside the page; a study error over two."""
    from CardiacLandmarksLib.study.analyse import StudyResult
    from CardiacLandmarksLib.study.report import render_summary_png
    from CardiacLandmarksLib.study.routing import StudyRouting
    from CardiacLandmarksLib.study.tasks import KeyValue, TaskOutcome

    check = ("check A-RVI s2 (low 0.21), I-RVI s2 (low 0.33), A-RVI s5 (low 0.40), I-RVI s5 (low 0.12), "
             "C-LV s7 (absent), check input (incomplete series)")
    values = [KeyValue("RVI angle (mean of slices)", 31.0, "deg", "review", ["low_confidence"], "", check),
              KeyValue("LV EDV", 150.0, "ml", "ok", [], "")]
    two = "series of more than one patient (PatientID): s1000 'SCD0000101', s6 'NOID'"  # an error of the study
    res = StudyResult(StudyRouting(str(tmp_path), "images", [], not_one_exam=two),
                      [TaskOutcome("perfusion", "p", values=values)])
    texts = _summary_texts(monkeypatch)
    assert render_summary_png(res, tmp_path)[:8] == b"\x89PNG\r\n\x1a\n"
    error = [t for t in texts if t[0].startswith(" error")]
    error += [t for t in texts if t[0].startswith(" " * 8) and t[1].y1 < error[0][1].y0]
    assert " ".join(t[0][8:] for t in error) == two  # the second series was cut off ('s1000 'SCD0000101', ...')
    under = [t for t in texts if t[0].startswith(" " * 8) and t not in error]
    assert " ".join(t[0].strip() for t in under) == check
    assert len(under) == 2 and all(len(t[0].strip()) <= 74 for t in under)
    for text, box, page, _ in under:
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0, text
    assert [t for t in texts if "LV EDV" in t[0]][0][1].y1 < under[-1][1].y0  # the next value comes after


@pytest.mark.data
def test_route_reads_dicom_subfolders_beside_image_files(tmp_path):
    """A study exported partly as NIfTI: image files in the folder, a DICOM series in a sub-folder. The sub-folder
    was left out without a word (the folder counted as a folder of image files); a result folder of this tool
    there is still not a series."""
    study = tmp_path / "study"
    study.mkdir()
    for ph in ("ED", "ES"):
        (study / f"patient003_{ph}.nii.gz").symlink_to(require_data("acdc") / f"patient003_{ph}.nii.gz")
    (study / "cine").symlink_to(require_data("sunnybrook", "SCD0000101", "dicom"))
    (study / "out").mkdir()
    (study / "out" / "run.json").write_text("{}")
    r = route_study(study)
    labels = [s.label for s in r.series]
    assert "patient003_ED.nii.gz + patient003_ES.nii.gz" in labels and any(x.startswith("#300") for x in labels), labels
    assert len(r.series) == 2 and r.kind == "mixed"


def test_routing_table_cuts_a_long_name_with_an_ellipsis():
    """A series description longer than the table's 44-character column was cut without a mark in routing.txt
    and on the summary ('#7 'SA cine retro 12 slices breath-hold fol'): a reader took it for the whole name."""
    from CardiacLandmarksLib.study.routing import RoutedSeries, StudyRouting

    long = "#7 'SA cine retrospective 12 slices breath-hold following contrast'"
    table = StudyRouting("/x", "dicom", [RoutedSeries("s7", long, "s7", 12, 25, "sax", "cine",
                                                       reason="SAX cine stack")]).table()
    row = table.splitlines()[1]
    assert row.startswith(long[:43] + "\u2026") and long not in table
    assert row.rstrip().endswith("SAX cine stack")


def _crosscheck_pair(sax_frame: str, lax_frame: str):
    """A SAX stack (slices at z = 0..40 mm, C-LV on the z axis) and a 4CH plane through that axis (hinges 10 mm
    basal of the first slice, apex 10 mm beyond the last): every cross-check in range, every point high."""
    from CardiacLandmarksLib.core.landmarks import Landmark, LandmarkSet
    from CardiacLandmarksLib.core.series import CMRSeries

    def pt(name, k, xyz):
        p = np.array(xyz, float)
        return Landmark(name, k, 0, True, p, p.copy(), 0.9, "high")
    sax = CMRSeries(np.zeros((1, 5, 32, 32), np.float32), (1.0, 1.0, 10.0), np.eye(3),
                    np.array([[0.0, 0.0, 10.0 * k] for k in range(5)]), metadata={"frame_of_reference_uid": sax_frame})
    lax = CMRSeries(np.zeros((1, 1, 32, 32), np.float32), (1.0, 1.0, 8.0),
                    np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]), np.zeros((1, 3)),
                    metadata={"frame_of_reference_uid": lax_frame})
    sax_lm = LandmarkSet("sax", "sax", {}, [pt("C-LV", k, (0, 0, 10 * k)) for k in range(5)])
    lax_lm = LandmarkSet("lax", "4ch", {}, [pt("AL-P", 0, (15, 0, -10)), pt("IS-P", 0, (-15, 0, -10)),
                                            pt("APEX", 0, (0, 0, 50))])
    return sax, sax_lm, lax, lax_lm


@pytest.mark.parametrize("lax_frame", ["1.2.3", "", "1.2.4"])
def test_crosschecks_are_review_when_the_series_have_different_frames_of_reference(lax_frame):
    """Series of different DICOM frames of reference (the table moved, another session) need not share one patient
    space: every LAX-vs-SAX value is review, with the reason, however well its points sit. The same frame, or a file
    that names none, keeps the values ok."""
    from CardiacLandmarksLib.study.crosscheck import crosscheck

    values, _ = crosscheck(*_crosscheck_pair("1.2.3", lax_frame), "s4")
    assert [round(v.value, 3) for v in values] == [10.0, 10.0, 0.0, 0.0]
    if lax_frame != "1.2.4":
        assert [v.status for v in values] == ["ok"] * 4
    else:
        assert [v.status for v in values] == ["review"] * 4
        assert all("frame of reference review" in v.flags for v in values)
        assert all(v.check == "the SAX and long-axis series have different DICOM frames of reference"
                   for v in values)


def test_key_values_of_one_name_from_two_series_name_their_series():
    """Two SAX cines of one study (a repeated stack: Sunnybrook's cine and a copy as series 301, run by hand) both
    printed 'RVI angle (mid, ED)'. The reference stack keeps the name (the cohort column takes it), the other names
    its series; values of names no other series has are left alone."""
    from CardiacLandmarksLib.study.analyse import cohort_values
    from CardiacLandmarksLib.study.tasks import KeyValue, name_series_apart

    def sax(angle):
        return [KeyValue("RVI angle (mid, ED)", angle, "deg", "ok"), KeyValue("RVI opening angle (mid, ED)", 100.0,
                                                                            "deg", "ok")]
    first, repeat, lge = sax(-31.3), sax(-29.0), [KeyValue("RVI angle (mid, LGE)", -30.0, "deg", "ok")]
    lax = [KeyValue("LV length ED", 88.0, "mm", "ok")]
    groups = [("s299", repeat), ("s300", first), ("s900", lge), ("s4", lax)]
    name_series_apart(groups, first="s300")
    assert [v.name for _, vals in groups for v in vals] == [
        "RVI angle (mid, ED, s299)", "RVI opening angle (mid, ED, s299)", "RVI angle (mid, ED)",
        "RVI opening angle (mid, ED)", "RVI angle (mid, LGE)", "LV length ED"]
    assert cohort_values(repeat + first)["rvi_angle_deg"] == -31.3  # the reference's, though the repeat came first
    two_lax = [("s4", [KeyValue("LV length ED", 88.0, "mm", "ok")]), ("s5", [KeyValue("LV length ED", 90.0, "mm", "ok")])]
    name_series_apart(two_lax)  # no reference among them: the first keeps the name
    assert [v.name for _, vals in two_lax for v in vals] == ["LV length ED", "LV length ED (s5)"]


def test_study_runs_where_detect_runs(monkeypatch):
    """`study` (and `perfusion`) defaulted to the CPU while detect, function and evaluate take the GPU when one is
    present: a study on a GPU workstation ran on its CPU unless asked. Now every single-study command defaults to
    auto, resolved when the models are set up, so study.json's settings name the device used; `--device cuda`
    without a GPU is refused there, before any series is analysed; `batch` keeps its documented CPU default."""
    import argparse

    import torch

    from CardiacLandmarksLib.cli import batch as cli_batch
    from CardiacLandmarksLib.cli import perfusion as cli_perfusion
    from CardiacLandmarksLib.cli import study as cli_study
    from CardiacLandmarksLib.core.errors import CardiacLandmarksError
    from CardiacLandmarksLib.study.tasks import Models

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    for module in (cli_study, cli_perfusion, cli_batch):
        module.register(sub)
    assert parser.parse_args(["study", "s", "-o", "o"]).device == "auto"
    assert parser.parse_args(["perfusion", "p.nii.gz", "-o", "o"]).device == "auto"
    assert parser.parse_args(["batch", "m.csv", "-o", "o"]).device == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert Models().device == "cpu"
    with pytest.raises(CardiacLandmarksError, match="no CUDA GPU"):
        Models("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert Models().device == "cuda" and Models("cpu").device == "cpu"


@pytest.mark.data
def test_a_derived_copy_of_the_sax_stack_is_not_the_reference(tmp_path, data_root):
    """Scanners store inline-processed copies of a cine beside it (Siemens' inline ventricular function, as in UK
    Biobank's short-axis ZIPs: the same slices and phases, contours drawn in, ImageType DERIVED). With the copy's
    SeriesNumber first, routing took it as the reference stack (a tie on slices and phases went to the first) and
    analysed both. Now the original is the reference and the copy is listed, not analysed again."""
    study = sm.sunnybrook_and_a_copy(data_root, tmp_path / "study", "inlinevf", 299,
                                     ImageType=["DERIVED", "PRIMARY", "CARDIAC", "INLINEVF"],
                                     SeriesDescription="CINE_segmented_SAX_InlineVF")
    routing = route_study(study)
    by_key = {e.key: e for e in routing.series}
    assert set(by_key) == {"s299", "s300"}
    assert routing.sax_reference is by_key["s300"] and by_key["s300"].analyses == ["sax", "function"]
    assert "an original series preferred to a derived copy of the same size" in by_key["s300"].evidence[-1]
    copy = by_key["s299"]
    assert copy.analyses == [] and copy.reason.startswith("a derived copy of the reference stack #300")
    assert not routing.problems()  # listed, not a problem of the study


@pytest.mark.data
@pytest.mark.parametrize("description", ["", "cine post contrast"])
def test_a_sax_stack_acquired_again_is_the_reference(tmp_path, data_root, description):
    """The SAX cine protocol run twice (one multi-slice series each; a repeat after a failed breath-hold or an
    arrhythmic beat): the reference was the first (a tie went to the first in series order) and the repeat got its own
    landmark analysis beside it. Now the later acquisition (the same description, plane, slices and phases) is the
    reference, as for a per-slice stack, and the earlier is listed, not analysed. A stack of another description
    (here a post-contrast cine) is not a repeat: the first stays the reference and both are analysed, as before."""
    src = data_root / "sunnybrook" / "SCD0000101" / "dicom"
    study = sm.sunnybrook_and_a_copy(data_root, tmp_path / "study", "again", 301, halve=True,
                                     SeriesDescription=description)  # halved: another acquisition
    routing = route_study(study)
    by_key = {e.key: e for e in routing.series}
    assert set(by_key) == {"s300", "s301"}
    if description:
        assert routing.sax_reference is by_key["s300"]
        assert by_key["s300"].analyses == ["sax", "function"] and by_key["s301"].analyses == ["sax"]
        return
    assert routing.sax_reference is by_key["s301"] and by_key["s301"].analyses == ["sax", "function"]
    assert by_key["s301"].evidence[-1].endswith("the protocol of #300 '<no description>' acquired again later (the "
                                                "same description, plane, slices and phases): the later acquisition "
                                                "is the reference")
    earlier = by_key["s300"]
    assert earlier.analyses == [] and earlier.reason == (
        "an earlier acquisition of the reference stack's protocol (#301 '<no description>', acquired later, is the "
        "reference): listed, not analysed")
    assert not routing.problems()
    np.testing.assert_array_equal(routing.sax_reference.load().pixels, load_series(src).pixels // 2)


@pytest.mark.data
def test_a_long_axis_cine_acquired_again_on_its_plane_is_analysed_once(tmp_path, data_root):
    """The 4CH cine protocol run again on the same plane (a failed breath-hold, an arrhythmic beat): both were
    analysed, so the study reported two LV lengths and shortenings, one of them from the acquisition the reader
    discarded. Now the later is analysed and the earlier listed. The same description on a parallel plane 10 mm away
    (a stack of long-axis slices) is another slice, not a repeat: analysed as before. Built as the derived-copy test: the
    Sunnybrook stack as the SAX reference and one slice's 20 phases turned into 4CH planes (orientation only)."""
    study = sm.sunnybrook_with_4ch_planes(data_root, tmp_path / "study", {
        "first": (20, 0.0, "ORIGINAL"), "again": (21, 0.0, "ORIGINAL"), "beside": (22, 10.0, "ORIGINAL")})
    routing = route_study(study)
    by_key = {e.key: e for e in routing.series}
    assert (by_key["s21"].view, by_key["s21"].analyses) == ("4ch", ["lax"])
    assert (by_key["s22"].view, by_key["s22"].analyses) == ("4ch", ["lax"])
    assert by_key["s20"].analyses == [] and by_key["s20"].reason == (
        "an earlier acquisition of the protocol of #21 'cine_4ch' (acquired later, the same plane and phases: analysed "
        "there): listed, not analysed")
    assert not routing.problems()


@pytest.mark.data
def test_a_derived_copy_of_a_long_axis_cine_is_listed(tmp_path, data_root):
    """As for the SAX stack: a DERIVED copy of a long-axis cine (the same plane and phases) was analysed beside the
    original; it is now listed, not analysed again. Built from the Sunnybrook cine: its stack as the SAX reference,
    one slice's 20 phases turned into a 4CH plane (orientation only: routing reads no pixels), once original and once
    DERIVED."""
    study = sm.sunnybrook_with_4ch_planes(data_root, tmp_path / "study", {
        "4ch": (20, 0.0, "ORIGINAL"), "4ch_derived": (19, 0.0, "DERIVED")})
    by_key = {e.key: e for e in route_study(study).series}
    assert (by_key["s20"].view, by_key["s20"].analyses) == ("4ch", ["lax"])
    assert by_key["s19"].analyses == [] and by_key["s19"].reason == (
        "a derived copy of #20 'cine_4ch' (ImageType DERIVED, the same plane and phases): listed, not analysed again")


@pytest.mark.data
def test_single_phase_stack_of_unknown_sequence_says_what_to_do(tmp_path, monkeypatch, pyplot_untouched):
    """A SAX stack of one phase whose name and tags say no sequence (ACDC patient001's ED frame saved as
    'scan.nii.gz', as an anonymised export names it) is listed, not analysed: cine and LGE stacks look alike there.
    The reason said only 'sequence not recognised', the summary page only 'no series analysed'. Both now say what
    to run, and the hint works: `study --sequence scan=cine` analyses it (`detect --sequence cine` too)."""
    from CardiacLandmarksLib.cli import main

    scan = tmp_path / "scan.nii.gz"
    scan.symlink_to(require_data("acdc", "patient001_ED.nii.gz"))
    texts = _summary_texts(monkeypatch)
    from CardiacLandmarksLib.study.report import write_study_report

    res = analyse_study(scan, tmp_path / "out")
    write_study_report(res, tmp_path / "out")
    (e,) = res.routing.series
    assert (e.view, e.sequence, e.n_phases, e.analyses) == ("sax", "unknown", 1, [])
    assert ("not analysed; `cardiac-landmarks study` with --sequence scan=lge (or =cine), or --sequence lge for "
            "every such series, analyses it") in e.reason
    assert res.status == "n/a" and not res.outcomes
    page = " ".join(t[0] for t in texts)
    assert "no series analysed" in page
    under = [t for t in texts if "--sequence lge" in t[0]]  # the whole reason under it (the table cuts it)
    assert len(under) == 1 and under[0][0].replace("\n", " ") == e.reason
    assert under[0][2].x0 <= under[0][1].x0 and under[0][1].x1 <= under[0][2].x1  # inside the page
    assert main(["detect", str(scan), "--sequence", "cine", "-o", str(tmp_path / "d"), "--no-progress"]) == 0
    assert (tmp_path / "d" / "landmarks.json").exists()
    assert main(["study", str(scan), "--sequence", "scan=cine", "-o", str(tmp_path / "s")]) == 0
    assert json.loads((tmp_path / "s" / "study.json").read_text())["analyses"][0]["task"] == "sax"


@pytest.mark.data
def test_study_takes_the_sequence_the_user_gives(tmp_path, capsys):
    """`study --sequence`: an anonymised export of two one-phase SAX stacks (real ACDC frames named 'scan' and
    'stack2', sequence unknown to the tags and the shape) and a label map. ``--sequence lge`` takes every series of
    unrecognised sequence as LGE, ``SERIES=SEQ`` one series and wins over it; each says so in its evidence and
    the routing's notes; the LGE model then analyses the stack (the image files are read while routing: the
    routing's sequence reaches the loaded series too). A name the study lacks, or of a series that is no image, is
    a named error listing the series, before any work; a sequence not analysed is refused by the parser."""
    from CardiacLandmarksLib.cli import main
    from CardiacLandmarksLib.core.errors import UnknownSeriesError

    study = tmp_path / "export"
    study.mkdir()
    (study / "scan.nii.gz").symlink_to(require_data("acdc", "patient001_ED.nii.gz"))
    (study / "stack2.nii.gz").symlink_to(require_data("acdc", "patient002_ES.nii.gz"))
    (study / "seg.nii.gz").symlink_to(require_data("acdc", "patient001_ED_gt.nii.gz"))
    by_key = {e.key: e for e in route_study(study).series}
    assert (by_key["scan"].sequence, by_key["stack2"].sequence, by_key["seg"].sequence) == ("unknown", "unknown", "label")
    r = route_study(study, sequences={None: "lge", "scan": "cine"})
    by_key = {e.key: e for e in r.series}
    assert (by_key["scan"].sequence, by_key["scan"].analyses) == ("cine", ["sax"])
    assert (by_key["stack2"].sequence, by_key["stack2"].analyses) == ("lge", ["sax"])
    assert by_key["stack2"].reason.startswith("LGE SAX stack")
    assert by_key["seg"].sequence == "label"  # not an image: the bare --sequence leaves it
    assert "sequence lge: given by the user (--sequence; from the tags and shape: unknown)" in by_key["stack2"].evidence
    assert r.notes[:2] == ["--sequence scan=cine: scan taken as cine",
                           "--sequence lge: 1 series of unrecognised sequence taken as lge (stack2)"]
    assert by_key["stack2"].load().sequence == "lge"  # read while routing, it still takes the routing's sequence
    # the file name names the series too, and a given sequence wins over a recognised one
    r = route_study(study, sequences={"stack2.nii.gz": "perfusion"})
    assert {e.key: e.sequence for e in r.series}["stack2"] == "perfusion"
    with pytest.raises(UnknownSeriesError, match=r"no series 'scan3'; its image series: scan, stack2$"):
        route_study(study, sequences={"scan3": "lge"})
    with pytest.raises(UnknownSeriesError, match="seg.nii.gz is not an image series"):
        route_study(study, sequences={"seg": "lge"})
    from CardiacLandmarksLib.core.errors import CardiacLandmarksError

    with pytest.raises(CardiacLandmarksError, match=r"^sequence 'flow': choose from cine, lge, perfusion$"):
        route_study(study, sequences={None: "flow"})  # through Python: a named error (a plain ValueError before)
    # through the CLI: the LGE model analyses the one stack given as LGE; run.json keeps what was given
    assert main(["study", str(study / "scan.nii.gz"), "--sequence", "scan=lge", "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "note: --sequence scan=lge: scan taken as lge" in out and "RVI angle (mid, LGE)" in out
    doc = json.loads((tmp_path / "out" / "study.json").read_text())
    assert "sax_unet_lge" in json.dumps(doc["models"]) and "sax_unet\"" not in json.dumps(doc["models"])
    assert json.loads((tmp_path / "out" / "run.json").read_text())["options"]["sequence"] == [["scan", "lge"]]
    assert main(["study", str(study), "--sequence", "nope=lge", "-o", str(tmp_path / "bad")]) == 1
    assert "the study has no series 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["study", str(study), "--sequence", "scan=t2", "-o", str(tmp_path / "bad2")])
    assert stop.value.code == 2 and "SEQ one of cine, lge, perfusion, got 'scan=t2'" in capsys.readouterr().err


@pytest.mark.data
def test_study_reads_a_quoted_pattern_as_its_files(tmp_path, capsys):
    """`study "patient003_E?.nii.gz"` (quoted, or typed in Windows' cmd.exe, which expands no pattern) was
    `study input not found: .../patient003_E?.nii.gz`, though the batch manifest's path column takes patterns. The
    pattern now stands for the files it matches: the ED/ES pair is routed as the unquoted pattern routes it, and
    run.json records (and hashes) the two files, not the pattern. A pattern that matches nothing is named as such;
    a file whose name holds a pattern character is read as it is."""
    from CardiacLandmarksLib.cli import main
    from CardiacLandmarksLib.core.errors import InputNotFoundError

    acdc = require_data("acdc")
    for ph in ("ED", "ES"):
        (tmp_path / f"p3_{ph}.nii.gz").symlink_to(acdc / f"patient003_{ph}.nii.gz")
    (tmp_path / "p3_ED_gt.nii.gz").symlink_to(acdc / "patient003_ED_gt.nii.gz")
    r = route_study(str(tmp_path / "p3_E?.nii.gz"))
    assert [e.label for e in r.series] == ["p3_ED.nii.gz + p3_ES.nii.gz"]
    assert r.series[0].analyses == ["sax", "function"]
    with pytest.raises(InputNotFoundError, match=r"^study input not found: .*p4_E\*\.nii\.gz \(no file or folder "
                                                 r"matches this pattern\)$"):
        route_study(tmp_path / "p4_E*.nii.gz")
    odd = tmp_path / "scan[1]"
    odd.mkdir()
    (odd / "x_ED.nii.gz").symlink_to(acdc / "patient003_ED.nii.gz")
    assert [e.label for e in route_study(odd).series] == ["x_ED.nii.gz"]  # an existing path is not a pattern
    assert main(["study", str(tmp_path / "p3_E?.nii.gz"), "-o", str(tmp_path / "out"), "--route-only"]) == 0
    assert "p3_ED.nii.gz + p3_ES.nii.gz" in capsys.readouterr().out
    assert main(["study", str(tmp_path / "nothing*"), "-o", str(tmp_path / "out2")]) == 1
    assert "(no file or folder matches this pattern)" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()  # refused before any output folder is made


def test_an_empty_study_folder_is_named_empty(tmp_path):
    """A cohort folder with a study whose export had not finished (an empty folder, or empty sub-folders) failed
    with the words a folder of unreadable files gets (`no DICOM series and no image file found in ...`); the reader
    looked for files that were never there. It now says the folder holds no files; a folder with files that are not
    images keeps the words it had."""
    from CardiacLandmarksLib.core.errors import NoDicomError

    (tmp_path / "empty" / "SAX" / "cine").mkdir(parents=True)
    with pytest.raises(NoDicomError, match=r"^no DICOM series and no image file found in .*empty \(the folder holds "
                                           r"no files, in no sub-folder either: an export not finished, or the wrong "
                                           r"folder\?\)$"):
        route_study(tmp_path / "empty")
    (tmp_path / "empty" / "SAX" / "gone.dcm").symlink_to(tmp_path / "moved" / "IM_0001.dcm")
    with pytest.raises(NoDicomError, match=r"^no DICOM series and no image file found in .*empty$"):
        route_study(tmp_path / "empty")  # a link to nothing is not nothing (the study's links are named elsewhere)
    (tmp_path / "empty" / "SAX" / "gone.dcm").unlink()
    (tmp_path / "empty" / "SAX" / "notes.txt").write_text("to be exported")
    with pytest.raises(NoDicomError, match=r"^no DICOM series and no image file found in .*empty$"):
        route_study(tmp_path / "empty")
