"""Route every series of a study to the analysis that applies.

A study is a DICOM folder (any number of series, sub-folders included) or a folder of image
files with real geometry (NIfTI, NRRD, MHA: one series per file), or an explicit list of
files (a manifest row). :func:`route_study` returns a :class:`StudyRouting`: one
:class:`RoutedSeries` per series (or per assembled group), with its view, its sequence, the
analyses to run and the reason, and the evidence used.

**Sequence** (from tags first; keywords via :func:`CardiacLandmarksLib.io.common.guess_sequence`):

* ``localiser``: description ``loc``/``scout``/``survey``/``pilot``/``localizer``, or several
  orientations in one series (a tri-plane scout);
* ``label``: an image file named ``*_gt``, ``*_seg``, ``seg*_``, ``*_segmentation``, ``*_label(s)``,
  ``*_mask``, ``*_manual``, ``*_sectors``, or whose pixels are a label mask
  (:func:`CardiacLandmarksLib.io.checks.label_values`: at most 10 integer values), a segmentation, not an image;
* ``t1``: keywords (MOLLI, ShMOLLI, SASHA, T1 map), ``ImageType`` holding ``T1`` or ``MAP``, or
  one slice imaged at several inversion times;
* ``lge``: keywords (LGE, PSIR, DE, delayed ...), or a single-phase image with an
  InversionTime (an inversion-recovery scan that is not a cine);
* ``perfusion``: keywords (perf, first pass, stress, rest ...), or >= 20 frames over <= 4
  slices spanning more than 3 s of TriggerTime / AcquisitionTime (one image per heartbeat), or, for
  an image file of unknown timing, >= 20 frames whose last frame differs from the first
  (:func:`CardiacLandmarksLib.io.common.first_last_correlation` < 0.95: not one cardiac cycle);
* ``cine``: keywords (cine, TrueFISP/FIESTA/SSFP ...), or >= 10 phases within 3 s, or an image file
  of unknown timing whose last frame is nearly its first (one cardiac cycle, e.g. the UK Biobank
  50-frame long-axis cines), or the
  ED and ES frames of a cine stored as two files (``*_ED`` / ``*_ES`` of identical geometry:
  paired into one two-phase series, phase 0 = ED, phase 1 = ES).

**View**, relative to the study's own SAX stack first: the reference SAX stack is the cine
(or ED/ES pair) with the most parallel slices (>= 3) that no description names a long-axis
view, an original series before a DERIVED copy of the same size (:attr:`RoutedSeries.derived`; such a copy of the
reference's grid is listed, not analysed). For each other series, the angle between its plane normal and the stack's normal:
<= :data:`SAX_MAX_DEG` (30) -> a short-axis plane; >= :data:`LAX_MIN_DEG` (60) -> a plane that
contains the LV long axis (long axis). This uses only the relative geometry of the study, so
it also holds for files whose absolute axes are mis-labelled (the M&Ms-2 NIfTI copies read
with x and y negated; both planes are negated alike). The chamber (2CH/3CH/4CH) comes from the
description when it names one; otherwise it is decided after the SAX landmarks are known
(:func:`refine_lax_chamber`): the line where the long-axis plane cuts the SAX mid slice is
compared with the LV -> RV direction (C-LV to the middle of the two RV insertions): within
30 degrees -> 4CH (the plane crosses both ventricles), beyond 60 -> 2CH, between -> 3CH
(approximate; reported as geometry evidence). Without a SAX stack the absolute orientation
rule of :func:`CardiacLandmarksLib.io.view.recognise_view` is used.

**Analyses**: SAX cine stack or ED/ES pair -> ``sax`` (landmarks, RVI angles) and
``function`` (LV/RV volumes, EF; when the ``function`` package is present); short-axis LGE ->
``sax`` (landmarks and RVI angles with the LGE model; no scar quantification); long-axis cine
(or a long-axis ED/ES pair) -> ``lax`` (mitral points, apex, LV length, shortening) when the catalogue has a
landmark model for its chamber view (:func:`lax_model_views`; a view not yet decided uses the 4CH model);
first-pass perfusion -> ``perfusion`` (one analysis per slice, AHA segments). Single
long-axis frames of a plane that also has a cine are covered by the cine. Long-axis LGE, T1 maps,
localisers, labels, unknown sequences, non-MR objects and damaged series are listed with the
reason and not analysed.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.core.errors import CardiacLandmarksError, InputNotFoundError, NoDicomError
from CardiacLandmarksLib.core.series import GIVEN_SEQUENCES, SEQUENCES, CMRSeries
from CardiacLandmarksLib.io import dicom_study as io_dicom_study
from CardiacLandmarksLib.io import image as io_image
from CardiacLandmarksLib.io.archive import Unpacked, archive_stem, unpack_inputs
from CardiacLandmarksLib.io.checks import given_pixel_size, label_values
from CardiacLandmarksLib.io.common import guess_sequence, guess_view, lge_by_inversion
from CardiacLandmarksLib.io.load import pair_phases, same_grid
from CardiacLandmarksLib.io.outputs import is_result_folder, not_an_input_text
from CardiacLandmarksLib.io.view import recognise_view

logger = logging.getLogger(__name__)

SAX_MAX_DEG = 30.0
LAX_MIN_DEG = 60.0
FOUR_CH_MAX_DEG = 30.0
TWO_CH_MIN_DEG = 60.0
MIN_SAX_SLICES = 3

_LOCALISER = re.compile(r"(\bloc\b|locali[sz]er|scout|survey|pilot|\bloc_|_loc\b|tripilot)")
_LABEL_NAME = re.compile(r"(_gt|_seg\d*|_segmentation|^seg\d*|^segmentation|_labels?|_mask|_manual|_sectors)(\b|_|$)")
_T1 = re.compile(r"(molli|sasha|t1 ?map|\bt1\b|native t1)")
_LAX_WORDS = re.compile(r"\b(la|lax|long ?axis)\b")
_EDES = re.compile(r"(?<![a-z0-9])(ed|es)(?![a-z0-9])")


def function_available() -> bool:
    """True when the LV/RV function package (``CardiacLandmarksLib.function``) is installed."""
    return (Path(__file__).resolve().parents[1] / "function" / "__init__.py").exists()


def fit_text(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in an ellipsis when cut (the routing table's columns, the summary
    page's lines)."""
    return text if len(text) <= width else text[: width - 1] + "\u2026"


