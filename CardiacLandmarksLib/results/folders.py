"""Result folders of ``cardiac-landmarks detect``: read, review queue, corrections, save.

A *result folder* holds what ``cardiac-landmarks detect`` writes for one series:
``landmarks.json`` (the :class:`CardiacLandmarksLib.core.landmarks.LandmarkSet`, LPS mm),
``measurements.csv``, ``landmarks*.mrk.json`` (Slicer point lists) and an overlay PNG. A
*cohort folder* holds one result folder per study (any depth up to :data:`MAX_DEPTH`).

The review queue and the correction rule are :mod:`CardiacLandmarksLib.core.review`'s (shared with
the Slicer panel): a corrected point gets ``corrected = True``, confidence 1 and flag ``"high"`` (or
found False / confidence 0 / flag ``"absent"`` when the reader removes it). This module adds what a
front end needs around them for result folders on disk: find and read them, apply a correction to a
:class:`~CardiacLandmarksLib.core.landmarks.LandmarkSet` (with its ``ijk``), recompute the
measurements, and save with :func:`CardiacLandmarksLib.sax.report.write_landmark_outputs` (the one
writer of result folders) under a lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.core.errors import CardiacLandmarksError, CorruptFileError, InputNotFoundError
from CardiacLandmarksLib.core.landmarks import (
    LANDMARKS_BY_VIEW,
    Landmark,
    LandmarkSet,
    Measurement,
    add_input_sources,
    input_sources,
)

logger = logging.getLogger(__name__)

#: the file that makes a folder a result folder
RESULT_FILE = "landmarks.json"
#: how deep :func:`find_results` looks below a cohort folder
MAX_DEPTH = 3


class ReviewError(CardiacLandmarksError, ValueError):
    """A correction that does not fit the result: unknown landmark, slice or phase, bad position."""


class ResultChangedError(CardiacLandmarksError):
    """The result folder was written again (a re-run, another reader's save, a Slicer export) since the reader's
    copy was read: a save would overwrite the newer result with corrections of the older one. ``current_sha256`` is
    the SHA-256 of the ``landmarks.json`` now in the folder (None: there is none), for a save that overwrites it
    knowingly."""

    def __init__(self, message: str, current_sha256: str | None):
        super().__init__(message)
        self.current_sha256 = current_sha256


def result_sha256(folder: str | Path) -> str | None:
    """SHA-256 of the folder's ``landmarks.json`` (what :func:`save_result` compares with ``expected_sha256``);
    None when there is none."""
    from CardiacLandmarksLib.io.atomic import sha256_file

    try:
        return sha256_file(Path(folder) / RESULT_FILE)
    except OSError:
        return None


def _check_unchanged(folder: Path, expected_sha256: str) -> None:
    """Raise :class:`ResultChangedError` when the folder's ``landmarks.json`` is not the one read."""
    import time

    current = result_sha256(folder)
    if current == expected_sha256:
        return
    if current is None:
        what = f"{folder / RESULT_FILE} is gone since this review read it"
    else:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((folder / RESULT_FILE).stat().st_mtime))
        what = (f"the result in {folder} was written again at {when} (a re-run, another reader's save or a Slicer "
                "export) since this review read it")
    raise ResultChangedError(f"{what}: not saved, so that it is not replaced by corrections of the older result",
                             current)


class SaveInProgressError(CardiacLandmarksError):
    """Another save of the same result folder, or a run writing into it (a ``study`` run into the study it is an
    analysis of, ``apply-review``), did not finish within the wait time."""


def _skipped_folder(name: str) -> bool:
    """A folder :func:`find_results` does not enter: hidden, or the backup of an earlier run."""
    from CardiacLandmarksLib.io.outputs import BACKUP_PREFIX

    return name.startswith(".") or name.startswith(BACKUP_PREFIX) or ".bak-" in name


