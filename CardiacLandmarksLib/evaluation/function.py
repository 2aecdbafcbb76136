"""Evaluation of the function analysis against expert masks and contours.

* ACDC (:func:`evaluate_acdc`): for each patient, :func:`.pipeline.analyse_function` on the ED and
  ES volumes (the real pipeline, clean-up included), then per structure and phase the 3-D Dice
  and 95 % Hausdorff distance against the expert mask, and LV EDV, ESV, EF, LV mass, RV EDV,
  ESV, EF against the same measurements (:mod:`.measurements`) made on the expert masks.
  :func:`summarise` gives mean Dice / HD95 and Bland-Altman statistics (mean difference, SD,
  95 % limits of agreement = mean +- 1.96 SD; Bland & Altman, Lancet 1986, with the 95 % intervals of the
  mean difference and of each limit over patients); differences are automatic - expert.
* Sunnybrook (:func:`sunnybrook_lv_volumes`): the expert endocardial contours (``i``) of one
  cine, drawn at two phases, rasterised on their DICOM images (pixel centres inside the polygon),
  against the automatic LV cavity on the same slices and phases (volume = area x slice spacing,
  summed over the contoured slices; per-slice Dice).

The fixed ACDC test split is :data:`~CardiacLandmarksLib.datasets.splits.ACDC_TEST_PATIENTS` (never used
to choose anything); :data:`~CardiacLandmarksLib.datasets.splits.UNSEEN_BY_V1_3` (101-121) is reported
separately because the SAX model v1.3.1 chose its epoch on the other five.
"""

from __future__ import annotations

import ast
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import CardiacLandmarksLib.function.measurements as fm
from CardiacLandmarksLib.core.errors import InputNotFoundError
from CardiacLandmarksLib.datasets.splits import ACDC_TEST_PATIENTS
from CardiacLandmarksLib.function.metrics import dice, hausdorff95
from CardiacLandmarksLib.function.pipeline import FunctionOptions, analyse_function
from CardiacLandmarksLib.io.load import load_series

logger = logging.getLogger(__name__)

STRUCTS = (("RV cavity", 1), ("LV myocardium", 2), ("LV cavity", 3))
VOLUME_METRICS = (("LV", "EDV_ml"), ("LV", "ESV_ml"), ("LV", "EF_pct"), ("LV", "mass_g"),
                  ("RV", "EDV_ml"), ("RV", "ESV_ml"), ("RV", "EF_pct"))


@dataclass
class CaseRecord:
    """One ACDC patient: ``dice[phase][structure]``, ``hd95[phase][structure]`` (mm),
    ``auto`` / ``ref`` ``{"LV EDV_ml": value, ...}`` and the automatic statuses."""

    patient: str
    dice: dict = field(default_factory=dict)
    hd95: dict = field(default_factory=dict)
    auto: dict = field(default_factory=dict)
    ref: dict = field(default_factory=dict)
    status: dict = field(default_factory=dict)
    flags: dict = field(default_factory=dict)
    uncertainty: dict = field(default_factory=dict)


def evaluate_acdc_patient(root: Path, patient: str, model=None, options: FunctionOptions | None = None,
                          labels: dict | None = None, files: dict | None = None) -> CaseRecord:
    """Evaluate one ACDC patient (``<root>/<patient>_{ED,ES}[_gt].nii.gz``), or one patient of a site's folder
    (``files``: ``{"ED": (image, mask), "ES": (image, mask)}`` from :func:`site_patients`); ``labels`` (``{"rv": N,
    "myo": N, "lv": N}``, default ACDC's) are the values of its masks, read as ACDC's before the comparison.

    Raises:
        InputNotFoundError: a file is missing.
    """
    root = Path(root)
    if files is None:
        files = {ph: (root / f"{patient}_{ph}.nii.gz", root / f"{patient}_{ph}_gt.nii.gz") for ph in ("ED", "ES")}
    for img, gt in files.values():
        for f in (img, gt):
            if not Path(f).exists():
                raise InputNotFoundError(f"{'ACDC ' if files is None else ''}file {f} not found")
    result = analyse_function((files["ED"][0], files["ES"][0]), options or FunctionOptions(device="cpu"), model=model)
    gts = {ph: np.rint(load_series(files[ph][1]).pixels[0]).astype(np.uint8) for ph in ("ED", "ES")}
    if labels and labels != {"rv": 1, "myo": 2, "lv": 3}:  # a site's masks: as ACDC's values (1 RV, 2 myo, 3 LV)
        for ph, g in gts.items():
            out = np.zeros_like(g)
            for key, value in (("rv", 1), ("myo", 2), ("lv", 3)):
                out[g == labels[key]] = value
            gts[ph] = out
    spacing = result.spacing
    rec = CaseRecord(patient)
    for ph, pred in (("ED", result.ed_labels()), ("ES", result.es_labels())):
        rec.dice[ph] = {n: dice(pred == v, gts[ph] == v) for n, v in STRUCTS}
        rec.hd95[ph] = {n: hausdorff95(pred == v, gts[ph] == v, spacing) for n, v in STRUCTS}
    ref = {v: fm.ventricle_values(gts["ED"], gts["ES"], spacing, v, 0, 0) for v in ("LV", "RV")}
    for vent, key in VOLUME_METRICS:
        rec.auto[f"{vent} {key}"] = result.values[vent][key].value
        rec.ref[f"{vent} {key}"] = ref[vent][key].value
        rec.status[f"{vent} {key}"] = result.values[vent][key].status
        rec.flags[f"{vent} {key}"] = list(result.values[vent][key].flags)
    rec.uncertainty = result.uncertainty
    return rec


