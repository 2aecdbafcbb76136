"""Analyse a whole study: route every series, run every analysis that applies, one report.

:func:`analyse_study` is the one study API (the ``study`` command, the batch workers and any
other front end call it):

1. :func:`.routing.route_study` classifies every series (view, sequence, analyses, reason);
2. SAX: landmarks and RVI angles on every SAX cine (``tasks.run_sax``);
   LV/RV function on the reference stack when the ``function`` package is present;
3. long-axis views whose chamber is not named get it from the SAX landmarks
   (:func:`.routing.refine_lax_chamber`); then LV length and shortening (``tasks.run_lax``);
4. perfusion: one AHA report of every slice of every perfusion series, stress and rest together, with the
   reserve (``tasks.run_perfusion``; a study with one perfusion series keeps its key in the folder name,
   ``<key>_perfusion``, several give ``study_perfusion``);
5. cross-checks of each long-axis view against the SAX stack (:mod:`.crosscheck`).

A series whose analysis fails is recorded with its error (type and message) and the study
goes on; unsupported series are listed with the reason. :meth:`StudyResult.write` writes
``study.json``, ``routing.txt`` and the one-page ``summary.png`` (:mod:`.report`); each task
writes its own usual files into ``<output>/<series key>_<task>/``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.core.errors import CardiacLandmarksError, OutputPathError
from CardiacLandmarksLib.core.review import flag_counts
from CardiacLandmarksLib.io.checks import check_frame_interval, given_pixel_size
from CardiacLandmarksLib.io.curves import read_curve
from CardiacLandmarksLib.perfusion.analysis import METRIC_WORDS
from CardiacLandmarksLib.study import tasks
from CardiacLandmarksLib.study.crosscheck import crosscheck
from CardiacLandmarksLib.study.routing import RoutedSeries, StudyRouting, refine_lax_chamber, route_study
from CardiacLandmarksLib.study.tasks import KeyValue, Models, TaskOutcome

logger = logging.getLogger(__name__)

ProgressFn = Callable[[str], None]

#: the analysis folders a study run writes (``<series key>_<task>/``): an earlier run's go to its backup
TASK_FOLDERS = ("*_sax", "*_lax", "*_function", "*_perfusion")

#: cohort table columns from the key values (name in the study -> column stem)
COHORT_VALUES = (
    ("RVI angle (mid, ED)", "rvi_angle_deg"),
    ("RVI opening angle (mid, ED)", "rvi_opening_deg"),
    # an LGE SAX stack's angles in their own columns (another acquisition than the cine's ED frame): a cohort of
    # LGE studies had no RVI angle in its table
    ("RVI angle (mid, LGE)", "rvi_angle_lge_deg"),
    ("RVI opening angle (mid, LGE)", "rvi_opening_lge_deg"),
    ("LV EDV", "lv_edv_ml"),
    ("LV ESV", "lv_esv_ml"),
    ("LV SV", "lv_sv_ml"),
    ("LV EF", "lv_ef_pct"),
    ("LV mass", "lv_mass_g"),
    ("RV EDV", "rv_edv_ml"),
    ("RV ESV", "rv_esv_ml"),
    ("RV SV", "rv_sv_ml"),
    ("RV EF", "rv_ef_pct"),
    ("LV EDV index", "lv_edv_index_ml_m2"),
    ("LV ESV index", "lv_esv_index_ml_m2"),
    ("LV mass index", "lv_mass_index_g_m2"),
    ("RV EDV index", "rv_edv_index_ml_m2"),
    ("RV ESV index", "rv_esv_index_ml_m2"),
    ("LV length ED", "lv_length_ed_mm"),
    ("LV length ES", "lv_length_es_mm"),
    ("Longitudinal shortening", "lax_shortening_pct"),
    ("perfusion stress", "perfusion_stress"),
    ("perfusion rest", "perfusion_rest"),
    (tasks.PERFUSION_UNSTATED, "perfusion_unlabelled"),
    ("perfusion reserve", "perfusion_reserve"),
)
#: cohort columns whose metric depends on the study: Fermi MBF (ml/min/g) where an arterial input function in
#: contrast concentration was given, else the upslope index (ratio); each has a ``<column>_metric`` column
PERFUSION_COLUMNS = ("perfusion_stress", "perfusion_rest", "perfusion_unlabelled", "perfusion_reserve")
#: key-value names written before the perfusion names were a reader's words (``"perfusion, stress/rest unknown
#: upslope_index (global)"``, ``"perfusion stress mbf (global)"``): a ``study.json`` of an earlier version still
#: fills its cohort columns (a resumed ``batch``, ``apply-review`` on an old study)
_LEGACY_NAMES = {"perfusion, stress/rest unknown": tasks.PERFUSION_UNSTATED}
_METRIC_CODES = {words: code for code, words in METRIC_WORDS.items()}


def study_status(analysed: bool, errors: list[str], key_values: list[KeyValue]) -> str:
    """A study's status: ``"n/a"`` when nothing was analysed, ``"review"`` when an analysis failed or a key value
    needs review, else ``"ok"`` (:attr:`StudyResult.status`; again after a reader's review,
    :func:`CardiacLandmarksLib.study.review.apply_review`)."""
    if not analysed:
        return "n/a"
    if errors or any(v.status == "review" for v in key_values):
        return "review"
    return "ok"


#: the long-axis cohort columns, all taken from one view (:data:`LAX_VIEW_ORDER`), named in ``lax_view``
LAX_COLUMNS = ("lv_length_ed_mm", "lv_length_es_mm", "lax_shortening_pct")
#: which long-axis view fills the cohort's LV length and shortening when a study has several with a model (a site's
#: own 2CH model beside the bundled 4CH one): the view with the most values, and on a tie the 4CH first (the bundled
#: model's), then 2CH, 3CH, and a long-axis cine whose chamber view was not decided
LAX_VIEW_ORDER = ("4CH", "2CH", "3CH", "LAX")


def _lax_view(key_values: list[KeyValue]) -> str | None:
    """The view of :data:`LAX_VIEW_ORDER` with the most long-axis key values that have a value (ED and ES length,
    shortening), the earlier in that order on a tie; None when no view has any."""
    names = tuple(n for n, c in COHORT_VALUES if c in LAX_COLUMNS)
    counts = {view: sum(v.value is not None and v.name.endswith(f"({view})") and v.name.startswith(names)
                        for v in key_values) for view in LAX_VIEW_ORDER}
    best = max(LAX_VIEW_ORDER, key=lambda view: (counts[view], -LAX_VIEW_ORDER.index(view)))
    return best if counts[best] else None


def cohort_values(key_values: list[KeyValue]) -> dict:
    """The key-value columns of a cohort row: for each of :data:`COHORT_VALUES` the first key value whose name starts
    with it and has a value, and its status (``None`` / ``"n/a"`` when there is none); for the perfusion columns
    (:data:`PERFUSION_COLUMNS`) also which metric it is, as the report's key with its unit (``"mbf (ml/min/g)"``,
    ``"upslope_index (ratio)"``, ``"mpri (ratio)"``), the same for a ``study.json`` of an earlier version. The LV
    length and shortening columns (:data:`LAX_COLUMNS`) come from one long-axis view, named in ``lax_view``
    (:data:`LAX_VIEW_ORDER`): a study's ED length from its 4CH cine and ES length from its 2CH would not be one
    measurement."""
    row: dict = {}
    key_values = [_current_name(v) for v in key_values]
    lax_view = row["lax_view"] = _lax_view(key_values)
    for name, col in COHORT_VALUES:
        longer = [n for n, _ in COHORT_VALUES if n != name and n.startswith(name)]  # "LV EDV index" is not "LV EDV"
        kv = next((v for v in key_values if v.name.startswith(name) and v.value is not None
                   and not any(v.name.startswith(n) for n in longer)
                   and (col not in LAX_COLUMNS or v.name.endswith(f"({lax_view})"))), None)
        d = kv.to_dict() if kv is not None else None
        row[col] = None if d is None else d["value"]
        row[col + "_status"] = "n/a" if d is None else d["status"]
        if col in PERFUSION_COLUMNS:  # Fermi MBF or the upslope index: one column, so say which, with its unit
            metric = None if kv is None else kv.name[len(name):].strip().removesuffix("(global)").strip()
            row[col + "_metric"] = None if kv is None else f"{_METRIC_CODES.get(metric, metric)} ({kv.unit})"
    return row


def _current_name(kv: KeyValue) -> KeyValue:
    """``kv`` under today's name when it was written under an earlier one (:data:`_LEGACY_NAMES`), else itself."""
    for old, new in _LEGACY_NAMES.items():
        if kv.name.startswith(old):
            return replace(kv, name=new + kv.name[len(old):])
    return kv


