"""Which studies a batch runs: a CSV manifest or a folder of studies.

**Manifest** (``.csv``): a header row with ``study_id`` and ``path`` (required) and optionally
``height_cm``, ``weight_kg``, and, for files whose header lost them, ``pixel_size_mm`` and ``frame_interval_s``
(a study's own value wins over ``batch --pixel-size`` / ``--dt``: cohorts from several sites), and ``sequence``
(``cine``, ``lge`` or ``perfusion``: the sequence of the study's series that neither tags nor shape tell, over
``batch --sequence``); other columns are kept as they are and ignored. ``path`` is a
study folder (DICOM or image files), an image file, a glob pattern
(``/data/acdc/patient001_*.nii.gz``) or several of these joined by ``;``; a relative path is
read from the manifest's folder. A path that does not exist is **not** a manifest error: the
study is run and recorded as failed with the reason, like any other failing study.

**Folder of studies**: every sub-folder (not hidden) is one study named after it; image files
lying directly in the folder are grouped into studies by the part of their name before the
first ``_`` (``patient001_ED.nii.gz`` and ``patient001_ES.nii.gz`` -> study ``patient001``); each ZIP or tar archive is
one study named after it (``p001.zip`` -> ``p001``), read in place (:mod:`CardiacLandmarksLib.io.archive`), except
UK Biobank's bulk files (``<eid>_<field>_<instance>_<array>.zip``), grouped by subject and visit: ``1000001_20209_2_0.zip``
and ``1000001_20208_2_0.zip`` -> study ``1000001_2``. A sub-folder that is
a result of this tool (a ``batch`` output with ``batch.sqlite``, a ``study`` or ``detect`` output with its
``run.json``: :func:`CardiacLandmarksLib.io.outputs.is_result_folder`) is not a study: ``batch STUDIES -o STUDIES/out`` resumes without taking its own output for one.
"""

from __future__ import annotations

import csv
import glob
import io
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from CardiacLandmarksLib.core.errors import CardiacLandmarksError, InputNotFoundError
from CardiacLandmarksLib.io.archive import archive_stem
from CardiacLandmarksLib.io.common import archive_kind
from CardiacLandmarksLib.io.image import is_image_file
from CardiacLandmarksLib.io.outputs import is_result_folder, not_an_input_text

logger = logging.getLogger(__name__)
PROGRESS = logging.getLogger("CardiacLandmarksLib.progress")  # lines for the person running the batch

REQUIRED_COLUMNS = ("study_id", "path")
#: a UK Biobank bulk imaging file, ``<eid>_<field>_<instance>_<array>.zip``: the archives of one subject's visit
#: (its short-axis field 20209 and long-axis field 20208 of instance 2) are one study, ``<eid>_<instance>``
UKB_ARCHIVE = re.compile(r"^(\d+)_(\d+)_(\d+)_(\d+)\.zip$", re.IGNORECASE)
OPTIONAL_COLUMNS = ("height_cm", "weight_kg", "pixel_size_mm", "frame_interval_s", "sequence")


class ManifestError(CardiacLandmarksError, ValueError):
    """The batch input cannot be read as a list of studies: a manifest without the
    ``study_id``/``path`` columns, duplicate or empty study ids, bad height/weight values, a pixel size or frame
    interval that is not a positive number, a sequence no study analysis takes, or a folder holding no study."""


@dataclass
class StudySpec:
    """One study of a batch.

    Attributes:
        study_id: unique id (output folder name; ``[A-Za-z0-9_.-]`` kept, others -> ``_``).
        paths: the study's inputs (a folder, or files), absolute.
        height_cm, weight_kg: optional subject size (for indexed values).
        extra: other manifest columns.
        pixel_size_mm, frame_interval_s: this study's in-plane pixel size (mm) and perfusion frame interval (s) for
            files whose header lost them (``analyse_study(pixel_size_mm=, frame_interval_s=)``); None: the batch's.
        sequence: the sequence of this study's series that tags and shape do not tell (``analyse_study(sequence=)``;
            :data:`CardiacLandmarksLib.core.series.GIVEN_SEQUENCES`); None: the batch's.
    """

    study_id: str
    paths: list[str]
    height_cm: float | None = None
    weight_kg: float | None = None
    extra: dict = field(default_factory=dict)
    pixel_size_mm: float | None = None
    frame_interval_s: float | None = None
    sequence: str | None = None

    def to_dict(self) -> dict:
        return {"study_id": self.study_id, "paths": list(self.paths), "height_cm": self.height_cm,
                "weight_kg": self.weight_kg,
                **({"pixel_size_mm": self.pixel_size_mm} if self.pixel_size_mm is not None else {}),
                **({"frame_interval_s": self.frame_interval_s} if self.frame_interval_s is not None else {}),
                **({"sequence": self.sequence} if self.sequence is not None else {})}

    def study_options(self, defaults: dict | None = None) -> dict:
        """``analyse_study`` keyword arguments: the batch's ``defaults`` with this study's own values over them."""
        out = dict(defaults or {})
        if self.pixel_size_mm is not None:
            out["pixel_size_mm"] = self.pixel_size_mm
        if self.frame_interval_s is not None:
            out["frame_interval_s"] = self.frame_interval_s
        if self.sequence is not None:
            out["sequence"] = self.sequence
        return out


