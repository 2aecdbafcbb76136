"""Evaluation of the full detection pipeline against landmarks derived from expert masks.

Errors are measured in the input's own voxel grid converted to LPS mm (so resampling to
the canvas and back is part of what is evaluated), per landmark present in the reference:
detection rate (found / present), L2 error of detected points (mm), false detections
on slices where the reference has no landmark, the RVI-angle difference (degrees), slice detection (every
landmark of the slice found and none extra) and the confidence flag of every compared point.
Metrics follow Xue et al., Radiology: AI 2021 (detection rate, slice detection, mean ± sd L2 distance).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from CardiacLandmarksLib.core.landmarks import LANDMARKS_BY_VIEW, LandmarkSet
from CardiacLandmarksLib.datasets.sax import Case, case_landmarks_ijk
from CardiacLandmarksLib.io.load import load_series

logger = logging.getLogger(__name__)
SAX = LANDMARKS_BY_VIEW["sax"]


@dataclass
class CaseResult:
    """Per-case comparison: per landmark arrays of errors (mm) and counts; RVI angle differences (deg)."""

    patient: str
    stem: str
    errors: dict[str, list[float]] = field(default_factory=lambda: {n: [] for n in SAX})
    present: dict[str, int] = field(default_factory=lambda: {n: 0 for n in SAX})
    detected: dict[str, int] = field(default_factory=lambda: {n: 0 for n in SAX})
    false_pos: dict[str, int] = field(default_factory=lambda: {n: 0 for n in SAX})
    absent_ref: dict[str, int] = field(default_factory=lambda: {n: 0 for n in SAX})
    angle_diffs: list[float] = field(default_factory=list)
    confidences: dict[str, list[float]] = field(default_factory=lambda: {n: [] for n in SAX})
    flags: dict[str, list[str]] = field(default_factory=lambda: {n: [] for n in SAX})
    #: flag of each point found where the reference has none (a false positive), per landmark
    extra_flags: dict[str, list[str]] = field(default_factory=lambda: {n: [] for n in SAX})
    #: landmarks the reference has and the detector called absent (missed), and of those how many carry a doubt
    #: (:func:`CardiacLandmarksLib.sax.pipeline.doubt_absences`: the reader is pointed to them); the reference's
    #: absences called absent too, and how many of those carry a doubt (the reader looks for nothing there)
    missed: dict[str, int] = field(default_factory=lambda: {n: 0 for n in SAX})
    missed_doubt: dict[str, int] = field(default_factory=lambda: {n: 0 for n in SAX})
    absent_doubt: dict[str, int] = field(default_factory=lambda: {n: 0 for n in SAX})
    n_slices: int = 0
    slices_detected: int = 0


def rvi_angle_difference(a_ij: np.ndarray, c_ij: np.ndarray, a_ref_ij: np.ndarray, c_ref_ij: np.ndarray,
                         spacing: tuple[float, float]) -> float:
    """Signed difference (deg, in [-180, 180)) of the A-RVI direction about C-LV, detected minus reference.

    Points are in-plane pixel ``(i, j)`` of one image; ``spacing`` ``(column, row)`` mm scales them first.
    """
    d = _rvi_angle(a_ij, c_ij, spacing) - _rvi_angle(a_ref_ij, c_ref_ij, spacing)
    return float((d + 180.0) % 360.0 - 180.0)


def _rvi_angle(a_ij: np.ndarray, c_ij: np.ndarray, spacing: tuple[float, float]) -> float:
    """Angle (deg) of A-RVI about C-LV in the image plane (mm-scaled pixel axes), for differences only."""
    v = (np.asarray(a_ij) - np.asarray(c_ij)) * np.asarray(spacing)
    return float(np.degrees(np.arctan2(v[1], v[0])))


def evaluate_case(case: Case, detect: Callable, phase: int = 0, series=None) -> CaseResult:
    """Run ``detect(series) -> LandmarkSet`` on a labelled case and compare with the derived reference.

    ``series``: the case's image already loaded (e.g. with a nominal spacing set by the caller); default: loaded
    from ``case.image``. Errors are in the units of the series' geometry (LPS mm). ``flags[name]`` holds the flag
    (``"high"``/``"low"``) of each point in ``errors[name]``, in the same order, and ``extra_flags[name]`` that of
    each point found where the reference has none (a reader who checks only the low points keeps a high one); a
    slice counts in ``slices_detected`` when exactly the reference's landmarks are found on it (Xue et al. 2021).
    """
    series = series if series is not None else load_series(case.image)
    ref = case_landmarks_ijk(case, series=series)
    pred: LandmarkSet = detect(series)
    res = CaseResult(case.patient, case.image.name.split(".")[0])
    for k, lms in ref.items():
        slice_ok = True
        for name in SAX:
            p = pred.get(name, k, phase)
            r = lms[name]
            found = p is not None and p.found
            slice_ok &= found == (r is not None)
            doubted = p is not None and not found and bool(p.doubt)
            if r is None:
                res.absent_ref[name] += 1
                if found:
                    res.false_pos[name] += 1
                    res.extra_flags[name].append(str(p.flag))
                res.absent_doubt[name] += int(doubted)
                continue
            res.present[name] += 1
            if not found:
                res.missed[name] += 1
                res.missed_doubt[name] += int(doubted)
                continue
            res.detected[name] += 1
            ref_lps = series.ijk_to_lps(np.array([r[0], r[1], k], float))
            res.errors[name].append(float(np.linalg.norm(p.position - ref_lps)))
            res.confidences[name].append(float(p.confidence))
            res.flags[name].append(str(p.flag))
        res.n_slices += 1
        res.slices_detected += int(slice_ok)
        a, c = pred.get("A-RVI", k, phase), pred.get("C-LV", k, phase)
        if lms["A-RVI"] is not None and lms["C-LV"] is not None and a is not None and c is not None and a.found and c.found:
            res.angle_diffs.append(rvi_angle_difference(a.ijk[:2], c.ijk[:2], lms["A-RVI"], lms["C-LV"],
                                                        series.spacing[:2]))
    return res


MIN_CI_PATIENTS = 5  # below this a resampling interval over patients says little: none is given
CI_RESAMPLES = 2000


def patient_bootstrap_ci(results: list[CaseResult], landmarks: tuple[str, ...] = SAX, slices: bool = True,
                         n_resamples: int = CI_RESAMPLES, seed: int = 0) -> dict[str, list[float]]:
    """95% intervals of slice detection and of each landmark's mean L2 error, resampling patients.

    The slices and points of one patient are not independent (one heart, one scanner, ED and ES of one stack), so
    the patients are drawn with replacement and all of a drawn patient's slices and points go with it (a cluster
    bootstrap; percentile interval of ``n_resamples`` draws, :func:`scipy.stats.bootstrap`, fixed ``seed``). Each
    draw pools as the row does: detection = slices detected / slices, mean error = sum of errors / points.

    Args:
        results: per-case results (:class:`CaseResult`); the cases of a patient (``CaseResult.patient``) are grouped.
        landmarks: landmarks whose mean error gets an interval (units of the errors: mm, px on EMIDEC).
        slices: also give slice detection's interval (rows where the reference can hold every landmark).

    Returns:
        ``{"slice_detection": [lo, hi], "<landmark>": [lo, hi]}``; empty with fewer than :data:`MIN_CI_PATIENTS`
        patients; a landmark with no compared point in some draw is left out rather than given a partial interval.
    """
    from scipy.stats import DegenerateDataWarning, bootstrap

    patients = {p: i for i, p in enumerate(dict.fromkeys(r.patient for r in results))}  # patient -> row
    if len(patients) < MIN_CI_PATIENTS:
        return {}
    keys = (["slice_detection"] if slices else []) + list(landmarks)
    num = np.zeros((len(patients), len(keys)))  # per patient: detected slices | sum of errors
    den = np.zeros((len(patients), len(keys)))  # per patient: slices | points
    for r in results:
        p = patients[r.patient]
        for c, key in enumerate(keys):
            if key == "slice_detection":
                num[p, c] += r.slices_detected
                den[p, c] += r.n_slices
            else:
                num[p, c] += float(np.sum(r.errors[key]))
                den[p, c] += len(r.errors[key])

    out: dict[str, list[float]] = {}
    if not (den.sum(axis=0) > 0).any():  # no slice and no point at all
        return out

    def pooled(idx: np.ndarray) -> np.ndarray:  # [..., drawn patients] -> [..., keys]
        idx = np.asarray(idx, int)
        with np.errstate(invalid="ignore", divide="ignore"):
            return num[idx].sum(axis=-2) / den[idx].sum(axis=-2)

    with warnings.catch_warnings():  # a draw without any point of a landmark: NaN, left out below
        warnings.simplefilter("ignore", DegenerateDataWarning)
        res = bootstrap((np.arange(len(patients)),), lambda idx, axis=-1: pooled(idx).T, vectorized=True,
                        n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed))
    lo, hi = np.atleast_1d(res.confidence_interval.low), np.atleast_1d(res.confidence_interval.high)
    for c, key in enumerate(keys):
        if np.isfinite(lo[c]) and np.isfinite(hi[c]):
            out[key] = [float(lo[c]), float(hi[c])]
    return out


def summarise(results: list[CaseResult]) -> dict:
    """Overall figures per landmark: detection rate, false-positive rate, mean/sd/median error (mm), RVI angle diff;
    ``n_extra`` points found where the reference has none, ``n_extra_low`` of them flagged low and
    ``extra_flagged_low`` their share (NaN without any)."""
    out = {}
    for name in SAX:
        errs = np.concatenate([r.errors[name] for r in results]) if results else np.zeros(0)
        present = sum(r.present[name] for r in results)
        absent = sum(r.absent_ref[name] for r in results)
        out[name] = {
            "n_present": present,
            "detection_rate": sum(r.detected[name] for r in results) / max(1, present),
            "false_positive_rate": sum(r.false_pos[name] for r in results) / max(1, absent),
            "mean_error_mm": float(errs.mean()) if len(errs) else float("nan"),
            "sd_error_mm": float(errs.std()) if len(errs) else float("nan"),
            "median_error_mm": float(np.median(errs)) if len(errs) else float("nan"),
            "p95_error_mm": float(np.percentile(errs, 95)) if len(errs) else float("nan"),
        }
    for name in SAX:
        extra = [f for r in results for f in r.extra_flags[name]]
        low = sum(f != "high" for f in extra)
        out[name].update(n_extra=len(extra), n_extra_low=low,
                         extra_flagged_low=low / len(extra) if extra else float("nan"))
    ang = np.abs(np.concatenate([r.angle_diffs for r in results])) if results else np.zeros(0)
    out["RVI angle"] = {"n": int(len(ang)), "mean_abs_diff_deg": float(ang.mean()) if len(ang) else float("nan"),
                        "sd_abs_diff_deg": float(ang.std()) if len(ang) else float("nan")}
    n_slices = sum(r.n_slices for r in results)
    out["slices"] = {"n": n_slices, "detection_rate": sum(r.slices_detected for r in results) / max(1, n_slices)}
    return out


def format_table(results: list[CaseResult], summary: dict) -> str:
    """Plain-text table: one line per case and an overall block (with the 95% intervals over patients when
    ``summary["ci95"]`` holds them, :func:`patient_bootstrap_ci`)."""
    lines = [f"{'case':<22}" + "".join(f"{n + ' det':>10}{n + ' mm':>16}" for n in SAX) + f"{'RVI dAngle':>12}"]
    for r in results:
        cells = ""
        for n in SAX:
            e = np.asarray(r.errors[n])
            det = f"{r.detected[n]}/{r.present[n]}"
            err = f"{e.mean():.2f}±{e.std():.2f}" if len(e) else "-"
            cells += f"{det:>10}{err:>16}"
        ang = f"{np.mean(np.abs(r.angle_diffs)):.1f}°" if r.angle_diffs else "-"
        lines.append(f"{r.stem:<22}{cells}{ang:>12}")
    lines.append("")
    lines.append("overall:")
    ci = summary.get("ci95") or {}
    for n in SAX:
        s = summary[n]
        lines.append(f"  {n:<6} detection {100 * s['detection_rate']:.1f}% of {s['n_present']}  "
                     f"false detections {100 * s['false_positive_rate']:.1f}%"
                     + (f" ({100 * s['extra_flagged_low']:.0f}% of them flagged low)" if s.get("n_extra") else "")
                     + "  "
                     f"L2 {s['mean_error_mm']:.2f} ± {s['sd_error_mm']:.2f} mm (median {s['median_error_mm']:.2f}, p95 {s['p95_error_mm']:.2f}"
                     + (f"; mean's 95% interval over patients {ci[n][0]:.2f}-{ci[n][1]:.2f}" if n in ci else "") + ")")
    if "slices" in summary:
        lines.append(f"  slice detection (all landmarks of the slice found, none extra) "
                     f"{100 * summary['slices']['detection_rate']:.1f}% of {summary['slices']['n']}"
                     + (f" (95% interval over patients {100 * ci['slice_detection'][0]:.1f}-"
                        f"{100 * ci['slice_detection'][1]:.1f}%)" if "slice_detection" in ci else ""))
    a = summary["RVI angle"]
    lines.append(f"  RVI angle |difference| {a['mean_abs_diff_deg']:.1f} ± {a['sd_abs_diff_deg']:.1f}° (n={a['n']})")
    return "\n".join(lines)