@dataclass
class StudyResult:
    """Everything :func:`analyse_study` found and computed for one study.

    Attributes:
        routing: the routed series.
        outcomes: one :class:`~.tasks.TaskOutcome` per analysis run (ok or failed).
        crosschecks: LAX-vs-SAX :class:`~.tasks.KeyValue` list.
        seconds: wall time of the analyses (in ``run.json``, :meth:`timings`; not in ``study.json``, so that a
            re-run with the same results writes the same ``study.json``).
    """

    routing: StudyRouting
    outcomes: list[TaskOutcome] = field(default_factory=list)
    crosschecks: list[KeyValue] = field(default_factory=list)
    crosscheck_geometry: dict = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    subject: dict = field(default_factory=dict)
    name: str = ""
    settings: dict = field(default_factory=dict)  # how the analyses ran: device, mirror TTA

    def __repr__(self) -> str:
        """For a console: the study, its status, each analysis run and every key value with its status and reason
        (:meth:`~.tasks.KeyValue.line`, as ``study`` prints them), not the routed series' headers or the task
        results (in :attr:`routing` and :attr:`outcomes`)."""
        runs = ", ".join(f"{o.task} on {o.series_key}" + ("" if o.ok else " FAILED") for o in self.outcomes)
        lines = [v.line() for v in self.key_values()] + [f"error: {e}" for e in self.errors]
        return (f"StudyResult({self.name or self.routing.name!r}, status {self.status}: "
                f"{len(self.routing.series)} series routed; analyses: {runs or 'none'}\n"
                + "".join(f"  {x}\n" for x in lines) + ")")

    @property
    def errors(self) -> list[str]:
        """One line per analysis that failed, per series a study-wide analysis could not use (perfusion:
        ``TaskOutcome.failed_series``), then what routing found wrong with the study: each input that could not be
        read (``"not read: ..."``), series of more than one patient (:meth:`.routing.StudyRouting.problems`)."""
        return [f"{o.task} on {o.series_key}: {o.error}" for o in self.outcomes if not o.ok] + [
            f"{o.task} on {name}: {error}" for o in self.outcomes if o.ok for name, error in o.failed_series
        ] + self.routing.problems()

    @property
    def status(self) -> str:
        """``"ok"``: every analysis ran and every key value is ok; ``"review"``: some value
        needs review or some analysis failed; ``"n/a"``: nothing could be analysed."""
        return study_status(bool(self.outcomes), self.errors, self.key_values())

    def key_values(self) -> list[KeyValue]:
        """The study's headline values: each successful analysis's key values, then the LAX-vs-SAX cross-checks."""
        return [v for o in self.outcomes if o.ok for v in o.values] + list(self.crosschecks)

    def to_dict(self) -> dict:
        models = {}
        for o in self.outcomes:
            res = o.result
            m = getattr(res, "model", None)
            if isinstance(m, dict) and m.get("name"):
                models[m["name"]] = {k: m.get(k) for k in ("name", "version", "sha256")}
        return {
            "format": "cardiac-landmarks study report",
            "version": 1,
            "library": "CardiacLandmarksLib",
            "study": self.routing.path,
            "name": self.name or self.routing.name,
            "subject": self.subject,
            "status": self.status,
            "errors": self.errors,
            "routing": self.routing.to_dict(),
            "analyses": [o.to_dict() for o in self.outcomes],
            "crosschecks": [v.to_dict() for v in self.crosschecks],
            "crosscheck_geometry": self.crosscheck_geometry,
            "key_values": [v.to_dict() for v in self.key_values()],
            "models": models,
            "settings": self.settings,
            "coordinate_system": "LPS",
            "units": "mm",
            "notes": self.routing.notes + self.notes,
        }

    def timings(self) -> dict:
        """Wall times in seconds, for the run record (``run.json``'s ``timings``): the study's and each analysis's
        (``task``, ``series``, ``seconds``)."""
        return {"study_s": round(self.seconds, 2),
                "analyses": [{"task": o.task, "series": o.series_key, "seconds": round(o.seconds, 2)}
                             for o in self.outcomes]}

    def cohort_row(self) -> dict:
        """One flat row for the cohort table: counts, analyses, the study status, the reader's points
        (:attr:`reader_points`), and each key value of :data:`COHORT_VALUES` with its status (the first match; blank
        when absent)."""
        r = self.routing
        row: dict = {
            "n_series": len(r.series),
            "n_analysed": sum(1 for s in r.series if s.analyses),
            "n_listed_only": sum(1 for s in r.series if not s.analyses),
            "analyses": ";".join(sorted({o.task for o in self.outcomes if o.ok})),
            "study_status": self.status,
            "reader_points": self.reader_points,
        }
        row.update(cohort_values(self.key_values()))
        return row

    @property
    def reader_points(self) -> int:
        """Points of the SAX and long-axis analyses a reader corrected, placed, unset or confirmed (carried from an
        earlier run, :func:`analyse_study`'s ``review_from``; 0 for a fresh detection)."""
        counts = [flag_counts(getattr(o.result, "landmarks", ())) for o in self.outcomes
                  if o.ok and o.task in ("sax", "lax")]
        return sum(c["corrected"] + c["confirmed"] for c in counts)

    def write(self, outdir: str | Path) -> list[Path]:
        """Write ``study.json``, ``routing.txt`` and ``summary.png`` into ``outdir`` (atomic writes).

        Returns the paths written.
        """
        from CardiacLandmarksLib.study.report import write_study_report

        return write_study_report(self, Path(outdir))