def safe_id(text: str) -> str:
    """A study id usable as a folder name: letters (any script: ``Müller``), digits, ``_ . -``; every other run of
    characters (spaces, commas, slashes ...) becomes one ``_``."""
    s = re.sub(r"[^\w.-]+", "_", str(text).strip()).strip("._")
    return s or "study"


def _number(value: str, what: str, row: int) -> float | None:
    value = (value or "").strip()
    if not value or value.lower() in ("na", "nan", "none", "-"):
        return None
    try:
        return float(value)
    except ValueError:
        raise ManifestError(f"manifest row {row}: {what} {value!r} is not a number") from None


def _positive(value: str, what: str, row: int) -> float | None:
    v = _number(value, what, row)
    if v is not None and not (v > 0 and math.isfinite(v)):
        raise ManifestError(f"manifest row {row}: {what} {value!r} is not a positive number")
    return v


def _expand(path: str, base: Path) -> list[str]:
    out: list[str] = []
    for part in (p.strip() for p in path.split(";")):
        if not part:
            continue
        p = Path(part).expanduser()
        if not p.is_absolute():
            p = base / p
        if any(c in part for c in "*?["):
            hits = sorted(glob.glob(str(p)))
            out += hits if hits else [str(p)]  # nothing matched: the study fails with 'not found'
        else:
            out.append(str(p))
    return out


def _check_given(pixel_size_mm: float | None, frame_interval_s: float | None, where: str) -> None:
    """A manifest pixel size or frame interval that no cardiac MR series has
    (:func:`CardiacLandmarksLib.io.checks.check_pixel_size`, :func:`~CardiacLandmarksLib.io.checks.check_frame_interval`:
    0.2-20 mm, 0-5 s) is a manifest error, found before any study runs."""
    from CardiacLandmarksLib.core.errors import CardiacLandmarksError
    from CardiacLandmarksLib.io.checks import check_frame_interval, check_pixel_size

    for column, value, check in (("pixel_size_mm", pixel_size_mm, check_pixel_size),
                                 ("frame_interval_s", frame_interval_s, check_frame_interval)):
        try:
            if value is not None:
                check(value)
        except CardiacLandmarksError as exc:
            raise ManifestError(f"{where}: {column}: {exc}") from None


def _sequence(text: str, where: str) -> str | None:
    """A manifest ``sequence`` cell: empty -> None (the batch's ``--sequence``), else one of
    :data:`CardiacLandmarksLib.core.series.GIVEN_SEQUENCES` (any case); another word is a manifest error, found before
    any study runs."""
    from CardiacLandmarksLib.core.series import GIVEN_SEQUENCES

    if not text:
        return None
    if text.lower() not in GIVEN_SEQUENCES:
        raise ManifestError(f"{where}: sequence {text!r}: one of {', '.join(GIVEN_SEQUENCES)}, or empty")
    return text.lower()


def _check_size(height: float | None, weight: float | None, where: str) -> None:
    """A height or weight outside what a person measures (cm, kg:
    :func:`CardiacLandmarksLib.function.measurements.check_subject_size`) is a manifest error, found before any study
    runs: 1.7 for 170 cm made every study's function analysis fail. One of the two alone is allowed (the study then
    reports volumes and mass without indexing them)."""
    from CardiacLandmarksLib.function.measurements import FunctionInputError, check_subject_size

    try:
        check_subject_size(height, weight)
    except FunctionInputError as exc:
        raise ManifestError(f"{where}: {exc}") from None


