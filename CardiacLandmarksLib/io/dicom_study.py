"""A whole DICOM study folder: one header scan, a summary per series, per-slice SAX assembly.

:func:`scan_study_folder` reads every file of a folder **header only**, with the scanner of
:mod:`.dicom` (the same parsing, damage checks and enhanced multi-frame expansion), and
summarises each ``SeriesInstanceUID`` as a :class:`SeriesHeader`: orientation, slice positions
along the plane normal, phases per slice, trigger-time and acquisition-time spans, inversion
time, sequence name, image type. Nothing is decoded; pixels are read only by
:meth:`DicomStudyScan.load`, which reuses the scan.

**Per-slice stacks** (:func:`slice_stacks`): some scanners (commonly Siemens) store a
short-axis cine stack as one series per slice position (six series of one slice x 25 phases,
same orientation, parallel planes). Series are grouped into one stack when they are all MR
image series of **one slice** each, with

* the same ImageOrientationPatient (within 1e-3), Rows x Columns and PixelSpacing,
* the same StudyInstanceUID (not necessarily the same FrameOfReferenceUID: slices of
  separate breath-holds may carry different ones, as in the Sunnybrook GE cine),
* the same number of phases, or the same phase interval (within 10 %) with at least 70 % of the others' phases
  (:data:`MIN_PHASE_SHARE`): a prospectively triggered cine records fewer phases on a slice whose breath-hold had
  shorter heartbeats; the stack then keeps the first phases all slices have (the others' last, late-diastolic
  phases are left out, and :func:`fewer_phases_text` says so), and not first-pass perfusion (whose slices are
  separate heartbeats, not one stack),
* the same SeriesDescription once digits are removed ("sa_1", "sa_2" ... or all "cine_sax"),
* distinct positions along the common normal (no two within 0.05 mm); a position acquired twice (a slice
  re-acquired after a failed breath-hold, the same protocol run again) keeps its later series (the higher
  SeriesNumber), as a reader would, and the earlier one is named (:attr:`SliceStack.replaced`); without
  series numbers to tell which is later the group is no stack,
* a **whole stack acquired again** (the same protocol run a second time, re-planned: its positions shifted, or its
  heartbeats giving another number of phases) is not merged with the first: taken in SeriesNumber order, the series
  fall into acquisitions (a series whose position coincides with one already in the current acquisition, or would
  break its regular slice grid, starts the next one); an acquisition of at least :data:`MIN_STACK_SLICES` slices
  whose span covers at least :data:`COVER_SHARE` of an earlier acquisition's slices (itself at least
  :data:`MIN_STACK_SLICES`; fewer are slices acquired again, by the rule above), every series of it numbered after
  every series of the earlier one (equal numbers tell nothing), replaces that one whole (the
  later is used, as for one slice; :attr:`SliceStack.superseded`). Before, the two interleaved into one stack of
  irregular spacing ("slice positions missing" between every other slice) and wrong volumes,

and there are at least :data:`MIN_STACK_SLICES` (3) positions. :meth:`DicomStudyScan.load` with
several series UIDs assembles them exactly as one multi-slice series would be (slices sorted
along the normal, phases by TriggerTime): see :func:`.dicom.load_dicom_folder`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.core.errors import CorruptFileError, InputNotFoundError, NoDicomError
from CardiacLandmarksLib.core.series import CMRSeries
from CardiacLandmarksLib.io import dicom as io_dicom

logger = logging.getLogger(__name__)

MIN_STACK_SLICES = 3
#: a later acquisition replaces an earlier one whole when its span covers at least this share of the earlier's slices
COVER_SHARE = 0.8
#: steps of one regular slice grid are whole multiples of its smallest step within this share (a missing slice: 2x)
_GRID_TOL = 0.15
#: a slice with fewer phases joins a per-slice stack when it has at least this share of the others' phases
MIN_PHASE_SHARE = io_dicom.MIN_PHASE_SHARE
_IOP_TOL = 1e-3
_POS_TOL_MM = 0.05


@dataclass
class SeriesHeader:
    """Header summary of one DICOM series (no pixel data read).

    Attributes:
        series_uid: SeriesInstanceUID; description: SeriesDescription (or ProtocolName);
        series_number: SeriesNumber or None; modality; sop_class: SOP class name.
        is_mr_image: MR objects with grey-level pixel data.
        n_files, n_frames: files and image frames of the series.
        rows, cols: image size (first frame); pixel_spacing: ``(row, column)`` mm or None.
        iop: ImageOrientationPatient of the first frame ``(6,)`` or None.
        normal: unit plane normal ``row x column`` (LPS) or None.
        n_orientations: distinct orientations in the series (3 in a tri-plane localiser).
        heights_mm: sorted distinct slice positions along ``normal`` (mm).
        n_slices: ``len(heights_mm)`` (0 without geometry).
        n_phases: frames per slice when every slice has the same count (or the fewest when they differ by less
            than :data:`.dicom.MIN_PHASE_SHARE`, as the loader reads them), else None.
        trigger_span_ms: max - min TriggerTime over the series (None when any frame lacks it).
        acquisition_span_s: max - min AcquisitionTime (None when absent).
        inversion_times: distinct InversionTime values (ms).
        sequence_name: SequenceName (0018,0024) or ScanningSequence; protocol_name; image_type
            (ImageType joined with backslashes).
        study_uid, frame_of_reference_uid, manufacturer.
        files: the files of the series (sorted).
        damaged: files of the series that are empty/truncated/unreadable.
        patient_id: PatientID of the first file ("" when absent); study_date: its StudyDate (``YYYYMMDD``, "").
    """

    series_uid: str
    description: str
    series_number: int | None
    modality: str
    sop_class: str
    is_mr_image: bool
    n_files: int
    n_frames: int
    rows: int | None
    cols: int | None
    pixel_spacing: tuple[float, float] | None
    iop: np.ndarray | None
    normal: np.ndarray | None
    n_orientations: int
    heights_mm: list[float]
    n_slices: int
    n_phases: int | None
    trigger_span_ms: float | None
    acquisition_span_s: float | None
    inversion_times: list[float]
    sequence_name: str
    protocol_name: str
    image_type: str
    study_uid: str
    frame_of_reference_uid: str
    manufacturer: str
    files: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    patient_id: str = ""
    study_date: str = ""
    #: images found twice (the same SOPInstanceUID and frame in two files: a copied file), counted once
    duplicates: int = 0

    def label(self) -> str:
        """Short name for tables: ``#<number> '<description>'``."""
        num = f"#{self.series_number} " if self.series_number is not None else ""
        return f"{num}'{self.description or '<no description>'}'"


