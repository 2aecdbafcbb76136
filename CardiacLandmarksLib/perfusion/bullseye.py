"""Bull's-eye plots of the AHA segments and sector overlays on the image (PNG, matplotlib Agg).

Bull's-eye layout after Cerqueira et al., Circulation 2002 (figure 3): seen from the apex,
anterior at the top, septum on the left, lateral wall on the right; rings from the outside in:
basal (1-6), mid-cavity (7-12), apical (13-16; the apex cap 17 is not sampled by short-axis
perfusion and is drawn as a small grey centre). Coronary territories (LAD 1, 2, 7, 8, 13, 14;
RCA 3, 4, 9, 10, 15; LCx 5, 6, 11, 12, 16) are outlined in black and named at the rim.
Segment angles come from :func:`CardiacLandmarksLib.perfusion.aha.bullseye_angle_deg`.
"""

from __future__ import annotations

import functools
import io
import logging
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.io.atomic import atomic_write_bytes
from CardiacLandmarksLib.io.outputs import agg_figure
from CardiacLandmarksLib.perfusion import aha

logger = logging.getLogger(__name__)

#: ring radii (inner, outer) per level; the apex cap 17 is the disc r < 0.35
RINGS = {"apex": (0.35, 1.2), "mid": (1.2, 2.1), "base": (2.1, 3.0)}
CAP = 0.35


def segment_wedge(segment: int) -> tuple[float, float, float, float]:
    """``(r_in, r_out, theta1, theta2)`` of a segment on the bull's-eye (degrees CCW from 3 o'clock)."""
    for level in aha.LEVELS:
        for seg, d0, d1 in aha.segment_boundaries_deg(level):
            if seg == segment:
                r0, r1 = RINGS[level]
                return r0, r1, float(aha.bullseye_angle_deg(d0)), float(aha.bullseye_angle_deg(d0)) + (d1 - d0)
    raise ValueError(f"segment {segment} is not drawn on the 16-segment bull's-eye")


def level_of(segment: int) -> str:
    """Level of an AHA segment 1-16."""
    return "base" if segment <= 6 else "mid" if segment <= 12 else "apex"


def _territory_of(segment: int) -> str:
    for name, segs in aha.TERRITORIES.items():
        if segment in segs:
            return name
    return ""


@dataclass
class BullseyePanel:
    """One bull's-eye: values per segment (1-16; missing/NaN = not available)."""

    title: str
    values: dict[int, float]
    unit: str = ""
    sd: dict[int, float] = field(default_factory=dict)
    vmin: float | None = None
    vmax: float | None = None
    cmap: str = "viridis"
    fmt: str = "{:.2f}"
    #: per segment: ``"review"`` (the segment's own value is doubtful: hatched ``xx``, value with ``?``),
    #: ``"anchor"`` (review only because its anchor is doubtful: dotted hatch) or ``"n/a"`` (grey, no value)
    marks: dict[int, str] = field(default_factory=dict)


