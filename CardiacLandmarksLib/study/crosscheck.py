"""Cross-check long-axis landmarks against the SAX stack of the same study (LPS mm geometry).

For a long-axis series with mitral points and apex at ED, and the SAX stack's landmarks at
phase 0 (ED), with ``u`` the SAX stack normal oriented from base to apex (towards the LAX apex):

* ``mitral plane to basal SAX slice`` (mm): position along ``u`` of the most basal SAX slice
  where C-LV is found, minus that of the midpoint of the two mitral points. Positive: the
  basal LV slice lies apical of the mitral plane (expected, the annulus sits just beyond
  the last slice with LV cavity): ``ok`` within :data:`BASE_RANGE_MM`;
* ``LAX apex beyond apical SAX slice`` (mm): position along ``u`` of the LAX apex minus that
  of the most apical SAX slice where C-LV is found (expected a little beyond it): ``ok``
  within :data:`APEX_RANGE_MM`;
* ``LAX plane to mid C-LV`` (mm): distance of C-LV on the mid SAX slice from the long-axis
  plane (a 2/3/4CH plane passes through the LV centre): ``ok`` below :data:`PLANE_MAX_MM`;
* ``LAX apex to SAX LV axis`` (mm): distance of the LAX apex from the line through the mean
  C-LV along ``u``: ``ok`` below :data:`AXIS_MAX_MM`.

Any low-confidence landmark used makes the value ``review``; values outside the ranges are
``review`` too, and so is every value when the two series name different DICOM frames of reference
(``FrameOfReferenceUID``: the table or the patient moved between them, or they come from different
sessions, so their LPS positions need not share one patient space; flag ``"frame of reference review"``).
:func:`sax_lines_in_lax` gives, for the summary picture, where each SAX slice cuts the long-axis image
(in its pixel coordinates).
"""

from __future__ import annotations

import numpy as np

from CardiacLandmarksLib.study.tasks import KeyValue

BASE_RANGE_MM = (-5.0, 25.0)
APEX_RANGE_MM = (-5.0, 25.0)
PLANE_MAX_MM = 10.0
AXIS_MAX_MM = 15.0
_HINGES = ("AL-P", "IS-P", "A-P", "I-P", "IL-P", "AS-P")


def _ed_phase(lax_lmset) -> int:
    m = next((m for m in lax_lmset.measurements if m.name == "LV length ED" and m.slice == 0), None)
    return int(m.phase) if m is not None and m.phase is not None else 0


def _unit_normal(series) -> np.ndarray:
    n = np.cross(series.direction[:, 0], series.direction[:, 1])
    return n / np.linalg.norm(n)


