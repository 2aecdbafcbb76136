"""Load DICOM MR series (multi-slice x multi-phase cines, perfusion, single images) with pydicom.

A folder is scanned (recursively) header-only; files that are not DICOM (``GoldStandard.mat``,
text, images ...) are skipped silently (logged at debug level), but a file that should be DICOM by
its name (``.dcm``, ``.ima``, a numeric or no suffix, not plain text) and is not readable as DICOM,
whatever its size (e.g. cut before the ``DICM`` marker), is a :class:`~.errors.CorruptFileError`
naming it. Missing slice positions or phases of a cine grid are recorded in
``metadata["completeness"]`` (:func:`grid_completeness`) and refused by
:func:`.checks.check_series`. The image objects are grouped
by ``SeriesInstanceUID``; one MR image series is chosen (``series_uid=`` when there are several)
and its frames are arranged on a slice x phase grid:

* slices: ``ImagePositionPatient`` projected on the slice normal
  ``n = row_cosine x column_cosine`` (from ``ImageOrientationPatient``); positions closer than
  0.05 mm are one slice; slices are sorted by increasing height along ``n``, so
  ``direction[:, 2] == n`` and ``slice_origins`` increase along it;
* phases within a slice: sorted by ``TriggerTime`` (enhanced: ``NominalCardiacTriggerDelayTime``),
  falling back on ``InstanceNumber`` then ``AcquisitionTime`` when a frame lacks it.

SimpleITK's series reader would stack every phase of every slice into one wrong volume; this
loader keeps the full geometry instead (LPS mm, as DICOM): ``direction[:, 0]`` = row cosine
(the direction of increasing column index i), ``direction[:, 1]`` = column cosine (increasing
row index j), ``spacing = (PixelSpacing[1], PixelSpacing[0], slice gap)``, and
``slice_origins[k]`` = ``ImagePositionPatient`` of slice k. Pixel values are
``stored * RescaleSlope + RescaleIntercept``.

Single-file input (:func:`load_dicom_file`): the file's **whole series** is loaded, i.e. the
files of its folder (not recursive) that share its ``SeriesInstanceUID``; a file alone in its
series gives a one-image series.

Enhanced (multi-frame) MR objects are expanded frame by frame from their per-frame / shared
functional groups (plane position, orientation, pixel measures, cardiac trigger delay).

pydicom's value validation is switched off while reading (many scanners, e.g. the Sunnybrook
GE files, write UIDs with leading zeros that pydicom would warn about on every access).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom import config as pydicom_config
from pydicom.dataelem import RawDataElement
from pydicom.uid import UID

from CardiacLandmarksLib.core.errors import (
    CorruptFileError,
    IncompleteSeriesError,
    InputNotFoundError,
    InvalidImageError,
    MissingDecoderError,
    MissingGeometryError,
    MixedSeriesError,
    NoDicomError,
    NotMRImageError,
)
from CardiacLandmarksLib.core.series import CMRSeries
from CardiacLandmarksLib.io.common import finalize_series, guess_sequence, guess_view, lge_by_inversion

logger = logging.getLogger(__name__)

_POSITION_TOL_MM = 0.05
#: slices of one stack with different numbers of phases are read (the first phases all have) when the fewest are at
#: least this share of the most; below, they are not one acquisition's slices
MIN_PHASE_SHARE = 0.7
_DEFER_BYTES = 16384  # values larger than this (pixel data) are not read during the header scan
_MR_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1"}
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclass
class DicomSeriesInfo:
    """Summary of one series found in a folder (see :func:`list_series`).

    Attributes:
        series_uid: SeriesInstanceUID ("" when the files have none).
        description: SeriesDescription (or ProtocolName).
        series_number: SeriesNumber or None.
        modality: Modality ("" when absent).
        n_files: number of files of the series.
        n_frames: number of image frames (multi-frame files count each frame).
        is_image: True when the objects carry pixel data.
        sop_class: name of the SOP class of the first object (e.g. "MR Image Storage").
        example_file: one file of the series.
    """

    series_uid: str
    description: str
    series_number: int | None
    modality: str
    n_files: int
    n_frames: int
    is_image: bool
    sop_class: str
    example_file: str

    def summary(self) -> str:
        num = f"#{self.series_number} " if self.series_number is not None else ""
        kind = "" if self.is_image else ", no pixel data"
        return (
            f"{self.series_uid or '<no SeriesInstanceUID>'}: {num}'{self.description}' "
            f"({self.modality or '?'}, {self.sop_class}{kind}, {self.n_files} files, {self.n_frames} images)"
        )


@dataclass
class _Frame:
    """One 2-D image: a single-frame file or one frame of a multi-frame file."""

    path: Path
    frame: int | None
    rows: int | None
    cols: int | None
    ipp: np.ndarray | None
    iop: np.ndarray | None
    pixel_spacing: np.ndarray | None
    trigger_time: float | None
    instance: int | None
    acq_time: float | None
    slope: float
    intercept: float
    sop_uid: str
    bad_tags: list[str] = field(default_factory=list)


@dataclass
class _Object:
    """Header of one DICOM file (one object)."""

    path: Path
    series_uid: str
    description: str
    series_number: int | None
    modality: str
    sop_class_uid: str
    has_pixels: bool
    samples_per_pixel: int
    frames: list[_Frame]
    header: dict


@dataclass
class _Scan:
    objects: list[_Object] = field(default_factory=list)
    corrupt: list[tuple[Path, str, str]] = field(default_factory=list)  # (path, reason, series uid or "")
    empty: list[Path] = field(default_factory=list)
    n_not_dicom: int = 0
    n_files: int = 0


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    old = pydicom_config.settings.reading_validation_mode
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        pydicom_config.settings.reading_validation_mode = old


# --------------------------------------------------------------------------- public API


def list_series(folder: str | Path, recursive: bool = True) -> list[DicomSeriesInfo]:
    """Scan a folder (header only) and summarise every DICOM series in it.

    Args:
        folder: folder to scan.
        recursive: also scan sub-folders.

    Returns:
        one :class:`DicomSeriesInfo` per SeriesInstanceUID, sorted by series number then UID.

    Raises:
        InputNotFoundError: the folder does not exist.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputNotFoundError(f"folder not found: {folder}")
    with _quiet_pydicom():
        scan = _scan_paths(_iter_files(folder, recursive))
    return _summaries(scan.objects)


