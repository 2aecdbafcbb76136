"""Does the confidence flag tell a reader which landmarks to check? Table 2 of Schobs et al. (ISBI 2021).

For every labelled set (ACDC validation patients of the models' split, M&Ms-2 SAX, MS-CMRSeg
LGE) and every way of producing a landmark + confidence, on the canvas (1.5 mm/px, so canvas
distances are in-plane millimetres):

* mean ± sd L2 error (mm) of all found landmarks present in the reference, and of the
  high-confidence subset; the fraction flagged high;
* gross errors (> 10 mm): how many, and which fraction is flagged low;
* P(error > 5 mm | high) and P(error > 5 mm | low);
* detection rate and false detections (reference absent, landmark found), and how many of
  those are flagged low.

Methods: ``unet`` (heatmap U-Net, confidence = peak probability), ``phdnet`` (PHD-Net alone,
Candidate Smoothing), and two combinations with the U-Net's position and presence:
``support`` (confidence = PHD-Net's candidate-smoothed map near the U-Net's point,
:func:`confidence.map_support`) and ``agreement`` (PHD-Net's raw confidence times a Gaussian of
the U-Net-to-PHD-Net distance, :func:`confidence.agreement_confidence`; the shipped one). Every method's
high-confidence thresholds are calibrated per landmark on the ACDC validation patients by the
paper's rule (:func:`confidence.calibrate_threshold`) and applied unchanged to the other sets.
References are derived from expert masks (:mod:`.labels`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.confidence.phdnet import agreement_confidence, calibrate_threshold, map_support
from CardiacLandmarksLib.core.preprocessing import CANVAS_MM
from CardiacLandmarksLib.datasets.sax import (
    SAX_NAMES,
    Case,
    SampleSet,
    acdc_cases,
    build_samples,
    mscmr_cases,
    split_by_patient,
)
from CardiacLandmarksLib.sax.labels import MNMS2_LABELS
from CardiacLandmarksLib.sax.presence import card_min_lv_area, card_pair_threshold, decide_presence
from CardiacLandmarksLib.sax.rvi_segmentation import locate_all

logger = logging.getLogger(__name__)

METHODS = ("unet", "phdnet", "support", "agreement", "gated")
METHOD_TITLES = {"unet": "U-Net (peak prob.)", "phdnet": "PHD-Net alone", "support": "U-Net+PHD support",
                 "agreement": "U-Net+PHD agreement", "gated": "agreement + gate"}
GROSS_MM = 10.0


@dataclass
class SetPredictions:
    """Predictions of every method on one labelled set of canvas samples (arrays ``[N, L(, 2)]``)."""

    name: str
    samples: SampleSet
    unet_xy: np.ndarray
    unet_peak: np.ndarray
    unet_found: np.ndarray
    phd_xy: np.ndarray
    phd_conf: np.ndarray
    phd_found: np.ndarray
    support: np.ndarray
    agreement: np.ndarray
    #: ``[N, L]`` mm, the U-Net's disagreement with itself (:attr:`.rvi_segmentation.Located.disagreement_mm`)
    disagreement: np.ndarray | None = None
    #: the sax_phdnet card's ``shipped.max_disagreement_mm`` (the gate of the ``"gated"`` method; None = no gate)
    max_disagreement_mm: float | None = None

    def method(self, m: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(xy, found, confidence)`` of method ``m`` (one of :data:`METHODS`)."""
        if m == "unet":
            return self.unet_xy, self.unet_found, self.unet_peak
        if m == "phdnet":
            return self.phd_xy, self.phd_found, self.phd_conf
        if m == "support":
            return self.unet_xy, self.unet_found, self.support
        if m == "agreement":
            return self.unet_xy, self.unet_found, self.agreement
        if m == "gated":  # the shipped flag: agreement, and 0 where the U-Net disagrees with itself beyond the gate
            if self.disagreement is None or self.max_disagreement_mm is None:
                return self.unet_xy, self.unet_found, self.agreement
            keep = self.disagreement <= self.max_disagreement_mm
            return self.unet_xy, self.unet_found, np.where(keep, self.agreement, 0.0).astype(np.float32)
        raise ValueError(f"unknown method {m!r}; expected one of {METHODS}")

    def errors(self, m: str) -> np.ndarray:
        """L2 error (mm) ``[N, L]`` of method ``m`` (NaN where the reference has no landmark)."""
        xy, _, _ = self.method(m)
        return np.linalg.norm(xy - self.samples.points, axis=-1) * CANVAS_MM