def find_results(root: str | Path) -> list[Path]:
    """The result folders of ``root``: ``root`` itself when it holds ``landmarks.json``, else
    every folder below it (up to :data:`MAX_DEPTH` levels) that does. Hidden folders and the backups of earlier
    runs are skipped: ``backup-<time>/`` (``detect`` and ``study`` into a folder holding an earlier run) and
    ``<name>.bak-<time>`` (``batch --redo``), so a reader reviewing a cohort never gets an earlier run's points.

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
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not _skipped_folder(p.name))
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
        study = root / "study.json"
        if study.is_file():  # a study output whose analyses made no landmark result (e.g. perfusion only)
            try:
                tasks = sorted({a.get("task", "?") for a in json.loads(study.read_text(encoding="utf-8")).get("analyses", [])})
            except (OSError, ValueError, AttributeError):
                tasks = []
            raise InputNotFoundError(
                f"{root} is a study output without a SAX or long-axis landmark result (analyses: "
                f"{', '.join(tasks) or 'none'}): nothing here for the landmark review")
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


def resolve_source(source: str | Path, folder: str | Path, root: str | Path | None = None) -> Path:
    """Where a result's image is: ``source`` as written (absolute), else relative to the current folder, the result
    folder, then ``root`` (a reviewed cohort folder), the first that exists (``detect`` run with a relative input)."""
    src = Path(source).expanduser()
    if src.is_absolute():
        return src
    for base in (Path.cwd(), Path(folder), *([Path(root)] if root is not None else [])):
        if (base / src).exists():
            return base / src
    return src


def load_recorded(source: str, folder: str | Path, root: str | Path | None = None, *, files=(), series_uids=()):
    """The image a result file records as its input: ``source`` (a file or folder, found by :func:`resolve_source`),
    or the several ``files`` stacked as its phases (an ED/ES pair: :func:`CardiacLandmarksLib.io.load.
    load_phase_files`), or, in a DICOM folder, the series of ``series_uids`` (a study folder holds other series too; a
    stack of per-slice series is assembled again). The one reading of a recorded input, for landmark results
    (:func:`load_source`) and function results (the study summary after a review).

    Raises:
        what :func:`CardiacLandmarksLib.io.load.load_series` raises.
    """
    from CardiacLandmarksLib.io.archive import reachable
    from CardiacLandmarksLib.io.load import load_phase_files, load_series

    path = resolve_source(source, folder, root)
    # an input read from an archive is recorded through it (p001.zip/p001/x.nii.gz): read there again
    with reachable([path, *[resolve_source(f, folder, root) for f in files]]) as (local, unpacked):
        path, local_files = local[0], local[1:]

        def load():
            if len(local_files) > 1:
                return load_phase_files(local_files)
            if series_uids and path.is_dir():  # a DICOM study folder may hold other series too
                from CardiacLandmarksLib.io.dicom_study import scan_study_folder

                return scan_study_folder(path).load(list(series_uids))
            return load_series(path)

        return load() if unpacked is None else unpacked.read(load)


def load_source(lmset: LandmarkSet, folder: str | Path, root: str | Path | None = None):
    """The image series a result was computed from, with every slice and phase its landmarks name.

    ``landmarks.json``'s ``source``; its ``source_files`` when the series was assembled from several files (the
    ED and ES files of a pair that ``study`` analysed as one two-phase cine:
    :func:`CardiacLandmarksLib.io.load.load_phase_files`); or, for a DICOM folder, the series of its
    ``source_series_uids`` (a study folder holds other series too; a stack assembled from per-slice series is
    assembled again: :meth:`CardiacLandmarksLib.io.dicom_study.DicomStudyScan.load`); with the pixel size the user
    gave at detection when the header had lost it (``source_pixel_size_mm``). Paths as :func:`resolve_source` finds
    them.

    Raises:
        SeriesMismatchError: the loaded image has fewer slices or phases than the landmarks name (the image was
            replaced, or a result of an older version that recorded only the ED file of a pair).
        and what :func:`CardiacLandmarksLib.io.load.load_series` raises.
    """
    from CardiacLandmarksLib.core.errors import SeriesMismatchError

    series = load_recorded(lmset.source, folder, root, files=lmset.source_files, series_uids=lmset.source_series_uids)
    if lmset.source_pixel_size_mm is not None:  # the size the user gave at detection: the positions are in it
        from CardiacLandmarksLib.io.checks import given_pixel_size

        given_pixel_size(series, lmset.source_pixel_size_mm)
    k_max = max((lm.slice for lm in lmset.landmarks), default=-1)
    t_max = max((lm.phase for lm in lmset.landmarks), default=-1)
    if k_max >= series.n_slices or t_max >= series.n_phases:
        raise SeriesMismatchError(
            f"{Path(folder).name}: the landmarks name slices 0-{k_max} and phases 0-{t_max}, but its image "
            f"{series.source} has {series.n_slices} slices and {series.n_phases} phase(s): it is not the image "
            "they were detected on (an ED/ES pair needs both files; run the analysis again)")
    return series


def newer_point_lists(folder: str | Path) -> list[Path]:
    """The folder's ``*.mrk.json`` point lists (backups excluded) saved at or after its ``landmarks.json``."""
    folder = Path(folder)
    try:
        t_json = (folder / RESULT_FILE).stat().st_mtime
    except OSError:
        return []
    return sorted(p for p in folder.glob("*.mrk.json") if p.is_file() and p.stat().st_mtime >= t_json)


