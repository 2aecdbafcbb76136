"""AHA 17-segment model of the left ventricle on short-axis slices.

Follows Cerqueira et al., "Standardized myocardial segmentation and nomenclature for
tomographic imaging of the heart", Circulation 2002;105:539-542:

* basal segments 1-6 and mid-cavity segments 7-12 are six 60 degree sectors, apical
  segments 13-16 four 90 degree sectors, segment 17 is the apical cap (no LV cavity; not
  sampled by short-axis perfusion slices, so never produced by :func:`sector_map`);
* "the attachment of the right ventricular wall to the LV" separates the septum from the
  anterior and inferior free walls.

Exact rule used here (all angles in degrees):

1. ``delta`` = angle from the ray C-LV -> A-RVI (anterior RV insertion) to the ray
   C-LV -> pixel, measured **counter-clockwise as seen from the apex** (the standard
   short-axis display: anterior up, septum / RV on the viewer's left, patient's left on the
   viewer's right), in ``[0, 360)``. In that display, counter-clockwise from A-RVI runs
   through the septum towards the inferior RV insertion.
2. basal / mid (60 degree sectors starting at A-RVI):
   ``delta`` in [0, 60) -> anteroseptal (2 / 8), [60, 120) -> inferoseptal (3 / 9),
   [120, 180) -> inferior (4 / 10), [180, 240) -> inferolateral (5 / 11),
   [240, 300) -> anterolateral (6 / 12), [300, 360) -> anterior (1 / 7).
   So A-RVI is the boundary anterior | anteroseptal, and the nominal I-RVI (delta = 120)
   the boundary inferoseptal | inferior, as in the Cerqueira bull's-eye.
3. apical (90 degree sectors, the septal one centred on the nominal septum centre
   ``delta = 60``): [15, 105) -> septal 14, [105, 195) -> inferior 15,
   [195, 285) -> lateral 16, [285, 360) and [0, 15) -> anterior 13.
4. Bull's-eye polar angle (counter-clockwise from 3 o'clock) of a point is
   ``120 + delta``: segment 1 / 7 is centred at 12 o'clock, 13 at 12 o'clock.

"Seen from the apex" in the pixel grid: with the image shown as stored (column i to the
right, row j down) the viewer looks along ``n = dir_i x dir_j`` (LPS). The display is seen
from the apex when ``n`` points from the apex towards the base, i.e. ``n . apex_dir < 0``
(:func:`display_seen_from_apex`, using a population-typical LV long axis when no long-axis
image is given). When the orientation is unknown (identity or synthetic affines, e.g. the
mlperf NIfTI copies) the stored display is assumed to be the standard view seen from the
apex; a mirrored display then needs ``seen_from_apex=False``.

Slice-level assignment (:func:`assign_levels`): a level named in the series name or given
by the user ("base"/"basal", "mid", "apex"/"apical") wins; otherwise slices are ordered along
the long axis (base -> apex) and the range of positions is split in equal thirds: basal,
mid-cavity, apical (Cerqueira: "basal, mid-cavity and apical thirds"). Three perfusion
slices therefore become base / mid / apex, a full stack is split in thirds.

Coordinates: 2D continuous pixel indices ``(i, j)`` = (column, row) of a slice ``[j, i]``.
"""

from __future__ import annotations

import logging
import re

import numpy as np

from CardiacLandmarksLib.core.errors import DegenerateGeometryError, MissingGeometryError, PerfusionInputError

logger = logging.getLogger(__name__)

LEVELS = ("base", "mid", "apex")

SEGMENT_NAMES: dict[int, str] = {
    1: "basal anterior",
    2: "basal anteroseptal",
    3: "basal inferoseptal",
    4: "basal inferior",
    5: "basal inferolateral",
    6: "basal anterolateral",
    7: "mid anterior",
    8: "mid anteroseptal",
    9: "mid inferoseptal",
    10: "mid inferior",
    11: "mid inferolateral",
    12: "mid anterolateral",
    13: "apical anterior",
    14: "apical septal",
    15: "apical inferior",
    16: "apical lateral",
    17: "apex",
}

#: usual coronary artery territories (Cerqueira 2002, figure 4)
TERRITORIES: dict[str, tuple[int, ...]] = {
    "LAD": (1, 2, 7, 8, 13, 14, 17),
    "RCA": (3, 4, 9, 10, 15),
    "LCx": (5, 6, 11, 12, 16),
}

#: the RV insertion the sectors are anchored at (Cerqueira et al. 2002: the anterior one); the other (I-RVI) moves no
#: sector. The report's sector status (:func:`CardiacLandmarksLib.perfusion.pipeline.anchor_sources`) and the sector
#: overlay's warning (:func:`CardiacLandmarksLib.perfusion.bullseye.rvi_warning`) both judge the points by it.
ANCHOR_RVI = "A-RVI"