def labelled_sets(data_root: Path, val_patients: list[str] | None = None) -> dict[str, list[Case]]:
    """The labelled SAX sets under the data root: ACDC validation patients, M&Ms-2 SAX, MS-CMRSeg LGE.

    ``val_patients``: the models' validation patients (from the U-Net card); default = the
    training split (``split_by_patient(seed=0, val_fraction=0.2)``). Missing sets are left out.
    """
    root = Path(data_root)
    sets: dict[str, list[Case]] = {}
    acdc = acdc_cases(root / "acdc") if (root / "acdc").exists() else []
    if acdc:
        if val_patients:
            chosen = set(val_patients)
            sets["ACDC val"] = [c for c in acdc if c.patient in chosen]
        else:
            sets["ACDC val"] = split_by_patient(acdc, 0.2, 0)[1]
    mn = root / "mnms2" / "001"
    mn_cases = [Case("mnms2-001", mn / f"001_SA_{p}.nii.gz", mn / f"001_SA_{p}_gt.nii.gz", dict(MNMS2_LABELS))
                for p in ("ED", "ES") if (mn / f"001_SA_{p}_gt.nii.gz").exists()]
    if mn_cases:
        sets["M&Ms-2 SAX"] = mn_cases
    lge = root / "lge" / "mscmr"
    lge_cases = mscmr_cases(lge) if lge.exists() else []
    if lge_cases:
        sets["MS-CMRSeg LGE"] = lge_cases
    return sets


def unet_found_thresholds(card: dict, default: float = 0.3) -> np.ndarray:
    """The U-Net card's presence thresholds ``[L]`` (the card may hold a number, a list or a per-name dict)."""
    value = card.get("thresholds", {}).get("found", default)
    if isinstance(value, dict):
        return np.array([float(value.get(n, default)) for n in SAX_NAMES])
    return np.broadcast_to(np.asarray(value, float), (len(SAX_NAMES),)).copy()


def name_rvi_by_canvas(xy: np.ndarray, found: np.ndarray, *values: np.ndarray) -> int:
    """Make A-RVI the upper of the two RV insertions on anatomically oriented canvases, in place.

    The short-axis canvas of a series with known orientation has the patient's head at the top (:mod:`.preprocessing`),
    so this is :func:`pipeline.name_rvi_by_geometry` on the canvas: where both RVIs are found and
    A-RVI lies below I-RVI, positions ``xy [N, L, 2]``, ``found [N, L]`` and every per-landmark
    array in ``values`` (``[N, L]``) swap their A-RVI / I-RVI entries. Returns the number of swaps.
    """
    a, i = SAX_NAMES.index("A-RVI"), SAX_NAMES.index("I-RVI")
    swap = found[:, a] & found[:, i] & (xy[:, a, 1] > xy[:, i, 1])
    for arr in (xy, found, *values):
        arr[swap, a], arr[swap, i] = arr[swap, i].copy(), arr[swap, a].copy()
    return int(swap.sum())


