"""Measurements made on landmarks: the SAX right-ventricular insertion (RVI) angles.

Xue et al., "Landmark detection in cardiac MRI by using a convolutional neural network",
Radiology: AI 2021;3(5):e200197, compare models and readers on the *anterior RV insertion
angle* (with the LV length on long-axis views). The public text we could retrieve (the
abstract) does not state the reference axis of that angle, so this module fixes one
explicitly, anatomically, and documents it:

**RVI angle** (``"RVI angle"``, degrees, in ``(-180, 180]``): the angle of the vector
C-LV -> A-RVI about C-LV, measured in the slice plane

* from the patient's **anterior** direction projected onto the slice plane (the "12 o'clock"
  of the standard short-axis display, anterior up, RV on the viewer's left),
* **positive towards the patient's right** (the septum / RV side), i.e. counter-clockwise in
  the standard display, which looks at the slice from the apex; equivalently, positive by the
  right-hand rule about the plane normal that points to the viewer (towards the apex for a
  SAX plane). Its value depends on how the heart is rotated in the chest: on the Sunnybrook
  cine, where the RV lies on top of the LV, A-RVI is anterior-left of C-LV and the angle is negative.

When the series carries no patient orientation (``CMRSeries.orientation_known`` False, e.g.
the ACDC NIfTI copies with an identity affine) the stored display convention stands in for
anatomy: "anterior" is image up (-j) and "patient's right" is image left (-i). For an
identity direction matrix both conventions give the same numbers.

**RVI opening angle** (``"RVI opening angle"``, degrees, in ``[0, 180]``): the unsigned angle
at C-LV between C-LV -> A-RVI and C-LV -> I-RVI (the angular extent of the septum seen from
the LV centre).

A measurement is reported for a (slice, phase) only when all landmarks it needs are
``found`` there (low-confidence points count as found); otherwise **no entry** is made, so
the lists, CSV and JSON hold real values only. Corrected points are used like any other.
Every result carries its landmarks (``sources``, with flag and confidence) and a ``status``:
``review`` when any of them is flagged low, ``ok`` when all are high or corrected
(:func:`CardiacLandmarksLib.core.landmarks.measurement_status`, the one rule for all tasks).

**Which side the RV lies on.** In a heart in its usual place the RV lies to the patient's right and in front of the LV, so
the septum (the midpoint of A-RVI and I-RVI) seen from C-LV points into the right-anterior half of the slice
plane. With a known patient orientation, an RVI angle whose slice has the septum in the left-posterior half
(:func:`rv_side_cosine` < 0) gets a source ``"orientation"`` flagged ``review``: either the header's
orientation is wrong (the M&Ms-2 NIfTI copies have x and y negated, and their RVI angles come out about 180
degrees from the truth) or the points are; the reader must look. Measured on 2026-12-02 with the bundled
models (sax_unet v1.7.0, sax_unet_lge v1.6.0) on every SAX series of the shared data with a patient
orientation: the cosine was +0.71 or more on all 259 slice-phases with both RV insertions of the Sunnybrook
cine (118), the GE perfusion series (79) and the five MS-CMRSeg LGE stacks (62), and -0.76 or less on all 15
of the M&Ms-2 stacks'. Dextrocardia puts the RV on the left too; a review is what such a heart needs.
:func:`rv_side_warning` says it once per series.

The shape follows SlicerHeart ValveQuantification's ``MeasurementPreset``: each
:class:`MeasurementDefinition` declares the named landmarks it needs and a pure function of
those points; :func:`rvi_measurements` applies the definitions per slice and phase.
All points are LPS millimetres (see :mod:`.geometry`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from CardiacLandmarksLib.core import geometry
from CardiacLandmarksLib.core.errors import DegenerateGeometryError, MissingGeometryError
from CardiacLandmarksLib.core.landmarks import LandmarkSet, Measurement, Source, measurement_status

logger = logging.getLogger(__name__)

_EPS = 1e-9


def _vec3(x, what: str) -> np.ndarray:
    v = np.asarray(x, dtype=float).reshape(-1)
    if v.shape != (3,):
        raise DegenerateGeometryError(f"{what} must be a 3-vector, got shape {np.shape(x)}")
    if not np.all(np.isfinite(v)):
        raise DegenerateGeometryError(f"{what} has non-finite coordinates: {v.tolist()}")
    return v


def _unit(v: np.ndarray, what: str) -> np.ndarray:
    n = float(np.linalg.norm(v))
    if n < _EPS:
        raise DegenerateGeometryError(f"{what} has zero length")
    return v / n


def project_on_plane(vector: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Component of a 3-vector orthogonal to ``normal`` (any length, not normalised)."""
    v = _vec3(vector, "vector")
    n = _unit(_vec3(normal, "normal"), "normal")
    return v - (v @ n) * n