@dataclass
class RoutedSeries:
    """One series of a study (or one group of files/series assembled into a series).

    Attributes:
        key: unique short name (file stem or ``s<SeriesNumber>``), used for output folders.
        label: human-readable name (description, series number, file names).
        source: the study-relative source (file name(s), or series UIDs).
        n_slices, n_phases: geometry of the series (0 when unknown).
        view: ``"sax"``, ``"2ch"``, ``"3ch"``, ``"4ch"``, ``"lax"`` (long axis, chamber not
            decided), ``"unknown"`` or ``"-"`` (not an image).
        sequence: ``"cine"``, ``"perfusion"``, ``"lge"``, ``"t1"``, ``"localiser"``,
            ``"label"``, ``"unknown"`` or ``"-"``.
        analyses: analyses to run (``"sax"``, ``"function"``, ``"lax"``, ``"perfusion"``);
            empty when the series is listed only.
        reason: why these analyses, or why none.
        evidence: the facts the decision used (tags, angles, names).
        angle_to_sax_deg: angle between this plane's normal and the SAX stack normal.
        is_sax_reference: the study's reference SAX stack.
        phase_labels: e.g. ``["ED", "ES"]`` for a paired series, else None.
        file: the file of a curve entry (``sequence == "curve"``), else None.
        samples: a curve's number of samples (0 for images).
        aif: for a perfusion series, the key of the curve entry paired with it as its arterial input function
            (:func:`pair_aifs`), else None.
        pixel_size_mm: a user-given in-plane pixel size, set on load when the header lost its own
            (:func:`CardiacLandmarksLib.io.checks.given_pixel_size`), else None.
        patient_id, study_date: the DICOM PatientID and StudyDate of the series ("" for image files or when absent).
        n_orientations: plane orientations in the series (3 in a tri-plane localiser, which then has no view).
        notes: what the reader says of this series when it loads it (a per-slice stack's slice acquired twice or
            with fewer phases); also in :attr:`StudyRouting.notes`, there after the series' label.
        derived: the DICOM ImageType says DERIVED (a scanner's inline-processed or reformatted copy, e.g. a cine
            with the inline ventricular-function contours drawn in): never the reference SAX stack when an original
            stack ties with it, and a derived copy of the reference stack's grid, or of an original long-axis cine
            (the same plane and phases), is listed, not analysed again.
        series_number: the DICOM SeriesNumber (a per-slice stack's highest), None for image files or when absent;
            protocol: its SeriesDescription without digits, separators and case
            (:func:`CardiacLandmarksLib.io.dicom_study.description_stem`), "" for image files. A SAX stack of the
            reference's protocol, plane and size acquired again later is the reference, the earlier one listed;
            a long-axis cine of one protocol acquired again on the same plane (``height_mm``) and with the same
            phases: the later is analysed, the earlier listed.
        height_mm: a single-slice DICOM series' position along its plane normal (mm), else None.
    """

    key: str
    label: str
    source: str
    n_slices: int = 0
    n_phases: int = 0
    view: str = "unknown"
    sequence: str = "unknown"
    analyses: list[str] = field(default_factory=list)
    reason: str = ""
    evidence: list[str] = field(default_factory=list)
    angle_to_sax_deg: float | None = None
    is_sax_reference: bool = False
    phase_labels: list[str] | None = None
    normal: np.ndarray | None = None
    file: Path | None = None
    samples: int = 0
    aif: str | None = None
    pixel_size_mm: float | None = None
    patient_id: str = ""
    study_date: str = ""
    n_orientations: int = 1
    notes: list[str] = field(default_factory=list)
    derived: bool = False
    series_number: int | None = None
    protocol: str = ""
    height_mm: float | None = None
    _uids: tuple[str, ...] = ()  # the DICOM series read (one, or a per-slice stack's)
    _folder: Path | None = None  # the folder scanned for it
    _load: object = None
    _series: CMRSeries | None = None

    def __repr__(self) -> str:
        """One line for a console: the series, its size, view, sequence and analyses (its routing-table row)."""
        size = f"{self.n_slices} x {self.n_phases}" if self.n_slices else "-"
        return (f"RoutedSeries({self.key!r}, {self.label!r}: {size}, {self.view.upper()}, {self.sequence}, "
                f"analyses {', '.join(self.analyses) or 'none'}: {self.reason})")

    def load(self) -> CMRSeries:
        """The series' pixels and geometry (loaded once, then kept).

        Raises: the loader's named errors (CorruptFileError, MissingGeometryError ...).
        """
        if self._series is None:
            if self._load is None:
                raise CardiacLandmarksError(f"{self.label}: not an image series")
            self._series = self._load()
            if self.phase_labels:
                self._series.metadata["phase_labels"] = list(self.phase_labels)
        if self.sequence in SEQUENCES and self.sequence != "unknown" and self._series.sequence != self.sequence:
            # the routing's decision (which reads tags the loader's guess does not, e.g. an inversion time, or
            # the sequence a user gave: study --sequence) picks the model: an LGE stack without 'lge' in its
            # description got the cine model. Image files are read while routing, so this holds for them too
            logger.info("%s: sequence %s (routing) instead of %s (loader's guess)", self.label, self.sequence,
                        self._series.sequence)
            self._series.sequence = self.sequence
        if self.pixel_size_mm is not None:  # a header that lost its pixel size (analyse_study(pixel_size_mm=))
            given_pixel_size(self._series, self.pixel_size_mm)
        return self._series

    @property
    def loadable(self) -> bool:
        """An image series this routing can load (not a damaged series, a non-image object, a slice left out of
        a stack or a curve file)."""
        return self._load is not None

    def release(self) -> None:
        """Drop the loaded pixels (memory) once the analyses are done."""
        self._series = None

    def to_dict(self) -> dict:
        return {"key": self.key, "label": self.label, "source": self.source, "slices": self.n_slices,
                "phases": self.n_phases, "view": self.view, "sequence": self.sequence,
                "analyses": list(self.analyses), "reason": self.reason, "evidence": list(self.evidence),
                "angle_to_sax_deg": None if self.angle_to_sax_deg is None else round(float(self.angle_to_sax_deg), 1),
                "sax_reference": self.is_sax_reference, "phase_labels": self.phase_labels}


@dataclass
class StudyRouting:
    """All series of one study with their routing (see module docstring)."""

    path: str
    kind: str  # "dicom" | "images"
    series: list[RoutedSeries]
    notes: list[str] = field(default_factory=list)
    #: inputs of the study that could not be read, one line each: a damaged or unreadable series (also listed in
    #: the table with its reason), a damaged DICOM file of no known series, a link to nothing. Each is an error of
    #: the study (:attr:`CardiacLandmarksLib.study.analyse.StudyResult.errors`), so the study is ``review``: a
    #: study whose SAX cine lost one file is not ``ok`` because its perfusion series was read
    unread: list[str] = field(default_factory=list)
    #: the study's MR series name more than one patient (DICOM PatientID): ``"series of more than one patient
    #: (PatientID): s300 'SCD0000101', s6 'NOID'"``; or, of one patient, more than one exam date (StudyDate: a
    #: baseline and a follow-up put in one folder, whose values would share one cohort row); else "". An error of
    #: the study, as :attr:`unread`
    not_one_exam: str = ""
    #: the temporary folder of the study's unpacked archives (:mod:`CardiacLandmarksLib.io.archive`), else None
    unpacked: Unpacked | None = None

    def close(self) -> None:
        """Remove the temporary folder of unpacked archives now (else when the routing and its series are gone)."""
        if self.unpacked is not None:
            self.unpacked.cleanup()

    def problems(self) -> list[str]:
        """The errors of the study that routing found (:attr:`unread`, :attr:`not_one_exam`), one line each: they
        make the study ``review`` (:attr:`CardiacLandmarksLib.study.analyse.StudyResult.errors`)."""
        return [f"not read: {what}" for what in self.unread] + ([self.not_one_exam] if self.not_one_exam else [])

    @property
    def name(self) -> str:
        """Short study name: the folder name, or for a list of files the common start of their names."""
        parts = [Path(p) for p in self.path.split(";")]
        if len(parts) == 1:
            return archive_stem(parts[0]) or str(parts[0])
        from CardiacLandmarksLib.io.outputs import common_name

        return common_name([archive_stem(p) for p in parts]) or parts[0].parent.name

    @property
    def sax_reference(self) -> RoutedSeries | None:
        return next((s for s in self.series if s.is_sax_reference), None)

    def to_analyse(self, analysis: str) -> list[RoutedSeries]:
        """The series routed to ``analysis`` (``"sax"``, ``"function"``, ``"lax"``, ``"perfusion"``), in table order."""
        return [s for s in self.series if analysis in s.analyses]

    def __repr__(self) -> str:
        """For a console: the study and its routing table (:meth:`table`), not each series' header."""
        return f"StudyRouting({self.name!r}, {self.kind}, {len(self.series)} series\n{self.table()}\n)"

    def table(self) -> str:
        """The routing table as text: series -> view/sequence -> analysis (reason)."""
        rows = [("series", "slices x phases", "view", "sequence", "analysis", "reason")]
        for s in self.series:
            rows.append((s.label, f"{s.n_slices} x {s.n_phases}" if s.n_slices else "-", s.view.upper(),
                         s.sequence, ", ".join(s.analyses) or "-", s.reason))
        widths = [min(max(len(r[c]) for r in rows), 44) for c in range(5)]
        lines = []
        for r in rows:
            cells = [fit_text(r[c], 44).ljust(widths[c]) for c in range(5)]
            lines.append("  ".join(cells) + "  " + r[5])
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"path": self.path, "kind": self.kind, "series": [s.to_dict() for s in self.series],
                "notes": list(self.notes)}


