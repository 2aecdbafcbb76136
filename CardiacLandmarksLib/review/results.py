"""Result folders of ``cardiac-landmarks detect``: read, review queue, corrections, save.

A *result folder* holds what ``cardiac-landmarks detect`` writes for one series:
``landmarks.json`` (the :class:`CardiacLandmarksLib.core.landmarks.LandmarkSet`, LPS mm),
``measurements.csv``, ``landmarks*.mrk.json`` (Slicer point lists) and an overlay PNG. A
*cohort folder* holds one result folder per study (any depth up to :data:`MAX_DEPTH`).

A correction follows the library's convention, the one :func:`CardiacLandmarksLib.io.markups.read_markups` and the
Slicer panel use: the point gets ``corrected = True``, confidence 1 and flag ``"high"`` (or
found False / confidence 0 / flag ``"absent"`` when the reader removes it); the model's own
values stay in the backups of the files it replaced.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.core.errors import CardiacLandmarksError, CorruptFileError, InputNotFoundError
from CardiacLandmarksLib.core.landmarks import LANDMARKS_BY_VIEW, Landmark, LandmarkSet, Measurement

logger = logging.getLogger(__name__)

#: the file that makes a folder a result folder
RESULT_FILE = "landmarks.json"
#: how deep :func:`find_results` looks below a cohort folder
MAX_DEPTH = 3
#: lock file of a result folder while a save is running (see :func:`save_result`)
LOCK_FILE = ".cardiac-landmarks-save.lock"


class ReviewError(CardiacLandmarksError, ValueError):
    """A correction that does not fit the result: unknown landmark, slice or phase, bad position."""


class SaveInProgressError(CardiacLandmarksError):
    """Another save of the same result folder did not finish within the wait time."""


def find_results(root: str | Path) -> list[Path]:
    """The result folders of ``root``: ``root`` itself when it holds ``landmarks.json``, else
    every folder below it (up to :data:`MAX_DEPTH` levels, hidden folders skipped) that does.

    Returns:
        Sorted absolute paths (natural order of their names relative to ``root``).

    Raises:
        InputNotFoundError: ``root`` is not a folder, or holds no result folder.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise InputNotFoundError(f"{root} is not a folder")
    if (root / RESULT_FILE).is_file():
        return [root]
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError as exc:
            logger.warning("cannot list %s: %s", folder, exc)
            return
        for child in children:
            if child.is_symlink():  # never leave the cohort folder through a link
                continue
            if (child / RESULT_FILE).is_file():
                found.append(child)
            elif depth < MAX_DEPTH:
                walk(child, depth + 1)

    walk(root, 1)
    if not found:
        raise InputNotFoundError(f"no {RESULT_FILE} in {root} nor in its sub-folders: not a result or cohort folder "
                                 "(make one with 'cardiac-landmarks detect IMAGE -o FOLDER')")
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def read_result(folder: str | Path, series=None, *, point_lists: str = "newer") -> LandmarkSet:
    """The :class:`LandmarkSet` of a result folder (its ``landmarks.json``, LPS mm).

    Args:
        folder: the result folder.
        series: optional :class:`CardiacLandmarksLib.core.series.CMRSeries` of the result: gives
            the ``ijk`` of points taken from the point lists and fixes the frame of the
            recomputed measurements.
        point_lists: ``"newer"`` (default): when the folder's ``*.mrk.json`` point lists were
            saved after ``landmarks.json`` (e.g. edited and saved in Slicer), their points
            replace those of ``landmarks.json`` (:func:`CardiacLandmarksLib.io.markups.read_markups`:
            moved, placed or unset points come back corrected) and the measurements are
            recomputed; ``"ignore"``: ``landmarks.json`` only.

    Raises:
        InputNotFoundError: no ``landmarks.json`` in ``folder``.
        CorruptFileError: the file is not valid JSON or not a landmarks file (or a newer
            point list is not valid).
        ValueError: unknown ``point_lists``.
    """
    if point_lists not in ("newer", "ignore"):
        raise ValueError(f"point_lists must be 'newer' or 'ignore', not {point_lists!r}")
    folder = Path(folder)
    path = folder / RESULT_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputNotFoundError(f"{path} not found") from exc
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or not isinstance(doc.get("landmarks"), list):
            raise ValueError("no 'landmarks' list")
        lmset = LandmarkSet.from_dict(doc)
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptFileError(f"{path} is not a landmarks file: {exc}") from exc
    if point_lists == "newer" and newer_point_lists(folder):
        _merge_point_lists(folder, lmset, series)
    return lmset


def newer_point_lists(folder: str | Path) -> list[Path]:
    """The folder's ``*.mrk.json`` point lists (backups excluded) saved at or after its ``landmarks.json``."""
    folder = Path(folder)
    try:
        t_json = (folder / RESULT_FILE).stat().st_mtime
    except OSError:
        return []
    return sorted(p for p in folder.glob("*.mrk.json") if p.is_file() and p.stat().st_mtime >= t_json)