def predict_set(name: str, samples: SampleSet, unet, phd, oriented: bool = False) -> SetPredictions:
    """Run the U-Net (:func:`CardiacLandmarksLib.sax.rvi_segmentation.locate_all`, ``unet.card``) and PHD-Net (:class:`confidence.PhdNetConfidence`) on samples.

    Confidences are computed as :meth:`confidence.PhdNetConfidence.assess` does (settings from
    ``phd.shipped``: ``support_radius_px``, ``agreement_sigma_mm``). ``oriented``: the samples
    come from series with known orientation; A/I naming is then by anatomy
    (:func:`name_rvi_by_canvas`), as the detection pipeline does after assessing confidence.
    """
    found_t = unet_found_thresholds(unet.card)
    xy_u, peak_u, area_u, dis_u = locate_all(unet, samples.inputs() if getattr(unet, "in_channels", 1) > 1 else samples.images)
    shipped = phd.shipped
    res = phd.predict(samples.images, return_maps=True)
    support = map_support(res.maps, xy_u, float(shipped.get("support_radius_px", 2.0)))
    agreement = agreement_confidence(res.confidence, res.xy, xy_u, float(shipped.get("agreement_sigma_mm", 3.0)), CANVAS_MM)
    found_u = decide_presence(peak_u, SAX_NAMES, found_t, card_pair_threshold(unet.card), area_u,
                              card_min_lv_area(unet.card))
    found_p = res.confidence >= phd.found_thresholds()
    phd_xy, phd_conf = res.xy.copy(), res.confidence.copy()
    if oriented:
        n_u = name_rvi_by_canvas(xy_u, found_u, peak_u, support, agreement, dis_u)
        n_p = name_rvi_by_canvas(phd_xy, found_p, phd_conf)
        logger.info("%s: A/I-RVI renamed by anatomy on %d (U-Net) and %d (PHD-Net) of %d slices", name, n_u, n_p, len(xy_u))
    return SetPredictions(name, samples, xy_u, peak_u, found_u, phd_xy, phd_conf, found_p, support, agreement, dis_u,
                          phd.max_disagreement_mm)


def calibrate_methods(val: SetPredictions, worst_fraction: float = 0.1) -> dict[str, np.ndarray]:
    """Per method, per landmark high-confidence thresholds ``[L]`` by the paper's rule on validation predictions
    (``"gated"`` uses the ``"agreement"`` thresholds: the gate comes after the calibration, as when shipped)."""
    out = {}
    for m in METHODS:
        if m == "gated":
            out[m] = out["agreement"]
            continue
        _, found, conf = val.method(m)
        err = val.errors(m)
        ok = val.samples.present & found
        out[m] = np.array([calibrate_threshold(conf[ok[:, j], j], err[ok[:, j], j], worst_fraction) if ok[:, j].any() else 1.0
                           for j in range(len(SAX_NAMES))])
    return out


def cross_calibrated_thresholds(val: SetPredictions, folds: int = 2, seed: int = 0,
                                worst_fraction: float = 0.1) -> dict[str, np.ndarray]:
    """Per method, thresholds ``[N, L]`` for every validation sample calibrated on the *other* patients.

    Patients are split into ``folds`` groups (shuffled with ``seed``); each group's samples get the
    thresholds calibrated on the remaining groups, so the flags are judged on unseen patients.
    """
    patients = np.array([m[0] for m in val.samples.meta])
    uniq = np.array(sorted(set(patients)))
    np.random.default_rng(seed).shuffle(uniq)
    group = {p: i % folds for i, p in enumerate(uniq)}
    gid = np.array([group[p] for p in patients])
    out = {m: np.zeros(val.samples.present.shape) for m in METHODS}
    for f in range(folds):
        train = SetPredictions(val.name, _subset(val.samples, gid != f), *[a[gid != f] for a in _arrays(val)],
                               val.max_disagreement_mm)
        thr = calibrate_methods(train, worst_fraction)
        for m in METHODS:
            out[m][gid == f] = thr[m]
    return out


def _arrays(p: SetPredictions) -> list[np.ndarray]:
    dis = p.disagreement if p.disagreement is not None else np.zeros(p.unet_peak.shape, np.float32)
    return [p.unet_xy, p.unet_peak, p.unet_found, p.phd_xy, p.phd_conf, p.phd_found, p.support, p.agreement, dis]


def _subset(s: SampleSet, sel: np.ndarray) -> SampleSet:
    idx = np.flatnonzero(sel)
    return SampleSet(s.images[idx], s.points[idx], s.present[idx], [s.meta[i] for i in idx], [s.grids[i] for i in idx],
                     None if s.masks is None else s.masks[idx])


def _summary(err: np.ndarray) -> tuple[float, float]:
    return (float(err.mean()), float(err.std())) if err.size else (float("nan"), float("nan"))


