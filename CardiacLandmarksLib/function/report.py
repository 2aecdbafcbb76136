"""Files written by the function analysis (all atomically, existing files kept as backups by default).

Into ``OUTDIR``:

* ``function.json``: ``{"LV": {"EDV_ml": .., "ESV_ml", "SV_ml", "EF_pct", "mass_g", "EDV_index_ml_m2", ...,
  "status": {name: ok|review|n/a}, "flags": {name: [...]}, "source": {name: text}}, "RV": {...},
  "ed_phase", "es_phase", "mode", "bsa_m2", "model", "flags", "uncertain_share", "slice_areas_mm2", "volume_curve_ml",
  "segmentations"}``;
* ``function.csv``: ``Metric,Value,Unit,Status,Check`` (e.g. ``LV EDV,152.3,ml,ok,``; ``Check`` says what to
  look at for a ``review`` value);
* ``<stem>_segmentation.nii.gz`` per input: labels 1 RV cavity, 2 LV myocardium, 3 LV cavity on
  the input's grid and LPS geometry; for a cine **one 4-D file** (i, j, k, phase);
* ``<stem>_segmentation.seg.nrrd`` (two volumes) or ``<stem>_ED.seg.nrrd`` and
  ``<stem>_ES.seg.nrrd`` (cine): the same labels as a 3D Slicer segmentation with standard
  terminology (SNOMED CT codes of the 3D Slicer General Anatomy list), names and colours,
  written with ``slicerio``;
* ``function_overlay.png``: ED and ES contours on every slice;
* ``volume_curve.png``: LV and RV cavity volume over the cycle (cine only).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.core.landmarks import LandmarkSet
from CardiacLandmarksLib.core.orientation import draw_orientation
from CardiacLandmarksLib.function.measurements import review_reasons
from CardiacLandmarksLib.io.atomic import atomic_write_bytes, atomic_write_text
from CardiacLandmarksLib.io.image import image_file_bytes
from CardiacLandmarksLib.io.outputs import agg_figure

logger = logging.getLogger(__name__)

_CATEGORY = ["SCT", "123037004", "Anatomical Structure"]
_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
#: label value -> (segment name, SNOMED CT type code, colour RGB 0-1)
SEGMENTS = {
    1: ("RV cavity", ["SCT", "53085002", "Right ventricle"], (0.36, 0.58, 0.90)),
    2: ("LV myocardium", ["SCT", "74281007", "Myocardium"], (0.35, 0.78, 0.35)),
    3: ("LV cavity", ["SCT", "87878005", "Left ventricle"], (0.90, 0.30, 0.25)),
}
ROWS = [("LV", "EDV_ml", "LV EDV"), ("LV", "ESV_ml", "LV ESV"), ("LV", "SV_ml", "LV SV"), ("LV", "EF_pct", "LV EF"),
        ("LV", "mass_g", "LV mass"), ("LV", "EDV_index_ml_m2", "LV EDV index"), ("LV", "ESV_index_ml_m2", "LV ESV index"),
        ("LV", "SV_index_ml_m2", "LV SV index"), ("LV", "mass_index_g_m2", "LV mass index"),
        ("RV", "EDV_ml", "RV EDV"), ("RV", "ESV_ml", "RV ESV"), ("RV", "SV_ml", "RV SV"), ("RV", "EF_pct", "RV EF"),
        ("RV", "EDV_index_ml_m2", "RV EDV index"), ("RV", "ESV_index_ml_m2", "RV ESV index"),
        ("RV", "SV_index_ml_m2", "RV SV index")]


def _r(x, nd: int = 2):
    if x is None:
        return None
    x = float(x)
    return round(x, nd) if math.isfinite(x) else None


def function_table(result) -> list[tuple[str, float | None, str, str, str]]:
    """``[(metric, value, unit, status, check)]`` rows in the order of the CSV and the Slicer table; ``check`` says
    what to look at when the value is ``review`` (:meth:`.measurements.Value.check_text`), else ``""``."""
    rows = []
    for vent, key, label in ROWS:
        v = result.values[vent].get(key)
        if v is not None:
            rows.append((label, _r(v.value), v.unit, v.status, v.check_text()))
    if result.bsa_m2:
        rows.append(("BSA (Mosteller)", _r(result.bsa_m2), "m2", "ok", ""))
    if result.mode == "cine":
        rows.append(("ED phase", result.ed_phase, "index", "ok", ""))
        rows.append(("ES phase", result.es_phase, "index", "ok", ""))
    return rows


def function_dict(result, files: dict | None = None) -> dict:
    """The ``function.json`` content as a dict (values rounded to 0.01)."""
    out: dict = {}
    for vent in ("LV", "RV"):
        d: dict = {}
        for name, v in result.values[vent].items():
            d[name] = _r(v.value)
        d["status"] = {n: v.status for n, v in result.values[vent].items()}
        d["flags"] = {n: list(v.flags) for n, v in result.values[vent].items()}
        d["source"] = {n: v.source for n, v in result.values[vent].items()}
        out[vent] = d
    out.update({
        "ed_phase": int(result.ed_phase), "es_phase": int(result.es_phase), "mode": result.mode,
        "bsa_m2": _r(result.bsa_m2, 3), "height_cm": result.options.height_cm, "weight_kg": result.options.weight_kg,
        "model": dict(result.model), "flags": list(result.flags), "inputs": [str(s.source) for s in result.series],
        # each input's DICOM series (a study folder holds others too), so a reader of this file loads that one again
        "input_series_uids": [LandmarkSet.source_of(s)["source_series_uids"] for s in result.series],
        "spacing_mm": [_r(x, 4) for x in result.spacing],
        "method": "slice summation (area x slice spacing); mass = 1.05 g/ml x LV myocardial volume at ED; "
                  "largest connected component per ventricle" if result.options.clean else
                  "slice summation (area x slice spacing); mass = 1.05 g/ml x LV myocardial volume at ED",
        "uncertain_share": result.uncertainty,
        "slice_areas_mm2": {ph: {s: [_r(a, 1) for a in arr] for s, arr in d.items()} for ph, d in result.slice_areas.items()},
        "volume_curve_ml": ({s: [_r(a) for a in arr] for s, arr in result.curve.items()} if result.curve is not None else None),
    })
    if files:
        out["files"] = files
    return out


def function_csv_text(result) -> str:
    """``function.csv`` as text: header ``Metric,Value,Unit,Status,Check`` and one row per value of
    :func:`function_table` (an empty Value cell for n/a; Check says what to look at when the status is not ok).
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["Metric", "Value", "Unit", "Status", "Check"])
    for metric, value, unit, status, check in function_table(result):
        w.writerow([metric, "" if value is None else value, unit, status, check])
    return buf.getvalue()


