"""Long-axis measurements: LV length on every phase and longitudinal shortening.

After Xue et al., "Landmark detection in cardiac MRI by using a convolutional neural
network", Radiology: AI 2021;3(5):e200197:

* **LV length** (``"LV length"``, mm) on a long-axis slice and phase = the distance from
  ``APEX`` to the midpoint of the view's two mitral-valve points (2CH ``A-P``/``I-P``, 3CH
  ``AS-P``/``IL-P``, 4CH ``IS-P``/``AL-P``), in LPS millimetres;
* **longitudinal shortening** (``"Longitudinal shortening"``, %) =
  ``100 * (L_ED - L_ES) / L_ED``.

**Choice of ED and ES** (documented because cines differ in where they start):

* ES = the phase of **minimum** LV length (unless given);
* ED = the phase of **maximum** LV length by default (``ed="max"``). ``ed="first"`` takes
  phase 0, the first frame after the R wave in a prospectively or retrospectively
  R-wave-triggered cine; it is offered, not the default, because stored cines do not
  always start at the R wave (in ``mnms2/001`` the labelled ED frame is phase 23 of 25).
  An integer picks the phase explicitly (e.g. from the DICOM trigger times or the
  operator).
* A set whose ``model["ed_es"]`` holds ``{"ed": i, "es": j}`` (phases known from the input, e.g. a
  ``*_ED`` + ``*_ES`` file pair: :func:`CardiacLandmarksLib.lax.pipeline.detect_lax`) uses those phases
  wherever no rule is given, so a correction and the figure keep them (:func:`phases_of`).

The measurement shape follows :class:`.measurements.MeasurementDefinition` (a definition
declares the landmarks it needs); a phase gets a length only when the three landmarks are
found there (low-confidence points count; the curve records which phases are low).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from CardiacLandmarksLib.core.errors import CardiacLandmarksError, DegenerateGeometryError
from CardiacLandmarksLib.core.landmarks import (
    LANDMARKS_BY_VIEW,
    LandmarkSet,
    Measurement,
    Source,
    add_input_sources,
    input_sources,
)
from CardiacLandmarksLib.sax.measurements import MeasurementDefinition, measure

logger = logging.getLogger(__name__)

LAX_VIEWS = ("2ch", "3ch", "4ch")
#: normal adult range of longitudinal shortening (%); a shortening outside it is ``review`` (:func:`shortening_range_source`)
NORMAL_SHORTENING_PCT = (10.0, 25.0)


def shortening_range_source(shortening_pct: float) -> Source | None:
    """A ``review`` source for a longitudinal shortening outside :data:`NORMAL_SHORTENING_PCT`, else None.

    Xue et al. (Radiology: AI 2021) report LV longitudinal shortening as ``100 (L_ED - L_ES) / L_ED``; in adults it
    lies about 10-25 % (issue 16 asks for exactly this check). A value outside it is disease or misplaced points
    (e.g. an annulus point held still while the ventricle contracts), which the points' own confidence may not
    show: the shortening is then ``review`` whatever its points' flags, so a reader looks at the points before the
    number is used. Kind ``"check"``; ``shortening_pct`` in %.
    """
    lo, hi = NORMAL_SHORTENING_PCT
    if lo <= shortening_pct <= hi:
        return None
    return Source("plausibility", "review", None, "check",
                  f"{shortening_pct:.1f} % is outside the normal {lo:.0f}-{hi:.0f} %: disease, or check the points")


def lv_length_mm(apex_lps: np.ndarray, valve_a_lps: np.ndarray, valve_b_lps: np.ndarray) -> float:
    """Distance (mm) from the apex to the midpoint of the two mitral-valve points (LPS mm, ``(3,)``).

    Raises:
        DegenerateGeometryError: non-finite coordinates, or the apex on the valve midpoint.
    """
    pts = [np.asarray(p, float).reshape(-1) for p in (apex_lps, valve_a_lps, valve_b_lps)]
    if any(p.shape != (3,) or not np.all(np.isfinite(p)) for p in pts):
        raise DegenerateGeometryError("LV length needs three finite LPS points (APEX and two valve points)")
    d = float(np.linalg.norm(pts[0] - (pts[1] + pts[2]) / 2.0))
    if d < 1e-6:
        raise DegenerateGeometryError("the apex lies on the mitral midpoint; LV length is zero")
    return d


def longitudinal_shortening_pct(length_ed_mm: float, length_es_mm: float) -> float:
    """``100 * (L_ED - L_ES) / L_ED`` in percent.

    Raises:
        DegenerateGeometryError: ``L_ED`` not positive or either length not finite.
    """
    if not (np.isfinite(length_ed_mm) and np.isfinite(length_es_mm)) or length_ed_mm <= 0:
        raise DegenerateGeometryError(f"cannot compute shortening from L_ED={length_ed_mm}, L_ES={length_es_mm}")
    return 100.0 * (float(length_ed_mm) - float(length_es_mm)) / float(length_ed_mm)


def lv_length_definition(view: str) -> MeasurementDefinition:
    """The ``"LV length"`` :class:`MeasurementDefinition` of a long-axis view."""
    if view not in LAX_VIEWS:
        raise ValueError(f"LV length is defined on long-axis views {LAX_VIEWS}, not {view!r}")
    a, b, apex = LANDMARKS_BY_VIEW[view]
    return MeasurementDefinition(
        name="LV length",
        unit="mm",
        landmarks=(apex, a, b),
        compute=lambda p, f: lv_length_mm(p[apex], p[a], p[b]),
        description=f"distance from APEX to the midpoint of {a} and {b} (Xue et al. 2021)",
    )


@dataclass
class LVLengthCurve:
    """LV length over the cardiac cycle on one long-axis slice.

    Attributes:
        view: ``"2ch"``, ``"3ch"`` or ``"4ch"``.
        slice: slice index k.
        phases: ``(T,)`` phase indices (0..T-1).
        lengths_mm: ``(T,)`` LV length per phase, NaN where a landmark is missing.
        ed_phase, es_phase: phases used as ED and ES (None when not enough phases).
        ed_rule: ``"max"``, ``"first"`` or ``"given"``; es_rule ``"min"`` or ``"given"``.
        shortening_pct: longitudinal shortening (NaN when not computable).
        low_phases: phases where any of the three points is flagged ``"low"``.
        notes: remarks (e.g. only one phase measured; a shortening outside the normal range is said in its caveat).
        length_measurements: the ``"LV length"`` :class:`Measurement` of each measured phase, with the
            three landmarks as sources and a status (``review`` when one of them is low).
        shortening: the ``"Longitudinal shortening"`` :class:`Measurement` (sources: the six points of
            the ED and ES phases), or None when not computable.
    """

    view: str
    slice: int
    phases: np.ndarray
    lengths_mm: np.ndarray
    ed_phase: int | None
    es_phase: int | None
    ed_rule: str
    es_rule: str
    shortening_pct: float
    low_phases: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    length_measurements: list[Measurement] = field(default_factory=list)
    shortening: Measurement | None = None

    def status_of_phase(self, t: int) -> str:
        """Status of the LV length on phase ``t`` (``"n/a"`` when not measured)."""
        for m in self.length_measurements:
            if m.phase == t:
                return m.status
        return "n/a"

    @property
    def shortening_status(self) -> str:
        """Status of the longitudinal shortening (``"n/a"`` when not computed)."""
        return self.shortening.status if self.shortening is not None else "n/a"

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN -> None)."""
        def f(x):
            return None if x is None or not np.isfinite(x) else float(x)

        return {"view": self.view, "slice": self.slice, "phases": [int(p) for p in self.phases],
                "lengths_mm": [f(x) for x in self.lengths_mm], "ed_phase": self.ed_phase,
                "es_phase": self.es_phase, "ed_rule": self.ed_rule, "es_rule": self.es_rule,
                "shortening_pct": f(self.shortening_pct), "low_phases": list(self.low_phases),
                "notes": list(self.notes),
                "length_status": [self.status_of_phase(int(t)) for t in self.phases],
                "shortening_status": self.shortening_status,
                "shortening_sources": [x.to_dict() for x in (self.shortening.sources if self.shortening else [])]}