def load_dicom_folder(folder: str | Path, series_uid: str | None = None, recursive: bool = True) -> CMRSeries:
    """Load one MR image series from a DICOM folder.

    Args:
        folder: folder holding the DICOM files (any names, with or without ``.dcm``);
            non-DICOM files are ignored.
        series_uid: SeriesInstanceUID to load when the folder holds several MR image series.
        recursive: also scan sub-folders.

    Returns:
        :class:`CMRSeries`: ``pixels`` float32 ``[t, k, j, i]`` (phases x slices x rows x
        columns), LPS geometry, ``trigger_times`` ``(T,)`` ms (mean over slices of each phase's
        TriggerTime; None when a frame lacks it). ``metadata`` keeps ``series_uid``,
        ``study_uid``, ``frame_of_reference_uid``, ``modality``, ``manufacturer``,
        ``series_number``, ``sop_class``, ``slice_thickness``, ``spacing_between_slices``,
        ``repetition_time``, ``echo_time``, ``flip_angle``, ``magnetic_field_strength`` and the
        per-image ``files``, ``frames``, ``instance_numbers``, ``sop_instance_uids`` (nested
        ``[t][k]`` lists) and ``trigger_times_per_slice`` (``[k][t]`` ms or None).

    Raises:
        InputNotFoundError: the folder does not exist.
        NoDicomError: no DICOM file in the folder, or ``series_uid`` not found.
        CorruptFileError: the only DICOM-looking files are empty/truncated, or a file of the
            chosen series is truncated or its pixel data cannot be decoded; a damaged file
            whose series cannot be told (header cut before SeriesInstanceUID) also stops the
            load, as it may belong to the chosen series. Empty (0-byte) files next to a
            readable series are skipped with a warning.
        NotMRImageError: no MR image series (CT, SR, presentation state ...), or ``series_uid``
            names one.
        MixedSeriesError: several MR image series and no ``series_uid`` (unless they are one
            stack stored as one series per slice position, which is assembled: see
            :func:`.dicom_study.slice_stacks`); the message lists
            UID, description, modality and counts of each, and the exception's ``series``
            attribute holds the :class:`DicomSeriesInfo` list.
        MissingGeometryError: ImagePositionPatient, ImageOrientationPatient or PixelSpacing
            missing or invalid (the message names the tag and the file).
        InvalidImageError: frames of different sizes or orientations in the series, or
            slices with different numbers of phases.
    """
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise InputNotFoundError.at(folder)
    if not folder.is_dir():
        raise NoDicomError(f"not a folder: {folder}")
    with _quiet_pydicom():
        scan = _scan_paths(_iter_files(folder, recursive))
        return _load_from_scan(scan, str(folder), series_uid)


def load_dicom_file(path: str | Path, series_uid: str | None = None) -> CMRSeries:
    """Load the series a single DICOM file belongs to (see the module docstring).

    The file itself is checked first (empty, truncated, non-MR or without pixel data raise
    at once); then its folder is scanned, non-recursively, for the same SeriesInstanceUID
    (or ``series_uid`` when given).

    Returns / Raises: as :func:`load_dicom_folder`.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputNotFoundError.at(path)
    with _quiet_pydicom():
        first = _scan_paths([path])
        if first.empty:
            raise CorruptFileError(f"{path.name} is empty (0 bytes): {path}")
        if first.corrupt:
            p, reason, _ = first.corrupt[0]
            raise CorruptFileError(f"{p.name}: {reason} ({p})")
        if not first.objects:
            raise NoDicomError(f"{path.name} is not a DICOM file: {path}")
        obj = first.objects[0]
        _check_mr_image(obj)
        uid = series_uid or obj.series_uid
        others = [p for p in _iter_files(path.parent, recursive=False) if p != path]
        scan = _scan_paths(others)
        scan.objects.append(obj)
        scan.n_files += 1
        scan.objects = [o for o in scan.objects if o.series_uid == uid]
        scan.corrupt = [c for c in scan.corrupt if c[2] in (uid, "")]
        return _load_from_scan(scan, str(path), uid)


def is_dicom_file(path: str | Path) -> bool:
    """Cheap test: the file has the ``DICM`` marker at byte 128, or starts like a raw
    (preamble-less) DICOM data set (group 0x0008 or 0x0002 tag)."""
    try:
        with open(path, "rb") as fp:
            head = fp.read(132)
    except OSError:
        return False
    return _looks_dicom(head) is not None


# --------------------------------------------------------------------------- scanning


def _iter_files(folder: Path, recursive: bool) -> Iterator[Path]:
    """The files of ``folder`` (and its sub-folders when ``recursive``), hidden ones and the result folders of this
    tool that a study folder may hold (``study S -o S/results``: its PNGs and NIfTI are no part of the study) left
    out. Linked sub-folders are followed (a study assembled with ``ln -s`` from a PACS export: they were skipped
    without a word), each real folder once (a link back to a folder above is not a loop)."""
    from CardiacLandmarksLib.io.outputs import is_result_folder

    if recursive:
        seen: set[str] = set()
        for root, dirs, files in os.walk(folder, followlinks=True):
            real = os.path.realpath(root)
            if real in seen:  # reached again through a link: read once
                dirs[:] = []
                continue
            seen.add(real)
            kept = []
            for d in sorted(x for x in dirs if not x.startswith(".")):
                if is_result_folder(Path(root) / d):
                    logger.info("%s: a result folder of cardiac-landmarks, not read as input", Path(root) / d)
                else:
                    kept.append(d)
            dirs[:] = kept
            for name in sorted(files):
                if not name.startswith("."):
                    yield Path(root) / name
    else:
        for p in sorted(folder.iterdir()):
            if p.is_file() and not p.name.startswith("."):
                yield p


def _looks_dicom(head: bytes) -> bool | None:
    """True: DICM preamble; False: raw data set without preamble; None: not DICOM."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) >= 8 and head[:2] in (b"\x08\x00", b"\x02\x00"):
        return False
    return None