@dataclass
class DicomStudyScan:
    """Result of :func:`scan_study_folder`: headers per series plus the scan to load from."""

    folder: Path
    series: list[SeriesHeader]
    damaged: list[tuple[str, str]]  # (file, reason) for damaged files whose series is unknown
    n_not_dicom: int
    _scan: object = None

    def load(self, series_uids: str | list[str]) -> CMRSeries:
        """Load one series, or several per-slice series as one stack (see module docstring).

        Args:
            series_uids: one SeriesInstanceUID, or a list of them forming one stack.

        Returns:
            :class:`CMRSeries`, pixels float32 ``[t, k, j, i]``, LPS geometry.

        Raises:
            as :func:`.dicom.load_dicom_folder` (CorruptFileError, MissingGeometryError,
            InvalidImageError, NotMRImageError, NoDicomError).
        """
        uids = [series_uids] if isinstance(series_uids, str) else list(series_uids)
        return load_series_group(self._scan, uids, str(self.folder))


def scan_study_folder(folder: str | Path, recursive: bool = True, skip: frozenset[Path] = frozenset()
                      ) -> DicomStudyScan:
    """Header-only scan of a study folder (see module docstring).

    Args:
        folder: folder with the DICOM files of one study (sub-folders included when
            ``recursive``); non-DICOM files are counted and ignored.
        skip: files not to read nor count (archives already unpacked and read from their own folder).

    Returns:
        :class:`DicomStudyScan`, series sorted by series number then UID.

    Raises:
        InputNotFoundError: the folder does not exist.
        NoDicomError: the path is not a folder.
    """
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise InputNotFoundError(f"study folder not found: {folder}")
    if not folder.is_dir():
        raise NoDicomError(f"not a folder: {folder}")
    with io_dicom._quiet_pydicom():
        scan = io_dicom._scan_paths(f for f in io_dicom._iter_files(folder, recursive) if f not in skip)
    return _summarise_scan(scan, folder)


