"""Report outputs: ``landmarks.json``, a measurements CSV and a PNG overlay for a CMR reader.

All files are written atomically (:mod:`.fileio`). The PNG is drawn with matplotlib's Agg
canvas directly (no ``pyplot`` state), so it works headless and from Slicer's Python.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.core.errors import InvalidImageError
from CardiacLandmarksLib.core.landmarks import (
    Landmark,
    LandmarkSet,
    Measurement,
    add_input_sources,
    input_sources,
)
from CardiacLandmarksLib.core.orientation import draw_orientation
from CardiacLandmarksLib.core.review import is_doubtful_absence
from CardiacLandmarksLib.core.series import CMRSeries
from CardiacLandmarksLib.io import markups
from CardiacLandmarksLib.io.atomic import atomic_write_bytes, atomic_write_text
from CardiacLandmarksLib.io.jsonsafe import dumps_strict
from CardiacLandmarksLib.io.outputs import agg_figure, output_stem, source_label
from CardiacLandmarksLib.sax.measurements import rvi_measurements
from CardiacLandmarksLib.sax.presence import doubt_kinds

logger = logging.getLogger(__name__)

#: overlay colours per flag (matches the Slicer point list colours of :mod:`.markups`)
FLAG_COLORS = {"high": "#33cc33", "low": "#ff8c00"}
#: marker per landmark name (others: diamond)
MARKERS = {"A-RVI": "^", "I-RVI": "v", "C-LV": "o", "APEX": "*", "A-P": "s", "I-P": "s",
           "IL-P": "s", "AS-P": "s", "AL-P": "s", "IS-P": "s"}
#: measurements.csv header; ``status`` is ok | review | n/a, ``sources`` lists the landmarks used with
#: their flags (``A-RVI s3 p0:low:0.03; C-LV s3 p0:high:0.91``), ``check`` the reader's caveat
CSV_COLUMNS = ("name", "slice", "phase", "value", "unit", "status", "sources", "check")


def landmarks_json_text(lmset: LandmarkSet) -> str:
    """The ``landmarks.json`` text: ``LandmarkSet.to_dict()`` as strict JSON (NaN -> null), 2-space indent."""
    return dumps_strict(lmset.to_dict(), missing_vectors_as_null=True) + "\n"


def write_landmarks_json(lmset: LandmarkSet, path: str | Path, *, backup_existing: bool = False) -> Path:
    """Write ``landmarks.json`` atomically.

    Layout (``LandmarkSet.to_dict``): ``{"source", "view", "model": {"name", "version",
    "sha256"}, "coordinate_system": "LPS", "units": "mm", "landmarks": [{"name", "slice",
    "phase", "found", "position", "ijk", "confidence", "flag", "corrected", "doubt", "confirmed"}], "measurements":
    [{"name", "slice", "phase", "value", "unit"}]}``; ``position`` is LPS mm, ``ijk`` the
    continuous (column, row, slice) index, both ``null`` when not found (or unknown).

    Args:
        lmset: the landmarks and measurements.
        path: target file.
        backup_existing: keep an existing file as ``<name>.bak-<timestamp>``.

    Returns:
        The path written.
    """
    return atomic_write_text(path, landmarks_json_text(lmset), backup_existing=backup_existing)


def write_measurements_csv(
    measurements: Iterable[Measurement] | LandmarkSet, path: str | Path, *, backup_existing: bool = False
) -> Path:
    """Write measurements as CSV: header ``name,slice,phase,value,unit,status,sources,check``, one row each.

    Args:
        measurements: ``Measurement`` objects (or a LandmarkSet: its ``measurements``).
        path: target file (UTF-8, ``\\n`` line ends).
        backup_existing: keep an existing file as ``<name>.bak-<timestamp>``.

    ``value`` is written with 4 decimals, empty when NaN; ``slice``/``phase`` empty when None
    (series-level results); ``status`` is ``ok``, ``review`` or ``n/a``
    (:func:`~CardiacLandmarksLib.core.landmarks.measurement_status`); ``sources`` the landmarks the
    value comes from as ``id:flag:confidence`` joined by ``"; "``; ``check`` the caveat of a value
    that is not ok (``check A-RVI (low 0.03)``), empty when ok.
    """
    items = measurements.measurements if isinstance(measurements, LandmarkSet) else list(measurements)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for m in items:
        v = float(m.value)
        w.writerow([m.name, "" if m.slice is None else int(m.slice), "" if m.phase is None else int(m.phase),
                    f"{v:.4f}" if math.isfinite(v) else "", m.unit, m.status, m.sources_text(), m.caveat()])
    return atomic_write_text(path, buf.getvalue(), backup_existing=backup_existing)


#: panel-title colour of a slice whose values need review
REVIEW_TITLE_COLOR = "#b35900"
_SHORT = {"RVI angle": "RVI", "RVI opening angle": "opening"}


def measurement_label(m: Measurement, already: set[str] | None = None) -> str:
    """Reader text of one value with its trust: ``"RVI 31°"`` or ``"RVI 31° — check A-RVI (low 0.03)"``.

    Args:
        m: the measurement.
        already: caveats named on an earlier line of the same panel; they are not repeated
            (``"opening 95° — check I-RVI (low 0.10)"``, or ``"— check (as above)"``).
    """
    unit = "\N{DEGREE SIGN}" if m.unit == "deg" else f" {m.unit}"
    txt = f"{_SHORT.get(m.name, m.name)} {m.value:.0f}{unit}" if math.isfinite(m.value) else f"{m.name} n/a"
    if m.status == "ok":
        return txt
    # a warning on the input (kind "input": a forced view, the RV on the wrong side) by its name alone: its text is
    # in the figure's header, the CSV's check column and landmarks.json
    doubtful = [src.id if src.kind == "input" else src.caveat() for src in m.sources if src.doubtful]
    seen = already if already is not None else set()
    new = [c for c in doubtful if c not in seen]
    seen.update(doubtful)
    if m.status == "n/a":
        return f"{txt} \u2014 n/a"
    if not doubtful:
        return f"{txt} \u2014 check"
    return f"{txt} \u2014 check " + (", ".join(new) if new else "(as above)")


def panel_title_lines(k: int, values: dict[str, Measurement]) -> list[str]:
    """Title lines of the overlay panel of slice ``k``: the slice, then one line per value with its caveat."""
    seen: set[str] = set()
    lines = [f"slice {k}"]
    for name in ("RVI angle", "RVI opening angle"):
        if name in values:
            lines.append(measurement_label(values[name], seen))
    return lines


def _landmark_ij(series, lm: Landmark) -> np.ndarray | None:
    """(i, j) where to draw ``lm``: its ijk, or its position mapped through the series geometry."""
    if not lm.found or lm.flag == "absent":
        return None
    ijk = np.asarray(lm.ijk, float)
    if ijk.shape != (3,) or not np.all(np.isfinite(ijk)):
        pos = np.asarray(lm.position, float)
        if pos.shape != (3,) or not np.all(np.isfinite(pos)):
            return None
        ijk = np.asarray(series.lps_to_ijk(pos), float)
    return ijk[:2]


def _header_lines(series, lmset: LandmarkSet, t: int, chars: int) -> list[str]:
    """Figure title: source, phase, model, the angle conventions, then the set's warnings (an input warning,
    the RV on the wrong side: :func:`~.measurements.rv_side_warning`), wrapped to ``chars``."""
    import textwrap

    model = lmset.model or {}
    model_txt = " ".join(str(model.get(x, "")) for x in ("name", "version")).strip()
    src = source_label(lmset.source or series.source)
    head = f"{src}  |  phase {t}" + (f"  |  model {model_txt}" if model_txt else "")
    if getattr(series, "orientation_known", False):
        conv = ("RVI angle: C-LV\u2192A-RVI from the patient's anterior (arrow A; L = patient's left, S = head: "
                "A-RVI is the insertion nearer the head), + towards the patient's right; opening: angle "
                "A-RVI\u2013C-LV\u2013I-RVI. Values from a low-confidence point are marked 'check' (status review)")
    else:
        conv = ("orientation unknown, shown as stored: RVI angle from image up, + towards image left; "
                "opening: angle A-RVI\u2013C-LV\u2013I-RVI. Values from a low-confidence point are marked "
                "'check' (status review)")
    warn = [line for w in getattr(lmset, "warnings", []) for line in textwrap.wrap(f"WARNING: {w}", chars)]
    return textwrap.wrap(head, chars) + textwrap.wrap(conv, chars) + warn


def crop_window(points_ij: np.ndarray, shape_ji: tuple[int, int], spacing_ij: tuple[float, float],
                margin_mm: float | None) -> tuple[float, float, float, float]:
    """One crop for every panel: square in mm around the drawn points, clipped to the image.

    Args:
        points_ij: ``[n, 2]`` drawn points as (i, j) pixel coordinates (may be empty).
        shape_ji: image size (rows j, columns i).
        spacing_ij: pixel size (i, j) mm.
        margin_mm: margin around the points; None = the whole field of view.

    Returns:
        ``(x0, x1, y0, y1)`` axis limits in pixels (y0 > y1: rows grow downwards).
    """
    n_j, n_i = shape_ji
    si, sj = spacing_ij
    if margin_mm is None or not len(points_ij):
        return -0.5, n_i - 0.5, n_j - 0.5, -0.5
    ci, cj = points_ij.mean(axis=0)
    half_mm = max(np.ptp(points_ij[:, 0]) * si, np.ptp(points_ij[:, 1]) * sj) / 2 + float(margin_mm)
    hi, hj = half_mm / si, half_mm / sj
    return max(-0.5, ci - hi), min(n_i - 0.5, ci + hi), min(n_j - 0.5, cj + hj), max(-0.5, cj - hj)


def render_overlay_png(
    series,
    lmset: LandmarkSet,
    path: str | Path,
    phase: int | None = None,
    *,
    max_cols: int = 4,
    crop_margin_mm: float | None = 45.0,
    dpi: int = 110,
    backup_existing: bool = False,
) -> Path:
    """Draw the landmarks of one phase on every slice, as a grid PNG for a CMR reader.

    Each panel shows slice k of ``series.pixels[phase]`` as stored (i = column to the right,
    j = row down, pixels drawn with their physical aspect), the found landmarks at their
    ``ijk`` (or their LPS position mapped through the series when ``ijk`` is unknown)
    coloured by flag (high = green, low = orange with its confidence), landmarks the model
    calls absent listed in the panel, lines C-LV -> RVI, arrows for the patient's anterior (A),
    left (L) and head (S) as they lie in the slice when the orientation is known, and the RVI angle and RVI opening angle in the
    panel title (computed with :func:`.measurements.rvi_measurements` from the drawn points).
    All panels share one crop around the phase's landmarks (``crop_margin_mm`` around them;
    None = full field of view) and one intensity window (0.5-99.5 percentiles of the phase).

    Args:
        series: the :class:`~.series.CMRSeries` the landmarks were found on.
        lmset: the landmarks.
        path: PNG file to write.
        phase: phase index; default the first phase that has landmarks (0 if none).
        max_cols: panels per row.
        crop_margin_mm: margin of the crop around the landmarks, mm.
        dpi: output resolution.
        backup_existing: keep an existing file as ``<name>.bak-<timestamp>``.

    Returns:
        The path written.

    Raises:
        InvalidImageError: ``phase`` out of range for the series.
    """
    from matplotlib import patheffects
    from matplotlib.lines import Line2D

    if phase is None:
        phases = sorted({lm.phase for lm in lmset.landmarks})
        phase = phases[0] if phases else 0
    if not 0 <= int(phase) < series.n_phases:
        raise InvalidImageError(f"phase {phase} is out of range: the series has {series.n_phases} phase(s)")
    t = int(phase)
    stack = np.asarray(series.pixels[t], dtype=float)  # [k, j, i]
    n_k, n_j, n_i = stack.shape
    si, sj = float(series.spacing[0]), float(series.spacing[1])
    finite = stack[np.isfinite(stack)]
    vmin, vmax = (np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0))
    if vmax <= vmin:
        vmax = vmin + 1.0

    lms_t = [lm for lm in lmset.landmarks if lm.phase == t]
    points = {id(lm): _landmark_ij(series, lm) for lm in lms_t}
    drawn = np.array([p for p in points.values() if p is not None])

    x0, x1, y0, y1 = crop_window(drawn, (n_j, n_i), (si, sj), crop_margin_mm)

    # recomputed from the points shown, with the detection's input warnings (a placeholder voxel size ...)
    meas = [m for m in add_input_sources(rvi_measurements(lmset, series), input_sources(lmset.measurements))
            if m.phase == t]
    by_slice: dict[int, dict[str, Measurement]] = {}
    for m in meas:
        by_slice.setdefault(int(m.slice), {})[m.name] = m
    known = bool(getattr(series, "orientation_known", False))
    n_title_lines = max((len(panel_title_lines(k, by_slice.get(k, {}))) for k in range(n_k)), default=1)

    ncols = max(1, min(int(max_cols), n_k))
    nrows = math.ceil(n_k / ncols)
    panel = 3.3
    width = max(panel * ncols, 6.0)
    header = _header_lines(series, lmset, t, chars=int(width * 72 / (9.5 * 0.56)))
    title_in = n_title_lines * 9 * 1.3 / 72 + 0.1  # the tallest panel title
    head_in = 0.2 + len(header) * 9.5 * 1.4 / 72 + title_in  # suptitle lines + first panel title
    height = (panel + title_in) * nrows + head_in - title_in + 0.5
    fig = agg_figure(figsize=(width, height), dpi=dpi)
    side = max(0.01, (1.0 - panel * ncols / width) / 2)
    fig.subplots_adjust(left=side, right=1.0 - side, top=1.0 - head_in / height, bottom=0.5 / height,
                        wspace=0.04, hspace=title_in / panel + 0.05)
    outline = [patheffects.withStroke(linewidth=2.5, foreground="black")]

    for k in range(nrows * ncols):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= n_k:
            ax.set_axis_off()
            continue
        ax.imshow(stack[k], cmap="gray", vmin=vmin, vmax=vmax, interpolation="bilinear",
                  extent=(-0.5, n_i - 0.5, n_j - 0.5, -0.5), aspect=sj / si)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        here = [lm for lm in lms_t if lm.slice == k]
        pos = {lm.name: points[id(lm)] for lm in here if points[id(lm)] is not None}
        if "C-LV" in pos:
            for other in ("A-RVI", "I-RVI"):
                if other in pos:
                    ax.plot([pos["C-LV"][0], pos[other][0]], [pos["C-LV"][1], pos[other][1]],
                            color="white", lw=0.9, ls="--", alpha=0.8)
        for lm in here:
            p = points[id(lm)]
            if p is None:
                continue
            color = FLAG_COLORS.get(lm.flag, "#33cc33")
            ax.plot(p[0], p[1], marker=MARKERS.get(lm.name, "D"), ms=8, mfc=color, mec="black", mew=0.8,
                    ls="none")
            text = lm.name if lm.flag == "high" else f"{lm.name} ({lm.confidence:.2f})"
            if lm.confirmed:
                text += " \u2713"
            elif lm.corrected:
                text += " *"
            ax.annotate(text, (p[0], p[1]), xytext=(6, 5), textcoords="offset points", fontsize=7.5,
                        color=color, fontweight="bold", path_effects=outline, clip_on=True)
        absent = [lm.name for lm in here if points[id(lm)] is None]
        unsure = [lm for lm in here if is_doubtful_absence(lm)]
        note = ("absent: " + ", ".join(absent)) if absent else ("no landmarks" if not here else "")
        if unsure:  # points the network nearly found or a rule left out (doubt_absences): the reader should look
            note += f" (check {', '.join(lm.name for lm in unsure)}: {doubt_kinds([lm.doubt for lm in unsure])})"
        if note:
            ax.text(0.02, 0.02, note, transform=ax.transAxes, fontsize=7, color="white", va="bottom",
                    ha="left", bbox={"boxstyle": "round,pad=0.2", "fc": FLAG_COLORS["low"] if unsure else "black",
                                     "ec": "none", "alpha": 0.8 if unsure else 0.6})
        draw_orientation(ax, series.direction, known, corner=(0.86, 0.84), n=3)
        vals = by_slice.get(k, {})
        lines = panel_title_lines(k, vals)
        review = any(m.status != "ok" for m in vals.values())
        ax.set_title("\n".join(lines), fontsize=8 if review else 9, pad=3,
                     color=REVIEW_TITLE_COLOR if review else "black")

    fig.suptitle("\n".join(header), fontsize=9.5, y=1.0 - 0.15 / height, va="top")

    handles = [Line2D([], [], marker="o", ls="none", mfc=FLAG_COLORS["high"], mec="black", label="high confidence"),
               Line2D([], [], marker="o", ls="none", mfc=FLAG_COLORS["low"], mec="black",
                      label="low confidence (value)")]
    names_here = [n for n in MARKERS if any(lm.name == n for lm in lms_t)]
    handles += [Line2D([], [], marker=MARKERS[n], ls="none", mfc="lightgray", mec="black", label=n)
                for n in names_here]
    if any(lm.corrected and not lm.confirmed for lm in lms_t):
        handles.append(Line2D([], [], ls="none", label="* corrected by user"))
    if any(lm.confirmed for lm in lms_t):
        handles.append(Line2D([], [], ls="none", label="\u2713 confirmed by user"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.0))

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return atomic_write_bytes(path, buf.getvalue(), backup_existing=backup_existing)


PngWriter = Callable[[CMRSeries, LandmarkSet, Path], Path]
"""``writer(series, landmarks, png_path) -> png_path``: the task's figure."""