#: suffixes of files that may sit in a DICOM folder and are not DICOM (ignored without a word)
_NOT_DICOM_SUFFIXES = {".mat", ".txt", ".csv", ".json", ".xml", ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif",
                       ".tiff", ".pdf", ".md", ".html", ".htm", ".nii", ".gz", ".nrrd", ".mha", ".mhd", ".raw",
                       ".zip", ".ini", ".cfg", ".log", ".py", ".sh", ".bat", ".exe", ".db", ".npy", ".npz"}


def _dicom_like_name(path: Path, head: bytes) -> bool:
    """True for a file that should be DICOM by its name: ``.dcm``/``.dicom``/``.ima``, a numeric suffix
    (``1.3.12.2...``), or no suffix at all unless it is plain text (``README``, ``LICENSE``)."""
    suffix = path.suffix.lower()
    if suffix in (".dcm", ".dicom", ".ima"):
        return True
    if suffix in _NOT_DICOM_SUFFIXES or path.name.upper() == "DICOMDIR":
        return False
    if suffix and not suffix[1:].isdigit():
        return False
    text = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    return not head or text < 0.9 * len(head)


def grid_completeness(slice_heights: np.ndarray, trigger_times: np.ndarray | None,
                      nominal_interval_ms: float | None, cardiac_images: int | None) -> dict:
    """What a cine grid misses: slice positions and phases.

    Rules (each reported by name in ``problems``):

    * a slice gap larger than 1.5 x the median gap: slice position(s) missing there;
    * ``CardiacNumberOfImages`` (0018,1090) larger than the number of phases found;
    * a trigger-time step larger than 1.5 x the median step: phase(s) missing there;
    * phases covering less than 70% of ``NominalInterval`` (0018,1062; R-R interval).

    The phase rules apply only to a cine (trigger times increasing within one heartbeat);
    perfusion series, whose frames share a trigger delay, are not judged by them.

    Args:
        slice_heights: ``(K,)`` mm along the slice normal, increasing.
        trigger_times: ``(T,)`` ms or None.
        nominal_interval_ms: R-R interval or None. cardiac_images: the tag's value or None.

    Returns:
        ``{"problems": [str, ...], "missing_slice_positions_mm": [...], "n_phases_expected": int | None,
        "phases_missing": bool}`` (``phases_missing``: a phase rule found something).
    """
    problems: list[str] = []
    missing_pos: list[float] = []
    h = np.asarray(slice_heights, float)
    if h.size >= 3:
        gaps = np.diff(h)
        med = float(np.median(gaps))
        for k, g in enumerate(gaps):
            if med > 0 and g > 1.5 * med:
                n_miss = int(round(g / med)) - 1
                pos = [float(h[k] + med * (m + 1)) for m in range(max(n_miss, 1))]
                missing_pos += pos
                problems.append(f"{max(n_miss, 1)} slice position(s) missing between slices {k} and {k + 1} "
                                f"({g:.1f} mm gap, usual {med:.1f} mm; near {', '.join(f'{p:.1f}' for p in pos)} mm)")
    slice_problems = list(problems)
    expected = None
    t = None if trigger_times is None else np.asarray(trigger_times, float)
    is_cine = t is not None and t.size >= 3 and bool(np.all(np.diff(t) > 0))
    if is_cine:
        n_t = t.size
        if cardiac_images and cardiac_images > n_t:
            expected = int(cardiac_images)
            problems.append(f"{n_t} phases found, the header says {cardiac_images} (CardiacNumberOfImages)")
        steps = np.diff(t)
        med = float(np.median(steps))
        for k, d in enumerate(steps):
            if d > 1.5 * med:
                problems.append(f"phase(s) missing between trigger times {t[k]:.0f} and {t[k + 1]:.0f} ms "
                                f"(step {d:.0f} ms, usual {med:.0f} ms)")
        if nominal_interval_ms and n_t * med < 0.7 * nominal_interval_ms and expected is None:
            expected = int(round(nominal_interval_ms / med))
            problems.append(f"{n_t} phases of {med:.0f} ms cover {n_t * med:.0f} ms of the {nominal_interval_ms:.0f} ms "
                            f"R-R interval (NominalInterval): about {expected - n_t} phases missing")
    return {"problems": problems, "missing_slice_positions_mm": missing_pos, "n_phases_expected": expected,
            "phases_missing": len(problems) > len(slice_problems)}


