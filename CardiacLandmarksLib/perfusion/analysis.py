"""Perfusion analysis of one SAX slice: motion-aligned curves, RV insertion, AHA sectors, indices.

Semi-quantitative indices from signal-intensity (SI) curves, per pixel (vectorised), summarised
per AHA segment as mean +- sd over the segment's pixels:

* **peak enhancement** (PE): maximum of the (3-frame smoothed) curve during the first pass
  minus the pre-contrast baseline, SI units;
* **upslope**: maximum slope of the smoothed curve between the bolus foot and the curve's
  first-pass peak (central differences), SI per second (or per beat when the series has no
  timing); **upslope index** = myocardial upslope / LV blood-pool upslope (unitless), the
  normalisation of Al-Saadi et al., Circulation 2000;101:1379-1383;
* **time to peak** (TTP): time from the LV blood-pool foot to the pixel's first-pass peak;
* **perfusion reserve index** (MPRI) = stress upslope index / rest upslope index per segment
  (:func:`reserve_index`).

Timing: the LV blood-pool curve gives foot and peak (:func:`CardiacLandmarksLib.perfusion.fermi.bolus_foot_peak`);
the first-pass window ends at ``foot + 2.5 (peak - foot)`` frames. Baseline = mean of the
frames before the foot (at least 2). Time base: DICOM trigger times (s) when they increase
frame by frame by more than 0.2 s, otherwise frame index (heartbeats: mlperf NIfTI has no timing).

RV insertion points (:func:`estimate_rv_insertions`), when neither the user nor the SAX
landmark model gives them: the RV blood pool is found as the enhancing region next to the LV on
the frame of peak RV enhancement (the RV enhances before the LV), and
:func:`CardiacLandmarksLib.sax.labels.derive_sax_landmarks` takes the ends of its contact arc with
the myocardium (Xue et al., Radiology: AI 2020 use the same definition on their RV mask).

Arrays: frames ``[t, j, i]``, masks ``[j, i]`` (reference frame) or ``[t, j, i]``; points ``(i, j)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from CardiacLandmarksLib.core.errors import NoContrastPassageError, PerfusionInputError
from CardiacLandmarksLib.perfusion import aha
from CardiacLandmarksLib.perfusion.fermi import bolus_foot_peak

logger = logging.getLogger(__name__)

MYO, BP = 1, 2

INDEX_UNITS = {
    "peak_enhancement": "SI",
    "upslope": "SI/{t}",
    "upslope_index": "ratio",
    "time_to_peak": "{t}",
    "mbf": "ml/min/g",
}

#: each metric and stress/rest reserve of a report (its keys) in a reader's words, for the lines a reader reads:
#: the study's key values, the ``perfusion`` command's and a console's global lines (:func:`value_words`)
METRIC_WORDS = {"mbf": "MBF", "upslope_index": "upslope index", "peak_enhancement": "peak enhancement",
                "upslope": "upslope", "time_to_peak": "time to peak", "mpr": "MPR", "mpri": "MPRI"}
#: the words for the condition of series whose names say neither stress nor rest (the report pools them as
#: ``"perfusion"``)
UNSTATED_CONDITION = "(stress/rest?)"


def value_words(condition: str, metric: str) -> str:
    """A report value's condition and metric in a reader's words: ``("stress", "upslope_index")`` ->
    ``"stress upslope index"``, ``("perfusion", "mbf")`` -> ``"(stress/rest?) MBF"``, ``("reserve", "mpri")`` ->
    ``"reserve MPRI"``."""
    return f"{UNSTATED_CONDITION if condition == 'perfusion' else condition} {METRIC_WORDS.get(metric, metric)}"


# --------------------------------------------------------------------------- time / alignment


def time_axis(trigger_times_ms: np.ndarray | None, n_frames: int) -> tuple[np.ndarray, str]:
    """``(times, unit)``: seconds from the first frame when trigger times increase by > 0.2 s per
    frame (a perfusion series acquired once per heartbeat), otherwise frame indices in ``"beat"``."""
    if trigger_times_ms is not None:
        tt = np.asarray(trigger_times_ms, float).ravel()
        if tt.size == n_frames and np.all(np.isfinite(tt)) and np.all(np.diff(tt) > 200.0):
            return (tt - tt[0]) / 1000.0, "s"
    return np.arange(n_frames, dtype=float), "beat"


def align_frames(frames: np.ndarray, offsets_ij: np.ndarray) -> np.ndarray:
    """Undo per-frame translations: ``out[t](p) = frames[t](p + offset[t])`` (linear interpolation).

    After alignment the reference-frame masks index every frame.
    """
    f = np.asarray(frames, np.float32)
    out = np.empty_like(f)
    for t in range(len(f)):
        di, dj = offsets_ij[t]
        if abs(di) < 1e-3 and abs(dj) < 1e-3:
            out[t] = f[t]
        else:
            out[t] = ndimage.shift(f[t], (-dj, -di), order=1, mode="nearest")
    return out


# --------------------------------------------------------------------------- semi-quantitative


@dataclass
class BloodPoolTiming:
    """LV blood-pool first pass: foot, peak and end of the first-pass window (frame indices)."""

    foot: int
    peak: int
    end: int
    baseline_frames: int


def blood_pool_timing(bp_curve: np.ndarray) -> BloodPoolTiming:
    """First-pass timing from the LV blood-pool mean curve.

    The curve is median-filtered over 3 frames (single-frame spikes from mis-triggered or
    motion-corrupted frames are common). Foot: :func:`fermi.bolus_foot_peak`; peak: the first
    local maximum after the foot that reaches 80% of the largest value after the foot (the
    first pass, not a later spike, recirculation or the slow rise of a saturated blood
    pool); end of the first-pass window:
    ``foot + 2.5 (peak - foot)``.

    Raises:
        PerfusionInputError: no contrast passage in the blood pool.
    """
    c = ndimage.median_filter(np.asarray(bp_curve, float), size=3, mode="nearest")
    foot, _ = bolus_foot_peak(c, frac=0.1)
    after = c[foot:]
    reach = np.nonzero(after >= 0.8 * after.max())[0][0] + foot
    peak = int(reach)
    while peak + 1 < len(c) and c[peak + 1] > c[peak]:
        peak += 1
    end = int(min(len(c), round(foot + 2.5 * max(peak - foot, 2)) + 1))
    return BloodPoolTiming(foot=foot, peak=peak, end=max(end, min(peak + 3, len(c))), baseline_frames=max(foot, 2))


#: a first pass raises the LV blood-pool signal to at least this multiple of its baseline
#: (measured: 2.6-28x on the 44 ML-perfusion series and the GE DICOM series; a 4CH cine
#: segmented by the same model: 1.11x)
MIN_BLOOD_POOL_ENHANCEMENT = 1.5


def check_contrast_passage(bp_curve: np.ndarray) -> float:
    """Refuse a series whose LV blood pool shows no first pass (e.g. a cine given as perfusion).

    Rule: median-filtered (3 frames) blood-pool curve; its maximum over the median of the first
    three frames must reach :data:`MIN_BLOOD_POOL_ENHANCEMENT`. Not applied when the baseline is
    not positive (series in contrast concentration start at about 0).

    Returns:
        the enhancement ratio (inf when not applied).

    Raises:
        NoContrastPassageError.
    """
    c = ndimage.median_filter(np.asarray(bp_curve, float), size=3, mode="nearest")
    base = float(np.median(c[:3]))
    if base <= 0:
        return float("inf")
    ratio = float(c.max() / base)
    if ratio < MIN_BLOOD_POOL_ENHANCEMENT:
        raise NoContrastPassageError(
            f"no contrast passage: the LV blood-pool signal peaks at {ratio:.2f}x its baseline (a first pass "
            f"gives at least {MIN_BLOOD_POOL_ENHANCEMENT:g}x); is this a first-pass perfusion series?")
    return ratio


def _smooth(curves: np.ndarray) -> np.ndarray:
    return ndimage.uniform_filter1d(np.asarray(curves, float), size=3, axis=-1, mode="nearest")


def curve_indices(curves: np.ndarray, times: np.ndarray, timing: BloodPoolTiming) -> dict[str, np.ndarray]:
    """Peak enhancement, upslope and time to peak of curves ``(n, T)`` (vectorised).

    Returns:
        dict of ``(n,)`` arrays ``peak_enhancement`` (SI), ``upslope`` (SI per time unit),
        ``time_to_peak`` (time unit, from the blood-pool foot), ``baseline`` (SI).
    """
    c = np.atleast_2d(np.asarray(curves, float))
    t = np.asarray(times, float)
    base = c[:, : timing.baseline_frames].mean(axis=1)
    s = _smooth(c) - base[:, None]
    w0, w1 = timing.foot, timing.end
    win = s[:, w0:w1]
    pk = np.argmax(win, axis=1)
    pe = win[np.arange(len(c)), pk]
    # central-difference slopes on the whole curve, restricted to [foot, own peak]
    slope = np.gradient(s, t, axis=1)[:, w0:w1]
    k = np.arange(w1 - w0)[None, :]
    masked = np.where(k <= pk[:, None], slope, -np.inf)
    up = np.max(masked, axis=1)
    up = np.where(np.isfinite(up), up, np.nan)
    ttp = t[w0 + pk] - t[w0]
    return {"peak_enhancement": pe, "upslope": up, "time_to_peak": ttp, "baseline": base}


def semi_quantitative_maps(aligned: np.ndarray, mask: np.ndarray, times: np.ndarray) -> tuple[dict, dict, BloodPoolTiming]:
    """Pixel maps of the semi-quantitative indices on the myocardium of a reference mask.

    Args:
        aligned: ``[t, j, i]`` motion-aligned SI frames (:func:`align_frames`).
        mask: ``[j, i]`` reference labels (1 myocardium, 2 LV blood pool).
        times: ``(t,)`` time of each frame (s or beats).

    Returns:
        ``(maps, blood_pool, timing)``: ``maps[name]`` is ``[j, i]`` float32 (NaN off the
        myocardium) for ``peak_enhancement``, ``upslope``, ``upslope_index``, ``time_to_peak``;
        ``blood_pool`` holds the blood-pool curve and its indices.

    Raises:
        PerfusionInputError: empty myocardium or blood pool, no contrast passage.
    """
    m = np.asarray(mask)
    myo, bp = m == MYO, m == BP
    if myo.sum() < 10 or bp.sum() < 5:
        raise PerfusionInputError("myocardium or LV blood pool missing from the segmentation")
    bp_curve = aligned[:, bp].mean(axis=1)
    check_contrast_passage(bp_curve)
    timing = blood_pool_timing(bp_curve)
    bp_idx = curve_indices(bp_curve[None], times, timing)
    px = curve_indices(aligned[:, myo].T, times, timing)
    bp_up = float(bp_idx["upslope"][0])
    if not bp_up > 0:
        raise PerfusionInputError("LV blood-pool upslope is not positive; cannot normalise")
    px["upslope_index"] = px["upslope"] / bp_up
    maps = {}
    for name in ("peak_enhancement", "upslope", "upslope_index", "time_to_peak"):
        mp = np.full(m.shape, np.nan, np.float32)
        mp[myo] = px[name]
        maps[name] = mp
    blood = {"curve": bp_curve, **{k: float(v[0]) for k, v in bp_idx.items()}}
    return maps, blood, timing


def analysis_mask(mask: np.ndarray, min_keep: float = 0.5) -> np.ndarray:
    """Myocardial pixels used for the values: the myocardium without its endocardial rim (the
    pixels touching the LV blood pool, 8-connected), whose signal is mixed with cavity blood of
    ~10x the myocardial contrast (partial volume); the rim is kept when trimming it would leave
    less than ``min_keep`` of the myocardium (thin walls at low resolution)."""
    m = np.asarray(mask)
    myo = m == MYO
    core = myo & ~ndimage.binary_dilation(m == BP, structure=np.ones((3, 3), bool))
    return core if core.sum() >= min_keep * myo.sum() else myo


def segment_stats(value_map: np.ndarray, segments: np.ndarray) -> dict[int, dict]:
    """Mean, sd and pixel count of a map per AHA segment (NaN pixels ignored).

    Args:
        value_map: ``[j, i]`` float.
        segments: ``[j, i]`` int AHA segment numbers (0 = none).

    Returns:
        ``{segment: {"mean", "sd", "n_pixels"}}`` for every segment present.
    """
    v = np.asarray(value_map, float)
    s = np.asarray(segments)
    out = {}
    for seg in np.unique(s[s > 0]):
        vals = v[(s == seg) & np.isfinite(v)]
        out[int(seg)] = {"mean": float(vals.mean()) if vals.size else float("nan"),
                         "sd": float(vals.std(ddof=1)) if vals.size > 1 else float("nan"),
                         "n_pixels": int(vals.size)}
    return out


def reserve_index(stress: float, rest: float) -> float:
    """Stress / rest ratio (perfusion reserve index, or MPR for MBF); NaN when rest is not > 0."""
    return float(stress / rest) if np.isfinite(stress) and np.isfinite(rest) and rest > 0 else float("nan")


# --------------------------------------------------------------------------- RV insertion


@dataclass
class RVEstimate:
    """RV blood pool found from its early enhancement, in the pixel grid of the aligned frames."""

    rv_mask: np.ndarray
    a_rvi_ij: np.ndarray | None
    i_rvi_ij: np.ndarray | None
    peak_frame: int
    notes: list[str] = field(default_factory=list)


def estimate_rv_insertions(aligned: np.ndarray, mask: np.ndarray, spacing_ij: tuple[float, float],
                           baseline_frames: int, superior_dir: np.ndarray | None = None,
                           radius_mm: float = 50.0, rel_threshold: float = 0.5) -> RVEstimate:
    """RV insertion points from the early RV enhancement (fallback when no model/user RVI).

    The RV blood pool enhances before the LV: on the frame of peak enhancement around the LV
    before the LV blood pool peaks (``peak_frame``), candidates are pixels within ``radius_mm``
    of the LV, outside it, whose enhancement (frame minus the mean of the first
    ``baseline_frames`` frames) exceeds ``rel_threshold`` x its 99th percentile there (grown
    by hysteresis down to half that), and whose own curve peaks at least two frames before
    the LV blood pool. The component with the largest
    early enhancement that touches the myocardium is the RV; the two ends of its contact arc
    with the myocardium (seen from C-LV) are the insertions
    (:func:`CardiacLandmarksLib.sax.labels.derive_sax_landmarks`).

    Args:
        aligned: ``[t, j, i]`` motion-aligned frames (:func:`align_frames`).
        mask: ``[j, i]`` reference labels (1 myocardium, 2 LV blood pool).
        spacing_ij: pixel size (mm).
        baseline_frames: pre-contrast frames (before the first arrival anywhere, e.g. the RV).
        superior_dir: in-plane direction ``(di, dj)`` to the patient's head when the orientation is known
            (:meth:`CMRSeries.superior_in_plane`; A-RVI is the insertion further that way), else None
            (then A/I follow the display chirality, :func:`labels.display_anterior_end`).
        radius_mm: search radius around the LV.
        rel_threshold: candidate threshold relative to the 99th percentile of the enhancement.

    Returns:
        :class:`RVEstimate` (points None when no RV contact was found); ``peak_frame`` = frame
        of peak enhancement near the LV before the LV peak (the frame to show the RV).
    """
    from CardiacLandmarksLib.sax.labels import derive_sax_landmarks

    f = np.asarray(aligned, np.float32)
    m = np.asarray(mask)
    lv = m > 0
    if not (m == BP).any() or not (m == MYO).any():
        return RVEstimate(np.zeros_like(lv), None, None, 0, ["no LV in the mask"])
    nb = max(int(baseline_frames), 1)
    enh = f - f[:nb].mean(axis=0)
    bp_curve = enh[:, m == BP].mean(axis=1)
    peak_lv = int(np.argmax(bp_curve))
    if peak_lv <= nb:
        return RVEstimate(np.zeros_like(lv), None, None, 0, ["LV peaks before the baseline ends; no RV timing"])
    jj, ii = np.mgrid[0 : m.shape[0], 0 : m.shape[1]]
    cj, ci = np.nonzero(lv)
    d = np.hypot((ii - ci.mean()) * spacing_ij[0], (jj - cj.mean()) * spacing_ij[1])
    region = (d < radius_mm) & ~lv
    t_peak = np.argmax(enh[: min(len(f), peak_lv + 4)], axis=0)
    rv_frame = nb + int(np.argmax([np.percentile(e[region], 99) if region.any() else 0.0 for e in enh[nb:peak_lv]]))
    early = enh[rv_frame]
    level = float(np.percentile(early[region], 99)) if region.any() else 0.0
    early_peaking = region & (t_peak < peak_lv - 1)
    strong = ndimage.binary_opening(early_peaking & (early > rel_threshold * level))
    weak = early_peaking & (early > 0.5 * rel_threshold * level)
    # hysteresis: weak components that contain a strong pixel
    lab, n = ndimage.label(weak)
    keep = np.unique(lab[strong & (lab > 0)])
    lab = np.where(np.isin(lab, keep), lab, 0)
    lab, n = ndimage.label(ndimage.binary_opening(lab > 0))
    if n == 0:
        return RVEstimate(np.zeros_like(lv), None, None, rv_frame, ["no early-enhancing RV blood pool found"])
    near_myo = ndimage.binary_dilation(m == MYO, iterations=3)
    best, best_score = 0, 0.0
    for c in range(1, n + 1):
        comp = lab == c
        if (comp & near_myo).sum() < 3:
            continue
        score = float(early[comp].sum())
        if score > best_score:
            best, best_score = c, score
    if best == 0:
        return RVEstimate(np.zeros_like(lv), None, None, rv_frame, ["early-enhancing regions do not touch the LV"])
    rv = ndimage.binary_fill_holes(lab == best)
    # bridge the thin septal gap (partial volume) between RV blood and LV myocardium
    rv_grown = rv | (ndimage.binary_dilation(rv, iterations=2) & ~lv)
    composed = np.zeros(m.shape, np.uint8)
    composed[m == MYO] = 2
    composed[m == BP] = 3
    composed[rv_grown & (composed == 0)] = 1
    lm = derive_sax_landmarks(composed, rv=1, myo=2, lv=3, superior_dir=superior_dir)
    if lm.get("A-RVI") is None or lm.get("I-RVI") is None:
        return RVEstimate(rv, None, None, rv_frame, ["RV contact arc too short for insertion points"])
    return RVEstimate(rv, np.asarray(lm["A-RVI"], float), np.asarray(lm["I-RVI"], float), rv_frame)


#: an RV contact arc narrower than this (enhancement fallback) is not trusted for its ends
MIN_SEPTUM_DEG = 70.0


def nominal_septum(center_ij: np.ndarray, a_rvi_ij: np.ndarray, i_rvi_ij: np.ndarray, seen_from_apex: bool = True,
                   min_deg: float = MIN_SEPTUM_DEG) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """Replace implausible RV insertions by the nominal septum about the contact-arc centre.

    When I-RVI lies less than ``min_deg`` or more than 180 deg from A-RVI in the AHA direction
    (an RV only partly enhanced on the frames used), only the centre of the contact arc is
    trusted: A-RVI and I-RVI are placed 60 deg either side of it (the 120 deg septum that the
    AHA sectors assume), at their original radii.

    Returns:
        ``(a_rvi_ij, i_rvi_ij, span_deg, adjusted)``.
    """
    c = np.asarray(center_ij, float)
    a, i = np.asarray(a_rvi_ij, float), np.asarray(i_rvi_ij, float)
    span = float(aha.ccw_angle_deg(i, c, a, seen_from_apex))
    if min_deg <= span <= 180.0:
        return a, i, span, False
    mid = span / 2.0 if span <= 180.0 else span / 2.0 - 180.0
    new_a = aha.direction_to_point(c, mid - 60.0, float(np.hypot(*(a - c))), a, seen_from_apex)
    new_i = aha.direction_to_point(c, mid + 60.0, float(np.hypot(*(i - c))), a, seen_from_apex)
    return new_a, new_i, span, True


def check_rvi_consistency(center_ij: np.ndarray, a_rvi_ij: np.ndarray, i_rvi_ij: np.ndarray | None,
                          seen_from_apex: bool) -> str | None:
    """Warning text when I-RVI does not lie counter-clockwise (seen from the apex) within
    30-200 degrees of A-RVI, i.e. A/I look swapped or the display mirrored; None when consistent."""
    if i_rvi_ij is None:
        return None
    delta = float(aha.ccw_angle_deg(np.asarray(i_rvi_ij, float), center_ij, a_rvi_ij, seen_from_apex))
    if not 30.0 <= delta <= 200.0:
        return (f"I-RVI lies {delta:.0f} deg from A-RVI in the AHA direction (expected ~60-180): "
                "the RV insertion names may be swapped or the display mirrored; check the sector overlay")
    return None