def _summarise_scan(scan, folder: Path) -> DicomStudyScan:
    groups: dict[str, list] = {}
    for o in scan.objects:
        groups.setdefault(o.series_uid, []).append(o)
    damaged_by_uid: dict[str, list[str]] = {}
    loose: list[tuple[str, str]] = []
    for p, reason, uid in scan.corrupt:
        if uid:
            damaged_by_uid.setdefault(uid, []).append(f"{p.name}: {reason}")
        else:
            loose.append((str(p), reason))
    for p in scan.empty:
        loose.append((str(p), "empty (0 bytes)"))
    headers = [_header(uid, objs, damaged_by_uid.get(uid, [])) for uid, objs in groups.items()]
    for uid, dam in damaged_by_uid.items():
        if uid not in groups:  # every file of the series is damaged
            headers.append(SeriesHeader(uid, "", None, "", "", False, 0, 0, None, None, None, None, None, 0, [], 0,
                                        None, None, None, [], "", "", "", "", "", "", [], dam))
    headers.sort(key=lambda h: (h.series_number if h.series_number is not None else 1 << 30, h.series_uid))
    return DicomStudyScan(folder, headers, loose, scan.n_not_dicom, scan)


def _header(uid: str, objs: list, damaged: list[str]) -> SeriesHeader:
    o0 = objs[0]
    frames, seen = [], set()
    for fr in (fr for o in objs for fr in o.frames):  # a copied file holds images already counted: as the loader
        key = (fr.sop_uid, fr.frame)
        if fr.sop_uid and key in seen:
            continue
        seen.add(key)
        frames.append(fr)
    duplicates = sum(len(o.frames) for o in objs) - len(frames)
    is_mr = all(io_dicom._is_mr_image(o) for o in objs)
    iops = [fr.iop for fr in frames if fr.iop is not None]
    distinct: list[np.ndarray] = []
    for v in iops:
        if not any(np.max(np.abs(v - d)) <= _IOP_TOL for d in distinct):
            distinct.append(v)
    iop = iops[0] if iops else None
    normal = None
    heights: list[float] = []
    n_phases = None
    if iop is not None:
        r, c = iop[:3], iop[3:]
        n = np.cross(r, c)
        if np.linalg.norm(n) > 1e-6:
            normal = n / np.linalg.norm(n)
            hs = sorted(float(fr.ipp @ normal) for fr in frames if fr.ipp is not None)
            counts: list[int] = []
            for h in hs:
                if heights and h - heights[-1] <= _POS_TOL_MM:
                    counts[-1] += 1
                else:
                    heights.append(h)
                    counts.append(1)
            if counts and (len(set(counts)) == 1 or min(counts) >= MIN_PHASE_SHARE * max(counts)):
                n_phases = min(counts)  # slices with a few phases less: the loader uses the first phases all have
    trig = [fr.trigger_time for fr in frames]
    trig_span = float(max(trig) - min(trig)) if trig and all(t is not None for t in trig) else None
    acq = [fr.acq_time for fr in frames if fr.acq_time is not None]
    acq_span = float(max(acq) - min(acq)) if len(acq) == len(frames) and acq else None
    inv = sorted({round(float(o.header["inversion_time"]), 1) for o in objs if o.header.get("inversion_time")})
    ps = frames[0].pixel_spacing if frames and frames[0].pixel_spacing is not None else None
    hd = o0.header
    return SeriesHeader(
        series_uid=uid,
        description=o0.description,
        series_number=o0.series_number,
        modality=o0.modality,
        sop_class=io_dicom._sop_name(o0.sop_class_uid),
        is_mr_image=is_mr,
        n_files=len(objs),
        n_frames=len(frames),
        rows=frames[0].rows if frames else None,
        cols=frames[0].cols if frames else None,
        pixel_spacing=(float(ps[0]), float(ps[1])) if ps is not None else None,
        iop=iop,
        normal=normal,
        n_orientations=len(distinct),
        heights_mm=heights,
        n_slices=len(heights),
        n_phases=n_phases,
        trigger_span_ms=trig_span,
        acquisition_span_s=acq_span,
        inversion_times=inv,
        sequence_name=hd.get("sequence_name") or hd.get("scanning_sequence") or "",
        protocol_name=hd.get("protocol_name") or "",
        image_type=hd.get("image_type") or "",
        study_uid=hd.get("study_uid") or "",
        frame_of_reference_uid=hd.get("frame_of_reference_uid") or "",
        manufacturer=hd.get("manufacturer") or "",
        files=sorted(str(o.path) for o in objs),
        damaged=damaged,
        patient_id=str(hd.get("patient_id") or ""),
        study_date=str(hd.get("study_date") or ""),
        duplicates=duplicates,
    )