def method_row(pred: SetPredictions, m: str, thresholds: np.ndarray, landmark: int | None = None) -> dict:
    """One table row: figures of method ``m`` on ``pred`` (all landmarks, or only index ``landmark``).

    ``thresholds``: ``[L]``, or ``[N, L]`` per sample (cross-calibration).
    """
    xy, found, conf = pred.method(m)
    err = pred.errors(m)
    pres = pred.samples.present
    thr = np.asarray(thresholds, float)
    high = found & (conf > (thr[None, :] if thr.ndim == 1 else thr))
    sel = np.zeros_like(pres) if landmark is not None else np.ones_like(pres)
    if landmark is not None:
        sel[:, landmark] = True
    ok = pres & found & sel
    e_all, e_high, e_low = err[ok], err[ok & high], err[ok & ~high]
    gross = ok & (err > GROSS_MM)
    fp = ~pres & found & sel
    mean_all, sd_all = _summary(e_all)
    mean_high, sd_high = _summary(e_high)
    return {
        "set": pred.name,
        "method": m,
        "landmark": "all" if landmark is None else SAX_NAMES[landmark],
        "n_points": int(ok.sum()),
        "detection_rate": float(ok.sum() / max(1, (pres & sel).sum())),
        "mean_error_mm": mean_all,
        "sd_error_mm": sd_all,
        "mean_error_high_mm": mean_high,
        "sd_error_high_mm": sd_high,
        "mean_error_low_mm": _summary(e_low)[0],
        "fraction_high": float((ok & high).sum() / max(1, ok.sum())),
        "n_gross": int(gross.sum()),
        "gross_flagged_low": float((gross & ~high).sum() / gross.sum()) if gross.any() else float("nan"),
        "p_err_gt_5mm_given_high": float((e_high > 5.0).mean()) if e_high.size else float("nan"),
        "p_err_gt_5mm_given_low": float((e_low > 5.0).mean()) if e_low.size else float("nan"),
        "n_false_detections": int(fp.sum()),
        "false_detections_flagged_low": float((fp & ~high).sum() / fp.sum()) if fp.any() else float("nan"),
    }


def table_rows(preds: list[SetPredictions], thresholds: dict[str, np.ndarray], per_landmark: bool = False,
               cross: dict[str, np.ndarray] | None = None) -> list[dict]:
    """Rows for every set x method (x landmark when ``per_landmark``).

    ``cross``: per-sample thresholds of the first (calibration) set from
    :func:`cross_calibrated_thresholds`; adds rows for that set named ``"<name> x-cal"``.
    """
    rows = []
    for k, p in enumerate(preds):
        if k == 0 and cross is not None:
            xp = SetPredictions(f"{p.name} x-cal", p.samples, *_arrays(p), p.max_disagreement_mm)
            for m in METHODS:
                rows.append(method_row(xp, m, cross[m]))
                if per_landmark:
                    rows += [method_row(xp, m, cross[m], j) for j in range(len(SAX_NAMES))]
        for m in METHODS:
            rows.append(method_row(p, m, thresholds[m]))
            if per_landmark:
                rows += [method_row(p, m, thresholds[m], j) for j in range(len(SAX_NAMES))]
    return rows


