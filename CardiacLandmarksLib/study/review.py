"""A reader's review of a study's landmarks, carried into its report and the cohort table.

``study`` (and each study of a ``batch``) writes one result folder per landmark analysis (``<series>_sax/``,
``<series>_lax/``: the files ``detect`` writes) and the study report ``study.json``, whose key values (RVI angles,
LV length and shortening, the long-axis vs SAX cross-checks) come from those landmarks. A reader then reviews the
flagged points of those folders - in the Slicer module (Export), in the browser (``cardiac-landmarks review
OUT``) or by script (:mod:`CardiacLandmarksLib.results`) - and every save rewrites the folder's files. Without
this module ``study.json`` and ``cohort.csv`` would keep the detection's values.

:func:`apply_review` reads every SAX and long-axis result folder of a study again (:func:`.results.read_result`:
point lists saved later, e.g. from Slicer, count), recomputes its key values by the rules that made them
(:func:`.tasks.sax_key_values`, :func:`.tasks.lax_key_values`: each value keeps its measurement's status, so a
value from corrected or confirmed points is ``ok`` and one from a point still low stays ``review``), the
cross-checks (:func:`.crosscheck.crosscheck`) and the study status (:func:`.analyse.study_status`), and rewrites
``study.json``; the file it replaces is kept as ``study.json.bak-<time>``. Function and perfusion values do not
come from these landmarks and are kept. ``summary.png`` is drawn again by the study report's renderer
(:func:`.report.render_summary_png`) from the reviewed landmarks, their images and the analyses' own pictures
(function overlay, perfusion bull's-eye). :func:`apply_review_batch` does this for every finished study of a batch
output folder and rewrites ``cohort.csv`` (and ``cohort.parquet``).

Landmarks and measurements: Xue et al., Radiology: AI 2021 (RVI angle, LV length, shortening); the reader's
review of the flagged points is the workflow that paper's confidence flags serve (Schobs et al., ISBI 2021).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from CardiacLandmarksLib.core.errors import CardiacLandmarksError, CorruptFileError, InputNotFoundError
from CardiacLandmarksLib.core.review import flag_counts
from CardiacLandmarksLib.io.atomic import atomic_write_bytes, atomic_write_text
from CardiacLandmarksLib.io.jsonsafe import dumps_strict
from CardiacLandmarksLib.io.outputs import record_edit
from CardiacLandmarksLib.study.analyse import cohort_values, study_status
from CardiacLandmarksLib.study.crosscheck import crosscheck
from CardiacLandmarksLib.study.report import render_summary_png
from CardiacLandmarksLib.study.tasks import KeyValue, lax_key_values, name_series_apart, sax_key_values

logger = logging.getLogger(__name__)

REPORT_FILE = "study.json"
SUMMARY_FILE = "summary.png"
_WORD = re.compile(r"\(mid, (\w+)\)")


@dataclass
class ReviewedAnalysis:
    """One landmark analysis read again: its task and series, and how many points the reader set.

    ``corrected``: points moved, placed or unset; ``confirmed``: points kept where the model put them."""

    task: str
    series: str
    corrected: int = 0
    confirmed: int = 0


@dataclass
class ReviewUpdate:
    """What :func:`apply_review` did to one study.

    Attributes:
        study_dir: the study output folder.
        status_before, status_after: the study status before and after (``ok`` | ``review`` | ``n/a``).
        analyses: the SAX and long-axis analyses read again.
        changes: ``(name, before, after)`` of every key value whose value or status changed (``study.json``
            dicts; None where the value did not exist).
        cohort: the key-value columns of the study's cohort row, and ``study_status``
            (:func:`.analyse.cohort_values`).
        written: ``study.json`` and ``summary.png`` (the summary is left out when it could not be drawn: the
            error is logged and ``study.json`` says so in its notes); when :attr:`unchanged`, ``summary.png`` alone
            if it had been deleted (drawn again from the kept report), else nothing.
        unchanged: the review gave the report it already holds (applied before, nothing saved since): no file was
            written and no backup made; :attr:`applied` says when the report was made.
        applied: when the review the report holds was applied (``study.json``'s ``review.applied``).
    """

    study_dir: Path
    status_before: str
    status_after: str
    analyses: list[ReviewedAnalysis] = field(default_factory=list)
    changes: list[tuple[str, dict | None, dict | None]] = field(default_factory=list)
    cohort: dict = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)
    unchanged: bool = False
    applied: str = ""

    @property
    def n_set(self) -> int:
        """Points the reader corrected or confirmed, over the study."""
        return sum(a.corrected + a.confirmed for a in self.analyses)


def _read_report(study_dir: Path) -> dict:
    path = study_dir / REPORT_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputNotFoundError(f"{path} not found: not a study output folder (cardiac-landmarks study -o)") from exc
    except ValueError as exc:
        raise CorruptFileError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != "cardiac-landmarks study report":
        raise CorruptFileError(f"{path} is not a cardiac-landmarks study report")
    return doc


def _result_folder(study_dir: Path, analysis: dict) -> Path:
    """The result folder of an analysis: the folder of its ``landmarks.json`` among its files."""
    for f in analysis.get("files") or []:
        if Path(f).name == "landmarks.json":
            return study_dir / Path(f).parent
    return study_dir / f"{analysis['series']}_{analysis['task']}"


def apply_review(study_dir: str | Path) -> ReviewUpdate:
    """Bring a study report up to date with the reader's review of its landmark result folders (module docstring).

    Args:
        study_dir: a ``cardiac-landmarks study`` output folder (``study.json`` and the analyses' folders).

    Returns:
        :class:`ReviewUpdate`. ``study.json`` is rewritten (atomically, the old one kept as ``.bak-<time>``) and
        ``summary.png`` drawn again, unless the report would come out as it is (the review applied before and
        nothing saved since: :attr:`ReviewUpdate.unchanged`; a batch applied again makes no backup of each study).
        The point files a reader saved get their new checksums in ``run.json`` either way.

    Raises:
        InputNotFoundError: no ``study.json``, a result folder or an image of an analysis is missing.
        CorruptFileError: ``study.json`` or a ``landmarks.json`` is not what its name says.
        SeriesMismatchError: an analysis' image is not the one its landmarks were detected on.
        OutputPathError: another run (a ``study`` re-run) is writing into the folder.
        Nothing is written when an error is raised.
    """
    from CardiacLandmarksLib.io.outputs import folder_held

    study_dir = Path(study_dir)
    doc = _read_report(study_dir)
    with folder_held(study_dir, "apply-review"):  # not while a study is run again into the folder
        return _apply_review(study_dir, doc)


def _apply_review(study_dir: Path, doc: dict) -> ReviewUpdate:
    """:func:`apply_review`'s work on the read ``study.json``, with the folder held."""
    from CardiacLandmarksLib.results import load_source, read_result

    original = json.loads(json.dumps(doc))  # the report as read, to tell whether the review changes it
    before = {kv["name"]: kv for kv in doc.get("key_values", [])}
    status_before = str(doc.get("status", "n/a"))
    update = ReviewUpdate(study_dir, status_before, status_before)
    read: dict[str, tuple[str, object, object]] = {}  # series key -> (task, landmarks, series)
    derived: list[tuple[dict, list[KeyValue]]] = []  # each re-derived analysis with its values
    for a in doc.get("analyses", []):
        if not a.get("ok") or a.get("task") not in ("sax", "lax"):
            continue
        folder = _result_folder(study_dir, a)
        lmset = read_result(folder, point_lists="ignore")
        series = load_source(lmset, folder, study_dir)
        lmset = read_result(folder, series)  # again, with the point lists saved after it (e.g. from Slicer)
        if a["task"] == "sax":
            word = next((m.group(1) for v in a.get("values", []) if (m := _WORD.search(v.get("name", "")))), "ED")
            values = sax_key_values(lmset, word)
        else:
            values = lax_key_values(lmset, lmset.view)
        counts = flag_counts(lmset.landmarks)  # the review's own count (core.review), as the panel and the app show it
        n_conf, n_corr = counts["confirmed"], counts["corrected"]
        derived.append((a, values))
        a["reviewed"] = {"corrected": n_corr, "confirmed": n_conf}
        update.analyses.append(ReviewedAnalysis(a["task"], a["series"], n_corr, n_conf))
        read[a["series"]] = (a["task"], lmset, series)
    ref = next((s.get("key") for s in doc.get("routing", {}).get("series", []) if s.get("sax_reference")), None)
    name_series_apart([(a["series"], values) for a, values in derived], first=ref)  # as the study run named them
    for a, values in derived:
        a["values"] = [v.to_dict() for v in values]
    notes = [n for n in doc.get("notes", []) if not n.startswith(_SUMMARY_FAILED)]
    if ref in read and read[ref][0] == "sax":
        _, sax_lmset, sax_series = read[ref]
        checks, geometry = [], {}
        notes = [n for n in notes if not n.startswith("cross-check ")]
        for key, (task, lmset, series) in read.items():
            if task != "lax":
                continue
            values, geo = crosscheck(sax_series, sax_lmset, series, lmset, key)
            if values:
                checks += [v.to_dict() for v in values]
                geometry[key] = geo
            else:
                notes.append(f"cross-check {key}: mitral points, apex or SAX C-LV not found")
        doc["crosschecks"], doc["crosscheck_geometry"] = checks, geometry
    kvs = [KeyValue.from_dict(v) for a in doc.get("analyses", []) if a.get("ok") for v in a.get("values", [])]
    kvs += [KeyValue.from_dict(c) for c in doc.get("crosschecks", [])]
    doc["key_values"] = [kv.to_dict() for kv in kvs]
    doc["status"] = update.status_after = study_status(bool(doc.get("analyses")), list(doc.get("errors", [])), kvs)
    doc["notes"] = notes
    doc["review"] = {"applied": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "analyses": [{"task": a.task, "series": a.series, "corrected": a.corrected,
                                   "confirmed": a.confirmed} for a in update.analyses],
                     "status_before": status_before}
    after = {kv["name"]: kv for kv in doc["key_values"]}
    for name in [*before, *(n for n in after if n not in before)]:
        b, c = before.get(name), after.get(name)
        if b is None or c is None or b.get("value") != c.get("value") or b.get("status") != c.get("status"):
            update.changes.append((name, b, c))
    update.cohort = {**cohort_values(kvs), "study_status": update.status_after, "reader_points": update.n_set}
    # the study's run.json (written by 'study') lists every file with its checksum: bring it up to date with the
    # reviewed analyses' files (saved by the reader) and the new report, and record the edit
    reviewed = [study_dir / f for a in doc.get("analyses", []) if a.get("ok") and a.get("task") in ("sax", "lax")
                for f in a.get("files") or [] if (study_dir / f).is_file()]
    by = "apply-review (a reader's review carried into the report)"
    if _same_report(original, doc):  # applied before, nothing saved since: keep the report, make no backup
        update.unchanged, update.applied = True, str(original["review"].get("applied", ""))
        saved = _not_recorded(study_dir, reviewed)  # a point list saved again as it was: its new checksum
        if not (study_dir / SUMMARY_FILE).is_file():  # the picture deleted since: drawn again from the kept report
            png, _exc = _summary_png(study_dir, original, read, kvs, update.n_set)
            if png is not None:  # else the kept report stands without its picture
                update.written.append(atomic_write_bytes(study_dir / SUMMARY_FILE, png))
                saved.append(update.written[-1])
        if saved:
            record_edit(study_dir, saved, by)
        return update
    update.applied = doc["review"]["applied"]
    png, exc = _summary_png(study_dir, doc, read, kvs, update.n_set)
    if png is None:  # the picture must never lose the reviewed report
        notes.append(f"{_SUMMARY_FAILED} ({type(exc).__name__}: {exc}): it shows the values before the review")
    path = study_dir / REPORT_FILE
    update.written.append(atomic_write_text(path, dumps_strict(doc) + "\n", backup_existing=True))
    if png is not None:
        update.written.append(atomic_write_bytes(study_dir / SUMMARY_FILE, png))
    record_edit(study_dir, [*reviewed, *update.written], by)
    return update


def _summary_png(study_dir: Path, doc: dict, read, kvs, n_set: int) -> tuple[bytes | None, Exception | None]:
    """``summary.png`` of the report ``doc`` (:func:`.report.render_summary_png`), or ``(None, the error)`` when it
    cannot be drawn (logged): a report is never lost for its picture."""
    try:
        return render_summary_png(_ReviewedStudy(study_dir, doc, read, kvs, n_set), study_dir), None
    except Exception as exc:  # noqa: BLE001 - any failure of the drawing
        logger.exception("summary picture of %s failed", study_dir)
        return None, exc


def _same_report(original: dict, doc: dict) -> bool:
    """Whether the report ``doc`` (a review just applied) is the one read, ``original``, but for when the review was
    applied and the status it found (the status the last review gave): only a report that already holds an applied
    review can be (a first review adds its entry)."""
    if "review" not in original:
        return False

    def content(d: dict) -> str:
        review = {k: v for k, v in d["review"].items() if k not in ("applied", "status_before")}
        return json.dumps({**d, "review": review}, sort_keys=True, default=str)

    return content(original) == content(json.loads(dumps_strict(doc)))


def _not_recorded(study_dir: Path, files: list[Path]) -> list[Path]:
    """Those of ``files`` whose size or SHA-256 is not what the folder's ``run.json`` lists for them (a file saved
    since, or not listed); none when there is no readable ``run.json``."""
    from CardiacLandmarksLib.io.atomic import sha256_file
    from CardiacLandmarksLib.io.outputs import RUN_FILE

    try:
        listed = {e["name"]: e for e in json.loads((study_dir / RUN_FILE).read_text(encoding="utf-8"))["files"]}
    except (OSError, ValueError, TypeError, KeyError):
        return []
    out = []
    for f in files:
        e = listed.get(f.resolve().relative_to(study_dir.resolve()).as_posix())
        if e is None or e.get("size") != f.stat().st_size or e.get("sha256") != sha256_file(f):
            out.append(f)
    return out


_SUMMARY_FAILED = "summary.png could not be drawn again after the review"


@dataclass
class _Entry:
    """A routed series as the summary renderer reads it: key, view, SAX reference, and its image."""

    key: str
    view: str
    is_sax_reference: bool
    series: object = None

    def load(self):
        if self.series is None:
            raise InputNotFoundError(f"{self.key}: no image loaded for the summary")
        return self.series


@dataclass
class _Routing:
    name: str
    series: list[_Entry]
    table_text: str

    def table(self) -> str:
        return self.table_text


class _SavedFunction:
    """A function analysis read back from its result folder, as much of
    :class:`CardiacLandmarksLib.function.pipeline.FunctionResult` as the summary's function panel reads
    (:func:`.report._function_panel`: the ED and ES images and labels ``[k, j, i]``, the spacing and LV EF with its
    status), so the redrawn summary shows the same panel as the study run's, not the analysis' every-slice picture."""

    def __init__(self, images: list, labels: list, doc: dict):
        from types import SimpleNamespace

        self._images, self._labels, self._doc = images, labels, doc
        self.mode, self.ed_phase, self.es_phase = str(doc["mode"]), int(doc["ed_phase"]), int(doc["es_phase"])
        lv = doc.get("LV", {})
        self.values = {"LV": {"EF_pct": SimpleNamespace(value=lv.get("EF_pct"),
                                                        status=lv.get("status", {}).get("EF_pct", "n/a"))}}

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(x) for x in self._images[0].spacing)

    @property
    def series(self) -> list:
        """The input series (their geometry gives the panel's orientation compass)."""
        return list(self._images)

    def ed_image(self):
        return self._images[0].pixels[self.ed_phase]

    def es_image(self):
        return self._images[0].pixels[self.es_phase] if self.mode == "cine" else self._images[1].pixels[0]

    def ed_labels(self):
        return self._labels[0].pixels[self.ed_phase]

    def es_labels(self):
        return self._labels[0].pixels[self.es_phase] if self.mode == "cine" else self._labels[1].pixels[0]


def _saved_function(study_dir: Path, analysis: dict) -> _SavedFunction | None:
    """The function analysis of ``study.json``'s entry ``analysis`` read from its folder (``function.json``, its
    input images and its ``*_segmentation.nii.gz``), or None when any of it cannot be read (the renderer then shows
    the analysis' own picture)."""
    from CardiacLandmarksLib.io.load import load_series
    from CardiacLandmarksLib.results.folders import load_recorded

    jsons = [Path(f) for f in analysis.get("files") or [] if Path(f).name == "function.json"]
    folder = study_dir / (jsons[0].parent if jsons else f"{analysis['series']}_function")
    try:
        doc = json.loads((folder / "function.json").read_text(encoding="utf-8"))
        uids = doc.get("input_series_uids") or [[] for _ in doc["inputs"]]  # none in files of older versions
        images = [load_recorded(p, folder, study_dir, series_uids=u) for p, u in zip(doc["inputs"], uids)]
        labels = [load_series(folder / f) for f in doc["files"]["segmentation"]]
        if [im.pixels.shape for im in images] != [lab.pixels.shape for lab in labels]:
            raise ValueError("the segmentation is not on its image's grid")
        return _SavedFunction(images, labels, doc)
    except Exception as exc:  # noqa: BLE001 - the panel falls back on the analysis' own picture
        logger.info("function panel of %s from its own picture: %s", folder, exc)
        return None


class _ReviewedStudy:
    """The reviewed ``study.json`` as :func:`.report.render_summary_png` reads a :class:`.analyse.StudyResult`: the
    routing table of ``routing.txt``, the outcomes with the reviewed landmarks of the SAX and long-axis analyses (the
    others with their own pictures, as the renderer draws a function result that is gone), the key values and the
    cross-check geometry."""

    def __init__(self, study_dir: Path, doc: dict, read: dict, key_values: list[KeyValue], reader_points: int = 0):
        from CardiacLandmarksLib.study.tasks import TaskOutcome

        try:  # routing.txt is the table, then the routing notes; the page shows the table (.report.write_study_report)
            lines = (study_dir / "routing.txt").read_text(encoding="utf-8").rstrip("\n").splitlines()
            table = "\n".join(line for line in lines if not line.startswith("note: "))
        except OSError:
            table = ""
        entries = [_Entry(str(s.get("key")), str(s.get("view", "-")), bool(s.get("sax_reference")),
                          read.get(s.get("key"), (None, None, None))[2])
                   for s in doc.get("routing", {}).get("series", [])]
        self.routing = _Routing(str(doc.get("name", study_dir.name)), entries, table)
        self.name = str(doc.get("name", ""))
        def result(a: dict):
            if not a.get("ok"):
                return None
            if a["task"] in ("sax", "lax"):
                return read[a["series"]][1] if a["series"] in read else None
            if a["task"] == "function":
                return _saved_function(study_dir, a)
            return None

        self.outcomes = [TaskOutcome(a["task"], a["series"], bool(a.get("ok")), str(a.get("error", "")),
                                     files=list(a.get("files") or []), result=result(a))
                         for a in doc.get("analyses", [])]
        self.crosscheck_geometry = dict(doc.get("crosscheck_geometry", {}))
        self.status = str(doc.get("status", "n/a"))
        self.errors = list(doc.get("errors", []))
        self._key_values = key_values
        self.reader_points = reader_points

    def key_values(self) -> list[KeyValue]:
        return list(self._key_values)


def apply_review_batch(out: str | Path, progress=None) -> tuple[list[ReviewUpdate], dict[str, str]]:
    """:func:`apply_review` for every finished study of a ``batch`` output folder, then ``cohort.csv`` again.

    Each study's record in ``batch.sqlite`` gets the reviewed key values and study status (its timing is kept);
    ``cohort.csv`` keeps its row order. A study whose review cannot be applied (a result folder or image gone) is
    reported in the returned errors and keeps its values; the others go on.

    Args:
        out: the batch output folder (``batch.sqlite``, ``studies/<id>/``, ``cohort.csv``).
        progress: optional ``progress(study_id)`` before each study.

    Returns:
        ``(updates, errors)``: one :class:`ReviewUpdate` per study updated, ``{study_id: error}`` for the others.

    Raises:
        InputNotFoundError: ``out`` holds no ``batch.sqlite``.
        OutputPathError: another run (a batch) is writing into ``out`` (its studies and records would change under
            the review).
    """
    from CardiacLandmarksLib.batch.engine import STATE_FILE
    from CardiacLandmarksLib.io.outputs import folder_held

    out = Path(out)
    if not (out / STATE_FILE).exists():
        raise InputNotFoundError(f"{out / STATE_FILE} not found: not a batch output folder (cardiac-landmarks batch -o)")
    with folder_held(out, "apply-review"):  # not while a batch runs in the folder
        return _apply_review_batch(out, progress)


def _apply_review_batch(out: Path, progress) -> tuple[list[ReviewUpdate], dict[str, str]]:
    """The body of :func:`apply_review_batch`, run while it holds the folder."""
    import csv

    from CardiacLandmarksLib.batch.engine import STATE_FILE, write_cohort
    from CardiacLandmarksLib.batch.state import BatchState

    updates, errors = [], {}
    with BatchState(out / STATE_FILE) as state:
        records = state.records()
        for rec in records:
            if rec.get("status") != "done":
                continue
            if progress is not None:
                progress(rec["study_id"])
            try:
                upd = apply_review(out / rec.get("output", f"studies/{rec['study_id']}"))
            except CardiacLandmarksError as exc:
                errors[rec["study_id"]] = f"{type(exc).__name__}: {exc}"
                continue
            rec["row"] = {**(rec.get("row") or {}), **upd.cohort}
            rec["reviewed"] = {"applied": upd.applied, "points": upd.n_set}  # as its study.json says
            state.update_record(rec)
            updates.append(upd)
    order: list[str] = []
    try:
        with open(out / "cohort.csv", newline="", encoding="utf-8") as fh:
            order = [r["study_id"] for r in csv.DictReader(fh)]
    except (OSError, KeyError, csv.Error):
        pass
    rank = {sid: n for n, sid in enumerate(order)}
    records.sort(key=lambda r: (rank.get(r["study_id"], len(rank)), r["study_id"]))
    write_cohort(records, out)
    return updates, errors