def draw_bullseye(ax, panel: BullseyePanel, show_numbers: bool = False):
    """Draw one bull's-eye panel on a matplotlib axes; returns the colour mappable."""
    import matplotlib
    import matplotlib.cm
    import matplotlib.colors
    from matplotlib.patches import Wedge

    vals = {s: float(v) for s, v in panel.values.items() if v is not None and np.isfinite(v)}
    finite = np.array(list(vals.values())) if vals else np.array([0.0, 1.0])
    vmin = panel.vmin if panel.vmin is not None else float(finite.min())
    vmax = panel.vmax if panel.vmax is not None else float(finite.max())
    if vmax - vmin < 1e-9:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    norm = matplotlib.colors.Normalize(vmin=vmin, vmax=vmax)
    cmap = matplotlib.colormaps[panel.cmap]
    for seg in range(1, 17):
        r0, r1, t0, t1 = segment_wedge(seg)
        v = vals.get(seg)
        mark = panel.marks.get(seg, "")
        if mark == "n/a":
            v = None
        if v is None:
            w = Wedge((0, 0), r1, t0, t1, width=r1 - r0, facecolor="#d9d9d9", edgecolor="white", lw=1.2, hatch="///")
        else:
            w = Wedge((0, 0), r1, t0, t1, width=r1 - r0, facecolor=cmap(norm(v)), edgecolor="white", lw=1.2)
        ax.add_patch(w)
        if v is not None and mark in ("review", "anchor"):
            # the hatch is drawn in the edge colour: an edge-less overlay wedge carries it
            ax.add_patch(Wedge((0, 0), r1, t0, t1, width=r1 - r0, facecolor="none", lw=0,
                               edgecolor="#ff3030" if mark == "review" else "#ffffff",
                               hatch="xxx" if mark == "review" else ".."))
        mid = np.radians((t0 + t1) / 2.0)
        rm = (r0 + r1) / 2.0 + (0.1 if show_numbers else 0.0)
        x, y = rm * np.cos(mid), rm * np.sin(mid)
        if v is None:
            txt, colour = "n/a", "#505050"
        else:
            rgba = cmap(norm(v))
            lum = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
            colour = "black" if lum > 0.55 else "white"
            txt = panel.fmt.format(v) + ("?" if mark == "review" else "")
            sd = panel.sd.get(seg)
            if sd is not None and np.isfinite(sd):
                txt += "\n±" + panel.fmt.format(sd)
        box = {"boxstyle": "round,pad=0.1", "fc": "black" if colour == "white" else "white", "ec": "none",
               "alpha": 0.55} if mark in ("review", "anchor") and v is not None else None
        ax.text(x, y, txt, ha="center", va="center", fontsize=7.5, color=colour, linespacing=0.95, bbox=box)
        if show_numbers:
            # segment number near the inner edge, on the same radius as the value
            rn = r0 + (0.2 if level_of(seg) != "apex" else 0.25)
            ax.text(rn * np.cos(mid), rn * np.sin(mid), str(seg), ha="center", va="center", fontsize=6,
                    color=colour, alpha=0.75, style="italic")
    _finish_disc(ax, panel.title, 10, cap_lw=1.2, cap_fontsize=5.5)
    sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    sm.set_array([])
    return sm


TERRITORY_COLOURS = {"LAD": "#c6dbef", "RCA": "#c7e9c0", "LCx": "#fdd0a2"}


def draw_key(ax) -> None:
    """Segment numbers and coronary territories (the reading key of the value panels)."""
    from matplotlib.patches import Wedge

    for seg in range(1, 17):
        r0, r1, t0, t1 = segment_wedge(seg)
        ax.add_patch(Wedge((0, 0), r1, t0, t1, width=r1 - r0, facecolor=TERRITORY_COLOURS[_territory_of(seg)],
                           edgecolor="white", lw=1.0))
        mid = np.radians((t0 + t1) / 2.0)
        rm = (r0 + r1) / 2.0
        ax.text(rm * np.cos(mid), rm * np.sin(mid), str(seg), ha="center", va="center", fontsize=8)
    _finish_disc(ax, "AHA segments", 9, cap_lw=1.0, cap_fontsize=6)


def _finish_disc(ax, title: str, title_size: float, cap_lw: float, cap_fontsize: float) -> None:
    """Apex cap (segment 17, not reported), coronary territory outlines, square frame and title."""
    from matplotlib.patches import Circle

    ax.add_patch(Circle((0, 0), CAP, facecolor="#efefef", edgecolor="white", lw=cap_lw))
    ax.text(0, 0, "17", ha="center", va="center", fontsize=cap_fontsize, color="#808080")
    _draw_territories(ax)
    ax.set_xlim(-3.75, 3.75)
    ax.set_ylim(-3.75, 3.75)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=title_size)


