"""Which SAX landmarks a slice has: presence from the heatmap peaks, with the RV insertions decided as a pair.

Xue et al. (Radiology: AI 2021) report a landmark as present when its heatmap peak reaches a threshold, one
landmark at a time. The two RV insertions are, however, the two ends of one arc (where the RV cavity meets the LV
myocardium, :mod:`.labels`): a slice has both or neither. Deciding them one at a time gives slices with one
insertion and not the other, which are always wrong (slice detection counts all landmarks of the slice, none extra).
From v1.4 the card may hold a pair threshold (``thresholds.found_pair``) on the mean of the two peaks; both
insertions are then found, or neither. C-LV keeps its own threshold.

Measured on the v1.4.0 choice and calibration patients (10 ACDC patients, 190 slices, one at a time vs pair):
slice detection 84.2% -> 90.0%; the rule was chosen there, the threshold is fitted on the calibration patients
only (:func:`calibrate_pair_threshold`).
"""

from __future__ import annotations

import numpy as np

#: the landmarks decided together (both or neither)
PAIR = ("A-RVI", "I-RVI")

#: smallest LV cavity (mm^2, the segmentation head's on the canvas) on which C-LV is reported, from v1.5: a cavity
#: about 5 mm across. The derived-label rule has C-LV only where the expert mask shows an LV cavity (:mod:`.labels`);
#: the same rule on the predicted segmentation keeps C-LV off slices above the base and below the apex where the
#: heatmap still peaks (M&Ms-2 001: 7 of its 8 slices without LV had a C-LV; with this rule 1).
MIN_LV_AREA_MM2 = 20.0


