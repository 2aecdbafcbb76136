"""Long-axis (2CH/3CH/4CH) landmark labels derived from LV cavity / myocardium masks.

No public set here carries expert long-axis landmark coordinates, so the mitral-valve hinge
points and the apex of Xue et al., "Landmark detection in cardiac MRI by using a
convolutional neural network", Radiology: AI 2021, are derived from manual masks:

* **hinge points** = the two basal ends of the myocardium "horseshoe" seen in a long-axis
  slice. The ends are the two extremities of the geodesic diameter of the myocardium mask
  (the pair of myocardium pixels farthest apart along paths inside the myocardium, in mm);
  each hinge is the centroid of the myocardium pixels within ``end_window_mm`` (geodesic)
  of its extremity, i.e. the tip of the basal end of the wall (for the 1-3 pixel thick
  M&Ms-2 walls, the middle of the end face);
* **APEX** = the LV point farthest (Euclidean, mm) from the midpoint of the two hinges.
  "LV" is the cavity plus the myocardium by default (``apex_surface="epicardial"``, the
  tip of the heart, which moves little through the cycle); ``"endocardial"`` uses the
  cavity only. The centroid of the LV pixels within 1 mm of the maximum distance is taken.

**Which hinge is which** (:func:`name_hinges`), in order of preference:

1. ``"rv"`` (4CH only, mask with an RV label): the septal hinge ``IS-P`` is the hinge
   nearer (mm) to the RV cavity, the other is ``AL-P``. This uses the image content only,
   so it holds whatever the file's orientation header says.
2. ``"geometry"`` (patient orientation known): the hinge further along a patient direction:
   4CH ``IS-P`` towards the patient's right-anterior ``(-1, -1, 0)/sqrt 2`` (LPS);
   2CH ``A-P`` towards anterior-superior ``(0, -1, 1)/sqrt 2``; 3CH ``AS-P`` (by the aortic
   root) towards right-anterior-superior ``(-1, -1, 1)/sqrt 3``; the other is ``AL-P`` /
   ``I-P`` / ``IL-P``. Caution: the M&Ms-2 NIfTI files in the shared data read with
   x and y negated (their RV lies to the patient's left-posterior of the LV in SAX), so on
   those files rule 2 names the hinges the wrong way round; rule 1 is used there.
3. ``"display"`` (no RV label, orientation unknown): the standard display convention of
   an apex-up long-axis view with the LV on the viewer's right: the hinge on the viewer's
   left of the valve-midpoint -> apex axis is ``IS-P`` / ``A-P`` / ``AS-P``. Pure
   chirality: holds under in-plane rotation, a mirror image swaps the names.

All 2D coordinates are continuous pixel indices ``(i, j)`` = (column, row) of the mask slice
``[j, i]``; distances use the pixel size ``spacing = (si, sj)`` in mm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from CardiacLandmarksLib.core.errors import InvalidImageError
from CardiacLandmarksLib.core.geometry import RIGHT_ANTERIOR_LPS

logger = logging.getLogger(__name__)

#: label values of the M&Ms-2 masks (1 = LV cavity, 2 = LV myocardium, 3 = RV cavity)
MNMS2_LAX_LABELS = {"lv": 1, "myo": 2, "rv": 3}

#: LAX views and their (first hinge, second hinge) names: first = septal / anterior side
HINGE_NAMES: dict[str, tuple[str, str]] = {
    "2ch": ("A-P", "I-P"),
    "3ch": ("AS-P", "IL-P"),
    "4ch": ("IS-P", "AL-P"),
}
#: LPS direction towards which the first hinge of each view lies (see module docstring)
FIRST_HINGE_DIRECTION_LPS: dict[str, np.ndarray] = {
    "2ch": np.array([0.0, -1.0, 1.0]) / np.sqrt(2.0),
    "3ch": np.array([-1.0, -1.0, 1.0]) / np.sqrt(3.0),
    "4ch": RIGHT_ANTERIOR_LPS,
}

#: label values of the UK Biobank ``seg4_la_4ch`` silver masks (made by the networks of Bai et al.,
#: JCMR 2018): 1 = LV cavity, 2 = LV myocardium, 3 = RV cavity (4 = LA and 5 = RA are not used:
#: the hinges come from the myocardium horseshoe, as for M&Ms-2)
UKBB_LAX4CH_LABELS = {"lv": 1, "myo": 2, "rv": 3}

#: a long-axis mask's LV cavity label is taken for what it is when at least this share of the pixels just outside
#: it are myocardium (mean over frames; :func:`CardiacLandmarksLib.sax.labels.label_problem`). Lower than the SAX
#: rule's 0.7: the LV opens onto the atrium at the mitral annulus. Measured: M&Ms-2 001 LA ED 0.84 / ES 0.80
#: (RV 0.38 / 0.39); UK Biobank demo 4CH masks with both atria labelled (``seg4_la_4ch``, 50 frames) 0.79 and
#: 0.78 (RV 0.30 and 0.33).
MIN_LAX_LV_ENCLOSURE = 0.5


def lax_mask_problem(pixels, labels: dict) -> str:
    """Why a long-axis mask (``pixels [t, k, j, i]`` or any array of planes) does not follow ``labels``, or ``""``
    (:func:`CardiacLandmarksLib.sax.labels.label_problem` at :data:`MIN_LAX_LV_ENCLOSURE`, over every plane)."""
    from CardiacLandmarksLib.sax.labels import label_problem

    planes = np.rint(np.asarray(pixels)).astype(int)
    return label_problem(planes.reshape(-1, *planes.shape[-2:]), labels, MIN_LAX_LV_ENCLOSURE)


def lax_label_error(problems: list[str], n_masks: int, labels: dict):
    """The :class:`~CardiacLandmarksLib.core.errors.LabelConventionError` for long-axis masks that do not follow
    ``labels`` (``problems``: ``"<mask file>: <why>"``; the first three named)."""
    from CardiacLandmarksLib.core.errors import LabelConventionError

    values = ",".join(f"{k}={labels[k]}" for k in ("lv", "myo", "rv"))
    return LabelConventionError(
        f"{len(problems)} of {n_masks} masks do not follow the label values {values}: " + "; ".join(problems[:3])
        + (" ..." if len(problems) > 3 else "") + ". Give the masks' values with --labels rv=N,myo=N,lv=N")

#: smallest myocardium / cavity (pixels) for labels to be derived
MIN_MYO_PIXELS = 20
MIN_LV_PIXELS = 20


@dataclass
class LaxLabels:
    """Landmarks derived from one long-axis mask slice.

    Attributes:
        view: ``"2ch"``, ``"3ch"`` or ``"4ch"``.
        points: ``{name: (i, j) float array}`` for the view's three landmarks (continuous
            pixel indices); a landmark that cannot be derived is absent from the dict.
        naming: which rule named the hinges: ``"rv"``, ``"geometry"`` or ``"display"``.
        notes: human-readable remarks (e.g. myocardium gaps bridged).
    """

    view: str
    points: dict[str, np.ndarray]
    naming: str
    notes: list[str] = field(default_factory=list)

    def mitral_midpoint(self) -> np.ndarray | None:
        """Midpoint ``(i, j)`` of the two hinges, or None when one is missing."""
        a, b = HINGE_NAMES[self.view]
        if a in self.points and b in self.points:
            return (self.points[a] + self.points[b]) / 2.0
        return None


def _check_view(view: str) -> str:
    v = (view or "").lower()
    if v not in HINGE_NAMES:
        raise ValueError(f"long-axis view must be one of {sorted(HINGE_NAMES)}, not {view!r}")
    return v


def _pixel_graph(mask: np.ndarray, spacing: tuple[float, float]):
    """8-connected graph of the True pixels of ``mask [j, i]``; edge weights in mm."""
    jj, ii = np.nonzero(mask)
    index = -np.ones(mask.shape, int)
    index[jj, ii] = np.arange(len(jj))
    rows, cols, w = [], [], []
    h, wd = mask.shape
    si, sj = spacing
    for dj, di in ((0, 1), (1, 0), (1, 1), (1, -1)):
        j2, i2 = jj + dj, ii + di
        ok = (j2 >= 0) & (j2 < h) & (i2 >= 0) & (i2 < wd)
        ok[ok] = mask[j2[ok], i2[ok]]
        a = index[jj[ok], ii[ok]]
        b = index[j2[ok], i2[ok]]
        rows.append(a)
        cols.append(b)
        w.append(np.full(len(a), float(np.hypot(di * si, dj * sj))))
    r, c, ww = np.concatenate(rows), np.concatenate(cols), np.concatenate(w)
    n = len(jj)
    graph = coo_matrix((np.r_[ww, ww], (np.r_[r, c], np.r_[c, r])), shape=(n, n)).tocsr()
    return graph, np.column_stack([ii, jj]).astype(float)


def horseshoe_ends(
    myo: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0), end_window_mm: float = 3.0, max_gap_mm: float = 8.0
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The two ends of a horseshoe-shaped myocardium mask.

    Args:
        myo: ``[j, i]`` bool mask of the LV myocardium in a long-axis slice.
        spacing: pixel size ``(si, sj)`` in mm.
        end_window_mm: each end point is the centroid of the pixels within this geodesic
            distance of the extremity (a fixed window, so the point keeps the same meaning at
            ED and ES; on a wall much thicker than the window it lies towards the corner of
            the end face that is farthest along the horseshoe, within half the thickness).
        max_gap_mm: breaks in the myocardium up to this size are bridged by a morphological
            closing before the geodesic diameter is taken (only the original pixels are used
            for the end points).

    Returns:
        ``(end_a (i, j), end_b (i, j), notes)``.

    Raises:
        InvalidImageError: fewer than :data:`MIN_MYO_PIXELS` myocardium pixels, or a
            myocardium that stays in pieces after bridging gaps of ``max_gap_mm``.
    """
    myo = np.asarray(myo, bool)
    notes: list[str] = []
    if myo.sum() < MIN_MYO_PIXELS:
        raise InvalidImageError(f"myocardium mask has {int(myo.sum())} pixels; need >= {MIN_MYO_PIXELS}")
    work = myo
    _, n = ndimage.label(work, structure=np.ones((3, 3), bool))
    if n > 1:
        # keep components of meaningful size, then bridge gaps
        lab, n = ndimage.label(work, structure=np.ones((3, 3), bool))
        sizes = ndimage.sum(work, lab, range(1, n + 1))
        keep = np.isin(lab, 1 + np.nonzero(sizes >= max(5, 0.05 * sizes.max()))[0])
        work = keep
        r = 1
        px = min(spacing)
        while ndimage.label(work, structure=np.ones((3, 3), bool))[1] > 1:
            if r * px > max_gap_mm / 2.0:
                raise InvalidImageError(f"myocardium is in pieces separated by more than {max_gap_mm} mm; "
                                        "cannot find the horseshoe ends")
            work = keep | ndimage.binary_closing(keep, structure=np.ones((3, 3), bool), iterations=r)
            r += 1
        notes.append(f"myocardium gaps bridged (closing radius {r - 1} px)")
    graph, xy = _pixel_graph(work, spacing)
    d0 = dijkstra(graph, indices=0)
    a = int(np.argmax(np.where(np.isfinite(d0), d0, -1)))
    da = dijkstra(graph, indices=a)
    b = int(np.argmax(np.where(np.isfinite(da), da, -1)))
    db = dijkstra(graph, indices=b)
    orig = myo[xy[:, 1].astype(int), xy[:, 0].astype(int)]

    def cap(dist: np.ndarray) -> np.ndarray:
        sel = (dist <= end_window_mm) & orig
        if not sel.any():
            sel = dist <= dist[orig].min() + end_window_mm
        return xy[sel].mean(axis=0)

    return cap(da), cap(db), notes


