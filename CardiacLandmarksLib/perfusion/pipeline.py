"""Perfusion study analysis: one pipeline for the CLI, the Python console and the Slicer panel.

Per series (one SAX slice, 2D+T; stress or rest; base, mid or apex):

1. segmentation of LV myocardium and blood pool on every frame with rigid motion tracking
   (:mod:`.perfusion_seg`), frames aligned to the reference frame;
2. pixel maps of the semi-quantitative indices (:mod:`.perfusion`), and of MBF by
   Fermi deconvolution (:mod:`.fermi`) when the series is in contrast concentration and an
   AIF is given, or a given MBF map; the endocardial rim (myocardial pixels touching the
   blood pool) is left out of every value (:func:`.perfusion.analysis_mask`);
3. RV insertion points: given by the user > SAX landmark model on the frame of peak RV
   enhancement (:func:`.pipeline.detect_landmarks`) > RV found from its early enhancement
   (:func:`.perfusion.estimate_rv_insertions`); C-LV = blood-pool centroid;
4. AHA sectors (:mod:`.aha`) and per-segment mean +- sd of every map.

Moving an RV insertion point only re-runs step 4 (:func:`set_rvi`), so the Slicer panel can
recompute instantly. Study level: :func:`summarise` pools segments over slices per condition,
computes global values and stress/rest reserve. A segment value's trust includes its A-RVI anchor
(:func:`anchor_sources`); a global value's does not, since the sectors only divide the myocardium
(:func:`mask_sources`).

Points are ``(i, j)`` in the pixel grid of the series' **reference frame**
(``analysis.seg.reference_frame``); LPS via ``series.ijk_to_lps((i, j, 0))``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from CardiacLandmarksLib.core.errors import CardiacLandmarksError, MissingGeometryError, PerfusionInputError
from CardiacLandmarksLib.core.landmarks import Measurement, Source, measurement_status
from CardiacLandmarksLib.core.series import CMRSeries
from CardiacLandmarksLib.io.checks import check_frame_interval
from CardiacLandmarksLib.perfusion import aha, fermi
from CardiacLandmarksLib.perfusion import analysis as perfusion
from CardiacLandmarksLib.perfusion import segmentation as ps

logger = logging.getLogger(__name__)

CONDITIONS = ("stress", "rest")

#: confidence given to RV insertion points found from the early RV enhancement (the fallback): a
#: nominal value below the 0.5 high/low threshold of the landmark models, so they are flagged low,
#: drawn unselected in Slicer and every sector value anchored on them has status review
FALLBACK_RVI_CONFIDENCE = 0.25
#: a segment value from fewer myocardial pixels than this (per condition, pooled over slices) is n/a
MIN_SEGMENT_PIXELS = 10
#: plausible range of a segment's stress/rest reserve (MPRI or MPR); outside it the value is review
#: (published MPRI/MPR of normal and ischaemic myocardium lie within about 0.5-4; a ratio outside it
#: comes from a near-zero or noisy rest value)
PLAUSIBLE_RESERVE = (0.3, 4.0)
#: plausible MBF range (ml/min/g) of a segment mean; outside it the value is review
PLAUSIBLE_MBF = (0.1, 8.0)

#: metric -> (label, unit template); {t} = time unit of the series
METRICS = {
    "mbf": ("MBF (Fermi)", "ml/min/g"),
    "upslope_index": ("upslope index (myocardium / LV blood pool)", "ratio"),
    "peak_enhancement": ("peak enhancement", "SI"),
    "upslope": ("upslope", "SI/{t}"),
    "time_to_peak": ("time to peak (from LV foot)", "{t}"),
}


def condition_from_name(name: str) -> str | None:
    """``"stress"`` / ``"rest"`` named in a series or file name, or None."""
    s = name.lower()
    if re.search(r"stress|adenosin|regadenoson|dipyridamol|vasodilat", s):
        return "stress"
    if re.search(r"(?<![a-z])rest(?![a-z])|_rest|rest_", s):
        return "rest"
    return None


def input_condition(inp: SeriesInput) -> str | None:
    """The condition of a perfusion input: the one given (:attr:`SeriesInput.condition`), else the one its name, file
    name or series description states (:func:`condition_from_name`); None when none does (analysed as
    ``"perfusion"``)."""
    s = inp.series
    return (inp.condition or condition_from_name(inp.name or Path(str(s.source)).name)
            or condition_from_name(str(s.description or "")))


@dataclass
class SeriesInput:
    """One perfusion slice to analyse.

    Attributes:
        series: the loaded series (``pixels [t, 1, j, i]``).
        name: output file stem (default: the file name / series description).
        condition: ``"stress"``, ``"rest"`` or None (from the name, else ``"perfusion"``).
        level: ``"base"``, ``"mid"``, ``"apex"`` or None (from the name, else by position).
        rvi_lps: user RV insertion points ``{"A-RVI": xyz, "I-RVI": xyz}`` in LPS mm (on the
            slice plane), or None.
        aif: AIF curve (one value per frame, same units as the pixels) for Fermi MBF, or None.
        concentration: True when the pixels are contrast concentrations (mmol/L) — required
            for Fermi MBF.
        dt_s: frame interval in s for Fermi MBF (default: from trigger times); for frames without timing also
            the time axis of the semi-quantitative indices (upslope per s, time to peak in s).
        mbf_map: precomputed MBF map ``[j, i]`` (ml/min/g) in the series grid, or None.
    """

    series: CMRSeries
    name: str = ""
    condition: str | None = None
    level: str | None = None
    rvi_lps: dict | None = None
    aif: np.ndarray | None = None
    concentration: bool = False
    dt_s: float | None = None
    mbf_map: np.ndarray | None = None

    def __post_init__(self) -> None:
        check_frame_interval(self.dt_s)  # a value in milliseconds is refused here, before any work


def frames_timed(series) -> bool:
    """True when the frames of a perfusion series carry their own timing (trigger times a heartbeat apart:
    :func:`CardiacLandmarksLib.perfusion.analysis.time_axis`); False for frame indices only (QPerf's Analyze files)."""
    return perfusion.time_axis(series.trigger_times, series.n_phases)[1] == "s"


def mbf_missing(inp: SeriesInput) -> str:
    """What Fermi MBF from ``inp.aif`` still needs: ``""`` (nothing), ``"concentration"`` (the pixels are not marked
    as contrast concentration) or ``"frame interval"`` (no timing in the frames and no ``dt_s``). The one rule:
    :func:`analyse_series` warns on the first and refuses the second; a study leaves the AIF out and says what to
    give (:func:`CardiacLandmarksLib.study.tasks.run_perfusion`)."""
    if not inp.concentration:
        return "concentration"
    if inp.dt_s is None and not frames_timed(inp.series):
        return "frame interval"
    return ""


@dataclass
class SliceAnalysis:
    """Everything computed for one series (see module docstring)."""

    name: str
    condition: str
    level: str
    series: CMRSeries
    seg: ps.PerfusionSegmentation
    times: np.ndarray
    time_unit: str
    maps: dict[str, np.ndarray]
    blood_pool: dict
    center_ij: np.ndarray
    seen_from_apex: bool
    orientation_note: str
    a_rvi_ij: np.ndarray | None = None
    i_rvi_ij: np.ndarray | None = None
    rvi_source: str = ""
    rvi_frame: int | None = None
    #: trust of the RV insertion points: ``{"A-RVI": (confidence, flag), "I-RVI": (...)}``; user points
    #: are high (1.0), the SAX model's keep their PHD-Net confidence and flag, the RV-enhancement
    #: fallback is low (:data:`FALLBACK_RVI_CONFIDENCE`)
    rvi_trust: dict = field(default_factory=dict)
    segments: np.ndarray | None = None
    stats: dict[str, dict[int, dict]] = field(default_factory=dict)
    fermi_info: dict = field(default_factory=dict)
    n_rim_excluded: int = 0
    warnings: list[str] = field(default_factory=list)
    #: the warnings (each also in ``warnings``) that do not bear on the series' global value: the RV insertion
    #: points and the slice level, which move the AHA sectors only (:func:`mask_sources`), and a stress/rest
    #: mismatch, which drops the reserve instead (:func:`analyse_perfusion`)
    warnings_beside_global: list[str] = field(default_factory=list)
    #: the input checks' warnings on the series (each also in ``warnings``; an incomplete series analysed with
    #: ``allow_incomplete``, a placeholder voxel size ...): a source ``input`` flagged review of every value the
    #: series contributes to (:func:`_pool`), as :func:`CardiacLandmarksLib.io.checks.mark_input_warnings` does for
    #: landmark measurements
    input_warnings: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        """One line for a console: the series, its condition and level, where its RV insertions came from and
        its warnings, not its frames, masks and maps."""
        return (f"SliceAnalysis({self.name!r}: {self.condition} {self.level}, {self.series.n_phases} frames, "
                f"RVI from {self.rvi_source or 'none'}, {len(self.warnings)} warning(s))")

    @property
    def reference_image(self) -> np.ndarray:
        return self.series.pixels[self.seg.reference_frame, 0]

    def display_frame(self) -> int:
        """Frame with the best blood-pool / myocardium contrast (for pictures), from the LV foot on
        (contrast median-filtered over 3 frames, so a single corrupted frame is never chosen)."""
        s = self.series.pixels[:, 0]
        m = self.seg.masks
        score = np.full(len(s), -np.inf)
        for t in range(self.seg.timing.foot, len(s)):
            bp, myo = s[t][m[t] == 2], s[t][m[t] == 1]
            if bp.size and myo.size:
                score[t] = (bp.mean() - myo.mean()) / (s[t][m[t] > 0].std() + 1e-6)
        if not np.isfinite(score).any():
            return self.seg.reference_frame
        sm = ndimage.median_filter(np.where(np.isfinite(score), score, np.nanmin(score[np.isfinite(score)])), 3,
                                   mode="nearest")
        sm[~np.isfinite(score)] = -np.inf
        return int(np.argmax(sm))

    def display_image(self) -> tuple[int, np.ndarray]:
        """``(frame, image [j, i])`` of :meth:`display_frame` moved into the reference frame's position."""
        t = self.display_frame()
        di, dj = self.seg.offsets_ij[t]
        return t, ndimage.shift(self.series.pixels[t, 0].astype(np.float32), (-dj, -di), order=1, mode="nearest")

    def segments_per_frame(self) -> np.ndarray:
        """AHA segment maps ``[t, j, i]`` following the tracked motion (0 off the myocardium)."""
        out = np.zeros(self.seg.masks.shape, np.uint8)
        if self.segments is None:
            return out
        for t, (di, dj) in enumerate(self.seg.offsets_ij):
            out[t] = ndimage.shift(self.segments.astype(np.uint8), (dj, di), order=0, mode="constant", cval=0)
        return out

    def rvi_in_frame(self, t: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(A-RVI, I-RVI)`` as ``(2,)`` (i, j) pixel positions in frame ``t`` (the reference-frame points moved by the
        frame's motion offset, :attr:`.segmentation.PerfusionSegmentation.offsets_ij`); None where not found.
        """
        off = self.seg.offsets_ij[t]
        return (None if self.a_rvi_ij is None else self.a_rvi_ij + off,
                None if self.i_rvi_ij is None else self.i_rvi_ij + off)


# --------------------------------------------------------------------------- per series


def refuse_one_slice_options(name: str, n_slices: int, given: Sequence[str]) -> None:
    """Refuse the options that name one slice (its level, its RV insertions, its MBF map) for an input of several
    slices (:func:`slice_series`); one rule and one text for the command line and the Slicer section.

    Args:
        name: the input's name; n_slices: its slices; given: the options given for it, as its user names them
            (``["--level"]``, ``["a level", "an MBF map"]``).

    Raises:
        PerfusionInputError: ``n_slices > 1`` and an option given.
    """
    if n_slices > 1 and given:
        one = len(given) == 1
        raise PerfusionInputError(f"{name} holds {n_slices} slices: {' and '.join(given)} name{'s' if one else ''} "
                                  f"one slice; leave {'it' if one else 'them'} out for this input (the levels come "
                                  "from the slice positions) or give each slice as its own input")


def slice_series(series: CMRSeries, name: str) -> list[tuple[str, CMRSeries]]:
    """The slices of a perfusion series as the inputs :func:`analyse_series` takes (one slice over time each).

    A multi-slice series (base, mid and apex in one DICOM series, as many scanners store a first-pass
    acquisition) gives one series per slice, named ``<name>_slice<k>`` (``k`` from 0 in stack order), sharing
    the frames and the header (``metadata["slice_of"] = k``); a one-slice series, or a stack of one frame (a SAX
    stack, which :func:`analyse_series` refuses), comes back as it is.

    Args:
        series: pixels ``[t, k, j, i]``, LPS geometry.
        name: the series' name in reports.

    Returns:
        ``[(name, series), ...]``, one per slice; pixels ``[t, 1, j, i]``.
    """
    import copy

    if series.n_slices == 1 or series.n_phases < 2:  # one frame of several slices: a stack, not first-pass frames
        if series.n_phases >= 2 and (meta := _frames_words(series.metadata)) is not series.metadata:
            series = copy.copy(series)
            series.metadata = meta
        return [(name, series)]  # (analyse_series says so)
    out = []
    meta = _frames_words(series.metadata)
    for k in range(series.n_slices):
        sk = copy.copy(series)
        sk.pixels = np.ascontiguousarray(series.pixels[:, k : k + 1])
        sk.slice_origins = series.slice_origins[k : k + 1]
        sk.metadata = dict(meta or {}, slice_of=k)
        sk.metadata["warnings"] = list(sk.metadata.get("warnings", []))  # each slice's checks add to its own list
        out.append((f"{name}_slice{k}", sk))
    return out


def _frames_words(meta: dict | None) -> dict | None:
    """``meta`` with the DICOM loader's completeness texts worded for a first-pass series, whose time points are
    frames, not cardiac phases (``slice at -102.7 mm has 77 frames, the others 79``); ``meta`` itself when they
    name none."""
    import re

    def words(text: str) -> str:
        return re.sub(r"\bphase(s?)\b", r"frame\1", text)

    done = (meta or {}).get("completeness") or {}
    if not done.get("problems") and not any("phase" in w for w in (meta or {}).get("warnings", [])):
        return meta
    return dict(meta, completeness=dict(done, problems=[words(t) for t in done.get("problems", [])]),
                warnings=[words(w) for w in meta.get("warnings", [])])


def _display_side(series: CMRSeries) -> tuple[bool, str]:
    if not series.orientation_known:
        return True, "orientation unknown: the stored display is taken as the standard view seen from the apex"
    try:
        s = aha.display_seen_from_apex(series.direction)
    except MissingGeometryError as exc:
        return True, f"{exc}; assuming the display is seen from the apex"
    return s, "display seen from the " + ("apex" if s else "base (mirrored: sectors run clockwise on screen)") + \
        " (slice normal vs typical LV long axis)"


def analyse_series(inp: SeriesInput, model: ps.PerfusionModel, use_sax_model: bool = True,
                   tta: bool = True) -> SliceAnalysis:
    """Segment, map, find RV insertions and sector one series (steps 1-4 of the module docstring).

    ``tta``: mirror test-time augmentation of the segmenter (where its card enables it) and of the SAX landmark
    model that places the RV insertions; False = one pass of each (faster, a little less accurate).

    Raises:
        InvalidImageError, PerfusionInputError (no contrast passage, no LV found, bad AIF).
    """
    s = inp.series
    if s.n_slices != 1:
        raise PerfusionInputError(f"{inp.name}: a perfusion input must be one slice over time; got {s.n_slices} slices "
                                  + ("of one frame (a stack of slices, not a first-pass series)" if s.n_phases < 2
                                     else "(slice_series makes one input of each)"))
    frames = s.pixels[:, 0].astype(np.float32)
    name = inp.name or Path(s.source).name
    spacing = (float(s.spacing[0]), float(s.spacing[1]))
    seg = ps.segment_series(model, frames, spacing, tta=tta)
    times, unit = perfusion.time_axis(s.trigger_times, len(frames))
    if unit != "s" and inp.dt_s:  # no timing in the frames, a frame interval given: upslopes per s, times in s
        times, unit = np.arange(len(frames), dtype=float) * float(inp.dt_s), "s"
    aligned = perfusion.align_frames(frames, seg.offsets_ij)
    maps, blood, _timing = perfusion.semi_quantitative_maps(aligned, seg.reference_mask, times)
    condition = input_condition(inp) or "perfusion"
    level = aha.normalise_level(inp.level) if inp.level else (aha.level_from_name(name) or aha.level_from_name(s.description))
    seen, note = _display_side(s)
    an = SliceAnalysis(name=name, condition=condition, level=level or "", series=s, seg=seg, times=times,
                       time_unit=unit, maps=maps, blood_pool=blood, center_ij=seg.lv_center_ij,
                       seen_from_apex=seen, orientation_note=note, warnings=list(seg.notes))
    _add_mbf(an, inp, aligned)
    # values come from the myocardium without its endocardial rim (partial volume with cavity blood)
    keep = perfusion.analysis_mask(seg.reference_mask)
    an.n_rim_excluded = int((seg.reference_mask == perfusion.MYO).sum() - keep.sum())
    for v in an.maps.values():
        v[~keep] = np.nan
    _find_rvi(an, inp, frames, aligned, use_sax_model, tta=tta, device=str(getattr(model, "device", "cpu")))
    return an


def _add_mbf(an: SliceAnalysis, inp: SeriesInput, aligned: np.ndarray) -> None:
    myo = an.seg.reference_mask == perfusion.MYO
    if inp.mbf_map is not None:
        m = np.asarray(inp.mbf_map, float)
        if m.shape != myo.shape:
            raise PerfusionInputError(f"{an.name}: MBF map shape {m.shape} differs from the image {myo.shape}")
        # the map is in the series grid at the reference frame position
        out = np.full(myo.shape, np.nan, np.float32)
        out[myo] = m[myo]
        an.maps["mbf"] = out
        an.fermi_info = {"source": "given MBF map"}
        return
    if inp.aif is None:
        return
    missing = mbf_missing(inp)
    if missing == "concentration":
        an.warnings.append("AIF given but the series is not marked as contrast concentration (--concentration); "
                           "no Fermi MBF computed from signal intensities")
        return
    if missing:
        raise PerfusionInputError(f"{an.name}: no frame timing in the series; give the frame interval "
                                  "(dt_s; --dt of the perfusion, study and batch commands)")
    dt = inp.dt_s if inp.dt_s is not None else float(np.median(np.diff(an.times)))
    aif = np.asarray(inp.aif, float).ravel()
    if aif.size != aligned.shape[0]:
        raise PerfusionInputError(f"{an.name}: AIF has {aif.size} samples, the series {aligned.shape[0]} frames")
    mbf_map, fit = fermi.mbf_map(aligned, aif, dt, mask=myo, method="batch")
    an.maps["mbf"] = mbf_map
    glob = fermi.fit_fermi(aligned[:, perfusion.analysis_mask(an.seg.reference_mask)].mean(axis=1), aif, dt,
                           method="scipy")
    an.fermi_info = {"source": "Fermi deconvolution (Jerosch-Herold 1998)", "dt_s": dt,
                     "fit_window_frames": list(fit.fit_window), "tissue_density_g_per_ml": fermi.TISSUE_DENSITY,
                     "global_curve_mbf": float(glob.mbf[0]), "median_pixel_rmse": float(np.median(fit.rmse))}


def _warn_beside_global(an: SliceAnalysis, *texts: str) -> None:
    """Add warnings on the sectors (RV insertion points, slice level) that leave the global value as it is."""
    an.warnings.extend(texts)
    an.warnings_beside_global.extend(texts)


def _plausible_rvi(an: SliceAnalysis, a: np.ndarray, i: np.ndarray, frame_mask: np.ndarray) -> bool:
    myo = frame_mask == perfusion.MYO
    if not myo.any():
        return False
    dist = ndimage.distance_transform_edt(~myo, sampling=(an.series.spacing[1], an.series.spacing[0]))
    for p in (a, i):
        jj, ii = int(round(p[1])), int(round(p[0]))
        if not (0 <= jj < myo.shape[0] and 0 <= ii < myo.shape[1]) or dist[jj, ii] > 12.0:
            return False
    return True


def _find_rvi(an: SliceAnalysis, inp: SeriesInput, frames: np.ndarray, aligned: np.ndarray,
              use_sax_model: bool, tta: bool = True, device: str = "cpu") -> None:
    s = an.series
    if inp.rvi_lps:
        a = inp.rvi_lps.get("A-RVI")
        if a is None:
            raise PerfusionInputError(f"{an.name}: the given RV insertion points have no A-RVI")
        ref = an.seg.reference_frame
        a_ij = s.lps_to_ijk(np.asarray(a, float))[:2]
        i_lps = inp.rvi_lps.get("I-RVI")
        i_ij = None if i_lps is None else s.lps_to_ijk(np.asarray(i_lps, float))[:2]
        set_rvi(an, a_ij, i_ij, source="user", frame=ref)
        return
    est = perfusion.estimate_rv_insertions(aligned, an.seg.reference_mask, (s.spacing[0], s.spacing[1]),
                                           baseline_frames=an.seg.timing.foot, superior_dir=s.superior_in_plane())
    rv_frame = est.peak_frame
    if use_sax_model:
        got = _rvi_from_sax_model(an, rv_frame, tta=tta, device=device)
        if got is not None:
            a_ij, i_ij, trust = got
            off = an.seg.offsets_ij[rv_frame]
            set_rvi(an, a_ij - off, i_ij - off,
                    source=f"SAX landmark model on frame {rv_frame} (peak RV enhancement)", frame=rv_frame,
                    trust=trust)
            return
    if est.a_rvi_ij is None:
        _warn_beside_global(an, *est.notes)
        _warn_beside_global(an, "no RV insertion point found: sectors not assigned; place A-RVI and I-RVI in "
                           f"{an.name}_rvi.mrk.json and re-run with --rvi")
        return
    source = f"RV enhancement (frames up to {rv_frame}; no landmark model)"
    a_ij, i_ij, span, adjusted = perfusion.nominal_septum(an.center_ij, est.a_rvi_ij, est.i_rvi_ij, an.seen_from_apex)
    if adjusted:
        _warn_beside_global(an, f"RV contact arc only {span:.0f} deg: insertions placed 60 deg either side of its centre; "
                           "check them")
        source += ", nominal 120 deg septum about the contact centre"
    low = (FALLBACK_RVI_CONFIDENCE, "low")
    set_rvi(an, a_ij, i_ij, source=source, frame=rv_frame, trust={"A-RVI": low, "I-RVI": low})
    _warn_beside_global(an, "RV insertion points from the RV-enhancement fallback (flagged low): every sector value "
                       f"is review until they are checked; edit {an.name}_rvi.mrk.json and re-run with --rvi")


def _rvi_from_sax_model(an: SliceAnalysis, frame: int, tta: bool = True,
                        device: str = "cpu") -> tuple[np.ndarray, np.ndarray, dict] | None:
    """A-RVI, I-RVI ``(i, j)`` from the SAX landmark model on one frame and their ``{name: (confidence,
    flag)}``, or None. The SAX model runs on ``device`` (the perfusion model's), with or without mirror TTA."""
    from CardiacLandmarksLib.sax.pipeline import detect_landmarks

    s = an.series
    one = CMRSeries(pixels=s.pixels[frame : frame + 1].astype(np.float32), spacing=s.spacing, direction=s.direction,
                    slice_origins=s.slice_origins, orientation_known=s.orientation_known, view="sax",
                    sequence="perfusion", source=s.source, description=s.description)
    try:
        lmset = detect_landmarks(one, view="sax", device="cuda" if device.startswith("cuda") else "cpu", tta=tta)
    except CardiacLandmarksError as exc:
        logger.info("SAX landmark model not used (%s); falling back to the RV enhancement", exc)
        return None
    a, i = lmset.get("A-RVI", 0, 0), lmset.get("I-RVI", 0, 0)
    if a is None or i is None or not (a.found and i.found):
        _warn_beside_global(an, f"SAX landmark model found no RV insertion pair on frame {frame}")
        return None
    a_ij, i_ij = np.asarray(a.ijk[:2], float), np.asarray(i.ijk[:2], float)
    if not _plausible_rvi(an, a_ij, i_ij, an.seg.masks[frame]):
        _warn_beside_global(an, "SAX landmark model RV insertions lie away from the segmented myocardium; not used")
        return None
    return a_ij, i_ij, {"A-RVI": (float(a.confidence), a.flag), "I-RVI": (float(i.confidence), i.flag)}


def set_rvi(an: SliceAnalysis, a_rvi_ij: np.ndarray, i_rvi_ij: np.ndarray | None = None, source: str = "user",
            frame: int | None = None, trust: dict | None = None) -> SliceAnalysis:
    """Set the RV insertion points (reference-frame pixel ``(i, j)``) and recompute sectors + stats.

    This is all that runs when a user moves a point.

    Args:
        trust: ``{"A-RVI": (confidence, flag), "I-RVI": (confidence, flag)}`` of the points; default
            high (1.0) for ``source="user"``, else low at :data:`FALLBACK_RVI_CONFIDENCE`.
    """
    an.a_rvi_ij = np.asarray(a_rvi_ij, float)
    an.i_rvi_ij = None if i_rvi_ij is None else np.asarray(i_rvi_ij, float)
    an.rvi_source = source
    an.rvi_frame = frame
    if trust is None:
        default = (1.0, "high") if source == "user" else (FALLBACK_RVI_CONFIDENCE, "low")
        trust = {"A-RVI": default, "I-RVI": default}
    an.rvi_trust = {k: (float(c), str(f)) for k, (c, f) in trust.items()}
    an.warnings = [w for w in an.warnings if "I-RVI lies" not in w]
    an.warnings_beside_global = [w for w in an.warnings_beside_global if "I-RVI lies" not in w]
    w = perfusion.check_rvi_consistency(an.center_ij, an.a_rvi_ij, an.i_rvi_ij, an.seen_from_apex)
    if w:
        _warn_beside_global(an, w)
    if an.level:
        recompute_sectors(an)
    return an


def recompute_sectors(an: SliceAnalysis) -> None:
    """AHA sector map of the reference mask and per-segment stats of every map."""
    if an.a_rvi_ij is None or not an.level:
        an.segments, an.stats = None, {}
        return
    myo = an.seg.reference_mask == perfusion.MYO
    an.segments = aha.sector_map(myo, an.center_ij, an.a_rvi_ij, an.level, an.seen_from_apex)
    an.stats = {k: perfusion.segment_stats(v, an.segments) for k, v in an.maps.items()}


def assign_missing_levels(analyses: list[SliceAnalysis]) -> None:
    """Give a level to series without one: by position along the typical long axis per condition."""
    missing = [a for a in analyses if not a.level]
    if not missing:
        return
    for cond in {a.condition for a in missing}:
        group = [a for a in analyses if a.condition == cond]
        pos = np.array([float(a.series.slice_origins[0] @ aha.TYPICAL_APEX_DIR_LPS) for a in group])
        try:
            levels = aha.assign_levels(pos) if all(a.series.orientation_known for a in group) else None
        except PerfusionInputError:
            levels = None
        for n, a in enumerate(group):
            if a.level:
                continue
            if levels is None or len(group) == 1:
                a.level = "mid"
                why = "the only slice of this condition" if len(group) == 1 else "slice positions not usable"
                _warn_beside_global(a, f"slice level not in the name and {why}: taken as mid; give --level to change it")
            else:
                a.level = levels[n]
                _warn_beside_global(a, f"slice level '{a.level}' assigned from the slice position")
            recompute_sectors(a)


# --------------------------------------------------------------------------- study summary


def anchor_sources(an: SliceAnalysis) -> list[Source]:
    """What a series' sectors hang on, as measurement sources with their flags: A-RVI (the sector
    anchor; low when from the RV-enhancement fallback) and C-LV (the blood-pool centre; flag from
    the segmentation confidence). I-RVI does not move the sectors and is not a source."""
    conf, flag = an.rvi_trust.get(aha.ANCHOR_RVI, (FALLBACK_RVI_CONFIDENCE, "low"))
    out = [Source(f"{aha.ANCHOR_RVI} {an.name}", flag, conf, "anchor", an.rvi_source)]
    c = float(an.seg.confidence)
    out.append(Source(f"C-LV {an.name}", "high" if c >= 0.5 else "low", c, "anchor", "LV blood-pool centre"))
    return out


def mask_sources(an: SliceAnalysis) -> list[Source]:
    """What a series' global value (all its myocardium, :func:`summarise`) rests on: the myocardium mask, flagged
    from the segmentation confidence (``low`` below 0.5, as C-LV in :func:`anchor_sources`). The RV insertion
    points are not a source of it: the AHA sectors split the myocardium into segments whose union is the
    whole mask wherever A-RVI lies, so the global mean (Xue et al. 2020: global myocardial perfusion) does not
    move with the anchor."""
    c = float(an.seg.confidence)
    return [Source(f"myocardium {an.name}", "high" if c >= 0.5 else "low", c, "mask", "segmentation confidence")]


def warning_sources(an: SliceAnalysis) -> list[Source]:
    """The series' own warnings that bear on every value it contributes to, each a source ``review`` of kind
    ``"check"`` (id the series name, note the warning): the segmentation's doubts (a field of view taken as
    cropped around the LV, no first pass in the blood pool, a doubtful reference frame ...) and an AIF given
    for a series not marked as concentration. Not the warnings on the sectors only
    (:attr:`SliceAnalysis.warnings_beside_global`) nor the input checks' (:attr:`SliceAnalysis.input_warnings`,
    one source ``input``). Before, these made the study's key value review while the report's own global value,
    its bull's-eye and its CSV showed the same number as ok."""
    return [Source(an.name, "review", None, "check", w) for w in an.warnings
            if w not in an.warnings_beside_global and w not in an.input_warnings]


def segment_trust(metric: str, stats: dict, anchors: list[Source], label: str) -> tuple[str, list[Source]]:
    """Status and sources of one segment value (one condition, one metric, pooled over slices).

    Sources: the anchoring RV insertion points (low when from the fallback), the segment's pixels
    (``n/a`` below :data:`MIN_SEGMENT_PIXELS`) and the values' plausibility (``review`` when the mean
    is not positive, when the spread exceeds the mean (sd > |mean|: the pixels disagree, e.g. rest
    0.10 +- 0.44), or, for MBF, outside :data:`PLAUSIBLE_MBF`). The status is
    :func:`~CardiacLandmarksLib.core.landmarks.measurement_status` of these, as for every measurement.

    Args:
        metric: key of :data:`METRICS`.
        stats: ``{"mean", "sd", "n_pixels"}``.
        anchors: :func:`anchor_sources` of the series pooled into a segment value, :func:`mask_sources` for
            the global value.
        label: id prefix, e.g. ``"segment 2 rest"``.

    Returns:
        ``(status, sources)``.
    """
    n = int(stats.get("n_pixels") or 0)
    mean, sd = float(stats.get("mean", np.nan)), float(stats.get("sd", np.nan))
    sources = list(anchors)
    sources.append(Source(f"{label} pixels", "n/a" if n < MIN_SEGMENT_PIXELS else "ok", None, "mask",
                          f"{n} pixels" + (f" < {MIN_SEGMENT_PIXELS}" if n < MIN_SEGMENT_PIXELS else "")))
    why = ""
    if np.isfinite(mean) and metric != "time_to_peak" and np.isfinite(sd) and sd > abs(mean):
        why = f"sd {sd:.2g} > mean {mean:.2g}"
    if np.isfinite(mean) and mean <= 0 and metric != "time_to_peak":
        why = f"mean {mean:.2g} not positive"
    if metric == "mbf" and np.isfinite(mean) and not PLAUSIBLE_MBF[0] <= mean <= PLAUSIBLE_MBF[1]:
        why = f"MBF {mean:.2f} outside {PLAUSIBLE_MBF[0]}-{PLAUSIBLE_MBF[1]} ml/min/g"
    sources.append(Source(f"{label} {perfusion.METRIC_WORDS.get(metric, metric)}", "review" if why else "ok", None,
                          "curve", why))
    return measurement_status(mean, sources), sources


def _pool(analyses: list[SliceAnalysis], metric: str, segment: int | None,
          failed: Sequence[tuple[str, str]] = ()) -> dict | None:
    vals = []
    anchors: list[Source] = []
    for a in analyses:
        if metric not in a.maps or (segment is not None and a.segments is None):
            continue
        m = a.maps[metric]
        # a segment: its sector's pixels; global: every pixel of the map (the myocardium without its endocardial
        # rim, NaN elsewhere), so a slice whose RV insertions were not found still counts
        sel = (a.segments == segment) if segment is not None else np.ones(m.shape, bool)
        v = m[sel & np.isfinite(m)]
        vals.append(v)
        if v.size:  # a segment hangs on its anchor; the global value on the mask only (mask_sources)
            anchors += anchor_sources(a) if segment is not None else mask_sources(a)
            if a.input_warnings:  # what the input checks doubt (SliceAnalysis.input_warnings) is review
                anchors.append(Source(f"input {a.name}", "review", None, "input", "; ".join(a.input_warnings)))
            anchors += warning_sources(a)
    if not vals:
        return None
    v = np.concatenate(vals)
    if v.size == 0:
        return None
    out = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else float("nan"),
           "n_pixels": int(v.size)}
    # the error's type only: its message is in result.failed and printed beside it
    anchors += [Source(name, "review", None, "check", f"{NOT_ANALYSED} ({why.split(':')[0]})") for name, why in failed]
    cond = analyses[0].condition if analyses else ""
    label = ("global" if segment is None else f"segment {segment}") + (f" {cond}" if cond else "")
    status, sources = segment_trust(metric, out, anchors, label)
    out["status"] = status
    out["sources"] = [x.to_dict() for x in sources]
    out["check"] = Measurement(metric, None, None, out["mean"], "", status, sources).caveat()
    return out


#: how a value's ``check`` source names a series of the study that was not analysed (:func:`summarise`)
NOT_ANALYSED = "not analysed"


def missed_series(stats: dict) -> list[str]:
    """The failed series a pooled value (a global value or a reserve trust of :func:`summarise`) may miss: the ids of
    its ``not analysed`` sources, in order, each once."""
    return list(dict.fromkeys(x["id"] for x in stats.get("sources", [])
                              if x.get("kind") == "check" and str(x.get("note", "")).startswith(NOT_ANALYSED)))


def summarise(analyses: list[SliceAnalysis], failed: Sequence[tuple[str, str]] = (),
              failed_conditions: Mapping[str, str | None] | None = None) -> dict:
    """Per-segment and global values per condition, plus stress/rest reserve.

    ``failed``: ``(series name, "Error: message")`` of the study's series that could not be loaded or analysed
    (:attr:`PerfusionResult.failed`). A global value then may miss that slice: it gets a source ``review`` of kind
    ``"check"`` per such series (``"<name>: not analysed (<error type>)"`` in its flags), as does the reserve through
    it; the segment values, each from the slices of its own level, keep their status. A failed series whose condition
    is known (``failed_conditions[name]``, :func:`input_condition` of its input; else the condition its name states)
    is a doubt on that condition's global value only (a failed rest slice leaves the stress value ok, and makes the
    reserve review through the rest value); one of no known condition, on every condition's; and every failed series
    on the global value of series that state no condition (``"perfusion"``), which may be of either.

    Returns:
        ``{"conditions": [...], "segments": {seg: {cond: {metric: stats}, "reserve": {...},
        "reserve_trust": {...}}}, "global": {...same...}, "units": {metric: unit}}``;
        stats are ``{"mean", "sd", "n_pixels", "status", "sources", "check"}`` pooled over the pixels
        of all slices (status and sources from :func:`segment_trust`); ``reserve`` holds the
        ratios ``{"mpri"|"mpr": value}`` and ``reserve_trust`` their ``{"status", "check",
        "sources"}`` (:func:`reserve_trust`).
    """
    conds = sorted({a.condition for a in analyses}, key=lambda c: (c not in CONDITIONS, CONDITIONS.index(c) if c in CONDITIONS else 0, c))
    metrics = [m for m in METRICS if any(m in a.maps for a in analyses)]
    units = {}
    for m in metrics:
        unit = METRICS[m][1]
        tu = {a.time_unit for a in analyses}
        units[m] = unit.format(t=tu.pop() if len(tu) == 1 else "time unit")
    segs: dict = {}
    for seg in range(1, 17):
        entry: dict = {}
        for c in conds:
            group = [a for a in analyses if a.condition == c]
            vals = {m: _pool(group, m, seg) for m in metrics}
            vals = {m: v for m, v in vals.items() if v is not None}
            if vals:
                entry[c] = vals
        entry["reserve"] = _reserve(entry)
        entry["reserve_trust"] = _reserve_trust(entry)
        segs[seg] = entry
    known = dict(failed_conditions or {})

    def may_be(name: str, c: str) -> bool:  # could the failed series ``name`` have been of condition c?
        fc = known[name] if name in known else condition_from_name(name)
        return c not in CONDITIONS or fc is None or fc == c

    glob: dict = {}
    for c in conds:
        group = [a for a in analyses if a.condition == c]
        missed = [(name, why) for name, why in failed if may_be(name, c)]
        glob[c] = {m: v for m in metrics if (v := _pool(group, m, None, missed)) is not None}
    glob["reserve"] = _reserve(glob)
    glob["reserve_trust"] = _reserve_trust(glob)
    return {"conditions": conds, "metrics": metrics, "units": units, "segments": segs, "global": glob}


def reserve_trust(key: str, value: float, stress: dict, rest: dict) -> tuple[str, list[Source]]:
    """Status and sources of a stress/rest reserve (``mpri`` or ``mpr``).

    Sources: the doubtful sources of the stress and the rest value (a fallback anchor, too few
    pixels, an implausible spread) and the ratio's plausibility (``review`` outside
    :data:`PLAUSIBLE_RESERVE`, e.g. MPRI 5.05 from a rest value of 0.10 +- 0.44).
    """
    sources: list[Source] = []
    seen = set()
    for st in (stress, rest):
        for d in st.get("sources", []):
            src = Source.from_dict(d)
            if src.doubtful and (src.id, src.note) not in seen:  # a series' warnings share its name as id
                seen.add((src.id, src.note))
                sources.append(src)
    lo, hi = PLAUSIBLE_RESERVE
    bad = bool(np.isfinite(value) and not lo <= value <= hi)
    sources.append(Source(f"{perfusion.METRIC_WORDS.get(key, key)} ratio", "review" if bad else "ok", None, "curve",
                          f"{value:.2f} outside {lo}-{hi}" if bad else ""))
    return measurement_status(value, sources), sources


def _reserve(entry: dict) -> dict:
    """Stress/rest reserve values ``{"mpri": value, "mpr": value}`` (only those computable)."""
    out = {}
    st, re_ = entry.get("stress", {}), entry.get("rest", {})
    if "upslope_index" in st and "upslope_index" in re_:
        out["mpri"] = perfusion.reserve_index(st["upslope_index"]["mean"], re_["upslope_index"]["mean"])
    if "mbf" in st and "mbf" in re_:
        out["mpr"] = perfusion.reserve_index(st["mbf"]["mean"], re_["mbf"]["mean"])
    return out


def _reserve_trust(entry: dict) -> dict:
    """``{key: {"status", "check", "sources"}}`` for each reserve in ``entry["reserve"]``."""
    out = {}
    st, re_ = entry.get("stress", {}), entry.get("rest", {})
    for key, value in entry.get("reserve", {}).items():
        metric = "mbf" if key == "mpr" else "upslope_index"
        status, sources = reserve_trust(key, value, st[metric], re_[metric])
        out[key] = {"status": status, "check": Measurement(key, None, None, value, "ratio", status, sources).caveat(),
                    "sources": [x.to_dict() for x in sources]}
    return out


def per_input(values, n: int, what: str) -> list:
    """Expand an option given once, or once per input, to a list of ``n`` values.

    ``None`` -> ``[None] * n``; a single value (a string, an array, or a one-element list) -> that value for
    every input; ``"-"`` or ``"auto"`` stand for None (the CLI's way to skip one input).

    Raises:
        PerfusionInputError: a list whose length is neither 1 nor ``n``.
    """
    if values is None:
        return [None] * n
    if isinstance(values, str | np.ndarray) or not isinstance(values, Sequence):
        values = [values]
    values = [None if isinstance(v, str) and v in ("-", "auto") else v for v in values]
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise PerfusionInputError(f"give {what} once, or once per input ({n}); got {len(values)}")
    return values


def unique_name(base: str, used: set[str]) -> str:
    """``base`` made file-safe and unique among ``used`` (``name``, ``name_2``, ...); adds it to ``used``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", base).strip("_") or "series"
    stem, n = name, 1
    while name in used:
        n += 1
        name = f"{stem}_{n}"
    used.add(name)
    return name


@dataclass
class PerfusionResult:
    """The perfusion analysis of one study: per-series analyses and the pooled AHA summary.

    ``write(outdir)`` writes ``report.json``, ``report.csv``, ``bullseye.png`` and per series the label maps,
    sector PNG and RV-insertion markups (:func:`CardiacLandmarksLib.perfusion.report.write_report`).
    """

    analyses: list[SliceAnalysis]
    summary: dict
    model_card: dict
    model_sha: str
    #: inputs that could not be analysed: ``(name, "ErrorName: message")``; the others are in ``analyses``
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: the condition of each failed input that had one (given, or stated by its name or description;
    #: :func:`input_condition`), by name: which global values its absence puts in doubt (:func:`summarise`)
    failed_conditions: dict[str, str | None] = field(default_factory=dict)

    def __repr__(self) -> str:
        """For a console: each analysed series (condition, level, where its RV insertions came from), the series
        not analysed, and the global values of the primary metric and the stress/rest reserve with their status
        and reason (the report's own), not the per-frame masks and maps."""
        from CardiacLandmarksLib.core.landmarks import format_value
        from CardiacLandmarksLib.perfusion.report import primary_metric

        def shown(value, unit: str, status: str, check: str) -> str:
            return f"{format_value(value, unit)}, {status}" + (f": {check}" if check and status != "ok" else "")
        lines = [f"{a.name}: {a.condition} {a.level}, RVI from {a.rvi_source or 'none'}" for a in self.analyses]
        lines += [f"{name}: not analysed ({error})" for name, error in self.failed]
        glob = self.summary.get("global", {})
        if self.summary.get("metrics"):
            metric = primary_metric(self.summary)
            for c in self.summary.get("conditions", []):
                g = glob.get(c, {}).get(metric)
                if g:
                    unit = self.summary.get("units", {}).get(metric, "")
                    lines.append(f"global {perfusion.value_words(c, metric)}: "
                                 + shown(g.get("mean"), unit, g.get("status", "review"), g.get("check", "")))
            for key, value in (glob.get("reserve") or {}).items():
                trust = (glob.get("reserve_trust") or {}).get(key, {})
                lines.append(f"global {perfusion.value_words('reserve', key)}: "
                             + shown(value, "ratio", trust.get("status", "review"), trust.get("check", "")))
        return (f"PerfusionResult({len(self.analyses)} series analysed, {len(self.failed)} not analysed\n"
                + "".join(f"  {x}\n" for x in lines) + ")")

    def write(self, outdir: str | Path) -> list[Path]:
        from CardiacLandmarksLib.perfusion.report import write_report

        return write_report(self.analyses, self.summary, outdir, self.model_card, self.model_sha, failed=self.failed)

    @property
    def failure_warnings(self) -> list[str]:
        """One named warning per series that could not be analysed: ``"<series>: not analysed (<error>)"``."""
        from CardiacLandmarksLib.perfusion.report import failure_warnings

        return failure_warnings(self.failed)


def failures_text(failed: list[tuple[str, str]]) -> str:
    """``"name: why; name: why"`` of failed series, the series that failed for the same reason (the slices of one
    multi-slice series) named together once: ``"s6_slice0, s6_slice1: IncompleteSeriesError: ..."``."""
    by_reason: dict[str, list[str]] = {}
    for name, why in failed:
        by_reason.setdefault(why, []).append(name)
    return "; ".join(f"{', '.join(names)}: {why}" for why, names in by_reason.items())


def _input_name(inp: SeriesInput) -> str:
    return inp.name or str(inp.series.source)


def _record_failure(failed: list[tuple[str, str]], inp: SeriesInput, exc: Exception) -> None:
    """Name a series that could not be analysed (an unexpected error is logged with its traceback).

    The entry is ``(series name, "ErrorType: message")``; a message that already starts with the series name
    (the errors of :func:`analyse_series` do, so that they read alone) loses it here, so the name is given once.
    """
    name, msg = _input_name(inp), str(exc)
    msg = msg[len(name) + 2:] if name and msg.startswith(f"{name}: ") else msg
    failed.append((name, f"{type(exc).__name__}: {msg}"))
    if isinstance(exc, CardiacLandmarksError):
        logger.error("%s: not analysed: %s", name, msg)
    else:
        logger.exception("%s: not analysed (unexpected error)", name)


def _matching_series(usable: list[SeriesInput], failed: list[tuple[str, str]],
                     allow_mismatch: bool) -> tuple[list[SeriesInput], list[str]]:
    """The series that belong together, and the study warnings (:func:`~CardiacLandmarksLib.io.checks.check_study_match`).

    When the series do not match but leaving out exactly one of them (of three or more) makes the others
    match, that one is recorded in ``failed`` (:class:`SeriesMismatchError`) and the others go on; any other
    mismatch raises (or, with ``allow_mismatch``, gives warnings).
    """
    from CardiacLandmarksLib.core.errors import SeriesMismatchError
    from CardiacLandmarksLib.io.checks import check_study_match

    if len(usable) < 2:
        return usable, []
    names = [_input_name(i) for i in usable]
    try:
        return usable, check_study_match([i.series for i in usable], names, allow_mismatch=allow_mismatch)
    except SeriesMismatchError as exc:
        if len(usable) < 3:
            raise
        odd = []
        for k in range(len(usable)):
            rest = [i for n, i in enumerate(usable) if n != k]
            try:
                check_study_match([i.series for i in rest], [_input_name(i) for i in rest])
                odd.append(k)
            except SeriesMismatchError:
                continue
        if len(odd) != 1:
            raise
        k = odd[0]
        _record_failure(failed, usable[k], SeriesMismatchError(
            f"does not match the other {len(usable) - 1} series of the study, which match each other ({exc}); "
            "not analysed with them"))
        return [i for n, i in enumerate(usable) if n != k], []


def analyse_perfusion(inputs: list[SeriesInput], model: ps.PerfusionModel | None = None, device: str = "cpu",
                      use_sax_model: bool = True,
                      progress: Callable[[int, int], None] | None = None, *,
                      allow_mismatch: bool = False, allow_incomplete: bool = False,
                      tta: bool = True, unread: Sequence[tuple[str, str]] = ()) -> PerfusionResult:
    """AHA 16-segment perfusion analysis of a study (Xue et al., Radiology: AI 2020; Cerqueira et al. 2002).

    The task API every front end calls: each series is analysed (:func:`analyse_series`), slices with no
    level are given one from their positions (:func:`assign_missing_levels`), and segments are pooled per
    condition with the stress/rest reserve (:func:`summarise`).

    Args:
        inputs: one :class:`SeriesInput` per slice series (2D+T, pixels ``[t, 1, j, i]``).
        model: the perfusion segmentation model (default: the bundled one on ``device``).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` when the model is loaded here.
        use_sax_model: try the SAX landmark model for the RV insertion points before the RV-enhancement rule.
        progress: ``progress(done_series, total_series)``.
        allow_mismatch: series that differ in patient, matrix or pixel size are analysed with a warning
            on each and no stress/rest reserve, instead of :class:`SeriesMismatchError`.
        allow_incomplete: a DICOM series whose slices miss frames (a slice stopped a few frames early) is analysed
            on the frames all its slices have, every value it contributes to ``review`` (source ``input``),
            instead of failing with ``IncompleteSeriesError``.
        tta: mirror test-time augmentation of the segmenter and the SAX landmark model (default on; False for
            cohorts on CPU: about half the network time, see benchmarks/README.md).
        unread: ``(name, "Error: message")`` of the study's series the front end could not even load: first in
            ``result.failed``, and like every failed series a doubt on each global value (:func:`summarise`).

    Before any model runs, every series is checked (:func:`CardiacLandmarksLib.io.checks.check_series`:
    a short-axis image, not a label mask, constant or with absurd spacing) and the series are checked to
    belong together (:func:`~CardiacLandmarksLib.io.checks.check_study_match`). One series that fails
    (a check, the segmentation, no contrast passage, an unexpected error ...) is recorded in ``result.failed``
    with its error and the others are analysed and reported; so is one series that alone does not match the
    others (another patient, matrix or pixel size) when at least two others match (the odd one out).

    Returns:
        :class:`PerfusionResult`.

    Raises:
        PerfusionInputError (no input, or no series could be analysed: the message lists why),
        SeriesMismatchError, ModelIntegrityError.
    """
    from CardiacLandmarksLib.io.checks import check_series

    if not inputs:
        raise PerfusionInputError("no perfusion series given")
    failed: list[tuple[str, str]] = list(unread)
    usable = []
    doubts: dict[int, list[str]] = {}  # id(input) -> the input checks' warnings
    for inp in inputs:
        try:
            doubts[id(inp)] = check_series(inp.series, "sax", allow_incomplete=allow_incomplete,
                                           view_hint="the perfusion analysis takes short-axis slices only")
            usable.append(inp)
        except Exception as exc:  # noqa: BLE001 - named in result.failed, the others go on
            _record_failure(failed, inp, exc)
    usable, study_warnings = _matching_series(usable, failed, allow_mismatch)
    model = (model or ps.load_model(device=device)) if usable else model
    analyses = []
    for k, inp in enumerate(usable):
        try:
            an = analyse_series(inp, model, use_sax_model=use_sax_model, tta=tta)
        except Exception as exc:  # noqa: BLE001 - one series must not stop the study; named in result.failed
            _record_failure(failed, inp, exc)
        else:
            an.warnings.extend(w for w in (inp.series.metadata or {}).get("warnings", []) if w not in an.warnings)
            an.input_warnings = list(doubts.get(id(inp), []))
            _warn_beside_global(an, *study_warnings)
            analyses.append(an)
        if progress is not None:
            progress(k + 1, len(usable))
    if not analyses:
        raise PerfusionInputError(f"none of the {len(inputs) + len(unread)} perfusion series could be analysed: "
                                  + failures_text(failed))
    assign_missing_levels(analyses)
    conditions = {_input_name(i): input_condition(i) for i in inputs}
    failed_conditions = {name: conditions[name] for name, _ in failed if name in conditions}
    summary = summarise(analyses, failed, failed_conditions)
    if study_warnings:  # series that do not match: no stress/rest ratio
        for entry in [summary["global"], *summary.get("segments", {}).values()]:
            for key in ("reserve", "reserve_trust"):
                if key in entry:
                    entry[key] = {}
    return PerfusionResult(analyses, summary, dict(getattr(model, "card", {}) or {}),
                           getattr(model, "sha256", ""), failed, failed_conditions)
