"""Perfusion report files: report.json, report.csv, bull's-eye PNG, label maps, sector PNGs, RVI markups.

Files written into ``OUTDIR`` (all atomically, see :mod:`.fileio`):

* ``report.json``: inputs used (series, condition, level, RVI source, model and checksum,
  time base, Fermi settings), then the 16 AHA segments and the global values per condition,
  each metric as ``{"mean", "sd", "n_pixels", "unit"}``, plus the stress/rest reserve
  (``mpri`` = upslope-index ratio, ``mpr`` = MBF ratio) and all warnings;
* ``report.csv``: the same values, one row per segment x condition x metric (``segment`` =
  ``global`` for the global rows);
* ``bullseye.png``: stress / rest / reserve bull's-eyes of the primary metric (MBF when
  computed, else the upslope index);
* per series: ``<series>_segmentation.nii.gz`` (1 myocardium, 2 LV blood pool, every frame,
  motion-tracked) and ``<series>_aha_segments.nii.gz`` (AHA segment per myocardial pixel,
  every frame) in the input's own geometry (same file layout and affine for NIfTI inputs;
  a 4-D ``(i, j, 1, t)`` NIfTI with the DICOM geometry otherwise), ``<series>_sectors.png`` and
  ``<series>_rvi.mrk.json`` (A-RVI, I-RVI, C-LV on the reference frame, LPS; edit in Slicer and
  re-run with ``--rvi``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import numpy as np

from CardiacLandmarksLib import __version__
from CardiacLandmarksLib.core.landmarks import Landmark, LandmarkSet, measurement_status
from CardiacLandmarksLib.io.atomic import atomic_write_bytes, atomic_write_text
from CardiacLandmarksLib.io.image import image_file_bytes
from CardiacLandmarksLib.io.jsonsafe import finite_json
from CardiacLandmarksLib.perfusion import aha, bullseye
from CardiacLandmarksLib.perfusion.pipeline import (
    FALLBACK_RVI_CONFIDENCE,
    METRICS,
    SliceAnalysis,
    anchor_sources,
)

logger = logging.getLogger(__name__)


def _with_units(stats: dict, units: dict) -> dict:
    return {m: {**v, "unit": units.get(m, "")} for m, v in stats.items()}


def series_info(an: SliceAnalysis, model_card: dict | None, model_sha: str) -> dict:
    """The ``inputs`` entry of ``report.json`` for one analysed series: source, condition, level, frames and time
    unit, pixel spacing (mm), orientation and display, bolus foot and reference frame, segmentation confidence and
    largest motion (px), the segmentation model (name, version, SHA256), where its RV insertion points came from and
    their trust (sources and status), the C-LV / A-RVI / I-RVI pixel positions ``(i, j)``, the blood-pool timing,
    the metrics computed, its warnings, and the Fermi fit when MBF was computed."""
    s = an.series
    ref = an.seg.reference_frame
    info = {
        "series": an.name,
        "source": s.source,
        "description": s.description,
        "condition": an.condition,
        "level": an.level,
        "frames": int(s.n_phases),
        "time_unit": an.time_unit,
        "pixel_spacing_mm": [float(s.spacing[0]), float(s.spacing[1])],
        "orientation_known": bool(s.orientation_known),
        "display": an.orientation_note,
        "bolus_foot_frame": int(an.seg.timing.foot),
        "reference_frame": int(ref),
        "segmentation_confidence": an.seg.confidence,
        "endocardial_rim_pixels_excluded": an.n_rim_excluded,
        "max_motion_px": float(np.abs(an.seg.offsets_ij).max()),
        "segmentation_model": {"name": (model_card or {}).get("name", "perfusion_unet"),
                               "version": (model_card or {}).get("version", ""), "sha256": model_sha},
        "rvi_source": an.rvi_source,
        "rvi_frame": an.rvi_frame,
        # the sector anchor's trust: its points with flag and confidence, and the status they give the sectors
        "rvi_sources": [x.to_dict() for x in anchor_sources(an)] if an.a_rvi_ij is not None else [],
        "rvi_status": measurement_status(0.0, anchor_sources(an)) if an.a_rvi_ij is not None else "n/a",
        "C-LV_ij": an.center_ij,
        "A-RVI_ij": an.a_rvi_ij,
        "I-RVI_ij": an.i_rvi_ij,
        "blood_pool": {k: v for k, v in an.blood_pool.items() if k != "curve"},
        "metrics": sorted(an.maps),
        "warnings": an.warnings,
    }
    if an.fermi_info:
        info["mbf"] = an.fermi_info
    return info


_RANK = {"ok": 0, "review": 1, "n/a": 2}


def row_status(row: dict, conditions: list[str]) -> tuple[str, str]:
    """Worst status of a report row (one segment, or global) over its conditions, metrics and reserves,
    and the distinct caveats joined by ``"; "`` (``"n/a"`` when the row holds no value at all)."""
    statuses, checks = [], []
    items = [st for c in conditions for st in row.get(c, {}).values()] + list(row.get("reserve_trust", {}).values())
    for st in items:
        statuses.append(st.get("status", "review"))
        if st.get("check") and st["check"] not in checks:
            checks.append(st["check"])
    if not statuses:
        return "n/a", "not measured"
    return max(statuses, key=lambda x: _RANK.get(x, 1)), "; ".join(checks)


def failure_warnings(failed: list[tuple[str, str]]) -> list[str]:
    """One named warning per series that could not be analysed: ``"<series>: not analysed (<error>)"``."""
    return [f"{name}: not analysed ({msg})" for name, msg in failed]


def report_dict(analyses: list[SliceAnalysis], summary: dict, model_card: dict | None = None,
                model_sha: str = "", failed: list[tuple[str, str]] | None = None) -> dict:
    """The ``report.json`` content (see module docstring); ``failed``: ``(series, error)`` of the inputs that
    could not be analysed (:attr:`.pipeline.PerfusionResult.failed`), listed under ``"failed"`` and named in
    ``"warnings"``."""
    failed = list(failed or [])
    units = summary["units"]
    segments = []
    for seg in range(1, 17):
        entry = summary["segments"][seg]
        row = {"segment": seg, "name": aha.SEGMENT_NAMES[seg],
               "territory": next(t for t, ss in aha.TERRITORIES.items() if seg in ss),
               "level": bullseye.level_of(seg)}
        for c in summary["conditions"]:
            row[c] = _with_units(entry.get(c, {}), units)
        row["reserve"] = entry.get("reserve", {})
        row["reserve_trust"] = entry.get("reserve_trust", {})
        row["status"], row["check"] = row_status(row, summary["conditions"])
        segments.append(row)
    glob = {c: _with_units(summary["global"].get(c, {}), units) for c in summary["conditions"]}
    glob["reserve"] = summary["global"].get("reserve", {})
    glob["reserve_trust"] = summary["global"].get("reserve_trust", {})
    glob["status"], glob["check"] = row_status(glob, summary["conditions"])
    return finite_json({
        "software": {"name": "CardiacLandmarks", "version": __version__},
        "method": {
            "segments": "AHA 17-segment model (Cerqueira et al., Circulation 2002), 16 segments reported; sectors "
                        "anchored at the anterior RV insertion, counter-clockwise seen from the apex (see aha.py)",
            "semi_quantitative": "peak enhancement, upslope (max slope foot->peak), upslope index = myocardial / LV "
                                 "blood-pool upslope (Al-Saadi et al. 2000), time to peak from the LV foot; per pixel, "
                                 "segment = mean +- sd over its pixels",
            "mbf": "Fermi-constrained deconvolution (Jerosch-Herold et al., Med Phys 1998) when contrast concentration "
                   "and an AIF are given; MBF = 60 R(0) / 1.05 g/ml",
            "reserve": "mpri = stress / rest upslope index; mpr = stress / rest MBF",
            "pixels": "myocardium of the reference segmentation without its endocardial rim (pixels touching the LV "
                      "blood pool: partial volume with cavity blood), motion-aligned over frames",
            "segmentation": "perfusion U-Net (localiser + segmenter, Xue et al. 2020 design), rigid motion tracking",
        },
        "conditions": summary["conditions"],
        "units": {m: units[m] for m in summary["metrics"]},
        "metric_labels": {m: METRICS[m][0] for m in summary["metrics"]},
        "inputs": [series_info(a, model_card, model_sha) for a in analyses],
        "segments": segments,
        "global": glob,
        "failed": [{"series": n, "error": m} for n, m in failed],
        "warnings": failure_warnings(failed) + [f"{a.name}: {w}" for a in analyses for w in a.warnings],
    })


def report_csv_text(report: dict) -> str:
    """CSV rows: segment, name, territory, level, condition, metric, mean, sd, n_pixels, unit, status, check.

    ``status`` is ok | review | n/a (:func:`.pipeline.segment_trust`, :func:`.pipeline.reserve_trust`),
    ``check`` what to check for a value that is not ok.
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["segment", "name", "territory", "level", "condition", "metric", "mean", "sd", "n_pixels", "unit",
                "status", "check"])

    def fmt(v):
        return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)

    rows = [(r["segment"], r["name"], r["territory"], r["level"], r) for r in report["segments"]]
    rows.append(("global", "global", "", "", report["global"]))
    for seg, name, terr, level, entry in rows:
        for c in report["conditions"]:
            for m, st in entry.get(c, {}).items():
                w.writerow([seg, name, terr, level, c, m, fmt(st.get("mean")), fmt(st.get("sd")),
                            st.get("n_pixels", ""), st.get("unit", ""), st.get("status", ""), st.get("check", "")])
        for m, v in entry.get("reserve", {}).items():
            tr = entry.get("reserve_trust", {}).get(m, {})
            w.writerow([seg, name, terr, level, "stress/rest", m, fmt(v), "", "", "ratio", tr.get("status", ""),
                        tr.get("check", "")])
    return buf.getvalue()