def evaluate_acdc(root: Path, patients: tuple[str, ...] = ACDC_TEST_PATIENTS, model=None,
                  options: FunctionOptions | None = None, progress=None, labels: dict | None = None,
                  files: dict | None = None) -> list[CaseRecord]:
    """:func:`evaluate_acdc_patient` for every patient (default the fixed test split); ``files``: a site's patients'
    files (:func:`site_patients`), else ACDC's names."""
    out = []
    for n, p in enumerate(patients):
        out.append(evaluate_acdc_patient(root, p, model, options, labels, files[p] if files else None))
        if progress:
            progress((n + 1) / len(patients), p)
    return out


def bland_altman(auto, ref) -> dict:
    """Bland-Altman agreement of ``auto - ref`` over patients (pairs with a None dropped; Bland & Altman, Lancet 1986).

    Returns ``{"n", "mean_diff", "sd_diff", "loa_low", "loa_high", "mean_abs_diff", "mean_diff_ci95",
    "loa_low_ci95", "loa_high_ci95"}`` in the units of the inputs (ml, g, EF points); ``{"n": 0}`` without a pair.
    The 95% intervals say how well this many patients pin the figures down: the mean difference (bias)
    ``mean +- t(0.975, n-1) SD / sqrt(n)``, and each limit of agreement ``limit +- t(0.975, n-1) SD sqrt(3 / n)``
    (the approximate standard error of Bland & Altman 1986); NaN with fewer than 2 patients. Each patient gives
    one difference, so these are over patients as the SAX intervals are.
    """
    from scipy.stats import t as student_t

    pairs = [(a, r) for a, r in zip(auto, ref) if a is not None and r is not None]
    d = np.array([a - r for a, r in pairs], float)
    if len(d) == 0:
        return {"n": 0}
    n = len(d)
    sd = float(d.std(ddof=1)) if n > 1 else float("nan")
    m = float(d.mean())
    q = float(student_t.ppf(0.975, n - 1)) if n > 1 else float("nan")
    half_bias, half_loa = q * sd / math.sqrt(n), q * sd * math.sqrt(3.0 / n)
    lo, hi = m - 1.96 * sd, m + 1.96 * sd
    return {"n": n, "mean_diff": m, "sd_diff": sd, "loa_low": lo, "loa_high": hi,
            "mean_abs_diff": float(np.abs(d).mean()),
            "mean_diff_ci95": [m - half_bias, m + half_bias],
            "loa_low_ci95": [lo - half_loa, lo + half_loa], "loa_high_ci95": [hi - half_loa, hi + half_loa]}