#: segments per level, in order of increasing ``delta`` starting at A-RVI
_SIX = {"base": (2, 3, 4, 5, 6, 1), "mid": (8, 9, 10, 11, 12, 7)}
_APICAL = (14, 15, 16, 13)  # starting at delta = 15
_APICAL_SHIFT = 15.0

#: population-typical LV long axis (base -> apex) in LPS: left, anterior, inferior
TYPICAL_APEX_DIR_LPS = np.array([0.55, -0.55, -0.63]) / np.linalg.norm([0.55, -0.55, -0.63])


def level_segments(level: str) -> tuple[int, ...]:
    """AHA segment numbers of a level (``"base"``, ``"mid"``, ``"apex"``), in numeric order."""
    level = normalise_level(level)
    return tuple(range(1, 7)) if level == "base" else tuple(range(7, 13)) if level == "mid" else (13, 14, 15, 16)


def normalise_level(level: str) -> str:
    """Map ``basal``/``base``/``mid``/``mid-cavity``/``apex``/``apical`` to one of :data:`LEVELS`.

    Raises:
        PerfusionInputError: unknown name.
    """
    s = str(level).strip().lower()
    if s in ("base", "basal", "b"):
        return "base"
    if s in ("mid", "mid-cavity", "midcavity", "middle", "m"):
        return "mid"
    if s in ("apex", "apical", "a"):
        return "apex"
    raise PerfusionInputError(f"unknown slice level {level!r}; use one of base, mid, apex")


def level_from_name(name: str) -> str | None:
    """Slice level named in a file or series name (``..._base``, ``basal``, ``mid``, ``apical`` ...), or None."""
    s = str(name).lower()
    for pattern, level in ((r"(?<![a-z])(base|basal)(?![a-z])", "base"), (r"(?<![a-z])(mid|middle)(?![a-z])", "mid"),
                           (r"(?<![a-z])(apex|apical)(?![a-z])", "apex")):
        if re.search(pattern, s.replace("_", " ").replace("-", " ").replace(".", " ")):
            return level
    return None


def assign_levels(positions_mm: np.ndarray) -> list[str]:
    """Slice levels from slice positions along the long axis.

    Args:
        positions_mm: ``(n,)`` position of each slice along the base -> apex direction in mm
            (larger = more apical), e.g. ``origin . apex_dir``.

    Returns:
        One of :data:`LEVELS` per slice: the range ``[min, max]`` is split in equal thirds
        (basal, mid-cavity, apical). One slice -> ``"mid"``; three slices at roughly even
        spacing -> base, mid, apex.

    Raises:
        PerfusionInputError: empty input or non-finite positions.
    """
    p = np.asarray(positions_mm, float).ravel()
    if p.size == 0 or not np.all(np.isfinite(p)):
        raise PerfusionInputError("slice positions are empty or not finite")
    if p.size == 1:
        return ["mid"]
    lo, hi = float(p.min()), float(p.max())
    if hi - lo < 1e-6:
        raise PerfusionInputError("all slices are at the same position; give the levels explicitly")
    third = (p - lo) / (hi - lo) * 3.0
    idx = np.clip(np.floor(third + 1e-9), 0, 2).astype(int)
    return [LEVELS[i] for i in idx]


def display_seen_from_apex(direction: np.ndarray, apex_dir_lps: np.ndarray | None = None,
                           min_cos: float = 0.3) -> bool:
    """Whether the stored display (column i right, row j down) shows the slice seen from the apex.

    Args:
        direction: ``(3, 3)`` LPS unit vectors of the i, j (and k) axes as columns.
        apex_dir_lps: base -> apex unit vector in LPS (from long-axis images when known);
            default :data:`TYPICAL_APEX_DIR_LPS`.
        min_cos: smallest ``|cos|`` between slice normal and long axis accepted as short axis.

    Returns:
        True when ``(dir_i x dir_j) . apex_dir < 0``.

    Raises:
        MissingGeometryError: the slice plane is not close to a short-axis plane
            (``|cos| < min_cos``), so the viewing side cannot be told from the geometry.
    """
    d = np.asarray(direction, float)
    n = np.cross(d[:, 0], d[:, 1])
    n /= np.linalg.norm(n)
    a = TYPICAL_APEX_DIR_LPS if apex_dir_lps is None else np.asarray(apex_dir_lps, float)
    a = a / np.linalg.norm(a)
    c = float(n @ a)
    if abs(c) < min_cos:
        raise MissingGeometryError(
            f"slice normal is {np.degrees(np.arccos(abs(c))):.0f} deg from the long axis: not a short-axis plane, "
            "cannot tell from which side it is seen")
    return c < 0