def farthest_point(region: np.ndarray, origin_ij: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0),
                   tol_mm: float = 1.0) -> np.ndarray:
    """Centroid ``(i, j)`` of the pixels of ``region [j, i]`` within ``tol_mm`` of the largest
    Euclidean distance (mm) from ``origin_ij``."""
    jj, ii = np.nonzero(region)
    d = np.hypot((ii - origin_ij[0]) * spacing[0], (jj - origin_ij[1]) * spacing[1])
    sel = d >= d.max() - tol_mm
    return np.array([ii[sel].mean(), jj[sel].mean()], float)


def name_hinges(
    view: str,
    h1_ij: np.ndarray,
    h2_ij: np.ndarray,
    apex_ij: np.ndarray | None = None,
    *,
    rv_mask: np.ndarray | None = None,
    spacing: tuple[float, float] = (1.0, 1.0),
    ijk_to_lps=None,
    orientation_known: bool = False,
) -> tuple[tuple[np.ndarray, np.ndarray], str]:
    """Order two hinge points as (first, second) = e.g. (IS-P, AL-P) by the rules of the module docstring.

    Args:
        view: ``"2ch"``, ``"3ch"`` or ``"4ch"``.
        h1_ij, h2_ij: the hinges, ``(i, j)``.
        apex_ij: the apex ``(i, j)`` (needed for the display rule).
        rv_mask: ``[j, i]`` bool RV cavity (4CH rule 1); None or empty = not available.
        spacing: pixel size (si, sj) mm.
        ijk_to_lps: callable ``(3,) ijk -> (3,) LPS`` (e.g. ``series.ijk_to_lps`` with k = slice).
        orientation_known: whether ``ijk_to_lps`` gives real patient coordinates.

    Returns:
        ``((first_ij, second_ij), rule)`` with rule ``"rv"``, ``"geometry"`` or ``"display"``.

    Raises:
        ValueError: unknown view, or no rule applicable (display rule without apex).
    """
    view = _check_view(view)
    h1, h2 = np.asarray(h1_ij, float), np.asarray(h2_ij, float)
    if view == "4ch" and rv_mask is not None and np.asarray(rv_mask).any():
        jj, ii = np.nonzero(rv_mask)
        rv = np.column_stack([ii * spacing[0], jj * spacing[1]])

        def dist(p: np.ndarray) -> float:
            return float(np.min(np.hypot(rv[:, 0] - p[0] * spacing[0], rv[:, 1] - p[1] * spacing[1])))

        return ((h1, h2) if dist(h1) <= dist(h2) else (h2, h1)), "rv"
    if orientation_known and ijk_to_lps is not None:
        p1 = np.asarray(ijk_to_lps(np.r_[h1, 0.0]), float)
        p2 = np.asarray(ijk_to_lps(np.r_[h2, 0.0]), float)
        u = FIRST_HINGE_DIRECTION_LPS[view]
        return ((h1, h2) if (p1 - p2) @ u >= 0 else (h2, h1)), "geometry"
    if apex_ij is None:
        raise ValueError("cannot name the hinges: no RV mask, no orientation and no apex")
    return display_order(h1, h2, np.asarray(apex_ij, float)), "display"