def summarise(records: list[CaseRecord]) -> dict:
    """Mean Dice and HD95 per phase and structure, and Bland-Altman per volume metric."""
    out: dict = {"n_patients": len(records), "dice": {}, "hd95_mm": {}, "agreement": {}}
    for ph in ("ED", "ES"):
        out["dice"][ph] = {n: float(np.nanmean([r.dice[ph][n] for r in records])) for n, _ in STRUCTS}
        out["hd95_mm"][ph] = {n: float(np.nanmean([r.hd95[ph][n] for r in records])) for n, _ in STRUCTS}
    out["dice"]["ED+ES"] = {n: float(np.nanmean([r.dice[ph][n] for r in records for ph in ("ED", "ES")])) for n, _ in STRUCTS}
    out["hd95_mm"]["ED+ES"] = {n: float(np.nanmean([r.hd95[ph][n] for r in records for ph in ("ED", "ES")]))
                               for n, _ in STRUCTS}
    for vent, key in VOLUME_METRICS:
        name = f"{vent} {key}"
        out["agreement"][name] = bland_altman([r.auto[name] for r in records], [r.ref[name] for r in records])
    out["review_share"] = float(np.mean([s != "ok" for r in records for s in r.status.values()])) if records else None
    # does the status sort the errors? mean |automatic - expert| of the values marked ok and review
    out["abs_error_by_status"] = {}
    for vent, key in VOLUME_METRICS:
        name = f"{vent} {key}"
        by = {}
        for st in ("ok", "review"):
            d = [abs(r.auto[name] - r.ref[name]) for r in records
                 if r.status.get(name) == st and r.auto[name] is not None and r.ref[name] is not None]
            by[st] = {"n": len(d), "mean_abs_diff": float(np.mean(d)) if d else None}
        out["abs_error_by_status"][name] = by
    return out


#: targets of issue 17 (ACDC test split)
TARGETS = {"dice LV cavity": 0.93, "dice LV myocardium": 0.87, "dice RV cavity": 0.88, "mean |EF diff|": 4.0,
           "SD mass diff": 10.0, "SD EDV diff": 10.0}


def check_targets(summary: dict, records: list[CaseRecord]) -> dict[str, dict]:
    """Each target of :data:`TARGETS`: ``{"value", "target", "met"}`` (Dice = mean over ED and ES;
    |EF difference| = mean absolute LV EF difference in points; SDs of LV mass and LV EDV differences)."""
    d = summary["dice"]["ED+ES"]
    ag = summary["agreement"]
    vals = {"dice LV cavity": (d["LV cavity"], True), "dice LV myocardium": (d["LV myocardium"], True),
            "dice RV cavity": (d["RV cavity"], True), "mean |EF diff|": (ag["LV EF_pct"].get("mean_abs_diff"), False),
            "SD mass diff": (ag["LV mass_g"].get("sd_diff"), False), "SD EDV diff": (ag["LV EDV_ml"].get("sd_diff"), False)}
    out = {}
    for name, (value, higher) in vals.items():
        t = TARGETS[name]
        met = value is not None and math.isfinite(value) and (value >= t if higher else value <= t)
        out[name] = {"value": value, "target": t, "met": bool(met)}
    return out


