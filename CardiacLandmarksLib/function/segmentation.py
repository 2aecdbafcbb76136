"""Cardiac segmentation of short-axis stacks/cines with the bundled SAX U-Net's segmentation head.

Every slice of every phase is resampled onto the model canvas
(:mod:`CardiacLandmarksLib.preprocessing`, 1.5 mm pixels, 192 x 192), run through the network,
and its segmentation softmax is mapped back onto the input pixel grid by linear interpolation
of the class probabilities (canvas -> input is the exact inverse of the canvas grid), then the
arg-max is taken. Labels in the output: 0 background, 1 RV cavity, 2 LV myocardium, 3 LV cavity
(the ACDC convention).

Optional clean-up (:func:`clean_labels`): keep only the largest 3D connected component of each
structure. Whether it is on by default was decided on the SAX model's validation patients that
are not in the ACDC test split (see the function note / model card).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import closing

import numpy as np
from scipy import ndimage

from CardiacLandmarksLib.core.errors import CardiacLandmarksError, InvalidImageError
from CardiacLandmarksLib.core.preprocessing import CanvasGrid, model_canvases
from CardiacLandmarksLib.core.series import CMRSeries
from CardiacLandmarksLib.models.loader import run_batches

logger = logging.getLogger(__name__)

#: output label values (ACDC convention); index = value
LABELS = {"RV cavity": 1, "LV myocardium": 2, "LV cavity": 3}
RV, MYO, LV = 1, 2, 3


class SegmentationUnavailableError(CardiacLandmarksError):
    """The loaded model has no segmentation head (card ``architecture.segmentation_classes``)."""


def canvas_to_input(probs: np.ndarray, grid: CanvasGrid, shape_ji: tuple[int, int]) -> np.ndarray:
    """Map canvas class probabilities back onto one input slice.

    Args:
        probs: ``[n, C, H, W]`` canvas softmax (rows y, columns x).
        grid: the slice's :class:`CanvasGrid`.
        shape_ji: input slice shape ``(rows j, columns i)``.

    Returns:
        ``[n, C, rows, cols]`` float32 probabilities on the input grid (linear interpolation);
        outside the canvas the background class gets probability 1.
    """
    rows, cols = shape_ji
    jj, ii = np.mgrid[0:rows, 0:cols].astype(np.float64)
    xy = grid.ijk_to_canvas(np.stack([ii, jj], axis=-1))  # [rows, cols, 2] canvas (x, y)
    coords = np.stack([xy[..., 1], xy[..., 0]])  # (row y, column x)
    n, c = probs.shape[:2]
    out = np.empty((n, c, rows, cols), np.float32)
    for a in range(n):
        for b in range(c):
            out[a, b] = ndimage.map_coordinates(probs[a, b], coords, order=1, mode="constant",
                                                cval=1.0 if b == 0 else 0.0)
    return out


def segment_series(series: CMRSeries, model, phases: list[int] | None = None, tta: bool = True,
                   progress: Callable[[float, str], None] | None = None, return_confidence: bool = False):
    """Segment every slice of the chosen phases of ``series``.

    On CPU with several torch threads the slices run side by side
    (:func:`~CardiacLandmarksLib.models.loader.run_batches`): the same labels, about 1.2x faster on 2 cores.

    Args:
        series: SAX stack or cine, pixels ``[t, k, j, i]``.
        model: a :class:`~CardiacLandmarksLib.inference.LoadedModel` with a segmentation head.
        phases: phase indices to segment (default all).
        tta: mirror test-time augmentation (as the model card was validated with).
        progress: optional callback ``(fraction 0..1, message)``.

        return_confidence: also return the probability of the chosen class per pixel.

    Returns:
        uint8 labels ``[len(phases), k, j, i]`` (1 RV cavity, 2 LV myocardium, 3 LV cavity), or
        ``(labels, confidence)`` with ``confidence`` float16 ``[len(phases), k, j, i]`` in [0, 1]
        when ``return_confidence``.

    Raises:
        SegmentationUnavailableError: the model has no segmentation head.
        InvalidImageError: NaN/inf pixels.
    """
    classes = model.card.get("architecture", {}).get("segmentation_classes")
    if not classes or len(classes) != 4:
        raise SegmentationUnavailableError(f"model {model.name} {model.version} has no RV/myocardium/LV segmentation head")
    phases = list(range(series.n_phases)) if phases is None else [int(p) for p in phases]
    out = np.zeros((len(phases), series.n_slices) + series.shape_ji, np.uint8)
    conf = np.zeros(out.shape, np.float16) if return_confidence else None

    def one_slice(k: int) -> tuple:
        """Labels and class probabilities of slice ``k`` on the input grid (run by :func:`run_batches`)."""
        canvas, grid = model_canvases(series, k, phases, getattr(model, "in_channels", 1))
        _, seg = model.predict_maps(canvas, tta=tta, segmentation=True)
        if seg is None:
            raise SegmentationUnavailableError(f"model {model.name} returned no segmentation")
        back = canvas_to_input(seg, grid, series.shape_ji)
        return np.argmax(back, axis=1).astype(np.uint8), (back.max(axis=1) if conf is not None else None)

    # slices side by side on CPU (run_batches); closed on the way out, also when the progress callback raises
    with closing(run_batches(one_slice, iter(range(series.n_slices)), model.device, series.n_slices)) as slices:
        for k, (labels, best) in enumerate(slices):
            out[:, k] = labels
            if conf is not None:
                conf[:, k] = best
            if progress:
                progress((k + 1) / series.n_slices, f"segmented slice {k + 1}/{series.n_slices}")
    return (out, conf) if return_confidence else out


#: a pixel counts as uncertain when the probability of its class is below this
UNCERTAIN_BELOW = 0.75
#: per structure, the largest share of uncertain pixels among the SAX model's 10 validation volumes
#: (20 ED/ES stacks of patients 004, 014, 034, 038, 057, 059, 068, 069, 088, 093; none of the test split)
#: whose 3-D Dice met the issue-17 targets (RV 0.88, myocardium 0.87, LV 0.93), rounded up: a
#: segmentation less confident than that is flagged ``<structure>_segmentation_uncertain``
UNCERTAIN_SHARE_LIMIT = {RV: 0.13, MYO: 0.18, LV: 0.11}


def uncertain_share(labels: np.ndarray, confidence: np.ndarray, value: int) -> float:
    """Share of the pixels labelled ``value`` whose class probability is below :data:`UNCERTAIN_BELOW`
    (``labels`` and ``confidence`` of one volume ``[k, j, i]``); NaN when the structure is absent."""
    mask = np.asarray(labels) == value
    if not mask.any():
        return float("nan")
    return float((np.asarray(confidence, np.float32)[mask] < UNCERTAIN_BELOW).mean())


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Largest 3D connected component (6-connectivity in ``[k, j, i]``) of a boolean mask; empty stays empty."""
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = ndimage.sum_labels(mask, lab, index=np.arange(1, n + 1))
    return lab == (1 + int(np.argmax(sizes)))