def analyse_study(
    path: str | Path | list,
    outdir: str | Path,
    models: Models | None = None,
    device: str = "auto",
    progress: ProgressFn | None = None,
    routing: StudyRouting | None = None,
    subject: dict | None = None,
    name: str = "",
    tta: bool = True,
    review_from: str | Path | None = None,
    pixel_size_mm: float | None = None,
    frame_interval_s: float | None = None,
    concentration: bool = False,
    sequence: str | None = None,
) -> StudyResult:
    """Route and analyse every series of a study (module docstring).

    Args:
        path: DICOM study folder, folder of image files, or a list of files/folders.
        outdir: output folder; each analysis writes into ``<outdir>/<series key>_<task>/``.
        models: shared model cache (a batch worker passes its own); default: a new one.
        device: ``"auto"`` (the GPU when one is present), ``"cpu"`` or ``"cuda"`` for a new model cache.
        progress: called with a short message before each analysis.
        routing: an already computed routing (the CLI prints it first).
        subject: optional ``{"height_cm", "weight_kg"}`` of the subject (kept in the report;
            for body-surface-indexed values).
        name: the study's name in the report (a batch passes its study id; default: the folder
            name, or the common start of the file names).
        tta: mirror test-time augmentation for a new model cache (``models`` given: its own ``tta``); the report
            records which was used (``settings.tta``).
        review_from: the output folder of an earlier run of this study (``study`` moves it into
            ``backup-<time>/``, ``batch --redo`` keeps it as ``<id>.bak-<time>``): the points a reader corrected or
            confirmed in its SAX and long-axis result folders are carried into the new detection of the same
            image (:func:`CardiacLandmarksLib.results.carry_review`), so the key values, cross-checks and status
            are the reviewed ones; None: a fresh detection.
        pixel_size_mm: in-plane pixel size (mm) for the image files whose header lost it (1 x 1 mm with a
            placeholder affine, :func:`CardiacLandmarksLib.io.checks.given_pixel_size`: QPerf's and EMIDEC's
            files); series with a real pixel size keep theirs (a note says so).
        frame_interval_s: frame interval (s) of perfusion series whose frames carry no timing (QPerf: 0.5 s),
            for Fermi MBF.
        concentration: the perfusion series hold contrast concentration (mmol/L): with the arterial input
            function paired with a series (:func:`.routing.pair_aifs`) and a frame interval, the study reports
            Fermi MBF (ml/min/g); otherwise the upslope index.
        sequence: ``"cine"``, ``"lge"`` or ``"perfusion"``: the sequence of every image series whose sequence the
            tags and shape do not tell (:func:`.routing.give_sequences`; ``batch --sequence``); recorded in the
            report's settings. Unused when ``routing`` is given (the routing was made with its own).

    Returns:
        :class:`StudyResult` (call ``.write(outdir)`` for the study report).

    Raises:
        InputNotFoundError, NoDicomError: the study cannot be read at all (from routing).
        PerfusionInputError: ``frame_interval_s`` is no perfusion frame interval
            (:func:`CardiacLandmarksLib.io.checks.check_frame_interval`), before any work.
        OutputPathError: a result file cannot be written (a full disk, a folder made read-only): the study stops
            there, as every analysis after it would fail the same way (a batch records the study as failed).
        Analysis errors of single series do not raise: they are recorded in the result.
    """
    check_frame_interval(frame_interval_s)
    t0 = time.perf_counter()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    routing = routing or route_study(path, sequences={None: sequence} if sequence else None)
    models = models or Models(device, tta=tta)
    settings = {"device": models.device, "tta": models.tta}
    if pixel_size_mm is not None:
        settings["pixel_size_mm"] = float(pixel_size_mm)
    if frame_interval_s is not None:
        settings["frame_interval_s"] = float(frame_interval_s)
    if concentration:
        settings["concentration"] = True
    if sequence:
        settings["sequence_of_unrecognised_series"] = sequence
    result = StudyResult(routing, subject={k: v for k, v in (subject or {}).items() if v is not None}, name=name,
                         settings=settings)
    if pixel_size_mm is not None:
        _give_pixel_size(routing, float(pixel_size_mm), result.notes)
    say = progress or (lambda msg: None)

    def earlier(folder: str) -> Path | None:
        return None if review_from is None else Path(review_from) / folder

    def run(task: str, entry: RoutedSeries, fn, key: str | None = None, label: str | None = None) -> TaskOutcome:
        say(f"{task}: {label or entry.label}")
        t = time.perf_counter()
        try:
            out = fn()
        except OutputPathError:
            raise  # a result that cannot be written (a full disk ...) stops the study: the next ones would fail too
        except Exception as exc:  # noqa: BLE001 - one series must not stop the study
            if not isinstance(exc, CardiacLandmarksError):
                logger.exception("%s on %s failed", task, label or entry.label)
            out = TaskOutcome(task, key or entry.key, ok=False, error=f"{type(exc).__name__}: {exc}")
        out.seconds = time.perf_counter() - t
        result.outcomes.append(out)
        result.notes += out.study_notes
        return out

    sax_ref_out: TaskOutcome | None = None
    sax_ref_series = None
    for e in routing.to_analyse("sax"):
        o = run("sax", e, lambda e=e: tasks.run_sax(e.load(), models, outdir / f"{e.key}_sax", outdir, e.key,
                                                    earlier(f"{e.key}_sax")))
        if e.is_sax_reference and o.ok:
            sax_ref_out, sax_ref_series = o, e.load()
    for e in routing.to_analyse("function"):  # only routed when the function package is installed
        from CardiacLandmarksLib.function.measurements import subject_from_header

        with contextlib.suppress(CardiacLandmarksError):  # a series that cannot be loaded fails in run() by name
            subject_from_header(result.subject, e.load(), e.label, result.notes)
        run("function", e, lambda e=e: tasks.run_function(e.load(), models, outdir / f"{e.key}_function", outdir,
                                                          e.key, result.subject))
    if sax_ref_out is not None:
        _refine_chambers(routing, sax_ref_out.result, sax_ref_series)
    lax_outs: list[tuple[RoutedSeries, TaskOutcome]] = []
    for e in routing.to_analyse("lax"):
        o = run("lax", e, lambda e=e: tasks.run_lax(e.load(), e.view, models, outdir / f"{e.key}_lax", outdir, e.key,
                                                    earlier(f"{e.key}_lax")))
        lax_outs.append((e, o))
    perfusion = routing.to_analyse("perfusion")
    if perfusion:  # one AHA report of all the study's perfusion series: stress and rest together, with the reserve
        key = perfusion[0].key if len(perfusion) == 1 else _group_key(routing, "study")
        slices, unread = _perfusion_inputs(perfusion, routing, result.notes)
        run("perfusion", perfusion[0], lambda: tasks.run_perfusion(
            slices, models, outdir / f"{key}_perfusion", outdir, key, concentration=concentration,
            dt_s=frame_interval_s, failed=unread), key=key, label=", ".join(e.label for e in perfusion))
    ref = routing.sax_reference
    tasks.name_series_apart([(o.series_key, o.values) for o in result.outcomes if o.ok],
                            first=ref.key if ref is not None else None)
    if sax_ref_out is not None:
        for e, o in lax_outs:
            if not o.ok:
                continue
            values, geo = crosscheck(sax_ref_series, sax_ref_out.result, e.load(), o.result, e.key)
            if values:
                result.crosschecks += values
                result.crosscheck_geometry[e.key] = geo
            else:
                result.notes.append(f"cross-check {e.key}: mitral points, apex or SAX C-LV not found")
    elif lax_outs:
        result.notes.append("no SAX stack analysed: long-axis landmarks not cross-checked")
    result.seconds = time.perf_counter() - t0
    return result