# --------------------------------------------------------------------------- entry point

#: how a routed series' reason starts when its files could not be read (:attr:`StudyRouting.unread`)
UNREAD_REASONS = ("damaged: ", "unreadable: ")

#: files beside image files that say nothing on whether a folder is DICOM: notes, tables, MATLAB workspaces
_NOTE_SUFFIXES = (".txt", ".csv", ".json", ".cfg", ".md", ".mat")
#: the data half of a two-file image format (Analyze ``.hdr`` + ``.img``, MetaImage ``.mhd`` + ``.raw``)
_DATA_HALVES = {".img": (".hdr",), ".raw": (".mhd",), ".zraw": (".mhd",)}


def _side_file(f: Path, imgs: list[Path]) -> bool:
    """True for a file that does not count against a folder of image files being one: a note or table, or
    the data half of one of its image files (QPerf's ``data.img`` beside ``data.hdr``)."""
    suffix = f.suffix.lower()
    if suffix in _NOTE_SUFFIXES:
        return True
    heads = _DATA_HALVES.get(suffix, ())
    return any(g.stem == f.stem and g.suffix.lower() in heads for g in imgs)


def ed_es_of(stem: str) -> str | None:
    """``"ED"`` or ``"ES"`` when a file stem names one (``P1_ED``, ``sa-es``), by the rule the routing pairs ED/ES
    files with; else None."""
    m = _EDES.search(stem.lower())
    return m.group(1).upper() if m else None


def expand_patterns(paths: list[Path]) -> list[Path]:
    """Each path that does not exist and holds a shell pattern (``*``, ``?``, ``[``) replaced by what it matches, in
    sorted order: ``study "P1_E*.nii.gz"`` quoted, or typed where no shell expands it (Windows' cmd.exe, a Python
    call), reads the ED/ES pair as the unquoted pattern would. A path that exists is taken as it is, whatever its
    characters (``scan[1].nii.gz``).

    Raises:
        InputNotFoundError: a pattern that matches nothing (``study input not found: ... (no file or folder
            matches this pattern)``).
    """
    import glob

    out: list[Path] = []
    for p in paths:
        if p.exists() or not any(c in str(p) for c in "*?["):
            out.append(p)
            continue
        hits = sorted(glob.glob(str(p)))
        if not hits:
            raise InputNotFoundError(f"study input not found: {p} (no file or folder matches this pattern)")
        out += [Path(h) for h in hits]
    return out


def route_study(path: str | Path | list, recursive: bool = True, sequences: dict | None = None) -> StudyRouting:
    """Classify every series of a study and decide the analyses (module docstring).

    Args:
        path: DICOM study folder, folder of image files, or a list of image files / DICOM
            folders (a manifest row); a path that does not exist but holds a shell pattern (``P1_E*.nii.gz``) stands
            for the files it matches; a ZIP or tar archive of one, or archives in the folder, are unpacked into a
            temporary folder and read from there (:func:`CardiacLandmarksLib.io.archive.unpack_inputs`; the
            routing's texts name the archive, and the folder is removed by :meth:`StudyRouting.close` or once the
            routing and its series are gone).
        recursive: scan DICOM sub-folders.
        sequences: sequences the user gives (``study --sequence``), one of :data:`GIVEN_SEQUENCES` each: under the
            key ``None``, that of every image series whose sequence the tags and shape do not tell (an anonymised
            export of one-phase stacks: LGE or one cine frame?); under a series' key, label or file name (the
            routing table's first column), that series' whatever was recognised. Applied before the views and
            analyses are decided, recorded in the series' evidence and a note (:func:`give_sequences`).

    Returns:
        :class:`StudyRouting` (series loaded lazily; image files are read once here to know
        their geometry and kept).

    Raises:
        InputNotFoundError: the path (or a listed file) does not exist, or a pattern matches nothing.
        NoDicomError: nothing in the study is DICOM or a supported image file.
        ArchiveError: an archive that cannot be unpacked safely (damaged, password-protected, a member named outside
            its folder, larger than the free space).
        UnknownSeriesError: ``sequences`` names a series the study does not have, or one that is no image.
    """
    paths = expand_patterns([Path(p).expanduser() for p in (path if isinstance(path, (list, tuple)) else [path])])
    for p in paths:
        if not p.exists():
            raise InputNotFoundError.at(p, "study input")
    given = str(paths[0]) if len(paths) == 1 else ";".join(map(str, paths))
    paths, unpacked = unpack_inputs(paths)  # ZIP / tar archives read in place (io.archive)
    try:
        routing = _route(paths, recursive, frozenset(unpacked.given) if unpacked else frozenset(), sequences)
    except CardiacLandmarksError as exc:
        if unpacked is None:
            raise
        unpacked.cleanup()
        if (named := unpacked.renamed(exc)) is exc:
            raise
        raise named from exc
    routing.path = given
    if unpacked is not None:
        _tie_to_archives(routing, unpacked)
    return routing