@functools.lru_cache(maxsize=2)
def _territory_raster(n: int = 601) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Territory index (1 LAD, 2 RCA, 3 LCx, 0 outside) on an ``n x n`` grid over [-3, 3]^2.

    Fixed geometry, computed once (cached; the arrays are read-only): re-rendering the bull's-eye
    when the Slicer panel recomputes after an RV insertion point moved stays fast.
    """
    xs = np.linspace(-3.0, 3.0, n)
    x, y = np.meshgrid(xs, xs)
    r = np.hypot(x, y)
    theta = np.mod(np.degrees(np.arctan2(y, x)), 360.0)
    delta = np.mod(theta - 120.0, 360.0)
    out = np.zeros(x.shape, np.int8)
    names = list(aha.TERRITORIES)
    for level, (r0, r1) in RINGS.items():
        ring = (r >= (0.0 if level == "apex" else r0)) & (r < r1)
        segs = aha.segment_of_angle(delta[ring], level)
        out[ring] = [names.index(_territory_of(int(s))) + 1 for s in segs]
    for a in (x, y, out):
        a.setflags(write=False)
    return x, y, out


def _draw_territories(ax) -> None:
    x, y, terr = _territory_raster()
    colours = {"LAD": "#000000", "RCA": "#000000", "LCx": "#000000"}
    for n, name in enumerate(aha.TERRITORIES, start=1):
        ax.contour(x, y, (terr == n).astype(float), levels=[0.5], colors=colours[name], linewidths=2.0)
    # names outside the rim, at each territory's basal centre
    for name, ang in (("LAD", 120.0), ("RCA", 240.0), ("LCx", 0.0)):
        a = np.radians(ang)
        ax.text(3.45 * np.cos(a), 3.45 * np.sin(a), name, ha="center", va="center", fontsize=9, fontweight="bold")


def render_bullseye_png(panels: list[BullseyePanel], path: str | Path, title: str | None = None,
                        footnote: str | None = None, dpi: int = 150) -> Path:
    """Write one PNG with the given bull's-eye panels side by side, each with its colour bar."""
    n = max(len(panels), 1)
    width = 4.3 * n + 2.6
    note = "Seen from the apex: anterior top, septum left. Grey /// = not measured (n/a)."
    if any(m == "review" for p in panels for m in p.marks.values()):
        note += (" Red xx and '?' = review: too few pixels, implausible spread or ratio, a doubted input (an"
                 " incomplete series) or a warning on the series, e.g. on its segmentation (not used for the colour scale).")
    if any(m == "anchor" for p in panels for m in p.marks.values()):
        note += " White dots = review: sectors anchored on RV insertion points flagged low."
    text = note + ("\n" + footnote if footnote else "")
    chars = int(width * 72 / (7 * 0.62))  # Agg draws this text at about 0.6 em per character at 150 dpi
    lines = [w for line in text.split("\n") for w in textwrap.wrap(line, chars)]
    foot_in = 0.15 + len(lines) * 7 * 1.3 / 72
    height = 4.9 + foot_in
    fig = agg_figure(figsize=(width, height))
    axes = fig.subplots(1, n + 1, squeeze=False, gridspec_kw={"width_ratios": [0.6] + [1.0] * n})
    draw_key(axes[0][0])
    for ax, panel in zip(axes[0][1:], panels):
        sm = draw_bullseye(ax, panel)
        cb = fig.colorbar(sm, ax=ax, orientation="horizontal", fraction=0.05, pad=0.02, shrink=0.8)
        cb.set_label(panel.unit, fontsize=8)
        cb.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.text(0.5, 0.05 / height, "\n".join(lines), ha="center", fontsize=7, color="#404040", va="bottom")
    fig.tight_layout(rect=(0, foot_in / height, 1, 0.95))
    return _save(fig, path, dpi)


def _save(fig, path: str | Path, dpi: int) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write_bytes(Path(path), buf.getvalue())


_SECTOR_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def _sector_colour(segment: int) -> tuple[float, float, float]:
    """Distinct colours for neighbouring segments (6 per basal/mid ring, 4 apical)."""
    import matplotlib.colors as mcolors

    idx = (segment - 1) % 6 if segment <= 12 else (segment - 13) % 4
    return mcolors.to_rgb(_SECTOR_COLOURS[idx])


def rvi_warning(rvi_trust: dict | None) -> str:
    """Title line of the sector overlay for low RV insertion points, worded as the report judges them.

    The sectors hang on A-RVI and C-LV only (:func:`CardiacLandmarksLib.perfusion.pipeline.anchor_sources`):
    a low A-RVI makes every sector value review; a low I-RVI alone is to be checked but moves no sector.
    ``rvi_trust``: ``{"A-RVI": (confidence, flag), "I-RVI": ...}``; a missing point counts as high. "" when none is low.
    """
    trust = rvi_trust or {}
    low = [n for n in ("A-RVI", "I-RVI") if trust.get(n, (None, "high"))[1] != "high"]
    if aha.ANCHOR_RVI in low:
        return f"{' and '.join(low)} flagged low: check {'them' if len(low) > 1 else 'it'}; sector values are review"
    if low:
        return f"{low[0]} flagged low: check it (the sectors hang on {aha.ANCHOR_RVI} and C-LV, not on it)"
    return ""


