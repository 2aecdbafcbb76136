"""Long-axis figure: landmarks on the ED and ES frames and the LV-length curve (PNG, matplotlib).

:func:`render_lax_png` draws, for one long-axis slice: the ED frame and the ES frame (phases of
:func:`.lax_measurements.lv_length_curve`) with the mitral points, their midpoint, the APEX
and the LV-length line (high-confidence points as ``+``, low ones as ``x`` in orange,
optional reference points as green circles), and the LV length over all phases with the
ED/ES phases and the low-confidence phases marked. The file is written atomically.
"""

from __future__ import annotations

import io
import logging
import textwrap
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.core.landmarks import LANDMARKS_BY_VIEW, LandmarkSet
from CardiacLandmarksLib.core.orientation import draw_orientation, orientation_text
from CardiacLandmarksLib.io.atomic import atomic_write_bytes
from CardiacLandmarksLib.io.outputs import agg_figure, source_label
from CardiacLandmarksLib.lax.measurements import LVLengthCurve, lv_length_curve

logger = logging.getLogger(__name__)

_COLOURS = {0: "#00d5ff", 1: "#ffd000", 2: "#ff40ff"}
#: title colour of a value whose status is review
_REVIEW = "#b35900"


def _points(lmset: LandmarkSet, names, k: int, t: int) -> dict:
    out = {}
    for n in names:
        lm = lmset.get(n, k, t)
        if lm is not None and lm.found and np.all(np.isfinite(lm.ijk[:2])):
            out[n] = (np.asarray(lm.ijk[:2], float), lm.flag)
    return out


def render_lax_png(
    series,
    lmset: LandmarkSet,
    path: str | Path,
    *,
    k: int | None = None,
    curve: LVLengthCurve | None = None,
    reference: dict[int, dict[str, np.ndarray]] | None = None,
    title: str | None = None,
    if_exists: str = "overwrite",
) -> Path:
    """Write the ED/ES + LV-length figure of one long-axis slice.

    Args:
        series: the cine :class:`~.series.CMRSeries` the landmarks belong to (``ijk`` used).
        lmset: long-axis landmarks with ``ijk``.
        path: output ``.png``.
        k: slice (default: the curve's, or the first slice with landmarks).
        curve: precomputed :class:`LVLengthCurve` (default: :func:`lv_length_curve` of ``lmset``).
        reference: optional ``{phase: {name: (i, j)}}`` reference points drawn as circles.
        title: figure title (default: source file name).
        if_exists: see :func:`.fileio.atomic_write_bytes`.

    Returns:
        The path written.
    """
    from matplotlib.ticker import MaxNLocator

    curve = curve or lv_length_curve(lmset, k=k, n_phases=series.n_phases)
    k = curve.slice if k is None else k
    names = LANDMARKS_BY_VIEW[curve.view]
    fig = agg_figure(figsize=(15, 5.2))  # (drawn in the review app's worker threads and in Slicer)
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.25]})
    letters = None  # the compass letters drawn (the same on both panels: one slice)
    for ax, (label, t) in zip(axes[:2], (("ED", curve.ed_phase), ("ES", curve.es_phase))):
        ax.set_axis_off()
        if t is None:
            ax.set_title(f"{label}: not available")
            continue
        img = series.pixels[t, k]
        lo, hi = np.percentile(img, [1, 99.5])
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="bilinear")
        pts = _points(lmset, names, k, t)
        for n, name in enumerate(names):
            if name not in pts:
                continue
            (i, j), flag = pts[name]
            ax.plot(i, j, "+" if flag == "high" else "x", color=_COLOURS[n] if flag == "high" else "#ff8000",
                    ms=13, mew=2)
            ax.annotate(name, (i, j), xytext=(6, -6), textcoords="offset points", color=_COLOURS[n], fontsize=8)
        if all(n in pts for n in names):
            mid = (pts[names[0]][0] + pts[names[1]][0]) / 2.0
            ax.plot([pts[names[0]][0][0], pts[names[1]][0][0]], [pts[names[0]][0][1], pts[names[1]][0][1]],
                    "-", color="#00d5ff", lw=0.8)
            ax.plot([mid[0], pts["APEX"][0][0]], [mid[1], pts["APEX"][0][1]], "-", color="#ff40ff", lw=1.2)
        for p in (reference or {}).get(t, {}).values():
            ax.plot(p[0], p[1], "o", mfc="none", mec="#30ff30", ms=10, mew=1.5)
        all_ij = np.array([v[0] for v in pts.values()]) if pts else None
        if all_ij is not None:
            c = all_ij.mean(axis=0)
            half = max(40.0 / float(series.spacing[0]), 1.2 * np.abs(all_ij - c).max())
            ax.set_xlim(c[0] - half, c[0] + half)
            ax.set_ylim(c[1] + half, c[1] - half)
        letters = draw_orientation(ax, series.direction, bool(getattr(series, "orientation_known", False)),
                                   corner=(0.9, 0.88))
        length = curve.lengths_mm[t]
        m = next((x for x in curve.length_measurements if x.phase == t), None)
        text = f"{label} (phase {t}): LV length {length:.1f} mm" if np.isfinite(length) else f"{label} (phase {t})"
        if m is not None and m.status != "ok":
            text += "\n" + "\n".join(textwrap.wrap("\u2014 " + m.caveat(), 48))
        ax.set_title(text, color="black" if m is None or m.status == "ok" else _REVIEW, fontsize=10)
    ax = axes[2]
    ph, le = curve.phases, curve.lengths_mm
    ax.plot(ph, le, "-o", color="#1f5fbf", ms=4, label="LV length")
    if curve.low_phases:
        lp = np.array(curve.low_phases)
        ax.plot(lp, le[lp], "x", color="#ff8000", ms=8, mew=2, label="low confidence (status review)")
    for t, lab, col in ((curve.ed_phase, "ED", "#2a9d2a"), (curve.es_phase, "ES", "#c0392b")):
        if t is not None:
            ax.axvline(t, color=col, ls="--", lw=1)
            ax.annotate(lab, (t, np.nanmax(le) if np.isfinite(le).any() else 0), color=col)
    ax.set_xlabel("phase")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # phases are whole numbers (a 2-frame pair too)
    ax.set_ylabel("LV length (mm)")
    sh = curve.shortening_pct
    sh_txt = f"Longitudinal shortening {sh:.1f}%" if np.isfinite(sh) else "Longitudinal shortening: n/a"
    if curve.shortening is not None and curve.shortening.status != "ok":
        sh_txt += f" ({curve.shortening.status})\n" + "\n".join(textwrap.wrap("\u2014 " + curve.shortening.caveat(), 60))
    ax.set_title(sh_txt, fontsize=10,
                 color=_REVIEW if curve.shortening is not None and curve.shortening.status != "ok" else "black")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)  # "lower right" hid the ES point of a falling ED -> ES pair
    fig.suptitle(title or f"{source_label(series.source)} - {curve.view.upper()} slice {k}", fontsize=11)
    fig.text(0.5, 0.01, orientation_text(bool(getattr(series, "orientation_known", False)), letters) +
             ". Orange x = a point flagged low: check the value.", ha="center", fontsize=8, color="#404040")
    fig.tight_layout(rect=(0, 0.03, 1, 0.96))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return atomic_write_bytes(path, buf.getvalue(), if_exists=if_exists)