def give_sequences(routing: StudyRouting, sequences: dict | None) -> None:
    """Set the sequences the user gave (:func:`route_study`'s ``sequences``) on the routing's series, before the
    views and analyses are decided: ``{None: seq}`` for every image series of unrecognised sequence,
    ``{name: seq}`` for the series whose key, label or source file is ``name``. Each changed series says so in its
    evidence; the routing's notes say what was given and to which series.

    Raises:
        UnknownSeriesError: a name that no series of the study has (the message lists its image series), or
            one of a series that is no image (a label map, a curve, an unreadable series).
        OptionError: a sequence not in :data:`GIVEN_SEQUENCES` (a ``ValueError``; the CLI and the batch manifest
            refuse it first, a Python call here).
    """
    from CardiacLandmarksLib.core.errors import OptionError, UnknownSeriesError

    for seq in (sequences or {}).values():
        if seq not in GIVEN_SEQUENCES:
            raise OptionError(f"sequence {seq!r}: choose from {', '.join(GIVEN_SEQUENCES)}")
    images = [e for e in routing.series if e.sequence not in ("-", "label", "curve")]
    # a series named by the user first: the sequence given to every unrecognised series takes those left
    for name, seq in sorted((sequences or {}).items(), key=lambda item: item[0] is None):
        if name is None:
            hits = [e for e in images if e.sequence == "unknown"]
            routing.notes.append(f"--sequence {seq}: " + (
                f"{len(hits)} series of unrecognised sequence taken as {seq} ({', '.join(e.key for e in hits)})"
                if hits else "every series' sequence was recognised; nothing given"))
        else:
            named = [e for e in routing.series if name in (e.key, e.label, *e.source.split(";"))]
            if not named:
                raise UnknownSeriesError(
                    f"--sequence {name}={seq}: the study has no series {name!r}; its image series: "
                    + ", ".join(e.key for e in images))
            hits = [e for e in named if e in images]
            if not hits:
                raise UnknownSeriesError(f"--sequence {name}={seq}: {named[0].label} is not an image series "
                                         f"({named[0].reason or named[0].sequence})")
            routing.notes.append(f"--sequence {name}={seq}: {', '.join(e.key for e in hits)} taken as {seq}")
        for e in hits:
            if e.sequence != seq:
                e.evidence.append(f"sequence {seq}: given by the user (--sequence; from the tags and shape: "
                                  f"{e.sequence})")
                e.sequence = seq


def _tie_to_archives(routing: StudyRouting, unpacked: Unpacked) -> None:
    """A routing read from unpacked archives: its texts name the archives, not the temporary folder, and each
    series keeps the folder alive until it is no longer referenced (:class:`~CardiacLandmarksLib.io.archive.Unpacked`)."""
    routing.unpacked = unpacked
    routing.notes.insert(0, f"{len(unpacked.archives)} archive(s) unpacked to read them in place "
                            f"({', '.join(a.name for a in list(unpacked.archives.values())[:3])}"
                            f"{' ...' if len(unpacked.archives) > 3 else ''}: {unpacked.size_text}), in a temporary "
                            f"folder removed when the study is done")
    routing.notes = [unpacked.shown(n) for n in routing.notes]
    routing.unread = [unpacked.shown(n) for n in routing.unread]
    routing.not_one_exam = unpacked.shown(routing.not_one_exam)
    for e in routing.series:
        e.label, e.source, e.reason = unpacked.shown(e.label), unpacked.shown(e.source), unpacked.shown(e.reason)
        e.evidence = [unpacked.shown(x) for x in e.evidence]
        e.notes = [unpacked.shown(x) for x in e.notes]
        if e._series is not None:  # image files are read during routing
            unpacked.name_series(e._series)
        if e._load is not None:  # the loader holds `unpacked`: its folder lives as long as this series can load
            e._load = (lambda load=e._load: unpacked.read(load))


def _route(paths: list[Path], recursive: bool, skip: frozenset[Path] = frozenset(),
           sequences: dict | None = None) -> StudyRouting:
    image_files: list[Path] = []
    dicom_dirs: list[Path] = []
    for p in paths:
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".") and f not in skip)
            imgs = [f for f in files if io_image.is_image_file(f)]
            if imgs and len(imgs) >= len([f for f in files if not _side_file(f, imgs)]) / 2:
                image_files += imgs
                # DICOM series kept in sub-folders beside the image files (a study exported partly as NIfTI): read
                # too; they were left out without a word. A result folder of this tool there is not a series.
                dicom_dirs += [d for d in sorted(p.iterdir()) if d.is_dir() and not d.name.startswith(".")
                               and not is_result_folder(d)]
            else:
                dicom_dirs.append(p)
        elif io_image.is_image_file(p):
            image_files.append(p)
        else:
            raise NoDicomError(f"{p}: a study is a DICOM folder, a folder of image files, a ZIP or tar archive of "
                               "one, or a list of image files")
    where = str(paths[0]) if len(paths) == 1 else f"{len(paths)} inputs"
    entries: list[RoutedSeries] = []
    notes: list[str] = []
    unread: list[str] = []
    broken = sorted(f for d in paths if d.is_dir() for f in d.iterdir() if f.is_symlink() and not f.exists())
    if broken:  # a link whose target is gone (a moved data disk): say so, or the study silently lacks that series
        notes.append(f"{len(broken)} file(s) are links to nothing and were not read: "
                     + ", ".join(f"{f.name} -> {os.readlink(f)}" for f in broken[:3]) + (" ..." if len(broken) > 3 else ""))
        unread.append(notes[-1])
    for d in dicom_dirs:
        entries += _dicom_entries(d, recursive, notes, skip)
    _list_copies(entries)
    entries += _image_entries(image_files, notes)
    unread += [f"{e.label}: {e.reason}" for e in entries if e.reason.startswith(UNREAD_REASONS)]
    unread += [n for n in notes if n.startswith("damaged file ")]
    if not entries:
        for d in paths:  # the output of a run given as its input
            if d.is_dir() and (text := not_an_input_text(d)):
                raise NoDicomError(text)
        empty = all(d.is_dir() and all(f.is_dir() for f in d.rglob("*")) for d in paths)  # a link to nothing is a file
        raise NoDicomError(f"no DICOM series and no image file found in {where}" + (f"; {notes[0]}" if broken else "")
                           + (" (the folder holds no files, in no sub-folder either: an export not finished, or "
                              "the wrong folder?)" if empty else ""))
    _unique_keys(entries)
    routing = StudyRouting(str(paths[0]) if len(paths) == 1 else ";".join(map(str, paths)),
                           "dicom" if dicom_dirs and not image_files else ("images" if image_files and not dicom_dirs
                                                                           else "mixed"), entries, notes, unread)
    read = [e for e in entries if e.sequence != "-"]
    for attr, what in (("patient_id", "patient (PatientID)"), ("study_date", "exam date (StudyDate)")):
        named = [e for e in read if getattr(e, attr)]
        if len({getattr(e, attr) for e in named}) > 1:  # a series filed in the wrong study: its values would join
            routing.not_one_exam = (f"series of more than one {what}: "  # another patient's or exam's
                                       + ", ".join(f"{e.key} {getattr(e, attr)!r}" for e in named))
            break
    give_sequences(routing, sequences)
    _decide_views(routing)
    _decide_analyses(routing)
    pair_aifs(routing)
    return routing


def _condition_word(name: str) -> str | None:
    from CardiacLandmarksLib.perfusion.pipeline import condition_from_name

    return condition_from_name(name)


