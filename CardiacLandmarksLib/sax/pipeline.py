"""SAX landmark analysis: the one entry (:func:`analyse_sax`) for the CLI, console, Slicer, batch and web.

series -> canvas per slice and phase (:mod:`.preprocessing`) -> heatmap U-Net
(:mod:`.inference`) -> peak decoding (:mod:`.decoding`) -> points back in input voxels and
LPS mm -> anterior/inferior naming -> :class:`~.landmarks.LandmarkSet` with measurements.
Method: Xue et al., "Landmark detection in cardiac MRI by using a convolutional neural
network", Radiology: AI 2021.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass

import numpy as np

from CardiacLandmarksLib.core.errors import CardiacLandmarksError, InvalidImageError, WrongViewError
from CardiacLandmarksLib.core.geometry import SUPERIOR_LPS, in_plane_mm, stack_jump_mm
from CardiacLandmarksLib.core.landmarks import LANDMARKS_BY_VIEW, Landmark, LandmarkSet, past_limit
from CardiacLandmarksLib.core.preprocessing import (
    make_grid,
    normalise_intensity,
    resample_to_canvas,
)
from CardiacLandmarksLib.core.series import CMRSeries
from CardiacLandmarksLib.models.loader import LoadedModel, cpu_workers, load_model, run_batches
from CardiacLandmarksLib.sax.measurements import rv_side_warning, rvi_measurements
from CardiacLandmarksLib.sax.presence import (
    DOUBTFUL_PAIR_SHARE,
    PAIR,
    absence_doubt,
    card_max_clv_jump,
    card_min_lv_area,
    card_pair_threshold,
    clv_absence_doubt,
    decide_presence,
    pair_score,
)
from CardiacLandmarksLib.sax.report import LandmarkResult, render_overlay_png
from CardiacLandmarksLib.sax.rvi_segmentation import locate_all

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]


class Cancelled(CardiacLandmarksError):
    """Detection was cancelled by the user (``cancel()`` returned True)."""


def check_view(series: CMRSeries, view: str) -> None:
    """Raise :class:`WrongViewError` when the series is known to be another view than ``view``."""
    if series.view not in ("unknown", view):
        raise WrongViewError(f"series {series.description or series.source!r} looks like a {series.view.upper()} view, "
                             f"but the {view.upper()} model was requested (choose --view {series.view})")


def name_rvi_by_geometry(lmset: LandmarkSet, series: CMRSeries) -> int:
    """Make A-RVI the RV insertion nearer the patient's head (LPS) on every slice/phase where both are found.

    The septum runs head to foot in a short-axis slice, from the anterosuperior A-RVI to the I-RVI on the
    diaphragmatic wall (Xue et al., Radiology: AI 2021, name them anterior and inferior); the anterior
    direction, used before, lies nearly across the septum because the RV is anterior of the LV, and swapped
    the names on some slices (on MS-CMRSeg subject36, its last two slices with RV insertions). The same
    rule names the reference points derived from masks (:func:`.labels.derive_sax_landmarks`). Applied only
    when ``series.orientation_known``; the model's own naming (display convention) is kept otherwise.
    Returns the number of swaps made.
    """
    if not series.orientation_known:
        return 0
    swaps = 0
    for k, t in lmset.slices_phases():
        a, i = lmset.get("A-RVI", k, t), lmset.get("I-RVI", k, t)
        if a is None or i is None or not (a.found and i.found):
            continue
        if (a.position - i.position) @ SUPERIOR_LPS < 0:
            a.position, i.position = i.position, a.position
            a.ijk, i.ijk = i.ijk, a.ijk
            a.confidence, i.confidence = i.confidence, a.confidence
            a.flag, i.flag = i.flag, a.flag
            a.doubt, i.doubt = i.doubt, a.doubt
            swaps += 1
    return swaps


def per_landmark_thresholds(card: dict, key: str, names, default) -> dict[str, float]:
    """``card["thresholds"][key]`` as ``{name: value}`` (a card may hold one number for all landmarks)."""
    value = card.get("thresholds", {}).get(key)
    if value is None:
        value = default
    if isinstance(value, dict):
        return {n: float(value.get(n, default[n] if isinstance(default, dict) else default)) for n in names}
    return {n: float(value) for n in names}


def detect_landmarks(
    series: CMRSeries,
    view: str = "sax",
    device: str = "auto",
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    model: LoadedModel | None = None,
    batch_size: int = 50,
    tta: bool = True,
    confidence: str = "phdnet",
) -> LandmarkSet:
    """Detect the landmarks of ``view`` on every slice and phase of ``series``.

    Args:
        series: input series (pixels ``[t, k, j, i]``).
        view: ``"sax"`` (long-axis views: :mod:`.lax_pipeline`).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: called as ``progress(done_images, total_images)``.
        cancel: polled between batches; returning True raises :class:`Cancelled`.
        model: an already loaded model (default: the bundled one for ``view`` and the series' sequence: the LGE
            model for LGE and perfusion, the general one otherwise).
        batch_size: most images prepared and run together (canvases, networks, presence, flags); on CPU with
            several torch threads, smaller chunks run side by side (:func:`~CardiacLandmarksLib.models.loader.run_batches`).
        tta: mirror test-time augmentation when the model card enables it (more accurate, ~2x slower).
            Presence: :func:`CardiacLandmarksLib.sax.presence.decide_presence` (A-RVI and I-RVI found together or not
            at all when the card has a pair threshold; C-LV only on an LV cavity of the card's least area).
        confidence: ``"phdnet"`` (shipped): U-Net positions with PHD-Net confidence (agreement
            between PHD-Net and the U-Net, Schobs et al., ISBI 2021; see the sax_phdnet card);
            ``"peak"``: the U-Net's peak probability with its own calibrated threshold. With ``"phdnet"``, a
            point whose U-Net estimates disagree (mirror TTA, heatmap vs segmentation head) by more than the
            sax_phdnet card's ``shipped.max_disagreement_mm`` is flagged low
            (:func:`CardiacLandmarksLib.confidence.phdnet.consistency_gate`), and an RV insertion point that lies
            more than the card's ``shipped.max_stack_jump_mm`` in plane from the same point on its neighbouring
            slices is flagged low too (:func:`stack_gate`).

    Returns:
        :class:`LandmarkSet` with one entry per landmark x slice x phase (``found`` False and
        flag ``"absent"`` where the model sees none), positions in LPS mm and input ijk, and
        the RVI measurements.

    Raises:
        WrongViewError, InvalidImageError (NaN pixels), ModelIntegrityError, Cancelled.
    """
    if view != "sax":
        raise WrongViewError(f"detect_landmarks handles the SAX view; use lax_pipeline.detect_lax for {view!r}")
    check_view(series, view)
    if not np.all(np.isfinite(series.pixels)):
        raise InvalidImageError(f"series {series.source!r} contains NaN or infinite pixel values")
    model = model or load_model(view, device, sequence=series.sequence)
    names = LANDMARKS_BY_VIEW[view]
    found_t = per_landmark_thresholds(model.card, "found", names, 0.3)
    high_t = per_landmark_thresholds(model.card, "high_confidence", names, found_t)
    pair_t, min_area = card_pair_threshold(model.card), card_min_lv_area(model.card)
    total = series.n_phases * series.n_slices
    phd = None
    if confidence == "phdnet":
        from CardiacLandmarksLib.confidence.phdnet import PhdNetConfidence

        phd = PhdNetConfidence.load(device=model.device)
    elif confidence != "peak":
        raise CardiacLandmarksError(f"unknown confidence mode {confidence!r}: use 'phdnet' or 'peak'")
    described = model.describe()
    if phd is not None:
        described["confidence_model"] = phd.describe()
    lmset = LandmarkSet(view=view, model=described, **LandmarkSet.source_of(series))
    jobs = [(k, t) for k in range(series.n_slices) for t in range(series.n_phases)]
    grids = {k: make_grid(series, k) for k in range(series.n_slices)}
    n_in = getattr(model, "in_channels", 1)
    # one canvas per (slice, phase), reused as a neighbour of the slices beside it: every slice of a stack has the
    # same canvas grid (make_grid depends on the in-plane geometry only), checked here
    same_grid = all(np.array_equal(g.matrix, grids[0].matrix) and np.array_equal(g.offset, grids[0].offset)
                    for g in grids.values())
    cache: dict[tuple[int, int], np.ndarray] = {}

    def slice_canvas(kk: int, t: int, k_grid: int | None = None) -> np.ndarray:
        grid = grids[kk if k_grid is None or same_grid else k_grid]
        if (kk, t) not in cache or not same_grid:
            cache[(kk, t)] = resample_to_canvas(normalise_intensity(series.pixels[t, kk])[None], grid)[0]
        return cache[(kk, t)]

    def prepared(size: int):
        """``(chunk, canvases [n, C, H, W])`` per chunk of ``size`` jobs, made in the calling thread."""
        for s in range(0, len(jobs), size):
            if cancel is not None and cancel():
                raise Cancelled("landmark detection cancelled")
            chunk = jobs[s : s + size]
            canv = np.empty((len(chunk), n_in, grids[0].size, grids[0].size), np.float32)
            for n, (k, t) in enumerate(chunk):
                canv[n, 0] = slice_canvas(k, t)
                if n_in > 1:  # stack context: the slice, then its neighbours (as core.preprocessing.context_canvases)
                    canv[n, 1] = slice_canvas(k - 1, t, k) if k > 0 else canv[n, 0]
                    canv[n, 2] = slice_canvas(k + 1, t, k) if k + 1 < series.n_slices else canv[n, 0]
            for key in [key for key in cache if key[0] < chunk[-1][0] - 1]:  # slices no later job needs
                del cache[key]
            yield chunk, canv

    def infer(item: tuple) -> tuple:
        """Networks, presence and flags of one chunk (run by :func:`run_batches`, possibly in a worker thread)."""
        chunk, canv = item
        xy, peak, area, disagreement = locate_all(model, canv, tta=tta)
        found_all = decide_presence(peak, names, [found_t[nm] for nm in names], pair_t, area, min_area)
        if phd is not None:
            assessed = phd.assess(canv[:, 0], positions=xy, found=found_all, disagreement_mm=disagreement)
            conf_all, flag_all, gated = assessed.confidence, assessed.flag, assessed.gated
        else:
            gated = None
            conf_all = np.where(found_all, peak, 0.0)
            flag_all = np.where(~found_all, "absent",
                                np.where(peak >= np.array([high_t[nm] for nm in names]), "high", "low"))
        doubts = low_flag_reasons(flag_all, disagreement, gated, phd.max_disagreement_mm if phd else None,
                                  phd is not None)
        pair = pair_score(peak, names) if pair_t is not None else np.full(len(chunk), np.nan)
        clv = np.asarray(peak, float)[:, names.index("C-LV")]
        lv_area = np.full(len(chunk), np.nan) if area is None else np.asarray(area, float)
        return chunk, xy, found_all, conf_all, flag_all, doubts, np.stack([pair, clv, lv_area], 1)

    # on CPU, a stack of at least two network batches per worker runs in chunks side by side (run_batches), small
    # enough to keep every worker busy to the end; a smaller stack runs whole, each operation on every thread
    workers = cpu_workers(model.device, total // (2 * model.batch_size))
    size = batch_size if workers < 2 else min(batch_size, max(model.batch_size, -(-total // (4 * workers))))
    done = 0
    scores: dict[tuple[int, int], tuple[float, float, float]] = {}  # pair score, C-LV peak, LV cavity mm^2
    # closed on the way out, also when a callback raises: the workers finish and torch's threads are restored
    with closing(run_batches(infer, prepared(size), model.device, -(-total // size))) as results:
        for chunk, xy, found_all, conf_all, flag_all, doubts, evidence in results:
            for n, (k, t) in enumerate(chunk):
                scores[(k, t)] = tuple(float(v) for v in evidence[n])
                ijk_all = grids[k].canvas_to_ijk(xy[n])
                for c, name in enumerate(names):
                    found = bool(found_all[n, c])
                    ijk = ijk_all[c] if found else np.full(3, np.nan)
                    pos = series.ijk_to_lps(ijk) if found else np.full(3, np.nan)
                    lmset.landmarks.append(Landmark(name, k, t, found, pos, ijk, float(conf_all[n, c]) if found else 0.0,
                                                    str(flag_all[n, c]) if found else "absent",
                                                    doubt=doubts[n][c] if found else ""))
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    name_rvi_by_geometry(lmset, series)
    max_clv_jump = card_max_clv_jump(model.card)
    if max_clv_jump is not None:
        drop_stray_clv(lmset, series, max_clv_jump)
    if phd is not None and phd.max_stack_jump_mm is not None:
        stack_gate(lmset, series, phd.max_stack_jump_mm, phd.stack_gate_landmarks)
    doubt_absences(lmset, scores, pair_t, found_t["C-LV"])
    lmset.landmarks.sort(key=lambda lm: (lm.phase, lm.slice, names.index(lm.name)))
    lmset.measurements = rvi_measurements(lmset, series=series)
    warning = rv_side_warning(lmset.measurements)
    if warning is not None:
        lmset.warnings.append(warning)
    return lmset


def _stack_jumps(lmset: LandmarkSet, series: CMRSeries, name: str, t: int) -> tuple[list, np.ndarray]:
    """The ``name`` landmarks of phase ``t`` in slice order and their in-plane jumps (mm, NaN: not judged)."""
    pts = [lmset.get(name, k, t) for k in range(series.n_slices)]
    found = np.array([p is not None and p.found for p in pts])
    pos = np.array([p.position if f else np.full(3, np.nan) for p, f in zip(pts, found)], float)
    return pts, stack_jump_mm(pos, found, np.asarray(series.direction, float)[:, 2])


def drop_stray_clv(lmset: LandmarkSet, series: CMRSeries, max_mm: float) -> int:
    """Call C-LV absent where it lies more than ``max_mm`` in plane both from the C-LV of every neighbouring slice
    of its phase where one is found and from the median C-LV of that phase's stack; returns how many were dropped.

    A presence rule (:mod:`.presence`, the SAX card's ``thresholds.max_clv_stack_jump_mm``, after Xue et al. 2021's
    "absent outside the LV"): the LV centre moves a few mm from slice to slice, so a C-LV tens of mm away is a stray
    peak outside this ventricle (above the base, below the apex). The median keeps a good C-LV at the end of the
    stack whose only neighbour is the stray one. Judged on the detected positions all at once
    (:func:`CardiacLandmarksLib.core.geometry.stack_jump_mm`); a C-LV without a found neighbour is kept. The RV
    insertions of that slice and phase are called absent with it, as the presence rule does (:mod:`.presence`: no RV
    insertion without C-LV; they hang on a point outside this ventricle). On the 43 ACDC patients the rule was chosen
    on, no slice whose C-LV it dropped had any. In place; the count is of C-LVs dropped.
    """
    if series.n_slices < 2:
        return 0
    normal = np.asarray(series.direction, float)[:, 2]
    dropped = 0
    for t in range(series.n_phases):
        pts, jumps = _stack_jumps(lmset, series, "C-LV", t)
        found = [p for p in pts if p is not None and p.found]
        if len(found) < 2:
            continue
        median = np.median(np.array([p.position for p in found], float), axis=0)
        for p, jump in zip(pts, jumps):
            if p is not None and np.isfinite(jump) and jump > max_mm and in_plane_mm(p.position - median, normal) > max_mm:
                for q in (p, lmset.get("A-RVI", p.slice, t), lmset.get("I-RVI", p.slice, t)):
                    if q is not None:
                        q.found, q.flag, q.confidence, q.doubt = False, "absent", 0.0, ""
                        q.position, q.ijk = np.full(3, np.nan), np.full(3, np.nan)
                dropped += 1
    return dropped


def stack_gate(lmset: LandmarkSet, series: CMRSeries, limit_mm: float,
               names: tuple[str, ...] = ("A-RVI", "I-RVI")) -> int:
    """Flag low every high point of ``names`` that lies more than ``limit_mm`` in plane from the same landmark on
    both neighbouring slices of its phase (or on its one found neighbour); returns how many were lowered.

    In place, after A/I naming (:func:`name_rvi_by_geometry`). Distances: :func:`CardiacLandmarksLib.core.geometry.
    stack_jump_mm` (LPS mm, the through-plane part left out; slice normal ``series.direction[:, 2]``). A
    lowered point's confidence becomes ``min(c, 0.5 * limit / jump)`` (below the 0.5 of the calibrated threshold)
    and its :attr:`Landmark.doubt` says how far it jumps. A point without a found neighbour is not judged.
    The limit is the sax_phdnet card's ``shipped.max_stack_jump_mm``, chosen on non-test ACDC patients (card).
    """
    if series.n_slices < 2:
        return 0
    lowered = 0
    for t in range(series.n_phases):
        for name in names:
            pts, jumps = _stack_jumps(lmset, series, name, t)
            for p, jump in zip(pts, jumps):
                if p is not None and p.flag == "high" and np.isfinite(jump) and jump > limit_mm:
                    p.flag = "low"
                    p.confidence = float(min(p.confidence, 0.5 * limit_mm / jump))
                    p.doubt = (f"it lies {past_limit(jump, limit_mm)} mm in plane from the same point on the "
                               f"neighbouring slices (limit {limit_mm:g} mm)")
                    lowered += 1
    return lowered


def doubt_absences(lmset: LandmarkSet, scores: dict, pair_t: float | None, clv_t: float,
                   share: float = DOUBTFUL_PAIR_SHARE) -> int:
    """Give a doubt (:attr:`Landmark.doubt`; the flag stays ``absent``, nothing moves) to the landmarks called absent
    that the network nearly found, so that the reader looks at those slices (ACDC's experts mark C-LV on every
    slice with an LV cavity and the RV insertions on most of them):

    * the RV insertions of a slice and phase whose C-LV is found, when their pair score reaches ``share`` of the
      pair threshold (:func:`CardiacLandmarksLib.sax.presence.absence_doubt`); a slice without C-LV is left
      alone (no LV, no insertion);
    * a C-LV whose heatmap peak reaches ``share`` of its threshold on a slice where the segmentation draws an LV
      cavity of at least :data:`~CardiacLandmarksLib.sax.presence.DOUBTFUL_CLV_AREA_MM2`
      (:func:`CardiacLandmarksLib.sax.presence.clv_absence_doubt`).

    Args:
        lmset: the SAX landmarks, after the presence rules.
        scores: ``{(slice, phase): (pair score, C-LV peak, LV cavity area mm^2)}`` (NaN where not known).
        pair_t: the card's pair threshold (None: no pair rule, no pair doubt); clv_t: its C-LV threshold.

    Returns:
        the number of landmarks given a doubt.
    """
    by_key = {(lm.name, lm.slice, lm.phase): lm for lm in lmset.landmarks}
    n = 0
    for (k, t), (pair, peak, area) in scores.items():
        clv = by_key.get(("C-LV", k, t))
        if clv is None:
            continue
        if not clv.found and not clv.corrected:
            clv.doubt = clv_absence_doubt(peak, clv_t, area, share)
            n += bool(clv.doubt)
            continue
        rvi = [by_key.get((name, k, t)) for name in PAIR]
        if pair_t is None or not clv.found or any(p is None or p.found or p.corrected for p in rvi):
            continue
        text = absence_doubt(pair, pair_t, share)
        for p in rvi:
            p.doubt = text
        n += 2 * bool(text)
    return n


def low_flag_reasons(flags: np.ndarray, disagreement_mm: np.ndarray, gated: np.ndarray | None,
                     gate_mm: float | None, phdnet: bool) -> list[list[str]]:
    """Why each low point ``[n, L]`` is low, in words for the reader (:attr:`Landmark.doubt`); "" elsewhere.

    ``disagreement_mm [n, L]``: :attr:`~CardiacLandmarksLib.sax.rvi_segmentation.Located.disagreement_mm`;
    ``gated [n, L]``: where the confidence gate lowered the point (:attr:`ConfidenceResult.gated
    <CardiacLandmarksLib.confidence.phdnet.ConfidenceResult>`; None = no gate), ``gate_mm`` its limit (mm);
    ``phdnet``: the confidence comes from PHD-Net (else from the U-Net's peak probability).
    """
    flags = np.asarray(flags)
    gated = np.zeros(flags.shape, bool) if gated is None else np.asarray(gated, bool)
    out = []
    for row_f, row_d, row_g in zip(flags, np.asarray(disagreement_mm, float), gated):
        reasons = []
        for f, d, g in zip(row_f, row_d, row_g):
            if f != "low":
                reasons.append("")
            elif g:
                how = "no segmentation point" if not np.isfinite(d) else f"{past_limit(d, gate_mm)} mm"
                reasons.append(f"the network's own estimates disagree ({how}; limit {gate_mm:g} mm)")
            elif phdnet:
                reasons.append("PHD-Net does not confirm the point")
            else:
                reasons.append("weak heatmap peak")
        out.append(reasons)
    return out


@dataclass
class SaxOptions:
    """Options of :func:`analyse_sax` (the CLI's ``detect`` flags, the Slicer panel's settings).

    Attributes:
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        tta: mirror test-time augmentation (more accurate, about 2x slower).
        confidence: ``"phdnet"`` (shipped) or ``"peak"`` (see :func:`detect_landmarks`).
        batch_size: images per chunk between progress calls and cancel checks.
    """

    device: str = "auto"
    tta: bool = True
    confidence: str = "phdnet"
    batch_size: int = 50


def analyse_sax(series: CMRSeries, options: SaxOptions | None = None, progress: ProgressFn | None = None,
                cancel: CancelFn | None = None, model: LoadedModel | None = None) -> LandmarkResult:
    """SAX landmarks (A-RVI, I-RVI, C-LV) and RVI angles of every slice and phase of a series.

    The task API every front end calls (Xue et al., Radiology: AI 2021; confidence after Schobs et al.,
    ISBI 2021).

    Args:
        series: SAX stack or cine, pixels ``[t, k, j, i]``.
        options: :class:`SaxOptions` (default: auto device, TTA, PHD-Net confidence).
        progress: ``progress(done_images, total_images)``.
        cancel: polled between batches; True raises :class:`Cancelled`.
        model: an already loaded model (batch workers keep one).

    Returns:
        :class:`~CardiacLandmarksLib.sax.report.LandmarkResult` (``write(outdir)`` writes the result folder).

    Raises:
        WrongViewError, InvalidImageError, ModelIntegrityError, Cancelled.
    """
    opts = options or SaxOptions()
    t0 = time.perf_counter()
    lmset = detect_landmarks(series, view="sax", device=opts.device, progress=progress, cancel=cancel, model=model,
                             tta=opts.tta, confidence=opts.confidence, batch_size=opts.batch_size)
    return LandmarkResult(series, lmset, render_overlay_png, "_overlay.png", time.perf_counter() - t0)