def display_order(h1: np.ndarray, h2: np.ndarray, apex: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, second) by the display rule: with the apex up and the LV on the viewer's right,
    the first hinge (IS-P / A-P / AS-P) is on the viewer's left.

    In image coordinates (j pointing down), with ``a`` = midpoint -> apex, a hinge ``h`` is on
    the viewer's left of ``a`` when the 2D cross product ``a x (h - mid)`` is negative.
    """
    mid = (h1 + h2) / 2.0
    a = apex - mid

    def cross(h: np.ndarray) -> float:
        d = h - mid
        return float(a[0] * d[1] - a[1] * d[0])

    return (h1, h2) if cross(h1) <= cross(h2) else (h2, h1)


#: the patient direction at the top of every long-axis canvas (``make_grid(..., up=LAX_CANVAS_UP)``): the LAX models
#: were trained on it and :data:`CANVAS_4CH_HANDEDNESS` was checked on it (short-axis canvases have the head up)
LAX_CANVAS_UP = "anterior"

#: handedness of a four-chamber view on the long-axis canvas of :func:`..core.preprocessing.make_grid` for
#: every image with a real patient geometry (seen from the feet): the RV lies on the side of the
#: mitral-midpoint -> apex axis where :func:`four_chamber_handedness` is -1 (e.g. apex up-right,
#: RV on the viewer's left). Checked on M&Ms-2 001 and both UK Biobank demo subjects, all frames.
CANVAS_4CH_HANDEDNESS = -1


def four_chamber_handedness(apex_xy, mitral_mid_xy, lv_xy, rv_xy) -> int:
    """Sign of the 2D cross product ``(apex - mitral midpoint) x (RV centroid - LV centroid)``.

    Args:
        apex_xy, mitral_mid_xy, lv_xy, rv_xy: ``(x, y)`` = (column, row) image or canvas
            coordinates (y pointing down) of the apex, the midpoint of the two mitral hinges and
            the LV and RV centroids.

    Returns:
        -1 or +1 (0 when degenerate). A mirror image of the same view has the opposite sign;
        an in-plane rotation keeps it. :data:`CANVAS_4CH_HANDEDNESS` is the sign every real
        four-chamber view has on the canvas.
    """
    a = np.asarray(apex_xy, float)[:2] - np.asarray(mitral_mid_xy, float)[:2]
    d = np.asarray(rv_xy, float)[:2] - np.asarray(lv_xy, float)[:2]
    return int(np.sign(a[0] * d[1] - a[1] * d[0]))


def derive_lax_landmarks(
    mask: np.ndarray,
    view: str = "4ch",
    lv: int = 1,
    myo: int = 2,
    rv: int | None = 3,
    spacing: tuple[float, float] = (1.0, 1.0),
    *,
    ijk_to_lps=None,
    orientation_known: bool = False,
    apex_surface: str = "epicardial",
    end_window_mm: float = 3.0,
) -> LaxLabels:
    """Derive the view's mitral hinge points and apex from one long-axis mask slice.

    Args:
        mask: ``[j, i]`` integer labels.
        view: ``"2ch"``, ``"3ch"`` or ``"4ch"``.
        lv, myo, rv: label values of LV cavity, LV myocardium and RV cavity (``rv`` None = no
            RV label). Defaults: M&Ms-2 (:data:`MNMS2_LAX_LABELS`).
        spacing: pixel size ``(si, sj)`` in mm.
        ijk_to_lps: callable ``(3,) (i, j, k) -> LPS`` for the geometry naming rule.
        orientation_known: whether that mapping is a real patient orientation.
        apex_surface: ``"epicardial"`` (cavity + myocardium) or ``"endocardial"`` (cavity).
        end_window_mm: see :func:`horseshoe_ends`.

    Returns:
        :class:`LaxLabels` (coordinates ``(i, j)`` continuous pixel indices). When the mask
        holds no usable LV (fewer than :data:`MIN_LV_PIXELS` cavity or
        :data:`MIN_MYO_PIXELS` myocardium pixels) ``points`` is empty.

    Raises:
        ValueError: unknown view or apex_surface.
        InvalidImageError: a mask that is not 2D, or a myocardium in far-apart pieces.
    """
    view = _check_view(view)
    if apex_surface not in ("epicardial", "endocardial"):
        raise ValueError(f"apex_surface must be 'epicardial' or 'endocardial', not {apex_surface!r}")
    m = np.asarray(mask)
    if m.ndim != 2:
        raise InvalidImageError(f"expected a 2D [j, i] mask, got shape {m.shape}")
    m = np.rint(m).astype(np.int32)
    lv_m, myo_m = m == lv, m == myo
    out = LaxLabels(view=view, points={}, naming="none")
    if lv_m.sum() < MIN_LV_PIXELS or myo_m.sum() < MIN_MYO_PIXELS:
        out.notes.append("no usable LV cavity / myocardium in the mask")
        return out
    e1, e2, notes = horseshoe_ends(myo_m, spacing, end_window_mm)
    out.notes += notes
    mid = (e1 + e2) / 2.0
    region = (lv_m | myo_m) if apex_surface == "epicardial" else lv_m
    apex = farthest_point(region, mid, spacing)
    rv_m = (m == rv) if rv is not None else None
    (first, second), rule = name_hinges(view, e1, e2, apex, rv_mask=rv_m, spacing=spacing,
                                        ijk_to_lps=ijk_to_lps, orientation_known=orientation_known)
    n1, n2 = HINGE_NAMES[view]
    out.points = {n1: first, n2: second, "APEX": apex}
    out.naming = rule
    if rule == "rv" and ijk_to_lps is not None and orientation_known:
        p1 = np.asarray(ijk_to_lps(np.r_[first, 0.0]), float)
        p2 = np.asarray(ijk_to_lps(np.r_[second, 0.0]), float)
        if (p1 - p2) @ FIRST_HINGE_DIRECTION_LPS[view] < 0:
            out.notes.append("the RV-adjacency naming contradicts the file's orientation header "
                             "(IS-P is not towards the patient's right-anterior): check the header")
    return out


def derive_from_series(image_series, mask_series, view: str = "4ch", labels: dict | None = None,
                       k: int = 0, t: int = 0, **kwargs) -> LaxLabels:
    """:func:`derive_lax_landmarks` on slice ``k``, phase ``t`` of a mask :class:`~.series.CMRSeries`,
    using the image series' spacing and geometry (for the naming rules).

    ``labels``: ``{"lv", "myo", "rv"}`` values (default M&Ms-2's; ``"rv"`` may be None).
    """
    lab = dict(MNMS2_LAX_LABELS if labels is None else labels)
    ser = image_series if image_series is not None else mask_series

    def to_lps(ijk: np.ndarray) -> np.ndarray:
        q = np.asarray(ijk, float).copy()
        q[2] = k
        return ser.ijk_to_lps(q)

    return derive_lax_landmarks(mask_series.pixels[t, k], view, lv=lab["lv"], myo=lab["myo"], rv=lab.get("rv"),
                                spacing=(float(ser.spacing[0]), float(ser.spacing[1])), ijk_to_lps=to_lps,
                                orientation_known=bool(ser.orientation_known), **kwargs)
