"""Landmark analysis of one series whatever its view: the entry the CLI's ``detect`` and the Slicer panel share.

``analyse_landmarks(series, view="auto")`` resolves the view (:func:`CardiacLandmarksLib.io.view.detect_view`:
the user's choice, else DICOM description and orientation) and runs the task API of that view:
:func:`CardiacLandmarksLib.sax.pipeline.analyse_sax` or :func:`CardiacLandmarksLib.lax.pipeline.analyse_lax`.
"""

from __future__ import annotations

import logging

from CardiacLandmarksLib.core.series import CMRSeries
from CardiacLandmarksLib.io.view import detect_view
from CardiacLandmarksLib.lax.measurements import LAX_VIEWS
from CardiacLandmarksLib.lax.pipeline import analyse_lax
from CardiacLandmarksLib.sax.pipeline import CancelFn, ProgressFn, SaxOptions, analyse_sax
from CardiacLandmarksLib.sax.report import LandmarkResult

logger = logging.getLogger(__name__)


def analyse_landmarks(series: CMRSeries, view: str = "auto", options: SaxOptions | None = None,
                      progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> LandmarkResult:
    """Landmarks and their measurements for a SAX or long-axis series.

    Args:
        series: pixels ``[t, k, j, i]`` with geometry.
        view: ``"auto"``, ``"sax"``, ``"2ch"``, ``"3ch"`` or ``"4ch"``.
        options: device and TTA (:class:`~CardiacLandmarksLib.sax.pipeline.SaxOptions`).
        progress: ``progress(done, total)``.
        cancel: polled between batches; True stops with ``Cancelled``.

    Returns:
        :class:`~CardiacLandmarksLib.sax.report.LandmarkResult`; ``result.view`` is the view analysed.

    Raises:
        WrongViewError, InvalidImageError, ModelIntegrityError, Cancelled (see the task APIs).
    """
    chosen = detect_view(series) if view == "auto" else view
    logger.info("analysing %s as %s (%d phases x %d slices)", series.source, chosen, series.n_phases,
                series.n_slices)
    if chosen in LAX_VIEWS:
        return analyse_lax(series, chosen, options, progress=progress, cancel=cancel)
    return analyse_sax(series, options, progress=progress, cancel=cancel)
