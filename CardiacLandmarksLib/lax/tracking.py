"""Tracking landmarks through the phases of a cine by local image registration (SimpleITK).

Given a landmark's position on one or more *anchor* phases (detected by the model, or
placed / corrected by the user), its position on every other phase of the same slice is
found by chaining frame-to-frame registrations of a small disc around the point:

* **step**: for frames ``a -> b`` (adjacent phases), a ``sitk.ImageRegistrationMethod``
  with a translation (or rigid) transform, normalised correlation metric restricted to a
  disc of ``radius_mm`` around the point on frame ``a`` (fixed mask), regular-step
  gradient descent, two resolution levels. The point moves with the transform. No
  optimiser is written here; SimpleITK does the registration.
* **chains**: from every anchor the point is tracked forward (increasing phase) and
  backward until the next anchor (a cine is cyclic by default: after the last phase
  comes the first). Between two anchors ``a`` and ``b``, phase ``t`` gets the weighted mean
  of the forward and backward estimates with weights ``w * q_f`` and ``(1 - w) * q_b``:
  ``w = d_b / (d_a + d_b)`` (``d_a``, ``d_b``: steps from the two anchors), so each estimate
  counts most near its own anchor and the drift of a long chain is spread out, and ``q`` the
  chain's match quality (below), so a chain that went through a failed registration (e.g.
  a corrupted frame) drops out. With a single anchor, the forward and the backward chains
  go round the whole cycle.
* **drift correction**: after each chained step the anchor's own template is re-aligned,
  starting from the chained estimate, and replaces it when it matches (NCC above
  ``ncc_low``) within ``drift_max_mm`` ("template update with drift correction", Matthews,
  Ishikawa & Baker, IEEE PAMI 2004).
* **confidence** per phase and landmark, in [0, 1]: ``quality * agreement``. A chain's
  quality ``q`` = the worst normalised correlation (NCC) of its steps up to the phase, mapped
  linearly from [``ncc_low``, ``ncc_high``] to [0, 1]; ``quality = w * q_f + (1 - w) * q_b``.
  ``agreement = exp(-(d_eff / fb_scale_mm)^2)``: ``d`` mm is the disagreement of the forward
  and backward estimates and ``d_eff`` = ``d`` times the smaller normalised blend weight (the
  shift the blend applied to the estimate it trusts more: small next to an anchor, ``d / 2``
  half-way, 0 when one chain failed). A phase reached by one chain only gets agreement 0.7.
  Anchors keep their own confidence (1 for a user correction). ``flag`` is ``"low"`` below
  ``low_below``. In :func:`track_landmarks` a tracked point's confidence is then multiplied by that of its
  nearest anchor, and the point is ``"low"`` whenever that anchor is not ``"high"``: points tracked from an
  unchecked low detection stay as doubtful as it, also after a correction elsewhere in the cine.
  Calibrated on two cines only (``mnms2/001``, ``lax/amrg``) and constructed
  tests: read it as "the image evidence is consistent", not as a probability.

This is the "tracking" of Xue et al.'s long-axis pipeline done with registration instead of
per-phase detection, as the issue asks; chaining with forward/backward blending follows the
usual practice of cardiac feature tracking (e.g. mitral-annulus tracking in cine CMR).

Coordinates: 2D continuous pixel indices ``(i, j)`` on slice ``k``; frames ``[T, j, i]``
(one slice of a cine ``[t, k, j, i]``); ``spacing = (si, sj)`` mm.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from CardiacLandmarksLib.core.errors import CardiacLandmarksError, InvalidImageError
from CardiacLandmarksLib.core.review import corrected_landmark

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]


class TrackingCancelled(CardiacLandmarksError):
    """Tracking was cancelled by the user (``cancel()`` returned True)."""


class NoAnchorError(CardiacLandmarksError, ValueError):
    """Nothing to track from: no landmark (or not every required one) has a placed point on the slice."""


@dataclass(frozen=True)
class TrackingConfig:
    """Parameters of :func:`track_points` (defaults chosen on ``mnms2/001`` and ``lax/amrg``).

    Attributes:
        radius_mm: radius of the disc around the point whose appearance is matched.
        transform: ``"translation"`` or ``"rigid"`` (Euler 2D about the point).
        max_step_mm: a frame-to-frame move larger than this is taken as a failed step (the
            point stays put and the step's match quality is 0).
        ncc_low: normalised correlation at and below which a step counts as a failed match
            (match quality 0); also the least NCC for a drift correction to be accepted.
        ncc_high: NCC at and above which the match quality is 1.
        fb_scale_mm: effective forward/backward disagreement that lowers the confidence to ``1/e``.
        low_below: confidence below which a tracked point is flagged ``"low"``.
        cyclic: the cine covers one cardiac cycle (last phase is followed by the first).
        drift_correction: re-align the anchor template after each chained step.
        drift_max_mm: largest accepted drift correction.
    """

    radius_mm: float = 10.0
    transform: str = "translation"
    max_step_mm: float = 12.0
    ncc_low: float = 0.4
    ncc_high: float = 0.8
    fb_scale_mm: float = 3.0
    low_below: float = 0.5
    cyclic: bool = True
    drift_correction: bool = True
    drift_max_mm: float = 3.0


#: a cine with fewer phases than this is not tracked by :func:`..pipeline.detect_lax` (each phase keeps its own
#: detection), and points tracked on it here are flagged low. The tracker follows the
#: small steps between neighbouring phases. Measured from the true frame-0 points of the two UK Biobank demo 4CH
#: cines (silver labels on all 50 frames), keeping every s-th frame (/work/runs/s24/stride_track.py): with 50, 25,
#: 17 or 10 frames the mean error over the other frames was 3.9-4.8 mm (subject 1) and 3.0-3.6 mm (subject 2), and
#: AL-P at ES 8.6-10.3 mm off where the ES frame was kept; in the five cuts of 7 frames or fewer that kept the ES
#: frame (subject 1: 7 and 4 frames; subject 2: 7, 5 and 3) AL-P at ES was 16.6-22.8 mm off in four (subject 2
#: with 7 frames: 3.3 mm)
MIN_TRACKED_PHASES = 10


@dataclass
class TrackResult:
    """Tracked positions of ``L`` landmarks on ``T`` phases of one slice.

    Attributes:
        names: landmark names (length L).
        positions: ``[T, L, 2]`` continuous ``(i, j)``; NaN where a landmark has no anchor.
        confidence: ``[T, L]`` in [0, 1] (see module docstring).
        fb_mm: ``[T, L]`` forward/backward disagreement in mm (0 at anchors; NaN when a phase
            is reached by one chain only).
        match: ``[T, L]`` worst normalised correlation along the chains reaching the phase.
        anchors: per landmark, the anchor phases used.
    """

    names: tuple[str, ...]
    positions: np.ndarray
    confidence: np.ndarray
    fb_mm: np.ndarray
    match: np.ndarray
    anchors: dict[str, tuple[int, ...]] = field(default_factory=dict)


#: SimpleITK threads while :func:`track_points` runs (its global default, restored afterwards). Each registration is of
#: a small disc (a few hundred pixels), where ITK's threads cost more than they share: on 2 cores one took 9.0-9.8 ms
#: with 1 thread against 22.3-24.4 ms with ITK's default of 2 (20 frame pairs of a UK Biobank 4CH cine;
#: benchmarks/README.md). The registration method's own thread setting alone does not change it: its image
#: pyramids and the crops follow the global default.
REGISTRATION_THREADS = 1


_ITK_THREADS_LOCK = threading.Lock()
#: [number of :func:`_itk_threads` blocks open in any thread, SimpleITK's default before the first of them opened]
_ITK_THREADS_OPEN = [0, None]


@contextmanager
def _itk_threads(n: int):
    """SimpleITK's process-wide default thread count at ``n`` inside, restored when the last open block closes; also
    a function decorator.

    The setting is process-wide, and the review app re-tracks two landmarks at once in worker threads: each block
    saving and restoring it on its own let the first to finish put ITK's default back under the other (whose
    registrations then ran multi-threaded, a few tenths of a micrometre off the same re-tracking run alone), and
    the other then restored the 1 it had found, for the rest of the process. The open blocks are counted instead.
    """
    with _ITK_THREADS_LOCK:
        if _ITK_THREADS_OPEN[0] == 0:
            _ITK_THREADS_OPEN[1] = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
        _ITK_THREADS_OPEN[0] += 1
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(n))
    try:
        yield
    finally:
        with _ITK_THREADS_LOCK:
            _ITK_THREADS_OPEN[0] -= 1
            if _ITK_THREADS_OPEN[0] == 0:
                sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(_ITK_THREADS_OPEN[1])


def _to_sitk(frame: np.ndarray, spacing: tuple[float, float]) -> sitk.Image:
    img = sitk.GetImageFromArray(np.ascontiguousarray(frame, np.float32))
    img.SetSpacing((float(spacing[0]), float(spacing[1])))
    return img


def _crop(img: sitk.Image, centre_ij: np.ndarray, half_px: np.ndarray) -> sitk.Image:
    size = np.array(img.GetSize())
    lo = np.clip(np.floor(centre_ij - half_px).astype(int), 0, size - 1)
    hi = np.clip(np.ceil(centre_ij + half_px).astype(int) + 1, lo + 1, size)
    return img[int(lo[0]) : int(hi[0]), int(lo[1]) : int(hi[1])]


def register_point(
    fixed: sitk.Image,
    moving: sitk.Image,
    point_ij: np.ndarray,
    spacing: tuple[float, float],
    cfg: TrackingConfig = TrackingConfig(),
    init_shift_mm: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Where the disc around ``point_ij`` on ``fixed`` lies on ``moving``.

    Args:
        fixed, moving: 2D SimpleITK images of the same grid (origin 0, spacing ``spacing``,
            identity direction, so physical = ``(i * si, j * sj)``).
        point_ij: ``(i, j)`` on ``fixed``.
        cfg: radius, transform.
        init_shift_mm: starting translation (mm).

    Returns:
        ``(point (i, j) on moving, ncc)``; ncc = normalised correlation of the matched discs
        (1 = identical appearance).
    """
    sp = np.asarray(spacing, float)
    p_mm = np.asarray(point_ij, float) * sp
    r_px = cfg.radius_mm / sp
    f = _crop(fixed, np.asarray(point_ij, float), r_px + 2)
    m = _crop(moving, np.asarray(point_ij, float), r_px + cfg.max_step_mm / sp + 4)
    arr = sitk.GetArrayViewFromImage(f)
    origin = np.array(f.GetOrigin())
    jj, ii = np.mgrid[: arr.shape[0], : arr.shape[1]]
    xs, ys = origin[0] + ii * sp[0], origin[1] + jj * sp[1]
    disc = ((xs - p_mm[0]) ** 2 + (ys - p_mm[1]) ** 2) <= cfg.radius_mm**2
    mask = sitk.GetImageFromArray(disc.astype(np.uint8))
    mask.CopyInformation(f)
    init = [0.0, 0.0] if init_shift_mm is None else [float(x) for x in init_shift_mm]
    if cfg.transform == "rigid":
        tx = sitk.Euler2DTransform()
        tx.SetCenter([float(x) for x in p_mm])
        tx.SetTranslation(init)
    elif cfg.transform == "translation":
        tx = sitk.TranslationTransform(2, init)
    else:
        raise ValueError(f"transform must be 'translation' or 'rigid', not {cfg.transform!r}")
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsCorrelation()
    reg.SetMetricFixedMask(mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetInitialTransform(tx, inPlace=True)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=0.01, numberOfIterations=200,
                                                 relaxationFactor=0.7)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([1.0, 0.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    try:
        reg.Execute(f, m)
        ncc = float(-reg.GetMetricValue())
    except RuntimeError as exc:  # e.g. too few samples inside the mask
        logger.debug("registration failed: %s", exc)
        return np.asarray(point_ij, float), 0.0
    q_mm = np.array(tx.TransformPoint([float(x) for x in p_mm]))
    if not np.all(np.isfinite(q_mm)) or np.linalg.norm(q_mm - p_mm) > cfg.max_step_mm:
        return np.asarray(point_ij, float), 0.0
    return q_mm / sp, ncc


def _chain(images: list[sitk.Image], start: int, start_ij: np.ndarray, steps: int, direction: int,
           spacing, cfg: TrackingConfig, tick: Callable[[], None]) -> tuple[list[np.ndarray], list[float]]:
    """Track from phase ``start`` for ``steps`` steps in ``direction`` (+1/-1), cyclic indices.

    Returns positions and running worst ncc for the phases reached (length ``steps``).
    """
    n = len(images)
    pos, worst = [], []
    p = np.asarray(start_ij, float)
    w = 1.0
    prev_shift = None
    for s in range(1, steps + 1):
        a = (start + direction * (s - 1)) % n
        b = (start + direction * s) % n
        q, ncc = register_point(images[a], images[b], p, spacing, cfg, init_shift_mm=prev_shift)
        if cfg.drift_correction and s > 1 and ncc > 0:
            # template update with drift correction (Matthews et al., IEEE PAMI 2004): re-align the
            # anchor's own template, starting from the chained estimate; keep it when it stays close
            sp_ = np.asarray(spacing, float)
            q2, ncc2 = register_point(images[start], images[b], np.asarray(start_ij, float), spacing, cfg,
                                      init_shift_mm=(q - np.asarray(start_ij, float)) * sp_)
            if ncc2 > cfg.ncc_low and np.linalg.norm((q2 - q) * sp_) <= cfg.drift_max_mm:
                q = q2
        prev_shift = (q - p) * np.asarray(spacing, float) if ncc > 0 else None
        p = q
        w = min(w, ncc)
        pos.append(p.copy())
        worst.append(w)
        tick()
    return pos, worst


def check_anchors(anchors: dict[str, dict[int, np.ndarray]], shape: tuple[int, int, int]) -> None:
    """Check that every anchor ``(i, j)`` is finite, on an existing phase and inside the ``[T, j, i]`` frames.

    Raises:
        InvalidImageError: naming the landmark and phase of the first bad anchor.
    """
    n_t, h, w = shape
    for name, anc in anchors.items():
        for t, p in anc.items():
            p = np.asarray(p, float)
            if not (0 <= int(t) < n_t) or p.shape != (2,) or not np.all(np.isfinite(p)):
                raise InvalidImageError(f"anchor of {name} on phase {t} is invalid (phase range 0..{n_t - 1}, "
                                        f"point {p.tolist()})")
            if not (-0.5 <= p[0] <= w - 0.5 and -0.5 <= p[1] <= h - 0.5):
                raise InvalidImageError(f"anchor of {name} on phase {t} lies outside the {w}x{h} image")


@_itk_threads(REGISTRATION_THREADS)
def track_points(
    frames: np.ndarray,
    anchors: dict[str, dict[int, np.ndarray]],
    spacing: tuple[float, float],
    cfg: TrackingConfig = TrackingConfig(),
    anchor_confidence: dict[str, dict[int, float]] | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> TrackResult:
    """Track landmarks through every phase of one slice from their anchor positions.

    SimpleITK runs with :data:`REGISTRATION_THREADS` threads meanwhile (a process-wide setting, restored on return).

    Args:
        frames: ``[T, j, i]`` images of one slice over the cardiac cycle.
        anchors: ``{name: {phase: (i, j)}}``; at least one anchor per landmark to track
            (a landmark with no anchor gets NaN everywhere).
        spacing: pixel size ``(si, sj)`` mm.
        cfg: :class:`TrackingConfig`.
        anchor_confidence: ``{name: {phase: confidence}}`` for anchors (default 1.0).
        progress: ``progress(done_steps, total_steps)``.
        cancel: polled once per registration; True raises :class:`TrackingCancelled`.

    Returns:
        :class:`TrackResult` (see module docstring for blending and confidence).

    Raises:
        InvalidImageError: frames not ``[T, j, i]``, non-finite pixels, or an anchor outside
            the image / on a phase that does not exist.
        TrackingCancelled: ``cancel()`` returned True.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.shape[0] < 1:
        raise InvalidImageError(f"frames must be [T, j, i], got shape {frames.shape}")
    if not np.all(np.isfinite(frames)):
        raise InvalidImageError("frames contain NaN or infinite values")
    n_t = frames.shape[0]
    names = tuple(anchors)
    check_anchors(anchors, frames.shape)
    scale = float(np.percentile(frames, 99)) or 1.0
    images = [_to_sitk(f / scale, spacing) for f in frames]
    n_l = len(names)
    pos = np.full((n_t, n_l, 2), np.nan)
    conf = np.zeros((n_t, n_l))
    fb = np.full((n_t, n_l), np.nan)
    match = np.full((n_t, n_l), np.nan)
    anchor_confidence = anchor_confidence or {}
    total = sum(_n_steps(sorted(int(t) for t in anchors[nm]), n_t, cfg.cyclic) for nm in names)
    done = [0]

    def tick() -> None:
        if cancel is not None and cancel():
            raise TrackingCancelled("tracking cancelled")
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    used: dict[str, tuple[int, ...]] = {}
    for li, name in enumerate(names):
        anc = {int(t): np.asarray(p, float) for t, p in anchors[name].items()}
        if not anc:
            continue
        phases = sorted(anc)
        used[name] = tuple(phases)
        for t in phases:
            pos[t, li] = anc[t]
            conf[t, li] = float(anchor_confidence.get(name, {}).get(t, 1.0))
            fb[t, li] = 0.0
            match[t, li] = 1.0
        for a, b, gap in _segments(phases, n_t, cfg.cyclic):
            # phases strictly between a and b (cyclic) get fwd from a and bwd from b
            inner = gap - 1
            f_pos, f_w = _chain(images, a, anc[a], inner, +1, spacing, cfg, tick) if a is not None else ([], [])
            b_pos, b_w = _chain(images, b, anc[b], inner, -1, spacing, cfg, tick) if b is not None else ([], [])
            for s in range(1, inner + 1):
                t = ((a if a is not None else b - gap) + s) % n_t
                has_f, has_b = a is not None, b is not None
                fp = f_pos[s - 1] if has_f else None
                bp = b_pos[inner - s] if has_b else None
                fw = f_w[s - 1] if has_f else np.nan
                bw = b_w[inner - s] if has_b else np.nan
                if has_f and has_b:
                    wf = (gap - s) / gap
                    qf, qb = _quality(fw, cfg), _quality(bw, cfg)
                    af, ab = wf * qf, (1 - wf) * qb
                    if af + ab <= 0:
                        af, ab = wf, 1 - wf
                    p = (af * fp + ab * bp) / (af + ab)
                    d = float(np.linalg.norm((fp - bp) * np.asarray(spacing, float)))
                    worst = min(fw, bw)
                    quality = wf * qf + (1 - wf) * qb
                    agree = float(np.exp(-((min(af, ab) / (af + ab) * d / cfg.fb_scale_mm) ** 2)))
                else:
                    p = fp if has_f else bp
                    d = np.nan
                    worst = fw if has_f else bw
                    quality = _quality(worst, cfg)
                    agree = 0.7  # one chain only: cannot check, never "high" by agreement alone
                pos[t, li] = p
                fb[t, li] = d
                match[t, li] = worst
                conf[t, li] = quality * agree
    return TrackResult(names=names, positions=pos, confidence=conf, fb_mm=fb, match=match, anchors=used)


def _quality(ncc: float, cfg: TrackingConfig) -> float:
    """Match quality in [0, 1] of a chain from its worst NCC (see module docstring)."""
    return float(np.clip((ncc - cfg.ncc_low) / (cfg.ncc_high - cfg.ncc_low), 0.0, 1.0))


def _segments(phases: list[int], n_t: int, cyclic: bool) -> list[tuple[int | None, int | None, int]]:
    """(start anchor, end anchor, steps between them) covering every non-anchor phase.

    Cyclic: consecutive anchors with wrap-around (a single anchor pairs with itself over the
    full cycle). Not cyclic: the phases before the first anchor are reached backward only
    (start None) and those after the last forward only (end None).
    """
    segs: list[tuple[int | None, int | None, int]] = []
    if cyclic:
        for i, a in enumerate(phases):
            b = phases[(i + 1) % len(phases)]
            gap = (b - a) % n_t or n_t
            if gap > 1:
                segs.append((a, b, gap))
        return segs
    if phases[0] > 0:
        segs.append((None, phases[0], phases[0] + 1))
    for a, b in zip(phases[:-1], phases[1:]):
        if b - a > 1:
            segs.append((a, b, b - a))
    if phases[-1] < n_t - 1:
        segs.append((phases[-1], None, n_t - phases[-1]))
    return segs


def _nearest_anchors(t: int, phases, n_t: int, cyclic: bool) -> list[int]:
    """The anchor phases nearest to phase ``t`` in steps (round the cycle when ``cyclic``): one, or two at the same
    distance; empty without anchors."""
    dist = {}
    for a in phases:
        d = abs(int(t) - int(a))
        dist[int(a)] = min(d, n_t - d) if cyclic else d
    if not dist:
        return []
    best = min(dist.values())
    return [a for a, d in dist.items() if d == best]


def _n_steps(phases: list[int], n_t: int, cyclic: bool) -> int:
    if not phases:
        return 0
    total = 0
    for a, b, gap in _segments(phases, n_t, cyclic):
        total += (gap - 1) * ((a is not None) + (b is not None))
    return total


# --------------------------------------------------------------------------------------------
# LandmarkSet level: track from detected / placed points, re-track after a correction
# --------------------------------------------------------------------------------------------

def _frames_of(series, k: int) -> np.ndarray:
    if not (0 <= k < series.n_slices):
        raise InvalidImageError(f"slice {k} out of range 0..{series.n_slices - 1}")
    return np.asarray(series.pixels[:, k], np.float32)


def _anchor_ij(series, lm, k: int) -> np.ndarray:
    """(i, j) of a found landmark on slice k, from its LPS position (ijk may be missing)."""
    ijk = np.asarray(series.lps_to_ijk(np.asarray(lm.position, float)), float)
    if abs(ijk[2] - k) > 0.5:
        logger.warning("%s on phase %d lies %.1f slices off slice %d; projected onto it", lm.name, lm.phase,
                    abs(ijk[2] - k), k)
    return ijk[:2]


def _tracked_set(series, base, result: TrackResult, k: int, keep: dict, cfg: TrackingConfig):
    """LandmarkSet from a TrackResult; ``keep`` = {(name, phase): Landmark} anchors kept as given."""
    from CardiacLandmarksLib.core.landmarks import Landmark, LandmarkSet

    out = LandmarkSet(source=base.source or series.source, view=base.view, model=dict(base.model)).with_source_of(base)
    n_t = result.positions.shape[0]
    few = n_t < MIN_TRACKED_PHASES  # frames too far apart for the tracker: every tracked point is low
    for t in range(n_t):
        for li, name in enumerate(result.names):
            if (name, t) in keep:
                a = keep[(name, t)]
                out.landmarks.append(Landmark(name, k, t, True, np.asarray(a.position, float),
                                              np.r_[series.lps_to_ijk(np.asarray(a.position, float))[:2], k],
                                              float(a.confidence), a.flag, bool(a.corrected), a.doubt,
                                              bool(a.confirmed)))
                continue
            p = result.positions[t, li]
            if not np.all(np.isfinite(p)):
                out.landmarks.append(Landmark(name, k, t, False, np.full(3, np.nan), np.full(3, np.nan), 0.0, "absent"))
                continue
            ijk = np.array([p[0], p[1], float(k)])
            # a tracked point is as doubtful as the anchor it mostly comes from (the nearer one: the blend weights
            # each chain by its closeness): its confidence times that anchor's, and low when that anchor is
            nearest = [keep[(name, a)] for a in _nearest_anchors(t, result.anchors.get(name, ()), n_t, cfg.cyclic)
                       if (name, a) in keep]
            # of two anchors at the same distance, the less trusted one
            anchor = min(nearest, key=lambda a: (a.flag == "high", a.confidence)) if nearest else None
            src = anchor.phase if anchor is not None else None
            c = float(result.confidence[t, li]) * (float(anchor.confidence) if anchor is not None else 1.0)
            doubt = ("tracking: weak image match or forward/backward estimates disagree"
                     if float(result.confidence[t, li]) < cfg.low_below else "")
            if anchor is not None and anchor.flag != "high":
                doubt = f"tracked from {name} on phase {src}, which is {anchor.flag} (check it)"
            if few:
                doubt = f"tracking: only {n_t} phases, too far apart to follow (check the point)"
            out.landmarks.append(Landmark(name, k, t, True, series.ijk_to_lps(ijk), ijk, c, "low" if doubt else "high",
                                          doubt=doubt))
    trk = dict(out.model.get("tracking", {}))
    anchors = dict(trk.get("anchors", {}))
    anchors.update({n: [int(x) for x in ph] for n, ph in result.anchors.items()})
    trk.update({"method": "SimpleITK local registration, forward/backward chains with drift correction",
                "slice": int(k), "anchors": anchors,
                "config": {f: getattr(cfg, f) for f in cfg.__dataclass_fields__}})
    out.model["tracking"] = trk
    return out


def track_landmarks(
    series,
    seed,
    k: int = 0,
    cfg: TrackingConfig = TrackingConfig(),
    names: list[str] | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
):
    """Track landmarks through every phase of slice ``k`` of a cine.

    Anchors, per landmark: the phases recorded in ``seed.model["tracking"]["anchors"]`` (set by
    an earlier tracking run) plus every point marked ``corrected``; when neither is among the
    given points (a fresh detection or placement, or one phase's ``.mrk.json`` of a run that
    tracked from another phase), every found point of it in ``seed`` on slice ``k`` is an
    anchor (typically one phase), so tracking starts from the phase of the points given. Anchors keep their position, confidence and
    flag; the other phases are tracked (:func:`track_points`).

    Args:
        series: :class:`~.series.CMRSeries` cine (``pixels [t, k, j, i]``).
        seed: :class:`~.landmarks.LandmarkSet` holding the anchor points (LPS mm).
        k: slice to track on.
        cfg: :class:`TrackingConfig`.
        names: landmarks to (re-)track; the others are copied from ``seed`` unchanged
            (default: every landmark name in ``seed``).
        progress, cancel: see :func:`track_points`.

    Returns:
        :class:`~.landmarks.LandmarkSet` with one entry per landmark x phase on slice ``k``,
        ``model["tracking"]`` recording the anchors, and LV-length measurements for a
        long-axis view (:func:`.lax_measurements.lv_length_measurements`). On a cine of fewer than
        :data:`MIN_TRACKED_PHASES` phases every tracked (non-anchor) point is flagged ``"low"``.

    Raises:
        InvalidImageError: bad slice / pixels, an anchor outside the image.
        NoAnchorError: none of the landmarks to track has a found point on slice ``k``.
        TrackingCancelled: cancelled.
    """
    frames = _frames_of(series, k)
    all_names = list(dict.fromkeys(lm.name for lm in seed.landmarks))
    todo = list(names) if names is not None else all_names
    recorded = {n: set(v) for n, v in seed.model.get("tracking", {}).get("anchors", {}).items()}
    anchors: dict[str, dict[int, np.ndarray]] = {}
    conf: dict[str, dict[int, float]] = {}
    keep = {}
    for name in todo:
        mine = [lm for lm in seed.landmarks if lm.name == name and lm.slice == k]
        chosen = [lm for lm in mine if lm.found and (lm.corrected or lm.phase in recorded.get(name, set()))]
        if not chosen and not any(lm.phase in recorded.get(name, set()) for lm in mine):
            # a fresh detection or placement, or points of other phases than the recorded anchors (e.g. one
            # phase's .mrk.json written by detect after tracking from another phase): track from what is given
            chosen = [lm for lm in mine if lm.found]
        if not chosen:
            logger.warning("%s has no anchor point on slice %d: not tracked", name, k)
            continue
        anchors[name] = {lm.phase: _anchor_ij(series, lm, k) for lm in chosen}
        conf[name] = {lm.phase: float(lm.confidence) for lm in chosen}
        keep.update({(name, lm.phase): lm for lm in chosen})
    if todo and not anchors:
        raise NoAnchorError(f"no landmark of {todo} has a placed (found) point on slice {k}: nothing to track; "
                            "place the points on one phase (or pass the slice that holds them)")
    result = track_points(frames, anchors, series.spacing[:2], cfg, conf, progress, cancel)
    out = _tracked_set(series, seed, result, k, keep, cfg)
    # landmarks not re-tracked: copy from the seed
    tracked = set(result.names)
    out.landmarks += [lm for lm in seed.landmarks if lm.name not in tracked or lm.slice != k]
    order = {n: i for i, n in enumerate(all_names)}
    out.landmarks.sort(key=lambda lm: (lm.phase, lm.slice, order.get(lm.name, 99)))
    out.measurements = _lax_measurements(out, seed.measurements)
    return out


def retrack_landmark(series, lmset, name: str, k: int = 0, cfg: TrackingConfig = TrackingConfig(),
                     progress: ProgressFn | None = None, cancel: CancelFn | None = None):
    """After a reader's correction of ``name`` on slice ``k``: that landmark re-tracked through the cine from its
    anchors (its corrected points and the anchors recorded by an earlier tracking run, :func:`track_landmarks`),
    so the neighbouring phases follow the correction. The one rule that :func:`correct_landmark`, the Slicer
    module and the review app share.

    A series of fewer than :data:`MIN_TRACKED_PHASES` phases is returned unchanged (each phase keeps its own point:
    such frames are too far apart to track), as is a landmark with no found point on the slice.

    Args:
        series: the cine :class:`~.series.CMRSeries` (``pixels [t, k, j, i]``).
        lmset: the landmarks after the correction (not modified).
        name, k: the corrected landmark and its slice.
        progress, cancel: see :func:`track_points`.

    Returns:
        A new :class:`~.landmarks.LandmarkSet` (or ``lmset`` itself when nothing is re-tracked), with the LV-length
        measurements of a long-axis view.

    Raises:
        InvalidImageError: bad slice / pixels, an anchor outside the image. TrackingCancelled: cancelled.
    """
    if series.n_phases < MIN_TRACKED_PHASES:
        return lmset
    if not any(lm.name == name and lm.slice == k and lm.found for lm in lmset.landmarks):
        return lmset
    return track_landmarks(series, lmset, k=k, cfg=cfg, names=[name], progress=progress, cancel=cancel)


def _lax_measurements(lmset, before=()) -> list:
    """LV length and shortening of ``lmset``, keeping the input warnings of the measurements ``before`` (the set's
    measurements before the correction or tracking: :func:`CardiacLandmarksLib.core.landmarks.add_input_sources`)."""
    from CardiacLandmarksLib.core.landmarks import add_input_sources, input_sources
    from CardiacLandmarksLib.lax.measurements import LAX_VIEWS, lv_length_measurements

    if lmset.view in LAX_VIEWS:
        return add_input_sources(lv_length_measurements(lmset, lmset.view), input_sources(before))
    return []


def correct_landmark(
    series,
    lmset,
    name: str,
    phase: int,
    position_lps: np.ndarray | None,
    k: int = 0,
    cfg: TrackingConfig = TrackingConfig(),
    retrack: bool = True,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
):
    """Apply a user correction of one landmark on one phase, then re-track that landmark
    (:func:`retrack_landmark`: not on a cine of fewer than :data:`MIN_TRACKED_PHASES` phases).

    The corrected point becomes an anchor (``corrected=True``, confidence 1, flag
    ``"high"``; ``confirmed=True`` when it is where the point already was: the reader confirmed it); the earlier anchors of the landmark stay anchors, so tracking re-runs from
    the corrected phase towards its neighbouring anchors (forward and backward) and the
    other phases change accordingly. ``position_lps=None`` marks the landmark absent on that
    phase (it is then no anchor). The LV-length measurements are recomputed.

    Args:
        series: the cine :class:`~.series.CMRSeries`.
        lmset: the current :class:`~.landmarks.LandmarkSet` (not modified).
        name: landmark name, e.g. ``"APEX"``.
        phase: phase index of the correction.
        position_lps: new LPS position ``(3,)`` mm, or None.
        k: slice.
        retrack: False = only replace the point and recompute measurements.

    Returns:
        A new :class:`~.landmarks.LandmarkSet`.

    Raises:
        ValueError: unknown landmark or phase.
        InvalidImageError: position not finite / outside the image.
    """
    import copy

    from CardiacLandmarksLib.core.landmarks import Landmark, LandmarkSet

    if not (0 <= int(phase) < series.n_phases):
        raise ValueError(f"phase {phase} out of range 0..{series.n_phases - 1}")
    if name not in {lm.name for lm in lmset.landmarks}:
        raise ValueError(f"landmark {name!r} not in the set ({sorted({lm.name for lm in lmset.landmarks})})")
    new = LandmarkSet(lmset.source, lmset.view, copy.deepcopy(lmset.model),
                      landmarks=[copy.copy(lm) for lm in lmset.landmarks if not (lm.name == name and lm.slice == k
                                                                        and lm.phase == int(phase))]
                      ).with_source_of(lmset)
    if position_lps is None:
        new.landmarks.append(Landmark(name, k, int(phase), False, np.full(3, np.nan), np.full(3, np.nan), 0.0,
                                      "absent", corrected=True))
        anchors = new.model.setdefault("tracking", {}).setdefault("anchors", {})
        if name in anchors:
            anchors[name] = [p for p in anchors[name] if p != int(phase)]
    else:
        pos = np.asarray(position_lps, float).reshape(-1)
        if pos.shape != (3,) or not np.all(np.isfinite(pos)):
            raise InvalidImageError(f"corrected position of {name} must be 3 finite LPS mm values")
        ijk = series.lps_to_ijk(pos)
        h, w = series.shape_ji
        if not (-0.5 <= ijk[0] <= w - 0.5 and -0.5 <= ijk[1] <= h - 0.5):
            raise InvalidImageError(f"corrected {name} lies outside the image")
        old = lmset.get(name, k, int(phase))
        # the shared correction rule: every call here is the reader's point, so a point given where it already was
        # is a confirmation (``confirmed``), a moved one a plain correction
        new.landmarks.append(corrected_landmark(old, name, k, int(phase), True, pos, np.r_[ijk[:2], k],
                                                user_marked=old is None, confirmed=old is not None))
    if not retrack:
        new.measurements = _lax_measurements(new, lmset.measurements)
        return new
    if position_lps is None and not any(lm.name == name and lm.slice == k and (lm.corrected and lm.found)
                                        for lm in new.landmarks) and not new.model.get("tracking", {}).get(
                                            "anchors", {}).get(name):
        new.measurements = _lax_measurements(new, lmset.measurements)
        return new
    out = retrack_landmark(series, new, name, k, cfg, progress, cancel)
    if out is new:  # not re-tracked (fewer than MIN_TRACKED_PHASES phases): the measurements of the correction
        new.measurements = _lax_measurements(new, lmset.measurements)
    return out


def seed_from_points(series, points_lps: dict, phase: int, view: str, k: int = 0, corrected: bool = True,
                     source: str | None = None):
    """A :class:`~.landmarks.LandmarkSet` holding user-placed points on one phase, ready for
    :func:`track_landmarks`.

    Args:
        series: the cine.
        points_lps: ``{name: (3,) LPS mm}`` e.g. ``{"IS-P": ..., "AL-P": ..., "APEX": ...}``.
        phase: phase the points were placed on.
        view: ``"2ch"``, ``"3ch"`` or ``"4ch"``.
        k: slice.
        corrected: mark the points as placed by the user (confidence 1, flag ``"high"``).

    Raises:
        ValueError: phase out of range, or a name not of this view.
        InvalidImageError: a point that is not 3 finite numbers.
    """
    from CardiacLandmarksLib.core.landmarks import LANDMARKS_BY_VIEW, Landmark, LandmarkSet

    if view not in LANDMARKS_BY_VIEW or view == "sax":
        raise ValueError(f"view must be 2ch, 3ch or 4ch, not {view!r}")
    if not (0 <= int(phase) < series.n_phases):
        raise ValueError(f"phase {phase} out of range 0..{series.n_phases - 1}")
    lms = []
    for name, p in points_lps.items():
        if name not in LANDMARKS_BY_VIEW[view]:
            raise ValueError(f"{name!r} is not a {view.upper()} landmark ({LANDMARKS_BY_VIEW[view]})")
        pos = np.asarray(p, float).reshape(-1)
        if pos.shape != (3,) or not np.all(np.isfinite(pos)):
            raise InvalidImageError(f"{name}: position must be 3 finite LPS mm values")
        ijk = series.lps_to_ijk(pos)
        lms.append(Landmark(name, k, int(phase), True, pos, np.r_[ijk[:2], k], 1.0, "high", corrected=corrected))
    return LandmarkSet(source or str(series.source), view, {}, lms)