def description_stem(text: str) -> str:
    """A SeriesDescription without digits, spaces, ``_ - .`` and case: series of one protocol (``sa_1``, ``sa_2``;
    ``cine_sax`` run twice) share it."""
    return re.sub(r"[\d\s_\-.]+", " ", (text or "").lower()).strip()


def _is_perfusion_like(h: SeriesHeader) -> bool:
    if re.search(r"perf|first ?pass", (h.description or "").lower()):
        return True
    span_s = (h.trigger_span_ms / 1000.0) if h.trigger_span_ms is not None else h.acquisition_span_s
    return bool(h.n_phases and h.n_phases >= 20 and span_s is not None and span_s > 3.0)


@dataclass
class SliceStack:
    """One stack of single-slice series (:func:`slice_stacks`).

    Attributes:
        uids: SeriesInstanceUIDs ordered along the common normal, one per slice position.
        replaced: ``(earlier, later)`` SeriesInstanceUID pairs of a position acquired twice: ``later`` (the higher
            SeriesNumber) is in :attr:`uids`, ``earlier`` is not used.
        phases_per_slice: see below (None: every slice has the same number).
        superseded: ``(earlier, later)`` of a stack acquired again whole: ``earlier`` the SeriesInstanceUIDs of the
            first acquisition (not used), ``later`` those of the acquisition that replaced it (SeriesNumber order).
    """

    uids: list[str]
    replaced: list[tuple[str, str]] = field(default_factory=list)
    #: phases per slice (in :attr:`uids` order) when they differ; the stack keeps the first ``min`` of each
    phases_per_slice: list[int] | None = None
    superseded: list[tuple[list[str], list[str]]] = field(default_factory=list)


def _on_one_grid(heights: list[float]) -> bool:
    """Whether slice positions (mm, along the normal) lie on one regular grid: no two within
    :data:`_POS_TOL_MM`, every step a whole multiple of the smallest (within :data:`_GRID_TOL`; a missing slice is a
    double step)."""
    hs = np.sort(np.asarray(heights, float))
    steps = np.diff(hs)
    if len(steps) and steps.min() <= _POS_TOL_MM:
        return False
    if len(steps) <= 1:
        return True
    ratio = steps / steps.min()
    return bool(np.all(np.abs(ratio - np.round(ratio)) <= _GRID_TOL))