def angle_about_center_deg(
    point: np.ndarray, center: np.ndarray, reference_dir: np.ndarray, normal: np.ndarray
) -> float:
    """Signed angle of ``point`` about ``center`` in the plane with normal ``normal``.

    Both ``point - center`` and ``reference_dir`` are projected onto the plane orthogonal to
    ``normal``; the result is the rotation from the projected reference to the projected
    vector, positive counter-clockwise when the plane is seen from the tip of ``normal``
    (right-hand rule about ``normal``).

    Args:
        point, center: 3D points (e.g. LPS mm), shape ``(3,)``.
        reference_dir: direction of angle 0, shape ``(3,)`` (any length; projected).
        normal: plane normal, shape ``(3,)`` (any length).

    Returns:
        Degrees in ``(-180, 180]``.

    Raises:
        DegenerateGeometryError: non-finite input, ``point`` on ``center`` (after projection),
            zero normal, or ``reference_dir`` parallel to ``normal``.
    """
    p = _vec3(point, "point")
    c = _vec3(center, "center")
    n = _unit(_vec3(normal, "normal"), "normal")
    r = _vec3(reference_dir, "reference_dir")
    r = r - (r @ n) * n
    if np.linalg.norm(r) < 1e-6 * max(1.0, float(np.linalg.norm(_vec3(reference_dir, "reference_dir")))):
        raise DegenerateGeometryError("reference_dir is parallel to the plane normal")
    v = p - c
    v = v - (v @ n) * n
    if np.linalg.norm(v) < 1e-6:
        raise DegenerateGeometryError("point coincides with center in the plane")
    ang = float(np.degrees(np.arctan2(n @ np.cross(r, v), r @ v)))
    return 180.0 if ang <= -180.0 else ang


def angle_between_deg(u: np.ndarray, v: np.ndarray) -> float:
    """Unsigned angle between two 3-vectors, degrees in ``[0, 180]`` (atan2 form, exact near 0 and 180).

    Raises:
        DegenerateGeometryError: a zero-length or non-finite vector.
    """
    a = _unit(_vec3(u, "u"), "u")
    b = _unit(_vec3(v, "v"), "v")
    return float(np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b)), a @ b)))


def rvi_angle_deg(
    a_rvi_lps: np.ndarray, c_lv_lps: np.ndarray, anterior_dir: np.ndarray, normal: np.ndarray
) -> float:
    """RVI angle: angle of A-RVI about C-LV from ``anterior_dir``, degrees in ``(-180, 180]``.

    Args:
        a_rvi_lps, c_lv_lps: A-RVI and C-LV in LPS mm, shape ``(3,)``.
        anterior_dir: angle-0 direction (LPS); the patient's anterior (``geometry.ANTERIOR_LPS``)
            or image up; it is projected onto the slice plane.
        normal: slice-plane normal pointing to the viewer of the standard SAX display (towards
            the apex); positive angles turn from anterior towards the patient's right.
            :func:`sax_reference_frame` returns both vectors for a series.

    Raises:
        DegenerateGeometryError: see :func:`angle_about_center_deg`.
    """
    return angle_about_center_deg(a_rvi_lps, c_lv_lps, anterior_dir, normal)


def rvi_opening_angle_deg(a_rvi_lps: np.ndarray, i_rvi_lps: np.ndarray, c_lv_lps: np.ndarray) -> float:
    """Angle at C-LV between C-LV->A-RVI and C-LV->I-RVI, degrees in ``[0, 180]`` (LPS mm inputs).

    Raises:
        DegenerateGeometryError: an RVI point coincides with C-LV, or non-finite input.
    """
    c = _vec3(c_lv_lps, "C-LV")
    return angle_between_deg(_vec3(a_rvi_lps, "A-RVI") - c, _vec3(i_rvi_lps, "I-RVI") - c)