def primary_metric(summary: dict) -> str:
    """The metric a study reports for perfusion: ``"mbf"`` (Fermi MBF, ml/min/g) when the summary has it (an arterial
    input function in contrast concentration was given), else ``"upslope_index"`` (ratio).
    """
    return "mbf" if "mbf" in summary["metrics"] else "upslope_index"


def _mark(stats: dict | None) -> str:
    """Bull's-eye mark of one value (:class:`.bullseye.BullseyePanel` ``marks``) from its status and sources."""
    if not stats:
        return ""
    status = stats.get("status", "ok")
    if status == "ok":
        return ""
    if status == "n/a":
        return "n/a"
    own = [d for d in stats.get("sources", []) if d.get("kind") != "anchor" and d.get("flag") in ("review", "n/a")]
    return "review" if own else "anchor"


def anchor_note(analyses: list[SliceAnalysis]) -> str:
    """One line per distinct RV-insertion source of the series: where the sector anchor came from."""
    lines = []
    for a in analyses:
        trust = a.rvi_trust.get("A-RVI")
        flag = f" [A-RVI {trust[1]} {trust[0]:.2f}]" if trust else ""
        lines.append(f"{a.name}: {a.rvi_source or 'no RV insertion point'}{flag}")
    return "Sector anchor (A-RVI): " + "; ".join(lines)


