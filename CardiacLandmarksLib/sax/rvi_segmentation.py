"""RV insertion points and LV centre from a predicted SAX segmentation.

Xue et al., "Automated inline analysis of myocardial perfusion MRI with deep learning",
Radiology: AI 2020, place the RV insertion points on the segmentation: the two ends of the arc
where the RV cavity meets the LV myocardium, seen from the LV centre. The SAX landmark model has
a segmentation head (RV cavity, LV myocardium, LV cavity) trained on the same expert masks the
landmark labels are derived from (:mod:`.labels`), so applying the same rule to its output gives a
second, rule-consistent estimate of A-RVI / I-RVI / C-LV next to the heatmap peaks of Xue et al. 2021.

Coordinates are canvas pixels ``(x, y)`` = (column, row) of :mod:`.preprocessing`'s canvas. A SAX canvas has
the patient's head up where the series has orientation (``make_grid(up="superior")``, RV on the viewer's left)
and the stored display otherwise (ACDC, EMIDEC), so the display naming rule of
:func:`.labels.display_anterior_end` names the ends: the A-RVI is the end toward the top, nearer the head.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage

from CardiacLandmarksLib.sax.labels import derive_sax_landmarks

#: canvas class values of the segmentation head (see ``training.sax_dataset.SEG_CLASSES``)
SEG_RV, SEG_MYO, SEG_LV = 1, 2, 3


def landmarks_from_segmentation(seg_probs: np.ndarray, names: tuple[str, ...] = ("A-RVI", "I-RVI", "C-LV")) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks by the derived-label rule applied to the arg-max of segmentation probabilities.

    Args:
        seg_probs: ``[n, 4, H, W]`` softmax over (background, RV cavity, LV myocardium, LV cavity).
        names: landmark order of the output.

    Returns:
        ``(xy [n, L, 2] canvas (x, y) px, NaN where the rule finds none; present [n, L] bool)``.

    Raises:
        ValueError: ``seg_probs`` is not ``[n, 4, H, W]``.
    """
    seg_probs = np.asarray(seg_probs)
    if seg_probs.ndim != 4 or seg_probs.shape[1] != 4:
        raise ValueError(f"landmarks_from_segmentation: [n, 4, H, W] probabilities expected, got shape {seg_probs.shape}")
    return landmarks_from_labels(seg_probs.argmax(1), names)