def _scan_paths(paths) -> _Scan:
    scan = _Scan()
    for path in paths:
        scan.n_files += 1
        try:
            size = path.stat().st_size
        except OSError as exc:
            logger.debug("skipping unreadable %s: %s", path, exc)
            scan.n_not_dicom += 1
            continue
        if size == 0:
            scan.empty.append(path)
            continue
        try:
            with open(path, "rb") as fp:
                head = fp.read(132)
        except OSError as exc:
            logger.debug("skipping unreadable %s: %s", path, exc)
            scan.n_not_dicom += 1
            continue
        kind = _looks_dicom(head)
        if kind is None:
            if _dicom_like_name(path, head):
                # a .dcm / .ima / extension-less binary file that is not DICOM: cut, or damaged before
                # the DICM marker. Reported with its name, whatever its size (never skipped silently).
                scan.corrupt.append((path, f"not readable as DICOM ({size} bytes, no DICM marker: truncated "
                                           "or damaged)", ""))
                continue
            logger.debug("not DICOM, ignored: %s", path)
            scan.n_not_dicom += 1
            continue
        try:
            with open(path, "rb") as fp:
                ds = pydicom.dcmread(fp, defer_size=_DEFER_BYTES, force=not kind)
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on bad input
            if kind:
                scan.corrupt.append((path, f"unreadable DICOM ({type(exc).__name__}: {exc})", ""))
            else:
                logger.debug("not DICOM (%s), ignored: %s", exc, path)
                scan.n_not_dicom += 1
            continue
        if not kind and 0x00080016 not in ds and 0x0020000E not in ds:
            logger.debug("no DICOM identifiers, ignored: %s", path)
            scan.n_not_dicom += 1
            continue
        problem = _truncation(ds, size)
        uid = _str(ds, "SeriesInstanceUID")
        if problem:
            scan.corrupt.append((path, problem, uid))
            continue
        try:
            scan.objects.append(_make_object(path, ds))
        except Exception as exc:  # noqa: BLE001
            scan.corrupt.append((path, f"malformed header ({type(exc).__name__}: {exc})", uid))
    return scan


def _truncation(ds: pydicom.Dataset, file_size: int) -> str:
    """'' when the data set parsed to the end of the file, else a description of the damage.

    pydicom stops quietly at the end of a cut file, so the last element is checked: its value
    must end inside the file, and no partial element header may follow it. Must run before
    any value of ``ds`` is accessed (access replaces the raw element and its file offset).
    """
    meta = getattr(ds, "file_meta", None)
    if meta is not None and len(meta) > 0 and "TransferSyntaxUID" not in meta:
        return "truncated file meta header (no TransferSyntaxUID)"
    if len(ds) == 0:
        return "truncated or empty DICOM data set (no elements after the file meta header)"
    last = ds.get_item(max(ds.keys()), keep_deferred=True)
    if not isinstance(last, RawDataElement) or last.length == _UNDEFINED_LENGTH:
        return ""  # undefined length (e.g. encapsulated pixel data): checked when decoding
    end = last.value_tell + last.length
    if end > file_size:
        return f"truncated file: element {last.tag} needs {end - file_size} more bytes than the file holds"
    if 0 < file_size - end < 8:
        return f"truncated file: {file_size - end} stray bytes after the last complete element"
    return ""


def _make_object(path: Path, ds: pydicom.Dataset) -> _Object:
    sop_class = _str(ds, "SOPClassUID") or _str(getattr(ds, "file_meta", pydicom.Dataset()), "MediaStorageSOPClassUID")
    has_pixels = any(t in ds for t in _PIXEL_TAGS)
    modality = _str(ds, "Modality")
    if not modality and sop_class in _MR_SOP_CLASSES:
        modality = "MR"
    description = _str(ds, "SeriesDescription") or _str(ds, "ProtocolName")
    header = {
        "study_uid": _str(ds, "StudyInstanceUID"),
        "frame_of_reference_uid": _str(ds, "FrameOfReferenceUID"),
        "manufacturer": _str(ds, "Manufacturer"),
        "manufacturer_model": _str(ds, "ManufacturerModelName"),
        "protocol_name": _str(ds, "ProtocolName"),
        "magnetic_field_strength": _float(ds, "MagneticFieldStrength"),
        "slice_thickness": _float(ds, "SliceThickness"),
        "spacing_between_slices": _float(ds, "SpacingBetweenSlices"),
        "repetition_time": _float(ds, "RepetitionTime"),
        "echo_time": _float(ds, "EchoTime"),
        "flip_angle": _float(ds, "FlipAngle"),
        "inversion_time": _float(ds, "InversionTime"),
        "sequence_name": _str(ds, "SequenceName"),
        "scanning_sequence": _str(ds, "ScanningSequence"),
        "image_type": _str(ds, "ImageType"),
        "nominal_interval": _float(ds, "NominalInterval"),
        "cardiac_number_of_images": _int(ds, "CardiacNumberOfImages"),
        "patient_id": _str(ds, "PatientID"),
        "study_date": _str(ds, "StudyDate"),
        # the subject's size as the scanner recorded it (for SAR): PatientSize in m, PatientWeight in kg; 0 or
        # absent when unknown (:func:`CardiacLandmarksLib.function.measurements.subject_from_header`)
        "patient_size_m": _float(ds, "PatientSize"),
        "patient_weight_kg": _float(ds, "PatientWeight"),
    }
    frames = _frames(path, ds) if has_pixels else []
    if frames and header["slice_thickness"] is None:
        header["slice_thickness"] = _functional(ds, 0, "PixelMeasuresSequence", "SliceThickness")
    if frames and header["spacing_between_slices"] is None:
        header["spacing_between_slices"] = _functional(ds, 0, "PixelMeasuresSequence", "SpacingBetweenSlices")
    return _Object(
        path=path,
        series_uid=_str(ds, "SeriesInstanceUID"),
        description=description,
        series_number=_int(ds, "SeriesNumber"),
        modality=modality,
        sop_class_uid=sop_class,
        has_pixels=has_pixels,
        samples_per_pixel=_int(ds, "SamplesPerPixel") or 1,
        frames=frames,
        header=header,
    )