def confidence_table(cases: list[Case] | None = None, device: str = "auto", unet=None, phd=None,
                     per_landmark: bool = False, data_root: Path | None = None,
                     sets: dict[str, SampleSet] | None = None) -> list[dict]:
    """The confidence table (Schobs et al. ISBI 2021, Table 2) on the labelled real sets.

    Args:
        cases: ACDC cases to calibrate and evaluate on (normally the models' validation
            patients, as ``cardiac-landmarks evaluate`` selects them); default = the validation
            patients listed in the U-Net card, found under ``data_root``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        unet: loaded heatmap U-Net (default :func:`inference.load_model("sax")`).
        phd: :class:`confidence.PhdNetConfidence` (default the bundled one).
        per_landmark: also one row per landmark.
        data_root: shared data folder for M&Ms-2 SAX and MS-CMRSeg LGE (default :func:`config.data_root`).
        sets: pre-built ``{name: SampleSet}`` instead (the first one calibrates); sets whose
            name does not start with "ACDC" are taken as anatomically oriented (A/I by anatomy).

    Returns:
        One dict per (set, method[, landmark]) with the keys of :func:`method_row` plus
        ``"thresholds"``; every method's thresholds are calibrated on the ACDC set (the first).
        Rows of set ``"<ACDC set> x-cal"`` judge the flags on unseen patients: thresholds from the
        other half of the validation patients (:func:`cross_calibrated_thresholds`).

    Raises:
        InputNotFoundError: no ACDC data to calibrate on.
        ModelIntegrityError: a model is missing or corrupt.
    """
    from CardiacLandmarksLib.confidence.phdnet import PhdNetConfidence
    from CardiacLandmarksLib.core.config import data_root as default_root
    from CardiacLandmarksLib.core.errors import InputNotFoundError
    from CardiacLandmarksLib.models.loader import load_model

    unet = unet or load_model("sax", device)
    phd = phd or PhdNetConfidence.load(device)
    if sets is None:
        root = Path(data_root or default_root())
        # the U-Net's calibration patients (v1.4 on: disjoint from its choice patients), else its validation ones
        tr = unet.card.get("training", {})
        val_patients = [p for p in tr.get("calibration_patients", [])
                        if p.startswith("patient")] or tr.get("val_patients")
        found_sets = labelled_sets(root, val_patients)
        if cases:
            found_sets.pop("ACDC val", None)
            name = "ACDC val" if val_patients and {c.patient for c in cases} <= set(val_patients) else "ACDC"
            found_sets = {name: list(cases), **found_sets}
        sets = {name: build_samples(cs, getattr(unet, "in_channels", 1) > 1) for name, cs in found_sets.items() if cs}
    if not sets or not next(iter(sets)).startswith("ACDC"):
        raise InputNotFoundError("the confidence table calibrates on ACDC validation patients, "
                                 "but no ACDC data were found (set CARDIAC_LANDMARKS_DATA)")
    preds = [predict_set(name, s, unet, phd, oriented=not name.startswith("ACDC")) for name, s in sets.items()]
    thresholds = calibrate_methods(preds[0])
    rows = table_rows(preds, thresholds, per_landmark, cross_calibrated_thresholds(preds[0]))
    for r in rows:
        r["thresholds"] = {n: float(t) for n, t in zip(SAX_NAMES, thresholds[r["method"]])}
        if r["set"].endswith("x-cal"):
            r["thresholds"] = "calibrated on the other half of the validation patients (2-fold, by patient)"
    return rows


def format_confidence_table(rows: list[dict]) -> str:
    """Plain-text table of :func:`confidence_table` rows (one line per set x method[x landmark])."""
    head = (f"{'set':<19}{'method':<22}{'lm':<7}{'n':>5}{'det%':>7}{'all mm':>15}{'high mm':>15}{'high%':>7}"
            f"{'>10mm':>7}{'low%':>6}{'P>5|hi':>8}{'P>5|lo':>8}{'FP':>5}")
    lines = [head, "-" * len(head)]

    def pm(m: float, s: float) -> str:
        return "-" if not np.isfinite(m) else f"{m:.2f} ± {s:.2f}"

    def pct(x: float) -> str:
        return "-" if not np.isfinite(x) else f"{100 * x:.0f}"

    for r in rows:
        lines.append(
            f"{r['set']:<19}{METHOD_TITLES.get(r['method'], r['method']):<22}{r['landmark']:<7}{r['n_points']:>5}"
            f"{pct(r['detection_rate']):>7}{pm(r['mean_error_mm'], r['sd_error_mm']):>15}"
            f"{pm(r['mean_error_high_mm'], r['sd_error_high_mm']):>15}{pct(r['fraction_high']):>7}"
            f"{r['n_gross']:>7}{pct(r['gross_flagged_low']):>6}{pct(r['p_err_gt_5mm_given_high']):>8}"
            f"{pct(r['p_err_gt_5mm_given_low']):>8}{r['n_false_detections']:>5}")
    lines.append("")
    lines.append("all/high mm: mean ± sd L2 error of found landmarks present in the reference (all / flagged high); "
                 "high%: fraction flagged high; >10mm: gross errors, low%: of them flagged low; "
                 "P>5|hi, P>5|lo: % with error > 5 mm given flag high / low; FP: landmarks found where the reference has none.")
    return "\n".join(lines)
