"""Result folders: file naming shared by every task's writer, and folders that never mislead.

Every front end (CLI, Slicer Logic, console, batch, web) writes a task result through the result's
``write(outdir)`` (:class:`CardiacLandmarksLib.sax.report.LandmarkResult` for SAX and LAX landmarks,
:class:`CardiacLandmarksLib.perfusion.pipeline.PerfusionResult` for perfusion); those writers name their
files with :func:`output_stem` and write through :mod:`.atomic`.

Output folders are checked before any work, hold one run, and get a manifest last.

Life of a run (every front end does the same three calls)::

    out = prepare_output_dir(path, inputs=[input_path])   # before loading models / inference
    ...analysis...
    out.begin()                                           # right before the first file is written
    files = result.write(out.path)                        # the writers (atomic)
    finish_run(out, inputs=[input_path], options={...}, files=files, models=[...])

* :func:`prepare_output_dir` checks the path (a folder, or creatable; writable: a probe file is
  created and removed) and raises :class:`~.errors.OutputPathError` with the reason otherwise;
  it removes temporary files left by killed runs (``.<name>.*.tmp`` of :mod:`.atomic`).
* :meth:`OutputDir.begin` moves the files of an earlier run (those listed in its ``run.json``;
  without one, the files this tool writes: ``landmarks.json``, ``measurements.csv``,
  ``*.mrk.json``, ``*.png``, ``report.json``/``.csv``, ``*_segmentation.nii.gz`` ...) into a
  dated folder ``backup-YYYYmmdd-HHMMSS/``, so a killed run never leaves new files next to old
  ones. Inputs and unknown files are never moved.
* :func:`finish_run` writes ``run.json`` **last** (inputs with size and SHA-256, tool and model
  versions, options, files written with size and SHA-256, warnings, ``"complete": true``), then
  drops from the backup folder every file the new run rewrote identically, so the backup keeps
  only what the run changed (hand edits included) or did not rewrite; an empty backup folder
  is removed. Its :attr:`RunRecord.messages` say where the backup is, for printing at normal
  verbosity.

One run at a time writes into a folder: :func:`prepare_output_dir` with ``hold=<command>`` (the command line's
writing commands, ``batch``, the Slicer perfusion export) and :func:`folder_held` (``apply-review``) take
an OS file lock on the folder's hidden :data:`HOLD_LOCK_FILE` (:mod:`filelock`; the OS drops it when the process
ends) and say who holds it in :data:`HOLD_INFO_FILE`; :func:`finish_run` (or :func:`release_folder`) gives it back.
A second run into the folder from another process is refused by name before any work; before, a second ``study``
into a folder moved the first's files into its backup half-way through the first.
Edits from outside a run (the review app's Save, the Slicer panel's exports) hold the folder and its study folder
while they write (:func:`edit_held`).

A folder without ``run.json`` therefore holds an incomplete (or pre-manifest) run.
:func:`~.markups.read_markups` refuses a folder whose markups are not all listed in its
``run.json`` (:class:`~.errors.MixedRunError`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fnmatch
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from CardiacLandmarksLib.core.errors import FolderHeldError, OutputPathError
from CardiacLandmarksLib.io.atomic import atomic_write_text, sha256_file
from CardiacLandmarksLib.io.jsonsafe import dumps_strict

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
#: the state of a ``batch`` output folder (:mod:`CardiacLandmarksLib.batch.engine`)
BATCH_STATE_FILE = "batch.sqlite"
BACKUP_PREFIX = "backup-"
#: files this tool writes (used to recognise an earlier run that has no run.json)
RESULT_PATTERNS = ("landmarks.json", "measurements.csv", "*.mrk.json", "*.png", "report.json", "report.csv",
                   "*_segmentation.nii.gz", "*_aha_segments.nii.gz", "*.seg.nrrd", "function.json", "function.csv",
                   "validation.json", "study.json", "routing.txt",
                   "*.bak-*", RUN_FILE)
#: a sub-folder matching :attr:`OutputDir.result_folders` is an earlier run's when it holds one of these
RESULT_FOLDER_MARKERS = ("landmarks.json", "function.json", "report.json", "error.txt")
_TMP_PATTERN = ".*.tmp"
#: a run holds its output folder with an OS lock on this hidden file; :data:`HOLD_INFO_FILE` says who holds it
HOLD_LOCK_FILE = ".cardiac-landmarks.lock"
HOLD_INFO_FILE = ".cardiac-landmarks.running"
#: folders this process holds: resolved path -> [FileLock, number of holds]
_HELD: dict[Path, list] = {}
_HELD_GUARD = threading.Lock()


def hold_folder(folder: str | Path, command: str, wait_s: float = 0.0) -> None:
    """Hold an existing output folder for this process's run: no other process's run may write into it meanwhile.

    A second hold from this process (a run nested in another, a Slicer export after one that failed) counts, and
    :func:`release_folder` gives the folder back after the last. Other processes are refused until then, or until
    this process ends (the OS drops the lock).

    Args:
        folder: the output folder (exists, writable).
        command: what holds it (``study``, ``batch`` ...), named to a run that is refused.
        wait_s: how long to wait for another process's hold to end (0: refuse at once, as runs do; a save of
            corrections waits a little for another save).

    Raises:
        FolderHeldError: another process holds the folder (named with its command, process, machine and start time).
        OutputPathError: the lock file cannot be made.
    """
    import socket

    from filelock import FileLock, Timeout

    p = Path(folder).expanduser().resolve()
    with _HELD_GUARD:
        if p in _HELD:
            _HELD[p][1] += 1
            return
    lock = FileLock(str(p / HOLD_LOCK_FILE))
    try:
        lock.acquire(timeout=max(0.0, wait_s))
    except Timeout:
        raise FolderHeldError(p, folder_holder(p)) from None
    except OSError as exc:
        raise OutputPathError(f"cannot lock the output folder {p}: {exc.strerror or exc}") from exc
    with _HELD_GUARD:
        _HELD[p] = [lock, 1]
    with contextlib.suppress(OSError):  # only what a refused run says; a full disk is named by the run's own files
        (p / HOLD_INFO_FILE).write_text(json.dumps({
            "command": command, "pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())}) + "\n", encoding="utf-8")


def folder_holder(folder: str | Path) -> str:
    """Who holds ``folder`` as its :data:`HOLD_INFO_FILE` says (``"study: process 30486 on vm, started
    2026-12-03 14:51:14"``); ``""`` when that is not known."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        info = json.loads((Path(folder) / HOLD_INFO_FILE).read_text(encoding="utf-8"))
        return f"{info['command']}: process {info['pid']} on {info['host']}, started {info['started']}"
    return ""


def release_folder(folder: str | Path) -> None:
    """Give back one hold of :func:`hold_folder` on ``folder`` (nothing when this process does not hold it); after
    the last, the lock and its files go.

    The lock file is removed while the lock is still held, then the lock is let go: a process that opened the file
    before and locks it after finds it unlinked and does not take it for the folder's lock (:mod:`filelock` checks),
    so it can never hold the folder beside one that made a new lock file meanwhile."""
    p = Path(folder).expanduser().resolve()
    with _HELD_GUARD:
        entry = _HELD.get(p)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _HELD[p]
    with contextlib.suppress(OSError):
        (p / HOLD_INFO_FILE).unlink()
    with contextlib.suppress(OSError):  # a folder the run leaves empty can then be removed
        (p / HOLD_LOCK_FILE).unlink()
    entry[0].release()


def release_held_folders() -> None:
    """Give back every folder this process holds (the command line, when a command ends however it ends)."""
    with _HELD_GUARD:
        held = list(_HELD)
        for p in held:
            _HELD[p][1] = 1
    for p in held:
        release_folder(p)


@contextlib.contextmanager
def folder_held(folder: str | Path, command: str, wait_s: float = 0.0):
    """:func:`hold_folder` for a ``with`` block (``apply-review`` on a study or a batch folder); same errors."""
    hold_folder(folder, command, wait_s)
    try:
        yield
    finally:
        release_folder(folder)


def study_of_analysis(folder: str | Path) -> Path | None:
    """The ``study`` output folder that ``folder`` is an analysis of (its parent, holding ``study.json``, or held by
    a run while that run rewrites it); None for a folder of its own (``detect``, ``function`` ...)."""
    parent = Path(folder).expanduser().resolve().parent
    if (parent / "study.json").is_file() or (parent / HOLD_LOCK_FILE).is_file():
        return parent
    return None


@contextlib.contextmanager
def edit_held(folder: str | Path, command: str, wait_s: float = 0.0):
    """Hold a result folder for an edit of its files from outside a run (the review app's Save, the Slicer panel's
    exports): the folder and, when it is an analysis of a ``study`` output, that study folder, which a ``study``
    run into it rewrites whole. ``folder`` must exist.

    Raises:
        FolderHeldError: another process holds one of them (a run writing into it, another save).
        OutputPathError: a lock file cannot be made.
    """
    folders = [Path(folder).expanduser().resolve()]
    study = study_of_analysis(folders[0])
    if study is not None:
        folders.insert(0, study)
    held: list[Path] = []
    try:
        for f in folders:
            hold_folder(f, command, wait_s)
            held.append(f)
        yield
    finally:
        for f in reversed(held):
            release_folder(f)


def describe_input(path: str | Path) -> dict:
    """``{"path", "size", "sha256"}`` of an input file; for a folder (DICOM) ``n_files``, the total
    ``size`` and one SHA-256 over the sorted (relative name, file SHA-256) pairs. A missing path
    gives ``{"path", "missing": true}``."""
    p = Path(path)
    if p.is_file():
        return {"path": str(p.resolve()), "size": p.stat().st_size, "sha256": sha256_file(p)}
    if p.is_dir():
        h = hashlib.sha256()
        n, size = 0, 0
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            rel = f.relative_to(p).as_posix()
            h.update(rel.encode() + b"\0" + sha256_file(f).encode() + b"\n")
            n += 1
            size += f.stat().st_size
        return {"path": str(p.resolve()), "n_files": n, "size": size, "sha256": h.hexdigest()}
    return {"path": str(p), "missing": True}


@dataclass
class OutputDir:
    """A checked output folder (see the module docstring). Attributes: ``path`` (absolute),
    ``inputs`` (never moved), ``removed_tmp`` (leftover temp files removed), ``backup_dir``
    (None until :meth:`begin` moved something), ``moved`` (relative names moved there),
    ``started`` (epoch s)."""

    path: Path
    inputs: list[Path] = field(default_factory=list)
    removed_tmp: list[str] = field(default_factory=list)
    backup_dir: Path | None = None
    moved: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    begun: bool = False
    #: the topmost folder :func:`prepare_output_dir` created (None: the folder was there already)
    created: Path | None = None
    #: name patterns of sub-folders an earlier run wrote whole (a study's ``<series>_sax/`` ...), moved by :meth:`begin`
    result_folders: tuple[str, ...] = ()

    def earlier_files(self) -> list[Path]:
        """Files of an earlier run in the folder: those its ``run.json`` lists, else result-like names; and every
        file (hidden ones aside) of a sub-folder matching :attr:`result_folders` that holds a result file."""
        listed: set[str] = set()
        run = self.path / RUN_FILE
        if run.is_file():
            with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
                listed = {f["name"] for f in json.loads(run.read_text(encoding="utf-8"))["files"]} | {RUN_FILE}
        protected = {p.resolve() for p in self.inputs}
        out = []
        for f in sorted(self.path.iterdir()):
            if f.name.startswith(".") or f.resolve() in protected:
                continue
            if f.is_file() and (f.name in listed or any(fnmatch.fnmatch(f.name, pat) for pat in RESULT_PATTERNS)):
                out.append(f)
            elif f.is_dir() and any(fnmatch.fnmatch(f.name, pat) for pat in self.result_folders) and any(
                    (f / name).is_file() for name in RESULT_FOLDER_MARKERS):
                out += [g for g in sorted(f.rglob("*")) if g.is_file() and not g.name.startswith(".")
                        and g.resolve() not in protected]
        return out

    def begin(self) -> None:
        """Move the earlier run's files into ``backup-<time>/`` (idempotent; call right before writing).

        Raises:
            OutputPathError: a file cannot be moved.
        """
        if self.begun:
            return
        self.begun = True
        _UNUSED[:] = [o for o in _UNUSED if o is not self]
        _OPEN.append(self)
        old = self.earlier_files()
        if not old:
            return
        stamp = _dt.datetime.fromtimestamp(self.started).strftime("%Y%m%d-%H%M%S")
        backup = self.path / f"{BACKUP_PREFIX}{stamp}"
        n = 0
        while backup.exists():
            n += 1
            backup = self.path / f"{BACKUP_PREFIX}{stamp}-{n}"
        try:
            backup.mkdir()
            for f in old:
                rel = f.relative_to(self.path).as_posix()
                (backup / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(f, backup / rel)
                self.moved.append(rel)
        except OSError as exc:
            raise OutputPathError(f"cannot move the earlier results in {self.path} to {backup.name}: {exc}") from exc
        self.backup_dir = backup
        logger.info("moved %d file(s) of the earlier run to %s", len(self.moved), backup)


#: output folders created by this process whose run has not begun writing (see :func:`discard_unused_outputs`)
_UNUSED: list[OutputDir] = []
#: output folders of this process whose run began writing and has no ``run.json`` yet (see :func:`unfinished_outputs`)
_OPEN: list[OutputDir] = []


def prepare_output_dir(path: str | Path, inputs: Iterable[str | Path] = (),
                       result_folders: Iterable[str] = (), allow_input_folder: bool = False,
                       hold: str | None = None) -> OutputDir:
    """Check (and create) an output folder before any long work; remove leftover temp files.

    Args:
        path: the output folder (created with its parents when missing).
        inputs: input paths; never moved by :meth:`OutputDir.begin` even if they lie in the folder.
        result_folders: name patterns of sub-folders that a run writes whole (``study``: one folder per analysis,
            ``*_sax`` ...): an earlier run's such folders are moved into the backup too.
        allow_input_folder: accept an input folder as the output folder (``lax-track --points FOLDER -o FOLDER``
            re-tracks a result in place); by default refused.
        hold: the command writing the run (``detect``, ``study`` ...): hold the folder for it (:func:`hold_folder`)
            until :func:`finish_run` or :func:`release_folder`; None: only check.

    Returns:
        :class:`OutputDir`.

    Raises:
        OutputPathError: the path is a file, an input folder (a DICOM series or study folder), cannot be created,
            is not writable, or (``hold``) another process's run is writing into it (the message says which).
    """
    p = Path(path).expanduser().resolve()
    if p.exists() and not p.is_dir():
        raise OutputPathError(f"output path {p} is a file, not a folder; give a folder")
    inputs = list(inputs)
    if not allow_input_folder and any(Path(i).expanduser().is_dir() and Path(i).expanduser().resolve() == p
                                      for i in inputs):
        # results would mix with the input's files, and a re-run would move those that look like results (PNGs,
        # point lists) into its backup
        raise OutputPathError(f"the output folder {p} is an input folder: give another folder (e.g. "
                              f"{p / 'cardiac-landmarks'} or one next to it)")
    created = None
    for q in (p, *p.parents):  # the topmost missing folder, removed again if the run fails before writing
        if q.exists():
            break
        created = q
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"cannot create the output folder {p}: {exc.strerror or exc}") from exc
    probe = p / f".cardiac-landmarks-probe-{os.getpid()}.tmp"
    try:
        with open(probe, "wb") as fh:
            fh.write(b"x")
    except OSError as exc:
        raise OutputPathError(f"output folder {p} is not writable: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    out = OutputDir(path=p, inputs=[Path(i).expanduser() for i in inputs], created=created,
                    result_folders=tuple(result_folders))
    if hold:
        try:
            hold_folder(p, hold)
        except OutputPathError:
            _remove_created_if_empty(out)
            raise
    if created is not None:
        _UNUSED.append(out)
    for f in sorted(p.glob(_TMP_PATTERN)):
        if f.is_file():
            with contextlib.suppress(OSError):
                f.unlink()
                out.removed_tmp.append(f.name)
    if out.removed_tmp:
        logger.info("removed %d temporary file(s) left by an interrupted run in %s", len(out.removed_tmp), p)
    return out


def discard_unused_outputs() -> list[Path]:
    """Remove the folders :func:`prepare_output_dir` created in this process for runs that failed before writing
    (:meth:`OutputDir.begin` never called), when they are still empty; returns the folders removed.

    The CLI calls it when a command ends with an error, so a refused input leaves no empty result folder behind.
    """
    removed = []
    while _UNUSED:
        removed += _remove_created_if_empty(_UNUSED.pop())
    return removed


def _remove_created_if_empty(out: OutputDir) -> list[Path]:
    """Remove ``out``'s folder and the parents :func:`prepare_output_dir` created for it, each only while empty."""
    removed = []
    q = out.path
    while out.created is not None and (q == out.created or out.created in q.parents):
        try:
            q.rmdir()  # only an empty folder goes
        except OSError:
            break
        removed.append(q)
        q = q.parent
    return removed


def unfinished_outputs() -> list[OutputDir]:
    """The output folders of this process whose run began writing (:meth:`OutputDir.begin`) and never reached
    :func:`finish_run`, and that hold a file; the list is emptied. The CLI names them when a run is interrupted
    (Ctrl-C): each holds an incomplete run (no ``run.json``), and its ``backup_dir`` the earlier run's files, if there
    were any. Such a folder still empty (stopped before its first file) is removed when this process created it.
    """
    out = []
    while _OPEN:
        o = _OPEN.pop(0)
        if o.path.is_dir() and any(f.is_file() for f in o.path.rglob("*")):
            out.append(o)
            continue
        if o.created is not None and o.path.is_dir():  # the empty sub-folders this run made, deepest first
            for sub in sorted((d for d in o.path.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True):
                with contextlib.suppress(OSError):
                    sub.rmdir()
        _remove_created_if_empty(o)
    return out


def check_output_file(path: str | Path) -> Path:
    """Check, before any work, that a single output file (e.g. ``evaluate --json``) can be written:
    not a folder, its folder creatable and writable (:func:`prepare_output_dir` on the parent).

    Raises:
        OutputPathError.
    """
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        raise OutputPathError(f"output file {p} is a folder; give a file name")
    prepare_output_dir(p.parent)
    return p


@dataclass
class RunRecord:
    """What :func:`finish_run` did: ``manifest`` (the run.json content), ``path`` (of run.json),
    ``backup_dir`` (None when nothing earlier was changed or left out), ``kept`` (names kept in it),
    ``messages`` (lines for the user)."""

    manifest: dict
    path: Path
    backup_dir: Path | None
    kept: list[str]
    messages: list[str]


def _tool_version() -> str:
    try:
        from importlib.metadata import version

        return version("cardiac-landmarks")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "unknown"


def finish_run(outdir: OutputDir, inputs: Iterable[str | Path], options: dict, files: Iterable[str | Path], *,
               models: Iterable[dict] = (), warnings: Iterable[str] = (), failed: Iterable[dict] = (),
               command: str = "", timings: dict | None = None, keep_backup: bool = True) -> RunRecord:
    """Write ``run.json`` last and settle the backup of the earlier run (module docstring).

    Args:
        outdir: from :func:`prepare_output_dir` (``begin`` is called if it was not).
        inputs: input paths (files or DICOM folders), recorded with size and SHA-256.
        options: the options of the run (JSON-serialisable values; others are written as text).
        files: the files written by the run (inside ``outdir.path``).
        models: model descriptions (e.g. ``{"name", "version", "sha256"}``).
        warnings: warnings to record (also those of the inputs).
        failed: inputs that failed in a multi-input run (``{"input", "error"}``); the run is still
            complete for the others.
        command: the command name (``"detect"``, ``"perfusion"`` ...).
        timings: wall times of the run (JSON-ready, seconds), written as ``timings``. They belong here, with the
            run's start and end, rather than in its result files: a re-run that computes the same then writes the
            same files, and the backup keeps only what changed (:func:`settle_backup`).
        keep_backup: False: the earlier run's files are not kept at all (``function --overwrite``).

    Returns:
        :class:`RunRecord`.
    """
    outdir.begin()
    root = outdir.path
    _OPEN[:] = [o for o in _OPEN if o is not outdir]
    try:
        return _write_run_record(outdir, inputs, options, files, models=models, warnings=warnings, failed=failed,
                                 command=command, timings=timings, keep_backup=keep_backup)
    finally:
        release_folder(root)


def _write_run_record(outdir: OutputDir, inputs, options, files, *, models, warnings, failed, command,
                      timings, keep_backup) -> RunRecord:
    """:func:`finish_run`'s work, with the folder held."""
    root = outdir.path
    entries = []
    for f in files:
        fp = Path(f)
        fp = fp if fp.is_absolute() else root / fp
        try:
            rel = fp.resolve().relative_to(root).as_posix()
        except ValueError:
            rel = str(fp)
        entries.append({"name": rel, "size": fp.stat().st_size, "sha256": sha256_file(fp)})
    manifest = {
        "tool": "cardiac-landmarks",
        "tool_version": _tool_version(),
        "command": command,
        "started": _dt.datetime.fromtimestamp(outdir.started, _dt.timezone.utc).isoformat(timespec="seconds"),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "inputs": [describe_input(i) for i in inputs],
        "options": json.loads(dumps_strict(options, default=str)),
        "models": json.loads(dumps_strict(list(models), default=str)),
        "files": sorted(entries, key=lambda e: e["name"]),
        "warnings": list(warnings),
        "failed": list(failed),
        **({"timings": json.loads(dumps_strict(timings, default=str))} if timings else {}),
        "complete": True,
    }
    run_path = atomic_write_text(root / RUN_FILE, dumps_strict(manifest, indent=1) + "\n")
    kept: list[str] = []
    messages: list[str] = []
    if outdir.backup_dir is not None and not keep_backup:  # the user asked to replace the earlier run outright
        shutil.rmtree(outdir.backup_dir, ignore_errors=True)
        outdir.backup_dir = None
    if outdir.backup_dir is not None:
        kept = settle_backup(outdir.backup_dir, root, outdir.moved)
        if kept:
            changed = [n for n in kept if (root / n).exists()]
            gone = [n for n in kept if not (root / n).exists()]
            parts = []
            if changed:
                parts.append(f"{len(changed)} changed ({_short(changed)})")
            if gone:
                parts.append(f"{len(gone)} not written by this run ({_short(gone)})")
            messages.append(f"earlier results kept in {outdir.backup_dir}: " + "; ".join(parts))
        else:
            outdir.backup_dir = None
    if outdir.removed_tmp:
        messages.append(f"removed {len(outdir.removed_tmp)} temporary file(s) of an interrupted run "
                        f"({_short(outdir.removed_tmp)})")
    return RunRecord(manifest=manifest, path=run_path, backup_dir=outdir.backup_dir, kept=kept, messages=messages)


def settle_backup(backup: Path, new_root: Path, names: Iterable[str] | None = None) -> list[str]:
    """Keep in ``backup`` only what a new run did not rewrite identically: each file ``names`` lists (paths
    relative to ``backup``; every file in it when None) that ``new_root`` holds under the same name with the same
    SHA-256 is deleted from the backup, emptied sub-folders are removed, and the backup itself when nothing is
    kept. The earlier ``run.json`` never counts as kept on its own.

    Used by :func:`finish_run` (``backup-<time>/`` of a command's folder) and by ``batch --redo``
    (``<id>.bak-<time>/`` of a study folder).

    Returns:
        The names kept (changed by the new run, or not written by it), in the order of ``names``.
    """
    if names is None:
        names = sorted(f.relative_to(backup).as_posix() for f in backup.rglob("*") if f.is_file())
    kept = []
    for name in names:
        old, new = backup / name, new_root / name
        if name == RUN_FILE:
            continue
        if new.is_file() and old.is_file() and sha256_file(old) == sha256_file(new):
            old.unlink()
        elif old.exists():
            kept.append(name)
    for d in sorted((q for q in backup.rglob("*") if q.is_dir()), key=lambda q: -len(q.parts)):
        with contextlib.suppress(OSError):
            d.rmdir()  # a sub-folder whose files were all rewritten identically
    if not kept:
        shutil.rmtree(backup, ignore_errors=True)
    return kept


def record_edit(folder: str | Path, files: Iterable[str | Path], by: str) -> Path | None:
    """Bring the folder's ``run.json`` up to date after files were rewritten by an edit (a reader's corrections
    saved from the review app): the entries of ``files`` get their new size and SHA-256 (new names are added),
    and ``edits`` records when, by what, and which files. The run's inputs and options stay as recorded.
    ``files`` are paths as the caller holds them (absolute, or relative to the working directory, e.g.
    ``out/study/s1_sax/landmarks.json`` beside a relative ``folder`` ``out/study``); a relative path found nowhere
    there is taken relative to ``folder``.

    Returns:
        The ``run.json`` path, or None when the folder has no (readable) ``run.json``: nothing to update.
    """
    root = Path(folder)
    run = root / RUN_FILE
    try:
        manifest = json.loads(run.read_text(encoding="utf-8"))
        entries = {e["name"]: e for e in manifest["files"]}
    except (OSError, ValueError, TypeError, KeyError):
        return None
    names = []
    for f in files:
        fp = Path(f) if Path(f).is_absolute() or Path(f).exists() else root / f  # not root / a path that has root
        name = fp.resolve().relative_to(root.resolve()).as_posix()
        entries[name] = {"name": name, "size": fp.stat().st_size, "sha256": sha256_file(fp)}
        names.append(name)
    manifest["files"] = sorted(entries.values(), key=lambda e: e["name"])
    manifest.setdefault("edits", []).append({
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "by": by, "files": sorted(names)})
    return atomic_write_text(run, dumps_strict(manifest, indent=1) + "\n")


def _short(names: list[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def run_files(folder: str | Path) -> set[str] | None:
    """Names of the files the folder's ``run.json`` lists, or None when it has none (or it is unreadable)."""
    run = Path(folder) / RUN_FILE
    if not run.is_file():
        return None
    try:
        return {f["name"] for f in json.loads(run.read_text(encoding="utf-8"))["files"]}
    except (OSError, ValueError, TypeError, KeyError):
        return None


_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".hdr", ".img", ".dcm")
_GENERIC_DICOM_DIRS = ("dicom", "dcm", "images", "data", "series")


def output_stem(source: str) -> str:
    """File-name stem for a result of ``source`` (an image path or DICOM folder).

    Image suffixes are stripped; a generic DICOM folder name (``dicom``, ``images``...) is replaced by the
    folder above it (the patient id, usually).
    """
    p = Path(source)
    name = p.name
    if p.suffix == "" and name.lower() in _GENERIC_DICOM_DIRS and p.parent.name:
        name = p.parent.name
    for ext in _IMAGE_SUFFIXES:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name or "series"


def is_result_folder(folder: str | Path) -> bool:
    """True for an output folder of this tool (its ``run.json``: detect, study, a batch study; ``batch.sqlite``: a
    batch; the lock of a run writing into it), which a folder of inputs may hold (``-o`` inside the input): it is not
    a study or a series to read."""
    d = Path(folder)
    return (d / RUN_FILE).is_file() or (d / BATCH_STATE_FILE).is_file() or (d / HOLD_LOCK_FILE).is_file()


def not_an_input_text(folder: str | Path, what: str = "a study") -> str | None:
    """The message for a result folder of this tool given as an input (a run's folder, a batch's, or one analysis'
    folder inside a study's: ``run.json``, ``batch.sqlite``, ``landmarks.json`` ...): which file says so, and what
    its run read (from its ``run.json``), so the user can give that instead. None when ``folder`` is no such folder.
    """
    d = Path(folder)
    marker = next((m for m in (RUN_FILE, BATCH_STATE_FILE, *RESULT_FOLDER_MARKERS) if (d / m).is_file()), None)
    if marker is None:
        return None
    text = f"{d} is a result folder of cardiac-landmarks (it holds {marker}), not {what}"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        inputs = [i["path"] for i in json.loads((d / RUN_FILE).read_text(encoding="utf-8"))["inputs"]]
        if inputs:
            text += f"; its run read {', '.join(inputs[:3])}{' ...' if len(inputs) > 3 else ''}"
    return text + ": give the input itself"


def agg_figure(**kwargs):
    """A matplotlib ``Figure(**kwargs)`` on its own Agg canvas: how every figure of this tool is made. Not pyplot,
    whose figure registry is process-wide state (matplotlib's advice for web servers and embedding applications:
    the review app saves figures in worker threads, Dask workers may run studies in threads), and no backend switch
    (in Slicer's Python the backend is the user's)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def common_name(names: list[str]) -> str:
    """The words all ``names`` start with, cut at a word boundary (``_ - . `` or a space): ``["p7_stress_base",
    "p7_rest_mid"]`` -> ``"p7"``, ``["s6_slice0", "s6_slice1"]`` -> ``"s6"`` (not ``"s6_slice"``); one name as it
    is; ``""`` when they share no whole word. Names a study after its series (``study``'s routing, the perfusion
    report's title)."""
    if len(names) == 1:
        return names[0]
    common = os.path.commonprefix(list(names))
    if not all(len(n) == len(common) or n[len(common)] in "_-. " for n in names):
        common = re.split(r"[_\-. ][^_\-. ]*$", common)[0] if re.search(r"[_\-. ]", common) else ""
    return common.rstrip("_-. ")


def source_label(source: str | Path | None) -> str:
    """How a figure's title names its input: the file name (``patient001_ED.nii.gz``), or for a generic DICOM
    folder name the folder above it too (``SCD0000101/dicom``), so the title names the patient as the output
    file does (:func:`output_stem`: ``SCD0000101_overlay.png``). ``""`` for no source."""
    if not source:
        return ""
    p = Path(str(source))
    if p.suffix == "" and p.name.lower() in _GENERIC_DICOM_DIRS and p.parent.name:
        return f"{p.parent.name}/{p.name}"
    return p.name