def pair_aifs(routing: StudyRouting) -> None:
    """Pair each curve file of a study with the perfusion series it is the arterial input function of.

    A curve pairs with a perfusion series that has one frame per sample of the curve, unless their names say
    different conditions (``stress`` / ``rest``, :func:`CardiacLandmarksLib.perfusion.pipeline.condition_from_name`);
    when several curves fit, the one whose name says the same condition as the series (or, for a series that says
    none, the one that says none). QPerf's folder (Xue et al., MRM 2020): ``aif.hdr`` (68 samples) with
    ``data.hdr`` (68 frames), ``aif_stress.hdr`` (59) with ``data_stress.hdr`` (59). Several slices of one
    acquisition share its curve. A series with no curve, or with two equally good ones (named in its evidence),
    gets none. Sets ``RoutedSeries.aif`` and rewrites each
    paired curve's reason; the study then computes Fermi MBF when the series hold contrast concentration
    (``analyse_study(concentration=True)``). Curves are not analysed themselves.
    """
    curves = [c for c in routing.series if c.sequence == "curve" and c.samples > 0]
    if not curves:
        return
    users: dict[str, list[str]] = {}
    unpaired: dict[str, str] = {}  # curve key -> why a series of its length did not take it
    for e in routing.to_analyse("perfusion"):
        cond = _condition_word(e.label)
        same_length = [c for c in curves if c.samples == e.n_phases]
        fit = [c for c in same_length if None in (cond, _condition_word(c.label)) or _condition_word(c.label) == cond]
        for c in same_length:
            if c not in fit:
                unpaired.setdefault(c.key, f"{e.label} has one frame per sample but its name says {cond}")
        pick = fit if len(fit) <= 1 else [c for c in fit if _condition_word(c.label) == cond]
        if len(pick) == 1:
            e.aif = pick[0].key
            e.evidence.append(f"arterial input function {pick[0].label}: {pick[0].samples} samples, one per frame")
            users.setdefault(pick[0].key, []).append(e.label)
        elif len(fit) > 1:
            e.evidence.append(f"no arterial input function: {', '.join(c.label for c in fit)} all fit "
                              f"({e.n_phases} samples)")
            for c in fit:
                unpaired.setdefault(c.key, f"{e.label} has one frame per sample, but so do other curves")
    for c in curves:
        if c.key in users:
            c.reason = f"arterial input function of {', '.join(users[c.key])} ({c.samples} samples, one per frame)"
        elif c.key in unpaired:
            c.reason = (f"a curve of {c.samples} samples, not an image (an arterial input function?) not paired: "
                        f"{unpaired[c.key]}")


# --------------------------------------------------------------------------- DICOM


def _dicom_entries(folder: Path, recursive: bool, notes: list[str], skip: frozenset[Path] = frozenset()
                   ) -> list[RoutedSeries]:
    scan = io_dicom_study.scan_study_folder(folder, recursive, skip)
    out: list[RoutedSeries] = []
    stacks = io_dicom_study.slice_stacks(scan.series)
    in_stack = {u for st in stacks for u in st.uids}
    by_uid = {h.series_uid: h for h in scan.series}
    left_out: dict[str, str] = {}  # series uid -> why it is not analysed (a slice acquired again later)
    listed: list[RoutedSeries] = []  # an earlier acquisition of a whole per-slice stack: one row, not analysed
    for st in stacks:
        g = st.uids
        hs = [by_uid[u] for u in g]
        h0 = hs[0]
        nums = [h.series_number for h in hs if h.series_number is not None]
        label = io_dicom_study.stack_label(hs)
        n_phases = min(st.phases_per_slice) if st.phases_per_slice else (h0.n_phases or 0)
        e = RoutedSeries(key=f"s{min(nums)}" if nums else "stack", label=label,
                         source=f"{len(hs)} series (one per slice)", n_slices=len(hs), n_phases=n_phases,
                         normal=h0.normal, patient_id=h0.patient_id, study_date=h0.study_date,
                         derived=_is_derived(h0), series_number=max(nums) if nums else None,
                         protocol=io_dicom_study.description_stem(h0.description))
        e.evidence.append(f"{len(hs)} single-slice series with one orientation, parallel planes, "
                          f"{n_phases} phases each: assembled into one stack")
        if st.phases_per_slice:
            text = io_dicom_study.fewer_phases_text(st)
            e.evidence.append(text)
            e.notes.append(text)
            notes.append(f"{label}: {text}")
        for earlier_uids, later_uids in st.superseded:
            earlier_hs, later_hs = [by_uid[u] for u in earlier_uids], [by_uid[u] for u in later_uids]
            text = io_dicom_study.superseded_text(earlier_hs, later_hs)
            e.evidence.append(text)
            e.notes.append(text)
            notes.append(f"{label}: {text}")
            # one row for the earlier acquisition (not one per slice), listed only: its series are not read, and no
            # analysis takes it (sequence and view '-'), but it can be loaded by itself (the Slicer panel's chooser:
            # the reader may prefer it, say when the repeat was for another reason than the image)
            nums_e = [h.series_number for h in earlier_hs if h.series_number is not None]
            listed.append(RoutedSeries(
                key=f"s{min(nums_e)}" if nums_e else "stack_earlier", label=io_dicom_study.stack_label(earlier_hs),
                source=f"{len(earlier_hs)} series (one per slice)", n_slices=len(earlier_hs),
                n_phases=min(h.n_phases or 0 for h in earlier_hs), view="-", sequence="-",
                reason=f"an earlier acquisition of the stack: {io_dicom_study.stack_label(later_hs)}, acquired later, "
                       f"is used in the stack {label}",
                normal=h0.normal, patient_id=earlier_hs[0].patient_id, study_date=earlier_hs[0].study_date,
                series_number=max(nums_e) if nums_e else None, _uids=tuple(earlier_uids), _folder=folder,
                _load=(lambda sc=scan, uids=list(earlier_uids): sc.load(uids))))
            in_stack.update(earlier_uids)
        for earlier, later in st.replaced:
            text = io_dicom_study.repeated_slice_text(st, by_uid[earlier], by_uid[later])
            e.evidence.append(text)
            e.notes.append(text)
            notes.append(f"{label}: {text}")
            left_out[earlier] = f"slice acquired again later: {by_uid[later].label()} is used in the stack {label}"
        e.sequence = _dicom_sequence(h0, e.evidence, n_slices=len(hs))
        e._load = (lambda sc=scan, uids=list(g): sc.load(uids))
        e._uids, e._folder = tuple(g), folder
        out.append(e)
    out.extend(listed)
    for h in scan.series:
        if h.series_uid in in_stack:
            continue
        key = f"s{h.series_number}" if h.series_number is not None else "s" + h.series_uid[-6:]
        e = RoutedSeries(key=key, label=h.label(), source=h.series_uid, n_slices=h.n_slices,
                         n_phases=h.n_phases or 0, normal=h.normal, patient_id=h.patient_id,
                         study_date=h.study_date, n_orientations=max(1, h.n_orientations), derived=_is_derived(h),
                         series_number=h.series_number, protocol=io_dicom_study.description_stem(h.description),
                         height_mm=float(h.heights_mm[0]) if h.n_slices == 1 else None,
                         _uids=(h.series_uid,), _folder=folder)
        if h.series_uid in left_out:
            e.view, e.sequence = "-", "-"
            e.reason = left_out[h.series_uid]
        elif h.damaged and not h.n_files:
            e.view, e.sequence = "-", "-"
            e.reason = f"damaged: every file unreadable ({h.damaged[0]})"
        elif h.damaged:
            e.view, e.sequence = "-", "-"
            e.reason = f"damaged: {len(h.damaged)} file(s) unreadable ({h.damaged[0]})"
        elif not h.is_mr_image:
            e.view, e.sequence = "-", "-"
            e.reason = f"not an MR image ({h.modality or '?'} {h.sop_class})"
        else:
            e.sequence = _dicom_sequence(h, e.evidence, n_slices=h.n_slices)
            e._load = (lambda sc=scan, uid=h.series_uid: sc.load(uid))
        out.append(e)
    for h in scan.series:
        if h.duplicates:  # a file copied within the study folder: its images are read once
            notes.append(f"{h.label()}: {h.duplicates} image(s) found twice (the same SOPInstanceUID in two files: a "
                         "copy), read once")
    for f, reason in scan.damaged:
        notes.append(f"damaged file {Path(f).name} (series unknown): {reason}")
    if scan.n_not_dicom:
        notes.append(f"{scan.n_not_dicom} non-DICOM file(s) ignored in {folder.name}")
    return out