def _merge_point_lists(folder: Path, lmset: LandmarkSet, series) -> None:
    from CardiacLandmarksLib.core.review import corrected_landmark
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
        if m.found:
            check_reviewed_position(f"{m.name} s{m.slice} p{m.phase}", m.slice, m.position, m.ijk, series,
                                    where=f"{folder.name}: ")
        if old is None:
            lmset.landmarks.append(m)
        else:
            lmset.landmarks[next(i for i, x in enumerate(lmset.landmarks) if x is old)] = m
        changed.append(f"{m.name} s{m.slice} p{m.phase}")
    # a point the model found that is no longer in its phase's point list was deleted there (Slicer's Delete):
    # the reader says it is not there, as unplacing it would; before, the model's point silently stayed
    read_phases = {m.phase for m in mk.landmarks}
    listed = {(m.name, m.slice, m.phase) for m in mk.landmarks}
    deleted = [lm for lm in lmset.landmarks
               if lm.found and lm.phase in read_phases and (lm.name, lm.slice, lm.phase) not in listed]
    for lm in deleted:
        new = corrected_landmark(lm, lm.name, lm.slice, lm.phase, False, np.full(3, np.nan), np.full(3, np.nan))
        lmset.landmarks[next(i for i, x in enumerate(lmset.landmarks) if x is lm)] = new
        changed.append(f"{lm.name} s{lm.slice} p{lm.phase}")
    if deleted:
        logger.warning("%s: %d point(s) deleted from the point lists, taken as marked absent by the reader: %s",
                       folder, len(deleted), ", ".join(f"{lm.name} s{lm.slice} p{lm.phase}" for lm in deleted))
    if changed:
        logger.info("%s: %d point(s) taken from the point lists saved after %s: %s", folder, len(changed),
                    RESULT_FILE, ", ".join(changed))
        recompute_measurements(lmset, series)


def check_reviewed_position(label: str, slice: int, position_lps, ijk, series, where: str = "") -> None:
    """A reader's point must lie on its slice and in its image (:func:`CardiacLandmarksLib.core.review.position_problem`,
    the rule the Slicer panel applies to a drag).

    Args:
        label: the point, as its control point is labelled (``C-LV s1 p0``), for the message.
        slice: the point's slice.
        position_lps: ``[3]`` LPS mm.
        ijk: ``[3]`` continuous (i, j, k) of the position (NaN: computed from ``position_lps``).
        series: the result's :class:`~CardiacLandmarksLib.core.series.CMRSeries` (None: nothing checked).
        where: prefix of the message (e.g. the folder).

    Raises:
        ReviewError: the point lies off its slice or outside the image (the message gives where).
    """
    if series is None:
        return
    ijk = np.asarray(ijk, float)
    if ijk.shape != (3,) or not np.all(np.isfinite(ijk)):
        ijk = np.asarray(series.lps_to_ijk(np.asarray(position_lps, float)), float)
    from CardiacLandmarksLib.core.review import position_problem

    problem = position_problem(slice, ijk, series.pixels.shape[-2:])
    if problem:
        pos = np.round(np.asarray(position_lps, float), 2).tolist()
        raise ReviewError(f"{where}{label}: the position LPS {pos} mm {problem}")