def format_table(summary: dict, targets: dict | None = None, title: str = "") -> str:
    """Plain-text report of :func:`summarise` (and :func:`check_targets`)."""
    lines = [title] if title else []
    lines.append(f"patients: {summary['n_patients']}")
    lines.append(f"{'':10s}{'Dice RV':>9s}{'Dice Myo':>9s}{'Dice LV':>9s}{'HD95 RV':>9s}{'HD95 Myo':>9s}{'HD95 LV':>9s}")
    for ph in ("ED", "ES", "ED+ES"):
        d, h = summary["dice"][ph], summary["hd95_mm"][ph]
        lines.append(f"{ph:10s}{d['RV cavity']:9.3f}{d['LV myocardium']:9.3f}{d['LV cavity']:9.3f}"
                     f"{h['RV cavity']:9.1f}{h['LV myocardium']:9.1f}{h['LV cavity']:9.1f}")
    lines.append(f"{'metric':16s}{'mean diff':>10s}{'95% CI of mean':>20s}{'SD':>8s}{'LoA low':>9s}{'LoA high':>9s}"
                 f"{'mean|d|':>9s}")
    for name, a in summary["agreement"].items():
        if a.get("n"):
            lo, hi = a.get("mean_diff_ci95", [float("nan")] * 2)
            ci = f"{lo:.2f} to {hi:.2f}" if math.isfinite(lo) else "n/a"
            lines.append(f"{name:16s}{a['mean_diff']:10.2f}{ci:>20s}{a['sd_diff']:8.2f}{a['loa_low']:9.2f}"
                         f"{a['loa_high']:9.2f}{a['mean_abs_diff']:9.2f}")
    by = summary.get("abs_error_by_status", {})
    if by:
        def mad(v) -> str:  # none of that status: '-' (it printed 'nan'; and a difference of 0.00 printed 'nan')
            return "-" if v is None or not np.isfinite(v) else f"{v:.2f}"

        lines.append("mean |difference| by status (n): " + "; ".join(
            f"{name} ok {mad(b['ok']['mean_abs_diff'])} ({b['ok']['n']}), review "
            f"{mad(b['review']['mean_abs_diff'])} ({b['review']['n']})" for name, b in by.items()
            if name in ("LV EDV_ml", "LV EF_pct", "LV mass_g", "RV EF_pct")))
    if targets:
        for name, t in targets.items():
            lines.append(f"target {name}: {t['value']:.3f} vs {t['target']} -> {'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines)


def render_bland_altman_png(records: list[CaseRecord], path: Path | None = None, title: str = "") -> bytes:
    """Bland-Altman panels (auto - expert against their mean) for LV EDV, ESV, EF, mass, RV EDV, EF.
    Returns PNG bytes (and writes them atomically to ``path`` when given)."""
    from CardiacLandmarksLib.io.atomic import atomic_write_bytes
    from CardiacLandmarksLib.io.outputs import agg_figure

    panels = [("LV EDV_ml", "LV EDV (ml)"), ("LV ESV_ml", "LV ESV (ml)"), ("LV EF_pct", "LV EF (%)"),
              ("LV mass_g", "LV mass (g)"), ("RV EDV_ml", "RV EDV (ml)"), ("RV EF_pct", "RV EF (%)")]
    fig = agg_figure(figsize=(12, 6.5))
    for n, (key, label) in enumerate(panels):
        ax = fig.add_subplot(2, 3, n + 1)
        pairs = [(r.auto[key], r.ref[key]) for r in records if r.auto[key] is not None and r.ref[key] is not None]
        if not pairs:
            continue
        a, b = np.array(pairs, float).T
        mean, diff = (a + b) / 2, a - b
        ba = bland_altman(a, b)
        ax.scatter(mean, diff, s=16, color="tab:blue")
        for y, ls in ((ba["mean_diff"], "-"), (ba["loa_low"], "--"), (ba["loa_high"], "--")):
            ax.axhline(y, color="tab:red" if ls == "-" else "0.4", ls=ls, lw=1)
        ax.axhline(0, color="0.8", lw=0.8)
        ax.set_title(f"{label}: {ba['mean_diff']:+.1f} ± {ba['sd_diff']:.1f} (LoA {ba['loa_low']:+.1f} to "
                     f"{ba['loa_high']:+.1f})", fontsize=8.5)
        ax.set_xlabel("mean of automatic and expert", fontsize=8)
        ax.set_ylabel("automatic - expert", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title or "Bland-Altman: automatic vs expert masks", fontsize=10)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    data = buf.getvalue()
    if path is not None:
        atomic_write_bytes(Path(path), data)
    return data


# ---- Sunnybrook -----------------------------------------------------------------------------------------

def read_contour(path: Path) -> np.ndarray:
    """Sunnybrook contour file: ``[n, 2]`` pixel (x = column, y = row)."""
    return np.loadtxt(path, dtype=float).reshape(-1, 2)


def rasterise_contour(xy: np.ndarray, shape_ji: tuple[int, int]) -> np.ndarray:
    """Boolean ``[j, i]`` mask of the pixel centres inside the closed polygon ``xy`` (column, row)."""
    from matplotlib.path import Path as MplPath

    rows, cols = shape_ji
    jj, ii = np.mgrid[0:rows, 0:cols]
    inside = MplPath(xy).contains_points(np.stack([ii.ravel(), jj.ravel()], axis=1))
    return inside.reshape(rows, cols)


def sunnybrook_lv_volumes(case_dir: Path, model=None, options: FunctionOptions | None = None, result=None) -> dict:
    """Automatic vs expert LV cavity on one Sunnybrook cine (``<case_dir>/dicom``, ``contours/i-contours``).

    Returns ``{"phases": {phase: {"expert_ml", "auto_ml" (same slices), "auto_all_slices_ml",
    "slices": [k...], "dice_per_slice": [...]}}, "expert_ef_pct" (two contoured phases; the
    larger volume taken as ED), "auto_ef_pct", "auto_ed_phase", "auto_es_phase", ...}``.

    Raises:
        InputNotFoundError: folder or contours missing.
    """
    case_dir = Path(case_dir)
    cdir = case_dir / "contours" / "i-contours"
    if not (case_dir / "dicom").is_dir() or not cdir.is_dir():
        raise InputNotFoundError(f"{case_dir} lacks dicom/ or contours/i-contours/")
    if result is None:
        result = analyse_function(case_dir / "dicom", options or FunctionOptions(device="cpu"), model=model)
    s = result.series[0]
    raw = s.metadata.get("instance_numbers")
    if raw is None:
        raise InputNotFoundError(f"{case_dir / 'dicom'}: no DICOM instance numbers to match the contours to")
    inst = np.array(ast.literal_eval(raw) if isinstance(raw, str) else raw, dtype=float)  # [t, k]
    where = {int(n): (t, k) for (t, k), n in np.ndenumerate(inst) if np.isfinite(n)}
    lab = result.labels[0]
    vox_area = s.spacing[0] * s.spacing[1]
    per: dict[int, dict] = {}
    for f in sorted(cdir.glob("*-icontour-manual.txt")):
        n = int(re.search(r"IM-\d+-(\d+)-", f.name).group(1))
        if n not in where:
            logger.warning("contour %s: instance %d not in the series", f.name, n)
            continue
        t, k = where[n]
        ref = rasterise_contour(read_contour(f), s.shape_ji)
        auto = lab[t, k] == 3
        d = per.setdefault(t, {"slices": [], "expert_mm2": [], "auto_mm2": [], "dice_per_slice": []})
        d["slices"].append(int(k))
        d["expert_mm2"].append(float(ref.sum()) * vox_area)
        d["auto_mm2"].append(float(auto.sum()) * vox_area)
        d["dice_per_slice"].append(dice(auto, ref))
    sk = float(s.spacing[2])
    out: dict = {"phases": {}, "auto_ed_phase": result.ed_phase, "auto_es_phase": result.es_phase,
                 "auto_ef_pct": result.values["LV"]["EF_pct"].value, "auto_edv_ml": result.values["LV"]["EDV_ml"].value,
                 "auto_esv_ml": result.values["LV"]["ESV_ml"].value}
    for t, d in sorted(per.items()):
        d["expert_ml"] = sum(d["expert_mm2"]) * sk / 1000.0
        d["auto_ml"] = sum(d["auto_mm2"]) * sk / 1000.0
        d["auto_all_slices_ml"] = float((lab[t] == 3).sum()) * vox_area * sk / 1000.0
        d["mean_dice"] = float(np.nanmean(d["dice_per_slice"]))
        out["phases"][int(t)] = d
    if len(per) == 2:
        (t1, d1), (t2, d2) = sorted(per.items(), key=lambda x: -x[1]["expert_ml"])
        out["expert_ed_phase"], out["expert_es_phase"] = int(t1), int(t2)
        out["expert_ef_pct"] = 100.0 * (d1["expert_ml"] - d2["expert_ml"]) / d1["expert_ml"]
        out["auto_ef_same_slices_pct"] = 100.0 * (d1["auto_ml"] - d2["auto_ml"]) / d1["auto_ml"]
    return out


def site_patients(root: Path) -> tuple[dict[str, dict[str, tuple[Path, Path]]], list[str]]:
    """The patients of a site's folder that :func:`evaluate_acdc_patient` can read, and why the others cannot.

    A labelled stack is any ``NAME.nii[.gz]|.nrrd`` with ``NAME_gt`` beside it (as for landmark training and
    evaluation: :func:`CardiacLandmarksLib.datasets.sax.paired_cases`); its patient is ``NAME`` without its phase
    tag and its phase the ED/ES in its name, by the routing's rule (``P7_ED``, ``P7-es``:
    :func:`CardiacLandmarksLib.study.routing.ed_es_of`).

    Returns:
        ``({patient: {"ED": (image, mask), "ES": (image, mask)}}`` in sorted order, ``["P3: no ES stack", ...]``).
    """
    from CardiacLandmarksLib.datasets.sax import paired_cases
    from CardiacLandmarksLib.study.routing import ed_es_of

    by_patient: dict[str, dict[str, list]] = {}
    for c in paired_cases(Path(root)):
        phase = ed_es_of(c.image.name.split(".")[0]) or "?"
        by_patient.setdefault(c.patient, {}).setdefault(phase, []).append((c.image, c.mask))
    found, left = {}, []
    for p in sorted(by_patient):
        ph = by_patient[p]
        if len(ph.get("ED", [])) == 1 and len(ph.get("ES", [])) == 1:
            found[p] = {"ED": ph["ED"][0], "ES": ph["ES"][0]}
            continue
        why = [f"{len(ph[k])} {k} stacks" for k in ("ED", "ES") if len(ph.get(k, [])) > 1]
        why += [f"no {k} stack" for k in ("ED", "ES") if k not in ph]
        if "?" in ph:
            why.append(f"{len(ph['?'])} without ED or ES in the name ({', '.join(i.name for i, _ in ph['?'][:2])})")
        left.append(f"{p}: {', '.join(why)}")
    return found, left