def _view_of(lmset: LandmarkSet, view: str | None) -> str:
    v = (view or lmset.view or "").lower()
    if v not in LAX_VIEWS:
        names = {lm.name for lm in lmset.landmarks}
        for cand in LAX_VIEWS:
            if set(LANDMARKS_BY_VIEW[cand]) <= names:
                return cand
        raise ValueError(f"not a long-axis landmark set (view {lmset.view!r}, landmarks {sorted(names)})")
    return v


def phases_of(lmset: LandmarkSet, ed: str | int | None, es: str | int | None) -> tuple[str | int, str | int]:
    """The ED and ES rules for ``lmset``: the ones given, else the set's known phases
    (``lmset.model["ed_es"]``, module docstring), else ``"max"`` and ``"min"``."""
    known = lmset.model.get("ed_es") if isinstance(lmset.model, dict) else None
    known = known if isinstance(known, dict) else {}
    return (ed if ed is not None else known.get("ed", "max"), es if es is not None else known.get("es", "min"))


class PhaseChoiceError(CardiacLandmarksError, ValueError):
    """An ED or ES phase given by the user that the cine cannot have (out of range, or ED and ES one phase)."""


def check_phase_choice(n_t: int, ed: str | int = "max", es: str | int = "min") -> None:
    """Refuse ED / ES rules (:func:`choose_ed_es`) that a cine of ``n_t`` phases cannot have, before any work (the
    ``lax-track`` command checks them before tracking).

    Raises:
        ValueError: unknown rule. PhaseChoiceError (a ValueError): a phase out of range, or ED and ES given as one
            phase (a shortening of 0 %).
    """
    if isinstance(ed, str) and ed not in ("max", "first"):
        raise ValueError(f"ed must be 'max', 'first' or a phase index, not {ed!r}")
    if isinstance(es, str) and es != "min":
        raise ValueError(f"es must be 'min' or a phase index, not {es!r}")
    for name, val in (("ed", ed), ("es", es)):
        if not isinstance(val, str) and not (0 <= int(val) < n_t):
            raise PhaseChoiceError(f"{name} phase {val} out of range 0..{n_t - 1}")
    if not isinstance(ed, str) and not isinstance(es, str) and int(ed) == int(es) and n_t > 1:
        raise PhaseChoiceError(f"ED and ES are the same phase ({int(ed)}): a shortening of 0 %; give two different "
                               "phases")