@dataclass(frozen=True)
class SaxFrame:
    """Reference directions of a slice plane, LPS unit vectors.

    Attributes:
        anterior: angle-0 direction in the plane (patient anterior projected, or image up).
        normal: plane normal pointing to the viewer of the standard display (towards the apex).
        anatomical: True when built from a known patient orientation, False for the display
            convention (image up = anterior, image left = patient's right).
    """

    anterior: np.ndarray
    normal: np.ndarray
    anatomical: bool


def sax_reference_frame(direction: np.ndarray, orientation_known: bool = True) -> SaxFrame:
    """Angle-0 direction and oriented normal for the RVI angle of a stack with this direction.

    Args:
        direction: ``(3, 3)`` LPS, columns = unit vectors of the i, j, k image axes
            (``CMRSeries.direction``).
        orientation_known: False = use the display convention (up = -j, viewer's left = -i,
            viewer looks along -(j x i)).

    Returns:
        :class:`SaxFrame`. With a known orientation, ``anterior`` is the patient's anterior
        projected onto the plane and ``normal = posterior x left`` (both in-plane projections,
        :func:`geometry.in_plane_anatomical_axes`), which points to the apex for a SAX plane
        and to the feet for an axial one (radiological viewing).

    Raises:
        MissingGeometryError: the plane contains no anterior component (cannot happen for a SAX
            plane) or the direction matrix is degenerate.
    """
    d = np.asarray(direction, dtype=float)
    if d.shape != (3, 3) or not np.all(np.isfinite(d)):
        raise MissingGeometryError(f"direction must be a finite 3x3 matrix, got {d.shape}")
    if orientation_known:
        col, row = geometry.in_plane_anatomical_axes(d)
    else:
        col, row = d[:, 0], d[:, 1]
    normal = np.cross(row, col)
    nn = np.linalg.norm(normal)
    if nn < 1e-6:
        raise MissingGeometryError("the in-plane image axes are parallel; cannot build a slice frame")
    return SaxFrame(anterior=-row / np.linalg.norm(row), normal=normal / nn, anatomical=bool(orientation_known))


@dataclass(frozen=True)
class MeasurementDefinition:
    """A measurement that declares the landmarks it needs (cf. SlicerHeart MeasurementPreset).

    Attributes:
        name: result name (``Measurement.name``).
        unit: result unit.
        landmarks: landmark names that must all be found on the (slice, phase).
        compute: ``f(points: dict[name, LPS (3,)], frame: SaxFrame | None) -> float``; may raise
            :class:`DegenerateGeometryError`.
        needs_frame: True when ``compute`` uses the reference frame.
        description: one line for reports.
    """

    name: str
    unit: str
    landmarks: tuple[str, ...]
    compute: Callable[[dict[str, np.ndarray], SaxFrame | None], float]
    needs_frame: bool = False
    description: str = ""


RVI_ANGLE = MeasurementDefinition(
    name="RVI angle",
    unit="deg",
    landmarks=("A-RVI", "C-LV"),
    compute=lambda p, f: rvi_angle_deg(p["A-RVI"], p["C-LV"], f.anterior, f.normal),
    needs_frame=True,
    description="angle of A-RVI about C-LV from anterior (image up if orientation unknown), "
    "positive towards the patient's right (counter-clockwise in the standard SAX display)",
)

RVI_OPENING_ANGLE = MeasurementDefinition(
    name="RVI opening angle",
    unit="deg",
    landmarks=("A-RVI", "I-RVI", "C-LV"),
    compute=lambda p, f: rvi_opening_angle_deg(p["A-RVI"], p["I-RVI"], p["C-LV"]),
    description="angle at C-LV between A-RVI and I-RVI (0-180)",
)

#: the SAX measurements :func:`rvi_measurements` makes, in output order
RVI_MEASUREMENTS: tuple[MeasurementDefinition, ...] = (RVI_ANGLE, RVI_OPENING_ANGLE)