def _merge_point_lists(folder: Path, lmset: LandmarkSet, series) -> None:
    from CardiacLandmarksLib.io.markups import read_markups

    mk = read_markups(folder, series)
    changed = []
    for m in mk.landmarks:
        old = lmset.get(m.name, m.slice, m.phase)
        if old is not None and not m.corrected and old.found == m.found:
            continue  # the model's point, as in landmarks.json (which has its unrounded values and ijk)
        if old is not None and old.corrected == m.corrected and old.found == m.found and (
                not m.found or np.allclose(old.position, m.position, atol=1e-3)):
            continue  # the same correction
        if old is None:
            lmset.landmarks.append(m)
        else:
            lmset.landmarks[next(i for i, x in enumerate(lmset.landmarks) if x is old)] = m
        changed.append(f"{m.name} s{m.slice} p{m.phase}")
    if changed:
        logger.info("%s: %d point(s) taken from the point lists saved after %s: %s", folder, len(changed),
                    RESULT_FILE, ", ".join(changed))
        recompute_measurements(lmset, series)


def _name_order(lmset: LandmarkSet) -> dict[str, int]:
    names = list(LANDMARKS_BY_VIEW.get(lmset.view, ()))
    return {n: i for i, n in enumerate(names)}


def flagged_landmarks(lmset: LandmarkSet) -> list[Landmark]:
    """Points a reader should look at: flag ``"low"`` or ``"absent"`` and not yet corrected.

    Returns:
        The landmarks, lowest confidence first (absent points have confidence 0; at equal
        confidence a low point the model did place comes before an absent one), then by phase,
        slice and landmark order (A-RVI, I-RVI, C-LV for SAX).
    """
    order = _name_order(lmset)
    items = [lm for lm in lmset.landmarks if not lm.corrected and lm.flag in ("low", "absent")]
    return sorted(items, key=lambda lm: (float(lm.confidence), lm.flag == "absent", lm.phase, lm.slice,
                                         order.get(lm.name, 99), lm.name))


def correct_landmark(
    lmset: LandmarkSet,
    name: str,
    slice: int,
    phase: int,
    position_lps: np.ndarray | None,
    series=None,
) -> Landmark:
    """Apply a reader's correction to ``lmset`` in place and return the corrected landmark.

    Args:
        lmset: the landmarks (changed in place).
        name, slice, phase: which point; a point the set does not hold yet is added when the
            name belongs to the set's view (``LANDMARKS_BY_VIEW``).
        position_lps: new position, LPS mm ``(x, y, z)``; None = the reader says the
            landmark is not on this slice.
        series: optional :class:`CardiacLandmarksLib.core.series.CMRSeries` of the result: gives the point's
            continuous ``ijk`` (NaN without it) and bounds the slice and phase.

    Returns:
        The landmark, now ``corrected`` with confidence 1 and flag ``"high"`` (or found
        False, confidence 0, flag ``"absent"`` when ``position_lps`` is None).

    Raises:
        ReviewError: unknown landmark name for the view, slice or phase outside the series,
            or a position that is not three finite numbers.
    """
    k, t = int(slice), int(phase)
    if series is not None and not (0 <= k < series.n_slices and 0 <= t < series.n_phases):
        raise ReviewError(f"slice {k} / phase {t} is outside the series ({series.n_slices} slices, "
                          f"{series.n_phases} phases)")
    lm = lmset.get(name, k, t)
    if lm is None:
        allowed = LANDMARKS_BY_VIEW.get(lmset.view, ())
        if name not in allowed:
            raise ReviewError(f"{name!r} is not a landmark of view {lmset.view!r} (expected one of {allowed})")
        lm = Landmark(name, k, t, False, np.full(3, np.nan), np.full(3, np.nan), 0.0, "absent")
        lmset.landmarks.append(lm)
    if position_lps is None:
        lm.found, lm.position, lm.ijk = False, np.full(3, np.nan), np.full(3, np.nan)
        lm.confidence, lm.flag, lm.corrected = 0.0, "absent", True
        return lm
    pos = np.asarray(position_lps, dtype=float).reshape(-1)
    if pos.shape != (3,) or not np.all(np.isfinite(pos)):
        raise ReviewError(f"a corrected position must be three finite LPS mm values, got {position_lps!r}")
    lm.found, lm.position = True, pos
    lm.ijk = np.asarray(series.lps_to_ijk(pos), float) if series is not None else np.full(3, np.nan)
    lm.confidence, lm.flag, lm.corrected = 1.0, "high", True
    return lm