def _frames(path: Path, ds: pydicom.Dataset) -> list[_Frame]:
    n_frames = _int(ds, "NumberOfFrames") or 1
    per_frame = _seq(ds, "PerFrameFunctionalGroupsSequence")
    enhanced = n_frames > 1 or (
        len(per_frame) > 0 and any(k in per_frame[0] for k in ("PlanePositionSequence", "FrameContentSequence"))
    )
    instance = _int(ds, "InstanceNumber")
    acq = _tm_seconds(_str(ds, "AcquisitionTime") or _str(ds, "ContentTime"))
    sop = _str(ds, "SOPInstanceUID")
    rows, cols = _int(ds, "Rows"), _int(ds, "Columns")
    if not enhanced:
        bad: list[str] = []
        return [
            _Frame(
                path=path,
                frame=None,
                rows=rows,
                cols=cols,
                ipp=_vec(ds, "ImagePositionPatient", 3, bad),
                iop=_vec(ds, "ImageOrientationPatient", 6, bad),
                pixel_spacing=_vec(ds, "PixelSpacing", 2, bad),
                trigger_time=_float(ds, "TriggerTime"),
                instance=instance,
                acq_time=acq,
                slope=_float(ds, "RescaleSlope") or 1.0,
                intercept=_float(ds, "RescaleIntercept") or 0.0,
                sop_uid=sop,
                bad_tags=bad,
            )
        ]
    frame_time = _float(ds, "FrameTime")
    out = []
    for f in range(n_frames):
        bad = []
        ipp = _functional_vec(ds, f, "PlanePositionSequence", "ImagePositionPatient", 3, bad)
        iop = _functional_vec(ds, f, "PlaneOrientationSequence", "ImageOrientationPatient", 6, bad)
        ps = _functional_vec(ds, f, "PixelMeasuresSequence", "PixelSpacing", 2, bad)
        trig = _functional(ds, f, "CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime")
        if trig is None and frame_time is not None and not per_frame:
            trig = f * frame_time  # legacy multi-frame cine: one frame every FrameTime ms
        slope = _functional(ds, f, "PixelValueTransformationSequence", "RescaleSlope")
        inter = _functional(ds, f, "PixelValueTransformationSequence", "RescaleIntercept")
        out.append(
            _Frame(
                path=path,
                frame=f,
                rows=rows,
                cols=cols,
                ipp=ipp if ipp is not None else _vec(ds, "ImagePositionPatient", 3, []),
                iop=iop if iop is not None else _vec(ds, "ImageOrientationPatient", 6, []),
                pixel_spacing=ps if ps is not None else _vec(ds, "PixelSpacing", 2, []),
                trigger_time=trig,
                instance=(instance or 0) * 100000 + f,
                acq_time=acq,
                slope=slope if slope is not None else (_float(ds, "RescaleSlope") or 1.0),
                intercept=inter if inter is not None else (_float(ds, "RescaleIntercept") or 0.0),
                sop_uid=sop,
                bad_tags=bad,
            )
        )
    return out


# --------------------------------------------------------------------------- value helpers


def _str(ds, keyword: str) -> str:
    try:
        v = ds.get(keyword)
    except Exception:  # noqa: BLE001
        return ""
    if v is None:
        return ""
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        return "\\".join(str(x) for x in v)
    return str(v).strip()


def _float(ds, keyword: str) -> float | None:
    try:
        v = ds.get(keyword)
        if v is None or v == "":
            return None
        if type(v).__name__ == "MultiValue":
            v = v[0]
        f = float(v)
    except Exception:  # noqa: BLE001
        return None
    return f if np.isfinite(f) else None


def _int(ds, keyword: str) -> int | None:
    f = _float(ds, keyword)
    return int(round(f)) if f is not None else None


def _vec(ds, keyword: str, n: int, bad: list[str]) -> np.ndarray | None:
    if keyword not in ds:
        return None
    try:
        v = np.array([float(x) for x in ds.get(keyword)], dtype=float)
    except Exception:  # noqa: BLE001
        bad.append(keyword)
        return None
    if v.shape != (n,) or not np.all(np.isfinite(v)):
        bad.append(keyword)
        return None
    return v


def _seq(ds, keyword: str):
    try:
        v = ds.get(keyword)
    except Exception:  # noqa: BLE001
        return []
    return v if v is not None else []


def _functional_item(ds, f: int, seq_keyword: str):
    """Item of ``seq_keyword`` for frame f, from the per-frame then the shared functional groups."""
    per = _seq(ds, "PerFrameFunctionalGroupsSequence")
    if f < len(per):
        s = _seq(per[f], seq_keyword)
        if len(s):
            return s[0]
    shared = _seq(ds, "SharedFunctionalGroupsSequence")
    if len(shared):
        s = _seq(shared[0], seq_keyword)
        if len(s):
            return s[0]
    return None


def _functional(ds, f: int, seq_keyword: str, keyword: str) -> float | None:
    item = _functional_item(ds, f, seq_keyword)
    return _float(item, keyword) if item is not None else None


def _functional_vec(ds, f: int, seq_keyword: str, keyword: str, n: int, bad: list[str]) -> np.ndarray | None:
    item = _functional_item(ds, f, seq_keyword)
    return _vec(item, keyword, n, bad) if item is not None else None


def _tm_seconds(tm: str) -> float | None:
    tm = tm.strip()
    if len(tm) < 2 or not tm[:2].isdigit():
        return None
    try:
        hh = int(tm[0:2])
        mm = int(tm[2:4]) if len(tm) >= 4 else 0
        ss = float(tm[4:]) if len(tm) > 4 else 0.0
    except ValueError:
        return None
    return hh * 3600.0 + mm * 60.0 + ss


def _sop_name(uid: str) -> str:
    if not uid:
        return "unknown SOP class"
    name = UID(uid).name
    return name if name and name != uid else f"SOP class {uid}"


# --------------------------------------------------------------------------- selection


def _summaries(objects: list[_Object]) -> list[DicomSeriesInfo]:
    groups: dict[str, list[_Object]] = {}
    for o in objects:
        groups.setdefault(o.series_uid, []).append(o)
    infos = []
    for uid, objs in groups.items():
        o0 = objs[0]
        infos.append(
            DicomSeriesInfo(
                series_uid=uid,
                description=o0.description,
                series_number=o0.series_number,
                modality=o0.modality,
                n_files=len(objs),
                n_frames=sum(len(o.frames) for o in objs),
                is_image=any(o.has_pixels for o in objs),
                sop_class=_sop_name(o0.sop_class_uid),
                example_file=str(o0.path),
            )
        )
    infos.sort(key=lambda s: (s.series_number if s.series_number is not None else 1 << 30, s.series_uid))
    return infos