def render_report_bullseye(summary: dict, path: Path, title_extra: str = "",
                           analyses: list[SliceAnalysis] | None = None) -> Path:
    """Bull's-eye PNG of the primary metric per condition (shared colour scale) and its reserve.

    Values whose status is not ok are marked (:func:`_mark`): ``n/a`` grey, segment-level
    review (too few pixels, sd > mean, implausible ratio) red-hatched with ``?`` and left out of
    the colour scale, so a doubtful value is never the brightest colour without a mark; review
    only because of a low anchor dotted. The footnote names the anchor source of every series.
    """
    metric = primary_metric(summary)
    unit = summary["units"].get(metric, "")
    conds = summary["conditions"]
    stats = {c: {s: summary["segments"][s].get(c, {}).get(metric) for s in range(1, 17)} for c in conds}
    vals = {c: {s: (st or {}).get("mean") for s, st in stats[c].items()} for c in conds}
    sds = {c: {s: (st or {}).get("sd") for s, st in stats[c].items()} for c in conds}
    marks = {c: {s: _mark(st) for s, st in stats[c].items()} for c in conds}
    scale = [v for c in conds for s, v in vals[c].items()
             if v is not None and np.isfinite(v) and marks[c][s] not in ("review", "n/a")]
    if not scale:
        scale = [v for c in conds for v in vals[c].values() if v is not None and np.isfinite(v)]
    vmin = 0.0
    vmax = float(np.nanmax(scale)) if scale else 1.0
    vmax = float(np.ceil(vmax * 10) / 10) if vmax > 0 else 1.0
    panels = []
    for c in conds:
        g = summary["global"].get(c, {}).get(metric, {})
        gtxt = f" (global {g['mean']:.2f}{'' if g.get('status', 'ok') == 'ok' else ', ' + g['status']})" \
            if g.get("mean") is not None else ""
        panels.append(bullseye.BullseyePanel(f"{c}{gtxt}", vals[c], unit, sds[c], vmin, vmax, "viridis",
                                             marks=marks[c]))
    key = "mpr" if metric == "mbf" else "mpri"
    res = {s: summary["segments"][s].get("reserve", {}).get(key) for s in range(1, 17)}
    if any(v is not None and np.isfinite(v) for v in res.values()):
        res_marks = {s: _mark(summary["segments"][s].get("reserve_trust", {}).get(key)) for s in range(1, 17)}
        res_scale = [v for s, v in res.items()
                     if v is not None and np.isfinite(v) and res_marks[s] not in ("review", "n/a")]
        g = summary["global"].get("reserve", {}).get(key)
        g_status = summary["global"].get("reserve_trust", {}).get(key, {}).get("status", "ok")
        gtxt = f" (global {g:.2f}{'' if g_status == 'ok' else ', ' + g_status})" \
            if g is not None and np.isfinite(g) else ""
        panels.append(bullseye.BullseyePanel(f"stress/rest {key.upper()}{gtxt}", res, "ratio", {}, 0.0,
                                             max(3.0, float(np.nanmax(res_scale))) if res_scale else 3.0,
                                             "magma", marks=res_marks))
    title = METRICS[metric][0] + (f" — {title_extra}" if title_extra else "")
    sd_note = "Values: mean ± sd over the segment's pixels."
    if analyses:
        sd_note += "\n" + anchor_note(analyses)
    return bullseye.render_bullseye_png(panels, path, title=title, footnote=sd_note)