def landmarks_from_labels(labels: np.ndarray, names: tuple[str, ...] = ("A-RVI", "I-RVI", "C-LV")
                          ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`landmarks_from_segmentation` on arg-max class labels ``[n, H, W]`` (0 background, 1 RV cavity,
    2 LV myocardium, 3 LV cavity) already taken."""
    xy = np.full((len(labels), len(names), 2), np.nan, np.float32)
    for n, lab in enumerate(labels):
        rows, cols = np.flatnonzero(lab.any(1)), np.flatnonzero(lab.any(0))
        if len(rows) == 0:
            continue
        # work on the labelled box (+ a 2-pixel margin for the contact dilation): ~10x faster on a canvas
        r0, c0 = max(rows[0] - 2, 0), max(cols[0] - 2, 0)
        box = lab[r0 : rows[-1] + 3, c0 : cols[-1] + 3]
        lm = derive_sax_landmarks(clean_segmentation(box), rv=SEG_RV, myo=SEG_MYO, lv=SEG_LV)
        for c, name in enumerate(names):
            if lm.get(name) is not None:
                xy[n, c] = lm[name] + np.array([c0, r0], float)
    return xy, np.isfinite(xy[..., 0])


def clean_segmentation(labels: np.ndarray) -> np.ndarray:
    """Keep the largest connected component of each class of a ``[H, W]`` label image (0 elsewhere).

    A stray RV-labelled blob touching the myocardium elsewhere would otherwise stretch the
    contact arc and move both insertion points; keeping the largest component per class is the
    usual clean-up of a network segmentation (as in Xue et al. 2020).
    """
    out = np.zeros_like(labels)
    for value in (SEG_RV, SEG_MYO, SEG_LV):
        comp, n = ndimage.label(labels == value)
        if n:
            sizes = np.bincount(comp.ravel())[1:]
            out[comp == 1 + int(np.argmax(sizes))] = value
    return out


def fuse_positions(heat_xy: np.ndarray, seg_xy: np.ndarray, weight: np.ndarray | float) -> np.ndarray:
    """Weighted mean of heatmap and segmentation positions, ``[n, L, 2]``.

    ``weight`` (scalar or per landmark ``[L]``) is the segmentation estimate's share; where the
    segmentation gives no point (NaN) the heatmap position is kept unchanged.
    """
    heat_xy = np.asarray(heat_xy, np.float32)
    seg_xy = np.asarray(seg_xy, np.float32)
    w = np.broadcast_to(np.asarray(weight, np.float32), (heat_xy.shape[1],))[None, :, None]
    fused = (1 - w) * heat_xy + w * seg_xy
    return np.where(np.isfinite(seg_xy), fused, heat_xy).astype(np.float32)


def fusion_shares(card: dict) -> np.ndarray | None:
    """Per-landmark share ``[L]`` of the segmentation-derived position (card ``segmentation_fusion``), or None."""
    fusion = card.get("segmentation_fusion")
    if not fusion or not card.get("architecture", {}).get("segmentation_classes"):
        return None
    return np.array([float(fusion.get(n, 0.0)) for n in card["landmarks"]], np.float32)


def lv_cavity_area_mm2(seg: np.ndarray, pixel_mm: float) -> np.ndarray:
    """LV cavity area ``[n]`` (mm^2) on a canvas of ``pixel_mm`` mm pixels, from segmentation probabilities
    ``[n, 4, H, W]`` (their arg-max) or arg-max labels ``[n, H, W]``."""
    seg = np.asarray(seg)
    labels = seg.argmax(1) if seg.ndim == 4 else seg
    return (labels == SEG_LV).sum(axis=(1, 2)) * float(pixel_mm) ** 2


class Located(NamedTuple):
    """What :func:`locate_all` returns (arrays over ``n`` images and ``L`` landmarks)."""

    #: ``[n, L, 2]`` canvas (x, y) px
    xy: np.ndarray
    #: ``[n, L]`` heatmap peak probability in [0, 1]
    peak: np.ndarray
    #: ``[n]`` LV cavity area (mm^2) of the segmentation head, or None (no head, or the card does not ask for it)
    lv_area_mm2: np.ndarray | None
    #: ``[n, L]`` canvas mm: the larger of two disagreements, mirror TTA (the heatmap peak on the image vs on its
    #: mirror image) and heads (the heatmap peak vs the derived-label rule on the segmentation; infinite where the
    #: segmentation gives no point, 0 without a segmentation head); 0 where neither is available
    disagreement_mm: np.ndarray


def locate_all(model, images: np.ndarray, tta: bool = True) -> Located:
    """SAX landmark positions, peak probabilities, the segmentation's LV cavity area and the disagreement of the
    network's own estimates, for canvas images.

    Positions are the heatmap peaks (:func:`CardiacLandmarksLib.models.decoding.decode_heatmaps`, Xue et al.
    2021); with a segmentation head and a card ``segmentation_fusion`` share per landmark, they are mixed with
    the derived-label rule applied to the segmentation (Xue et al. 2020, :func:`landmarks_from_segmentation`).
    Presence and confidence stay the heatmap's peak (see :mod:`.presence` for the rule that also uses the area).
    The disagreement (:attr:`Located.disagreement_mm`) gates the high-confidence flag
    (:func:`CardiacLandmarksLib.confidence.phdnet.consistency_gate`).

    Args:
        model: a :class:`CardiacLandmarksLib.models.loader.LoadedModel` (``predict_maps``, ``card``).
        images: canvas images ``[n, H, W]`` (or ``[n, C, H, W]`` with stack context) float32.
        tta: mirror test-time augmentation.

    Returns:
        :class:`Located` ``(xy, peak, lv_area_mm2, disagreement_mm)``; the area is computed when the card asks for
        it (``thresholds.min_lv_area_mm2``) and the model has a segmentation head.
    """
    from CardiacLandmarksLib.models.decoding import decode_heatmaps

    shares = fusion_shares(model.card)
    fuse = shares is not None and bool(np.any(shares > 0))
    want_area = model.card.get("thresholds", {}).get("min_lv_area_mm2") is not None
    heat, seg, mirror_px = model.predict_maps(images, tta, segmentation=True, mirror_disagreement=True)
    xy, peak = decode_heatmaps(heat)
    mm = float(model.card.get("input", {}).get("canvas_mm", 1.5))
    heads_mm = np.zeros(peak.shape, np.float32)
    labels = seg.argmax(1) if seg is not None else None  # once, for the fused positions, disagreement and area
    if labels is not None:
        seg_xy, _ = landmarks_from_labels(labels, tuple(model.card["landmarks"]))
        heads_mm = np.nan_to_num(np.linalg.norm(xy - seg_xy, axis=-1) * mm, nan=np.inf).astype(np.float32)
        if fuse:
            xy = fuse_positions(xy, seg_xy, shares)
    area = None
    if want_area and labels is not None:
        area = lv_cavity_area_mm2(labels, mm)
    return Located(xy, peak, area, np.maximum(heads_mm, mirror_px * mm).astype(np.float32))


def locate(model, images: np.ndarray, tta: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """:func:`locate_all` without the area: ``(xy [n, L, 2] canvas (x, y) px, peak [n, L] in [0, 1])``."""
    located = locate_all(model, images, tta)
    return located.xy, located.peak
