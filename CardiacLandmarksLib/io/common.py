"""Helpers shared by the loaders (:mod:`.io_image`, :mod:`.io_dicom`).

* :func:`finalize_series`: the last step of every loader; checks the pixels and the geometry
  of a :class:`~.series.CMRSeries` and raises a named error when they are unusable.
* :func:`guess_view` / :func:`guess_sequence`: best-effort labels from a series description
  or file name (keywords), with a fallback on the number of phases and slices.
"""

from __future__ import annotations

import logging
import re

import numpy as np

from CardiacLandmarksLib.core.errors import InvalidImageError, MissingGeometryError
from CardiacLandmarksLib.core.series import CMRSeries

logger = logging.getLogger(__name__)

# keyword patterns, matched on the lower-cased text with every non-alphanumeric run replaced by a
# single space (so "SA_CINE", "sa-cine" and "SA cine" all read "sa cine")
_VIEW_PATTERNS: tuple[tuple[str, str], ...] = (
    ("4ch", r"\b(4 ?ch|4 ?cv|4c|hla|four chamber|4 chamber)\b"),
    ("3ch", r"\b(3 ?ch|3 ?cv|3c|lvot|three chamber|3 chamber)\b"),
    ("2ch", r"\b(2 ?ch|2 ?cv|2c|vla|two chamber|2 chamber)\b"),
    ("sax", r"\b(sax|sa|short ?axis|sh ?ax|sa ?stack|sastack)\b"),
)
_SEQUENCE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("perfusion", r"(perf|first ?pass|\bfpp\b|\bstress\b|\brest\b|adenosine|regadenoson)"),
    ("t1", r"(molli|t1 ?map|\bt1\b|\bt1 ?mapping\b|\bsasha\b)"),
    ("lge", r"(\blge\b|\bde\b|\bpsir\b|delayed|\blate\b|viability|\bmde\b|\bscar\b)"),
    ("cine", r"(cine|fiesta|trufi|\bssfp\b|\bbssfp\b|\btfe\b|balanced)"),
)
# perfusion series are acquired in short axis; these position words confirm it
_SAX_POSITION = r"\b(base|basal|mid|apex|apical)\b"


#: files that are ZIP archives inside but documents to a user (a report beside the images): never unpacked
_DOCUMENT_SUFFIXES = (".docx", ".xlsx", ".pptx", ".odt", ".ods", ".odp", ".epub", ".jar")