def correct_landmark(
    lmset: LandmarkSet,
    name: str,
    slice: int,
    phase: int,
    position_lps: np.ndarray | None,
    series=None,
) -> Landmark:
    """Apply a reader's correction to ``lmset`` in place and return the new landmark.

    The rule is :func:`CardiacLandmarksLib.core.review.corrected_landmark` with the set's current
    point as the detection: a point moved (more than its tolerance), placed or unset becomes
    corrected; one left where it was keeps its flag and confidence.

    Args:
        lmset: the landmarks (changed in place).
        name, slice, phase: which point; a point the set does not hold yet is added when the
            name belongs to the set's view (``LANDMARKS_BY_VIEW``).
        position_lps: new position, LPS mm ``(x, y, z)``; None = the reader says the
            landmark is not on this slice.
        series: optional :class:`CardiacLandmarksLib.core.series.CMRSeries` of the result: gives
            the point's continuous ``ijk`` (NaN without it) and bounds the slice and phase.

    Returns:
        The landmark now in ``lmset`` (``corrected`` with confidence 1 and flag ``"high"``, or
        found False, confidence 0, flag ``"absent"`` when ``position_lps`` is None).

    Raises:
        ReviewError: unknown landmark name for the view, slice or phase outside the series,
            a position that is not three finite numbers, or (with ``series``) one more than half
            a slice away from the point's slice.
    """
    from CardiacLandmarksLib.core.review import corrected_landmark

    k, t = int(slice), int(phase)
    if series is not None and not (0 <= k < series.n_slices and 0 <= t < series.n_phases):
        raise ReviewError(f"slice {k} / phase {t} is outside the series ({series.n_slices} slices, "
                          f"{series.n_phases} phases)")
    old = lmset.get(name, k, t)
    if old is None and name not in LANDMARKS_BY_VIEW.get(lmset.view, ()):
        raise ReviewError(f"{name!r} is not a landmark of view {lmset.view!r} "
                          f"(expected one of {LANDMARKS_BY_VIEW.get(lmset.view, ())})")
    if position_lps is None:
        defined, pos, ijk = False, np.full(3, np.nan), np.full(3, np.nan)
    else:
        pos = np.asarray(position_lps, dtype=float).reshape(-1)
        if pos.shape != (3,) or not np.all(np.isfinite(pos)):
            raise ReviewError(f"a corrected position must be three finite LPS mm values, got {position_lps!r}")
        defined = True
        ijk = np.asarray(series.lps_to_ijk(pos), float) if series is not None else np.full(3, np.nan)
        check_reviewed_position(f"{name} s{k} p{t}", k, pos, ijk, series)
    # a point the set did not hold is a placement by the reader (no detection to compare with)
    new = corrected_landmark(old, name, k, t, defined, pos, ijk, user_marked=old is None)
    if old is None:
        lmset.landmarks.append(new)
    else:
        lmset.landmarks[next(i for i, x in enumerate(lmset.landmarks) if x is old)] = new
    return new