def _list_copies(entries: list[RoutedSeries]) -> None:
    """A DICOM series found twice in the study's inputs (the same SeriesInstanceUIDs in two folders: a study folder
    kept beside its ZIP, a series copied into a second folder) is read once, from the larger copy (more slices x
    phases; the first on a tie); the other is listed as a copy, not analysed (it was analysed twice)."""
    groups: dict[frozenset, list[RoutedSeries]] = {}
    for e in entries:
        if e._uids and e._load is not None:
            groups.setdefault(frozenset(e._uids), []).append(e)
    for group in groups.values():
        if len(group) < 2:
            continue
        kept = max(group, key=lambda e: e.n_slices * e.n_phases)  # max keeps the first of equals
        for e in group:
            if e is not kept:
                e.label = f"{e.label} (copy)"
                e.view, e.sequence, e._load = "-", "-", None
                e.reason = (f"a copy of {kept.label} (the same SeriesInstanceUID, in {e._folder}): read once, from "
                            f"{kept._folder}")


def _is_derived(h) -> bool:
    """ImageType value 1 is DERIVED (DICOM PS3.3 C.7.6.1.1.2)."""
    return (h.image_type or "").upper().split("\\")[0].strip() == "DERIVED"


def _dicom_sequence(h, evidence: list[str], n_slices: int) -> str:
    text = " ".join(x for x in (h.description, h.protocol_name) if x)
    norm = " ".join(re.split(r"[^a-z0-9]+", text.lower()))
    itype = (h.image_type or "").upper()
    if h.n_orientations > 1:
        evidence.append(f"{h.n_orientations} orientations in one series")
        return "localiser"
    if _LOCALISER.search(norm):
        evidence.append(f"description {text!r}: localiser")
        return "localiser"
    if _T1.search(norm) or re.search(r"\bT1\b|\bMAP\b", itype.replace("\\", " ")) or (
            len(h.inversion_times) > 2 and (h.n_phases or 0) > 1 and n_slices == 1):
        evidence.append("T1: " + (f"description {text!r}" if _T1.search(norm) else
                                  f"ImageType {h.image_type}" if "MAP" in itype or "T1" in itype else
                                  f"{len(h.inversion_times)} inversion times"))
        return "t1"
    seq = guess_sequence(text, 0, 99, None)  # keywords only (no phases: the shape rules cannot fire)
    if seq in ("perfusion", "lge", "cine", "t1"):
        evidence.append(f"description {text!r} names {seq}")
        return seq
    span_s = h.trigger_span_ms / 1000.0 if h.trigger_span_ms is not None else None
    acq_s = h.acquisition_span_s
    n_t = h.n_phases or 1
    if n_slices <= 4 and n_t >= 20 and ((span_s or 0) > 3.0 or (acq_s or 0) > 3.0 * n_slices and (span_s or 0) > 3.0):
        evidence.append(f"{n_t} frames spanning {max(span_s or 0, acq_s or 0):.0f} s: one image per heartbeat")
        return "perfusion"
    if n_t >= 10 and (span_s is None or span_s <= 3.0):
        evidence.append(f"{n_t} phases" + (f" within {h.trigger_span_ms:.0f} ms of the R wave" if span_s is not None
                                          else "") + (f", sequence {h.sequence_name}" if h.sequence_name else ""))
        return "cine"
    if lge_by_inversion(n_t, h.inversion_times[0] if h.inversion_times else None):
        evidence.append(f"single phase with InversionTime {h.inversion_times[0]:g} ms")
        return "lge"
    evidence.append(f"{n_t} phases, no sequence keyword in {text!r}")
    return "unknown"


# --------------------------------------------------------------------------- image files


def _image_entries(files: list[Path], notes: list[str]) -> list[RoutedSeries]:
    out: list[RoutedSeries] = []
    loaded: list[tuple[Path, CMRSeries]] = []
    for f in files:
        stem = io_image._stem(f)
        if _LABEL_NAME.search(stem.lower()):
            out.append(RoutedSeries(key=stem, label=f.name, source=f.name, view="-", sequence="label",
                                    reason="label map (segmentation), not an image",
                                    evidence=[f"file name {f.name!r}"]))
            continue
        try:
            s = io_image.load_image(f)
        except CardiacLandmarksError as exc:
            out.append(RoutedSeries(key=stem, label=f.name, source=f.name, view="-", sequence="-",
                                    reason=f"unreadable: {type(exc).__name__}: {exc}"))
            continue
        if s.n_phases == 1 and sum(n > 1 for n in s.pixels.shape[1:]) <= 1:
            n = int(s.pixels.size)
            out.append(RoutedSeries(key=stem, label=f.name, source=f.name, view="-", sequence="curve",
                                    reason=f"a curve of {n} samples, not an image (an arterial input function? "
                                           "no perfusion series here has one frame per sample)",
                                    evidence=[f"pixels {' x '.join(map(str, s.pixels.shape[1:]))}"], file=f,
                                    samples=n))
            continue
        values = label_values(s)
        if values is not None:
            out.append(RoutedSeries(key=stem, label=f.name, source=f.name, view="-", sequence="label",
                                    reason="label map (segmentation), not an image",
                                    evidence=[f"only {values.size} integer values "
                                              f"({', '.join(f'{v:g}' for v in values)})"]))
            continue
        loaded.append((f, s))
    # ED/ES pairs: two single-phase files of identical geometry named *_ED / *_ES
    used: set[Path] = set()
    pairs: list[tuple[Path, Path]] = []
    for f, s in loaded:
        m = _EDES.search(io_image._stem(f).lower())
        if s.n_phases != 1 or not m or m.group(1) != "ed":
            continue
        stem = io_image._stem(f)
        want = stem[: m.start()] + ("ES" if stem[m.start():m.end()] == "ED" else "es") + stem[m.end():]
        for g, t in loaded:
            if g != f and io_image._stem(g) == want and t.n_phases == 1 and same_grid(s, t):
                pairs.append((f, g))
                used.update((f, g))
                break
    geom = {f: s for f, s in loaded}
    for f, g in pairs:
        s, t = geom[f], geom[g]
        stem = io_image._stem(f)
        m = _EDES.search(stem.lower())
        key = (stem[: m.start()] + stem[m.end():]).strip("_-") or stem
        e = RoutedSeries(key=key, label=f"{f.name} + {g.name}", source=f"{f.name};{g.name}", n_slices=s.n_slices,
                         n_phases=2, phase_labels=["ED", "ES"], normal=_normal(s))
        e.sequence = "cine"
        e.evidence.append("ED and ES frames of one cine (same grid and geometry): paired, phase 0 = ED, 1 = ES")
        e._load = (lambda a=s, b=t: pair_phases(a, b))
        e._series = None
        e._orientation_known = s.orientation_known  # type: ignore[attr-defined]
        e._view_guess = recognise_view(s, description=key)  # type: ignore[attr-defined]
        out.append(e)
    for f, s in loaded:
        if f in used:
            continue
        stem = io_image._stem(f)
        e = RoutedSeries(key=stem, label=f.name, source=f.name, n_slices=s.n_slices, n_phases=s.n_phases,
                         normal=_normal(s))
        e.sequence = s.sequence if s.sequence != "unknown" else guess_sequence(stem, s.n_phases, s.n_slices,
                                                                               s.trigger_times)
        m = _EDES.search(stem.lower())
        if e.sequence == "unknown" and s.n_phases == 1 and m:
            e.sequence = "cine"
            e.phase_labels = [m.group(1).upper()]
            e.evidence.append(f"single {m.group(1).upper()} frame of a cine (file name)")
        elif s.metadata.get("sequence_evidence"):
            e.evidence.append(f"{e.sequence}: {s.metadata['sequence_evidence']}")
        elif e.sequence != "unknown":
            e.evidence.append(f"file name {f.name!r} / shape: {e.sequence}")
        e._load = (lambda s=s: s)
        e._series = s
        e._orientation_known = s.orientation_known  # type: ignore[attr-defined]
        e._view_guess = recognise_view(s)  # type: ignore[attr-defined]
        out.append(e)
    return out


