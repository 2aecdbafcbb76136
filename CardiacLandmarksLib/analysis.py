"""Landmark analysis of one series whatever its view: the entry the CLI's ``detect`` and the Slicer panel share.

``analyse_landmarks(series, view="auto")`` resolves the view (:func:`CardiacLandmarksLib.io.view.detect_view`:
the user's choice, else DICOM description and orientation) and runs the task API of that view:
:func:`CardiacLandmarksLib.sax.pipeline.analyse_sax` or :func:`CardiacLandmarksLib.lax.pipeline.analyse_lax`.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from CardiacLandmarksLib.core.errors import CardiacLandmarksError, NotCardiacError
from CardiacLandmarksLib.core.series import CMRSeries
from CardiacLandmarksLib.io.checks import check_detections, check_series, mark_input_warnings
from CardiacLandmarksLib.io.view import detect_view
from CardiacLandmarksLib.lax.measurements import LAX_VIEWS
from CardiacLandmarksLib.lax.pipeline import analyse_lax
from CardiacLandmarksLib.sax.pipeline import CancelFn, ProgressFn, SaxOptions, analyse_sax
from CardiacLandmarksLib.sax.report import LandmarkResult

logger = logging.getLogger(__name__)


def analyse_landmarks(series: CMRSeries, view: str = "auto", options: SaxOptions | None = None,
                      progress: ProgressFn | None = None, cancel: CancelFn | None = None, *,
                      force_view: bool = False, allow_incomplete: bool = False,
                      sequence: str | None = None, model=None, check_view: bool = True) -> LandmarkResult:
    """Landmarks and their measurements for a SAX or long-axis series.

    Args:
        series: pixels ``[t, k, j, i]`` with geometry.
        view: ``"auto"``, ``"sax"``, ``"2ch"``, ``"3ch"`` or ``"4ch"``.
        options: device and TTA (:class:`~CardiacLandmarksLib.sax.pipeline.SaxOptions`).
        progress: ``progress(done, total)``.
        cancel: polled between batches; True stops with ``Cancelled``.
        force_view: run the chosen ``view`` even when the image looks like another view (a warning
            in ``result.landmarks.warnings`` instead of :class:`WrongViewError`).
        allow_incomplete: analyse a DICOM cine with missing slice positions or phases (a warning).
        sequence: the MR sequence when the reader knows it better than the DICOM tags or file name (``"cine"``,
            ``"lge"``, ``"perfusion"``, ``"t1"``; None or ``"auto"``: ``series.sequence``); it picks the SAX model
            (:func:`CardiacLandmarksLib.models.catalogue.model_for`: LGE and perfusion get ``sax_unet_lge``).
        model: an already loaded model for the view (a study or a batch worker keeps one per view); None: the
            catalogue's.
        check_view: False when the caller decided the view itself (``study`` routes by the geometry of the whole
            study, which holds where one file's absolute orientation is mislabelled): the other input checks
            and the non-cardiac check still run.

    Before any model runs, :func:`CardiacLandmarksLib.io.checks.check_series` refuses label masks,
    constant images, absurd spacing, incomplete DICOM grids and a ``view`` the image does not look
    like; after the model, :func:`~CardiacLandmarksLib.io.checks.check_detections` refuses an
    image with no LV (SAX) or no landmark (long axis) anywhere: non-cardiac. Warnings go to
    ``result.landmarks.warnings`` and make every measurement ``review`` (:func:`mark_input_warnings`).

    Returns:
        :class:`~CardiacLandmarksLib.sax.report.LandmarkResult`; ``result.view`` is the view analysed.

    Raises:
        WrongViewError, InvalidImageError (LabelMaskError, ConstantImageError, ImplausibleSpacingError,
        IncompleteSeriesError, NotCardiacError), ModelIntegrityError, Cancelled (see the task APIs).
    """
    if sequence not in (None, "", "auto"):
        series = replace(series, sequence=sequence)
    warnings = check_series(series, None if view in (None, "", "auto") or not check_view else view,
                            force_view=force_view, allow_incomplete=allow_incomplete)
    chosen = detect_view(series) if view == "auto" else view
    if force_view and series.view not in ("unknown", chosen):  # forced: the pipelines' own view checks follow suit
        series = replace(series, view=chosen)
    logger.info("analysing %s as %s (%d phases x %d slices)", series.source, chosen, series.n_phases,
                series.n_slices)
    if chosen in LAX_VIEWS:
        result = analyse_lax(series, chosen, options, progress=progress, cancel=cancel, model=model)
    else:
        result = analyse_sax(series, options, progress=progress, cancel=cancel, model=model)
    if not force_view:
        try:
            check_detections(series, result.landmarks)
        except NotCardiacError as exc:  # a model that missed its own targets: it, not the image, may be at fault
            raise NotCardiacError(str(exc) + unbundled_note(result.landmarks.model)) from None
    mark_input_warnings(result.landmarks, warnings)  # every measurement: status at best "review"
    for w in (series.metadata or {}).get("warnings", []):  # loader notes too (e.g. an orthonormalised affine)
        if w not in result.landmarks.warnings:
            result.landmarks.warnings.append(w)
    return result


def unbundled_note(model: dict) -> str:
    """``"; but the model that ran, sax_unet 1.4.0, ..."`` when the model of a result (``LandmarkSet.model``: name,
    version, sha256) is a bundled one whose own card says DO NOT BUNDLE (a retrained model copied into the models
    folder whose validation figures missed the targets: it may find nothing on a good image), else ``""``."""
    from CardiacLandmarksLib.models.catalogue import read_card

    try:
        card = read_card(str(model.get("name", "")))
    except CardiacLandmarksError:
        return ""
    if card.get("sha256") != model.get("sha256") or (card.get("bundle_verdict") or {}).get("bundle") is not False:
        return ""
    return (f"; but the model that ran, {model.get('name')} {model.get('version')}, is one whose own card says DO NOT "
            "BUNDLE (its validation figures missed the targets): the model, not the image, may be at fault "
            "(cardiac-landmarks models lists the bundled ones)")