@dataclass
class LandmarkResult:
    """A landmark analysis (SAX or long axis) of one series, ready to show or write.

    Attributes:
        series: the analysed series (pixels ``[t, k, j, i]``).
        landmarks: points in LPS mm and input ijk, with flags and measurements.
        png_writer: the task's figure (:func:`render_overlay_png` for SAX,
            :func:`CardiacLandmarksLib.lax.report.render_lax_png` for long axis).
        png_suffix: file-name suffix of the figure after the series stem.
        elapsed_s: analysis time in seconds.
    """

    series: CMRSeries
    landmarks: LandmarkSet
    png_writer: PngWriter
    png_suffix: str
    elapsed_s: float = 0.0

    def __repr__(self) -> str:
        """One line per part for a console: the series and the landmark summary (their own reprs), the time."""
        return f"LandmarkResult(\n  {self.series!r},\n  {self.landmarks!r},\n  {self.elapsed_s:.1f} s)"

    @property
    def view(self) -> str:
        return self.landmarks.view

    def write(self, outdir: str | Path) -> list[Path]:
        """Write the result folder (see :func:`write_landmark_outputs`)."""
        return write_landmark_outputs(self.series, self.landmarks, outdir, self.png_writer, self.png_suffix)


def write_landmark_outputs(series: CMRSeries, lmset: LandmarkSet, outdir: str | Path, png_writer: PngWriter,
                           png_suffix: str) -> list[Path]:
    """Write ``landmarks.json``, ``measurements.csv``, the ``.mrk.json`` point lists and ``<stem><png_suffix>``.

    The one writer of landmark result folders: the CLI's ``detect``, the Slicer module's Export, the batch
    runner and the web review app all come here.

    Args:
        series: the analysed series (for the figure and the output stem).
        lmset: landmarks (LPS mm) with their measurements.
        outdir: result folder (created).
        png_writer: the task's figure.
        png_suffix: e.g. ``"_overlay.png"``.

    Returns:
        The files written, in writing order.

    Raises:
        OSError from the atomic writers when the folder is not writable.
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    written = [write_landmarks_json(lmset, out / "landmarks.json")]
    written.append(write_measurements_csv(lmset.measurements, out / "measurements.csv"))
    written += list(markups.write_markups(lmset, out))
    written.append(png_writer(series, lmset, out / f"{output_stem(series.source)}{png_suffix}"))
    return [Path(p) for p in written]
