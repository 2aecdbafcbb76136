"""Issue 15, output folders: checked before any work, one run per folder, run.json written last,
earlier results moved to a dated backup, hand edits kept, temp files of killed runs removed,
read_markups refuses mixed runs. End to end with ``detect`` on a real ACDC stack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from CardiacLandmarksLib import cli
from CardiacLandmarksLib.core.errors import MixedRunError, OutputPathError
from CardiacLandmarksLib.io.markups import read_markups
from CardiacLandmarksLib.io.outputs import (
    check_output_file,
    describe_input,
    finish_run,
    prepare_output_dir,
    sha256_file,
)

# ------------------------------------------------------------------ the library calls


def test_output_path_that_is_a_file_or_not_creatable_is_a_named_error(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    with pytest.raises(OutputPathError, match="is a file, not a folder"):
        prepare_output_dir(f)
    with pytest.raises(OutputPathError, match="cannot create the output folder"):
        prepare_output_dir(f / "sub")
    with pytest.raises(OutputPathError, match="cannot create the output folder"):
        prepare_output_dir("/proc/cardiac-landmarks-out")  # no folder can be made there, not even by root


def test_single_output_file_is_checked(tmp_path, capsys):
    with pytest.raises(OutputPathError, match="is a folder"):
        check_output_file(tmp_path)
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputPathError, match="is a file, not a folder"):
        check_output_file(tmp_path / "f" / "ev.json")
    assert cli.main(["evaluate", "--json", str(tmp_path / "f" / "ev.json")]) == 1  # before any model runs
    assert "is a file, not a folder" in capsys.readouterr().err


def test_earlier_run_is_moved_and_only_changed_files_are_kept(tmp_path):
    out = tmp_path / "out"
    inp = tmp_path / "input.txt"
    inp.write_text("the input")
    od = prepare_output_dir(out, [inp])
    od.begin()
    for name, text in (("landmarks.json", "A"), ("measurements.csv", "B"), ("landmarks_phase15.mrk.json", "C")):
        (out / name).write_text(text)
    first = finish_run(od, [inp], {"opt": 1}, [out / "landmarks.json", out / "measurements.csv",
                                              out / "landmarks_phase15.mrk.json"], command="test")
    assert first.backup_dir is None and first.messages == []
    run = json.loads((out / "run.json").read_text())
    assert run["complete"] is True and run["inputs"][0]["sha256"] == sha256_file(inp)
    assert [f["name"] for f in run["files"]] == ["landmarks.json", "landmarks_phase15.mrk.json", "measurements.csv"]

    (out / "measurements.csv").write_text("B, corrected by hand")
    (out / ".landmarks.json.x1y2.tmp").write_text("left by a killed run")
    (out / "my_notes.txt").write_text("not ours")
    od = prepare_output_dir(out, [inp])
    assert od.removed_tmp == [".landmarks.json.x1y2.tmp"]
    od.begin()  # the earlier run's files leave the folder before anything is written
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["my_notes.txt"]
    (out / "landmarks.json").write_text("A")  # rewritten identically
    (out / "measurements.csv").write_text("B")  # differs from the hand edit
    rec = finish_run(od, [inp], {"opt": 2}, [out / "landmarks.json", out / "measurements.csv"])
    assert rec.backup_dir is not None and rec.backup_dir.name.startswith("backup-")
    assert sorted(p.name for p in rec.backup_dir.iterdir()) == ["landmarks_phase15.mrk.json", "measurements.csv",
                                                                "run.json"]
    assert (rec.backup_dir / "measurements.csv").read_text() == "B, corrected by hand"
    assert "earlier results kept in" in rec.messages[0] and "1 changed (measurements.csv)" in rec.messages[0]
    assert "1 not written by this run (landmarks_phase15.mrk.json)" in rec.messages[0]
    assert (out / "my_notes.txt").exists() and inp.exists()


@pytest.mark.data
def test_describe_input_of_a_dicom_folder(sunnybrook_dicom):
    d = describe_input(sunnybrook_dicom)
    assert d["n_files"] == 240 and d["size"] > 30e6 and len(d["sha256"]) == 64


# ------------------------------------------------------------------ end to end with detect


@pytest.fixture(scope="module")
def detect_run(data_root, tmp_path_factory):
    img = data_root / "acdc" / "patient101_ED.nii.gz"
    out = tmp_path_factory.mktemp("detect") / "out"
    assert cli.main(["detect", str(img), "-o", str(out), "--no-progress", "--no-tta"]) == 0
    return img, out


@pytest.mark.data
def test_detect_writes_run_json_last_with_inputs_models_and_files(detect_run):
    img, out = detect_run
    run = json.loads((out / "run.json").read_text())
    assert run["complete"] is True and run["command"] == "detect"
    assert run["inputs"][0]["size"] == img.stat().st_size and run["inputs"][0]["sha256"] == sha256_file(img)
    assert run["models"][0]["name"] == "sax_unet" and run["models"][0]["version"]
    assert run["options"]["view"] == "auto"
    names = {f["name"] for f in run["files"]}
    assert {"landmarks.json", "measurements.csv", "landmarks.mrk.json", "patient101_ED_overlay.png"} <= names
    for f in run["files"]:
        assert sha256_file(out / f["name"]) == f["sha256"]
    newest = max((out / n for n in names), key=lambda p: p.stat().st_mtime_ns)
    assert (out / "run.json").stat().st_mtime_ns >= newest.stat().st_mtime_ns


@pytest.mark.data
def test_read_markups_refuses_a_folder_with_files_of_another_run(detect_run, tmp_path):
    _, out = detect_run
    assert read_markups(out).landmarks  # the run's own files read fine
    stale = out / "landmarks_phase15.mrk.json"
    stale.write_text((out / "landmarks.mrk.json").read_text())
    try:
        with pytest.raises(MixedRunError, match="landmarks_phase15.mrk.json"):
            read_markups(out)
    finally:
        stale.unlink()


@pytest.mark.data
def test_detect_rerun_backs_up_hand_edits_and_stale_files(detect_run, capsys):
    img, out = detect_run
    edited = (out / "measurements.csv").read_text() + "# corrected by hand\n"
    (out / "measurements.csv").write_text(edited)
    (out / "landmarks_phase19.mrk.json").write_text((out / "landmarks.mrk.json").read_text())
    (out / ".landmarks.json.abcd.tmp").write_text("killed")
    capsys.readouterr()
    assert cli.main(["detect", str(img), "-o", str(out), "--no-progress", "--no-tta"]) == 0
    text = capsys.readouterr().out  # printed at normal verbosity
    assert "earlier results kept in" in text and "removed 1 temporary file(s)" in text
    (backup,) = [p for p in out.iterdir() if p.is_dir() and p.name.startswith("backup-")]
    assert sorted(p.name for p in backup.iterdir()) == ["landmarks_phase19.mrk.json", "measurements.csv", "run.json"]
    assert (backup / "measurements.csv").read_text() == edited
    assert not list(out.glob(".*.tmp")) and not (out / "landmarks_phase19.mrk.json").exists()
    assert not list(out.glob("*.bak-*"))  # no per-file backups of unchanged files any more
    assert read_markups(out).landmarks


@pytest.mark.data
def test_detect_output_path_checked_before_loading(data_root, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert cli.main(["detect", str(data_root / "acdc" / "patient101_ED.nii.gz"), "-o", str(f)]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err



@pytest.mark.data
def test_identical_rerun_leaves_no_backup(data_root, tmp_path, capsys):
    """lax-validate (deterministic) twice into one folder: the second run rewrites every file identically,
    so no backup folder stays and nothing is announced; run.json lists the same files."""
    out = tmp_path / "lv"
    assert cli.main(["lax-validate", "--data", str(data_root), "-o", str(out)]) == 0
    first = json.loads((out / "run.json").read_text())
    capsys.readouterr()
    assert cli.main(["lax-validate", "--data", str(data_root), "-o", str(out)]) == 0
    assert "earlier results kept" not in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["mnms2_001_tracking.png", "run.json", "validation.json"]
    assert json.loads((out / "run.json").read_text())["files"] == first["files"]


@pytest.mark.data
def test_ctrl_c_names_the_incomplete_folder_and_where_the_earlier_run_went(detect_run, tmp_path, monkeypatch, capsys):
    """Ctrl-C while a run writes ended in a KeyboardInterrupt traceback, and said nothing of the folder: its earlier
    run moved to a backup, the new one half written. Now the folder is named as incomplete with its backup; a run
    stopped before its first file leaves no folder; exit status 130."""
    import shutil

    from CardiacLandmarksLib.sax import report

    img, first = detect_run
    out = tmp_path / "out"
    shutil.copytree(first, out, ignore=shutil.ignore_patterns("backup-*"))  # (other tests' re-runs there)
    earlier = sorted(p.name for p in out.iterdir())

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report.markups, "write_markups", ctrl_c)  # after landmarks.json and measurements.csv
    assert cli.main(["detect", str(img), "-o", str(out), "--no-progress", "--no-tta"]) == 130
    err = capsys.readouterr().err
    (backup,) = (p for p in out.glob("backup-*") if p.name not in earlier)
    assert err == (f"cardiac-landmarks: interrupted (Ctrl-C)\n  {out} holds an incomplete run (no run.json): run the "
                   f"command again into it, or delete it; the earlier run's files are in {backup.name}/\n")
    assert sorted(p.name for p in backup.iterdir()) == earlier  # the complete earlier run, run.json with it
    assert sorted(p.name for p in out.iterdir()) == sorted([backup.name, "landmarks.json", "measurements.csv"])
    monkeypatch.setattr(report, "write_landmarks_json", ctrl_c)  # before the first file
    fresh = tmp_path / "new" / "out"
    assert cli.main(["detect", str(img), "-o", str(fresh), "--no-progress", "--no-tta"]) == 130
    assert capsys.readouterr().err == "cardiac-landmarks: interrupted (Ctrl-C)\n"
    assert not (tmp_path / "new").exists()


@pytest.mark.data
def test_one_run_at_a_time_per_output_folder(detect_run, tmp_path, capsys):
    """Two runs into one folder at once (two terminals, a resubmitted cluster job): the second's begin() moved the
    first's files into its backup half-way through the first, and both wrote there. Now the folder is held from the
    check to run.json, and a run from another process is refused before any work, naming who holds it; the lock
    goes with its holder, and a run that ends (well or not) leaves no lock file behind."""
    import shutil

    from conftest import held_by_another_process

    from CardiacLandmarksLib.io import outputs

    img, first = detect_run
    out = tmp_path / "out"
    shutil.copytree(first, out, ignore=shutil.ignore_patterns("backup-*"))
    earlier = {p.name: p.read_bytes() for p in out.iterdir()}
    with held_by_another_process(out, "study") as holder:
        capsys.readouterr()
        for command in (["detect", str(img), "-o", str(out), "--no-progress"], ["study", str(img), "-o", str(out)],
                        ["function", str(img), "-o", str(out)]):
            assert cli.main(command) == 1, command
            err = capsys.readouterr().err
            assert err.startswith(f"cardiac-landmarks: error: another run is writing into {out} (study: process "
                                  f"{holder.pid} on "), (command, err)
            assert "wait for it to end, or give another output folder" in err and "incomplete" not in err
            assert {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(".")} == earlier
    assert cli.main(["detect", str(tmp_path / "missing.nii.gz"), "-o", str(out)]) == 1  # a failed run ...
    assert outputs._HELD == {} and not list(out.glob(".cardiac-landmarks*"))  # ... gives the folder back
    assert cli.main(["detect", str(img), "-o", str(out), "--no-progress", "--no-tta"]) == 0
    assert outputs._HELD == {} and not list(out.glob(".cardiac-landmarks*"))



def test_a_folder_lock_file_goes_before_its_lock(tmp_path, monkeypatch):
    """The lock file was removed after the lock was let go: a run that had opened the file meanwhile could then lock
    the removed file while a third made a new one, and both wrote. Now the file goes while the lock is held, so a
    run that opened it before finds its file unlinked when it can lock it (filelock then does not take it) and a
    new hold works."""
    import fcntl
    import os

    import filelock
    from conftest import held_by_another_process

    from CardiacLandmarksLib.io import outputs

    folder = tmp_path / "out"
    folder.mkdir()
    outputs.hold_folder(folder, "study")
    lock_file = folder / outputs.HOLD_LOCK_FILE
    seen = []
    real = filelock.FileLock.release

    def release(self, *args, **kwargs):
        seen.append(lock_file.exists())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(filelock.FileLock, "release", release)
    waiter = os.open(lock_file, os.O_RDWR)  # another run opened the lock file and waits for its lock
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(waiter, fcntl.LOCK_EX | fcntl.LOCK_NB)
        outputs.release_folder(folder)
        assert seen and not any(seen)  # gone before the lock was let go
        fcntl.flock(waiter, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the waiter gets its lock ...
        assert os.fstat(waiter).st_nlink == 0  # ... on a removed file, which is no folder's lock
        with held_by_another_process(folder, "study"):  # so another run holds the folder
            with pytest.raises(outputs.FolderHeldError, match=r"\(study: process "):
                outputs.hold_folder(folder, "detect")
    finally:
        os.close(waiter)


def _disk_full(monkeypatch, after: int = 0):
    """ENOSPC from the file system when a written file is flushed (where a full disk shows on a real one), from
    the file after the first ``after`` on."""
    import errno

    from CardiacLandmarksLib.io import atomic

    real, calls = atomic.os.fsync, []

    def full(fd):
        calls.append(fd)
        if len(calls) > after:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(atomic.os, "fsync", full)


def test_a_full_disk_is_a_named_error_that_leaves_the_old_file(tmp_path, monkeypatch):
    """A full disk ended every command in an OSError traceback. The atomic writers now raise OutputPathError
    naming the file, the space needed and free; the target keeps its old content and no temporary file stays."""
    from CardiacLandmarksLib.io.atomic import atomic_write_bytes

    target = tmp_path / "landmarks.json"
    target.write_text("old")
    _disk_full(monkeypatch)
    with pytest.raises(OutputPathError, match=r"cannot write .*landmarks\.json: No space left on device \(the file "
                                              r"needs 2\.0 MB, [0-9.]+ MB are free there\): free some space"):
        atomic_write_bytes(target, b"x" * 2_000_000)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["landmarks.json"]


@pytest.mark.data
def test_a_full_disk_stops_a_study_with_a_named_error(data_root, tmp_path, monkeypatch, capsys):
    """A full disk during `study` failed each analysis in turn and then reported the study as `review`, exit 0, as
    if its series had been the trouble; a batch then counted it done and a resume skipped it. Now the first file
    that cannot be written stops the study: a named error and the incomplete folder (exit 1)."""
    study = tmp_path / "p001"
    study.mkdir()
    for phase in ("ED", "ES"):
        (study / f"patient001_{phase}.nii.gz").symlink_to(data_root / "acdc" / f"patient001_{phase}.nii.gz")
    out = tmp_path / "out"
    _disk_full(monkeypatch, after=2)  # room for landmarks.json and measurements.csv
    assert cli.main(["study", str(study), "-o", str(out), "--no-tta"]) == 1
    captured = capsys.readouterr()
    assert "study status" not in captured.out
    assert captured.err.count("No space left on device") == 1, captured.err
    assert f"  {out} holds an incomplete run (no run.json)" in captured.err
    assert not (out / "study.json").exists() and not (out / "run.json").exists()


def test_ctrl_c_during_training_says_what_the_stopped_run_left(tmp_path, monkeypatch, capsys):
    """A training stopped by Ctrl-C (hours on a CPU) ended in a traceback; its folder then held the weights of the
    last validated epoch, possibly beside an earlier run's card. Now it says which weights are there and that they
    are not a usable model; a training stopped before saving says it kept nothing."""
    from CardiacLandmarksLib.training import train_lax, train_sax

    out = tmp_path / "runs" / "sax"
    out.mkdir(parents=True)
    (out / "sax_unet.json").write_text("{}")  # an earlier run's card

    def stopped_after_an_epoch(data, out_dir, cfg, device="cpu", progress=True, version=None):
        (out_dir / "sax_unet.pt").write_bytes(b"weights")
        raise KeyboardInterrupt

    monkeypatch.setattr(train_sax, "train_sax", stopped_after_an_epoch)
    assert cli.main(["train", "--view", "sax", "--data", str(tmp_path), "-o", str(out), "--device", "cpu"]) == 130
    err = capsys.readouterr().err
    assert err.startswith(f"cardiac-landmarks: interrupted (Ctrl-C): the training stopped; {out / 'sax_unet.pt'} holds "
                          "the weights of its last validated epoch, with no card of its own (not calibrated"), err

    def stopped_at_once(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_lax, "train_lax", stopped_at_once)
    lax_out = tmp_path / "runs" / "4ch"
    assert cli.main(["train", "--view", "4ch", "-o", str(lax_out), "--device", "cpu"]) == 130
    assert f"the training stopped before it saved any weights in {lax_out}" in capsys.readouterr().err


@pytest.mark.data
def test_result_files_read_back_in_any_locale(detect_run, tmp_path):
    """The tool reads its JSON files (landmarks.json, run.json, the model catalogue) with the locale's encoding
    though it writes UTF-8; its own writers escape non-ASCII, but another program's do not (an editor, jq, pandas
    saving landmarks.json with a reader's note 'geprüft'). In a process whose locale is not UTF-8 (Slicer or a job
    on Windows: cp1252; a C locale, which GDCM's DICOM writer leaves behind) such a file could not be read back
    (UnicodeDecodeError) or was read garbled. Here the locale is set to C: every reader still reads it."""
    import locale
    import shutil

    from CardiacLandmarksLib.io.markups import load_landmarks
    from CardiacLandmarksLib.models.catalogue import catalogue
    from CardiacLandmarksLib.results import read_result

    _, first = detect_run
    out = tmp_path / "out"
    shutil.copytree(first, out, ignore=shutil.ignore_patterns("backup-*"))
    doc = json.loads((out / "landmarks.json").read_text(encoding="utf-8"))
    doc["note"] = "geprüft – Dr. Müller"
    (out / "landmarks.json").write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    saved = locale.setlocale(locale.LC_ALL)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        assert locale.getpreferredencoding(False) != "UTF-8"  # open() without an encoding would read ASCII
        assert load_landmarks(out / "landmarks.json").landmarks  # `lax-track --points`, the console
        assert read_markups(out).landmarks and read_result(out, point_lists="ignore").landmarks
        assert "sax_unet" in catalogue()
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def test_written_lines_fold_a_run_of_per_phase_point_lists():
    """A cine's 20 (or 78) per-phase point lists were 20 'wrote' lines that pushed the measurements off the screen;
    a run of consecutive phases is one line now. Two files, a gap in the numbering, another folder or another stem
    are each listed as they are."""
    from CardiacLandmarksLib.cli import written_lines

    out = Path("/r/out")
    phases = [out / f"landmarks_phase{t:02d}.mrk.json" for t in range(20)]
    lines = written_lines([out / "landmarks.json", *phases, out / "run.json"])
    assert lines == [f"  wrote {out / 'landmarks.json'}",
                     f"  wrote {phases[0]} ... landmarks_phase19.mrk.json (20 point lists, one per phase)",
                     f"  wrote {out / 'run.json'}"]
    two = written_lines(phases[:2])
    assert two == [f"  wrote {phases[0]}", f"  wrote {phases[1]}"]
    gap = written_lines([*phases[:3], *phases[5:8]])
    assert gap == [f"  wrote {phases[0]} ... landmarks_phase02.mrk.json (3 point lists, one per phase)",
                   f"  wrote {phases[5]} ... landmarks_phase07.mrk.json (3 point lists, one per phase)"]
    other = [out / "a_phase00.mrk.json", out / "a_phase01.mrk.json", out / "b_phase02.mrk.json",
             Path("/r/x") / "a_phase03.mrk.json"]
    assert written_lines(other) == [f"  wrote {p}" for p in other]