def confirm_landmark(lmset: LandmarkSet, name: str, slice: int, phase: int) -> Landmark:
    """A reader's "this point is right": keep the point where it is and trust it, in place.

    A low point the reader checked and found right then counts as a corrected one (confidence 1, flag
    ``"high"``, ``corrected`` and ``confirmed`` True): it leaves the review queue and its measurements are no
    longer ``review`` because of it, which a reader could otherwise only reach by dragging it off and back (the
    correction rule, :func:`CardiacLandmarksLib.core.review.corrected_landmark`, takes a point at its
    detected position for the model's). On a long-axis cine the confirmed point is an anchor for re-tracking
    (:func:`CardiacLandmarksLib.lax.tracking.retrack_landmark`), as a correction is. Confirming a point twice,
    or a point the reader moved, changes nothing.

    Args:
        lmset: the landmarks (changed in place).
        name, slice, phase: which point.

    Returns:
        The landmark now in ``lmset``.

    Raises:
        ReviewError: no such point, or a point the model did not find (nothing to confirm: place it, or leave
            it absent).
    """
    from CardiacLandmarksLib.core.review import corrected_landmark

    k, t = int(slice), int(phase)
    old = lmset.get(name, k, t)
    if old is None:
        raise ReviewError(f"there is no {name} on slice {k}, phase {t} to confirm")
    if not old.found:
        raise ReviewError(f"{name} on slice {k}, phase {t} was not found: there is no point to confirm "
                          "(place it where it is, or leave it absent)")
    new = corrected_landmark(old, name, k, t, True, old.position, old.ijk, confirmed=True)
    lmset.landmarks[next(i for i, x in enumerate(lmset.landmarks) if x is old)] = new
    return new


@dataclass
class CarriedReview:
    """What :func:`carry_review` did: ``lmset`` (the new result with the reader's points in it, or the new result
    unchanged), ``points`` (``"<name> s<slice> p<phase>"`` of each point carried; empty when none), ``reason`` (why
    an earlier review was not carried; empty when it was, or when the earlier result had no reviewed point)."""

    lmset: LandmarkSet
    points: list[str] = field(default_factory=list)
    reason: str = ""


def reviewed_points(lmset: LandmarkSet) -> list[Landmark]:
    """The reader's points of a result: those corrected (moved, placed, unset) or confirmed."""
    return [lm for lm in lmset.landmarks if lm.corrected]


def _same_image_record(earlier: LandmarkSet, new: LandmarkSet) -> str:
    """Why two results are not of the same image series ('' when their records agree)."""
    def names(ls: LandmarkSet) -> list[str]:
        return [Path(f).name for f in (ls.source_files or [ls.source])]

    if earlier.view != new.view:
        return f"the earlier result is a {earlier.view.upper()} view, this one {new.view.upper()}"
    if names(earlier) != names(new):
        return f"the earlier result was made from {', '.join(names(earlier))}, this one from {', '.join(names(new))}"
    if earlier.source_series_uids and new.source_series_uids and earlier.source_series_uids != new.source_series_uids:
        return "the earlier result was made from other DICOM series"
    return ""