# --------------------------------------------------------------------------- label maps


def write_labels_like(an: SliceAnalysis, labels: np.ndarray, path: Path) -> Path:
    """Write ``labels [t, j, i]`` (uint8) in the input's own geometry (see module docstring)."""
    import SimpleITK as sitk

    s = an.series
    lab = np.asarray(labels, np.uint8)
    meta = s.metadata or {}
    layout = meta.get("layout")
    if meta.get("format") in ("nifti", "nrrd", "metaimage", "analyze") and layout in ("time-first", "time-last") \
            and "file_spacing" in meta:
        arr = lab.transpose(2, 1, 0) if layout == "time-first" else lab
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
        img.SetSpacing([float(x) for x in meta["file_spacing"]])
        img.SetOrigin([float(x) for x in meta["file_origin"]])
        img.SetDirection([float(x) for row in meta["file_direction"] for x in row])
    else:
        # 4-D (i, j, k=1, t): the slice's LPS geometry, time on the 4th axis
        arr = lab[:, None]  # [t, 1, j, i] = sitk [t, z, y, x]
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr), isVector=False)
        d = np.asarray(s.direction, float)
        d4 = np.eye(4)
        d4[:3, :3] = d
        dt = float(np.median(np.diff(an.times))) if an.time_unit == "s" and len(an.times) > 1 else 1.0
        img.SetSpacing([float(s.spacing[0]), float(s.spacing[1]), float(s.spacing[2]), dt])
        img.SetOrigin([*map(float, s.slice_origins[0]), 0.0])
        img.SetDirection(d4.ravel().tolist())
    return atomic_write_bytes(path, image_file_bytes(img, ".nii.gz"))