def _read_aif(curve: RoutedSeries | None, notes: list[str]) -> np.ndarray | None:
    """The paired arterial input function's samples, or None (a note names an unreadable file: the series is
    still analysed, without MBF)."""
    if curve is None:
        return None
    try:
        return read_curve(curve.file)
    except Exception as exc:  # noqa: BLE001 - a bad curve costs the MBF only
        if not isinstance(exc, CardiacLandmarksError):
            logger.exception("arterial input function %s could not be read", curve.label)
        notes.append(f"arterial input function {curve.label} not read ({type(exc).__name__}: {exc}): no Fermi MBF")
        return None


def _give_pixel_size(routing: StudyRouting, mm: float, notes: list[str]) -> None:
    """Set the given in-plane pixel size on every analysed series whose header lost it (on load), and say,
    once per study, which series kept their own."""
    kept = []
    for e in routing.series:
        if not e.analyses:
            continue
        e.pixel_size_mm = mm
        if e._series is not None:  # image files are read while routing
            note = given_pixel_size(e._series, mm)
            if note is None:
                kept.append(e.label)
            else:
                notes.append(note)
    if kept:
        notes.append(f"pixel size {mm:g} mm not applied to {', '.join(kept)}: the header gives a real pixel size")


def _refine_chambers(routing: StudyRouting, lmset, series) -> None:
    k = tasks.sax_mid_slice(lmset, 0)
    if k is None:
        return
    a, i, c = (lmset.get(n, k, 0).position for n in ("A-RVI", "I-RVI", "C-LV"))
    rv = 0.5 * (a + i) - c
    if np.linalg.norm(rv) < 1e-6:
        return
    n = series.direction[:, 2]
    for e in routing.series:
        if e.view == "lax" and e.normal is not None:
            refine_lax_chamber(e, c, rv / np.linalg.norm(rv), n)