def labels_image(series, labels: np.ndarray):
    """SimpleITK image of labels ``[t, k, j, i]`` in ``series``' LPS geometry: 3-D when t == 1, else 4-D."""
    import SimpleITK as sitk

    lab = np.ascontiguousarray(np.asarray(labels, np.uint8))
    d = np.asarray(series.direction, float)
    sp = [float(x) for x in series.spacing]
    origin = [float(x) for x in np.asarray(series.slice_origins)[0]]
    if lab.shape[0] == 1:
        img = sitk.GetImageFromArray(lab[0])
        img.SetSpacing(sp)
        img.SetOrigin(origin)
        img.SetDirection(d.ravel().tolist())
        return img
    img = sitk.GetImageFromArray(lab, isVector=False)
    d4 = np.eye(4)
    d4[:3, :3] = d
    tt = series.trigger_times
    dt = float(np.median(np.diff(tt))) if tt is not None and len(tt) > 1 and np.all(np.isfinite(tt)) else 1.0
    img.SetSpacing(sp + [dt if dt > 0 else 1.0])
    img.SetOrigin(origin + [0.0])
    img.SetDirection(d4.ravel().tolist())
    return img


def ijk_to_lps_matrix(series) -> np.ndarray:
    """4 x 4 voxel (i, j, k) -> LPS mm matrix of ``series`` (uniform slice spacing along ``direction[:, 2]``)."""
    m = np.eye(4)
    d = np.asarray(series.direction, float)
    m[:3, :3] = d * np.asarray(series.spacing, float)[None, :]
    m[:3, 3] = np.asarray(series.slice_origins, float)[0]
    return m