def _acquisitions(items: list[tuple[float, SeriesHeader]]) -> list[list[tuple[float, SeriesHeader]]]:
    """``(height, header)`` of one group in SeriesNumber order, cut into acquisitions: a series starts the next one
    when its position coincides with one of the current acquisition or breaks its regular grid (:func:`_on_one_grid`).
    A slice re-acquired after a failed breath-hold also starts one; :func:`_supersede` then merges it back."""
    blocks: list[list[tuple[float, SeriesHeader]]] = []
    for height, h in items:
        if blocks and _on_one_grid([x for x, _ in blocks[-1]] + [height]):
            blocks[-1].append((height, h))
        else:
            blocks.append([(height, h)])
    return blocks


def _supersede(blocks: list[list[tuple[float, SeriesHeader]]]
               ) -> tuple[list[tuple[float, SeriesHeader]], list[tuple[list[str], list[str]]]]:
    """The series left once every acquisition replaced whole by a later one is dropped (rule in the module
    docstring), and the ``(earlier, later)`` UID lists of those replacements."""
    gone: set[int] = set()
    pairs: list[tuple[list[str], list[str]]] = []
    for j in range(len(blocks) - 1, 0, -1):
        later = blocks[j]
        if j in gone or len(later) < MIN_STACK_SLICES:
            continue
        hs = sorted(x for x, _ in later)
        margin = 0.5 * float(np.min(np.diff(hs)))
        lo, hi = hs[0] - margin, hs[-1] + margin
        first_number = min(h.series_number for _, h in later)
        for i in range(j):
            if i in gone or len(blocks[i]) < MIN_STACK_SLICES:  # a slice or two acquired again: per position
                continue
            if max(h.series_number for _, h in blocks[i]) >= first_number:  # equal numbers: no telling which is later
                continue
            inside = sum(lo <= x <= hi for x, _ in blocks[i])
            if inside >= COVER_SHARE * len(blocks[i]):
                gone.add(i)
                pairs.append(([h.series_uid for _, h in blocks[i]], [h.series_uid for _, h in later]))
    left = [item for k, b in enumerate(blocks) if k not in gone for item in b]
    return left, pairs[::-1]


def slice_stacks(headers: list[SeriesHeader]) -> list[SliceStack]:
    """Groups of single-slice series that form one stack (rules in the module docstring).

    Args:
        headers: :class:`SeriesHeader` list of one folder.

    Returns:
        :class:`SliceStack` list, each with at least :data:`MIN_STACK_SLICES` positions; series in no group are
        left out.
    """
    cands = [h for h in headers if h.is_mr_image and h.n_slices == 1 and h.n_orientations == 1
             and h.iop is not None and h.n_phases and not h.damaged and not _is_perfusion_like(h)]
    groups: list[list[SeriesHeader]] = []
    for h in cands:
        for g in groups:
            r = g[0]
            if (np.max(np.abs(h.iop - r.iop)) <= _IOP_TOL and (h.rows, h.cols) == (r.rows, r.cols)
                    and h.pixel_spacing is not None and r.pixel_spacing is not None
                    and np.allclose(h.pixel_spacing, r.pixel_spacing, atol=1e-4)
                    and h.study_uid == r.study_uid
                    and _same_cine_timing(h, r)
                    and description_stem(h.description) == description_stem(r.description)):
                g.append(h)
                break
        else:
            groups.append([h])
    out = []
    for g in groups:
        n = g[0].normal
        hs = [((float(h.heights_mm[0]) if h.normal @ n > 0 else -float(h.heights_mm[0])), h) for h in g]
        superseded: list[tuple[list[str], list[str]]] = []
        if all(h.series_number is not None for _, h in hs):
            hs, superseded = _supersede(_acquisitions(sorted(hs, key=lambda x: (x[1].series_number,
                                                                                 x[1].series_uid))))
        hs = sorted(hs, key=lambda x: (x[0], x[1].series_uid))
        kept: list[tuple[float, SeriesHeader]] = []
        replaced: list[tuple[str, str]] = []
        for height, h in hs:
            if not kept or height - kept[-1][0] > _POS_TOL_MM:
                kept.append((height, h))
                continue
            other = kept[-1][1]  # the same position twice: the later acquisition (higher SeriesNumber) is used
            if h.series_number is None or other.series_number is None or h.series_number == other.series_number:
                kept = []  # no telling which is later: not a stack
                break
            earlier, later = (other, h) if h.series_number > other.series_number else (h, other)
            kept[-1] = (kept[-1][0], later)
            replaced.append((earlier.series_uid, later.series_uid))
        if len(kept) < MIN_STACK_SLICES:
            continue
        counts = [h.n_phases for _, h in kept]
        out.append(SliceStack([h.series_uid for _, h in kept], replaced,
                              counts if len(set(counts)) > 1 else None, superseded))
    return out


