"""Long-axis detection pipeline: model on every phase -> best phase -> tracking -> LV length.

For a 2CH/3CH/4CH cine (``pixels [t, k, j, i]``, usually one slice):

1. **view**: the requested view, or ``"auto"`` (:func:`.view.recognise_view`); a series
   known to be another view raises :class:`~.errors.WrongViewError`;
2. **detection** on every phase: canvas (:mod:`.preprocessing`) -> the view's bundled U-Net
   ``lax<view>_unet`` (:mod:`.training.train_lax`) -> peak decoding. Confidence = the mean
   heatmap peak over the image and 4 test-time-augmented copies (rotated +-12 degrees,
   scaled x0.9 / x1.1, positions mapped back); a point is ``"high"`` only when that peak
   reaches the card's ``high_confidence`` threshold **and** the augmented copies agree
   within ``tta_max_spread_mm`` (5 mm): a model trained on two subjects is unsure on
   anything unlike them, and disagreement under small perturbations is how that shows;
   The canvas is built from the file geometry and is never a mirror image (see
   :data:`.lax.labels.CANVAS_4CH_HANDEDNESS`); the model was trained without mirror
   augmentation, so it relies on that handedness. A file without orientation keeps its
   stored axes, whose handedness is unknown: a note says so;
3. **naming check** (4CH/3CH/2CH hinge names): the model names the hinges from image content
   (septal = next to the RV). When the orientation is known, the geometric rule of
   :func:`.lax_labels.name_hinges` is checked too; for DICOM input (trusted header) the
   geometry wins and the names are swapped if they disagree, for other files (whose headers
   may be wrong, as the M&Ms-2 NIfTI copies here) the model's names stay. Either way a
   disagreement flags both hinges ``"low"`` and is noted in ``model["lax_checks"]``;
4. **tracking** (:mod:`.tracking`): the phase whose weakest landmark has the highest
   confidence is the anchor; the three points are tracked from it through every phase.
   A tracked point's confidence = tracking confidence x the anchor's detection confidence,
   and it is ``"high"`` only when both are. Where the per-phase detection is confident and
   lies more than ``DISAGREE_MM`` from the tracked point, the point is flagged low;
5. **measurements**: LV length on every phase and longitudinal shortening
   (:mod:`.lax_measurements`).

Method: Xue et al., "Landmark detection in cardiac MRI by using a convolutional neural
network", Radiology: AI 2021 (landmarks, LV length); tracking by SimpleITK registration.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from CardiacLandmarksLib.core.errors import InvalidImageError, ModelIntegrityError, WrongViewError
from CardiacLandmarksLib.core.landmarks import LANDMARKS_BY_VIEW, Landmark, LandmarkSet, past_limit
from CardiacLandmarksLib.core.preprocessing import make_grid, normalise_intensity, resample_to_canvas
from CardiacLandmarksLib.core.series import CMRSeries
from CardiacLandmarksLib.lax.labels import FIRST_HINGE_DIRECTION_LPS, HINGE_NAMES, LAX_CANVAS_UP
from CardiacLandmarksLib.lax.measurements import LAX_VIEWS, lv_length_measurements
from CardiacLandmarksLib.lax.report import render_lax_png
from CardiacLandmarksLib.lax.tracking import MIN_TRACKED_PHASES, TrackingConfig, track_landmarks
from CardiacLandmarksLib.models.decoding import decode_heatmaps
from CardiacLandmarksLib.sax.pipeline import SaxOptions
from CardiacLandmarksLib.sax.report import LandmarkResult

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]

#: test-time augmentations (rotation degrees, scale) besides the identity
TTA = ((12.0, 1.0), (-12.0, 1.0), (0.0, 0.9), (0.0, 1.1))
#: a confident per-phase detection further than this from the tracked point flags it low (mm)
DISAGREE_MM = 6.0


def resolve_view(series: CMRSeries, view: str) -> tuple[str, list[str]]:
    """The long-axis view to run (``"2ch"``/``"3ch"``/``"4ch"``) and notes.

    ``"auto"``: :func:`.view.recognise_view`; a long-axis series whose chamber view is not
    named runs the 4CH model (the only bundled one) with a note.

    Raises:
        WrongViewError: the series is (or is requested as) short axis, or is known to be
            another long-axis view than the one requested.
        ValueError: unknown view string.
    """
    from CardiacLandmarksLib.io.view import recognise_view

    notes: list[str] = []
    v = (view or "auto").lower()
    if v == "auto":
        g = recognise_view(series)
        notes.append(f"view: {g.reason}")
        if g.view == "sax":
            raise WrongViewError(f"{series.description or series.source!r} looks like a short-axis series "
                                 f"({g.reason}); use the SAX detector or pass --view 2ch|3ch|4ch")
        if g.view in LAX_VIEWS:
            return g.view, notes
        notes.append("chamber view not known; running the 4CH model (pass --view to choose)")
        return "4ch", notes
    if v not in LAX_VIEWS:
        raise ValueError(f"long-axis view must be one of {LAX_VIEWS} or 'auto', not {view!r}")
    if series.view not in ("unknown", v):
        raise WrongViewError(f"series {series.description or series.source!r} looks like a {series.view.upper()} "
                             f"view, but the {v.upper()} model was requested (choose --view {series.view})")
    return v, notes


def _rotate_scale(images: np.ndarray, angle_deg: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate/scale canvas images about their centre; returns (images, 2x2 matrix A) with
    output xy = A @ (input xy - c) + c."""
    from scipy import ndimage

    n, h, w = images.shape
    a = np.radians(angle_deg)
    mat = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    inv = np.linalg.inv(mat)
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    # ndimage works in (row, col): input (y, x) = inv @ (out - c) + c in (x, y) order -> swap
    m_rc = inv[::-1, ::-1]
    c_rc = c[::-1]
    offset = c_rc - m_rc @ c_rc
    out = np.stack([ndimage.affine_transform(im, m_rc, offset=offset, order=1, mode="constant", cval=0.0)
                    for im in images])
    return out.astype(np.float32), mat