def _group_key(routing: StudyRouting, base: str) -> str:
    """A key for an analysis of several series (its folder ``<key>_<task>``) that no series of the study has."""
    keys = {e.key for e in routing.series}
    key, n = base, 1
    while key in keys:
        n += 1
        key = f"{base}{n}"
    return key


def _perfusion_inputs(entries: list[RoutedSeries], routing: StudyRouting,
                      notes: list[str]) -> tuple[list[tasks.PerfusionSlice], list[tuple[str, str]]]:
    """Every slice of the study's perfusion series with the arterial input function paired with its series
    (:func:`.routing.pair_aifs`), and ``(key, error)`` of the series that could not be loaded (named in the study's
    errors, the others analysed)."""
    curves = {c.key: c for c in routing.series if c.sequence == "curve"}
    slices: list[tasks.PerfusionSlice] = []
    unread: list[tuple[str, str]] = []
    for e in entries:
        try:
            parts = _perfusion_slices(e)
        except Exception as exc:  # noqa: BLE001 - one series must not stop the study
            if not isinstance(exc, CardiacLandmarksError):
                logger.exception("perfusion series %s could not be loaded", e.label)
            unread.append((e.key, f"{type(exc).__name__}: {exc}"))
            continue
        curve = curves.get(e.aif) if e.aif else None
        aif = _read_aif(curve, notes)
        slices += [tasks.PerfusionSlice(name, s, aif, curve.label if curve else "") for name, s in parts]
    return slices, unread


def _perfusion_slices(e: RoutedSeries) -> list[tuple[str, object]]:
    from CardiacLandmarksLib.perfusion.pipeline import slice_series

    return slice_series(e.load(), e.key)