def _is_mr_image(obj: _Object) -> bool:
    return obj.has_pixels and obj.modality == "MR" and obj.samples_per_pixel == 1


def _check_mr_image(obj: _Object) -> None:
    if obj.modality != "MR":
        raise NotMRImageError(
            f"{obj.path.name} is not an MR image: Modality {obj.modality or '<missing>'} "
            f"({_sop_name(obj.sop_class_uid)}): {obj.path}"
        )
    if not obj.has_pixels:
        name = _sop_name(obj.sop_class_uid)
        hint = " (an image SOP class without pixels: header-only or truncated file?)" if "Image Storage" in name else ""
        raise NotMRImageError(f"{obj.path.name} is not an image: no PixelData ({name}){hint}: {obj.path}")
    if obj.samples_per_pixel != 1:
        raise NotMRImageError(
            f"{obj.path.name} is not a grey-level MR image: SamplesPerPixel {obj.samples_per_pixel} "
            f"({_sop_name(obj.sop_class_uid)}): {obj.path}"
        )


def _load_from_scan(scan: _Scan, where: str, series_uid: str | None) -> CMRSeries:
    if not scan.objects:
        if scan.corrupt or scan.empty:
            parts = [f"{p.name} ({reason})" for p, reason, _ in scan.corrupt[:5]]
            parts += [f"{p.name} (empty, 0 bytes)" for p in scan.empty[:5]]
            raise CorruptFileError(f"no readable DICOM in {where}; damaged files: " + "; ".join(parts))
        raise NoDicomError(
            f"no DICOM file found in {where} ({scan.n_files} files checked, {scan.n_not_dicom} not DICOM)"
        )
    infos = _summaries(scan.objects)
    if series_uid is not None:
        chosen = [o for o in scan.objects if o.series_uid == series_uid]
        if not chosen:
            listing = "\n  ".join(i.summary() for i in infos)
            raise NoDicomError(f"series {series_uid} not found in {where}; series present:\n  {listing}")
        for o in chosen:
            _check_mr_image(o)
    else:
        mr_uids = sorted({o.series_uid for o in scan.objects if _is_mr_image(o)})
        if not mr_uids:
            first = scan.objects[0]
            listing = "\n  ".join(i.summary() for i in infos)
            try:
                _check_mr_image(first)
            except NotMRImageError as exc:
                raise NotMRImageError(f"no MR image series in {where}: {exc}\nfound:\n  {listing}") from None
            raise NotMRImageError(f"no MR image series in {where}; found:\n  {listing}")
        if len(mr_uids) > 1:
            from CardiacLandmarksLib.io import dicom_study  # lazy: dicom_study builds on this module

            stack = dicom_study.single_stack(scan, where)
            if stack is not None:  # one series per slice position (Siemens-style SAX stack)
                return dicom_study.load_series_group(scan, stack, where)
            mr_infos = [i for i in infos if i.series_uid in mr_uids]
            listing = "\n  ".join(i.summary() for i in mr_infos)
            err = MixedSeriesError(
                f"{len(mr_uids)} MR image series in {where}; choose one with --series-uid UID (Python: "
                f"series_uid=UID), or run 'cardiac-landmarks study' on the folder to analyse each:\n  {listing}"
            )
            err.series = mr_infos  # type: ignore[attr-defined]
            raise err
        series_uid = mr_uids[0]
        chosen = [o for o in scan.objects if o.series_uid == series_uid]
        skipped = len(scan.objects) - len(chosen)
        if skipped:
            logger.info("%s: ignoring %d DICOM objects of other (non-MR-image) series", where, skipped)
        bad_mr = [o for o in chosen if not _is_mr_image(o)]
        if bad_mr:
            _check_mr_image(bad_mr[0])
    damaged = [c for c in scan.corrupt if c[2] in (series_uid, "")]
    if damaged:
        p, reason, _ = damaged[0]
        more = f" (and {len(damaged) - 1} more damaged files)" if len(damaged) > 1 else ""
        raise CorruptFileError(f"{p.name}: {reason}{more}: {p}")
    for p in scan.empty:
        logger.warning("ignoring empty (0-byte) file %s", p)
    return _assemble(chosen, where)


# --------------------------------------------------------------------------- grid + pixels


def completeness_of_files(files, where: str) -> dict:
    """The grid completeness (:func:`grid_completeness`: slice positions or phases missing) of one series' DICOM
    files, from their headers alone (no pixel is decoded): what the loader records in ``metadata["completeness"]``,
    for a series another reader loaded (Slicer's DICOM module keeps its files' paths on the volume sequence:
    ``MultiVolume.FrameFileList``).

    Args:
        files: the series' file paths (any order). where: the name used in the texts.

    Returns:
        ``{"problems": [...], ...}`` as :func:`grid_completeness`, the problems also logged as warnings.

    Raises:
        NoDicomError: no DICOM image among ``files``; CardiacLandmarksError: as the loader for a series it refuses
        (several series, damaged files, slices with very different numbers of phases ...).
    """
    paths = [Path(f) for f in files]
    scan = _scan_paths(paths)
    if not scan.objects:
        raise NoDicomError(f"no DICOM image among the {len(paths)} file(s) of {where}")
    uids = {o.series_uid for o in scan.objects}
    if len(uids) > 1:
        raise MixedSeriesError(f"the files of {where} hold {len(uids)} series")
    return _assemble(scan.objects, where, header_only=True)