def carry_review(earlier: LandmarkSet, new: LandmarkSet, series, *, tolerance_px: float = 0.05) -> CarriedReview:
    """Carry a reader's review from an earlier result of the same image into a new detection of it.

    A re-run (``study`` or ``detect`` into the folder of an earlier run, ``batch --redo``, a new model version)
    detects every point again; without this, the points a reader corrected or confirmed in the earlier result
    would be replaced by the model's and its review lost from the new report. Each reader's point of ``earlier``
    (:func:`reviewed_points`: moved, placed, unset or confirmed; kept as the reader left it, with its
    ``corrected`` / ``confirmed`` state) replaces the new detection's point of the same name, slice and phase, as
    if the reader had made the same correction on the new result. The measurements are recomputed
    (:func:`recompute_measurements`); on a long-axis cine each landmark the reader set is re-tracked from its
    anchors (the new run's and the reader's points: :func:`CardiacLandmarksLib.lax.tracking.retrack_landmark`, the
    rule the Slicer module and the review app apply after a correction).

    Nothing is carried (``reason`` says why, and ``lmset`` is ``new`` unchanged) when the earlier result is not of
    this image: another view or chamber, other source files or DICOM series, a slice or phase the new series does
    not have, or a point whose position no longer maps to its recorded voxel index (the image geometry changed,
    by more than ``tolerance_px`` pixels in plane or half a slice across).

    Args:
        earlier: the earlier result (:func:`read_result` of its folder: point lists saved after it count).
        new: the new detection (not modified).
        series: the :class:`CardiacLandmarksLib.core.series.CMRSeries` of the new detection.
        tolerance_px: in-plane tolerance of the geometry check (pixels).

    Returns:
        :class:`CarriedReview`.

    Raises:
        what re-tracking raises (:func:`CardiacLandmarksLib.lax.tracking.track_landmarks`) on a bad image.
    """
    import copy

    mine = reviewed_points(earlier)
    if not mine:
        return CarriedReview(new)
    why = _same_image_record(earlier, new)
    for lm in mine if not why else ():
        where = f"{lm.name} on slice {lm.slice}, phase {lm.phase}"
        if not (0 <= lm.slice < series.n_slices and 0 <= lm.phase < series.n_phases):
            why = f"the reader's {where} is outside this series ({series.n_slices} slices, {series.n_phases} phases)"
        elif lm.found:
            ijk = np.asarray(series.lps_to_ijk(np.asarray(lm.position, float)), float)
            old = np.asarray(lm.ijk, float)
            if abs(ijk[2] - lm.slice) > 0.5 or (np.all(np.isfinite(old[:2]))
                                                and float(np.max(np.abs(ijk[:2] - old[:2]))) > tolerance_px):
                why = f"the reader's {where} no longer falls on its pixel: the image geometry changed"
        if why:
            break
    if why:
        return CarriedReview(new, reason=why)
    out = LandmarkSet(new.source, new.view, copy.deepcopy(new.model), [copy.copy(lm) for lm in new.landmarks],
                      list(new.measurements), list(new.warnings)).with_source_of(new)
    carried = []
    for lm in mine:
        old = out.get(lm.name, lm.slice, lm.phase)
        point = copy.copy(lm)
        if point.found and not np.all(np.isfinite(np.asarray(point.ijk, float))):  # from a point list read alone
            point.ijk = np.asarray(series.lps_to_ijk(np.asarray(point.position, float)), float)
        if old is None:
            out.landmarks.append(point)
        else:
            out.landmarks[next(i for i, x in enumerate(out.landmarks) if x is old)] = point
        carried.append(f"{lm.name} s{lm.slice} p{lm.phase}")
    if out.view == "sax":
        recompute_measurements(out, series)
    else:
        from CardiacLandmarksLib.lax.tracking import retrack_landmark

        anchors = out.model.get("tracking", {}).get("anchors", {})
        for lm in mine:  # a point the reader unset is no anchor (as lax.tracking.correct_landmark does)
            if not lm.found and lm.phase in anchors.get(lm.name, ()):
                anchors[lm.name] = [p for p in anchors[lm.name] if p != lm.phase]
        for name, k in dict.fromkeys((lm.name, lm.slice) for lm in mine):
            out = retrack_landmark(series, out, name, k)
        recompute_measurements(out, series)
    logger.info("carried the reader's review of %d point(s) from the earlier result: %s", len(carried),
                ", ".join(carried))
    return CarriedReview(out, carried)


def carry_review_from(folder: str | Path, new: LandmarkSet, series) -> CarriedReview:
    """:func:`carry_review` from the result in ``folder`` (an earlier run's result folder, or its backup).

    Nothing to carry (an empty :class:`CarriedReview`) when the folder holds no ``landmarks.json``; one that cannot
    be read, or a long-axis review whose re-tracking fails, is named in ``reason`` and nothing is carried (a re-run
    never fails where a fresh run would not). Point lists saved after ``landmarks.json`` (a review exported from
    Slicer) count, as in :func:`read_result`.
    """
    folder = Path(folder)
    if not (folder / RESULT_FILE).is_file():
        return CarriedReview(new)
    try:
        # no series: the points taken from point lists keep NaN ijk, so the geometry check is not fooled by
        # indices computed on the new image
        earlier = read_result(folder)
    except (CardiacLandmarksError, OSError) as exc:
        return CarriedReview(new, reason=f"the earlier result in {folder} could not be read: {exc}")
    try:
        return carry_review(earlier, new, series)
    except CardiacLandmarksError as exc:  # re-tracking from the reader's points failed: the new detection stands
        logger.warning("the review of %s was not carried over: %s", folder, exc)
        return CarriedReview(new, reason=f"re-tracking from the reader's points failed ({type(exc).__name__}: {exc})")


