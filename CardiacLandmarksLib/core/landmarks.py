"""Landmark definitions per view and the LandmarkSet that every output is written from.

Names follow Xue et al., "Landmark detection in cardiac MRI by using a convolutional
neural network", Radiology: AI 2021: SAX ``A-RVI`` (anterior RV insertion), ``I-RVI``
(inferior RV insertion), ``C-LV`` (LV centre); long-axis mitral points ``A-P``/``I-P``
(2CH), ``IL-P``/``AS-P`` (3CH), ``AL-P``/``IS-P`` (4CH) and ``APEX``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

LANDMARKS_BY_VIEW: dict[str, tuple[str, ...]] = {
    "sax": ("A-RVI", "I-RVI", "C-LV"),
    "2ch": ("A-P", "I-P", "APEX"),
    "3ch": ("IL-P", "AS-P", "APEX"),
    "4ch": ("AL-P", "IS-P", "APEX"),
}

FLAGS = ("high", "low", "absent")


@dataclass
class Landmark:
    """One landmark on one slice and phase.

    Attributes:
        name: landmark name (see :data:`LANDMARKS_BY_VIEW`).
        slice: slice index k in the input series.
        phase: phase index t (0 for single-phase input).
        found: False when the model says the landmark is not present on this slice.
        position: LPS mm ``(x, y, z)``; NaN when not found.
        ijk: continuous voxel index ``(i, j, k)`` in the input image; NaN when not found.
        confidence: in [0, 1]; 0 when not found.
        flag: ``"high"``, ``"low"`` or ``"absent"``.
        corrected: True when a user placed, moved, unset or confirmed the point (the confidence then is 1, or 0
            when unset): a reader's point.
        confirmed: True when a reader looked at the point and kept it where the model put it (``corrected`` is
            True too: a confirmed low point is trusted as a corrected one, Xue et al. 2021's reader review).
        doubt: why a found point is flagged low, in words (e.g. the detector's estimates disagree by 5.3 mm), or
            why an absent one should be checked (the network nearly found it:
            :func:`CardiacLandmarksLib.sax.pipeline.doubt_absences`); empty for high and corrected points, for
            clear absences, and where the detector gives no reason.
    """

    name: str
    slice: int
    phase: int
    found: bool
    position: np.ndarray
    ijk: np.ndarray
    confidence: float
    flag: str
    corrected: bool = False
    doubt: str = ""
    confirmed: bool = False

    def __repr__(self) -> str:
        """One line for a console, e.g. ``Landmark('A-RVI', slice 5, phase 0: LPS (-12.3, 40.1, 88.0) mm, low 0.41:
        the detector's estimates disagree by 5.3 mm)``; ``absent`` for a landmark not found (with its doubt when the
        network nearly found it)."""
        where = f"Landmark({self.name!r}, slice {self.slice}, phase {self.phase}: "
        if not self.found:
            return where + ("absent, unset by a reader)" if self.corrected else
                            f"absent: {self.doubt})" if self.doubt else "absent)")
        pos = ", ".join(f"{float(x):.1f}" for x in np.asarray(self.position, float).ravel())
        trust = f"{self.flag} {float(self.confidence):.2f}"
        if self.confirmed:
            trust += ", confirmed by a reader"
        elif self.corrected:
            trust += ", placed by a reader"
        return where + f"LPS ({pos}) mm, {trust}" + (f": {self.doubt}" if self.doubt else "") + ")"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["position"] = [float(x) for x in np.asarray(self.position, float)] if self.found else None
        d["ijk"] = [float(x) for x in np.asarray(self.ijk, float)] if self.found else None
        d["confidence"] = float(self.confidence)
        d["found"] = bool(self.found)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Landmark:
        nan3 = np.full(3, np.nan)
        return cls(
            name=d["name"],
            slice=int(d["slice"]),
            phase=int(d.get("phase", 0)),
            found=bool(d["found"]),
            position=np.asarray(d["position"], float) if d.get("position") is not None else nan3.copy(),
            ijk=np.asarray(d["ijk"], float) if d.get("ijk") is not None else nan3.copy(),
            confidence=float(d.get("confidence", 0.0)),
            flag=d.get("flag", "high" if d["found"] else "absent"),
            corrected=bool(d.get("corrected", False)),
            doubt=str(d.get("doubt") or ""),
            confirmed=bool(d.get("confirmed", False)),
        )


#: decimals shown per unit where one decimal would hide the value: perfusion ratios (upslope index 0.1-0.7,
#: MPRI about 1-3) and MBF (ml/min/g, about 0.5-4); every other unit (deg, mm, ml, %, g) shows one
_DECIMALS = {"ratio": 2, "ml/min/g": 2}


def value_decimals(unit: str) -> int:
    """Decimals a key value of ``unit`` is shown with (files keep 3: :meth:`CardiacLandmarksLib.study.tasks.KeyValue.to_dict`)."""
    return _DECIMALS.get(unit, 1)


def format_value(value: float | None, unit: str) -> str:
    """``"-"`` for a missing or non-finite value, else ``"<value> <unit>"`` at :func:`value_decimals`: how a value is
    shown to a reader (study key values, the function console, the perfusion result at a console)."""
    if value is None or not np.isfinite(value):
        return "-"
    return f"{float(value):.{value_decimals(unit)}f} {unit}".strip()


def past_limit(value: float, limit: float) -> str:
    """``value`` as text for a doubt saying it passed ``limit``, with as few decimals (1 to 3) as show it past the
    limit: 6.03 against a limit of 6 reads ``6.03``, not ``6.0``, which beside "(limit 6 mm)" a reader takes for
    within it. Every doubt of the form "x mm ... (limit y mm)" uses it (the SAX stack and confidence gates, the
    long-axis test-time spread). A value at or below the limit keeps one decimal."""
    text = f"{value:.1f}"
    for decimals in (2, 3):
        if value <= limit or float(text) > limit:
            break
        text = f"{value:.{decimals}f}"
    return text


def status_line(status: str, text: str, check: str = "") -> str:
    """A value's line as every front end prints it: ``"[review] LV EF: 55.2 %  (check LV myocardium contours)"``,
    the status first (right-aligned in 6 characters, so values line up), then ``text``, then what to check when
    ``check`` is given (callers give it for a value that is not ok). Used by ``study``'s key values
    (:meth:`CardiacLandmarksLib.study.tasks.KeyValue.line`) and the ``perfusion`` command's global values."""
    return f"[{status:>6}] {text}" + (f"  ({check})" if check else "")


#: measurement statuses: ``ok`` = every source trusted; ``review`` = a value exists but a source is
#: doubtful (a low-confidence or absent landmark, a fallback, an implausible curve); ``n/a`` = no
#: usable value (not finite, or a source says there is nothing to measure, e.g. too few pixels)
STATUSES = ("ok", "review", "n/a")
#: source flags that make a measurement ``review`` / ``n/a`` (landmark flags and mask/curve flags)
REVIEW_FLAGS = ("low", "absent", "review")
NA_FLAGS = ("n/a",)
#: a :class:`Source`'s note for a landmark the reader moved, placed or unset / kept where the model put it
CORRECTED_NOTE = "corrected by user"
CONFIRMED_NOTE = "confirmed by user"
#: how :meth:`Measurement.sources_text` marks a reader's point
READER_NOTES = {CORRECTED_NOTE: "corrected", CONFIRMED_NOTE: "confirmed"}


@dataclass
class Source:
    """What a measurement was computed from, with its trust flag.

    Attributes:
        id: readable id, e.g. ``"A-RVI s3 p0"`` (landmark name, slice, phase) or
            ``"segment 3 stress pixels"`` (a mask or curve).
        flag: a landmark flag (``"high"``, ``"low"``, ``"absent"``) or a mask/curve flag
            (``"ok"``, ``"review"``, ``"n/a"``).
        confidence: the landmark confidence in [0, 1], or None for masks/curves.
        kind: ``"landmark"``, ``"mask"``, ``"curve"``, ``"anchor"``, ``"measurement"``, ``"input"`` (a warning on
            the input itself, e.g. a forced view: :func:`CardiacLandmarksLib.io.checks.mark_input_warnings`),
            ``"check"`` (a check on the value itself, e.g. a shortening outside its normal range:
            :func:`CardiacLandmarksLib.lax.measurements.shortening_range_source`).
        note: why the flag is what it is (e.g. ``"RV-enhancement fallback"``, ``"7 pixels"``).
    """

    id: str
    flag: str
    confidence: float | None = None
    kind: str = "landmark"
    note: str = ""

    @classmethod
    def of_landmark(cls, lm: Landmark) -> Source:
        """The source record of a landmark: ``"<name> s<slice> p<phase>"`` with its flag and confidence."""
        note = CONFIRMED_NOTE if lm.confirmed else CORRECTED_NOTE if lm.corrected else ""
        return cls(f"{lm.name} s{lm.slice} p{lm.phase}", lm.flag if lm.found else "absent",
                   float(lm.confidence), "landmark", note)

    @property
    def doubtful(self) -> bool:
        """True when this source makes a measurement ``review`` or ``n/a``."""
        return self.flag in REVIEW_FLAGS or self.flag in NA_FLAGS

    def caveat(self) -> str:
        """Short reader text, e.g. ``"A-RVI (low 0.03)"`` or ``"segment pixels (n/a: 7 pixels)"``."""
        label = self.id.split(" s", 1)[0] if self.kind == "landmark" else self.id
        if self.confidence is not None and self.kind in ("landmark", "anchor") and self.flag != "absent":
            return f"{label} ({self.flag} {self.confidence:.2f})"
        return f"{label} ({self.flag}{': ' + self.note if self.note else ''})"

    def to_dict(self) -> dict:
        d = {"id": self.id, "kind": self.kind, "flag": self.flag}
        if self.confidence is not None:
            d["confidence"] = round(float(self.confidence), 4)
        if self.note:
            d["note"] = self.note
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Source:
        c = d.get("confidence")
        return cls(str(d.get("id", "")), str(d.get("flag", "")), None if c is None else float(c),
                   str(d.get("kind", "landmark")), str(d.get("note", "")))


def measurement_status(value: float, sources=()) -> str:
    """The one rule that turns a value and the flags of its sources into a status.

    * ``"n/a"``: ``value`` is not finite, or a source is flagged ``"n/a"`` (e.g. too few pixels);
    * ``"review"``: a source is flagged ``"low"``, ``"absent"`` or ``"review"`` (a low-confidence or
      missing landmark, a fallback anchor, an implausible curve);
    * ``"ok"``: otherwise (all landmarks high or corrected by the user, masks and curves ok).

    Args:
        value: the measured value (any unit).
        sources: :class:`Source` objects (or their dicts).

    Returns:
        One of :data:`STATUSES`.
    """
    flags = [s.flag if isinstance(s, Source) else str(s.get("flag", "")) for s in sources]
    try:
        finite = math.isfinite(float(value))
    except (TypeError, ValueError):
        finite = False
    if not finite or any(f in NA_FLAGS for f in flags):
        return "n/a"
    if any(f in REVIEW_FLAGS for f in flags):
        return "review"
    return "ok"


#: id of the source that a warning on the whole input puts on every measurement of a set
#: (:func:`CardiacLandmarksLib.io.checks.mark_input_warnings`); other sources of kind ``"input"`` belong to one
#: measurement and are recomputed with it (the RV-side ``"orientation"`` source of an RVI angle)
INPUT_SOURCE_ID = "input"
#: short names of the input warnings (:mod:`CardiacLandmarksLib.io.checks`), found by a phrase of their text, for a
#: line that names a value's doubt briefly (:meth:`Measurement.caveat` with ``inputs_by_id``)
INPUT_WARNING_NAMES = (("incomplete series", "incomplete series"), ("forced by the user", "view forced"),
                       ("with a placeholder affine", "placeholder voxel size"),
                       ("between slices is the header's placeholder", "placeholder slice spacing"),
                       ("mm as given", "pixel size as given"))


def input_warning_names(note: str) -> str:
    """``"incomplete series"``, ``"view forced, placeholder voxel size"`` ...: the short names of the input warnings in
    an input source's note (warnings joined by ``"; "``), in their order; ``"warning"`` when none of
    :data:`INPUT_WARNING_NAMES` is in it."""
    text = note or ""
    found = sorted((text.find(phrase), name) for phrase, name in INPUT_WARNING_NAMES if phrase in text)
    return ", ".join(dict.fromkeys(name for _, name in found)) or "warning"


def input_sources(measurements) -> list[Source]:
    """The warnings on the whole input that a set's measurements carry (sources :data:`INPUT_SOURCE_ID`:
    :func:`CardiacLandmarksLib.io.checks.mark_input_warnings`, e.g. a forced view, an incomplete series, a voxel
    size that is a header's placeholder), once each, in order."""
    out: list[Source] = []
    for m in measurements:
        for src in m.sources:
            if src.id == INPUT_SOURCE_ID and src.kind == "input" and all(src.note != o.note for o in out):
                out.append(src)
    return out


def add_input_sources(measurements, sources) -> list:
    """Give every measurement the input warnings ``sources`` (:func:`input_sources` of the measurements they
    replace), in place, and return the list: each status is then at best ``review``.

    Measurements recomputed after a reader's correction (the review app, the Slicer module, a carried review,
    re-tracking) were computed from the landmarks alone, so an input warning of the detection was dropped and a
    value could turn ``ok`` though nothing about the input had changed: confirming the points of an EMIDEC stack
    with a placeholder voxel size made its RVI angles ``ok``. A reader vouches for the points, not for the file.
    """
    for m in measurements:
        for src in sources:
            if not any(x.id == src.id and x.kind == "input" and x.note == src.note for x in m.sources):
                m.sources.append(Source(src.id, src.flag, src.confidence, src.kind, src.note))
                if m.status == "ok":
                    m.status = "review"
    return measurements


@dataclass
class Measurement:
    """A scalar result with its trust.

    Attributes:
        name: e.g. ``"RVI angle"``.
        slice, phase: where it was measured (None for series-level results).
        value: the value (NaN when not measured).
        unit: e.g. ``"deg"``, ``"mm"``, ``"%"``.
        status: ``"ok"``, ``"review"`` or ``"n/a"``; default (None) = :func:`measurement_status`
            of ``value`` and ``sources``.
        sources: the landmarks / masks / curves it was computed from, with their flags.
    """

    name: str
    slice: int | None
    phase: int | None
    value: float
    unit: str
    status: str | None = None
    sources: list[Source] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sources = [s if isinstance(s, Source) else Source.from_dict(s) for s in self.sources]
        if self.status is None:
            self.status = measurement_status(self.value, self.sources)
        elif self.status not in STATUSES:
            raise ValueError(f"measurement status must be one of {STATUSES}, not {self.status!r}")

    def caveat(self, inputs_by_id: bool = False) -> str:
        """Reader text for a value that is not ``ok``: ``"check A-RVI (low 0.03)"``; ``""`` when ok.

        Each doubtful landmark is named once, with its least confident point (a shortening uses the
        ED and the ES points of the same landmarks). ``inputs_by_id``: a warning on the input (a source of
        kind ``"input"``, e.g. a forced view) is named briefly (``"input (incomplete series)"``,
        :func:`input_warning_names`; another input check by its id, ``"orientation (review)"``), for a screen that
        prints the warning's text once elsewhere.
        """
        if self.status == "ok":
            return ""
        worst: dict[str, Source] = {}  # one entry per landmark name: the least confident of its points
        for src in self.sources:
            if not src.doubtful:
                continue
            key = src.caveat().split(" (", 1)[0]
            old = worst.get(key)
            if old is None or (src.confidence or 0.0) < (old.confidence or 0.0):
                worst[key] = src
        doubtful = [src.caveat() if not inputs_by_id or src.kind != "input"
                    else f"{src.id} ({input_warning_names(src.note)})" if src.id == INPUT_SOURCE_ID
                    else f"{src.id} ({src.flag})" for src in worst.values()]
        if not doubtful:
            return "not measured" if self.status == "n/a" else "check"
        return ("n/a: " if self.status == "n/a" else "check ") + ", ".join(doubtful)

    def __repr__(self) -> str:
        """One line for a console with the value's trust, e.g. ``Measurement('RVI angle', slice 5, phase 0:
        62.3 deg, review: check A-RVI (low 0.41))``; a value that is not ``ok`` is never shown alone."""
        where = ", ".join(f"{k} {v}" for k, v in (("slice", self.slice), ("phase", self.phase)) if v is not None)
        value = f"{self.value:.4g} {self.unit}".rstrip() if math.isfinite(self.value) else "no value"
        caveat = self.caveat()
        return (f"Measurement({self.name!r}{', ' + where if where else ''}: {value}, {self.status}"
                + (f": {caveat.removeprefix('n/a: ')}" if caveat else "") + ")")

    def sources_text(self) -> str:
        """Sources as one CSV cell: ``"A-RVI s3 p0:low:0.03; C-LV s3 p0:high:0.91"``; a reader's point ends in
        ``:corrected`` (moved, placed or unset) or ``:confirmed`` (kept where the model put it), e.g.
        ``"A-RVI s3 p0:high:1.00:confirmed"``, so a value that rests on a reader's point is told from one the
        model placed with the same flag."""
        parts = []
        for s in self.sources:
            txt = f"{s.id}:{s.flag}"
            if s.confidence is not None:
                txt += f":{s.confidence:.2f}"
            if s.kind == "landmark" and s.note in READER_NOTES:
                txt += f":{READER_NOTES[s.note]}"
            parts.append(txt)
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {"name": self.name, "slice": self.slice, "phase": self.phase,
                "value": None if not np.isfinite(self.value) else float(self.value), "unit": self.unit,
                "status": self.status, "sources": [s.to_dict() for s in self.sources]}

    @classmethod
    def from_dict(cls, d: dict) -> Measurement:
        """Read a measurement record; files written before statuses existed read as ``"review"``
        (their trust is unknown) unless the value is missing (``"n/a"``)."""
        value = float("nan") if d.get("value") is None else float(d["value"])
        status = d.get("status")
        if status is None:
            status = "review" if math.isfinite(value) else "n/a"
        return cls(d["name"], d.get("slice"), d.get("phase"), value, d.get("unit", ""), status,
                   [Source.from_dict(s) for s in d.get("sources") or []])


@dataclass
class LandmarkSet:
    """All landmarks of one series plus the measurements made on them.

    ``to_dict`` gives the ``landmarks.json`` layout documented in the README:
    ``{"source", "view", "model": {"name","version","sha256"}, "coordinate_system": "LPS",
    "units": "mm", "landmarks": [...], "measurements": [...]}``.
    """

    source: str
    view: str
    model: dict
    landmarks: list[Landmark] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    #: input warnings that apply to every value (forced view, incomplete series ...; see io.checks)
    warnings: list[str] = field(default_factory=list)
    #: the image files stacked as this result's phases when its series was assembled from several (the ED and ES
    #: files of a pair, :func:`CardiacLandmarksLib.io.load.pair_phases`); empty when ``source`` alone is the series
    source_files: list[str] = field(default_factory=list)
    #: the DICOM SeriesInstanceUIDs of the series when ``source`` is a DICOM folder (several for a stack assembled
    #: from per-slice series), so a study folder holding other series loads this one again
    source_series_uids: list[str] = field(default_factory=list)
    #: the in-plane pixel size (mm) a user gave for an image whose header lost it
    #: (:func:`CardiacLandmarksLib.io.checks.given_pixel_size`): the positions are in that scale, so the image is
    #: loaded with it again for a review (:func:`CardiacLandmarksLib.results.load_source`); None for a real header
    source_pixel_size_mm: float | None = None

    _index: dict | None = field(default=None, init=False, repr=False, compare=False)

    def get(self, name: str, slice: int, phase: int = 0) -> Landmark | None:
        """The landmark ``name`` on (slice, phase), or None.

        O(1) on average: a (name, slice, phase) -> list position index, checked against the list on
        every hit and rebuilt on a miss, so callers may append, sort, replace or rename entries freely.
        """
        key = (name, slice, phase)
        for attempt in range(2):
            if attempt or self._index is None:
                self._index = {}
                for pos, lm in enumerate(self.landmarks):
                    self._index.setdefault((lm.name, lm.slice, lm.phase), pos)
            pos = self._index.get(key)
            if pos is not None and pos < len(self.landmarks):
                lm = self.landmarks[pos]
                if (lm.name, lm.slice, lm.phase) == key:
                    return lm
        return None

    def __repr__(self) -> str:
        """One line for a console: what was found and how far it is trusted, not every point (a 10 x 25 stack has
        750), e.g. ``LandmarkSet(sax, sax_unet 1.7.0, 12 slices x 20 phases: 390 of 720 points found (250 high,
        140 low); 300 measurements (ok 180, review 110, n/a 10))``. The points are in ``landmarks``, the values in
        ``measurements``."""
        pairs = self.slices_phases()
        n_slices, n_phases = len({k for k, _ in pairs}), len({t for _, t in pairs})
        found = [lm for lm in self.landmarks if lm.found]
        flags = {f: sum(lm.flag == f for lm in found) for f in ("high", "low")}
        by_reader = sum(lm.corrected for lm in self.landmarks)
        points = (f"{len(found)} of {len(self.landmarks)} points found (high {flags['high']}, low {flags['low']}"
                  + (f", {by_reader} by a reader" if by_reader else "") + ")")
        statuses = ", ".join(f"{st} {n}" for st in STATUSES
                             if (n := sum(m.status == st for m in self.measurements)))
        model = " ".join(str(self.model.get(k)) for k in ("name", "version") if self.model.get(k))
        return (f"LandmarkSet({self.view}{', ' + model if model else ''}, {n_slices} slice(s) x {n_phases} phase(s): "
                f"{points}; {len(self.measurements)} measurement(s)" + (f" ({statuses})" if statuses else "")
                + (f"; {len(self.warnings)} input warning(s)" if self.warnings else "") + ")")

    def slices_phases(self) -> list[tuple[int, int]]:
        """Sorted distinct (slice, phase) pairs that have landmarks."""
        return sorted({(lm.slice, lm.phase) for lm in self.landmarks})

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "view": self.view,
            "model": dict(self.model),
            "coordinate_system": "LPS",
            "units": "mm",
            "landmarks": [lm.to_dict() for lm in self.landmarks],
            "measurements": [m.to_dict() for m in self.measurements],
            **({"warnings": list(self.warnings)} if self.warnings else {}),
            **({"source_files": [str(f) for f in self.source_files]} if self.source_files else {}),
            **({"source_series_uids": [str(u) for u in self.source_series_uids]} if self.source_series_uids else {}),
            **({"source_pixel_size_mm": float(self.source_pixel_size_mm)}
               if self.source_pixel_size_mm is not None else {}),
        }

    def with_source_of(self, other: LandmarkSet) -> LandmarkSet:
        """This set with ``other``'s record of where its image came from (``source_files``, ``source_series_uids``,
        ``source_pixel_size_mm``): what a copy made by tracking or a correction must keep. Returns self."""
        self.source_files, self.source_series_uids = list(other.source_files), list(other.source_series_uids)
        self.source_pixel_size_mm = other.source_pixel_size_mm
        return self

    @classmethod
    def source_of(cls, series) -> dict:
        """``source``, ``source_files``, ``source_series_uids`` and ``source_pixel_size_mm`` of a
        :class:`~.series.CMRSeries` as keyword arguments (an ED/ES pair's files,
        :func:`CardiacLandmarksLib.io.load.pair_phases`; a DICOM series' UIDs; a pixel size the user gave)."""
        meta = series.metadata or {}
        uids = meta.get("series_uids") or ([meta["series_uid"]] if meta.get("series_uid") else [])
        given = meta.get("pixel_size_given_mm")
        return {"source": series.source, "source_files": [str(f) for f in meta.get("paired_from") or []],
                "source_series_uids": [str(u) for u in uids],
                "source_pixel_size_mm": None if given is None else float(given)}

    @classmethod
    def from_dict(cls, d: dict) -> LandmarkSet:
        if d.get("coordinate_system", "LPS") != "LPS":
            raise ValueError(f"landmarks file uses coordinate system {d.get('coordinate_system')!r}; expected 'LPS'")
        return cls(
            source=d.get("source", ""),
            view=d.get("view", "sax"),
            model=d.get("model", {}),
            landmarks=[Landmark.from_dict(x) for x in d.get("landmarks", [])],
            measurements=[Measurement.from_dict(m) for m in d.get("measurements", [])],
            warnings=list(d.get("warnings", [])),
            source_files=[str(f) for f in d.get("source_files") or []],
            source_series_uids=[str(u) for u in d.get("source_series_uids") or []],
            source_pixel_size_mm=(None if d.get("source_pixel_size_mm") is None
                                  else float(d["source_pixel_size_mm"])),
        )