def estimate_direction(lmset: LandmarkSet) -> np.ndarray | None:
    """Recover the in-plane image axes from the landmarks' (ijk, position) pairs.

    Within one slice ``position = origin_k + i * si * u + j * sj * v`` (see
    :func:`geometry.ijk_to_lps`), so after removing the per-(slice, phase) mean, one linear
    least-squares fit over all found landmarks with finite ``ijk`` gives ``u`` and ``v``. The
    third column is ``u x v``.

    Returns:
        ``(3, 3)`` direction (columns i, j, k) or None when the points do not span two in-plane
        directions (fewer than 3 non-collinear points on every slice) or ``ijk`` are missing
        (e.g. landmarks read from a markups file without a series).
    """
    groups: dict[tuple[int, int], list] = {}
    for lm in lmset.landmarks:
        if not lm.found:
            continue
        ijk = np.asarray(lm.ijk, float)
        pos = np.asarray(lm.position, float)
        if ijk.shape != (3,) or pos.shape != (3,) or not (np.all(np.isfinite(ijk)) and np.all(np.isfinite(pos))):
            continue
        groups.setdefault((lm.slice, lm.phase), []).append((ijk[:2], pos))
    a_rows, p_rows = [], []
    for items in groups.values():
        if len(items) < 2:
            continue
        ij = np.array([x[0] for x in items])
        ps = np.array([x[1] for x in items])
        a_rows.append(ij - ij.mean(axis=0))
        p_rows.append(ps - ps.mean(axis=0))
    if not a_rows:
        return None
    a_mat = np.concatenate(a_rows)
    p_mat = np.concatenate(p_rows)
    if np.linalg.matrix_rank(a_mat, tol=1e-6) < 2:
        return None
    sol, *_ = np.linalg.lstsq(a_mat, p_mat, rcond=None)  # rows: d(pos)/di, d(pos)/dj
    u, v = sol[0], sol[1]
    if np.linalg.norm(u) < _EPS or np.linalg.norm(v) < _EPS:
        return None
    u, v = u / np.linalg.norm(u), v / np.linalg.norm(v)
    w = np.cross(u, v)
    if np.linalg.norm(w) < 1e-6:
        return None
    return np.column_stack([u, v, w / np.linalg.norm(w)])


def measure(
    lmset: LandmarkSet,
    definitions: Sequence[MeasurementDefinition],
    frame: SaxFrame | None = None,
) -> list[Measurement]:
    """Apply measurement definitions on every (slice, phase) of ``lmset``.

    A definition gives a result only where all its landmarks are found (and, when it
    ``needs_frame``, a frame is given); degenerate geometry (e.g. an RVI on C-LV) is logged
    and skipped. Results are ordered by phase, slice, then definition order. Each result lists
    its landmarks as ``sources`` (with flag and confidence) and gets its ``status`` from
    :func:`~CardiacLandmarksLib.core.landmarks.measurement_status`: ``review`` when any of them
    is low-confidence, ``ok`` when all are high (or corrected by the user).
    """
    out: list[Measurement] = []
    pairs = sorted(lmset.slices_phases(), key=lambda sp: (sp[1], sp[0]))
    for k, t in pairs:
        for d in definitions:
            if d.needs_frame and frame is None:
                continue
            pts: dict[str, np.ndarray] = {}
            sources: list[Source] = []
            for name in d.landmarks:
                lm = lmset.get(name, k, t)
                if lm is None or not lm.found:
                    break
                pos = np.asarray(lm.position, float)
                if pos.shape != (3,) or not np.all(np.isfinite(pos)):
                    break
                pts[name] = pos
                sources.append(Source.of_landmark(lm))
            else:
                try:
                    value = float(d.compute(pts, frame))
                except DegenerateGeometryError as exc:
                    logger.warning("%s not measured on slice %d phase %d: %s", d.name, k, t, exc)
                    continue
                out.append(Measurement(d.name, int(k), int(t), value, d.unit, sources=sources))
    return out


#: the note of the ``"orientation"`` source that :func:`rvi_measurements` adds to an RVI angle (module docstring)
RV_SIDE_NOTE = "RV on the patient's left-posterior"


def rv_side_cosine(a_rvi_lps: np.ndarray, i_rvi_lps: np.ndarray, c_lv_lps: np.ndarray, normal: np.ndarray) -> float:
    """Cosine of the angle between C-LV -> (A-RVI + I-RVI) / 2 and the patient's right-anterior, in the slice plane.

    Args:
        a_rvi_lps, i_rvi_lps, c_lv_lps: LPS mm, shape ``(3,)``.
        normal: the slice-plane normal (any length; :class:`SaxFrame` ``normal``).

    Returns:
        A value in ``[-1, 1]``: near +1 when the septum faces the patient's right-anterior (as it does), below 0
        when it faces the left-posterior half of the plane (module docstring: a wrong header, or wrong points).

    Raises:
        DegenerateGeometryError: non-finite input, the septum midpoint on C-LV, or a plane (e.g. axial) in which
            right-anterior has no component.
    """
    n = _unit(_vec3(normal, "normal"), "normal")
    v = (_vec3(a_rvi_lps, "A-RVI") + _vec3(i_rvi_lps, "I-RVI")) / 2.0 - _vec3(c_lv_lps, "C-LV")
    v = v - (v @ n) * n
    r = geometry.RIGHT_ANTERIOR_LPS - (geometry.RIGHT_ANTERIOR_LPS @ n) * n
    return float(_unit(v, "septum direction") @ _unit(r, "right-anterior in the plane"))