def _phase_interval_ms(h: SeriesHeader) -> float | None:
    """Mean TriggerTime step of a single-slice cine (ms), None without trigger times."""
    if h.trigger_span_ms is None or not h.n_phases or h.n_phases < 2:
        return None
    return h.trigger_span_ms / (h.n_phases - 1)


def _same_cine_timing(h: SeriesHeader, r: SeriesHeader) -> bool:
    """Two single-slice cines that can be slices of one stack: the same number of phases, or the same phase interval
    (within 10 %, at least 2 ms) with the shorter holding at least :data:`MIN_PHASE_SHARE` of the longer's phases."""
    if h.n_phases == r.n_phases:
        return True
    dh, dr = _phase_interval_ms(h), _phase_interval_ms(r)
    if dh is None or dr is None:
        return False
    return (abs(dh - dr) <= max(0.1 * max(dh, dr), 2.0)
            and min(h.n_phases, r.n_phases) >= MIN_PHASE_SHARE * max(h.n_phases, r.n_phases))


def fewer_phases_text(stack: SliceStack) -> str:
    """What a stack whose slices have different numbers of phases says: which slices have fewer, and what the stack
    keeps (``""`` when every slice has the same number)."""
    counts = stack.phases_per_slice
    if not counts:
        return ""
    most, least = max(counts), min(counts)
    short = [k for k, n in enumerate(counts) if n < most]
    if len(short) == 1:
        which = f"slice {short[0] + 1} of {len(counts)} has {counts[short[0]]} phases"
    else:
        which = (f"slices {', '.join(str(k + 1) for k in short)} of {len(counts)} have "
                 f"{', '.join(str(counts[k]) for k in short)} phases")
    their = "its breath-hold" if len(short) == 1 else "their breath-holds"
    return (f"{which}, the others {most} (a faster heart rate in {their}, with prospective triggering): "
            f"the stack keeps the first {least} phases of every slice, leaving out up to {most - least} "
            "late-diastolic phases of the others")


def single_stack(scan, where: str = "") -> list[str] | None:
    """The per-slice series of an :mod:`.dicom` scan when **all** its MR image series form one
    stack (:func:`slice_stacks`), else None. Used by :func:`.dicom.load_dicom_folder` so
    that ``detect`` on such a folder loads the stack instead of stopping at 'several series'."""
    headers = _summarise_scan(scan, Path(where or ".")).series
    mr = {h.series_uid for h in headers if h.is_mr_image}
    stacks = slice_stacks(headers)
    if len(stacks) == 1 and (set(stacks[0].uids) | {e for e, _ in stacks[0].replaced}
                             | {u for e, _ in stacks[0].superseded for u in e}) == mr:
        by_uid = {h.series_uid: h for h in headers}
        for earlier_uids, later_uids in stacks[0].superseded:
            logging.getLogger("CardiacLandmarksLib.progress").info(
                "note: %s", superseded_text([by_uid[u] for u in earlier_uids], [by_uid[u] for u in later_uids]))
        for earlier, later in stacks[0].replaced:
            logging.getLogger("CardiacLandmarksLib.progress").info(
                "note: %s", repeated_slice_text(stacks[0], by_uid[earlier], by_uid[later]))
        if stacks[0].phases_per_slice:
            logging.getLogger("CardiacLandmarksLib.progress").info("note: %s", fewer_phases_text(stacks[0]))
        return stacks[0].uids
    return None