def segmentation_nrrd_bytes(series, labels_kji: np.ndarray) -> bytes:
    """A ``.seg.nrrd`` (3D Slicer segmentation) of one label volume ``[k, j, i]``, via ``slicerio``."""
    import slicerio

    lab = np.asarray(labels_kji, np.uint8)
    seg = slicerio.segmentation.create_segmentation(lab.shape[::-1], ijk_to_lps_matrix(series))
    vox = lab.transpose(2, 1, 0)  # slicerio voxels are [i, j, k]
    for value, (name, code, colour) in SEGMENTS.items():
        slicerio.segmentation.add_segment(seg, vox == value, {
            "id": name.replace(" ", "_"), "name": name, "color": list(colour),
            "terminology": {"contextName": _CONTEXT, "category": list(_CATEGORY), "type": list(code)}})
    fd, tmp = tempfile.mkstemp(suffix=".seg.nrrd")
    os.close(fd)
    try:
        slicerio.segmentation.write_segmentation(tmp, seg)
        return _without_write_time(Path(tmp).read_bytes())
    finally:
        Path(tmp).unlink(missing_ok=True)


def _without_write_time(nrrd: bytes) -> bytes:
    """The NRRD bytes without the header comment ``# on <date time>(GMT).`` that pynrrd writes: with it, the same
    segmentation written twice differed, so every re-run (``study`` into its folder, ``batch --redo``) kept both
    .seg.nrrd files in its backup as changed. A comment line only; the header fields and data are untouched."""
    head, sep, data = nrrd.partition(b"\n\n")
    lines = [ln for ln in head.split(b"\n") if not (ln.startswith(b"# on ") and ln.endswith(b"(GMT)."))]
    return b"\n".join(lines) + sep + data