def predict_with_tta(model, canvases: np.ndarray, tta: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Landmark positions, peaks and TTA spread on canvas images ``[n, H, W]``.

    Returns:
        ``(xy [n, L, 2] canvas px (identity pass), peak [n, L] mean over passes,
        spread [n, L] largest distance (canvas px) of a pass from the median position)``.
    """
    xy0, pk0 = decode_heatmaps(model.predict(canvases))
    if not tta:
        return xy0, pk0, np.zeros_like(pk0)
    n, h, w = canvases.shape
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    all_xy, all_pk = [xy0], [pk0]
    for ang, sc in TTA:
        imgs, mat = _rotate_scale(canvases, ang, sc)
        xy, pk = decode_heatmaps(model.predict(imgs))
        all_xy.append((xy - c) @ np.linalg.inv(mat).T + c)
        all_pk.append(pk)
    stack = np.stack(all_xy)  # [P, n, L, 2]
    med = np.median(stack, axis=0)
    spread = np.linalg.norm(stack - med, axis=-1).max(axis=0)
    return xy0, np.mean(all_pk, axis=0), spread


def _hinge_check(series: CMRSeries, view: str, pts: dict[str, np.ndarray]) -> bool | None:
    """True when the first hinge lies towards the view's anatomical direction (LPS); None if unknown."""
    if not series.orientation_known:
        return None
    a, b = HINGE_NAMES[view]
    if a not in pts or b not in pts:
        return None
    return bool((pts[a] - pts[b]) @ FIRST_HINGE_DIRECTION_LPS[view] >= 0)


def detect_lax(
    series: CMRSeries,
    view: str = "4ch",
    device: str = "auto",
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    model=None,
    track: bool = True,
    tta: bool = True,
    tracking: TrackingConfig | None = None,
) -> LandmarkSet:
    """Detect the long-axis landmarks (two mitral-valve points + APEX) on every phase and slice.

    Args:
        series: long-axis cine (``pixels [t, k, j, i]``; a single frame works, without tracking).
        view: ``"2ch"``, ``"3ch"``, ``"4ch"`` or ``"auto"``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: ``progress(done, total)``: detection counts the images, tracking the
            registration steps (two successive runs of the bar).
        cancel: polled between batches / registrations; True raises ``pipeline.Cancelled``
            (detection) or ``tracking.TrackingCancelled`` (tracking).
        model: an already loaded :class:`~.inference.LoadedModel` (default: the bundled one).
        track: track from the best phase (True) or keep the per-phase detections (False). An ED + ES file pair
            (``metadata["phase_labels"] == ["ED", "ES"]``, two phases) and a series of fewer than
            :data:`MIN_TRACKED_PHASES` phases are never tracked: their frames are too far apart to be neighbouring
            phases.
        tta: test-time augmentation for the confidence (see module docstring).
        tracking: tracking parameters (default :class:`TrackingConfig`).

    Returns:
        :class:`LandmarkSet` (view = the LAX view; one entry per landmark x slice x phase,
        LPS mm and input ijk; ``measurements`` = LV length per phase, LV length ED/ES and
        longitudinal shortening; ``model`` = the model's name/version/sha256 plus
        ``"lax_checks"`` notes and, when tracked, ``"tracking"``).

    Raises:
        WrongViewError, ModelIntegrityError (no bundled model for the view: place the points
        and track, or train one), InvalidImageError, pipeline.Cancelled,
        tracking.TrackingCancelled.
    """
    from CardiacLandmarksLib.models.loader import load_model
    from CardiacLandmarksLib.sax.pipeline import Cancelled

    view, notes = resolve_view(series, view)
    if not np.all(np.isfinite(series.pixels)):
        raise InvalidImageError(f"series {series.source!r} contains NaN or infinite pixel values")
    if model is None:
        try:
            model = load_model(view, device)
        except ModelIntegrityError as exc:
            raise ModelIntegrityError(
                f"{exc}. No {view.upper()} landmark model is available: place the three points on one phase "
                f"(Slicer, or a .mrk.json) and track them with 'cardiac-landmarks lax-track CINE --points "
                f"POINTS.mrk.json --phase N' (N: the phase they were placed on), or train a model "
                f"with 'cardiac-landmarks train --view {view} --data FOLDER'") from exc
    names = LANDMARKS_BY_VIEW[view]
    if not series.orientation_known:
        notes.append("no patient orientation in the file: the model sees the stored axes, whose left/right "
                     "handedness is unknown; if the file is stored mirrored (a four-chamber view with the LV on the "
                     "wrong side of the septum), the model has never seen such an anatomy and may swap LV and RV: "
                     "check that IS-P is on the septum and AL-P on the LV free wall")
    thr = model.card.get("thresholds", {})

    def per(key: str, default: float) -> dict[str, float]:
        v = thr.get(key, default)
        return {n: float(v[n] if isinstance(v, dict) else v) for n in names}

    found_t, high_t = per("found", 0.1), per("high_confidence", 0.5)
    max_spread = float(model.card.get("confidence", {}).get("tta_max_spread_mm", 5.0))
    lmset = LandmarkSet(view=view, model=model.describe(), **LandmarkSet.source_of(series))
    total = series.n_slices * series.n_phases
    done = 0
    for k in range(series.n_slices):
        if cancel is not None and cancel():
            raise Cancelled("landmark detection cancelled")
        grid = make_grid(series, k, up=LAX_CANVAS_UP)
        canv = resample_to_canvas(np.stack([normalise_intensity(series.pixels[t, k]) for t in range(series.n_phases)]),
                                  grid)
        xy, peak, spread = predict_with_tta(model, canv, tta)
        spread_mm = spread * grid.mm
        for t in range(series.n_phases):
            pts = {}
            for c, name in enumerate(names):
                p = float(peak[t, c])
                found = p >= found_t[name]
                ijk = grid.canvas_to_ijk(xy[t, c]) if found else np.full(3, np.nan)
                pos = series.ijk_to_lps(ijk) if found else np.full(3, np.nan)
                high = found and p >= high_t[name] and spread_mm[t, c] <= max_spread
                flag = "absent" if not found else ("high" if high else "low")
                doubt = ""
                if flag == "low":
                    doubt = ("its rotated / scaled test-time copies place it up to "
                             f"{past_limit(spread_mm[t, c], max_spread)} mm apart (limit {max_spread:g} mm)"
                             if spread_mm[t, c] > max_spread else "weak heatmap peak")
                lmset.landmarks.append(Landmark(name, k, t, found, pos, ijk, p if found else 0.0, flag, doubt=doubt))
                if found:
                    pts[name] = pos
            _apply_naming_check(series, view, lmset, k, t, pts, notes)
        done += series.n_phases
        if progress is not None:
            progress(done, total)
    # an ED + ES file pair (study routing): two frames a systole apart, not neighbouring phases of one cine. The
    # tracker follows small steps between neighbouring phases; across a whole systole it held the points of the
    # other frame where they were (M&Ms-2 001: AL-P at ED 23.6 mm off, shortening 5.8 % for a reference 21.5 %;
    # detected on each frame 3.1 mm, 19.7 %; /work/runs/s23/pair_track.py). Each frame keeps its own detection.
    # A file of a few frames is the same case whatever its names say (MIN_TRACKED_PHASES).
    pair = series.metadata.get("phase_labels") == ["ED", "ES"] and series.n_phases == 2
    if track and series.n_phases >= MIN_TRACKED_PHASES and not pair:
        lmset = _track_from_best(series, lmset, names, tracking or TrackingConfig(), progress, cancel, notes)
    elif track and pair:
        notes.append("ED and ES frames of a file pair: each detected on its own, not tracked (not neighbouring phases)")
    elif track and series.n_phases > 1:
        notes.append(f"{series.n_phases} phases, fewer than the {MIN_TRACKED_PHASES} that tracking needs (frames this far "
                     "apart are not neighbouring phases): each detected on its own, not tracked")
    lmset.landmarks.sort(key=lambda lm: (lm.phase, lm.slice, names.index(lm.name)))
    lmset.model["lax_checks"] = notes
    if pair:
        lmset.model["ed_es"] = {"ed": 0, "es": 1}  # the files say which frame is which
    lmset.measurements = lv_length_measurements(lmset, view)
    for note in notes:
        logger.info("%s", note)
    return lmset


def _apply_naming_check(series: CMRSeries, view: str, lmset: LandmarkSet, k: int, t: int,
                        pts: dict[str, np.ndarray], notes: list[str]) -> None:
    ok = _hinge_check(series, view, pts)
    if ok is None or ok:
        return
    a, b = HINGE_NAMES[view]
    la, lb = lmset.get(a, k, t), lmset.get(b, k, t)
    dicom = str(series.metadata.get("format", "")).lower() == "dicom"
    if dicom:
        la.position, lb.position = lb.position, la.position
        la.ijk, lb.ijk = lb.ijk, la.ijk
        la.confidence, lb.confidence = lb.confidence, la.confidence
    la.flag = lb.flag = "low"
    msg = (f"{a}/{b} naming by the model disagrees with the {'DICOM' if dicom else 'file'} orientation "
           f"({a} should lie towards {FIRST_HINGE_DIRECTION_LPS[view].round(2).tolist()} LPS); "
           f"{'names swapped to follow the DICOM geometry' if dicom else 'model names kept (header not trusted)'}; "
           "both flagged low")
    if msg not in notes:
        notes.append(msg)


def _track_from_best(series, lmset, names, cfg, progress, cancel, notes) -> LandmarkSet:
    out = LandmarkSet(lmset.source, lmset.view, dict(lmset.model)).with_source_of(lmset)
    for k in range(series.n_slices):
        best_t, best_c = None, -1.0
        for t in range(series.n_phases):
            lms = [lmset.get(n, k, t) for n in names]
            if all(lm is not None and lm.found for lm in lms):
                c = min(lm.confidence for lm in lms)
                if c > best_c:
                    best_t, best_c = t, c
        if best_t is None:
            notes.append(f"slice {k}: no phase with all three landmarks found; not tracked (place them and track)")
            out.landmarks += [lm for lm in lmset.landmarks if lm.slice == k]
            continue
        anchors = {n: lmset.get(n, k, best_t) for n in names}
        seed = LandmarkSet(lmset.source, lmset.view, {}, list(anchors.values()))
        tracked = track_landmarks(series, seed, k=k, cfg=cfg, progress=progress, cancel=cancel)
        notes.append(f"slice {k}: tracked from phase {best_t} (weakest detection confidence {best_c:.2f})")
        n_disagree = 0
        for lm in tracked.landmarks:  # tracked points carry their anchor's confidence and low flag (tracking)
            if lm.phase != best_t:
                det = lmset.get(lm.name, k, lm.phase)
                if det is not None and det.found and det.flag == "high" and lm.found:
                    if np.linalg.norm(det.position - lm.position) > DISAGREE_MM:
                        lm.flag = "low"
                        n_disagree += 1
        if n_disagree:
            notes.append(f"slice {k}: {n_disagree} tracked points lie > {DISAGREE_MM:.0f} mm from a confident "
                         "detection on their phase; flagged low")
        out.model["tracking"] = tracked.model.get("tracking", {})
        out.landmarks += tracked.landmarks
    return out


def analyse_lax(series: CMRSeries, view: str = "auto", options: SaxOptions | None = None, progress: ProgressFn | None = None,
                cancel: CancelFn | None = None, model=None) -> LandmarkResult:
    """Long-axis landmarks (mitral points + APEX) on every phase, LV length and longitudinal shortening.

    The task API every front end calls (Xue et al., Radiology: AI 2021): detection on every phase, tracking
    from the best phase, LV length = APEX to the mitral midpoint, shortening = 100 (L_ED - L_ES) / L_ED.

    Args:
        series: long-axis cine, pixels ``[t, k, j, i]``.
        view: ``"2ch"``, ``"3ch"``, ``"4ch"`` or ``"auto"`` (:func:`resolve_view`).
        options: a :class:`CardiacLandmarksLib.sax.pipeline.SaxOptions` (device). Its ``tta`` (mirror test-time
            augmentation, ``--no-tta``) does not apply: long-axis views have no mirror pass (a mirrored 4CH view is
            an anatomy that does not exist), and the rotated / scaled copies always run, because they are part of
            each point's flag (the TTA spread) and the card's thresholds were set with them; positions come from
            the plain pass either way. ``detect_lax(tta=False)`` skips them for callers that want raw speed.
        progress, cancel, model: as :func:`detect_lax`.

    Returns:
        :class:`~CardiacLandmarksLib.sax.report.LandmarkResult` with the LV-length figure.

    Raises:
        WrongViewError, ModelIntegrityError (no model for the view), InvalidImageError, Cancelled.
    """
    opts = options or SaxOptions()
    t0 = time.perf_counter()
    lmset = detect_lax(series, view=view, device=opts.device, progress=progress, cancel=cancel, model=model,
                       tta=True)  # the confidence copies: never skipped here (see ``options``)
    return LandmarkResult(series, lmset, render_lax_png, "_lv_length.png", time.perf_counter() - t0)