def _mark_rv_side(lmset: LandmarkSet, measurements: list[Measurement], frame: SaxFrame) -> None:
    """Add the ``"orientation"`` review source to each RVI angle whose slice has the RV on the wrong side."""
    for m in measurements:
        if m.name != RVI_ANGLE.name:
            continue
        pts = [lmset.get(name, m.slice, m.phase) for name in ("A-RVI", "I-RVI", "C-LV")]
        if not all(lm is not None and lm.found for lm in pts):
            continue
        try:
            cos = rv_side_cosine(*(np.asarray(lm.position, float) for lm in pts), frame.normal)
        except DegenerateGeometryError:
            continue
        if cos < 0.0:
            m.sources.append(Source("orientation", "review", None, "input", RV_SIDE_NOTE))
            m.status = measurement_status(m.value, m.sources)


def rv_side_warning(measurements: Sequence[Measurement]) -> str | None:
    """One warning text for a series whose RVI angles carry the ``"orientation"`` source (module docstring),
    or None. Says on how many slices and phases, and what to do."""
    marked = [m for m in measurements if any(s.id == "orientation" and s.flag == "review" for s in m.sources)]
    if not marked:
        return None
    n = sum(m.name == RVI_ANGLE.name for m in measurements)
    return (f"on {len(marked)} of the {n} slices x phases with an RVI angle, the RV lies on the patient's left and "
            "behind the LV in this file's geometry, which a heart in its usual place never does: the orientation in "
            "the header may be wrong (e.g. x and y negated by a conversion), or the points are; those RVI angles "
            "(measured from the patient's anterior) are marked review. Check the image orientation before using them")


def rvi_measurements(
    lmset: LandmarkSet,
    series=None,
    *,
    direction: np.ndarray | None = None,
    orientation_known: bool | None = None,
) -> list[Measurement]:
    """RVI angle and RVI opening angle for every slice and phase where the points are found.

    Args:
        lmset: SAX landmarks (``A-RVI``, ``I-RVI``, ``C-LV``) with LPS positions.
        series: optional :class:`~.series.CMRSeries` the landmarks belong to; its
            ``direction`` and ``orientation_known`` define the reference frame.
        direction: ``(3, 3)`` direction to use when no series is given.
        orientation_known: overrides the series' flag; default True when only ``direction``
            is given.

    Without ``series`` and ``direction``, the in-plane axes are recovered from the
    landmarks' ``ijk``/``position`` pairs (:func:`estimate_direction`) and the orientation is
    taken as known; for an identity direction (orientation-unknown NIfTI) that equals the
    display convention, so the result is the same either way. When no frame can be found
    (no ``ijk``, e.g. points read from a markups file without a series) only the opening
    angle is reported and a warning is logged.

    Returns:
        ``Measurement`` list (see module docstring for definitions and conventions): per
        (slice, phase), ``"RVI angle"`` then ``"RVI opening angle"``, unit ``"deg"``; no entry
        where the needed points are absent. With a known orientation, an RVI angle whose slice has the RV
        on the patient's left-posterior carries an ``"orientation"`` source flagged review (module docstring).

    Raises:
        MissingGeometryError: the given direction cannot define a slice frame.
    """
    if series is not None:
        d = series.direction
        known = series.orientation_known if orientation_known is None else orientation_known
    elif direction is not None:
        d = direction
        known = True if orientation_known is None else orientation_known
    else:
        d = estimate_direction(lmset)
        known = True if orientation_known is None else orientation_known
    frame = None
    if d is not None:
        frame = sax_reference_frame(d, bool(known))
    else:
        logger.warning("RVI angle not computed: no series/direction given and the landmarks carry no ijk "
                       "to recover the slice orientation")
    out = measure(lmset, RVI_MEASUREMENTS, frame)
    if frame is not None and frame.anatomical:
        _mark_rv_side(lmset, out, frame)
    return out
