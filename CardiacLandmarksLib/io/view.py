"""Which cardiac view a series shows: SAX, 2CH, 3CH or 4CH.

Evidence, strongest first (:func:`recognise_view`):

1. **user override** (``override="4ch"`` / ``--view 4ch``): always wins;
2. **series description** (DICOM SeriesDescription / ProtocolName, or the file name):
   keywords via :func:`.io_common.guess_view` (``sax``/``sa``/``short axis``; ``2ch``/``vla``;
   ``3ch``/``lvot``; ``4ch``/``hla``/``four chamber`` ...);
3. **orientation** (real patient geometry only, ``series.orientation_known``): the angle
   between the image-plane normal and a nominal LV long axis. In the supine scanner frame
   the LV long axis (base -> apex) points left, anterior and inferior; we take
   ``NOMINAL_LONG_AXIS_LPS`` = normalised ``(0.6, -0.5, -0.6)`` (about 45 degrees from the
   body axes; published adult averages lie within ~20 degrees of it). A plane whose normal
   lies within ``SAX_MAX_DEG`` (40 degrees) of that axis is a short-axis plane; one whose
   normal is at least ``LAX_MIN_DEG`` (60 degrees) from it contains the long axis (a
   long-axis view). Between the two, or for a LAX plane, the orientation alone cannot tell
   2CH from 3CH from 4CH reliably (they differ by a rotation about the patient's own long
   axis); a LAX plane without a description keyword is reported as ``"lax"`` with the
   chamber view unknown.

A multi-slice stack with more than ``SAX_MIN_SLICES`` (5) parallel slices is taken as SAX
when nothing else decides (long-axis cines are single slices, or 2-3 slices).

A description that says "long axis" without the chamber (``LA``, ``LAX``, ``long axis``, as in
M&Ms-2's ``001_LA_CINE``) gives ``"lax"`` and outranks the orientation.

Returns a :class:`ViewGuess` with the view, the evidence used and a human-readable reason.
Caution: the orientation rule trusts the file header. The M&Ms-2 NIfTI copies in the shared
data read with LPS x and y negated (in their SAX stacks the RV lies to the patient's
left-posterior of the LV); on them the rule calls the 4CH cine a short-axis plane (27 degrees)
and the SAX stack a long-axis one (76 degrees). Their names (``_LA_``/``_SA_``) decide first.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

from CardiacLandmarksLib.io.common import guess_view

logger = logging.getLogger(__name__)

VIEW_CHOICES = ("auto", "sax", "2ch", "3ch", "4ch")
NOMINAL_LONG_AXIS_LPS = np.array([0.6, -0.5, -0.6]) / np.linalg.norm([0.6, -0.5, -0.6])
SAX_MAX_DEG = 40.0
LAX_MIN_DEG = 60.0
SAX_MIN_SLICES = 5
_LAX_WORDS = re.compile(r"\b(la|lax|long ?axis|longaxis)\b")


@dataclass(frozen=True)
class ViewGuess:
    """Result of :func:`recognise_view`.

    Attributes:
        view: ``"sax"``, ``"2ch"``, ``"3ch"``, ``"4ch"``, ``"lax"`` (long axis, chamber view
            unknown) or ``"unknown"``.
        source: ``"override"``, ``"description"``, ``"orientation"``, ``"slices"`` or ``"none"``.
        reason: one line for logs and the user.
        normal_angle_deg: angle between the plane normal and the nominal long axis (0-90),
            None without orientation.
    """

    view: str
    source: str
    reason: str
    normal_angle_deg: float | None = None

    @property
    def is_lax(self) -> bool:
        return self.view in ("2ch", "3ch", "4ch", "lax")


def plane_normal_angle_deg(direction: np.ndarray) -> float:
    """Angle (degrees, 0-90) between the slice normal (``direction[:, 2]``, or i x j) and the
    nominal LV long axis :data:`NOMINAL_LONG_AXIS_LPS`."""
    d = np.asarray(direction, float).reshape(3, 3)
    n = np.cross(d[:, 0], d[:, 1])
    n = n / np.linalg.norm(n)
    c = abs(float(n @ NOMINAL_LONG_AXIS_LPS))
    return float(np.degrees(np.arccos(np.clip(c, 0.0, 1.0))))


def view_from_orientation(direction: np.ndarray) -> tuple[str, float]:
    """``("sax" | "lax" | "unknown", angle)`` from the plane orientation alone (see module docstring)."""
    ang = plane_normal_angle_deg(direction)
    if ang <= SAX_MAX_DEG:
        return "sax", ang
    if ang >= LAX_MIN_DEG:
        return "lax", ang
    return "unknown", ang


def recognise_view(series, override: str | None = None, description: str | None = None) -> ViewGuess:
    """Decide the view of a :class:`~.series.CMRSeries` (see module docstring for the rules).

    Args:
        series: the series (uses ``description``, ``metadata['SeriesDescription']`` /
            ``['ProtocolName']`` when present, ``direction``, ``orientation_known``, ``n_slices``).
        override: ``"sax"``, ``"2ch"``, ``"3ch"`` or ``"4ch"`` to force; ``None``/``"auto"`` = decide.
        description: text to use instead of the series' own description.

    Returns:
        :class:`ViewGuess`.

    Raises:
        ValueError: ``override`` not one of :data:`VIEW_CHOICES`.
    """
    if override not in (None, "", *VIEW_CHOICES):
        raise ValueError(f"view must be one of {VIEW_CHOICES}, not {override!r}")
    angle = None
    if series.orientation_known:
        try:
            angle = plane_normal_angle_deg(series.direction)
        except (ValueError, FloatingPointError):
            angle = None
    if override and override != "auto":
        return ViewGuess(override, "override", f"view set by the user: {override}", angle)
    meta = series.metadata or {}
    texts = [description] if description is not None else [
        series.description, meta.get("SeriesDescription", ""), meta.get("ProtocolName", ""),
        str(series.source).replace("\\", "/").rsplit("/", 1)[-1]]
    for text in texts:
        if not text:
            continue
        v = guess_view(str(text), series.sequence)
        if v != "unknown":
            return ViewGuess(v, "description", f"description {text!r} names the {v.upper()} view", angle)
    for text in texts:
        norm = " ".join(re.split(r"[^a-z0-9]+", str(text or "").lower()))
        if _LAX_WORDS.search(norm):
            note = ""
            if angle is not None and view_from_orientation(series.direction)[0] == "sax":
                note = "; the orientation header says short axis: check the header"
            return ViewGuess("lax", "description", f"description {text!r} says long axis (chamber view not "
                             f"named){note}", angle)
    if series.view in ("sax", "2ch", "3ch", "4ch"):
        return ViewGuess(series.view, "description", f"loader labelled the series {series.view.upper()}", angle)
    if angle is not None:
        v, _ = view_from_orientation(series.direction)
        if v != "unknown":
            extra = "" if v == "sax" else " (chamber view not decidable from orientation)"
            return ViewGuess(v, "orientation", f"plane normal {angle:.0f} deg from the nominal LV long axis{extra}",
                             angle)
    if series.n_slices > SAX_MIN_SLICES:
        return ViewGuess("sax", "slices", f"{series.n_slices} parallel slices: a short-axis stack", angle)
    return ViewGuess("unknown", "none", "no description keyword, no usable orientation", angle)


def detect_view(series, override: str | None = None) -> str:
    """The view to run a detector for: ``"sax"``, ``"2ch"``, ``"3ch"`` or ``"4ch"``.

    :func:`recognise_view`, then: a long-axis series whose chamber view is not named gives
    ``"4ch"`` (the only bundled long-axis model; the LAX pipeline notes it), ``"unknown"``
    gives ``"sax"``; both are logged as warnings.
    """
    g = recognise_view(series, override)
    if g.view == "lax":
        logger.warning("%s; using the 4CH model", g.reason)
        return "4ch"
    if g.view == "unknown":
        logger.warning("view not recognised (%s); assuming short axis", g.reason)
        return "sax"
    logger.info("view %s: %s", g.view, g.reason)
    return g.view