def ccw_angle_deg(points_ij: np.ndarray, center_ij: np.ndarray, anchor_ij: np.ndarray,
                  seen_from_apex: bool = True) -> np.ndarray:
    """Angle ``delta`` of points from the C-LV -> A-RVI ray, counter-clockwise seen from the apex.

    Args:
        points_ij: ``(..., 2)`` continuous (i, j) pixel positions.
        center_ij: ``(2,)`` C-LV (i, j).
        anchor_ij: ``(2,)`` A-RVI (i, j).
        seen_from_apex: whether the stored display is seen from the apex
            (:func:`display_seen_from_apex`); False mirrors the direction of rotation.

    Returns:
        ``(...)`` degrees in ``[0, 360)``.

    Raises:
        DegenerateGeometryError: A-RVI coincides with C-LV.
    """
    p = np.asarray(points_ij, float)
    c = np.asarray(center_ij, float)
    a = np.asarray(anchor_ij, float)
    if np.hypot(*(a - c)) < 1e-6:
        raise DegenerateGeometryError("A-RVI coincides with C-LV; cannot anchor the AHA sectors")
    # counter-clockwise on the screen with j pointing down = atan2(-dj, di)
    phi = np.degrees(np.arctan2(-(p[..., 1] - c[1]), p[..., 0] - c[0]))
    phi0 = np.degrees(np.arctan2(-(a[1] - c[1]), a[0] - c[0]))
    delta = phi - phi0 if seen_from_apex else phi0 - phi
    return np.mod(delta, 360.0)


def segment_of_angle(delta_deg: np.ndarray, level: str) -> np.ndarray:
    """AHA segment number for angles ``delta`` (degrees from A-RVI, see module docstring) at a level."""
    level = normalise_level(level)
    d = np.mod(np.asarray(delta_deg, float), 360.0)
    if level == "apex":
        idx = (np.floor(np.mod(d - _APICAL_SHIFT, 360.0) / 90.0).astype(int)) % 4
        return np.asarray(_APICAL, dtype=np.int16)[idx]
    idx = (np.floor(d / 60.0).astype(int)) % 6
    return np.asarray(_SIX[level], dtype=np.int16)[idx]


def sector_map(myo_mask: np.ndarray, center_ij: np.ndarray, a_rvi_ij: np.ndarray, level: str,
               seen_from_apex: bool = True) -> np.ndarray:
    """Per-pixel AHA segment numbers of the myocardium of one slice (vectorised).

    Args:
        myo_mask: ``[j, i]`` bool/int, nonzero = LV myocardium.
        center_ij: C-LV ``(i, j)`` (usually the LV blood-pool centroid).
        a_rvi_ij: anterior RV insertion ``(i, j)``.
        level: ``"base"``, ``"mid"`` or ``"apex"`` (aliases accepted, :func:`normalise_level`).
        seen_from_apex: see :func:`ccw_angle_deg`.

    Returns:
        ``[j, i]`` int16: AHA segment (1-16) on myocardial pixels, 0 elsewhere.

    Raises:
        PerfusionInputError: unknown level. DegenerateGeometryError: A-RVI on C-LV.
    """
    m = np.asarray(myo_mask) != 0
    out = np.zeros(m.shape, np.int16)
    if not m.any():
        return out
    jj, ii = np.nonzero(m)
    delta = ccw_angle_deg(np.stack([ii, jj], axis=-1).astype(float), center_ij, a_rvi_ij, seen_from_apex)
    out[jj, ii] = segment_of_angle(delta, level)
    return out


def segment_boundaries_deg(level: str) -> list[tuple[int, float, float]]:
    """``(segment, delta_start, delta_end)`` of each sector of a level, degrees from A-RVI (end may exceed 360)."""
    level = normalise_level(level)
    if level == "apex":
        return [(s, _APICAL_SHIFT + 90.0 * n, _APICAL_SHIFT + 90.0 * (n + 1)) for n, s in enumerate(_APICAL)]
    return [(s, 60.0 * n, 60.0 * (n + 1)) for n, s in enumerate(_SIX[level])]


def bullseye_angle_deg(delta_deg: np.ndarray | float) -> np.ndarray:
    """Polar angle on the bull's-eye (degrees counter-clockwise from 3 o'clock) of an angle ``delta``."""
    return np.mod(120.0 + np.asarray(delta_deg, float), 360.0)


def direction_to_point(center_ij: np.ndarray, delta_deg: float, radius_px: float,
                       anchor_ij: np.ndarray, seen_from_apex: bool = True) -> np.ndarray:
    """Pixel ``(i, j)`` at angle ``delta`` (from A-RVI, see :func:`ccw_angle_deg`) and radius from C-LV.

    Inverse of :func:`ccw_angle_deg`, used to draw sector boundaries over an image.
    """
    c = np.asarray(center_ij, float)
    a = np.asarray(anchor_ij, float)
    phi0 = np.arctan2(-(a[1] - c[1]), a[0] - c[0])
    phi = phi0 + np.radians(delta_deg) * (1.0 if seen_from_apex else -1.0)
    return np.array([c[0] + radius_px * np.cos(phi), c[1] - radius_px * np.sin(phi)])
