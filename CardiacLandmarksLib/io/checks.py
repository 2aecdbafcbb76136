"""Input checks run right after loading and before any model: one function for every front end.

:func:`check_series` refuses, with a named error, what no model of this project can measure
and what would silently give wrong numbers:

* **label masks** given as images: integer-valued pixels with at most
  :data:`MAX_LABEL_VALUES` (10) distinct values -> :class:`~.errors.LabelMaskError`;
* **constant images** (all voxels one value, e.g. all zero) -> :class:`~.errors.ConstantImageError`;
* **images too small for a heart**: fewer than :data:`MIN_IMAGE_PX` (16) pixels on a side, e.g. a stack read along
  the wrong axis -> :class:`~.errors.InvalidImageError`;
* **absurd spacing**: in-plane pixel size below :data:`MIN_PIXEL_MM` (0.2 mm: a header in metres or centimetres)
  or above :data:`MAX_PIXEL_MM` (20 mm), or slices of a
  stack more than :data:`MAX_SLICE_GAP_MM` (50 mm) apart -> :class:`~.errors.ImplausibleSpacingError`
  (a whole adult heart is about 120 mm across; cardiac MR pixels are 0.5-3 mm, slices 5-10 mm);
  a voxel size that is a header's default (exactly 1 mm with a placeholder affine) -> a warning
  (:func:`placeholder_spacing_warning`);
* **incomplete DICOM cines**: slice positions or phases missing from the grid, as found by the
  DICOM loader (``metadata["completeness"]``, see :func:`.dicom.grid_completeness`) ->
  :class:`~.errors.IncompleteSeriesError`, unless ``allow_incomplete`` (then a warning);
* **wrong view**: the view the caller wants (``expected_view``) against the view the image looks
  like (:func:`.view.recognise_view`: description, orientation, number of slices): a SAX model
  is not run on an image that looks long-axis and vice versa -> :class:`~.errors.WrongViewError`,
  unless ``force_view`` (then a warning).

A non-cardiac image that passes these checks is caught after the model has run:
:func:`check_detections` raises :class:`~.errors.NotCardiacError` when the SAX model finds no LV
centre on any slice or phase of the whole series, or a long-axis model no landmark at all (rules
documented there).

Series of one study (stress/rest perfusion, base/mid/apex): :func:`check_study_match`. Values a user gives for
files that lost them (``--pixel-size``, ``--dt``, a manifest's columns): :func:`check_pixel_size`,
:func:`check_frame_interval`.

Every check returns the warnings it made (strings for the user and for every output); callers
store them with the results.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from CardiacLandmarksLib.core.errors import (
    ConstantImageError,
    ImplausibleSpacingError,
    IncompleteSeriesError,
    InvalidImageError,
    LabelMaskError,
    NotCardiacError,
    PerfusionInputError,
    SeriesMismatchError,
    WrongViewError,
)
from CardiacLandmarksLib.io.view import recognise_view

logger = logging.getLogger(__name__)

MAX_LABEL_VALUES = 10
#: fewest pixels on each side of an image plane: QPerf's cropped perfusion series, the smallest here, are 37 x 40
MIN_IMAGE_PX = 16
#: smallest in-plane pixel (mm) taken as a cardiac MR pixel: a 512-pixel row then spans about 100 mm, less than an
#: adult heart; 0.0014 (a header in metres) or 0.14 (in centimetres) is refused before any model runs
MIN_PIXEL_MM = 0.2
MAX_PIXEL_MM = 20.0
MAX_SLICE_GAP_MM = 50.0
#: study series must agree in pixel size within this relative tolerance (5%)
PIXEL_SIZE_REL_TOL = 0.05
LAX_VIEWS = ("2ch", "3ch", "4ch", "lax")


def _name(series) -> str:
    return str(series.source or series.description or "<series>")


def check_image_content(series) -> None:
    """Refuse label masks and constant images (see module docstring).

    Args:
        series: :class:`~.series.CMRSeries` (``pixels [t, k, j, i]``).

    Raises:
        InvalidImageError: an image plane with fewer than :data:`MIN_IMAGE_PX` pixels on a side (e.g. a 3-D stack
            read as 2D+T with ``--time-axis first``: 216 "phases" of 256 x 10 pixels).
        ConstantImageError, LabelMaskError.
    """
    px = series.pixels
    rows, cols = px.shape[2], px.shape[3]
    if min(rows, cols) < MIN_IMAGE_PX:
        raise InvalidImageError(
            f"{_name(series)}: images of {rows} x {cols} pixels ({px.shape[0]} phase(s) x {px.shape[1]} slice(s)): "
            f"no cardiac MR image has fewer than {MIN_IMAGE_PX} pixels on a side; if the file is a 3-D stack or a "
            "2D+T series read along the wrong axis, check --time-axis")
    lo, hi = float(px.min()), float(px.max())
    if lo == hi:
        raise ConstantImageError(f"{_name(series)}: the image is constant (every voxel = {lo:g}); "
                                 "nothing to detect")
    values = label_values(series)
    if values is not None:
        raise LabelMaskError(
            f"{_name(series)}: the image holds only {values.size} integer values "
            f"({', '.join(f'{v:g}' for v in values)}): it is a label mask, not an MR image; "
            "give the image file (e.g. patient001_ED.nii.gz, not patient001_ED_gt.nii.gz)")


def label_values(series) -> np.ndarray | None:
    """The distinct values of a series that looks like a label mask, else None.

    A label mask here: the first (up to) three frames hold only integers, 2 to :data:`MAX_LABEL_VALUES`
    distinct ones. An 8-bit MR image also holds integers, but hundreds of them; a constant image is not a
    label mask (:class:`~.errors.ConstantImageError` names it).

    Args:
        series: :class:`~.series.CMRSeries` (``pixels [t, k, j, i]``).

    Returns:
        sorted ``(n,)`` array of the values, or None.
    """
    px = series.pixels
    sample = px[: min(3, px.shape[0])]
    if not np.all(sample == np.round(sample)):
        return None
    values = np.unique(sample)
    return values if 2 <= values.size <= MAX_LABEL_VALUES else None


def check_spacing(series) -> None:
    """Refuse in-plane pixels below :data:`MIN_PIXEL_MM` or above :data:`MAX_PIXEL_MM`, or slice gaps above
    :data:`MAX_SLICE_GAP_MM`.

    Raises:
        ImplausibleSpacingError: message gives the spacing found and the limit.
    """
    si, sj = float(series.spacing[0]), float(series.spacing[1])
    if max(si, sj) > MAX_PIXEL_MM or min(si, sj) < MIN_PIXEL_MM:
        raise ImplausibleSpacingError(
            f"{_name(series)}: pixel size {si:g} x {sj:g} mm is not a cardiac MR pixel ({MIN_PIXEL_MM:g} to "
            f"{MAX_PIXEL_MM:g} mm); check the file header's spacing")
    if series.n_slices > 1:
        heights = np.asarray(series.slice_origins, float) @ np.asarray(series.direction, float)[:, 2]
        gap = float(np.max(np.abs(np.diff(heights))))
        if gap > MAX_SLICE_GAP_MM:
            raise ImplausibleSpacingError(
                f"{_name(series)}: slices up to {gap:g} mm apart (limit {MAX_SLICE_GAP_MM:g} mm); "
                "check the file header's slice spacing")


def placeholder_spacing_warning(series) -> str | None:
    """A warning when the voxel size looks like a header's default rather than a measurement, else None.

    The signature: an image file whose affine is a placeholder (identity-like direction, origin 0:
    :func:`.image.orientation_known`'s reason names it) and whose pixels are exactly 1 x 1 mm, with
    exactly 1 mm between slices when there are several. Images exported through PNG or converted
    without their header look like this (EMIDEC in the shared data: real pixels about 1.25-2 mm, slices
    8-13 mm apart). Then lengths (mm), volumes (ml) and masses (g) are wrong by an unknown factor, and the
    models, which resample to a fixed mm grid, see the heart at the wrong scale. Angles in the slice plane
    (RVI angles) do not depend on an in-plane scale; their points may still be worse.

    Files with scanner geometry (oblique, or a non-zero origin) are never flagged, even at 1 mm
    (e.g. CineMA's resampled long-axis frames).
    """
    if getattr(series, "orientation_known", True):
        return None
    if "placeholder" not in str((series.metadata or {}).get("orientation_reason", "")):
        return None
    si, sj, sk = (float(v) for v in series.spacing)
    given = (series.metadata or {}).get("pixel_size_given_mm")
    if given is not None:  # the in-plane size came from the user (given_pixel_size): only the slice gap is unknown
        if series.n_slices > 1 and sk == 1.0:
            return (f"{_name(series)}: pixel size {given:g} mm as given, but the 1 mm between slices is the header's "
                    "placeholder: volumes in ml and masses in g are wrong. Give the file with its real slice spacing")
        return None
    if si != 1.0 or sj != 1.0 or (series.n_slices > 1 and sk != 1.0):
        return None
    between = " and 1 mm between slices" if series.n_slices > 1 else ""
    return (f"{_name(series)}: 1 x 1 mm pixels{between} with a placeholder affine (identity direction, origin 0): "
            "the header has most likely lost the real voxel size (e.g. an image exported through PNG); then every "
            "length in mm, volume in ml and mass in g is wrong, and the model sees the heart at the wrong scale. "
            "Give the file with its real spacing (or its pixel size: --pixel-size)")


def check_pixel_size(mm: float) -> float:
    """A pixel size a user gives (``--pixel-size``, a manifest's ``pixel_size_mm``), in mm, as a float.

    Raises:
        ImplausibleSpacingError: below :data:`MIN_PIXEL_MM` or above :data:`MAX_PIXEL_MM` (the limits of
            :func:`check_spacing`), or not a number.
    """
    mm = float(mm)
    if not MIN_PIXEL_MM <= mm <= MAX_PIXEL_MM:
        raise ImplausibleSpacingError(f"pixel size {mm:g} mm is not a cardiac MR pixel ({MIN_PIXEL_MM:g} to "
                                      f"{MAX_PIXEL_MM:g} mm)")
    return mm


#: longest frame interval (s) of a first-pass perfusion series: a frame per heartbeat, or per two at 30 beats/min
MAX_FRAME_INTERVAL_S = 5.0


def check_frame_interval(dt_s: float | None) -> None:
    """Refuse a frame interval no first-pass perfusion series has (``dt_s`` in s; None = from the frames).

    Raises:
        PerfusionInputError: not a positive finite number, or above :data:`MAX_FRAME_INTERVAL_S` (a value in
            milliseconds, e.g. 800, would stretch every upslope and MBF by a factor of 1000).
    """
    if dt_s is None:
        return
    dt = float(dt_s)
    if not (math.isfinite(dt) and 0 < dt <= MAX_FRAME_INTERVAL_S):
        raise PerfusionInputError(f"frame interval {dt_s!r} s is not one of a first-pass perfusion series (0 to "
                                  f"{MAX_FRAME_INTERVAL_S:g} s per frame; --dt takes seconds, not milliseconds)")


def given_pixel_size(series, mm: float) -> str | None:
    """Set a user-given in-plane pixel size on a series whose header lost it; leave any other series alone.

    Only a series with the placeholder signature of :func:`placeholder_spacing_warning` (1 x 1 mm pixels,
    identity direction, origin 0) takes it: a header with a real pixel size is never overridden. QPerf's crops
    (Xue et al., MRM 2020) record none; about 2 mm fits them.

    Args:
        series: :class:`~CardiacLandmarksLib.core.series.CMRSeries`; ``spacing`` becomes ``(mm, mm, slice
            spacing)`` and ``metadata["pixel_size_given_mm"]`` records it.
        mm: in-plane pixel size in mm.

    Returns:
        a note for the report when the size was set, None when the series kept its own.

    Raises:
        ImplausibleSpacingError: ``mm`` below :data:`MIN_PIXEL_MM` or above :data:`MAX_PIXEL_MM` (the limits of
            :func:`check_spacing`).
    """
    mm = check_pixel_size(mm)
    if (series.metadata or {}).get("pixel_size_given_mm") is not None or placeholder_spacing_warning(series) is None:
        return None
    series.spacing = (mm, mm, float(series.spacing[2]))
    series.metadata = dict(series.metadata or {}, pixel_size_given_mm=mm)
    return f"{_name(series)}: pixel size {mm:g} x {mm:g} mm as given (the header's 1 x 1 mm is a placeholder)"


def check_completeness(series, allow_incomplete: bool = False) -> list[str]:
    """Missing slice positions or phases recorded by the DICOM loader (``metadata["completeness"]``).

    Returns:
        warnings (empty when complete; one line when ``allow_incomplete`` lets an incomplete grid pass).

    Raises:
        IncompleteSeriesError: something is missing and ``allow_incomplete`` is False.
    """
    problems = list((series.metadata or {}).get("completeness", {}).get("problems", []))
    if not problems:
        return []
    text = f"{_name(series)}: incomplete series: " + "; ".join(problems)
    if not allow_incomplete:
        raise IncompleteSeriesError(text + " (use --allow-incomplete / allow_incomplete=True to analyse "
                                           "it anyway)")
    return [text + " (analysed anyway: every value from it is review)"]


def check_view(series, expected_view: str | None, force_view: bool = False, hint: str | None = None) -> list[str]:
    """Compare the view the caller wants with the view the image looks like.

    Args:
        series: the series.
        expected_view: ``"sax"``, ``"2ch"``, ``"3ch"``, ``"4ch"`` or ``"lax"`` (any long axis);
            None or ``"auto"``: no check.
        force_view: turn a mismatch into a returned warning.
        hint: what the user can do, appended to the error (default: the ``detect`` options).

    Returns:
        warnings (empty when the views agree or the image's view cannot be told).

    Raises:
        WrongViewError: mismatch and not ``force_view``.
    """
    if expected_view in (None, "", "auto"):
        return []
    guess = recognise_view(series)
    seen = guess.view
    mismatch = False
    if expected_view == "sax":
        mismatch = seen in LAX_VIEWS
    elif expected_view in LAX_VIEWS:
        mismatch = seen == "sax" or (guess.source == "description" and seen in ("2ch", "3ch", "4ch")
                                     and expected_view != "lax" and seen != expected_view)
    if not mismatch:
        return []
    text = (f"{_name(series)}: asked for the {expected_view.upper()} view but the image looks {seen.upper()} "
            f"({guess.reason})")
    if force_view:
        return [text + "; view forced by the user: results may be meaningless"]
    if hint is None:
        hint = (f"use --view auto (or {seen if seen != 'lax' else '2ch/3ch/4ch'}), or --force-view to run anyway")
    raise WrongViewError(f"{text}; {hint}")


def check_series(series, expected_view: str | None = None, *, force_view: bool = False,
                 allow_incomplete: bool = False, view_hint: str | None = None) -> list[str]:
    """All checks of the module docstring, cheapest first; run after loading, before any model.

    Args:
        series: :class:`~.series.CMRSeries`.
        expected_view: the view that will be analysed (``"sax"``, ``"2ch"``, ``"3ch"``, ``"4ch"``,
            ``"lax"``), or None/``"auto"`` for no view check.
        force_view: a view mismatch is a warning instead of an error.
        allow_incomplete: an incomplete DICOM grid is a warning instead of an error.
        view_hint: advice appended to a view error (see :func:`check_view`).

    Returns:
        warnings, also appended to ``series.metadata["warnings"]`` so writers can carry them.

    Raises:
        ConstantImageError, LabelMaskError, ImplausibleSpacingError, IncompleteSeriesError,
        WrongViewError (all subclasses of :class:`~.errors.CardiacLandmarksError`).
    """
    check_spacing(series)
    check_image_content(series)
    warnings = check_completeness(series, allow_incomplete)
    warnings += check_view(series, expected_view, force_view, view_hint)
    placeholder = placeholder_spacing_warning(series)
    if placeholder:
        warnings.append(placeholder)
    for w in warnings:
        logger.warning("%s", w)
    if series.metadata is None:
        series.metadata = {}
    series.metadata.setdefault("warnings", []).extend(warnings)
    return warnings


#: a stack of at least this many slices must show the LV centre lined up on a third of them (see check_detections)
MIN_SLICES_FOR_RUN = 6
#: largest in-plane distance (mm) between the LV centres of neighbouring slices that still counts as one LV
LV_RUN_MM = 15.0


def longest_lv_run(series, lmset) -> int:
    """Longest run of neighbouring slices (one phase, the best phase) whose found ``C-LV`` points lie within
    :data:`LV_RUN_MM` of each other in the slice plane (LPS mm, the through-slice offset removed).

    A short-axis stack shows one LV whose centre moves little from slice to slice; points a model reports on a
    non-cardiac image scatter (measured on nibabel's brain EPI with SAX v1.4.0: at most 4 of 24 slices; on the
    MS-CMRSeg LGE, M&Ms-2, EMIDEC and ACDC stacks 6-15, at least half the slices).
    """
    normal = np.asarray(series.direction, float)[:, 2]
    best = 0
    for t in range(series.n_phases):
        pts = {lm.slice: np.asarray(lm.position, float) for lm in lmset.landmarks
               if lm.name == "C-LV" and lm.found and lm.phase == t}
        run = 0
        for k in range(series.n_slices):
            if k not in pts:
                run = 0
                continue
            if k - 1 in pts:
                d = pts[k] - pts[k - 1]
                run = run + 1 if np.linalg.norm(d - (d @ normal) * normal) < LV_RUN_MM else 1
            else:
                run = 1
            best = max(best, run)
    return best


def check_detections(series, lmset) -> None:
    """Refuse a result in which the model found nothing cardiac anywhere.

    Rule: a cardiac SAX stack shows the LV on most slices; when the SAX model finds no ``C-LV``
    on any slice of any phase, the image is taken as non-cardiac (or not a SAX image at all); so too a stack of
    :data:`MIN_SLICES_FOR_RUN` or more slices whose LV centres line up on fewer than a third of its slices
    (:func:`longest_lv_run`); and a stack of that many slices on which the model finds no RV insertion pair
    anywhere and no LV centre it is confident of (every C-LV flagged low): SAX v1.5.0 finds lined-up "LV centres" on
    the ventricles of nibabel's brain EPI (20 of 24 slices), all low, and no RV insertion. For a
    long-axis view, the same when the model finds no landmark at all on any phase. ``--force-view`` skips these
    checks.

    Raises:
        NotCardiacError.
    """
    if lmset.view == "sax":
        if not any(lm.found and lm.name == "C-LV" for lm in lmset.landmarks):
            raise NotCardiacError(
                f"{_name(series)}: the SAX model finds no left ventricle on any of the {series.n_slices} slices x "
                f"{series.n_phases} phases: this does not look like a cardiac short-axis MR")
        run = longest_lv_run(series, lmset)
        if series.n_slices >= MIN_SLICES_FOR_RUN and run < series.n_slices / 3:
            raise NotCardiacError(
                f"{_name(series)}: the SAX model's LV centres do not line up along the stack (at most {run} "
                f"neighbouring slices of {series.n_slices} within {LV_RUN_MM:.0f} mm of each other in plane, on "
                "any phase): this does not look like a cardiac short-axis MR")
        pairs = any(lm.found and lm.name in ("A-RVI", "I-RVI") for lm in lmset.landmarks)
        sure_lv = any(lm.found and lm.name == "C-LV" and lm.flag == "high" for lm in lmset.landmarks)
        if series.n_slices >= MIN_SLICES_FOR_RUN and not pairs and not sure_lv:
            raise NotCardiacError(
                f"{_name(series)}: the SAX model finds no RV insertion on any of the {series.n_slices} slices x "
                f"{series.n_phases} phases and is confident of no LV centre: this does not look like a cardiac "
                "short-axis MR (--force-view runs it anyway)")
    elif not any(lm.found for lm in lmset.landmarks):
        raise NotCardiacError(
            f"{_name(series)}: the {lmset.view.upper()} model finds no mitral point or apex on any of the "
            f"{series.n_phases} phases: this does not look like a cardiac long-axis MR")


def mark_input_warnings(lmset, warnings: Sequence[str]) -> None:
    """Carry input warnings (forced view, incomplete series ...) into every measurement of ``lmset``
    (in place): each gets a source ``"input"`` flagged ``review`` with the warning as its note, so
    its status is at best ``review`` in measurements.csv, landmarks.json and every table; the warnings
    are also kept in ``lmset.warnings``."""
    from CardiacLandmarksLib.core.landmarks import INPUT_SOURCE_ID, Source, add_input_sources

    if not warnings:
        return
    lmset.warnings = [*lmset.warnings, *[w for w in warnings if w not in lmset.warnings]]
    add_input_sources(lmset.measurements, [Source(INPUT_SOURCE_ID, "review", None, "input", "; ".join(warnings))])


def _patient(series) -> str | None:
    meta = series.metadata or {}
    for key in ("patient_id", "PatientID"):
        if meta.get(key):
            return str(meta[key])
    return None


def check_study_match(series: Sequence, names: Sequence[str] | None = None, *,
                      allow_mismatch: bool = False) -> list[str]:
    """Series of one study (stress/rest, base/mid/apex) must come from one patient (where the
    files say so), share the image matrix and the pixel size within :data:`PIXEL_SIZE_REL_TOL`.

    Args:
        series: the loaded series.
        names: a name per series for messages (default: the sources).
        allow_mismatch: return the differences as warnings instead of raising.

    Returns:
        warnings (empty when all match).

    Raises:
        SeriesMismatchError: a difference and not ``allow_mismatch``.
    """
    names = list(names) if names is not None else [_name(s) for s in series]
    problems: list[str] = []
    pats = {n: _patient(s) for n, s in zip(names, series)}
    known = {p for p in pats.values() if p}
    if len(known) > 1:
        problems.append("patients differ: " + ", ".join(f"{n}: {p}" for n, p in pats.items() if p))
    shapes = {n: s.shape_ji for n, s in zip(names, series)}
    if len(set(shapes.values())) > 1:
        problems.append("matrices differ: " + ", ".join(f"{n}: {a}x{b}" for n, (a, b) in shapes.items()))
    px = {n: float(s.spacing[0]) for n, s in zip(names, series)}
    if px and max(px.values()) > (1 + PIXEL_SIZE_REL_TOL) * min(px.values()):
        problems.append("pixel sizes differ: " + ", ".join(f"{n}: {v:.2f} mm" for n, v in px.items()))
    if not problems:
        return []
    text = "series of one study do not match (" + "; ".join(problems) + ")"
    if not allow_mismatch:
        raise SeriesMismatchError(text + "; are they from one patient and one protocol? --allow-mismatch to "
                                         "analyse them anyway (no stress/rest reserve is then reported)")
    logger.warning("%s", text)
    return [text + "; analysed anyway (--allow-mismatch): stress/rest reserve not reported"]