def youden_threshold(score: np.ndarray, present: np.ndarray, min_detection: float = 0.95,
                     grid: np.ndarray | None = None) -> float:
    """Presence threshold on ``score [n]`` for reference presence ``present [n]`` (bool).

    Among thresholds that keep the detection rate (found / present) at or above ``min_detection``, the one with the
    best Youden index (TPR + TNR - 1), the middle one where several tie; the threshold with the highest detection rate
    when none keeps it (default grid 0.05-0.8 in 31 steps, as the per-landmark thresholds since v1.4).
    """
    score, present = np.asarray(score, float), np.asarray(present, bool)
    grid = np.linspace(0.05, 0.8, 31) if grid is None else np.asarray(grid, float)
    tpr = np.array([(score[present] >= t).mean() if present.any() else 0.0 for t in grid])
    tnr = np.array([(score[~present] < t).mean() if (~present).any() else 0.0 for t in grid])
    ok = tpr >= min_detection
    if not ok.any():
        return float(grid[int(np.argmax(tpr))])
    youden = np.where(ok, tpr + tnr - 1.0, -np.inf)
    best = np.flatnonzero(youden >= youden.max() - 1e-12)
    # ties (a plateau between the scores of the calibration slices): the middle of the plateau, the threshold
    # farthest from the slices on either side, not its lowest end
    return float(grid[best[len(best) // 2]])


def pair_score(peak: np.ndarray, names: tuple[str, ...] | list[str]) -> np.ndarray:
    """Mean heatmap peak of A-RVI and I-RVI, ``[n]``, from ``peak [n, L]`` in the order of ``names``."""
    a, i = (list(names).index(n) for n in PAIR)
    peak = np.asarray(peak, float)
    return (peak[:, a] + peak[:, i]) / 2.0


#: largest in-plane distance (mm) from a C-LV to the C-LV of the nearest neighbouring slice (and to the stack's
#: median C-LV), from issue 16's fourth pass (card ``thresholds.max_clv_stack_jump_mm``; the rule:
#: :func:`CardiacLandmarksLib.sax.pipeline.drop_stray_clv`): beyond it the point is not the centre of the same
#: ventricle (an LV about 50 mm across) but a stray peak, e.g. on a vessel above the base (ACDC patient001 slice 0).
#: Chosen on 43 non-test ACDC patients (choice, calibration and 33 training patients; 86 stacks): C-LVs the
#: reference confirms moved at most 29.9 mm from their neighbour (a stack with breath-hold misregistration); 35 mm
#: drops 9 of the 24 C-LVs where the reference has none, 1 gross error (36.6 mm) and no C-LV within 10 mm of the
#: reference.
MAX_CLV_STACK_JUMP_MM = 35.0


#: an RV-insertion pair called absent on a slice with an LV centre is a *doubtful absence* when its pair score
#: (:func:`pair_score`) reaches this share of the card's pair threshold (issue 16, thirty-fourth pass). Chosen on
#: non-test ACDC patients (the 5 calibration patients and the first 33 training patients in id order, ED and ES, 696
#: slices, sax_unet v1.7.0): the largest share of 0.5-0.9 that gives a doubt to at least 75% of the pairs the
#: network missed there (7 of 9), doubting 25 of the 131 pairs that are truly absent (the 75% was set after seeing
#: these counts). It moves no point and changes no presence, flag or value: it tells the reader which of the
#: slices without insertions to look at (sax_unet card, 'Doubtful absences').
DOUBTFUL_PAIR_SHARE = 0.7


def absence_doubt(score: float, pair_t: float, share: float = DOUBTFUL_PAIR_SHARE) -> str:
    """Why an RV-insertion pair called absent should be checked, in words, or ``""`` when the call is clear.

    Args:
        score: the slice's pair score (:func:`pair_score`, mean heatmap peak of A-RVI and I-RVI, 0-1).
        pair_t: the pair threshold the call was made with (card ``thresholds.found_pair``).
        share: :data:`DOUBTFUL_PAIR_SHARE`.
    """
    if not (np.isfinite(score) and pair_t and score >= share * pair_t):
        return ""
    return (f"nearly found: the network's evidence for the RV insertions ({score:.2f}) is close to the presence "
            f"threshold ({pair_t:.2f}); check whether this slice has them")


#: a C-LV called absent is a doubtful absence when its heatmap peak reaches :data:`DOUBTFUL_PAIR_SHARE` of the
#: card's C-LV threshold and the model's segmentation draws an LV cavity of at least this area on the slice (mm^2,
#: a cavity about 25 mm across). Chosen on non-test cases (issue 16, thirty-fourth pass): 80 non-test EMIDEC LGE
#: cases (sax_unet_lge, nominal 1.5 mm pixels, 562 slices) and the 38 non-test ACDC patients of the pair rule
#: (sax_unet, 696 slices): of 20 / 200 / 500 mm^2, the one marking fewest true absences (ACDC: 2 of 25) while
#: marking at least 75% of the missed C-LVs (59 of 64; EMIDEC's C-LV peaks mostly fall just short of the threshold
#: on slices whose cavity the segmentation draws whole). The 75% was set after seeing the counts.
DOUBTFUL_CLV_AREA_MM2 = 500.0


def clv_absence_doubt(peak: float, clv_t: float, lv_area_mm2: float, share: float = DOUBTFUL_PAIR_SHARE,
                      min_area_mm2: float = DOUBTFUL_CLV_AREA_MM2) -> str:
    """Why a C-LV called absent should be checked, in words, or ``""`` when the call is clear.

    Args:
        peak: the C-LV heatmap peak probability (0-1) on the slice.
        clv_t: the card's C-LV presence threshold (``thresholds.found["C-LV"]``).
        lv_area_mm2: the LV cavity area (mm^2) of the model's segmentation on the slice (NaN without a head).
    """
    if not (np.isfinite(peak) and np.isfinite(lv_area_mm2) and clv_t and peak >= share * clv_t
            and lv_area_mm2 >= min_area_mm2):
        return ""
    cavity = f"its segmentation shows an LV cavity of {lv_area_mm2:.0f} mm2; check whether this slice has it"
    if peak >= clv_t:  # found, with a cavity of that size: only the stray C-LV rule (stack) leaves such a C-LV out
        return (f"left out: the network found the LV centre here (evidence {peak:.2f}, presence threshold "
                f"{clv_t:.2f}), far from those of the slices beside it, and {cavity}")
    return f"nearly found: the network's evidence for the LV centre is {peak:.2f} (presence threshold {clv_t:.2f}) and {cavity}"


def doubt_kinds(doubts) -> str:
    """The kinds of doubtful absence among ``doubts`` (texts of :func:`absence_doubt` and :func:`clv_absence_doubt`)
    in words for a summary line: ``"nearly found"``, ``"left out"`` or ``"nearly found or left out"``."""
    kinds = {d.split(":", 1)[0] for d in doubts if d}
    return " or ".join(k for k in ("nearly found", "left out") if k in kinds) or "nearly found"


def card_max_clv_jump(card: dict) -> float | None:
    """The card's ``thresholds.max_clv_stack_jump_mm`` (None: no stray C-LV rule, as before issue 16's fourth pass)."""
    value = card.get("thresholds", {}).get("max_clv_stack_jump_mm")
    return None if value is None else float(value)


def card_min_lv_area(card: dict) -> float | None:
    """The card's ``thresholds.min_lv_area_mm2`` (None: C-LV from the heatmap alone, as before v1.5.0)."""
    value = card.get("thresholds", {}).get("min_lv_area_mm2")
    return None if value is None else float(value)


def card_pair_threshold(card: dict) -> float | None:
    """The card's ``thresholds.found_pair`` (None: the model decides each landmark alone, as before v1.4.1)."""
    value = card.get("thresholds", {}).get("found_pair")
    return None if value is None else float(value)


def decide_presence(peak: np.ndarray, names: tuple[str, ...] | list[str], found_t: np.ndarray | list[float],
                    pair_t: float | None = None, lv_area_mm2: np.ndarray | None = None,
                    min_lv_area_mm2: float | None = None) -> np.ndarray:
    """Which landmarks are present, ``[n, L]`` bool.

    Args:
        peak: heatmap peak probabilities ``[n, L]`` (:func:`CardiacLandmarksLib.models.decoding.decode_heatmaps`).
        names: landmark order of ``peak``.
        found_t: per-landmark thresholds ``[L]`` (each landmark alone).
        pair_t: threshold on :func:`pair_score`; when given (and ``names`` holds both RV insertions) A-RVI and
            I-RVI are found together where the pair score reaches it, and not at all elsewhere.
        lv_area_mm2: LV cavity area ``[n]`` (mm^2) of the model's segmentation, with ``min_lv_area_mm2``: C-LV only
            where the cavity is at least that large.

    Where ``names`` holds C-LV, an RV insertion is only reported with it (the insertions are the ends of the RV
    contact arc seen from the LV centre, :mod:`.labels`: no LV, no insertion).
    """
    peak = np.asarray(peak, float)
    names = list(names)
    found = peak >= np.broadcast_to(np.asarray(found_t, float), (peak.shape[1],))
    if not len(peak):
        return found
    if pair_t is not None and all(n in names for n in PAIR):
        both = pair_score(peak, names) >= pair_t
        for n in PAIR:
            found[:, names.index(n)] = both
    if "C-LV" in names:
        c = names.index("C-LV")
        if lv_area_mm2 is not None and min_lv_area_mm2 is not None:
            found[:, c] &= np.asarray(lv_area_mm2, float) >= min_lv_area_mm2
        for n in PAIR:
            if n in names:
                found[:, names.index(n)] &= found[:, c]
    return found


def calibrate_pair_threshold(peak: np.ndarray, present: np.ndarray, known: np.ndarray,
                             names: tuple[str, ...] | list[str], min_detection: float = 0.95) -> float | None:
    """Pair threshold (:func:`youden_threshold` on :func:`pair_score`) from calibration samples.

    ``present`` / ``known``: ``[n, L]`` reference presence and whether the labels tell it (sets without an RV label
    do not count). Returns None when no sample has both insertions labelled.
    """
    a, i = (list(names).index(n) for n in PAIR)
    known = np.asarray(known, bool)
    k = known[:, a] & known[:, i]
    if not k.any():
        return None
    present = np.asarray(present, bool)
    both = present[k, a] & present[k, i]
    return youden_threshold(pair_score(np.asarray(peak)[k], names), both, min_detection)