def recompute_measurements(lmset: LandmarkSet, series=None) -> list[Measurement]:
    """Recompute the landmark measurements of ``lmset`` after a correction (and store them in it).

    SAX: :func:`CardiacLandmarksLib.sax.measurements.rvi_measurements` (RVI angle and opening angle per slice and
    phase; the series, when given, fixes the reference frame). Long axis (2ch/3ch/4ch):
    :func:`CardiacLandmarksLib.lax.measurements.lv_length_measurements` (LV length per phase, ED/ES lengths and
    longitudinal shortening). Measurements of other kinds already in the set (names these
    functions do not produce) are kept after them.

    Returns:
        The new ``lmset.measurements``.
    """
    if lmset.view == "sax":
        from CardiacLandmarksLib.sax.measurements import RVI_MEASUREMENTS, rvi_measurements

        own = {d.name for d in RVI_MEASUREMENTS}
        new = rvi_measurements(lmset, series)
    elif lmset.view in ("2ch", "3ch", "4ch"):
        from CardiacLandmarksLib.lax.measurements import lv_length_measurements

        new = lv_length_measurements(lmset, lmset.view)
        own = {m.name for m in new} | {"LV length", "LV length ED", "LV length ES", "Longitudinal shortening"}
    else:
        logger.warning("no measurement is defined for view %r: measurements kept as they were", lmset.view)
        return lmset.measurements
    own |= {m.name for m in new}
    lmset.measurements = list(new) + [m for m in lmset.measurements if m.name not in own]
    return lmset.measurements


_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def _save_lock(folder: Path, timeout_s: float) -> Iterator[None]:
    """One save per result folder at a time: a lock per folder in this process, plus an
    advisory ``flock`` on :data:`LOCK_FILE` against other processes (POSIX)."""
    key = str(folder.resolve())
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(key, threading.Lock())
    if not lock.acquire(timeout=max(0.0, timeout_s)):
        raise SaveInProgressError(f"another save of {folder} is still running")
    try:
        fh = None
        try:
            import fcntl
        except ImportError:  # Windows: the in-process lock only
            fcntl = None
        if fcntl is not None:
            fh = open(folder / LOCK_FILE, "a+b")  # noqa: SIM115 - closed below
            deadline = time.monotonic() + max(0.0, timeout_s)
            while True:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        fh.close()
                        raise SaveInProgressError(f"another program is saving {folder}") from None
                    time.sleep(0.05)
        try:
            yield
        finally:
            if fh is not None:
                fh.close()  # releases the flock
    finally:
        lock.release()


def save_result(folder: str | Path, lmset: LandmarkSet, series=None, *, timeout_s: float = 30.0) -> list[Path]:
    """Write the (corrected) result back into its folder, in the command line's formats.

    Writes ``landmarks*.mrk.json`` (:func:`CardiacLandmarksLib.io.markups.write_markups`), ``landmarks.json`` and
    ``measurements.csv`` (:mod:`CardiacLandmarksLib.sax.report` writers), every one atomically and keeping the file it
    replaces as ``<name>.bak-YYYYmmdd-HHMMSS`` (the rule of the Slicer panel's export and of the
    command line's point lists: a corrected file never silently replaces the model's). When
    ``series`` is given, the overlay PNG already in the folder (``*_overlay.png`` for SAX,
    ``*_lv_length.png`` for long axis) is drawn again from the corrected points (no backup,
    like the command line's PNGs).

    Saves of the same folder never interleave: a second save (another thread, or another
    process on a POSIX system) waits for the first one to finish.

    Args:
        folder: the result folder (must exist).
        lmset: landmarks and measurements to write (call :func:`recompute_measurements` first).
        series: the image series of the result, for the PNG.
        timeout_s: how long to wait for a running save of the same folder.

    Returns:
        The paths written.

    Raises:
        InputNotFoundError: ``folder`` is not a folder.
        SaveInProgressError: the other save did not finish within ``timeout_s``.
        OSError: the folder is not writable (the old files are then untouched).
    """
    from CardiacLandmarksLib.io import markups
    from CardiacLandmarksLib.sax import report

    folder = Path(folder)
    if not folder.is_dir():
        raise InputNotFoundError(f"result folder {folder} does not exist")
    with _save_lock(folder, timeout_s):
        written = [Path(p) for p in markups.write_markups(lmset, folder)]
        written.append(Path(report.write_landmarks_json(lmset, folder / RESULT_FILE, backup_existing=True)))
        written.append(Path(report.write_measurements_csv(lmset.measurements, folder / "measurements.csv",
                                                          backup_existing=True)))
        if series is not None:
            pattern = "*_overlay.png" if lmset.view == "sax" else "*_lv_length.png"
            for png in sorted(folder.glob(pattern)):
                try:
                    if lmset.view == "sax":
                        written.append(Path(report.render_overlay_png(series, lmset, png)))
                    else:
                        from CardiacLandmarksLib.lax.report import render_lax_png

                        written.append(Path(render_lax_png(series, lmset, png)))
                except (CardiacLandmarksError, ValueError, OSError) as exc:  # the PNG is a convenience
                    logger.warning("overlay %s not redrawn: %s", png, exc)
    logger.info("saved %d file(s) to %s (%s)", len(written), folder, os.getpid())
    return written