def _assemble(objects: list[_Object], where: str, common_phases: bool = False, header_only: bool = False):
    """One :class:`CMRSeries` from the frames of ``objects`` (slices along the normal, phases by TriggerTime).

    ``common_phases``: slices with different numbers of phases (a per-slice stack of a prospectively triggered cine,
    :func:`.dicom_study.slice_stacks`) keep the first ``min`` phases each (``metadata["phases_cut"]``); otherwise
    they are an :class:`IncompleteSeriesError`. ``header_only``: return the grid's completeness (the dict of
    :func:`grid_completeness`, with the uneven-phase problems) before any pixel is read."""
    frames: list[_Frame] = []
    seen: set[tuple[str, int | None]] = set()
    for o in objects:
        for fr in o.frames:
            key = (fr.sop_uid, fr.frame)
            if fr.sop_uid and key in seen:
                logger.warning("duplicate image %s (frame %s) ignored: %s", fr.sop_uid, fr.frame, fr.path)
                continue
            seen.add(key)
            frames.append(fr)
    if not frames:
        raise NotMRImageError(f"no image frames in the chosen series in {where}")
    for fr in frames:
        for tag, value in (
            ("ImagePositionPatient", fr.ipp),
            ("ImageOrientationPatient", fr.iop),
            ("PixelSpacing", fr.pixel_spacing),
        ):
            if value is None:
                state = "invalid" if tag in fr.bad_tags else "missing"
                loc = f" frame {fr.frame}" if fr.frame is not None else ""
                raise MissingGeometryError(
                    f"{fr.path.name}{loc}: {tag} {state}; cannot place the image in patient space ({fr.path})"
                )
        if fr.rows is None or fr.cols is None:
            raise MissingGeometryError(f"{fr.path.name}: Rows/Columns missing ({fr.path})")

    f0 = frames[0]
    row_dir, col_dir = f0.iop[:3], f0.iop[3:]
    nr, nc = np.linalg.norm(row_dir), np.linalg.norm(col_dir)
    if nr < 1e-6 or nc < 1e-6 or abs(row_dir @ col_dir) / (nr * nc) > 1e-3:
        raise MissingGeometryError(
            f"{f0.path.name}: ImageOrientationPatient {f0.iop.tolist()} is not two orthogonal unit vectors"
        )
    row_dir, col_dir = row_dir / nr, col_dir / nc
    normal = np.cross(row_dir, col_dir)
    for fr in frames:
        if np.max(np.abs(fr.iop - f0.iop)) > 1e-3:
            raise InvalidImageError(
                f"the series in {where} mixes slice orientations ({f0.path.name}: {f0.iop.tolist()} vs "
                f"{fr.path.name}: {fr.iop.tolist()}); load a series with one orientation"
            )
        if (fr.rows, fr.cols) != (f0.rows, f0.cols):
            raise InvalidImageError(
                f"the series in {where} mixes image sizes ({f0.path.name}: {f0.rows}x{f0.cols} vs "
                f"{fr.path.name}: {fr.rows}x{fr.cols})"
            )
        if np.max(np.abs(fr.pixel_spacing - f0.pixel_spacing)) > 1e-4:
            raise InvalidImageError(
                f"the series in {where} mixes pixel spacings ({f0.pixel_spacing.tolist()} vs "
                f"{fr.pixel_spacing.tolist()} in {fr.path.name})"
            )

    # slices: cluster heights along the normal
    heights = np.array([fr.ipp @ normal for fr in frames])
    order = np.argsort(heights, kind="stable")
    slices: list[list[int]] = []
    for idx in order:
        if slices and heights[idx] - heights[slices[-1][-1]] <= _POSITION_TOL_MM:
            slices[-1].append(int(idx))
        else:
            slices.append([int(idx)])
    counts = [len(s) for s in slices]
    uneven = []  # a slice of one series with fewer phases (files lost, or its breath-hold's shorter heartbeats)
    if len(set(counts)) != 1 and not common_phases:
        usual = max(set(counts), key=counts.count)  # the count most slices have; the others named
        desc = ", ".join(f"{heights[s[0]]:.2f} mm: {len(s)}" for s in slices if len(s) != usual)
        if min(counts) < MIN_PHASE_SHARE * max(counts):
            raise IncompleteSeriesError(
                f"the series in {where} is incomplete: slices have different numbers of phases ({usual} on "
                f"{counts.count(usual)} of {len(counts)} slices; {desc})"
            )
        short = [s for s in slices if len(s) < max(counts)]
        at = ", ".join(f"{heights[s[0]]:.1f}" for s in short)
        n = ", ".join(str(len(s)) for s in short)
        uneven.append(f"slice{'s' if len(short) > 1 else ''} at {at} mm {'have' if len(short) > 1 else 'has'} {n} "
                      f"phases, the others {max(counts)}: the first {min(counts)} phases of every slice are used")
    n_t, n_k = min(counts), len(slices)

    # phases: TriggerTime, then InstanceNumber, then AcquisitionTime
    use_trigger = all(fr.trigger_time is not None for fr in frames)
    use_instance = all(fr.instance is not None for fr in frames)
    use_acq = all(fr.acq_time is not None for fr in frames)

    def phase_key(i: int) -> tuple:
        fr = frames[i]
        return (
            fr.trigger_time if use_trigger else 0.0,
            fr.instance if use_instance else 0,
            fr.acq_time if use_acq else 0.0,
            str(fr.path),
            fr.frame or 0,
        )

    grid = [sorted(s, key=phase_key)[:n_t] for s in slices]  # [k][t] -> frame index (the first n_t phases)
    if not use_trigger:
        logger.info("%s: TriggerTime missing on some images; phases ordered by InstanceNumber/AcquisitionTime", where)

    obj0 = objects[0]
    ps = f0.pixel_spacing
    slice_origins = np.array([frames[g[0]].ipp for g in grid])
    if n_k > 1:
        gaps = np.diff(slice_origins @ normal)
        sk = float(np.median(gaps))
        if np.ptp(gaps) > 0.01 * sk + 1e-3:
            logger.info("%s: uneven slice gaps %s mm (kept exactly in slice_origins)", where, np.round(gaps, 3))
    else:
        sk = obj0.header["spacing_between_slices"] or obj0.header["slice_thickness"] or 1.0
        sk = float(abs(sk)) if sk else 1.0
    trig_grid = None
    trigger_times = None
    if use_trigger:
        trig_grid = np.array([[frames[i].trigger_time for i in g] for g in grid])  # [k, t]
        trigger_times = trig_grid.mean(axis=0)

    cut = len(set(counts)) > 1  # the header's phase count is the longer slices': the stack keeps fewer on purpose
    completeness = grid_completeness(slice_origins @ normal, trigger_times, obj0.header.get("nominal_interval"),
                                     None if cut else obj0.header.get("cardiac_number_of_images"))
    if uneven:  # one series: phases missing on some slices, kept as a problem (check_completeness)
        completeness["problems"] = uneven + completeness["problems"]
        completeness["phases_missing"] = True
    for problem in completeness["problems"]:
        logger.warning("%s: incomplete series: %s", where, problem)
    if header_only:
        return completeness
    pixels = _read_pixels(frames, grid, n_t, n_k, f0.rows, f0.cols)
    meta = {
        "format": "dicom",
        "completeness": completeness,
        "series_uid": obj0.series_uid,
        "modality": obj0.modality,
        "series_number": obj0.series_number,
        "sop_class": _sop_name(obj0.sop_class_uid),
        **obj0.header,
        "n_files": len(objects),
        "files": [[str(frames[grid[k][t]].path) for k in range(n_k)] for t in range(n_t)],
        "frames": [[frames[grid[k][t]].frame for k in range(n_k)] for t in range(n_t)],
        "instance_numbers": [[frames[grid[k][t]].instance for k in range(n_k)] for t in range(n_t)],
        "sop_instance_uids": [[frames[grid[k][t]].sop_uid for k in range(n_k)] for t in range(n_t)],
        "trigger_times_per_slice": trig_grid.tolist() if trig_grid is not None else None,
        "phase_order": "TriggerTime" if use_trigger else ("InstanceNumber" if use_instance else "AcquisitionTime"),
        **({"phases_cut": {"n_phases": n_t, "phases_per_slice": counts}} if cut and not uneven else {}),
    }
    series = CMRSeries(
        pixels=pixels,
        spacing=(float(ps[1]), float(ps[0]), sk),
        direction=np.column_stack([row_dir, col_dir, normal]),
        slice_origins=slice_origins,
        orientation_known=True,
        trigger_times=trigger_times,
        source=where,
        description=obj0.description or (Path(where).name if Path(where).is_dir() else Path(where).parent.name),
        metadata=meta,
    )
    text = " ".join(x for x in (obj0.description, obj0.header.get("protocol_name") or "") if x)
    why: list[str] = []
    series.sequence = guess_sequence(text, n_t, n_k, trigger_times, pixels, why)
    if series.sequence == "unknown" and lge_by_inversion(n_t, obj0.header.get("inversion_time")):
        # an inversion-recovery image that is not a cine: late enhancement (the rule the study routing applies)
        series.sequence = "lge"
        why[:] = [f"single phase with InversionTime {obj0.header['inversion_time']:g} ms"]
    if why:
        series.metadata["sequence_evidence"] = why[0]
    series.view = guess_view(text, series.sequence)
    logger.info(
        "loaded DICOM series %s from %s: %d phases x %d slices x %dx%d",
        obj0.series_uid,
        where,
        n_t,
        n_k,
        f0.rows,
        f0.cols,
    )
    return finalize_series(series)


