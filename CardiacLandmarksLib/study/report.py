"""The study report: ``study.json``, ``routing.txt`` and a one-page ``summary.png``.

``summary.png`` (landscape, one page) holds:

* the title: study, status (ok / review / n/a), number of series, analyses run, and how many points a reader
  set (``reader_points`` of the result: a review applied or carried from an earlier run);
* the routing table: every series -> view / sequence -> analysis, or the reason it is listed only;
* the key values with their status (green ok, orange review, grey n/a), including the
  long-axis vs SAX cross-checks;
* pictures: the SAX mid slice at ED with its landmarks; each long-axis view at ED with its
  mitral points, apex and the lines where the SAX slices with LV cut it (basal and apical
  ones marked, so the cross-check can be seen); the function analysis' mid slice at ED and ES with its
  contours and LV EF; the perfusion bull's-eye when one was made.

Images are drawn as stored (i to the right, j down) with their physical pixel aspect.
"""

from __future__ import annotations

import io
import logging
import textwrap
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.core.orientation import draw_orientation
from CardiacLandmarksLib.io.atomic import atomic_write_bytes, atomic_write_text
from CardiacLandmarksLib.io.jsonsafe import dumps_strict
from CardiacLandmarksLib.io.outputs import agg_figure
from CardiacLandmarksLib.study.routing import fit_text as _fit

logger = logging.getLogger(__name__)

_STATUS_COLOUR = {"ok": "#1a7f37", "review": "#c2410c", "n/a": "#6b7280"}
_FLAG_COLOUR = {"high": "#22c55e", "low": "#f97316"}


def write_study_report(result, outdir: Path) -> list[Path]:
    """Write ``study.json``, ``routing.txt`` and ``summary.png`` of a :class:`~.analyse.StudyResult`.

    Returns:
        the paths written (atomic writes; an existing report is replaced).
    """
    outdir.mkdir(parents=True, exist_ok=True)
    d = result.to_dict()
    written = [atomic_write_text(outdir / "study.json", dumps_strict(d) + "\n"),
               atomic_write_text(outdir / "routing.txt", "\n".join(
                   [result.routing.table(), *(f"note: {n}" for n in result.routing.notes)]) + "\n")]
    try:
        written.append(atomic_write_bytes(outdir / "summary.png", render_summary_png(result, outdir)))
    except Exception:  # noqa: BLE001 - the picture must never lose the JSON report
        logger.exception("summary picture of %s failed", result.routing.path)
    return written


def _window(img: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(img, [0.5, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1)


def _show(ax, img: np.ndarray, spacing) -> None:
    lo, hi = _window(img)
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, aspect=float(spacing[1]) / float(spacing[0]),
              interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])


#: image panels under the key values at most (the reference SAX stack, long-axis views, function, perfusion ...)
MAX_PANELS = 4


def _choose_panels(panels: list) -> list:
    """At most :data:`MAX_PANELS` of the page's image panels (``(kind, ...)`` in page order: the reference SAX stack
    first, other SAX stacks, long-axis views, function, perfusion): a second SAX stack (an LGE stack, whose values
    are in the key values) gives way first, so that a full study keeps its long-axis, function and perfusion panels
    (the perfusion bull's-eye was the one left out); the page order is kept."""
    if len(panels) <= MAX_PANELS:
        return list(panels)
    keep = sorted(range(len(panels)), key=lambda i: (panels[i][0] == "sax" and i > 0, i))[:MAX_PANELS]
    return [panels[i] for i in sorted(keep)]


def _compass(ax, series, n: int = 2) -> None:
    """The orientation compass of the image panels (:func:`CardiacLandmarksLib.core.orientation.draw_orientation`),
    as on the analyses' own figures: the panels show each image as stored (rows down), so without it a reader
    cannot tell anterior or the patient's left on the page. Nothing when the series is unknown."""
    if series is None or getattr(series, "direction", None) is None:
        return
    draw_orientation(ax, series.direction, bool(getattr(series, "orientation_known", False)), corner=(0.88, 0.86),
                     length=0.07, fontsize=9, n=n)


