"""Ventricular volumes, function and mass from short-axis label volumes (pure functions).

Method (Simpson's slice summation, as in the SCMR post-processing recommendations,
Schulz-Menger et al., JCMR 2020): the volume of a structure is the sum over slices of its
segmented area times the slice spacing (centre-to-centre distance between slices, the
series' ``spacing[2]``), i.e. the voxel count times ``si * sj * sk``. Labels follow ACDC:
1 = RV cavity, 2 = LV myocardium, 3 = LV cavity (papillary muscles and trabeculations in the
cavity, as the ACDC experts drew them and the model learned).

* EDV / ESV: cavity volume at the ED / ES phase, ml. SV = EDV - ESV, ml. EF = SV / EDV, %.
* LV mass = 1.05 g/ml x LV myocardial volume at ED, g.
* Indexed values (``*_index``): divided by the body-surface area (Mosteller:
  sqrt(height cm x weight kg / 3600), m^2) when height and weight are given.
* ED / ES of a cine (:func:`choose_ed_es`): ED = the phase of largest, ES = the phase of smallest
  LV cavity volume (trigger times are not used: whether phase 0 marks the R wave is not always
  known); callers can override either.

**Basal and apical slices**: every slice the network segments is counted, as segmented; no
slice is added or removed by a rule (the network reproduces the ACDC expert convention it was
trained on: a basal slice counts where the cavity is surrounded by myocardium). A cavity on an
end slice alone is common and harmless (in the ACDC expert masks the LV cavity is on the first
slice of 151 and on the last of 137 of 190 volumes: stacks start at the base): it gets the
information flag ``lv_on_end_slice``. When *both* end slices hold at least a quarter of the
largest slice area, neither end looks like an apex and the stack may not cover the ventricle:
``lv_coverage_doubtful`` (``review``).

**Status rules** (each value: ``ok`` | ``review`` | ``n/a``, with flags):

* ``n/a``: the structure is absent at the phase (volume 0), or the value needs one that is
  (EF without EDV); indexed values without height and weight.
* ``review`` flags: ``lv_segmentation_uncertain`` / ``rv_segmentation_uncertain`` /
  ``myo_segmentation_uncertain`` (more of the structure's pixels have a class probability below
  0.75 than in any validation segmentation that met the accuracy targets; see
  :data:`.segmentation.UNCERTAIN_SHARE_LIMIT`), ``lv_coverage_doubtful`` / ``rv_coverage_doubtful`` /
  (LV mass takes the LV cavity's flags at ED; see above), ``lv_gap`` / ``rv_gap`` (a slice without the
  cavity between slices with it), ``ef_implausible`` (EF outside 5-90 %),
  ``model_not_validated`` (the
  caller says the model's accuracy on this kind of input is unknown, e.g. not a cine SAX),
  ``placeholder_spacing`` (1 mm voxels with a placeholder affine: the real voxel size is probably lost,
  :func:`CardiacLandmarksLib.io.checks.placeholder_spacing_warning`), ``slices_missing`` / ``phases_missing`` (a
  DICOM cine whose grid misses slice positions or phases, analysed with ``allow_incomplete``:
  :func:`CardiacLandmarksLib.io.dicom.grid_completeness`),
  ``ed_at_cut`` (a per-slice stack whose slices had different numbers of phases keeps the first phases all have,
  ``phases_cut``; ED then chosen on one of its last two phases may lie among the phases left out),
  ``phase_override``, ``no_height_weight``, ``edited`` (numbers recomputed from a user-edited
  segmentation: the model's uncertainty flags are then dropped), ``phases_cut`` and ``*_on_end_slice`` are
  information only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from CardiacLandmarksLib.core.errors import CardiacLandmarksError

logger = logging.getLogger(__name__)

RV, MYO, LV = 1, 2, 3
STRUCTURES = {"RV cavity": RV, "LV myocardium": MYO, "LV cavity": LV}
MYOCARDIAL_DENSITY_G_PER_ML = 1.05
EF_PLAUSIBLE_PCT = (5.0, 90.0)
#: an end slice holding at least this share of the largest slice area counts as "not an apex"
END_SLICE_FRACTION = 0.25
#: flags that do not lower a value's status (besides any ``*_on_end_slice``)
INFO_FLAGS = {"phase_override", "no_height_weight", "edited", "phases_cut"}
#: what a reader should look at for each flag that makes a value ``review`` (:meth:`Value.check_text`)
FLAG_WORDS = {
    "lv_segmentation_uncertain": "LV cavity contours (uncertain segmentation)",
    "rv_segmentation_uncertain": "RV cavity contours (uncertain segmentation)",
    "myo_segmentation_uncertain": "LV myocardium contours (uncertain segmentation)",
    "lv_coverage_doubtful": "LV coverage (cavity large on both end slices: the stack may cut the LV short)",
    "rv_coverage_doubtful": "RV coverage (cavity large on both end slices: the stack may cut the RV short)",
    "lv_gap": "LV cavity missing on a slice between slices with it",
    "rv_gap": "RV cavity missing on a slice between slices with it",
    "ef_implausible": f"EF outside {EF_PLAUSIBLE_PCT[0]:g}-{EF_PLAUSIBLE_PCT[1]:g} %",
    "model_not_validated": "the model is not validated on this kind of series",
    "placeholder_spacing": "voxel size (1 mm placeholder: the real size is probably lost)",
    "slices_missing": "input stack (slice positions missing: the volumes and mass lack them)",
    "phases_missing": "input cine (phases missing: the true ED or ES may be among them)",
    "ed_at_cut": "ED (on the last phases kept: the true ED may be among the phases cut)",
}


class FunctionInputError(CardiacLandmarksError, ValueError):
    """Function analysis inputs are unusable: bad height/weight, phases out of range, label
    volumes of different shapes, ED and ES volumes on different grids."""


@dataclass
class Value:
    """One measurement with its trust.

    Attributes:
        name: e.g. ``"EDV_ml"``. value: number or None (n/a). unit: ``"ml"``, ``"%"``, ``"g"``,
        ``"ml/m2"``, ``"g/m2"``. status: ``ok`` | ``review`` | ``n/a``. flags: why (see module
        docstring). source: the masks it came from, e.g. ``"LV cavity at ED (phase 0)"``. parts: for a value made
        from both phases' masks (SV, EF), the ``source`` of its ED and ES volumes (:func:`review_reasons` names a
        doubt on the phase it comes from); empty otherwise.
    """

    name: str
    value: float | None
    unit: str
    status: str = "ok"
    flags: list[str] = field(default_factory=list)
    source: str = ""
    parts: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {"value": self.value, "unit": self.unit, "status": self.status, "flags": list(self.flags),
                "source": self.source}

    def check_text(self, with_source: bool = False) -> str:
        """What a reader should check when the value is ``review`` (``""`` otherwise): its flags that lower the
        status in words (:data:`FLAG_WORDS`; information flags left out), e.g. ``"check LV myocardium contours
        (uncertain segmentation)"``; ``with_source`` names the masks first (``"check LV cavity at ED (phase 0): ..."``,
        as ``cardiac-landmarks function`` prints it)."""
        if self.status != "review":
            return ""
        words = [FLAG_WORDS.get(f, f) for f in dict.fromkeys(self.flags)
                 if f not in INFO_FLAGS and not f.endswith("_on_end_slice")]
        return "check " + (f"{self.source}: " if with_source and self.source else "") + ", ".join(words)


def value_text(v: Value) -> str:
    """A value as the ``function`` console shows it: ``"n/a"``, ``"58.9 ml"`` (:func:`CardiacLandmarksLib.core.
    landmarks.format_value`, as a study shows its key values) or, when it is not ok, ``"58.9 ml [review]"`` (a
    doubtful value is never shown as a plain number)."""
    from CardiacLandmarksLib.core.landmarks import format_value

    return "n/a" if v.value is None else format_value(v.value, v.unit) + ("" if v.status == "ok" else f" [{v.status}]")


def summary_lines(values: dict) -> list[str]:
    """The two lines of LV and RV values and the reasons to review them (:func:`review_reasons` with the masks),
    as ``cardiac-landmarks function`` prints them and a console shows a
    :class:`~CardiacLandmarksLib.function.pipeline.FunctionResult`:
    ``"LV  EDV 150.2 ml  ESV 70.1 ml  SV 80.1 ml  EF 53.3 %  mass 120.4 g"``, ``"RV  EDV ..."``, then
    ``"  check LV myocardium at ED (phase 0): ..."`` for each reason. ``values``: ``{"LV": {name: Value},
    "RV": {...}}``."""
    lv, rv = values["LV"], values["RV"]

    def show(side: dict, key: str) -> str:
        return value_text(side[key]) if key in side else "n/a"
    lines = [f"LV  EDV {show(lv, 'EDV_ml')}  ESV {show(lv, 'ESV_ml')}  SV {show(lv, 'SV_ml')}  "
             f"EF {show(lv, 'EF_pct')}  mass {show(lv, 'mass_g')}",
             f"RV  EDV {show(rv, 'EDV_ml')}  ESV {show(rv, 'ESV_ml')}  SV {show(rv, 'SV_ml')}  EF {show(rv, 'EF_pct')}"]
    return lines + [f"  {reason}" for reason in sorted(review_reasons(values, with_source=True))]


def review_reasons(values: dict, with_source: bool = False) -> list[str]:
    """The distinct :meth:`Value.check_text` of a result's values (``{"LV": {name: Value}, "RV": {...}}``), in
    order, leaving out the indexed values (an index has the reason of its volume or mass): the lines the function
    overlay's title and the ``function`` console show under the numbers.

    ``with_source``: each reason names its masks (``"check RV cavity at ED (phase 18): ..."``), and a value made
    from both phases' masks (SV, EF) adds only the reasons its ED and ES volumes do not give already (e.g. an
    implausible EF): the doubt is named on the phase it comes from, once."""
    kept = [v for side in values.values() for key, v in side.items() if "_index_" not in key and v.check_text()]
    if not with_source:
        return list(dict.fromkeys(v.check_text() for v in kept))
    texts = []
    for v in kept:  # a value from both phases' masks (SV, EF) says only what its ED and ES volumes do not say
        parts = [w for w in kept if w is not v and w.source in v.parts]
        said = {x for w in parts for x in _check_words(w)}
        rest = [x for x in _check_words(v) if x not in said]
        if rest:
            texts.append(f"check {v.source}: " + ", ".join(rest) if v.source else "check " + ", ".join(rest))
    return list(dict.fromkeys(texts))


def _check_words(v: Value) -> list[str]:
    return v.check_text().removeprefix("check ").split(", ")


def _status(value: float | None, flags: list[str]) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return "review" if any(f not in INFO_FLAGS and not f.endswith("_on_end_slice") for f in flags) else "ok"


def voxel_volume_ml(spacing: tuple[float, float, float]) -> float:
    """Volume of one voxel in ml: ``si * sj * sk / 1000`` (spacing ``(si, sj, sk)`` mm, sk = slice spacing)."""
    si, sj, sk = (float(x) for x in spacing)
    if not all(math.isfinite(x) and x > 0 for x in (si, sj, sk)):
        raise FunctionInputError(f"voxel spacing must be positive, got {spacing}")
    return si * sj * sk / 1000.0


def slice_areas_mm2(labels: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, np.ndarray]:
    """Segmented area per slice: ``{structure: [k] mm^2}`` for a label volume ``[k, j, i]``."""
    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise FunctionInputError(f"labels must be one volume [k, j, i], got shape {lab.shape}")
    px = float(spacing[0]) * float(spacing[1])
    return {name: (lab == v).sum(axis=(1, 2)).astype(float) * px for name, v in STRUCTURES.items()}


def structure_volumes_ml(labels: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, float]:
    """Slice-summation volume of each structure of ``labels [k, j, i]``: ``{structure: ml}``."""
    vox = voxel_volume_ml(spacing)
    lab = np.asarray(labels)
    return {name: float((lab == v).sum()) * vox for name, v in STRUCTURES.items()}


def volume_curve_ml(labels: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, np.ndarray]:
    """Volumes over the cycle for labels ``[t, k, j, i]``: ``{structure: [t] ml}``."""
    lab = np.asarray(labels)
    if lab.ndim != 4:
        raise FunctionInputError(f"labels must be [t, k, j, i], got shape {lab.shape}")
    vox = voxel_volume_ml(spacing)
    return {name: (lab == v).sum(axis=(1, 2, 3)).astype(float) * vox for name, v in STRUCTURES.items()}


def choose_ed_es(lv_volumes_ml: np.ndarray, ed_phase: int | None = None, es_phase: int | None = None) -> tuple[int, int]:
    """ED and ES phase indices from the LV cavity volume curve ``[t]`` ml.

    ED = largest, ES = smallest LV cavity volume (first such phase on ties); ``ed_phase`` /
    ``es_phase`` override. Raises FunctionInputError when the curve is empty, has fewer than
    two phases without an override of both, an override is out of range, or both overrides name one phase (a stroke
    volume of 0 ml and an EF of 0 % from a typing slip).
    """
    v = np.asarray(lv_volumes_ml, float).reshape(-1)
    n = len(v)
    for name, p in (("ed_phase", ed_phase), ("es_phase", es_phase)):
        if p is not None and not 0 <= int(p) < n:
            raise FunctionInputError(f"{name} {p} is out of range: the cine has {n} phase(s) (0-{n - 1})")
    if ed_phase is not None and es_phase is not None and int(ed_phase) == int(es_phase) and n > 1:
        raise FunctionInputError(f"ED and ES are the same phase ({int(ed_phase)}): give two different phases "
                                 "(--ed-phase, --es-phase), or neither to take them from the LV volume curve")
    if n == 0:
        raise FunctionInputError("empty volume curve")
    if n < 2 and (ed_phase is None or es_phase is None):
        raise FunctionInputError("one phase only: give two volumes (--ed/--es) or a cine")
    ed = int(ed_phase) if ed_phase is not None else int(np.argmax(v))
    es = int(es_phase) if es_phase is not None else int(np.argmin(v))
    return ed, es


def bsa_mosteller(height_cm: float | None, weight_kg: float | None) -> float | None:
    """Body-surface area, m^2, by Mosteller (NEJM 1987): sqrt(height cm x weight kg / 3600).

    None when either is None. Raises FunctionInputError outside 30-272 cm or 1-650 kg.
    """
    if height_cm is None or weight_kg is None:
        if (height_cm is None) != (weight_kg is None):
            raise FunctionInputError("give both --height (cm) and --weight (kg) to index by body-surface area")
        return None
    check_subject_size(height_cm, weight_kg)
    return math.sqrt(float(height_cm) * float(weight_kg) / 3600.0)


def check_subject_size(height_cm: float | None, weight_kg: float | None) -> None:
    """Raise FunctionInputError for a height outside 30-272 cm or a weight outside 1-650 kg (a unit mistake: 1.7 for
    170 cm, grams for kg); either may be None (not given)."""
    if height_cm is not None and not (math.isfinite(float(height_cm)) and 30.0 <= float(height_cm) <= 272.0):
        raise FunctionInputError(f"height {height_cm} cm is not plausible (30-272 cm; give centimetres)")
    if weight_kg is not None and not (math.isfinite(float(weight_kg)) and 1.0 <= float(weight_kg) <= 650.0):
        raise FunctionInputError(f"weight {weight_kg} kg is not plausible (1-650 kg; give kilograms)")


def indexing_pair(height_cm: float | None, weight_kg: float | None) -> tuple[float | None, float | None, str]:
    """The height and weight to index by (:func:`bsa_mosteller` needs both or neither): both, or neither with the
    note ``"... given without its ...: volumes and mass not indexed"`` when one came alone (a cohort row, a panel
    box left empty), so the volumes and mass are still reported.

    Returns:
        ``(height_cm, weight_kg, note)``; ``note`` is ``""`` unless one of the two was dropped.
    """
    if (height_cm is None) == (weight_kg is None):
        return height_cm, weight_kg, ""
    given, missing = ("height", "weight") if height_cm is not None else ("weight", "height")
    return None, None, f"the subject's {given} is given without its {missing}: volumes and mass not indexed"


def subject_from_header(subject: dict, series, label: str, notes: list[str]) -> None:
    """Height and weight from a DICOM series' header (``PatientSize`` in m, ``PatientWeight`` in kg, which scanners
    record for the SAR limits) when the caller gave neither, so that volumes and mass are indexed to the body-surface
    area; ``subject`` gains ``height_cm``, ``weight_kg`` and ``source: "DICOM header"``, and a note says so. Values
    the caller gave win; 0 or absent tags (anonymised data) give nothing; a pair no person has is left out with a
    note.

    Args:
        subject: the study's ``{"height_cm", "weight_kg"}`` (changed in place).
        series: the reference SAX series (:class:`~CardiacLandmarksLib.core.series.CMRSeries`; metadata
            ``patient_size_m``, ``patient_weight_kg`` from :mod:`CardiacLandmarksLib.io.dicom`).
        label: the series as the routing table names it (for the note).
        notes: the study's notes (appended to).
    """
    if subject.get("height_cm") is not None or subject.get("weight_kg") is not None:
        return
    meta = getattr(series, "metadata", None) or {}
    size, weight = meta.get("patient_size_m"), meta.get("patient_weight_kg")
    if not size or not weight:
        return
    height = float(size) * 100.0
    try:
        check_subject_size(height, float(weight))
    except FunctionInputError as exc:
        notes.append(f"height and weight in the DICOM header of {label} not used: {exc}")
        return
    subject.update(height_cm=round(height, 1), weight_kg=float(weight), source="DICOM header")
    notes.append(f"height {height:.0f} cm and weight {float(weight):g} kg from the DICOM header of {label} "
                 "(PatientSize, PatientWeight): volumes and mass indexed to the body-surface area")


def coverage_flags(labels: np.ndarray, value: int, prefix: str) -> list[str]:
    """Coverage flags of one structure in ``labels [k, j, i]`` (see the module docstring):

    * ``<prefix>_on_end_slice`` (information only): the structure is on the first or last slice;
    * ``<prefix>_coverage_doubtful``: its area on *both* end slices is at least
      :data:`END_SLICE_FRACTION` of its largest slice area (neither end looks like an apex, so
      the stack may have cut the ventricle short);
    * ``<prefix>_gap``: a slice without it lies between slices with it.
    """
    area = (np.asarray(labels) == value).sum(axis=(1, 2)).astype(float)
    present = area > 0
    flags = []
    if not present.any():
        return flags
    if present[0] or present[-1]:
        flags.append(f"{prefix}_on_end_slice")
    if min(area[0], area[-1]) >= END_SLICE_FRACTION * area.max():
        flags.append(f"{prefix}_coverage_doubtful")
    idx = np.flatnonzero(present)
    if len(idx) and not present[idx[0] : idx[-1] + 1].all():
        flags.append(f"{prefix}_gap")
    return flags


def ventricle_values(ed: np.ndarray, es: np.ndarray, spacing: tuple[float, float, float], ventricle: str,
                     ed_phase: int, es_phase: int, bsa: float | None = None,
                     extra_flags: list[str] | None = None, ed_flags: list[str] | None = None,
                     es_flags: list[str] | None = None) -> dict[str, Value]:
    """EDV, ESV, SV, EF (and LV mass for ``"LV"``), indexed by ``bsa`` when given.

    Args:
        ed, es: label volumes ``[k, j, i]`` at ED and ES (same grid).
        spacing: ``(si, sj, sk)`` mm.
        ventricle: ``"LV"`` or ``"RV"``.
        ed_phase, es_phase: phase indices (for the ``source`` text).
        bsa: body-surface area m^2 or None.
        extra_flags: flags added to every value (e.g. ``model_not_validated``).
        ed_flags, es_flags: segmentation flags of the ED / ES volume (e.g. ``lv_segmentation_uncertain``,
            ``myo_segmentation_uncertain``); each value takes those of the structures it is made from, and every
            value from ED takes ED's ``ed_at_cut``.

    Returns:
        ``{name: Value}`` with names EDV_ml, ESV_ml, SV_ml, EF_pct[, mass_g], and EDV_index_ml_m2,
        ESV_index_ml_m2, SV_index_ml_m2[, mass_index_g_m2].
    """
    ed, es = np.asarray(ed), np.asarray(es)
    if ed.shape != es.shape or ed.ndim != 3:
        raise FunctionInputError(f"ED and ES labels must be volumes of one shape, got {ed.shape} and {es.shape}")
    if ventricle not in ("LV", "RV"):
        raise FunctionInputError(f"ventricle must be LV or RV, not {ventricle!r}")
    cav = LV if ventricle == "LV" else RV
    name = "LV cavity" if ventricle == "LV" else "RV cavity"
    pre = ventricle.lower()
    extra = list(extra_flags or [])
    vox = voxel_volume_ml(spacing)
    edv = float((ed == cav).sum()) * vox
    esv = float((es == cav).sum()) * vox
    own = f"{pre}_segmentation_uncertain"
    f_ed = coverage_flags(ed, cav, pre) + extra + [f for f in (ed_flags or []) if f in (own, "ed_at_cut")]
    f_es = coverage_flags(es, cav, pre) + extra + [f for f in (es_flags or []) if f == own]
    edv_v = edv if edv > 0 else None
    esv_v = esv if edv > 0 else None  # an ESV without an EDV means nothing: the structure is missing
    out = {
        "EDV_ml": Value("EDV_ml", edv_v, "ml", _status(edv_v, f_ed), f_ed, f"{name} at ED (phase {ed_phase})"),
        "ESV_ml": Value("ESV_ml", esv_v, "ml", _status(esv_v, f_es), f_es, f"{name} at ES (phase {es_phase})"),
    }
    f_both = sorted(set(f_ed) | set(f_es))
    sv = (edv - esv) if edv_v is not None else None
    ef = 100.0 * sv / edv if sv is not None else None
    f_ef = list(f_both)
    if ef is not None and not EF_PLAUSIBLE_PCT[0] <= ef <= EF_PLAUSIBLE_PCT[1]:
        f_ef.append("ef_implausible")
    src = f"{name} at ED (phase {ed_phase}) and ES (phase {es_phase})"
    parts = (out["EDV_ml"].source, out["ESV_ml"].source)
    out["SV_ml"] = Value("SV_ml", sv, "ml", _status(sv, f_ef), f_ef, src, parts)
    out["EF_pct"] = Value("EF_pct", ef, "%", _status(ef, f_ef), f_ef, src, parts)
    if ventricle == "LV":
        myo = float((ed == MYO).sum()) * vox
        mass = MYOCARDIAL_DENSITY_G_PER_ML * myo if myo > 0 else None
        # the LV cavity's coverage at ED (an apical cap of myocardium alone is normal) and the myocardium's certainty
        f_m = [f for f in f_ed if f != own] + [f for f in (ed_flags or []) if f == "myo_segmentation_uncertain"]
        out["mass_g"] = Value("mass_g", mass, "g", _status(mass, f_m), f_m,
                              f"LV myocardium at ED (phase {ed_phase}) x {MYOCARDIAL_DENSITY_G_PER_ML} g/ml")
    for key, unit in (("EDV_ml", "ml/m2"), ("ESV_ml", "ml/m2"), ("SV_ml", "ml/m2"), ("mass_g", "g/m2")):
        if key not in out:
            continue
        base = out[key]
        iname = key.split("_")[0] + "_index_" + unit.replace("/", "_")
        val = base.value / bsa if (bsa and base.value is not None) else None
        flags = list(base.flags) + ([] if bsa else ["no_height_weight"])
        status = "n/a" if val is None else base.status
        out[iname] = Value(iname, val, unit, status, flags, base.source + (f" / BSA {bsa:.2f} m2 (Mosteller)" if bsa else ""))
    return out