def _missing_decoder(ds: pydicom.Dataset) -> str | None:
    """The name of ``ds``'s transfer syntax when its pixel data are compressed and no installed pydicom decoder
    plugin reads them (``python-gdcm``, a dependency, reads JPEG Lossless, JPEG-LS and JPEG 2000); else None."""
    try:
        from pydicom.pixels import get_decoder  # pydicom >= 3

        uid = ds.file_meta.TransferSyntaxUID
        if uid.is_compressed and not get_decoder(uid).is_available:
            return uid.name
    except Exception:  # noqa: BLE001 - pydicom 2 (Slicer's own), an unknown syntax: the caller says what it can
        return None
    return None


def _read_pixels(frames: list[_Frame], grid: list[list[int]], n_t: int, n_k: int, rows: int, cols: int) -> np.ndarray:
    out = np.empty((n_t, n_k, rows, cols), dtype=np.float32)
    where_of: dict[Path, list[tuple[int, int, _Frame]]] = {}
    for k, g in enumerate(grid):
        for t, i in enumerate(g):
            fr = frames[i]
            where_of.setdefault(fr.path, []).append((t, k, fr))
    for path, items in where_of.items():
        ds = None
        try:
            ds = pydicom.dcmread(path)
            arr = ds.pixel_array
        except Exception as exc:  # noqa: BLE001 - decoders raise many types
            ts = ""
            with contextlib.suppress(Exception):
                ts = f" (transfer syntax {ds.file_meta.TransferSyntaxUID.name})"
            missing = _missing_decoder(ds) if ds is not None else None
            if missing:
                raise MissingDecoderError(
                    f"cannot read the pixel data of {path.name}: they are compressed as {missing}, and no decoder "
                    "for it is installed in this Python: install python-gdcm (pip install python-gdcm), which "
                    f"reads JPEG, JPEG-LS and JPEG 2000 DICOM; the file itself is sound ({path})") from exc
            raise CorruptFileError(f"cannot decode the pixel data of {path.name}{ts}: {exc} ({path})") from exc
        for t, k, fr in items:
            img = arr[fr.frame] if fr.frame is not None and arr.ndim == 3 else arr
            if img.shape != (rows, cols):
                raise CorruptFileError(
                    f"{path.name}: pixel array shape {img.shape} does not match Rows x Columns {rows}x{cols}"
                )
            out[t, k] = img.astype(np.float32) * np.float32(fr.slope) + np.float32(fr.intercept)
    return out