def _pull_inside(center: np.ndarray, point: np.ndarray, box: tuple[float, float, float, float],
                 margin: float = 0.06) -> np.ndarray:
    """``point`` moved towards ``center`` along their line until it lies inside ``box`` = ``(i0, i1, j0, j1)``
    (pixel units, the shown region), kept ``margin`` x the box size from its edges.

    A segment number placed just outside the epicardium falls outside the picture when the image is cropped
    close around the LV (QPerf's 51 x 47 crops): it was then drawn over the title, the footer or beside the
    picture. Pulled in along its sector's mid-angle, it stays on its own sector. ``center`` must lie in the box.
    """
    c, p = np.asarray(center, float), np.asarray(point, float)
    lo = np.array([box[0], box[2]], float)
    hi = np.array([box[1], box[3]], float)
    m = margin * (hi - lo)
    lo, hi = lo + m, hi - m
    d = p - c
    t = 1.0
    for axis in (0, 1):
        if d[axis] > 0 and p[axis] > hi[axis]:
            t = min(t, (hi[axis] - c[axis]) / d[axis])
        elif d[axis] < 0 and p[axis] < lo[axis]:
            t = min(t, (lo[axis] - c[axis]) / d[axis])
    return c + max(t, 0.0) * d


def _clear_labels(fig, ax, badges: list, labels: list, center: np.ndarray) -> None:
    """Move each segment number that covers an RV insertion point's label towards ``center`` (C-LV), along
    its sector's mid-angle, until it no longer does (at most to a third of the way in): "I-RVI (low 0.25)"
    was drawn under the number 10 on QPerf's stress crop."""
    get_renderer = getattr(fig.canvas, "get_renderer", None)  # Agg (and Qt's Agg) canvases
    if not badges or not labels or get_renderer is None:
        return
    renderer = get_renderer()
    boxes = [t.get_window_extent(renderer) for t in labels]
    c = np.asarray(center, float)
    for badge in badges:
        p0 = np.asarray(badge.get_position(), float)
        for frac in np.linspace(1.0, 0.35, 14):
            badge.set_position(tuple(c + frac * (p0 - c)))
            box = badge.get_window_extent(renderer)
            if not any(box.overlaps(b) for b in boxes):
                break
        else:
            badge.set_position(tuple(p0))