def clean_labels(labels: np.ndarray) -> np.ndarray:
    """Largest-connected-component clean-up of one volume ``[k, j, i]`` (values 0-3).

    The LV (cavity + myocardium together) and the RV cavity each keep their largest 3D
    component; removed voxels become background. Returns a new uint8 array.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise InvalidImageError(f"clean_labels expects one volume [k, j, i], got shape {labels.shape}")
    out = labels.astype(np.uint8).copy()
    lv_keep = largest_component((labels == MYO) | (labels == LV))
    out[((labels == MYO) | (labels == LV)) & ~lv_keep] = 0
    rv_keep = largest_component(labels == RV)
    out[(labels == RV) & ~rv_keep] = 0
    return out


def enclosed_fraction(cavity: np.ndarray, myocardium: np.ndarray) -> float:
    """Share of the boundary pixels of a 2-D ``cavity`` mask ``[j, i]`` that touch ``myocardium``
    (8-neighbourhood); NaN for an empty cavity."""
    cav = np.asarray(cavity, bool)
    if not cav.any():
        return float("nan")
    edge = cav & ~ndimage.binary_erosion(cav, border_value=0)
    near = ndimage.binary_dilation(np.asarray(myocardium, bool), structure=np.ones((3, 3), bool))
    return float((edge & near).sum()) / float(edge.sum())


def drop_unenclosed_cavity(labels: np.ndarray, min_enclosed: float = 0.5) -> np.ndarray:
    """Basal-slice rule on one volume ``[k, j, i]``: on a slice where less than ``min_enclosed`` of
    the LV cavity's boundary touches LV myocardium (the cavity opens into the atrium or outflow
    tract; SCMR / ACDC convention: a basal slice counts when the blood pool is at least half
    surrounded by myocardium), the LV cavity label becomes background. Returns a new array."""
    out = np.asarray(labels).astype(np.uint8).copy()
    for k in range(out.shape[0]):
        f = enclosed_fraction(out[k] == LV, out[k] == MYO)
        if math.isfinite(f) and f < min_enclosed:
            out[k][out[k] == LV] = 0
    return out