def read_manifest(path: str | Path) -> list[StudySpec]:
    """Read a CSV manifest (module docstring).

    Returns:
        the studies in file order.

    Raises:
        InputNotFoundError: the file does not exist.
        ManifestError: missing columns, empty/duplicate study ids, bad numbers, no rows.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputNotFoundError(f"manifest not found: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:  # Excel on Windows saves "CSV (Comma delimited)" as Windows-1252, not UTF-8
        text = raw.decode("cp1252", errors="replace")
        PROGRESS.info("note: %s is not UTF-8: read as Windows-1252 (Excel's 'CSV (Comma delimited)'); check its "
                      "study ids, or save it as 'CSV UTF-8'", path.name)
    with io.StringIO(text, newline="") as fp:
        reader = csv.DictReader(fp)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in cols]
        if missing:
            header = cols[0] if len(cols) == 1 else ""  # one column: the whole header row, if not comma-separated
            sep = next((name for c, name in ((";", "semicolons"), ("\t", "tabs")) if c in header), None)
            if sep is not None:  # a spreadsheet's export in a locale with decimal commas, or a TSV
                raise ManifestError(f"{path.name}: its columns are separated by {sep}, not commas: save it as "
                                    "comma-separated CSV (numbers with a decimal point); a manifest needs "
                                    "study_id,path[,height_cm,weight_kg]")
            raise ManifestError(f"{path.name}: missing column(s) {', '.join(missing)} (found: {', '.join(cols) or 'none'});"
                                " a manifest needs study_id,path[,height_cm,weight_kg]")
        studies: list[StudySpec] = []
        seen: dict[str, tuple[int, str]] = {}
        for n, raw in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
            if not any(row.values()):
                continue
            given = row.get("study_id", "")
            if not given:
                raise ManifestError(f"{path.name} row {n}: empty study_id")
            sid = safe_id(given)
            if sid in seen:
                first_row, first = seen[sid]
                raise ManifestError(f"{path.name} row {n}: duplicate study_id {given!r} (row {first_row})" if first == given
                                    else f"{path.name} rows {first_row} and {n}: study_ids {first!r} and {given!r} both "
                                    f"give the folder name {sid!r}: make them differ in letters or digits")
            seen[sid] = (n, given)
            if sid != given:
                PROGRESS.info("note: %s row %d: study_id %r is %r as a folder name and in cohort.csv", path.name, n, given,
                              sid)
            if not row.get("path"):
                raise ManifestError(f"{path.name} row {n}: empty path for study {sid!r}")
            extra = {k: v for k, v in row.items() if k not in ("study_id", "path", *OPTIONAL_COLUMNS)}
            height, weight = _number(row.get("height_cm", ""), "height_cm", n), _number(row.get("weight_kg", ""),
                                                                                       "weight_kg", n)
            _check_size(height, weight, f"{path.name} row {n} ({sid})")
            pixel = _positive(row.get("pixel_size_mm", ""), "pixel_size_mm", n)
            dt = _positive(row.get("frame_interval_s", ""), "frame_interval_s", n)
            _check_given(pixel, dt, f"{path.name} row {n} ({sid})")
            seq = _sequence(row.get("sequence", ""), f"{path.name} row {n} ({sid})")
            studies.append(StudySpec(sid, _expand(row["path"], path.parent), height, weight, extra, pixel, dt, seq))
    if not studies:
        raise ManifestError(f"{path.name}: no study rows")
    return studies


def discover_studies(folder: str | Path) -> list[StudySpec]:
    """Studies of a folder (module docstring), sorted by id.

    Raises:
        InputNotFoundError: the folder does not exist.
        ManifestError: no study found in it.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputNotFoundError.at(folder, "batch input folder")
    if text := not_an_input_text(folder, "a folder of studies"):  # a batch's own output given as its input
        raise ManifestError(text)
    studies: dict[str, StudySpec] = {}
    archives: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if archive_kind(p):  # a study still packed (a PACS export, a share, UK Biobank): read in place
            stem = archive_stem(p)
            ukb = UKB_ARCHIVE.match(p.name)
            archives.setdefault(safe_id(f"{ukb.group(1)}_{ukb.group(3)}" if ukb else stem), []).append(p)
            continue
        if p.is_dir() and is_result_folder(p):
            logger.info("%s: a result folder of cardiac-landmarks, not a study: left out", p)
            continue
        if p.is_dir():
            sid = safe_id(p.name)
            if sid in studies:  # 'Patient 1' and 'Patient_1': one would silently replace the other
                raise ManifestError(f"{folder}: {Path(studies[sid].paths[0]).name!r} and the sub-folder {p.name!r} "
                                    f"both give the study id {sid!r}: rename one, or list the studies in a manifest")
            studies[sid] = StudySpec(sid, [str(p.resolve())])
        elif is_image_file(p):
            sid = safe_id(p.name.split("_", 1)[0] if "_" in p.name else p.name.split(".", 1)[0])
            studies.setdefault(sid, StudySpec(sid, [])).paths.append(str(p.resolve()))
    for sid, packed in archives.items():
        if sid in studies:  # 'p001.zip' beside a folder 'p001': the same study twice, or two studies one name
            raise ManifestError(f"{folder}: the archive {packed[0].name!r} and {Path(studies[sid].paths[0]).name!r} "
                                f"both give the study id {sid!r}: remove the one already unpacked, or list the "
                                f"studies in a manifest")
        studies[sid] = StudySpec(sid, [str(f.resolve()) for f in packed])
    if not studies:
        raise ManifestError(f"no study in {folder}: expected one sub-folder per study, image files named "
                            "<study>_<series>.nii.gz, archives (ZIP or tar) of one study each, or a CSV manifest")
    return [studies[k] for k in sorted(studies)]


def load_studies(input_path: str | Path) -> list[StudySpec]:
    """A CSV manifest (``.csv``) or a folder of studies.

    Raises: InputNotFoundError, ManifestError.
    """
    p = Path(input_path).expanduser()
    if not p.exists():
        raise InputNotFoundError.at(p, "batch input")
    if p.is_file():
        if p.suffix.lower() not in (".csv", ".tsv", ".txt"):
            raise ManifestError(f"{p.name}: a batch input is a folder of studies or a CSV manifest")
        return read_manifest(p)
    return discover_studies(p)