def render_sector_overlay_png(image: np.ndarray, segments: np.ndarray, mask: np.ndarray, center_ij: np.ndarray,
                              a_rvi_ij: np.ndarray, level: str, path: str | Path, spacing_ij: tuple[float, float],
                              i_rvi_ij: np.ndarray | None = None, seen_from_apex: bool = True,
                              title: str = "", rvi_source: str = "", crop_mm: float = 55.0, dpi: int = 150,
                              direction: np.ndarray | None = None, orientation_known: bool = False,
                              frames: tuple[int, int] | None = None, rvi_trust: dict | None = None) -> Path:
    """Sector boundaries, segment numbers and RV insertion points over one frame (PNG).

    Args:
        image: ``[j, i]`` frame shown (e.g. the reference frame).
        segments: ``[j, i]`` AHA segment per myocardial pixel (:func:`aha.sector_map`).
        mask: ``[j, i]`` labels (1 myocardium, 2 blood pool).
        center_ij, a_rvi_ij, i_rvi_ij: C-LV and RV insertion points ``(i, j)``.
        level: slice level (for the sector boundaries).
        spacing_ij: pixel size in mm (the PNG keeps the true aspect ratio).
        crop_mm: half-width of the shown region around C-LV.
        direction: ``(3, 3)`` LPS direction of the slice, for the orientation compass (A/L/S arrows);
            with ``orientation_known`` False the display convention is stated instead.
        frames: ``(shown frame, reference frame)``: the picture is the shown frame moved onto the
            reference frame, in whose pixel grid the segmentation, sectors and points are defined.
        rvi_trust: ``{"A-RVI": (confidence, flag), "I-RVI": ...}``; low points are drawn orange with
            their confidence and the word "check".
    """
    img = np.asarray(image, float)
    c = np.asarray(center_ij, float)
    hi, hj = crop_mm / spacing_ij[0], crop_mm / spacing_ij[1]
    i0, i1 = int(max(0, c[0] - hi)), int(min(img.shape[1], c[0] + hi + 1))
    j0, j1 = int(max(0, c[1] - hj)), int(min(img.shape[0], c[1] + hj + 1))
    fig = agg_figure(figsize=(5.6, 5.6))
    ax = fig.subplots()
    crop = img[j0:j1, i0:i1]
    lo, up = np.percentile(crop, [1, 99.5])
    extent = (i0 - 0.5, i1 - 0.5, j1 - 0.5, j0 - 0.5)
    ax.imshow(crop, cmap="gray", vmin=lo, vmax=up, extent=extent, interpolation="nearest")
    ax.set_aspect(spacing_ij[1] / spacing_ij[0])
    jj, ii = np.mgrid[j0:j1, i0:i1]
    m = np.asarray(mask)[j0:j1, i0:i1]
    ax.contour(ii, jj, (m == 1).astype(float), levels=[0.5], colors="#ffd000", linewidths=1.0)
    ax.contour(ii, jj, (m == 2).astype(float), levels=[0.5], colors="#ff4040", linewidths=0.8)
    seg = np.asarray(segments)
    myo = seg > 0
    if myo.any():
        sj, si = np.nonzero(myo)
        r_out = float(np.max(np.hypot(si - c[0], sj - c[1]))) + 2.0
    else:
        r_out = 20.0
    for _s, d0, _ in aha.segment_boundaries_deg(level):
        p_out = aha.direction_to_point(c, d0, r_out, a_rvi_ij, seen_from_apex)
        p_in = aha.direction_to_point(c, d0, 0.35 * r_out, a_rvi_ij, seen_from_apex)
        ax.plot([p_in[0], p_out[0]], [p_in[1], p_out[1]], color="#00e5ff", lw=1.1)
    seg_crop = seg[j0:j1, i0:i1].astype(float)
    rgba = np.zeros(seg_crop.shape + (4,))
    for s in np.unique(seg[myo]):
        rgba[seg_crop == s] = (*_sector_colour(int(s)), 0.3)
    ax.imshow(rgba, extent=extent, interpolation="nearest")
    badges = []
    for s in np.unique(seg[myo]):
        # number at the sector's mid-angle, just outside the epicardium
        d = float(np.mean([(d0 + d1) / 2 for ss, d0, d1 in aha.segment_boundaries_deg(level) if ss == s]))
        p = aha.direction_to_point(c, d, r_out + 2.5, a_rvi_ij, seen_from_apex)
        p = _pull_inside(c, p, (i0 - 0.5, i1 - 0.5, j0 - 0.5, j1 - 0.5))
        badges.append(ax.text(p[0], p[1], str(int(s)), color="white", fontsize=10, ha="center", va="center",
                              fontweight="bold", bbox={"boxstyle": "round,pad=0.15", "fc": _sector_colour(int(s)),
                                                       "ec": "none", "alpha": 0.9}))
    ax.plot(*c, marker="+", color="#ff4040", ms=10, mew=1.5)
    trust = rvi_trust or {}
    low_any = False
    labels = []
    for name, p, colour, dy in (("A-RVI", a_rvi_ij, "#00ff66", -6), ("I-RVI", i_rvi_ij, "#ff66ff", 6)):
        if p is None:
            continue
        conf, flag = trust.get(name, (None, "high"))
        label = name
        if flag != "high":
            colour, low_any = "#ff8c00", True
            label = f"{name} ({flag} {conf:.2f})" if conf is not None else f"{name} ({flag})"
        ax.plot(*np.asarray(p, float), marker="o", color=colour, ms=7, mec="black")
        labels.append(ax.annotate(label, np.asarray(p, float), color=colour, fontsize=9, xytext=(6, dy),
                                  textcoords="offset points", fontweight="bold"))
    from CardiacLandmarksLib.core.orientation import draw_orientation

    letters = draw_orientation(ax, direction, orientation_known, corner=(0.86, 0.84))
    ax.set_xlim(i0 - 0.5, i1 - 0.5)
    ax.set_ylim(j1 - 0.5, j0 - 0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    turn = "counter-clockwise" if seen_from_apex else "clockwise (display seen from the base)"
    sub = f"{aha.normalise_level(level)} slice, AHA segments {turn} from A-RVI"
    if frames is not None:
        sub += f"\nframe {frames[0]} shown, moved onto reference frame {frames[1]} (sectors and points)"
    if rvi_source:
        sub += f"\nRVI: {rvi_source}"
    warning = rvi_warning(trust)
    if warning:
        sub += "\n" + warning
    ax.set_title((title + "\n" if title else "") + sub, fontsize=8, wrap=True,
                 color="#b35900" if low_any else "black")
    _clear_labels(fig, ax, badges, labels, c)
    from CardiacLandmarksLib.core.orientation import orientation_text

    fig.text(0.5, 0.01, orientation_text(orientation_known, letters), ha="center", fontsize=6.5, color="#404040")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return _save(fig, path, dpi)