def _sax_panel(ax, series, lmset, key) -> None:
    from CardiacLandmarksLib.study.tasks import sax_mid_slice, sax_phase_word

    k = sax_mid_slice(lmset, 0)
    if k is None:
        k = series.n_slices // 2
    _show(ax, series.pixels[0, k], series.spacing)
    pts = {}
    for lm in lmset.landmarks:
        if lm.slice == k and lm.phase == 0 and lm.found:
            i, j = lm.ijk[0], lm.ijk[1]
            pts[lm.name] = (i, j)
            ax.plot(i, j, "o", ms=6, mfc="none", mew=1.8, color=_FLAG_COLOUR.get(lm.flag, "w"))
            ax.annotate(lm.name, (i, j), xytext=(4, -4), textcoords="offset points", color="yellow", fontsize=7)
    if "C-LV" in pts:
        for n in ("A-RVI", "I-RVI"):
            if n in pts:
                ax.plot(*zip(pts["C-LV"], pts[n]), "-", color="cyan", lw=0.8)
        ci, cj = pts["C-LV"]
        r = 55.0 / series.spacing[0]
        ax.set_xlim(ci - r, ci + r)
        ax.set_ylim(cj + r, cj - r)
    _compass(ax, series, n=3)  # all three, as the overlay: its RVI angle is measured from A, A-RVI named by S
    from CardiacLandmarksLib.sax.report import measurement_label

    m = next((m for m in lmset.measurements if m.name == "RVI angle" and m.slice == k and m.phase == 0), None)
    # with its trust, as the overlay's panel titles: "RVI 155° — check orientation" (orange) unless ok
    ax.set_title(f"SAX {key}: slice {k}, {sax_phase_word(series)}" + (f", {measurement_label(m)}" if m is not None else ""), fontsize=8,
                 color="k" if m is None or m.status == "ok" else _STATUS_COLOUR.get(m.status, "k"))