def _normal(s: CMRSeries) -> np.ndarray | None:
    if not s.orientation_known:
        return None
    n = np.cross(s.direction[:, 0], s.direction[:, 1])
    return n / np.linalg.norm(n)


def _unique_keys(entries: list[RoutedSeries]) -> None:
    seen: dict[str, int] = {}
    for e in entries:
        k = re.sub(r"[^A-Za-z0-9_.-]+", "_", e.key).strip("_") or "series"
        if k in seen:
            seen[k] += 1
            k = f"{k}_{seen[k]}"
        else:
            seen[k] = 1
        e.key = k


# --------------------------------------------------------------------------- views and analyses


def _angle(n1: np.ndarray | None, n2: np.ndarray | None) -> float | None:
    if n1 is None or n2 is None:
        return None
    c = abs(float(np.dot(n1, n2)))
    return float(np.degrees(np.arccos(np.clip(c, 0.0, 1.0))))


def _text_view(e: RoutedSeries) -> str:
    text = e.label
    v = guess_view(text, e.sequence)
    if v != "unknown":
        return v
    norm = " ".join(re.split(r"[^a-z0-9]+", text.lower()))
    return "lax" if _LAX_WORDS.search(norm) else "unknown"


def _decide_views(routing: StudyRouting) -> None:
    images = [e for e in routing.series if e._load is not None and e.sequence not in ("label", "-")]
    # reference SAX stack: cine (or ED/ES pair) with the most parallel slices, not named long axis
    cands = [e for e in images if e.sequence == "cine" and e.n_slices >= MIN_SAX_SLICES
             and _text_view(e) not in ("2ch", "3ch", "4ch", "lax")]
    ref = max(cands, key=lambda e: (e.n_slices, e.n_phases, not e.derived), default=None)
    # the reference's protocol run again later on its plane, the same slices and phases: the later one is the reference
    again = [] if ref is None else sorted((c for c in cands if _later_acquisition(ref, c)
                                           and (c.n_slices, c.n_phases) == (ref.n_slices, ref.n_phases)),
                                          key=lambda c: c.series_number)
    first = ref
    if again:
        ref = again[-1]
    if ref is not None:
        ref.is_sax_reference = True
        ref.view = "sax"
        ref.evidence.append(f"reference SAX stack: {ref.n_slices} parallel slices (the most of any cine)"
                            + ("; an original series preferred to a derived copy of the same size"
                               if any(c.derived and (c.n_slices, c.n_phases) == (ref.n_slices, ref.n_phases)
                                      for c in cands if c is not ref) else "")
                            + (f"; the protocol of {first.label} acquired again later (the same description, plane, "
                               "slices and phases): the later acquisition is the reference" if again else ""))
    for e in images:
        if e is ref:
            continue
        if e.n_orientations > 1:  # a tri-plane localiser: its first plane's view would name one of three
            e.view = "-"
            e.evidence.append(f"{e.n_orientations} plane orientations: no single view")
            continue
        tv = _text_view(e)
        ang = _angle(e.normal, ref.normal if ref is not None else None)
        e.angle_to_sax_deg = ang
        if ang is not None:
            if ang <= SAX_MAX_DEG:
                geo = "sax"
                e.evidence.append(f"plane normal {ang:.0f} deg from the SAX stack normal: short-axis plane")
            elif ang >= LAX_MIN_DEG:
                geo = "lax"
                e.evidence.append(f"plane normal {ang:.0f} deg from the SAX stack normal: contains the LV long axis")
            else:
                geo = "unknown"
                e.evidence.append(f"plane normal {ang:.0f} deg from the SAX stack normal: oblique (neither SAX nor LAX)")
            if tv in ("2ch", "3ch", "4ch", "lax") and geo == "lax":
                e.view = tv
            elif tv != "unknown" and geo != "unknown" and (tv == "sax") != (geo == "sax"):
                e.view = geo
                e.evidence.append(f"description says {tv.upper()}, geometry says {geo.upper()}: geometry kept")
            else:
                e.view = geo if geo != "unknown" else tv
            if tv in ("2ch", "3ch", "4ch"):
                e.evidence.append(f"description names {tv.upper()}")
            continue
        g = getattr(e, "_view_guess", None)
        if g is None:  # DICOM without a SAX stack: absolute orientation rule
            try:
                s = e.load()
            except CardiacLandmarksError as exc:  # one series the loader refuses must not stop the study
                e.view, e.sequence, e._load = "-", "-", None
                e.reason = f"unreadable: {type(exc).__name__}: {exc}"
                routing.unread.append(f"{e.label}: {e.reason}")
                continue
            g = recognise_view(s)
        e.view = g.view
        e.evidence.append(f"no SAX stack to compare with: {g.reason}")
    if ref is None and any(e.view == "sax" for e in images):
        routing.notes.append("no multi-slice SAX cine in the study: views from descriptions / absolute orientation")


def _later_acquisition(e: RoutedSeries, c: RoutedSeries, same_position: bool = False) -> bool:
    """``c`` is ``e``'s protocol acquired again later on ``e``'s plane, so a reader uses ``c`` (DICOM only: both
    original, the same SeriesDescription stem, a higher SeriesNumber for ``c``, normals within 2 deg; with
    ``same_position`` also planes within 2 mm, for single-slice series). The one rule behind the SAX reference's
    repeat (:func:`_decide_views`) and the listing of earlier SAX and long-axis acquisitions (:func:`_decide_analyses`)."""
    if (c is e or c.derived or e.derived or c.series_number is None or e.series_number is None
            or c.series_number <= e.series_number or c.protocol != e.protocol):
        return False
    ang = _angle(e.normal, c.normal)
    if ang is None or ang >= 2.0:
        return False
    if not same_position:
        return True
    if c.height_mm is None or e.height_mm is None:
        return False
    sign = 1.0 if float(np.dot(e.normal, c.normal)) > 0 else -1.0
    return abs(sign * c.height_mm - e.height_mm) <= 2.0


def lax_model_views() -> set[str]:
    """The long-axis views (``"2ch"``, ``"3ch"``, ``"4ch"``) that have a bundled landmark model in the catalogue
    (:func:`CardiacLandmarksLib.models.catalogue.catalogue`, ``CARDIAC_LANDMARKS_MODELS`` honoured). When the
    catalogue cannot be read, all three: the analysis then fails with the catalogue's named error."""
    from CardiacLandmarksLib.core.errors import ModelIntegrityError
    from CardiacLandmarksLib.models.catalogue import catalogue

    try:
        return {e.view for e in catalogue().values() if e.task == "landmarks" and e.view in ("2ch", "3ch", "4ch")}
    except ModelIntegrityError:
        return {"2ch", "3ch", "4ch"}


