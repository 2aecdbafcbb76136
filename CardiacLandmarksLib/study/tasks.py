"""The per-task analyses a study runs, each through its task's own API (no copy of a pipeline).

Each ``run_*`` takes a loaded series (and the shared :class:`Models`), calls the task API,
writes that task's usual output files into ``outdir`` and returns a :class:`TaskOutcome`
with the key values (each with ``status`` ok | review | n/a and the flags it comes from)
that the study report and the cohort table show.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.core.landmarks import format_value, input_warning_names, status_line
from CardiacLandmarksLib.core.series import CMRSeries
from CardiacLandmarksLib.perfusion.analysis import UNSTATED_CONDITION, value_words

logger = logging.getLogger(__name__)


class Models:
    """Models loaded once and reused for every series and study of a process (a batch worker).

    ``get(name)`` loads on first use: ``"sax"`` (landmark U-Net), ``"4ch"``/``"3ch"``/``"2ch"``
    (long-axis U-Nets), ``"perfusion"`` (segmentation). ``loads`` counts the loads made by this
    object (the batch tests check it stays at one per model per worker). ``tta``: mirror test-time augmentation
    in every analysis that has it (SAX landmarks, function, perfusion); False runs one pass of each of those
    networks (``study --no-tta``, ``batch --no-tta``: cohorts on CPU). Long-axis views keep their rotated / scaled
    copies either way (they set the points' flags: :func:`CardiacLandmarksLib.lax.pipeline.analyse_lax`).
    """

    def __init__(self, device: str = "auto", tta: bool = True):
        from CardiacLandmarksLib.models.loader import choose_device

        self.device = choose_device(device)  # "auto" resolved: study.json and run.json say where the networks ran
        self.tta = bool(tta)
        self._models: dict[str, object] = {}
        self.loads: dict[str, int] = {}

    def get(self, name: str):
        """The model ``name``: a landmark model by view (``"sax"``, ``"2ch"``, ``"3ch"``, ``"4ch"``), a SAX model by
        catalogue name (``"sax:sax_unet_lge"``) or the perfusion segmenter (``"perfusion"``); loaded on first use and
        kept, :attr:`loads` counting the loads (a batch worker loads each once). Raises KeyError for another name.
        """
        if name not in self._models:
            self._models[name] = self._load(name)
            self.loads[name] = self.loads.get(name, 0) + 1
        return self._models[name]

    def sax(self, sequence: str | None):
        """The SAX landmark U-Net for a series' sequence (the LGE model for LGE and perfusion, else the general one),
        loaded once per worker."""
        from CardiacLandmarksLib.models.catalogue import model_for

        name = model_for("landmarks", "sax", sequence=sequence)
        return self.get("sax" if name == model_for("landmarks", "sax") else f"sax:{name}")

    def _load(self, name: str):
        if name in ("sax", "2ch", "3ch", "4ch"):
            from CardiacLandmarksLib.models.loader import load_model

            return load_model(name, self.device)
        if name.startswith("sax:"):
            from CardiacLandmarksLib.models.loader import load_model

            return load_model("sax", self.device, name=name[4:])
        if name == "perfusion":
            from CardiacLandmarksLib.perfusion.segmentation import load_model

            return load_model(device=self.device)
        raise KeyError(name)


#: the start of the key-value name of perfusion series whose names say neither stress nor rest (pooled as
#: ``"perfusion"`` by the report): ``"perfusion (stress/rest?) upslope index (global)"``, short enough for the
#: summary page's column (``routing.fit_text``, 52 characters); the perfusion key values are named with
#: :func:`CardiacLandmarksLib.perfusion.analysis.value_words`: ``"perfusion stress MBF (global)"``,
#: ``"perfusion reserve MPRI (global)"``
PERFUSION_UNSTATED = f"perfusion {UNSTATED_CONDITION}"


@dataclass
class KeyValue:
    """One headline value: name, value, unit, status (ok | review | n/a), flags, detail, and ``check``: what a
    reader should look at when it is not ok, naming the points (``"check AL-P (low 0.31), IS-P (low 0.12)"``,
    :meth:`CardiacLandmarksLib.core.landmarks.Measurement.caveat`); empty where the flags say it themselves
    (:meth:`check_text`)."""

    name: str
    value: float | None
    unit: str
    status: str
    flags: list[str] = field(default_factory=list)
    detail: str = ""
    check: str = ""

    def to_dict(self) -> dict:
        v = None if self.value is None or not np.isfinite(self.value) else round(float(self.value), 3)
        status = self.status if v is not None else "n/a"
        return {"name": self.name, "value": v, "unit": self.unit, "status": status,
                "flags": list(self.flags), "detail": self.detail, "check": self.check_text(status)}

    def check_text(self, status: str | None = None) -> str:
        """``""`` for an ok value; else :attr:`check`, or the flags joined (``"stress upslope index review: sd 0.38
        > mean 0.27"``, ``"lv_segmentation_uncertain"``), or ``"not measured"`` for a value that is missing."""
        status = self.status if status is None else status
        if status == "ok":
            return ""
        if self.check:
            return self.check
        if self.flags:
            return ", ".join(self.flags)
        return "not measured" if self.value is None else ""

    def value_text(self) -> str:
        """The value as shown on the summary page and printed by ``study``, ``apply-review`` and ``batch``:
        ``"-"`` for none, else with :func:`CardiacLandmarksLib.core.landmarks.value_decimals` decimals and the unit (``"0.27 ratio"``, ``"58.9 ml"``)."""
        return format_value(self.value, self.unit)

    def line(self) -> str:
        """The value as ``study``, ``apply-review`` and a console show it: ``"[review] LV EF: 55.2 %  (check LV
        myocardium contours (uncertain segmentation))"``: status first, the reason after a value that is not ok."""
        status = self.to_dict()["status"]
        return status_line(status, f"{self.name}: {self.value_text()}", self.check_text(status))

    def __repr__(self) -> str:
        return f"KeyValue({self.line()})"

    @classmethod
    def from_dict(cls, d: dict) -> KeyValue:
        """Inverse of :meth:`to_dict` (a value of ``study.json``)."""
        return cls(str(d["name"]), None if d.get("value") is None else float(d["value"]), str(d.get("unit", "")),
                   str(d.get("status", "n/a")), [str(f) for f in d.get("flags") or []], str(d.get("detail", "")),
                   str(d.get("check", "")))


@dataclass
class TaskOutcome:
    """Result of one analysis of one series.

    Attributes:
        task: ``"sax"``, ``"function"``, ``"lax"``, ``"perfusion"``.
        series_key: the routed series it ran on.
        ok: False when the analysis failed (``error`` says why).
        values: headline :class:`KeyValue` list.
        files: files written (relative to the study output folder).
        result: the task's own result object (landmark set, analyses ...), kept in memory
            for the cross-checks and the summary picture; not serialised.
        seconds: wall time (in the run record, not in ``study.json``: :meth:`.analyse.StudyResult.timings`).
    """

    task: str
    series_key: str
    ok: bool = True
    error: str = ""
    values: list[KeyValue] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    result: object = None
    seconds: float = 0.0
    #: reader's points carried from an earlier run of the study, and the sentence that says so or says why not
    #: (:func:`carry_earlier_review`; also in ``notes``)
    review_carried: int = 0
    review_note: str = ""
    #: series of a study-wide analysis that could not be used (perfusion: ``(name, "Error: message")``); the
    #: analysis itself is ok, the study names each in its errors
    failed_series: list = field(default_factory=list)
    #: what the user can give to get more from the series (e.g. ``--dt`` for Fermi MBF); :func:`.analyse.analyse_study`
    #: adds them to the study's notes, which the CLI prints (also in ``notes``)
    study_notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        """For a console: the analysis, its state and its key values (:meth:`KeyValue.line`), not the task's result
        object (in :attr:`result`)."""
        state = "ok" if self.ok else f"FAILED: {self.error}"
        return (f"TaskOutcome({self.task} on {self.series_key}: {state}, {len(self.files)} file(s)\n"
                + "".join(f"  {v.line()}\n" for v in self.values) + ")")

    def to_dict(self) -> dict:
        return {"task": self.task, "series": self.series_key, "ok": self.ok, "error": self.error,
                "values": [v.to_dict() for v in self.values], "files": list(self.files), "notes": list(self.notes),
                **({"review_carried": self.review_carried} if self.review_carried else {})}


def _source_flags(m) -> list[str]:
    """A measurement's sources as key-value flags: a landmark's flag (``"high"``, ``"low"``), an input warning or a
    check on the value by its id and flag (``"orientation review"``, ``"plausibility review"``), so a value's caveat
    reads the same for SAX and long-axis views and says why."""
    return [s.flag if s.kind not in ("input", "check") else f"{s.id} {s.flag}" for s in m.sources]


def _rel(paths, root: Path) -> list[str]:
    out = []
    for p in paths:
        p = Path(p)
        try:
            out.append(str(p.relative_to(root)))
        except ValueError:
            out.append(str(p))
    return out


# --------------------------------------------------------------------------- SAX


def sax_mid_slice(lmset, phase: int = 0) -> int | None:
    """The middle slice among those where A-RVI, I-RVI and C-LV are all found at ``phase``."""
    ks = sorted({lm.slice for lm in lmset.landmarks if lm.phase == phase})
    full = [k for k in ks if all((lm := lmset.get(n, k, phase)) is not None and lm.found
                                 for n in ("A-RVI", "I-RVI", "C-LV"))]
    return full[len(full) // 2] if full else None


def sax_phase_word(series: CMRSeries) -> str:
    """How the key values and the summary name phase 0 of a SAX series: ``"LGE"`` for a late-enhancement image
    (one phase, acquired in diastole), else ``"ED"`` (the ED file of a pair, or the first phase after the R wave
    of a cine)."""
    return "LGE" if series.sequence == "lge" else "ED"


def carry_earlier_review(res, earlier: Path | None, out: TaskOutcome) -> None:
    """Carry a reader's review from ``earlier`` (the same analysis' result folder in an earlier run of the study)
    into the landmark result ``res`` before it is written (:func:`CardiacLandmarksLib.results.carry_review_from`),
    and say so in ``out.notes`` (``out.review_carried``: the number of reader's points carried)."""
    if earlier is None:
        return
    from CardiacLandmarksLib.results import carry_review_from

    c = carry_review_from(earlier, res.landmarks, res.series)
    res.landmarks = c.lmset
    out.review_carried = len(c.points)
    if c.points:
        out.review_note = (f"the reader's review of {len(c.points)} point(s) kept from the earlier run "
                           f"({', '.join(c.points[:6])}{' ...' if len(c.points) > 6 else ''})")
    elif c.reason:
        out.review_note = f"the earlier run's review was not carried over: {c.reason} (it stays in the earlier run's backup)"
    if out.review_note:
        out.notes.append(out.review_note)


def run_sax(series: CMRSeries, models: Models, outdir: Path, root: Path, key: str,
            earlier: Path | None = None) -> TaskOutcome:
    """SAX landmarks + RVI angles on every slice and phase (:func:`CardiacLandmarksLib.sax.pipeline.analyse_sax`
    through :func:`CardiacLandmarksLib.analysis.analyse_landmarks`, with the input checks of ``detect``), written with its result's ``write``; ``earlier``: this analysis' result folder in an earlier run of the study,
    whose reader's review is carried into the new landmarks (:func:`carry_earlier_review`). Key value: RVI angle
    on the mid slice at
    phase 0 (``"RVI angle (mid, ED)"``: ED for an ED/ES pair, the first phase after the R wave for a cine;
    ``"(mid, LGE)"`` for an LGE stack, :func:`sax_phase_word`, so the cohort column of cine angles never mixes
    in LGE ones)."""
    from CardiacLandmarksLib.analysis import analyse_landmarks
    from CardiacLandmarksLib.sax.pipeline import SaxOptions

    # the entry 'detect' and the Slicer panel share: the input checks (a placeholder voxel size, an incomplete
    # grid ... as warnings that make every value review; label maps, constant images, absurd spacing, nothing
    # cardiac as named errors). The study decided the view from its own geometry: no view check here
    res = analyse_landmarks(series, "sax", SaxOptions(device=models.device, tta=models.tta), allow_incomplete=True,
                            model=models.sax(series.sequence), check_view=False)
    out = TaskOutcome("sax", key)
    carry_earlier_review(res, earlier, out)
    out.files = _rel(res.write(outdir), root)
    lmset = out.result = res.landmarks
    n = len(lmset.landmarks)
    found = sum(lm.found for lm in lmset.landmarks)
    low = sum(lm.flag == "low" for lm in lmset.landmarks)
    out.notes.append(f"{found}/{n} landmarks found, {low} low confidence")
    out.notes += [w for w in lmset.warnings if w not in out.notes]  # the text its values' 'input (...)' names
    out.values = sax_key_values(lmset, sax_phase_word(series))
    return out


def name_series_apart(groups: list[tuple[str, list[KeyValue]]], first: str | None = None) -> None:
    """Give key values of one name from several series their series in the name, so a reader can tell them apart.

    Two SAX cines of one study (a repeated stack) both gave ``"RVI angle (mid, ED)"``, and two long-axis cines of
    one view both their ``LV length``: two lines of one name on the console, the page and in ``study.json``. The
    values of ``first`` (the reference SAX stack's series key), or else of the first series that has the name, keep
    it, so the cohort columns (:data:`.analyse.COHORT_VALUES`) still take theirs; the others become
    ``"RVI angle (mid, ED, s301)"`` (``"<name> (s301)"`` for a name without brackets).

    Args:
        groups: ``[(series key, its key values)]`` in analysis order; the values are renamed in place.
        first: the series whose values keep their names.
    """
    owners: dict[str, list[str]] = {}
    for key, values in groups:
        for v in values:
            owners.setdefault(v.name, []).append(key)
    for key, values in groups:
        for v in values:
            keys = owners[v.name]
            if len(set(keys)) > 1 and key != (first if first in keys else keys[0]):
                v.name = f"{v.name[:-1]}, {key})" if v.name.endswith(")") else f"{v.name} ({key})"


def sax_key_values(lmset, word: str = "ED") -> list[KeyValue]:
    """The SAX key values of a landmark set: RVI angle and RVI opening angle on the mid slice
    (:func:`sax_mid_slice`) at phase 0, ``"<name> (mid, <word>)"``, each with its measurement's own status and
    sources (the one trust rule, with e.g. the RV-side 'orientation' review). Used on the detection
    (:func:`run_sax`) and on a reader's reviewed result (:func:`CardiacLandmarksLib.study.review.apply_review`)."""
    k = sax_mid_slice(lmset, 0)
    if k is None:
        return [KeyValue(f"RVI angle (mid, {word})", None, "deg", "n/a", detail="no slice with all three points")]
    values = []
    for name in ("RVI angle", "RVI opening angle"):
        m = next((m for m in lmset.measurements if m.name == name and m.slice == k and m.phase == 0), None)
        if m is None:  # degenerate geometry (an insertion on C-LV): not measured
            values.append(KeyValue(f"{name} (mid, {word})", None, "deg", "n/a", detail=f"slice {k}, phase 0"))
            continue
        values.append(KeyValue(f"{name} (mid, {word})", m.value, "deg", m.status, _source_flags(m),
                               f"slice {k}, phase 0", m.caveat(inputs_by_id=True)))
    return values


# --------------------------------------------------------------------------- function


#: rows of the function table (:data:`CardiacLandmarksLib.function.report.ROWS`, the one list of function values
#: and their names) that are not study key values: the indexed stroke volumes (the SV and BSA give them)
FUNCTION_ROWS_LEFT_OUT = ("SV_index_ml_m2",)

#: key values the one-page summary shows in brackets on the line of another (an index beside its volume or mass,
#: the stroke volume beside the EF), when the two have one status (:func:`.report.render_summary_png`)
SHOWN_WITH = {"LV EDV index": "LV EDV", "LV ESV index": "LV ESV", "LV mass index": "LV mass",
              "RV EDV index": "RV EDV", "RV ESV index": "RV ESV", "LV SV": "LV EF", "RV SV": "RV EF"}


def run_function(series: CMRSeries, models: Models, outdir: Path, root: Path, key: str,
                 subject: dict | None = None) -> TaskOutcome:
    """LV/RV volumes and ejection fractions of the reference SAX stack
    (:func:`CardiacLandmarksLib.function.pipeline.analyse_function`), written with its result's ``write``.

    A paired ED/ES series (``metadata["phase_labels"] == ["ED", "ES"]``) goes in as two volumes;
    a cine as one (ED/ES chosen by the function analysis). Key values: the function table's rows
    (:data:`CardiacLandmarksLib.function.report.ROWS` but :data:`FUNCTION_ROWS_LEFT_OUT`): LV/RV EDV, ESV, SV, EF,
    LV mass, and with the subject's height and weight the indexed volumes and mass, with the function analysis' own
    status and flags. Only called when the function package is installed
    (:func:`.routing.function_available`).
    """
    import copy

    from CardiacLandmarksLib.function.measurements import indexing_pair
    from CardiacLandmarksLib.function.pipeline import FunctionOptions, analyse_function, function_model_name

    subject = subject or {}
    # a cohort row with a height and no weight: volumes and mass, not indexed, with a note
    height, weight, one_only = indexing_pair(subject.get("height_cm"), subject.get("weight_kg"))
    opts = FunctionOptions(height_cm=height, weight_kg=weight,  # incomplete: measured, every value review
                           device=models.device, tta=models.tta, allow_incomplete=True)
    if series.metadata.get("phase_labels") == ["ED", "ES"] and series.n_phases == 2:
        vols = []
        for t in (0, 1):
            v = copy.copy(series)
            v.pixels = series.pixels[t : t + 1]
            v.source = (series.metadata.get("paired_from") or [series.source] * 2)[t]
            vols.append(v)
        inputs = vols
    else:
        inputs = series
    res = analyse_function(inputs, opts, model=models.get(f"sax:{function_model_name()}"))
    files = res.write(outdir)
    out = TaskOutcome("function", key, files=_rel(files, root), result=res)
    from CardiacLandmarksLib.function.report import ROWS

    for ventricle, name, label in ROWS:
        if name in FUNCTION_ROWS_LEFT_OUT:
            continue
        v = res.values.get(ventricle, {}).get(name)
        if v is not None and (v.value is not None or "_index_" not in name):  # an index only with height and weight
            out.values.append(KeyValue(label, v.value, v.unit, v.status, list(v.flags), v.source, v.check_text()))
    out.notes += [f"function flag: {f}" for f in res.flags]
    if one_only:
        out.notes.append(one_only)
        out.study_notes.append(one_only)
    return out


# --------------------------------------------------------------------------- LAX


def run_lax(series: CMRSeries, view: str, models: Models, outdir: Path, root: Path, key: str,
            earlier: Path | None = None) -> TaskOutcome:
    """Long-axis landmarks, tracking and LV length (:func:`CardiacLandmarksLib.lax.pipeline.analyse_lax` through
    :func:`CardiacLandmarksLib.analysis.analyse_landmarks`, with the input checks of ``detect``), written
    with its result's ``write``; ``earlier`` as for :func:`run_sax` (the reader's points re-tracked through the
    cine). Key values: LV length at ED and ES and the longitudinal shortening."""
    from CardiacLandmarksLib.analysis import analyse_landmarks
    from CardiacLandmarksLib.sax.pipeline import SaxOptions

    v = view if view in ("2ch", "3ch", "4ch") else "4ch"
    res = analyse_landmarks(series, v, SaxOptions(device=models.device), allow_incomplete=True, model=models.get(v),
                            check_view=False)
    out = TaskOutcome("lax", key)
    carry_earlier_review(res, earlier, out)
    out.files = _rel(res.write(outdir), root)
    lmset = out.result = res.landmarks
    if view == "lax":
        out.notes.append("chamber view not decided: the 4CH model was used")
    out.notes += [str(n) for n in lmset.model.get("lax_checks", [])]
    out.notes += [w for w in lmset.warnings if w not in out.notes]  # the text its values' 'input (...)' names
    out.values = lax_key_values(lmset, v)
    return out


def lax_key_values(lmset, view: str) -> list[KeyValue]:
    """The long-axis key values of a landmark set: LV length at ED and ES and the longitudinal shortening,
    ``"<name> (<VIEW>)"``, each with its measurement's own status and sources (the one trust rule of
    core.landmarks). Used on the detection (:func:`run_lax`) and on a reader's reviewed result
    (:func:`CardiacLandmarksLib.study.review.apply_review`)."""
    v = view.upper()
    ms = {m.name: m for m in lmset.measurements if m.slice == 0}
    values = []
    for label in ("LV length ED", "LV length ES"):
        m = ms.get(label)
        if m is None:
            values.append(KeyValue(f"{label} ({v})", None, "mm", "n/a"))
            continue
        values.append(KeyValue(f"{label} ({v})", m.value, "mm", m.status, _source_flags(m), f"phase {m.phase}",
                               m.caveat(inputs_by_id=True)))
    m = ms.get("Longitudinal shortening")
    values.append(KeyValue(f"Longitudinal shortening ({v})", None if m is None else m.value, "%",
                           "n/a" if m is None else m.status, [] if m is None else sorted(set(_source_flags(m))),
                           check="" if m is None else m.caveat(inputs_by_id=True)))
    return values


# --------------------------------------------------------------------------- perfusion


@dataclass
class PerfusionSlice:
    """One perfusion slice of a study for :func:`run_perfusion`: ``series`` (pixels ``[t, 1, j, i]``) named
    ``name``, with the arterial input function paired with its series (``aif``: ``(T,)``, one sample per frame, in
    the pixels' units; ``aif_name`` names its file), or None."""

    name: str
    series: CMRSeries
    aif: np.ndarray | None = None
    aif_name: str = ""


def run_perfusion(slices: list, models: Models, outdir: Path, root: Path, key: str, concentration: bool = False,
                  dt_s: float | None = None, failed: list[tuple[str, str]] | tuple = ()) -> TaskOutcome:
    """One AHA perfusion report of every perfusion slice of a study, stress and rest together
    (:func:`CardiacLandmarksLib.perfusion.pipeline.analyse_perfusion`, as the ``perfusion`` command does, written
    with its result's ``write``). Key values: the global primary metric per condition (Fermi MBF, ml/min/g, when
    it could be computed, else the upslope index), and the stress/rest reserve (MPR or MPRI) when both were given.

    Args:
        slices: :class:`PerfusionSlice` (or ``(name, series)``) per slice: the study's perfusion series, a
            multi-slice series split into its slices.
        concentration: the pixels are contrast concentration (mmol/L): with a slice's ``aif`` and a frame
            interval, Fermi MBF (Jerosch-Herold 1998, as in Xue et al. 2020) is computed.
        dt_s: frame interval in s for series whose frames carry no timing (QPerf's Analyze files: 0.5 s).
            Series with trigger times keep their own.
        failed: ``(name, "Error: message")`` of series that could not even be loaded: named like the slices the
            analysis could not use.

    Series that do not belong together (another matrix or pixel size: QPerf's rest and stress crops) are analysed
    together with a warning and no reserve, rather than not at all. A slice that could not be analysed (no
    contrast passage, no LV found, an empty segmentation ...) is named in the notes
    (``"<slice>: not analysed (<error>)"``) and in ``failed_series``, and makes every key value ``review``; the
    other slices are reported. Only when no slice can be analysed does the task fail.
    """
    from CardiacLandmarksLib.core.errors import SeriesMismatchError
    from CardiacLandmarksLib.perfusion import pipeline as pp
    from CardiacLandmarksLib.perfusion import report as pr

    notes: list[str] = []
    unused: list[str] = []  # an AIF the study could not use, and what to give for MBF
    why = {"concentration": "the series are taken as signal intensity; give --concentration when they hold contrast "
                            "concentration (mmol/L) for Fermi MBF",
           "frame interval": "the frames carry no timing; give the frame interval (--dt) for Fermi MBF"}
    inputs = []
    for sl in (x if isinstance(x, PerfusionSlice) else PerfusionSlice(*x) for x in slices):
        inp = pp.SeriesInput(series=sl.series, name=sl.name, aif=sl.aif, concentration=concentration,
                             dt_s=None if pp.frames_timed(sl.series) else dt_s)  # a series' own timing wins
        if inp.aif is not None:
            missing = pp.mbf_missing(inp)  # the pipeline's rule; here a note, not a warning or an error: the
            if missing:  # upslope index is as good as ever
                unused.append(f"{sl.name}: arterial input function {sl.aif_name} not used: {why[missing]}")
                inp.aif = None
            else:
                notes.append(f"{sl.name}: Fermi MBF from the arterial input function {sl.aif_name}")
        inputs.append(inp)
    if not inputs:
        raise pp.PerfusionInputError("none of the perfusion series could be read: " + pp.failures_text(failed))
    try:
        res = pp.analyse_perfusion(inputs, model=models.get("perfusion"), device=models.device, tta=models.tta,
                                   allow_incomplete=True,  # incomplete: analysed, its values review (as function)
                                   unread=failed)
    except SeriesMismatchError:  # one report all the same, with the difference said and no stress/rest reserve
        res = pp.analyse_perfusion(inputs, model=models.get("perfusion"), device=models.device, tta=models.tta,
                                   allow_mismatch=True, allow_incomplete=True, unread=failed)
    analyses, summary = res.analyses, res.summary
    files = res.write(outdir)
    out = TaskOutcome("perfusion", key, files=_rel(files, root), result=(analyses, summary))
    metric = pr.primary_metric(summary)
    out.notes += unused + notes + res.failure_warnings
    out.study_notes += unused
    out.failed_series = list(res.failed)
    failed = [name for name, _ in res.failed]
    for a in analyses:
        out.notes += [f"{a.name}: {w}" for w in a.warnings]
        out.notes.append(f"{a.name}: RVI from {a.rvi_source or 'none'}")
    for c in summary["conditions"]:
        g = summary["global"].get(c, {}).get(metric)
        group = [a for a in analyses if a.condition == c]
        # the global value's own trust, the status the perfusion report gives the same number
        # (perfusion.pipeline.segment_trust: its myocardium masks (not the RV-insertion anchors, which move no
        # pixel in or out of the global value), too few pixels -> n/a, a mean that is not positive, a spread above
        # the mean, an MBF out of range, a warning on a series it pools (pipeline.warning_sources), a series of
        # the study not analysed (pipeline.summarise) -> review); the flags name what makes it review
        st = "n/a" if not g else g.get("status", "review")
        flags = _trust_flags((g or {}).get("sources", []))  # where the RVI came from is in the notes
        # a series whose condition is neither in its name nor given is pooled as "perfusion": say so in words
        out.values.append(KeyValue(f"perfusion {value_words(c, metric)} (global)", None if not g else g["mean"],
                                   summary["units"].get(metric, ""), st, flags,
                                   f"{len(group)} slice(s)" + ("; stress or rest not named in the series"
                                                               if c == "perfusion" else "")
                                   + _not_analysed_text(g, failed)))
    out.values += _reserve_values(summary, metric, failed)
    return out


def _not_analysed_text(value: dict | None, failed: list[str]) -> str:
    """``"; not analysed: A, B"``: the study's failed series that this value may miss, i.e. those among its sources
    (:func:`CardiacLandmarksLib.perfusion.pipeline.summarise`: a failed rest slice is not a doubt on the stress
    value); every failed series when there is no value to ask."""
    from CardiacLandmarksLib.perfusion.pipeline import missed_series

    names = failed if value is None else missed_series(value)
    return f"; not analysed: {', '.join(names)}" if names else ""


def _trust_flags(sources: list[dict]) -> list[str]:
    """The key-value flags of a perfusion value's doubtful sources (the report's ``sources``): its own mask or
    curve, named by the value it belongs to (``"stress upslope index review: mean -0.3 not positive"``; in a
    reserve's flags that names which of stress and rest is doubtful), then its low RV-insertion anchors or masks
    (``"A-RVI stress_mid (low 0.10)"``, ``"myocardium rest_base (low 0.31)"``), then what the input checks doubt
    (``"check input (incomplete series)"``: :attr:`CardiacLandmarksLib.perfusion.pipeline.SliceAnalysis.input_warnings`),
    then a pooled series' own warnings (``"data_stress: field of view 74 mm: taken as cropped around the LV (no
    localiser)"``: :func:`CardiacLandmarksLib.perfusion.pipeline.warning_sources`)."""
    own = [f"{x['id'].removeprefix('global ')} {x['flag']}: {x.get('note', '')}".rstrip(": ") for x in sources
           if x.get("kind") in ("mask", "curve") and x.get("flag") in ("review", "n/a")]
    anchors = [f"{x['id']} ({x['flag']}" + ("" if x.get("confidence") is None else f" {x['confidence']:.2f}") + ")"
               for x in sources if (x.get("kind") == "anchor" and x.get("flag") not in ("high", "ok"))
               or (x.get("kind") == "mask" and x.get("flag") == "low")]
    inputs = [f"check input ({input_warning_names(x.get('note', ''))})" for x in sources
              if x.get("kind") == "input" and x.get("flag") == "review"]
    warned = [f"{x['id']}: {x.get('note', '')}" for x in sources  # a series' own warning (pipeline.warning_sources)
              if x.get("kind") == "check" and x.get("flag") == "review"]
    return own + anchors + list(dict.fromkeys(inputs)) + warned


def _reserve_values(summary: dict, metric: str, failed: list[str]) -> list[KeyValue]:
    """The global stress/rest reserve of the primary metric as a key value (MPR for Fermi MBF, MPRI for the
    upslope index; :func:`CardiacLandmarksLib.perfusion.pipeline.summarise`), with its own trust; none when the
    study lacks stress or rest, or its series do not match."""
    key = "mpr" if metric == "mbf" else "mpri"
    glob = summary.get("global", {})
    value = glob.get("reserve", {}).get(key)
    if value is None:
        return []
    trust = glob.get("reserve_trust", {}).get(key, {})
    status = trust.get("status", "review")  # a series not analysed is a source of it (pipeline.summarise)
    flags = _trust_flags(trust.get("sources", []))
    return [KeyValue(f"perfusion {value_words('reserve', key)} (global)", float(value), "ratio", status, flags,
                     "stress / rest" + _not_analysed_text(trust if trust else None, failed))]