def _fig_bytes(fig, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def render_overlay_png(result, dpi: int = 90) -> bytes:
    """PNG bytes: for every slice, the ED and ES images side by side with the RV cavity, LV
    myocardium (endo- and epicardium) and LV cavity contours; stored orientation (i right, j down),
    physical aspect, one crop around the segmented heart with 20 mm margin."""
    ed_img, es_img = result.ed_image(), result.es_image()
    ed_lab, es_lab = result.ed_labels(), result.es_labels()
    n_k, n_j, n_i = ed_img.shape
    si, sj = result.spacing[0], result.spacing[1]
    heart = (ed_lab > 0).any(axis=0) | (es_lab > 0).any(axis=0)
    if heart.any():
        jj, ii = np.nonzero(heart)
        m_i, m_j = 20.0 / si, 20.0 / sj
        x0, x1 = max(0, ii.min() - m_i), min(n_i - 1, ii.max() + m_i)
        y0, y1 = max(0, jj.min() - m_j), min(n_j - 1, jj.max() + m_j)
    else:
        x0, x1, y0, y1 = 0, n_i - 1, 0, n_j - 1
    per_row = 4
    rows = math.ceil(n_k / per_row)
    fig = agg_figure(figsize=(2 * per_row * 1.9, rows * 2.1 + 0.6))
    colours = {v: c for v, (_, _, c) in SEGMENTS.items()}
    for k in range(n_k):
        for col, (img, lab, tag) in enumerate(((ed_img, ed_lab, "ED"), (es_img, es_lab, "ES"))):
            ax = fig.add_subplot(rows, 2 * per_row, (k // per_row) * 2 * per_row + (k % per_row) * 2 + col + 1)
            sl = img[k]
            lo, hi = np.percentile(sl, [0.5, 99.5])
            ax.imshow(sl, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, aspect=sj / si, interpolation="nearest")
            for value, mask in ((1, lab[k] == 1), (3, lab[k] == 3), (2, (lab[k] == 2) | (lab[k] == 3))):
                if mask.any():
                    ax.contour(mask.astype(float), levels=[0.5], colors=[colours[value]], linewidths=0.9)
            ax.set_xlim(x0, x1)
            ax.set_ylim(y1, y0)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"k={k} {tag}", fontsize=7, pad=2)
            if k == 0 and col == 0:  # every slice of the stack shares the first one's orientation
                s0 = result.series[0]
                draw_orientation(ax, s0.direction, bool(getattr(s0, "orientation_known", False)),
                                 corner=(0.76, 0.72), length=0.1, fontsize=8, n=3)
    lv, rv = result.values["LV"], result.values["RV"]

    def fmt(v):
        return "n/a" if v.value is None else f"{v.value:.0f}{' ' + v.unit if v.unit != '%' else '%'}" + \
            ("" if v.status == "ok" else f" ({v.status})")
    checks = review_reasons(result.values)  # what to check for the values marked review, each reason once
    phases = (f"ED phase {result.ed_phase} | ES phase {result.es_phase}" if result.mode == "cine"
              else f"ED {result.names[0]} | ES {result.names[1]}")
    fig.suptitle(f"{phases}   LV EDV {fmt(lv['EDV_ml'])}, ESV "
                 f"{fmt(lv['ESV_ml'])}, EF {fmt(lv['EF_pct'])}, mass {fmt(lv['mass_g'])}   RV EDV {fmt(rv['EDV_ml'])}, "
                 f"EF {fmt(rv['EF_pct'])}\n"
                 + (f"{'; '.join(checks)}\n" if checks else "")
                 + "contours: blue RV cavity, green LV epicardium, red LV endocardium "
                 f"(model {result.model.get('name')} {result.model.get('version')}); arrows on the first panel: "
                 "patient anterior (A), left (L), head (S)", fontsize=8)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - (0.7 if checks else 0.55) / fig.get_figheight(),
                        wspace=0.04, hspace=0.18)
    return _fig_bytes(fig, dpi)


def render_volume_curve_png(result, dpi: int = 100) -> bytes:
    """PNG bytes of the LV and RV cavity volume over the cycle (cine), ED and ES marked."""
    curve = result.curve
    s = result.series[0]
    t = np.arange(len(curve["LV cavity"]))
    tt = s.trigger_times
    use_ms = tt is not None and len(tt) == len(t) and np.all(np.isfinite(tt))
    x = np.asarray(tt, float) if use_ms else t
    fig = agg_figure(figsize=(6, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(x, curve["LV cavity"], "o-", color=SEGMENTS[3][2], label="LV cavity")
    ax.plot(x, curve["RV cavity"], "s-", color=SEGMENTS[1][2], label="RV cavity")
    for p, tag in ((result.ed_phase, "ED"), (result.es_phase, "ES")):
        ax.axvline(x[p], color="0.5", lw=0.8, ls="--")
        ax.annotate(f"{tag} ({p})", (x[p], ax.get_ylim()[1]), fontsize=8, ha="center", va="top")
    ax.set_xlabel("trigger time (ms)" if use_ms else "phase index")
    ax.set_ylabel("volume (ml)")
    ef = result.values["LV"]["EF_pct"].value
    ax.set_title(f"Cavity volumes over the cycle (LV EF {ef:.0f}%)" if ef is not None else "Cavity volumes", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _fig_bytes(fig, dpi)


def write_outputs(result, outdir: str | Path, if_exists: str = "backup") -> list[Path]:
    """Write every file listed in the module docstring into ``outdir``; returns the paths written."""
    import SimpleITK as sitk  # noqa: F401  (fail early when missing)

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    files: dict = {"segmentation": [], "slicer_segmentation": []}

    def put(name: str, data: bytes) -> None:
        written.append(atomic_write_bytes(outdir / name, data, if_exists=if_exists))

    for s, lab, name in zip(result.series, result.labels, result.names):
        fname = f"{name}_segmentation.nii.gz"
        put(fname, image_file_bytes(labels_image(s, lab), ".nii.gz"))
        files["segmentation"].append(fname)
    if result.mode == "cine":
        s, name = result.series[0], result.names[0]
        for tag, lab in (("ED", result.ed_labels()), ("ES", result.es_labels())):
            fname = f"{name}_{tag}.seg.nrrd"
            put(fname, segmentation_nrrd_bytes(s, lab))
            files["slicer_segmentation"].append(fname)
    else:
        for s, lab, name in zip(result.series, result.labels, result.names):
            fname = f"{name}_segmentation.seg.nrrd"
            put(fname, segmentation_nrrd_bytes(s, lab[0]))
            files["slicer_segmentation"].append(fname)
    put("function_overlay.png", render_overlay_png(result))
    files["overlay"] = "function_overlay.png"
    if result.curve is not None:
        put("volume_curve.png", render_volume_curve_png(result))
        files["volume_curve"] = "volume_curve.png"
    written.append(atomic_write_text(outdir / "function.csv", function_csv_text(result), if_exists=if_exists))
    written.append(atomic_write_text(outdir / "function.json",
                                     json.dumps(function_dict(result, files), indent=2, allow_nan=False) + "\n",
                                     if_exists=if_exists))
    logger.info("wrote %d files to %s", len(written), outdir)
    return written