def stack_label(headers: list[SeriesHeader]) -> str:
    """Short name of a per-slice stack for tables: ``#<first>-<last> '<description>'`` (by SeriesNumber)."""
    nums = [h.series_number for h in headers if h.series_number is not None]
    return (f"#{min(nums)}-{max(nums)} '{headers[0].description}'" if nums
            else f"'{headers[0].description}' x{len(headers)}")


def superseded_text(earlier: list[SeriesHeader], later: list[SeriesHeader]) -> str:
    """What a stack acquired again whole says (:attr:`SliceStack.superseded`): which acquisition is used, which is
    left out, each with its slices x phases."""
    def size(hs: list[SeriesHeader]) -> str:
        phases = sorted({h.n_phases for h in hs if h.n_phases})
        ph = (f"{phases[0]}" if len(phases) == 1 else f"{phases[0]}-{phases[-1]}") if phases else "?"
        return f"{len(hs)} slices x {ph} phases"
    return (f"the stack was acquired twice: {stack_label(later)} ({size(later)}, acquired later) is used, "
            f"{stack_label(earlier)} ({size(earlier)}) is left out")


def repeated_slice_text(stack: SliceStack, earlier: SeriesHeader, later: SeriesHeader) -> str:
    """What a stack with a position acquired twice says: which slice, which series is used, which is left out."""
    k = stack.uids.index(later.series_uid)
    return (f"slice {k + 1} of {len(stack.uids)} was acquired twice: {later.label()} (acquired later) is used in the "
            f"stack, {earlier.label()} is left out")


def load_series_group(scan, series_uids: list[str], where: str) -> CMRSeries:
    """Assemble the image objects of ``series_uids`` (from an :mod:`.dicom` scan) as one series.

    One UID behaves as :func:`.dicom.load_dicom_folder` with ``series_uid``; several are
    assembled into one stack (per-slice series). ``metadata["series_uids"]`` lists them and
    ``metadata["assembled_from"]`` gives their count when more than one.

    Raises:
        NoDicomError: a UID is not in the scan; CorruptFileError: a file of the series is
        damaged; others as :func:`.dicom.load_dicom_folder`.
    """
    uids = list(series_uids)
    with io_dicom._quiet_pydicom():
        if len(uids) == 1:
            series = io_dicom._load_from_scan(scan, where, uids[0])
        else:
            present = {o.series_uid for o in scan.objects}
            missing = [u for u in uids if u not in present]
            if missing:
                raise NoDicomError(f"series {missing[0]} not found in {where}")
            chosen = [o for o in scan.objects if o.series_uid in set(uids)]
            for o in chosen:
                io_dicom._check_mr_image(o)
            damaged = [c for c in scan.corrupt if c[2] in set(uids)]
            if damaged:
                p, reason, _ = damaged[0]
                raise CorruptFileError(f"{p.name}: {reason}: {p}")
            series = io_dicom._assemble(chosen, where, common_phases=True)  # grouped by slice_stacks' timing rule
            series.metadata["assembled_from"] = len(uids)
            logger.info("%s: %d single-slice series assembled into one %d-slice stack", where, len(uids),
                        series.n_slices)
    series.metadata["series_uids"] = uids
    return series
