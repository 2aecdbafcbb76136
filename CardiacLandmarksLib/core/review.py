"""Review of flagged landmarks and the correction rule: what the Slicer panel and the web review app share.

A reader reviews only the doubtful points (Xue et al. 2021 report 96.6-99.8% detection, so most points need
no look; which ones do is PHD-Net's flag, Schobs et al. ISBI 2021):

* :func:`flagged_points` - the review queue: points flagged ``low`` or ``absent`` and not yet corrected, in
  (phase, slice, landmark) order or by rising confidence;
* :func:`next_flagged` - the next point after a cursor, wrapping around;
* :func:`flag_counts` - how many points are high / low / absent / corrected / confirmed;
* :func:`position_problem` - why a reader's position cannot be taken (off its slice, outside the image);
* :func:`corrected_landmark` - the correction rule: a point that differs from the model's detection (moved
  by more than :data:`POSITION_TOLERANCE_MM`, placed, or unset) becomes *corrected* with confidence 1 (or 0
  and ``absent`` when unset); one the reader *confirmed* where the model put it becomes corrected too (and
  ``confirmed``): a low point the reader checked and found right is trusted like a moved one; otherwise it
  keeps the detection's confidence and flag.

Positions are LPS mm; ``ijk`` is the continuous (i, j, k) index of the series.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from CardiacLandmarksLib.core.landmarks import Landmark

#: a point moved by less than this (mm) is the model's point (rounding in a viewer)
POSITION_TOLERANCE_MM = 1e-3
REVIEW_FLAGS = ("low", "absent")


def position_problem(slice: int, ijk, shape_ji) -> str | None:
    """Why a reader's position cannot be a landmark of slice ``slice``, or None when it can: it must lie within half
    a slice of the slice's plane and inside the image's field in plane (a point dragged in a 3D view or past the
    image's edge in a slice view, or a typing slip in a file, lands anywhere).

    Args:
        slice: the point's slice index.
        ijk: ``[3]`` continuous (i, j, k) index of the position (i along columns, j along rows).
        shape_ji: ``(rows, columns)`` of the image.

    Returns:
        ``"lies on slice 3.20, not on slice 4"``, ``"lies outside the image (column 140.0, row -12.0 of 256 x 216)"``,
        or None.
    """
    i, j, k = (float(x) for x in np.asarray(ijk, float).reshape(3))
    if abs(k - int(slice)) > 0.5:
        return f"lies on slice {k:.2f}, not on slice {int(slice)}"
    rows, cols = (int(n) for n in shape_ji)
    if not (-0.5 <= i <= cols - 0.5 and -0.5 <= j <= rows - 0.5):
        return f"lies outside the image (column {i:.1f}, row {j:.1f} of {cols} x {rows})"
    return None


@dataclass(frozen=True)
class FlaggedPoint:
    """A landmark to review: ``flag`` ``"low"`` or ``"absent"`` (never a corrected one).

    ``index`` is the landmark's position in its view's name list (the control point index in a slice's point
    list); ``case`` names the result folder in a cohort (empty for one result).
    """

    name: str
    slice: int
    phase: int
    index: int
    flag: str
    confidence: float
    case: str = ""
    #: why the point is low, or why an absent one should be checked (a point the network nearly
    #: found: :func:`CardiacLandmarksLib.sax.pipeline.doubt_absences`), in words (:attr:`Landmark.doubt`);
    #: empty without a reason
    doubt: str = ""

    @property
    def order(self) -> tuple:
        """Place in a queue by rising confidence: the least confident first, an absent point with a doubt before
        the other absent points, then :attr:`key`."""
        return (self.confidence, not self.doubt, self.key)

    @property
    def key(self) -> tuple:
        """Review order: case, phase, slice, landmark."""
        return (self.case, self.phase, self.slice, self.index) if self.case else (self.phase, self.slice, self.index)


def flagged_points(landmarks: Iterable[Landmark], names: Sequence[str], case: str = "",
                   by_confidence: bool = False) -> list[FlaggedPoint]:
    """The review queue of one result.

    Args:
        landmarks: the current landmarks (detected or corrected).
        names: the view's landmark names in display order (``LANDMARKS_BY_VIEW[view]``).
        case: result name, for a queue across a cohort (:func:`merge_queues`).
        by_confidence: order by rising confidence (absent first, those with a doubt before the others:
            :attr:`FlaggedPoint.order`) instead of phase, slice, landmark.

    Returns:
        Points flagged low or absent and not corrected.
    """
    order = {name: n for n, name in enumerate(names)}
    points = [FlaggedPoint(lm.name, int(lm.slice), int(lm.phase), order.get(lm.name, len(order)), lm.flag,
                           float(lm.confidence), case, lm.doubt)
              for lm in landmarks if not lm.corrected and lm.flag in REVIEW_FLAGS]
    if by_confidence:  # among the absent points (confidence 0), those with a doubt first
        return sorted(points, key=lambda p: p.order)
    return sorted(points, key=lambda p: p.key)


def merge_queues(queues: Iterable[list[FlaggedPoint]]) -> list[FlaggedPoint]:
    """One queue across the results of a cohort, by rising confidence (the most doubtful first)."""
    return sorted((p for q in queues for p in q), key=lambda p: p.order)


def next_flagged(points: Sequence[FlaggedPoint], after: tuple | None = None) -> FlaggedPoint | None:
    """The first point whose key is after ``after`` (a :attr:`FlaggedPoint.key`), wrapping; None when empty."""
    if not points:
        return None
    if after is not None:
        for point in points:
            if point.key > tuple(after):
                return point
    return points[0]


def is_doubtful_absence(lm: Landmark) -> bool:
    """A point not found that is worth a look (the network nearly found it, or a presence rule left it out:
    :func:`CardiacLandmarksLib.sax.pipeline.doubt_absences`) and that the reader has not yet placed or confirmed;
    the other ``absent`` points of :func:`flag_counts` are clear absences."""
    return lm.flag == "absent" and bool(lm.doubt) and not (lm.corrected or lm.confirmed)


def doubtful_absences(landmarks: Iterable[Landmark]) -> list[str]:
    """The doubts of the points of :func:`is_doubtful_absence`, one per point."""
    return [lm.doubt for lm in landmarks if is_doubtful_absence(lm)]


def flag_counts(landmarks: Iterable[Landmark]) -> dict[str, int]:
    """Numbers of points by state: ``total``, ``high``, ``low``, ``absent``, ``corrected`` (moved, placed or
    unset by the reader) and ``confirmed`` (kept by the reader where the model put it); each point counts once."""
    counts = {"total": 0, "high": 0, "low": 0, "absent": 0, "corrected": 0, "confirmed": 0}
    for lm in landmarks:
        counts["total"] += 1
        counts["confirmed" if lm.confirmed else "corrected" if lm.corrected else lm.flag] += 1
    return counts


def corrected_landmark(detected: Landmark | None, name: str, slice: int, phase: int, defined: bool,
                       position_lps, ijk, shown_confidence: float = float("nan"), selected: bool = True,
                       user_marked: bool = False, tolerance_mm: float = POSITION_TOLERANCE_MM,
                       confirmed: bool = False) -> Landmark:
    """The landmark a viewer shows, with the correction rule applied.

    Args:
        detected: the model's landmark at (name, slice, phase), or None when the point did not come from a
            detection of this tool (then the viewer's own state is trusted).
        name, slice, phase: identity of the point.
        defined: the point has a position (False: not placed / unset).
        position_lps: ``[3]`` LPS mm (ignored when not defined).
        ijk: ``[3]`` continuous (i, j, k) of ``position_lps``.
        shown_confidence: confidence the viewer shows (used when ``detected`` is None).
        selected: the viewer's selected state (high when ``detected`` is None and not corrected).
        user_marked: the viewer says a user placed or cleared this point (``detected`` None).
        tolerance_mm: a point moved by no more than this is the model's point (a file that rounds positions
            needs more than the default).
        confirmed: the viewer says the reader confirmed this point where it is (a Slicer control point or
            ``.mrk.json`` description ``"confirmed by user"``): a defined point that has not moved from the
            detection becomes corrected and ``confirmed``; a moved one is a plain correction.

    Returns:
        :class:`Landmark` with ``corrected`` (and ``confirmed``) set; a corrected point has confidence 1 and
        flag ``high`` (0 and ``absent`` when unset).
    """
    kept = False  # a defined point at the detection's position (or one with nothing to compare with)
    if detected is None:
        corrected = user_marked or (confirmed and defined)
        kept = True
    elif defined != bool(detected.found):
        corrected = True
    elif defined:
        moved = float(np.linalg.norm(np.asarray(position_lps, float) - np.asarray(detected.position, float)))
        kept = moved <= tolerance_mm and (bool(detected.confirmed) or not detected.corrected)
        corrected = moved > tolerance_mm or bool(detected.corrected) or confirmed
    else:
        corrected = bool(detected.corrected)
    confirmed = bool(defined and corrected and kept and (confirmed or (detected is not None and detected.confirmed)))
    if corrected:
        confidence, flag = (1.0, "high") if defined else (0.0, "absent")
    elif detected is not None:
        confidence, flag = float(detected.confidence), detected.flag
    else:
        confidence = float(shown_confidence) if np.isfinite(shown_confidence) else 0.0
        flag = "absent" if not defined else ("high" if selected else "low")
    if defined:
        position, ijk = np.asarray(position_lps, float), np.asarray(ijk, float)
    else:
        position = ijk = np.full(3, np.nan)
    # why the model's point is low, or why its absence should be checked; gone once the reader acts on the point
    doubt = detected.doubt if detected is not None and not corrected and flag in ("low", "absent") else ""
    return Landmark(name, int(slice), int(phase), bool(defined), position, ijk, float(confidence), flag,
                    bool(corrected), doubt, confirmed)