def choose_ed_es(lengths: np.ndarray, ed: str | int = "max", es: str | int = "min"
                 ) -> tuple[int | None, str, int | None, str]:
    """ED and ES phases of an LV-length curve by the rules of :func:`lv_length_curve`.

    Args:
        lengths: ``[T]`` LV length per phase (mm), NaN where not measured.
        ed: ``"max"`` (longest LV), ``"first"`` (phase 0, the R wave) or a phase index.
        es: ``"min"`` (shortest LV) or a phase index.

    Returns:
        ``(ed_phase, ed_rule, es_phase, es_rule)``; phases are None when no phase was measured.

    Raises:
        what :func:`check_phase_choice` raises.
    """
    n_t = len(lengths)
    check_phase_choice(n_t, ed, es)
    if not np.isfinite(lengths).any():
        return None, (ed if isinstance(ed, str) else "given"), None, (es if isinstance(es, str) else "given")
    if ed == "max":
        ed_phase, ed_rule = int(np.nanargmax(lengths)), "max"
    elif ed == "first":
        ed_phase, ed_rule = 0, "first"
    else:
        ed_phase, ed_rule = int(ed), "given"
    if es == "min":
        es_phase, es_rule = int(np.nanargmin(lengths)), "min"
    else:
        es_phase, es_rule = int(es), "given"
    return ed_phase, ed_rule, es_phase, es_rule