def archive_kind(path) -> str | None:
    """``"ZIP"`` or ``"tar"`` when ``path`` is such an archive (by its content, whatever its name), else None.

    Studies often arrive packed (a PACS export, a data share); :mod:`CardiacLandmarksLib.io.archive` unpacks them
    for every command. A ZIP cut short (its directory at the end lost) is still a ZIP here, by its first bytes, so
    that unpacking it names the damage. Every file of a study folder is asked, so the first bytes decide (one short
    read); only a file they mark as compressed or tar is opened as a tar, and only a ``.zip`` that does not start
    as one is searched for a ZIP directory. Office documents (``.docx`` ...) are ZIPs inside but not archives here.
    """
    import tarfile
    import zipfile
    from pathlib import Path

    p = Path(path)
    name = p.name.lower()
    if not p.is_file() or name.endswith((".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".dcm", *_DOCUMENT_SUFFIXES)):
        return None
    try:
        with open(p, "rb") as f:
            head = f.read(262)
        if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):  # a ZIP's first entry (or an empty ZIP)
            return "ZIP"
        if name.endswith(".zip") and zipfile.is_zipfile(p):  # data before its first entry (self-extracting)
            return "ZIP"
        compressed = head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00"
        if (compressed or head[257:262] == b"ustar") and tarfile.is_tarfile(p):
            return "tar"
    except OSError:
        return None
    return None


def _normalise(text: str) -> str:
    return " ".join(re.split(r"[^a-z0-9]+", (text or "").lower())).strip()


def guess_view(text: str, sequence: str = "unknown") -> str:
    """Guess the cardiac view from a description or file name.

    Keywords (case-insensitive, on word boundaries after replacing ``_``/``-``/spaces):
    ``4ch``/``4cv``/``4c``/``hla`` -> ``"4ch"``; ``3ch``/``3c``/``lvot`` -> ``"3ch"``;
    ``2ch``/``2c``/``vla`` -> ``"2ch"``; ``sax``/``sa``/``short axis`` -> ``"sax"``.
    A first-pass perfusion series (``sequence == "perfusion"``) named with a slice position
    (base/mid/apex) is ``"sax"``, as perfusion is acquired in short axis.

    Returns:
        one of :data:`~.series.VIEWS`; ``"unknown"`` when nothing matches (a plain "LA"
        long-axis name does not say which chamber view it is).
    """
    t = _normalise(text)
    for view, pattern in _VIEW_PATTERNS:
        if re.search(pattern, t):
            return view
    if sequence == "perfusion" and re.search(_SAX_POSITION, t):
        return "sax"
    return "unknown"


#: a series of unknown timing whose last frame correlates at least this much with its first is read as a
#: cine (see :func:`first_last_correlation`)
CYCLIC_MIN_CORRELATION = 0.95


def first_last_correlation(pixels: np.ndarray) -> float:
    """Pearson correlation between the first and the last frame, over the central half of the field of view.

    A cine covers one cardiac cycle: its last phase is late diastole, next to the end-diastolic first
    phase, so the two frames are nearly the same image. A first-pass perfusion series runs over many
    heartbeats: its first frames are before the contrast arrives and its last ones after the first pass
    (recirculation), usually with breathing in between, so they differ.

    Measured on the shared data (issue 16, 23rd session; /work/runs/s23/dyn.py): 11 long-axis cines
    (UK Biobank demo and CineMA, M&Ms-2) and the Sunnybrook SAX cine 0.99-1.00; 45 first-pass perfusion
    series (44 mlperf, GE DICOM) 0.19-0.88. :data:`CYCLIC_MIN_CORRELATION` (0.95) sits in that gap.

    Args:
        pixels: ``[t, k, j, i]`` image, T >= 2.

    Returns:
        correlation in [-1, 1]; 1.0 when both frames are constant and equal, 0.0 when one is constant
        and they differ.
    """
    px = np.asarray(pixels)
    nj, ni = px.shape[2], px.shape[3]
    crop = (slice(nj // 4, 3 * nj // 4 + 1), slice(ni // 4, 3 * ni // 4 + 1))
    a = np.asarray(px[0][(slice(None), *crop)], np.float64).ravel()
    b = np.asarray(px[-1][(slice(None), *crop)], np.float64).ravel()
    if a.std() == 0.0 or b.std() == 0.0:
        return 1.0 if np.array_equal(a, b) else 0.0
    return float(np.corrcoef(a, b)[0, 1])


def lge_by_inversion(n_phases: int | None, inversion_time: float | None) -> bool:
    """True for a single-phase image with an InversionTime (ms) that no keyword named: an inversion-recovery image
    that is not a cine, i.e. late gadolinium enhancement. The one rule of the DICOM loader and the study routing."""
    return (n_phases or 1) == 1 and bool(inversion_time)


def guess_sequence(
    text: str, n_phases: int, n_slices: int, trigger_times: np.ndarray | None = None,
    pixels: np.ndarray | None = None, evidence: list[str] | None = None,
) -> str:
    """Guess the sequence type from a description/file name, else from the shape and frames of the series.

    Keywords first (see the module source): perfusion (``perf``, ``first pass``, ``stress``,
    ``rest`` ...), t1 (``molli``, ``t1map`` ...), lge (``lge``, ``de``, ``psir``, ``delayed``
    ...), cine (``cine``, ``fiesta``, ``trufi``, ``ssfp`` ...). Without a keyword, on <= 4 slices
    with >= 20 phases:

    * trigger times spanning more than 3 s -> ``"perfusion"`` (one image per heartbeat);
    * unknown timing, ``pixels`` given -> ``"cine"`` when the last frame is nearly the first
      (:func:`first_last_correlation` >= :data:`CYCLIC_MIN_CORRELATION`: one cardiac cycle), else
      ``"perfusion"``;
    * unknown timing, no pixels -> ``"perfusion"`` from 40 phases.

    Otherwise >= 10 phases spanning less than 3 s (or of unknown timing) -> ``"cine"`` (phases of
    one RR interval); else ``"unknown"``.

    Args:
        text: SeriesDescription/ProtocolName or file name.
        n_phases: T; n_slices: K.
        trigger_times: ``(T,)`` ms or None.
        pixels: ``[t, k, j, i]`` image, or None (description-only guess).
        evidence: when given, a sentence saying which rule decided is appended to it.

    Returns:
        one of :data:`~.series.SEQUENCES`.
    """
    def said(seq: str, why: str) -> str:
        if evidence is not None:
            evidence.append(why)
        return seq

    t = _normalise(text)
    for seq, pattern in _SEQUENCE_PATTERNS:
        if re.search(pattern, t):
            return said(seq, f"{text!r} names {seq}")
    span = None
    if trigger_times is not None and len(trigger_times) > 1:
        span = float(np.nanmax(trigger_times) - np.nanmin(trigger_times))
    if n_slices <= 4 and span is not None and span > 3000.0 and n_phases >= 20:
        return said("perfusion", f"{n_phases} frames over {span / 1000.0:.0f} s: one image per heartbeat")
    if n_slices <= 4 and span is None and n_phases >= 20 and pixels is not None:
        r = first_last_correlation(pixels)
        if r >= CYCLIC_MIN_CORRELATION:
            return said("cine", f"{n_phases} frames of unknown timing; the last frame is nearly the first "
                                f"(r = {r:.2f} >= {CYCLIC_MIN_CORRELATION}): one cardiac cycle")
        return said("perfusion", f"{n_phases} frames of unknown timing; the last frame differs from the first "
                                 f"(r = {r:.2f} < {CYCLIC_MIN_CORRELATION}): not one cardiac cycle")
    if n_slices <= 4 and span is None and n_phases >= 40:
        return said("perfusion", f"{n_phases} frames of unknown timing")
    if n_phases >= 10 and (span is None or span <= 3000.0):
        return said("cine", f"{n_phases} phases" + (f" within {span:.0f} ms" if span is not None else ""))
    return "unknown"


def finalize_series(series: CMRSeries) -> CMRSeries:
    """Check a freshly loaded series and make its arrays canonical (in place, returned).

    Makes ``pixels`` a C-contiguous float32 ``[t, k, j, i]`` array, ``direction`` ``(3, 3)``
    float, ``slice_origins`` ``(K, 3)`` float, ``trigger_times`` ``(T,)`` float or None, and fills
    ``view``/``sequence`` from the description when they are still ``"unknown"``.

    Raises:
        InvalidImageError: pixels not 4-D, a direction not 3 x 3 or not one slice origin per slice
            (:meth:`CMRSeries.check_shapes`), pixels empty or holding NaN/inf values (the message gives
            the source and the number of bad voxels).
        MissingGeometryError: spacing not positive/finite, direction columns not unit vectors,
            or slice origins not finite / not increasing along ``direction[:, 2]``.
    """
    name = series.source or series.description or "<series>"
    series.check_shapes()  # 4-D pixels, 3 x 3 direction, one slice origin per slice
    px = np.asarray(series.pixels)
    if px.size == 0:
        raise InvalidImageError(f"{name}: expected a non-empty [t, k, j, i] image, got shape {px.shape}")
    px = np.ascontiguousarray(px, dtype=np.float32)
    bad = ~np.isfinite(px)
    if bad.any():
        n_nan = int(np.isnan(px).sum())
        n_inf = int(bad.sum()) - n_nan
        raise InvalidImageError(
            f"{name}: image holds non-finite values ({n_nan} NaN, {n_inf} inf voxels of {px.size}); "
            "cannot use it"
        )
    if float(px.max()) == float(px.min()):
        logger.warning("%s: image is constant (all voxels = %g)", name, float(px.min()))
    series.pixels = px

    spacing = tuple(float(s) for s in series.spacing)
    if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise MissingGeometryError(f"{name}: invalid voxel spacing {spacing} (must be 3 positive mm values)")
    series.spacing = spacing  # type: ignore[assignment]

    d = np.asarray(series.direction, dtype=float)
    if not np.all(np.isfinite(d)) or not np.allclose(np.linalg.norm(d, axis=0), 1.0, atol=1e-3):
        raise MissingGeometryError(f"{name}: direction columns are not unit vectors: {d.tolist()}")
    series.direction = d

    k = px.shape[1]
    origins = np.asarray(series.slice_origins, dtype=float)
    if not np.all(np.isfinite(origins)):
        raise MissingGeometryError(f"{name}: slice origins are not all finite")
    if k > 1 and np.any(np.diff(origins @ d[:, 2]) <= 0):
        raise MissingGeometryError(f"{name}: slice origins do not increase along the slice normal")
    series.slice_origins = origins

    if series.trigger_times is not None:
        tt = np.asarray(series.trigger_times, dtype=float).reshape(-1)
        if tt.shape[0] != px.shape[0] or not np.all(np.isfinite(tt)):
            logger.warning("%s: dropping trigger times that do not fit the %d phases", name, px.shape[0])
            tt = None
        series.trigger_times = tt

    if series.sequence == "unknown":
        why: list[str] = []
        series.sequence = guess_sequence(series.description, px.shape[0], k, series.trigger_times, px, why)
        if why:
            series.metadata["sequence_evidence"] = why[0]
    if series.view == "unknown":
        series.view = guess_view(series.description, series.sequence)
    return series
