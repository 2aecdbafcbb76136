"""LV myocardium and blood-pool segmentation of first-pass perfusion (2D+T), two stages.

After Xue et al., "Automated inline analysis of myocardial perfusion MRI with deep learning",
Radiology: AI 2020 (a U-Net on the 2D+T perfusion series with frames around contrast arrival
as input channels), shrunk for CPU:

1. **Timing** (:func:`bolus_timing`): foot and peak of the first pass from the 99.5th
   percentile of the (smoothed) enhancement, frame minus pre-contrast baseline, over the image.
2. **Localiser**: a small U-Net on the whole field of view resampled to
   :data:`LOC_MM` mm/px (:data:`LOC_PX` square), input channels = pre-contrast baseline,
   frame of peak enhancement, maximum enhancement over time; output LV (myocardium + blood
   pool). Its centroid centres the crop of stage 3.
3. **Segmenter**: a U-Net on a :data:`SEG_PX` square crop at :data:`SEG_MM` mm/px around the
   LV, input channels = the frames ``t + SEG_OFFSETS`` (clamped to the series), output
   0 = background, 1 = LV myocardium, 2 = LV blood pool for frame ``t``. A card with
   ``input.flip_tta`` (v1.2.0 on) averages the softmax over the crop and its mirror images.
4. **Motion** (:func:`track_translation`): the segmenter runs on every frame from the bolus
   foot on; the LV centroid of each frame gives an in-plane translation relative to a
   reference frame (best-segmented frame in the 10 frames after the LV blood-pool peak);
   frames before the LV blood-pool peak (pre-contrast, RV phase, LV upslope: segmentation
   less reliable) take the offset of the frame just before the peak. The reference mask shifted by these offsets is the mask
   of every frame (rigid in-plane motion only).

Arrays: frames ``[t, j, i]`` (one slice), masks ``[j, i]`` or ``[t, j, i]``; the canvases are
axis-aligned with the stored pixel grid (no rotation: the model is trained with arbitrary
rotations and mirrors), so ``(i, j) = centre + (x - c, y - c) * mm / spacing``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from CardiacLandmarksLib.core.errors import InvalidImageError, NoContrastPassageError, PerfusionInputError

logger = logging.getLogger(__name__)

LOC_MM = 4.5
LOC_PX = 96
SEG_MM = 2.0
SEG_PX = 64
SEG_OFFSETS = (-4, -2, 0, 2, 4)
MODEL_STEM = "perfusion_unet"
#: reference-frame checks of :func:`segmentation_doubts` (a series that fails one gets a named warning).
#: Mean max-probability over the LV below this: every series of the training patients scores 0.92-0.94
#: (v1.0.0); v1.2.0 with its mirror TTA 0.916-0.941, its validation patients 0.910-0.932.
MIN_CONFIDENCE = 0.8
#: plausible myocardial cross-section of one SAX slice, cm^2 (training patients 13.5-24.5 cm^2; wide
#: bounds for small and hypertrophied hearts)
MYO_AREA_CM2 = (4.0, 60.0)
#: largest share of the LV blood pool's outer rim that may touch background instead of myocardium
#: (0 on every training series: the myocardium encloses the blood pool on basal and mid slices)
MAX_OPEN_RIM = 0.25
#: images with a smaller field of view are taken as already cropped around the LV
SMALL_FOV_MM = 160.0


# --------------------------------------------------------------------------- timing


@dataclass
class BolusTiming:
    """First-pass timing of a series in frame indices: ``foot`` (last pre-contrast frame),
    ``peak`` (frame of maximum image enhancement), ``baseline`` = frames ``[0, foot)``."""

    foot: int
    peak: int


def _check_frames(frames: np.ndarray) -> np.ndarray:
    f = np.asarray(frames, np.float32)
    if f.ndim != 3:
        raise InvalidImageError(f"perfusion frames must be [t, j, i], got shape {f.shape}")
    if f.shape[0] < 8:
        raise PerfusionInputError(f"a perfusion series needs at least 8 frames, got {f.shape[0]}")
    if not np.all(np.isfinite(f)):
        raise InvalidImageError("perfusion frames contain NaN or infinite values")
    return f


def bolus_timing(frames: np.ndarray, frac: float = 0.15) -> BolusTiming:
    """Foot and peak frame of the first pass (see module docstring).

    The frames are smoothed in-plane (Gaussian, sigma 2 px) so that noise spikes do not
    dominate the 99.5th percentile of the enhancement (frame minus the median of the first 4
    frames); peak = its maximum, foot = the last frame before the peak still below ``frac`` of
    the rise.

    Raises:
        PerfusionInputError: no contrast passage (the enhancement never exceeds noise).
    """
    f = _check_frames(frames)
    sm = ndimage.gaussian_filter(f, (0, 2, 2))
    base = np.median(sm[:4], axis=0)
    enh = np.percentile((sm - base).reshape(len(f), -1), 99.5, axis=1)
    peak = int(np.argmax(enh))
    b = float(np.median(enh[:4]))
    noise = float(np.std(enh[:4]) + 1e-6)
    span = float(enh[peak] - b)
    if peak < 2 or span < 5 * noise and span < 0.05 * float(np.percentile(f, 99)):
        raise NoContrastPassageError("no first-pass contrast enhancement found in the series")
    below = np.nonzero(enh[: peak + 1] < b + frac * span)[0]
    foot = int(below[-1]) if len(below) else 0
    return BolusTiming(foot=max(foot, 1), peak=peak)


def intensity_scale(frames: np.ndarray) -> float:
    """Series intensity scale: 99.5th percentile of the temporal maximum image (blood-pool peak ~ 1)."""
    f = np.asarray(frames, np.float32)
    s = float(np.percentile(f.max(axis=0), 99.5))
    return s if s > 0 else 1.0


# --------------------------------------------------------------------------- canvases


@dataclass(frozen=True)
class Canvas:
    """Axis-aligned square canvas over one slice: ``size`` px of ``mm`` mm centred at input ``center_ij``."""

    center_ij: tuple[float, float]
    spacing_ij: tuple[float, float]
    mm: float
    size: int

    def to_ij(self, xy: np.ndarray) -> np.ndarray:
        """Canvas ``(..., 2)`` (x, y) -> input ``(..., 2)`` (i, j)."""
        c = (self.size - 1) / 2.0
        xy = np.asarray(xy, float)
        return np.stack([self.center_ij[0] + (xy[..., 0] - c) * self.mm / self.spacing_ij[0],
                         self.center_ij[1] + (xy[..., 1] - c) * self.mm / self.spacing_ij[1]], axis=-1)

    def to_xy(self, ij: np.ndarray) -> np.ndarray:
        """Input ``(..., 2)`` (i, j) -> canvas (x, y)."""
        c = (self.size - 1) / 2.0
        ij = np.asarray(ij, float)
        return np.stack([(ij[..., 0] - self.center_ij[0]) * self.spacing_ij[0] / self.mm + c,
                         (ij[..., 1] - self.center_ij[1]) * self.spacing_ij[1] / self.mm + c], axis=-1)

    def sample(self, images: np.ndarray, order: int = 1) -> np.ndarray:
        """Resample ``[n, j, i]`` input images onto the canvas ``[n, size, size]`` (0 outside)."""
        ys, xs = np.mgrid[0 : self.size, 0 : self.size].astype(float)
        ij = self.to_ij(np.stack([xs, ys], -1))
        coords = np.stack([ij[..., 1], ij[..., 0]])
        imgs = np.asarray(images, np.float32)
        sigma = [max(0.0, 0.4 * (self.mm / self.spacing_ij[1] - 1)), max(0.0, 0.4 * (self.mm / self.spacing_ij[0] - 1))]
        out = np.empty((len(imgs), self.size, self.size), np.float32)
        for n, img in enumerate(imgs):
            if order > 0 and max(sigma) > 0.05:
                img = ndimage.gaussian_filter(img, sigma)
            out[n] = ndimage.map_coordinates(img, coords, order=order, mode="constant", cval=0.0)
        return out

    def to_input(self, maps: np.ndarray, shape_ji: tuple[int, int], order: int = 1) -> np.ndarray:
        """Resample canvas maps ``[n, size, size]`` back to the input grid ``[n, j, i]`` (0 outside)."""
        jj, ii = np.mgrid[0 : shape_ji[0], 0 : shape_ji[1]].astype(float)
        xy = self.to_xy(np.stack([ii, jj], -1))
        coords = np.stack([xy[..., 1], xy[..., 0]])
        m = np.asarray(maps, np.float32)
        return np.stack([ndimage.map_coordinates(x, coords, order=order, mode="constant", cval=0.0) for x in m])


def localiser_canvas(shape_ji: tuple[int, int], spacing_ij: tuple[float, float]) -> Canvas:
    """Whole-field-of-view canvas of the localiser, centred on the image centre."""
    return Canvas(((shape_ji[1] - 1) / 2.0, (shape_ji[0] - 1) / 2.0), tuple(map(float, spacing_ij)), LOC_MM, LOC_PX)


def localiser_input(frames: np.ndarray, timing: BolusTiming, scale: float) -> np.ndarray:
    """Localiser channels ``[3, j, i]`` on the input grid: baseline, peak frame, max enhancement (scaled)."""
    f = np.asarray(frames, np.float32) / scale
    base = f[: max(timing.foot, 1)].mean(axis=0)
    return np.stack([base, f[timing.peak], np.clip(f.max(axis=0) - base, 0, None)])


def segmenter_frames(t: int, n_frames: int) -> list[int]:
    """Frame indices of the segmenter channels for target frame ``t`` (``t + SEG_OFFSETS``, clamped)."""
    return [int(np.clip(t + o, 0, n_frames - 1)) for o in SEG_OFFSETS]


# --------------------------------------------------------------------------- model bundle


def model_paths(models_dir: Path | None = None) -> tuple[Path, Path]:
    """``(weights .pt, card .json)`` of the bundled perfusion model."""
    from CardiacLandmarksLib.core.config import models_root

    root = models_root() if models_dir is None else Path(models_dir)
    return root / f"{MODEL_STEM}.pt", root / f"{MODEL_STEM}.json"


@dataclass
class PerfusionModel:
    """The two bundled networks (torch modules in eval mode) and their model card."""

    localiser: object
    segmenter: object
    card: dict
    sha256: str
    device: str = "cpu"

    @property
    def name(self) -> str:
        return str(self.card.get("name", MODEL_STEM))

    @property
    def version(self) -> str:
        return str(self.card.get("version", ""))


def build_networks(config: dict):
    """Fresh ``(localiser, segmenter)`` U-Nets for a config dict (see the training script)."""
    from CardiacLandmarksLib.models.unet import UNet2D

    loc = UNet2D(in_channels=3, n_classes=2, base=int(config.get("loc_base", 8)), depth=int(config.get("loc_depth", 4)))
    seg = UNet2D(in_channels=len(SEG_OFFSETS), n_classes=3, base=int(config.get("seg_base", 12)),
                 depth=int(config.get("seg_depth", 4)))
    return loc, seg


def load_model(weights: Path | None = None, device: str = "cpu") -> PerfusionModel:
    """Load the bundled perfusion segmentation model (or the ``weights`` of a training run, card beside it).

    Both go through :func:`CardiacLandmarksLib.models.catalogue.load_bundled`: SHA256 checked against the card
    (and the catalogue for the bundled model), cached per process.

    Raises:
        ModelIntegrityError: weights or card missing, or checksum mismatch.
    """
    from CardiacLandmarksLib.models.catalogue import load_bundled, model_for
    from CardiacLandmarksLib.models.loader import choose_device, prepare_net

    dev = choose_device(device)

    def build(card: dict, state: dict):
        loc, seg = build_networks(state.get("config", {}))
        loc.load_state_dict(state["localiser"])
        seg.load_state_dict(state["segmenter"])
        prepare_net(loc, dev)
        prepare_net(seg, dev)
        return loc, seg

    if weights is None:
        (loc, seg), card, digest = load_bundled(model_for("perfusion_segmentation", "sax"), dev, build)
    else:
        weights = Path(weights)
        (loc, seg), card, digest = load_bundled(weights.stem, dev, build, models_dir=weights.parent)
    return PerfusionModel(localiser=loc, segmenter=seg, card=card, sha256=digest, device=dev)


#: image axes of the segmenter's mirror test-time augmentation, by the name a model card uses in
#: ``input.flip_tta`` (``"i"`` = columns, ``"j"`` = rows of the crop ``[n, c, j, i]``)
FLIP_AXES = {"i": -1, "j": -2}


def flip_tta_axes(card: dict, tta: bool = True) -> tuple[int, ...]:
    """Tensor axes the segmenter's output is averaged over (mirror test-time augmentation).

    The model card's ``input.flip_tta`` (e.g. ``["i", "j"]``) names them; a card without it (v1.0.0)
    or ``tta=False`` gives ``()``: one pass. Mirroring is safe for this segmenter: it is trained with
    random mirrors and rotations, and the myocardium / blood-pool labels have no handedness.

    Raises:
        ModelIntegrityError: the card names an axis other than ``"i"`` / ``"j"``.
    """
    from CardiacLandmarksLib.core.errors import ModelIntegrityError

    names = (card or {}).get("input", {}).get("flip_tta") or [] if tta else []
    bad = [n for n in names if n not in FLIP_AXES]
    if bad:
        raise ModelIntegrityError(f"perfusion model card: unknown flip_tta axis {bad} (expected 'i' or 'j')")
    return tuple(FLIP_AXES[n] for n in names)


def _predict(net, x: np.ndarray, device: str = "cpu", batch: int = 16, flips: tuple[int, ...] = ()) -> np.ndarray:
    """Softmax ``[n, classes, H, W]`` of ``net`` on ``x`` ``[n, channels, H, W]``; with ``flips`` the mean of
    the plain pass and one pass per mirrored axis (each mirrored back)."""
    import torch

    from CardiacLandmarksLib.models.loader import as_input

    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch):
            xb = as_input(x[s : s + batch], device, add_channel=False)
            p = torch.softmax(net(xb), 1)
            for ax in flips:
                p = p + torch.softmax(net(xb.flip(ax)), 1).flip(ax)
            out.append((p / (1 + len(flips))).cpu().numpy())
    return np.concatenate(out)


# --------------------------------------------------------------------------- inference


@dataclass
class PerfusionSegmentation:
    """Result of :func:`segment_series` for one slice.

    Attributes:
        masks: ``[t, j, i]`` uint8 per-frame labels used for analysis (1 myocardium, 2 LV blood
            pool): the reference mask translated by each frame's offset.
        reference_frame: frame whose segmentation is the reference.
        reference_mask: ``[j, i]`` uint8 segmentation of the reference frame.
        offsets_ij: ``[t, 2]`` in-plane translation (di, dj) in pixels of each frame w.r.t. the reference.
        raw_labels: ``[t, j, i]`` uint8 direct per-frame network output (every frame).
        timing: :class:`BolusTiming`.
        lv_center_ij: C-LV (blood-pool centroid) of the reference frame.
        confidence: mean max-probability over the reference LV region (0-1).
    """

    masks: np.ndarray
    reference_frame: int
    reference_mask: np.ndarray
    offsets_ij: np.ndarray
    raw_labels: np.ndarray
    timing: BolusTiming
    lv_center_ij: np.ndarray
    confidence: float
    notes: list[str] = field(default_factory=list)


def localise_lv(model: PerfusionModel, frames: np.ndarray, spacing_ij: tuple[float, float],
                timing: BolusTiming | None = None, scale: float | None = None) -> np.ndarray:
    """LV centre ``(i, j)`` from the localiser.

    Raises:
        PerfusionInputError: the localiser finds no LV.
    """
    f = _check_frames(frames)
    timing = bolus_timing(f) if timing is None else timing
    scale = intensity_scale(f) if scale is None else scale
    canvas = localiser_canvas(f.shape[1:], spacing_ij)
    x = canvas.sample(localiser_input(f, timing, scale))[None]
    prob = _predict(model.localiser, x, model.device)[0, 1]
    lab, n = ndimage.label(prob > 0.5)
    if n == 0:
        raise PerfusionInputError("the localiser found no left ventricle in this series")
    sizes = ndimage.sum_labels(prob, lab, index=np.arange(1, n + 1))
    comp = lab == (1 + int(np.argmax(sizes)))
    yx = np.array(ndimage.center_of_mass(prob * comp))
    return canvas.to_ij(yx[::-1])


def segment_frames(model: PerfusionModel, frames: np.ndarray, spacing_ij: tuple[float, float],
                   center_ij: np.ndarray, targets: list[int], scale: float,
                   tta: bool = True) -> tuple[np.ndarray, Canvas]:
    """Segmenter softmax ``[n, 3, SEG_PX, SEG_PX]`` for target frames, on the crop canvas around ``center_ij``.

    ``tta``: average over the mirrors the model card names (:func:`flip_tta_axes`); no effect on a card without.
    """
    f = np.asarray(frames, np.float32)
    canvas = Canvas((float(center_ij[0]), float(center_ij[1])), tuple(map(float, spacing_ij)), SEG_MM, SEG_PX)
    needed = sorted({k for t in targets for k in segmenter_frames(t, len(f))})
    sampled = dict(zip(needed, canvas.sample(f[needed] / scale)))
    x = np.stack([np.stack([sampled[k] for k in segmenter_frames(t, len(f))]) for t in targets])
    return _predict(model.segmenter, x, model.device, flips=flip_tta_axes(model.card, tta)), canvas


def _largest_lv(labels: np.ndarray) -> np.ndarray:
    """Keep the largest connected LV (myo + blood pool) component of a label map ``[j, i]``."""
    lv = labels > 0
    lab, n = ndimage.label(lv)
    if n <= 1:
        return labels
    sizes = ndimage.sum_labels(lv, lab, index=np.arange(1, n + 1))
    keep = lab == (1 + int(np.argmax(sizes)))
    out = np.where(keep, labels, 0).astype(np.uint8)
    # blood pool holes inside the myocardium ring count as blood pool
    filled = ndimage.binary_fill_holes(out > 0)
    out[filled & (out == 0)] = 2
    return out


def segmentation_doubts(reference_mask: np.ndarray, confidence: float, spacing_ij: tuple[float, float]) -> list[str]:
    """Why a segmentation looks wrong, checked on its reference frame ``reference_mask [j, i]`` (1 myocardium,
    2 LV blood pool): low network confidence (< :data:`MIN_CONFIDENCE`), a myocardial area outside
    :data:`MYO_AREA_CM2`, or a blood pool not enclosed by myocardium (> :data:`MAX_OPEN_RIM` of its outer rim on
    background). Empty list when none applies. ``spacing_ij``: pixel size (column, row) in mm."""
    out = []
    if confidence < MIN_CONFIDENCE:
        out.append(f"segmentation confidence {confidence:.2f} < {MIN_CONFIDENCE}")
    area = float((reference_mask == 1).sum() * spacing_ij[0] * spacing_ij[1] / 100.0)
    if not MYO_AREA_CM2[0] <= area <= MYO_AREA_CM2[1]:
        out.append(f"myocardial area {area:.1f} cm2 outside {MYO_AREA_CM2[0]:g}-{MYO_AREA_CM2[1]:g} cm2")
    bp = reference_mask == 2
    rim = ndimage.binary_dilation(bp) & ~bp
    if bp.any() and rim.any():
        open_share = float((rim & (reference_mask == 0)).sum() / rim.sum())
        if open_share > MAX_OPEN_RIM:
            out.append(f"LV blood pool not enclosed by myocardium ({100 * open_share:.0f}% of its rim on background)")
    return out


def track_translation(centroids_ij: np.ndarray, valid: np.ndarray, reference: int) -> np.ndarray:
    """Per-frame translation ``[t, 2]`` from LV centroids (NaN/invalid frames interpolated, ends held).

    A 3-frame running median suppresses single-frame segmentation outliers.
    """
    c = np.asarray(centroids_ij, float).copy()
    v = np.asarray(valid, bool) & np.all(np.isfinite(c), axis=1)
    t = np.arange(len(c))
    if not v.any():
        return np.zeros((len(c), 2))
    for d in range(2):
        c[:, d] = np.interp(t, t[v], c[v, d])
        c[:, d] = ndimage.median_filter(c[:, d], size=3, mode="nearest")
    return c - c[reference]


def segment_series(model: PerfusionModel, frames: np.ndarray, spacing_ij: tuple[float, float],
                   center_ij: np.ndarray | None = None, tta: bool = True) -> PerfusionSegmentation:
    """Segment one perfusion slice (all frames) and track its in-plane motion.

    Args:
        model: :func:`load_model`.
        frames: ``[t, j, i]`` signal intensity (or concentration), one slice.
        spacing_ij: pixel size (column, row) in mm.
        center_ij: LV centre to crop around; default from the localiser.
        tta: mirror test-time augmentation of the segmenter when the model card enables it
            (``input.flip_tta``, v1.2.0 on: 3 passes instead of 1; see :func:`flip_tta_axes`).

    Returns:
        :class:`PerfusionSegmentation`.

    Raises:
        InvalidImageError: bad array. PerfusionInputError: no contrast passage, no LV found.
    """
    f = _check_frames(frames)
    timing = bolus_timing(f)
    scale = intensity_scale(f)
    notes: list[str] = []
    fov_mm = min(f.shape[1] * spacing_ij[1], f.shape[2] * spacing_ij[0])
    if center_ij is None and fov_mm < SMALL_FOV_MM:
        # an image already cropped around the heart (e.g. QPerf): start from its centre
        center_ij = np.array([(f.shape[2] - 1) / 2.0, (f.shape[1] - 1) / 2.0])
        notes.append(f"field of view {fov_mm:.0f} mm: taken as cropped around the LV (no localiser)")
    if center_ij is None:
        center_ij = localise_lv(model, f, spacing_ij, timing, scale)
    # a first pass around the peak refines the crop centre (the localiser is coarse)
    t_ref0 = min(timing.peak + 4, len(f) - 1)
    probs0, canvas0 = segment_frames(model, f, spacing_ij, center_ij, [t_ref0], scale, tta)
    lab0 = canvas0.to_input(probs0[0], f.shape[1:]).argmax(0)
    if (lab0 > 0).sum() > 20:
        jj, ii = np.nonzero(lab0 > 0)
        center_ij = np.array([ii.mean(), jj.mean()])
    targets = list(range(len(f)))  # every frame (cheap); tracking uses those from the foot on
    probs, canvas = segment_frames(model, f, spacing_ij, center_ij, targets, scale, tta)
    full = canvas.to_input(probs.reshape(-1, SEG_PX, SEG_PX), f.shape[1:]).reshape(len(targets), 3, *f.shape[1:])
    raw = np.zeros(f.shape, np.uint8)
    conf = np.zeros(len(f))
    cents = np.full((len(f), 2), np.nan)
    areas = np.zeros(len(f))
    for n, t in enumerate(targets):
        lab = _largest_lv(full[n].argmax(0).astype(np.uint8))
        raw[t] = lab
        lv = lab > 0
        if lv.sum() > 10:
            jj, ii = np.nonzero(lv)
            cents[t] = (ii.mean(), jj.mean())
            areas[t] = (lab == 1).sum()
            conf[t] = float(full[n].max(0)[lv].mean())
    if not np.isfinite(cents).any() or areas.max() < 10:
        raise PerfusionInputError("no LV myocardium segmented in this series")
    after = areas[timing.foot :]
    med_area = float(np.median(after[after > 0])) if (after > 0).any() else float(np.median(areas[areas > 0]))
    valid = (areas > 0.5 * med_area) & (areas < 2.0 * med_area) & (conf > 0.6)
    # LV blood-pool first pass from the per-frame segmentations (the image peak may be the RV's)
    bp_curve = np.array([f[t][raw[t] == 2].mean() if (raw[t] == 2).sum() > 5 else np.nan for t in range(len(f))])
    ok = np.isfinite(bp_curve)
    lv_peak = timing.peak
    if ok.sum() > 5:
        from CardiacLandmarksLib.perfusion.analysis import blood_pool_timing

        filled = np.interp(np.arange(len(f)), np.nonzero(ok)[0], bp_curve[ok])
        try:
            lv_peak = blood_pool_timing(filled).peak
        except PerfusionInputError:
            notes.append("no first pass in the segmented blood pool; windows from the image timing")
    # until the LV blood pool is bright (pre-contrast, RV phase, LV upslope) the network output is
    # not reliable enough for tracking: those frames hold the offset of the first tracked frame
    first_tracked = max(lv_peak - 1, 0)
    valid[:first_tracked] = False
    # reference: most confident frame in the 10 frames from the LV blood-pool peak on (peak myocardial contrast)
    window = np.zeros(len(f), bool)
    window[lv_peak : min(lv_peak + 10, len(f))] = True
    cand = np.nonzero(window & valid)[0]
    if len(cand) == 0:
        cand = np.nonzero(valid)[0] if valid.any() else np.nonzero(areas > 0)[0]
        notes.append("reference frame chosen outside the peak window")
    ref = int(cand[np.argmax(conf[cand])])
    offsets = track_translation(cents, valid, ref)
    offsets[:first_tracked] = offsets[first_tracked]
    ref_mask = raw[ref].copy()
    masks = np.zeros(f.shape, np.uint8)
    for t in range(len(f)):
        di, dj = offsets[t]
        masks[t] = ndimage.shift(ref_mask, (dj, di), order=0, mode="constant", cval=0)
    bp = ref_mask == 2
    if bp.sum() > 0:
        jj, ii = np.nonzero(bp)
        lv_center = np.array([ii.mean(), jj.mean()])
    else:
        jj, ii = np.nonzero(ref_mask > 0)
        lv_center = np.array([ii.mean(), jj.mean()])
        notes.append("no LV blood pool segmented; C-LV from the myocardium centroid")
    doubts = segmentation_doubts(ref_mask, float(conf[ref]), spacing_ij)
    if doubts:
        notes.append(f"segmentation doubtful on reference frame {ref} (" + "; ".join(doubts)
                     + "): check the myocardium contour before using this series' values")
    return PerfusionSegmentation(masks=masks, reference_frame=ref, reference_mask=ref_mask, offsets_ij=offsets,
                                 raw_labels=raw, timing=timing, lv_center_ij=lv_center,
                                 confidence=float(conf[ref]), notes=notes)