def _no_lax_model(view: str, have: set[str]) -> str:
    bundled = ", ".join(v.upper() for v in sorted(have)) or "none"
    return f"no bundled {view.upper()} landmark model (only {bundled}): not analysed"


def _decide_analyses(routing: StudyRouting) -> None:
    lax_views = lax_model_views()
    cines_lax = [e for e in routing.series if e.sequence == "cine" and e.view in ("2ch", "3ch", "4ch", "lax")
                 and e.n_phases >= 2]
    for e in routing.series:
        if e.reason:
            continue
        seq, view = e.sequence, e.view
        ref = routing.sax_reference
        if (seq == "cine" and view == "sax" and e.derived and ref is not None and e is not ref
                and (e.n_slices, e.n_phases) == (ref.n_slices, ref.n_phases) and e.normal is not None
                and ref.normal is not None and _angle(e.normal, ref.normal) < 2.0):
            e.reason = (f"a derived copy of the reference stack {ref.label} (ImageType DERIVED, the same slices and "
                        "phases: an inline-processed or reformatted copy): listed, not analysed again")
            continue
        if (seq == "cine" and view == "sax" and ref is not None and _later_acquisition(e, ref)
                and e.n_slices <= ref.n_slices):  # an earlier acquisition of the reference's protocol
            e.reason = (f"an earlier acquisition of the reference stack's protocol ({ref.label}, acquired later, is "
                        "the reference): listed, not analysed")
            continue
        if seq == "cine" and view == "sax":
            if e.n_slices >= 1 and e.n_phases >= 1:
                e.analyses = ["sax"]
                if e.is_sax_reference and e.n_phases >= 2:
                    if function_available():
                        e.analyses.append("function")
                    else:
                        e.evidence.append("LV/RV function: the function package is not installed")
                e.reason = "SAX cine" + (" stack (reference)" if e.is_sax_reference else "") + \
                    (" ED/ES pair" if e.phase_labels and len(e.phase_labels) == 2 else "")
        elif seq == "cine" and view in ("2ch", "3ch", "4ch", "lax"):
            same = [c for c in cines_lax if c is not e and c.n_phases > e.n_phases and e.normal is not None
                    and c.normal is not None and _angle(e.normal, c.normal) < 2.0]
            original = [c for c in cines_lax if e.derived and not c.derived and c.n_phases == e.n_phases
                        and e.normal is not None and c.normal is not None and _angle(e.normal, c.normal) < 2.0]
            again = [c for c in cines_lax if _later_acquisition(e, c, same_position=True) and c.n_phases == e.n_phases]
            if same:
                e.reason = f"frames of the plane of {same[0].label} (analysed there)"
            elif again:  # the protocol run again on this plane (a failed breath-hold, an arrhythmic beat)
                e.reason = (f"an earlier acquisition of the protocol of {again[-1].label} (acquired later, the same "
                            "plane and phases: analysed there): listed, not analysed")
            elif original:  # as for the SAX stack: an inline-processed or reformatted copy of an analysed cine
                e.reason = (f"a derived copy of {original[0].label} (ImageType DERIVED, the same plane and phases): "
                            "listed, not analysed again")
            elif view != "lax" and view not in lax_views:
                e.reason = f"long-axis {'cine' if e.n_phases >= 2 else 'frame'} ({view.upper()}): " + \
                    _no_lax_model(view, lax_views)
            elif e.n_phases >= 2:
                e.analyses = ["lax"]
                e.reason = f"long-axis cine ({'chamber view to decide' if view == 'lax' else view.upper()})"
            else:
                e.analyses = ["lax"]
                e.reason = "single long-axis frame (landmarks, no shortening)"
        elif seq == "perfusion":
            if view in ("2ch", "3ch", "4ch", "lax"):
                e.reason = "long-axis perfusion: not supported (AHA segments need short-axis slices)"
            else:
                e.analyses = ["perfusion"]
                e.reason = "first-pass perfusion" + (f", {e.n_slices} slices" if e.n_slices > 1 else "")
        elif seq == "lge" and view == "sax" and e.n_slices >= 1:
            # Xue et al. 2021 detect the same SAX landmarks on LGE; the LGE fine-tuned model (catalogue
            # 'sequences') is picked from the series' sequence (tasks.Models.sax)
            e.analyses = ["sax"]
            e.reason = "LGE SAX stack: landmarks and RVI angles (LGE model; no scar analysis)"
        elif seq == "lge":
            e.reason = f"LGE of a {view.upper()} view: not analysed (landmarks on short-axis LGE only)"
        elif seq == "t1":
            e.reason = "T1 map / T1 mapping series: no T1 analysis in this version"
        elif seq == "localiser":
            e.reason = "localiser / scout: not analysed"
        elif seq == "cine":
            e.reason = f"cine of an oblique or unknown view ({view}): not analysed"
        elif view == "sax" and e.n_phases == 1:  # what a reader can do about it, not only that nothing was done
            e.reason = ("sequence not recognised from the tags or the shape (one phase: an LGE stack, or one frame of a "
                        f"cine?): not analysed; `cardiac-landmarks study` with --sequence {e.key}=lge (or =cine), "
                        "or --sequence lge for every such series, analyses it")
        else:
            e.reason = "sequence not recognised from the tags or the shape: not analysed"


def refine_lax_chamber(e: RoutedSeries, c_lv: np.ndarray, rv_dir: np.ndarray, sax_normal: np.ndarray) -> str:
    """Decide the chamber of a long-axis series whose description does not name it.

    Args:
        e: the long-axis series (``view == "lax"``, ``normal`` set).
        c_lv: C-LV on a mid SAX slice (LPS mm), unused except for the record.
        rv_dir: unit LV -> RV direction in the SAX plane (C-LV to the middle of A-RVI/I-RVI).
        sax_normal: unit SAX stack normal.

    Returns:
        ``"4ch"``, ``"3ch"`` or ``"2ch"`` (module docstring); ``e.view`` and ``e.evidence`` are
        updated.
    """
    line = np.cross(e.normal, sax_normal)
    n = np.linalg.norm(line)
    if n < 1e-6:
        return e.view
    line /= n
    rv = rv_dir - (rv_dir @ sax_normal) * sax_normal
    rv /= np.linalg.norm(rv)
    ang = float(np.degrees(np.arccos(np.clip(abs(line @ rv), 0.0, 1.0))))
    view = "4ch" if ang <= FOUR_CH_MAX_DEG else ("2ch" if ang >= TWO_CH_MIN_DEG else "3ch")
    e.view = view
    e.evidence.append(f"the plane cuts the SAX mid slice {ang:.0f} deg from the LV->RV direction: "
                      f"{view.upper()} (geometry, approximate)")
    if "lax" in e.analyses:
        e.reason = f"long-axis {'cine' if e.n_phases >= 2 else 'frame'} ({view.upper()} from geometry)"
        have = lax_model_views()
        if view not in have:
            e.analyses.remove("lax")
            e.reason += ": " + _no_lax_model(view, have)
    return view