def lv_length_curve(
    lmset: LandmarkSet,
    view: str | None = None,
    k: int | None = None,
    ed: str | int | None = None,
    es: str | int | None = None,
    n_phases: int | None = None,
) -> LVLengthCurve:
    """LV length on every phase of one slice, ED/ES phases and longitudinal shortening.

    Args:
        lmset: long-axis landmarks (LPS mm); the input warnings its measurements carry (a forced view, a
            placeholder voxel size: :func:`CardiacLandmarksLib.core.landmarks.input_sources`) are kept on the
            curve's measurements.
        view: ``"2ch"``/``"3ch"``/``"4ch"`` (default ``lmset.view`` or from the names).
        k: slice (default: the lowest slice holding landmarks).
        ed: ``"max"``, ``"first"`` or a phase index (see module docstring); None: the set's known ED phase
            (``model["ed_es"]``), else ``"max"``.
        es: ``"min"`` or a phase index; None: the set's known ES phase, else ``"min"``.
        n_phases: number of phases T (default: 1 + the largest phase in ``lmset``).

    Returns:
        :class:`LVLengthCurve`.

    Raises:
        ValueError: not a long-axis set, unknown ``ed``/``es`` rule, or a phase out of range.
    """
    view = _view_of(lmset, view)
    ed, es = phases_of(lmset, ed, es)
    slices = sorted({lm.slice for lm in lmset.landmarks})
    k = (slices[0] if slices else 0) if k is None else int(k)
    sub = LandmarkSet(lmset.source, view, lmset.model, [lm for lm in lmset.landmarks if lm.slice == k])
    t_max = max((lm.phase for lm in sub.landmarks), default=-1)
    n_t = int(n_phases) if n_phases is not None else t_max + 1
    lengths = np.full(n_t, np.nan)
    per_phase: dict[int, Measurement] = {}
    for m in measure(sub, [lv_length_definition(view)]):
        if m.phase is not None and 0 <= m.phase < n_t:
            lengths[m.phase] = m.value
            per_phase[int(m.phase)] = m
    low = sorted({lm.phase for lm in sub.landmarks if lm.found and lm.flag == "low"})
    ok = np.isfinite(lengths)
    notes: list[str] = []
    ed_phase, ed_rule, es_phase, es_rule = choose_ed_es(lengths, ed, es)
    short = np.nan
    if ed_phase is not None and es_phase is not None and ok[ed_phase] and ok[es_phase]:
        if ok.sum() < 2:
            notes.append("only one phase measured: no shortening")
        else:
            try:
                short = longitudinal_shortening_pct(lengths[ed_phase], lengths[es_phase])
            except DegenerateGeometryError as exc:
                notes.append(str(exc))
    elif ed_phase is not None:
        notes.append("LV length missing on the ED or ES phase: no shortening")
    shortening = None
    if np.isfinite(short):
        sources = per_phase[ed_phase].sources + per_phase[es_phase].sources
        range_check = shortening_range_source(float(short))
        if range_check is not None:  # its text is the shortening's caveat, not repeated as a note
            sources.append(range_check)
        shortening = Measurement("Longitudinal shortening", k, None, float(short), "%", sources=sources)
    # the set's warnings on the input itself (a forced view, a placeholder voxel size ...), which its measurements
    # carry since the detection: a curve recomputed after a correction keeps them (add_input_sources)
    add_input_sources([*per_phase.values(), *([shortening] if shortening is not None else [])],
                      input_sources(lmset.measurements))
    return LVLengthCurve(view=view, slice=k, phases=np.arange(n_t), lengths_mm=lengths, ed_phase=ed_phase,
                         es_phase=es_phase, ed_rule=ed_rule, es_rule=es_rule, shortening_pct=float(short),
                         low_phases=low, notes=notes, length_measurements=[per_phase[t] for t in sorted(per_phase)],
                         shortening=shortening)


def lv_length_measurements(lmset: LandmarkSet, view: str | None = None, ed: str | int | None = None,
                           es: str | int | None = None) -> list[Measurement]:
    """``Measurement`` list for every long-axis slice of ``lmset`` (``ed``/``es`` as :func:`lv_length_curve`).

    Per slice: ``"LV length"`` (mm) on each phase where the three points are found, then
    ``"LV length ED"`` and ``"LV length ES"`` (mm, with their phases) and
    ``"Longitudinal shortening"`` (%, phase None) when computable. Each carries its landmarks
    as sources and a status: a length is ``review`` when one of its three points is low, the
    shortening when any of the six ED/ES points is, or when it lies outside the normal 10-25 %
    (:func:`shortening_range_source`).
    """
    view = _view_of(lmset, view)
    out: list[Measurement] = []
    for k in sorted({lm.slice for lm in lmset.landmarks}):
        c = lv_length_curve(lmset, view, k, ed=ed, es=es)
        out += c.length_measurements
        if c.shortening is not None:
            by_phase = {m.phase: m for m in c.length_measurements}
            for label, t in (("LV length ED", c.ed_phase), ("LV length ES", c.es_phase)):
                out.append(Measurement(label, k, t, by_phase[t].value, "mm", sources=by_phase[t].sources))
            out.append(c.shortening)
        for note in c.notes:
            logger.info("slice %d: %s", k, note)
    return out