def crosscheck(sax_series, sax_lmset, lax_series, lax_lmset, label: str) -> tuple[list[KeyValue], dict]:
    """Compare a long-axis series' ED landmarks with the SAX stack (module docstring).

    Args:
        sax_series, sax_lmset: SAX stack and its landmarks (phase 0 taken as ED).
        lax_series, lax_lmset: long-axis series and its landmarks (ED = the phase of the
            ``LV length ED`` measurement, else 0).
        label: the long-axis series' name for the value names.

    Returns:
        ``(values, geometry)``: :class:`KeyValue` list (empty when the needed points are not
        found) and a dict of the points used (LPS mm lists) for the report.
    """
    t = _ed_phase(lax_lmset)
    pts = {lm.name: lm for lm in lax_lmset.landmarks if lm.slice == 0 and lm.phase == t and lm.found}
    hinges = [pts[n] for n in _HINGES if n in pts]
    apex = pts.get("APEX")
    clv = [lm for lm in sax_lmset.landmarks if lm.name == "C-LV" and lm.phase == 0 and lm.found]
    if len(hinges) < 2 or apex is None or len(clv) < 2:
        return [], {}
    n = _unit_normal(sax_series)
    mid = 0.5 * (hinges[0].position + hinges[1].position)
    u = n if (apex.position - mid) @ n >= 0 else -n
    q = {lm.slice: float(sax_series.slice_origins[lm.slice] @ u) for lm in clv}
    k_base = min(q, key=q.get)
    k_apex = max(q, key=q.get)
    lax_flags = [h.flag for h in hinges[:2]] + [apex.flag]
    base_lm = next(lm for lm in clv if lm.slice == k_base)
    apex_lm = next(lm for lm in clv if lm.slice == k_apex)
    ks = sorted(q, key=q.get)
    mid_lm = next(lm for lm in clv if lm.slice == ks[len(ks) // 2])
    n_lax = _unit_normal(lax_series)
    o_lax = lax_series.slice_origins[0]
    centre = np.mean([lm.position for lm in clv], axis=0)

    frames = [(s.metadata or {}).get("frame_of_reference_uid") for s in (sax_series, lax_series)]
    other_frame = all(frames) and frames[0] != frames[1]

    def kv(name, value, flags, rng=None, maxv=None, detail="", points=()):
        bad = (rng is not None and not rng[0] <= value <= rng[1]) or (maxv is not None and value > maxv)
        if other_frame:
            flags = [*flags, "frame of reference review"]
        status = "review" if bad or any(f != "high" for f in flags) else "ok"
        if bad:
            detail = (detail + "; " if detail else "") + "outside the expected range"
        why = "" if not bad else (f"outside {rng[0]:g} to {rng[1]:g} mm" if rng is not None and not
                                  rng[0] <= value <= rng[1] else f"above {maxv:g} mm")
        if other_frame:
            why = "; ".join(x for x in (why, "the SAX and long-axis series have different DICOM frames of reference")
                            if x)
        return KeyValue(f"{name} ({label})", float(value), "mm", status, list(flags), detail,
                        _check(points, why) if status != "ok" else "")

    values = [
        kv("mitral plane to basal SAX slice", q[k_base] - float(mid @ u), lax_flags[:2] + [base_lm.flag],
           rng=BASE_RANGE_MM, detail=f"basal SAX slice {k_base}, LAX phase {t}",
           points=[(h, "LAX") for h in hinges[:2]] + [(base_lm, "SAX")]),
        kv("LAX apex beyond apical SAX slice", float(apex.position @ u) - q[k_apex], [apex.flag, apex_lm.flag],
           rng=APEX_RANGE_MM, detail=f"apical SAX slice {k_apex}", points=[(apex, "LAX"), (apex_lm, "SAX")]),
        kv("LAX plane to mid C-LV", abs(float((mid_lm.position - o_lax) @ n_lax)), [mid_lm.flag], maxv=PLANE_MAX_MM,
           detail=f"SAX slice {mid_lm.slice}", points=[(mid_lm, "SAX")]),
    ]
    d = apex.position - centre
    low_clv = [lm for lm in clv if lm.flag != "high"][:1]
    values.append(kv("LAX apex to SAX LV axis", float(np.linalg.norm(d - (d @ u) * u)), [apex.flag] +
                     [lm.flag for lm in low_clv], maxv=AXIS_MAX_MM,
                     points=[(apex, "LAX")] + [(lm, "SAX") for lm in low_clv]))
    geometry = {"lax_phase": t, "mitral_mid": mid.tolist(), "apex": apex.position.tolist(),
                "basal_sax_slice": k_base, "apical_sax_slice": k_apex, "base_to_apex_lps": u.tolist()}
    return values, geometry


def _check(points, why: str) -> str:
    """Reader text of a cross-check that is not ok: its points flagged below high, named as on their series
    (``"check AL-P (low 0.31), SAX C-LV s9 (low 0.20)"``), then why the value itself is doubtful
    (``"outside -30 to 0 mm"``), joined by ``"; "``."""
    names = [f"{'SAX ' if where == 'SAX' else ''}{lm.name}{f' s{lm.slice}' if where == 'SAX' else ''} "
             f"({lm.flag} {lm.confidence:.2f})" for lm, where in points if lm.flag != "high"]
    return "; ".join(x for x in ("check " + ", ".join(names) if names else "", why) if x) or "check"


def sax_lines_in_lax(sax_series, lax_series, slices: list[int]) -> list[tuple[int, np.ndarray]]:
    """Where SAX slices cut the long-axis image: ``[(k, (2, 2) array of (i, j) end points)]``.

    The line of slice ``k`` is the set of LAX pixels ``(i, j)`` whose LPS position lies on the
    SAX plane of ``k``; clipped to the LAX image. Slices parallel to the LAX plane are skipped.
    """
    n = _unit_normal(sax_series)
    d = lax_series.direction
    si, sj = lax_series.spacing[:2]
    o = lax_series.slice_origins[0]
    rows, cols = lax_series.shape_ji
    a, b = si * (d[:, 0] @ n), sj * (d[:, 1] @ n)
    out = []
    for k in slices:
        h = float(sax_series.slice_origins[k] @ n) - float(o @ n)
        if abs(a) < 1e-9 and abs(b) < 1e-9:
            continue
        if abs(b) >= abs(a):
            i = np.array([0.0, cols - 1.0])
            j = (h - a * i) / b
        else:
            j = np.array([0.0, rows - 1.0])
            i = (h - b * j) / a
        out.append((k, np.stack([i, j], axis=1)))
    return out