def _function_panel(ax, fres, key) -> None:
    """The function analysis at a glance: its mid-ventricular slice at ED and at ES side by side (one
    crop, physical aspect) with the RV cavity, LV epicardium and LV
    endocardium contours, and LV EF with its status in the title. The crop is a square around both phases'
    structures with 15 mm to spare (55 mm each side of its centre at least). The analysis' own every-slice picture
    (``*_function_overlay.png``) is too dense to read at the size of one panel."""
    from CardiacLandmarksLib.function.report import SEGMENTS

    ed_img, es_img = fres.ed_image(), fres.es_image()
    ed_lab, es_lab = fres.ed_labels(), fres.es_labels()
    si, sj = float(fres.spacing[0]), float(fres.spacing[1])
    with_lv = np.nonzero((ed_lab == 3).any(axis=(1, 2)))[0]
    k = int(with_lv[len(with_lv) // 2]) if len(with_lv) else ed_img.shape[0] // 2
    n_j, n_i = ed_img.shape[1:]
    heart = (ed_lab[k] > 0) | (es_lab[k] > 0)
    if heart.any():  # a square around both phases' structures, 15 mm beyond them (at least 55 mm each side)
        jj, ii = np.nonzero(heart)
        cj, ci = int(round((jj.min() + jj.max()) / 2)), int(round((ii.min() + ii.max()) / 2))
        half_mm = max(55.0, (ii.max() - ii.min()) * si / 2 + 15.0, (jj.max() - jj.min()) * sj / 2 + 15.0)
    else:
        cj, ci, half_mm = n_j // 2, n_i // 2, 55.0
    ri, rj = int(round(half_mm / si)), int(round(half_mm / sj))
    i0, i1 = max(0, ci - ri), min(n_i, ci + ri + 1)
    j0, j1 = max(0, cj - rj), min(n_j, cj + rj + 1)
    gap = max(1, (i1 - i0) // 40)

    def side_by_side(a, b, fill):
        """The crops of slices ``a`` and ``b`` (``[j, i]``) with a gap of ``fill`` between them."""
        pad = np.full((j1 - j0, gap), fill, dtype=a.dtype)
        return np.concatenate([a[j0:j1, i0:i1], pad, b[j0:j1, i0:i1]], axis=1)

    def windowed(img):  # each phase windowed on its own slice, then shown on one [0, 1] scale
        lo, hi = _window(img)
        return np.clip((img - lo) / (hi - lo), 0, 1)

    ax.imshow(side_by_side(windowed(ed_img[k]), windowed(es_img[k]), 1.0), cmap="gray", vmin=0, vmax=1,
              aspect=sj / si, interpolation="bilinear")
    lab = side_by_side(ed_lab[k], es_lab[k], 0)
    colours = {v: c for v, (_, _, c) in SEGMENTS.items()}
    for value, mask in ((1, lab == 1), (3, lab == 3), (2, (lab == 2) | (lab == 3))):
        if mask.any():
            ax.contour(mask.astype(float), levels=[0.5], colors=[colours[value]], linewidths=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    _compass(ax, (getattr(fres, "series", None) or [None])[0], n=3)
    ef = fres.values["LV"]["EF_pct"]
    ef_text = "n/a" if ef.value is None else f"{ef.value:.0f}%" + ("" if ef.status == "ok" else f" ({ef.status})")
    ax.set_title(f"function {key}: slice {k}, ED | ES; LV EF {ef_text}\n"
                 "blue RV cavity, green LV epicardium, red LV endocardium", fontsize=8)


def _lax_panel(ax, series, lmset, key, view, sax_series=None, sax_lmset=None, geo=None) -> None:
    from CardiacLandmarksLib.study.crosscheck import _ed_phase, sax_lines_in_lax

    t = _ed_phase(lmset)
    _show(ax, series.pixels[t, 0], series.spacing)
    with_sax = sax_series is not None and sax_lmset is not None
    if with_sax:
        ks = sorted({lm.slice for lm in sax_lmset.landmarks if lm.name == "C-LV" and lm.phase == 0 and lm.found})
        for k, line in sax_lines_in_lax(sax_series, series, ks):
            special = geo and k in (geo.get("basal_sax_slice"), geo.get("apical_sax_slice"))
            ax.plot(line[:, 0], line[:, 1], "-", color="magenta" if special else "#60a5fa",
                    lw=1.0 if special else 0.5, alpha=0.9 if special else 0.6)
    for lm in lmset.landmarks:
        if lm.slice == 0 and lm.phase == t and lm.found:
            ax.plot(lm.ijk[0], lm.ijk[1], "o", ms=6, mfc="none", mew=1.8, color=_FLAG_COLOUR.get(lm.flag, "w"))
            ax.annotate(lm.name, (lm.ijk[0], lm.ijk[1]), xytext=(4, -4), textcoords="offset points",
                        color="yellow", fontsize=7)
    rows, cols = series.shape_ji
    ax.set_xlim(0, cols - 1)
    ax.set_ylim(rows - 1, 0)
    _compass(ax, series)
    ax.set_title(f"{view.upper()} {key}: ED (phase {t})"
                 + ("\nSAX slices with LV in blue (basal/apical magenta)" if with_sax else "\nno SAX stack to cross-check"),
                 fontsize=8)


def _companions(kvs: list) -> dict:
    """``{name: key value}`` of the key values the summary page shows on another's line, in brackets
    (:data:`~.tasks.SHOWN_WITH`: an index beside its volume or mass, the stroke volume beside the EF), when both are
    there with one status; the console and ``study.json`` keep every value on its own."""
    from CardiacLandmarksLib.study.tasks import SHOWN_WITH

    by_name = {kv.name: kv for kv in kvs}
    out = {}
    for name, host in SHOWN_WITH.items():
        c, h = by_name.get(name), by_name.get(host)
        if c is not None and h is not None and c.to_dict()["status"] == h.to_dict()["status"]:
            out[name] = h
    return out


#: the summary's top block (routing table, key values) in points: at least, at most (then the key values go on
#: under the routing table); the image panels below take the rest of the page
TOP_BLOCK_PT = (110.0, 262.0)


#: characters per line of a value's "check ..." text on the summary (7.5 pt monospace in the right-hand column)
CHECK_WIDTH = 74


def _key_value_lines(result) -> list[tuple[str, float, str, float]]:
    """The key-value lines of the summary: ``(text, font size, colour, line step in points)``; each not-ok value
    with what to check under it (on up to three lines of :data:`CHECK_WIDTH` characters) (``KeyValue.check_text``: the doubtful points by name), an index or SV on the line
    of its host value (:func:`_companions`), then up to three study errors (on up to two lines each)."""
    lines = []
    kvs = result.key_values()
    shown_with = _companions(kvs)
    for kv in kvs:
        if kv.name in shown_with:
            continue  # on the line of the value it goes with
        d = kv.to_dict()
        colour = _STATUS_COLOUR.get(d["status"], "k")
        # "LV EDV: 113.7 ml  (62.6 ml/m2)", "LV EF: 59.4 %  (SV 67.5 ml)"
        extra = "".join(f"  ({'SV ' if c.name.endswith(' SV') else ''}{c.value_text()})"
                        for c in kvs if shown_with.get(c.name) is kv)
        lines.append((f"{d['status']:>6}  {_fit(kv.name, 52)}: {kv.value_text()}{extra}", 8.5, colour, 10.5))
        if d["check"]:  # on up to three lines (cut at one, the doubtful points past the 74th character were lost)
            parts = textwrap.wrap(d["check"], CHECK_WIDTH)
            if len(parts) > 3:
                parts = parts[:2] + [_fit(" ".join(parts[2:]), CHECK_WIDTH)]
            lines += [(" " * 8 + part, 7.5, "#555555", 9.5) for part in parts]
    for err in result.errors[:3]:  # on up to two lines (the second series of a study of two patients was cut off)
        parts = textwrap.wrap(err, 66) or [""]
        if len(parts) > 2:
            parts = [parts[0], _fit(" ".join(parts[1:]), 66)]
        lines += [(f"{' error' if k == 0 else '':>6}  {part}", 8.5, "#b91c1c", 10.5) for k, part in enumerate(parts)]
    return lines


def _why_none(routing, most: int = 4, width: int = 120) -> list[str]:
    """Lines under 'no series analysed': each distinct reason a series was listed only, whole (the routing table
    above cuts them to its column), so that the page says why and what to do; at most ``most`` reasons."""
    import textwrap

    reasons = list(dict.fromkeys(e.reason for e in routing.series if not e.analyses and e.reason))
    lines = [ln for why in reasons[:most] for ln in textwrap.wrap(why, width)]
    return lines + ([f"... {len(reasons) - most} more reasons (routing.txt)"] if len(reasons) > most else [])


def render_summary_png(result, outdir: Path, dpi: int = 100) -> bytes:
    """The one-page summary picture (module docstring) as PNG bytes."""
    import matplotlib.image as mpimg

    r = result.routing
    panels = []
    sax_series = sax_lmset = None
    for o in result.outcomes:
        if not o.ok or o.task != "sax":  # (a study's perfusion report is keyed by the study, not one series)
            continue
        e = next(s for s in r.series if s.key == o.series_key)
        if e.is_sax_reference:
            sax_series, sax_lmset = e.load(), o.result
            panels.insert(0, ("sax", e, o))
        elif o.task == "sax":  # another SAX stack (an LGE stack, a second cine): after the reference
            panels.append(("sax", e, o))
    for o in result.outcomes:
        if o.ok and o.task == "lax":
            panels.append(("lax", next(s for s in r.series if s.key == o.series_key), o))
    for o in result.outcomes:
        if o.ok and o.task == "function" and o.result is not None:
            panels.append(("function", None, o))
    for o in result.outcomes:  # the analyses' own summary pictures (function: when its result is gone)
        suffix = {"function": "function_overlay.png", "perfusion": "bullseye.png"}.get(o.task)
        if o.task == "function" and o.result is not None:
            continue
        if o.ok and suffix:
            png = next((outdir / f for f in o.files if f.endswith(suffix)), None)
            if png is not None and png.exists():
                panels.append((o.task, png, o))
    panels = _choose_panels(panels)
    n_pan = max(1, len(panels))
    rows = r.table().splitlines()
    if len(rows) > 16:
        rows = rows[:15] + [f"... {len(rows) - 15} more series (routing.txt)"]
    lines = _key_value_lines(result)
    fig = agg_figure(figsize=(16, 10), dpi=dpi)
    # the top block is as tall as its text (routing table, key values in the right-hand column), between
    # TOP_BLOCK_PT; the image panels take the rest (a fixed 0.85 : 1.15 left a study of a few values with an
    # empty band above small pictures)
    grid_pt = (0.93 - 0.02) * fig.get_figheight() * 72.0 / (1.0 + 0.12 / 2)  # top + bottom, hspace 0.12 taken off
    need = max(len(rows) * 8.5 * 1.2, 13 + sum(step for *_, step in lines)) + 10
    top_pt = min(max(need, TOP_BLOCK_PT[0]), TOP_BLOCK_PT[1])
    gs = fig.add_gridspec(2, n_pan, height_ratios=[top_pt, grid_pt - top_pt], hspace=0.12, wspace=0.05,
                          left=0.02, right=0.98, top=0.93, bottom=0.02)
    status = result.status
    reader = int(getattr(result, "reader_points", 0) or 0)
    fig.suptitle(f"Study {result.name or r.name}   status: {status.upper()}   {len(r.series)} series, "
                 f"analyses: {', '.join(sorted({o.task for o in result.outcomes if o.ok})) or 'none'}"
                 + (f"   reviewed: {reader} point(s) set by a reader" if reader else ""),
                 fontsize=13, color=_STATUS_COLOUR.get(status, "k"), x=0.02, ha="left")
    # routing table + key values
    top = fig.add_subplot(gs[0, :])
    top.axis("off")
    top.text(0.0, 1.0, "\n".join(_fit(line, 140) for line in rows), family="monospace", fontsize=8.5, va="top",
             ha="left", transform=top.transAxes, linespacing=1.2)
    # key values, each not-ok one with what to check under it (KeyValue.check_text: the doubtful points by name),
    # at fixed line heights in points: the right-hand column, then on under the routing table; what still does not
    # fit is counted, not drawn over the panels
    pt = 1.0 / (top.get_position().height * fig.get_figheight() * 72.0)  # one point in axes units
    columns = [(0.66, 1.0 - 13 * pt), (0.0, 1.0 - (len(rows) * 8.5 * 1.2 + 16) * pt)]
    if columns[1][1] < 3 * 10.5 * pt:  # a routing table of 16 rows leaves room under it for fewer than 3 lines
        columns = columns[:1]
    top.text(0.66, 1.0, "key values", fontsize=9, weight="bold", va="top", transform=top.transAxes)
    col = 0
    x, y = columns[0]
    for n, (text, size, colour, step) in enumerate(lines):
        if y - step * pt < 0.0 and col + 1 < len(columns):  # this column is full: on in the next
            col += 1
            x, y = columns[col]
        if y - step * pt < 0.0 and n < len(lines) - 1:
            rest = sum(1 for t in lines[n:] if not t[0].startswith(" " * 8))  # values and errors, not their next lines
            top.text(x, y, f"... {rest} more in study.json", fontsize=8.5, family="monospace", va="top",
                     transform=top.transAxes)
            break
        top.text(x, y, text, fontsize=size, family="monospace", va="top", color=colour, transform=top.transAxes)
        y -= step * pt
    for c, (kind, e, o) in enumerate(panels[:n_pan]):
        ax = fig.add_subplot(gs[1, c])
        try:
            if kind == "sax":
                _sax_panel(ax, e.load(), o.result, e.key)
            elif kind == "function" and e is None:  # the function result itself (else: its own picture)
                _function_panel(ax, o.result, o.series_key)
            elif kind == "lax":
                view = getattr(o.result, "view", e.view)
                _lax_panel(ax, e.load(), o.result, e.key, view, sax_series, sax_lmset,
                           result.crosscheck_geometry.get(e.key))
            else:
                ax.imshow(mpimg.imread(e))
                ax.axis("off")
                ax.set_title(f"{kind} {o.series_key}", fontsize=8)
        except Exception:  # noqa: BLE001 - one panel must not lose the page
            logger.exception("summary panel %s %s failed", kind, o.series_key)
            ax.axis("off")
    if not panels:
        ax = fig.add_subplot(gs[1, 0])
        ax.axis("off")
        ax.text(0.5, 0.5, "no series analysed", ha="center", va="center", fontsize=14)
        ax.text(0.5, 0.44, "\n".join(_why_none(r)), ha="center", va="top", fontsize=9, color="#374151")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