def rvi_landmarks(an: SliceAnalysis) -> LandmarkSet:
    """A-RVI, I-RVI and C-LV of the reference frame as a LandmarkSet (slice 0, phase = reference frame).

    The RV insertion points keep their trust (``an.rvi_trust``): user points high (1.0), the SAX
    model's their own confidence and flag, the RV-enhancement fallback low
    (:data:`.pipeline.FALLBACK_RVI_CONFIDENCE`), so the ``_rvi.mrk.json`` shows fallback points
    unselected (orange in Slicer) with "low confidence 0.25" in their description.
    """
    s = an.series
    ref = an.seg.reference_frame
    lms = []
    for name, p in (("A-RVI", an.a_rvi_ij), ("I-RVI", an.i_rvi_ij), ("C-LV", an.center_ij)):
        if p is None:
            lms.append(Landmark(name, 0, ref, False, np.full(3, np.nan), np.full(3, np.nan), 0.0, "absent"))
            continue
        ijk = np.array([p[0], p[1], 0.0])
        if name == "C-LV":
            c = float(an.seg.confidence)
            flag = "high" if c >= 0.5 else "low"
        else:
            c, flag = an.rvi_trust.get(name, (FALLBACK_RVI_CONFIDENCE, "low"))
        lms.append(Landmark(name, 0, ref, True, s.ijk_to_lps(ijk), ijk, float(c), flag,
                            corrected=an.rvi_source == "user" and name != "C-LV"))
    return LandmarkSet(source=s.source, view="sax", model={"name": "perfusion RVI", "source": an.rvi_source},
                       landmarks=lms)


def write_series_outputs(an: SliceAnalysis, outdir: Path) -> list[Path]:
    """Label maps, sector PNG and RVI markups of one series."""
    from CardiacLandmarksLib.io.markups import write_markups

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = [write_labels_like(an, an.seg.masks, outdir / f"{an.name}_segmentation.nii.gz"),
               write_labels_like(an, an.segments_per_frame(), outdir / f"{an.name}_aha_segments.nii.gz")]
    if an.segments is not None and an.a_rvi_ij is not None:
        t_show, image = an.display_image()
        written.append(bullseye.render_sector_overlay_png(
            image, an.segments, an.seg.reference_mask, an.center_ij, an.a_rvi_ij, an.level,
            outdir / f"{an.name}_sectors.png", (an.series.spacing[0], an.series.spacing[1]), an.i_rvi_ij,
            an.seen_from_apex, title=f"{an.name} ({an.condition})",
            rvi_source=an.rvi_source, direction=an.series.direction, orientation_known=an.series.orientation_known,
            frames=(t_show, int(an.seg.reference_frame)), rvi_trust=an.rvi_trust))
    written += write_markups(rvi_landmarks(an), outdir / f"{an.name}_rvi.mrk.json", if_exists="backup")
    return written


def study_label(names: list[str]) -> str:
    """The words the series names start with (e.g. the patient id; the series of a multi-slice series' slices
    ``<series>_slice<k>``), or the single name (:func:`CardiacLandmarksLib.io.outputs.common_name`)."""
    from CardiacLandmarksLib.io.outputs import common_name

    return common_name(names)


def write_report(analyses: list[SliceAnalysis], summary: dict, outdir: str | Path, model_card: dict | None = None,
                 model_sha: str = "", failed: list[tuple[str, str]] | None = None) -> list[Path]:
    """Write every report file into ``outdir``; returns the paths written.

    ``failed``: ``(series, error)`` of inputs not analysed, named in ``report.json``. A series whose own
    files cannot be written (label maps, sector PNG, markups) is named there too (``"<series>: outputs not
    written (...)"``) and the rest of the report is written.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    not_written: list[str] = []
    for an in analyses:
        try:
            written += write_series_outputs(an, outdir)
        except (OSError, ValueError, RuntimeError) as exc:
            logger.exception("%s: series outputs not written", an.name)
            not_written.append(f"{an.name}: outputs not written ({type(exc).__name__}: {exc})")
    rep = report_dict(analyses, summary, model_card, model_sha, failed)
    rep["warnings"] += not_written
    head = [atomic_write_text(outdir / "report.json", json.dumps(rep, indent=2, allow_nan=False) + "\n"),
            atomic_write_text(outdir / "report.csv", report_csv_text(rep))]
    head.append(render_report_bullseye(summary, outdir / "bullseye.png", study_label([a.name for a in analyses]),
                                       analyses))
    return head + written