#: a reader's corrections not saved yet (hidden: never a result file, never moved into a re-run's backup)
UNSAVED_FILE = ".cardiac-landmarks-unsaved.json"


def keep_unsaved(folder: str | Path, lmset: LandmarkSet) -> Path | None:
    """Keep a copy of a result a reader is correcting, after each change and before Save, so that a review app
    stopped (Ctrl+C, a closed terminal, a crash) loses nothing: :func:`read_unsaved` gives it back at the next start.
    ``folder/.cardiac-landmarks-unsaved.json`` (the ``landmarks.json`` layout), written atomically.

    Returns:
        The path, or None when the folder is not writable (logged; the review goes on).
    """
    from CardiacLandmarksLib.io.atomic import atomic_write_text
    from CardiacLandmarksLib.sax.report import landmarks_json_text

    try:
        return atomic_write_text(Path(folder) / UNSAVED_FILE, landmarks_json_text(lmset))
    except OSError as exc:
        logger.warning("cannot keep the unsaved corrections of %s: %s", folder, exc)
        return None


def read_unsaved(folder: str | Path) -> tuple[LandmarkSet, float] | None:
    """The unsaved corrections :func:`keep_unsaved` kept in ``folder`` and their time (epoch s), or None: when there
    are none, or when the result was written since (``landmarks.json`` or a point list newer: a Save, a re-run, a
    Slicer export), which the kept copy would undo; such a stale copy is left in place and logged."""
    folder = Path(folder)
    path = folder / UNSAVED_FILE
    try:
        t = path.stat().st_mtime
    except OSError:
        return None
    written = [p.stat().st_mtime for p in (folder / RESULT_FILE, *folder.glob("*.mrk.json")) if p.is_file()]
    if any(w > t for w in written):
        logger.info("%s: unsaved corrections older than the result's files: not restored", folder)
        return None
    try:
        return LandmarkSet.from_dict(json.loads(path.read_text(encoding="utf-8"))), t
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("%s: unreadable unsaved corrections (%s): not restored", path, exc)
        return None


def discard_unsaved(folder: str | Path) -> None:
    """Remove the unsaved-corrections copy of ``folder`` (after a Save)."""
    with contextlib.suppress(OSError):
        (Path(folder) / UNSAVED_FILE).unlink()


def recompute_measurements(lmset: LandmarkSet, series=None) -> list[Measurement]:
    """Recompute the landmark measurements of ``lmset`` after a correction (and store them in it).

    SAX: :func:`CardiacLandmarksLib.sax.measurements.rvi_measurements` (RVI angle and opening angle per slice and
    phase; the series, when given, fixes the reference frame). Long axis (2ch/3ch/4ch):
    :func:`CardiacLandmarksLib.lax.measurements.lv_length_measurements` (LV length per phase, ED/ES lengths and
    longitudinal shortening). Measurements of other kinds already in the set (names these
    functions do not produce) are kept after them. The detection's warnings on the input itself (a forced view, an
    incomplete series, a placeholder voxel size) stay on every new measurement
    (:func:`CardiacLandmarksLib.core.landmarks.add_input_sources`): a reader's correction vouches for points, not
    for the file.

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
    add_input_sources(new, input_sources(lmset.measurements))
    lmset.measurements = list(new) + [m for m in lmset.measurements if m.name not in own]
    return lmset.measurements


_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def _save_lock(folder: Path, timeout_s: float) -> Iterator[None]:
    """One save per result folder at a time, and none while another process writes into it.

    In this process a lock per folder (per study for an analysis of a ``study`` output, whose ``run.json`` every
    save of its analyses updates); across processes the folder hold every run takes
    (:func:`CardiacLandmarksLib.io.outputs.edit_held`: the folder and its study folder), so a save waits for, and
    then gives way to, a ``study`` run rewriting the study, ``apply-review``, or a save from another program."""
    from CardiacLandmarksLib.core.errors import FolderHeldError
    from CardiacLandmarksLib.io.outputs import edit_held, study_of_analysis

    key = str(study_of_analysis(folder) or folder.resolve())
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(key, threading.Lock())
    if not lock.acquire(timeout=max(0.0, timeout_s)):
        raise SaveInProgressError(f"another save of {folder} is still running")
    try:
        with edit_held(folder, "review app save", wait_s=timeout_s):
            yield
    except FolderHeldError as exc:
        who = f" ({exc.holder})" if exc.holder else ""
        raise SaveInProgressError(f"another program is writing into {exc.folder}{who}: save again when it has "
                                  "ended") from None
    finally:
        lock.release()


def save_result(folder: str | Path, lmset: LandmarkSet, series, *, timeout_s: float = 30.0,
                expected_sha256: str | None = None) -> list[Path]:
    """Write the (corrected) result back into its folder, exactly as ``cardiac-landmarks detect`` does.

    :func:`CardiacLandmarksLib.sax.report.write_landmark_outputs` writes ``landmarks.json``,
    ``measurements.csv``, the ``landmarks*.mrk.json`` point lists and the figure (``<stem>_overlay.png``
    for SAX, ``<stem>_lv_length.png`` for long axis), atomically and with the command line's backup
    rule: the point lists it replaces are kept as ``<name>.bak-YYYYmmdd-HHMMSS`` (their descriptions
    keep the model's positions and confidences), the other files are replaced. The folder's ``run.json`` gets
    the new checksums and an ``edits`` entry (:func:`CardiacLandmarksLib.io.outputs.record_edit`), and so does the
    study's ``run.json`` when the folder is an analysis of a ``study`` output.

    Saves of the same folder never interleave: a second save (another thread, or another process) waits for the
    first one to finish; a save waits for a run writing into the folder or its study (another program's ``study``,
    ``apply-review``), then gives up.

    Args:
        folder: the result folder (must exist).
        lmset: landmarks and measurements to write (call :func:`recompute_measurements` first).
        series: the image series of the result (figure and file stem).
        timeout_s: how long to wait for a running save of the same folder.
        expected_sha256: the SHA-256 of the ``landmarks.json`` the reader's copy was read from
            (:func:`result_sha256` at reading); None: not checked (a script that writes what it means to).

    Returns:
        The paths written.

    Raises:
        ResultChangedError: ``expected_sha256`` given and the folder's ``landmarks.json`` is another (the folder was
            written again since it was read); nothing is written.
        InputNotFoundError: ``folder`` is not a folder.
        SaveInProgressError: the other save, or the run writing into the folder, did not finish within
            ``timeout_s``.
        OSError: the folder is not writable.
    """
    from CardiacLandmarksLib.io.outputs import record_edit
    from CardiacLandmarksLib.sax.report import render_overlay_png, write_landmark_outputs

    folder = Path(folder)
    if not folder.is_dir():
        raise InputNotFoundError(f"result folder {folder} does not exist")
    if lmset.view == "sax":
        png_writer, suffix = render_overlay_png, "_overlay.png"
    else:
        from CardiacLandmarksLib.lax.report import render_lax_png

        png_writer, suffix = render_lax_png, "_lv_length.png"
    with _save_lock(folder, timeout_s):
        if expected_sha256 is not None:
            _check_unchanged(folder, expected_sha256)
        written = write_landmark_outputs(series, lmset, folder, png_writer, suffix)
        record_edit(folder, written, "review app (corrections saved)")  # run.json lists the new checksums
        if (folder.parent / "study.json").is_file():  # an analysis of a 'study' output: its run.json lists them too
            record_edit(folder.parent, written, f"review app (corrections of {folder.name} saved)")
    logger.info("saved %d file(s) to %s", len(written), folder)
    return written
