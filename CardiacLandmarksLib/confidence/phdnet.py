"""PHD-Net confidence: Candidate Smoothing, calibrated high/low flags, and the bundled confidence model.

Method: Schobs, Swift, Lu, "Confidence-quantifying landmark localisation for cardiac MRI",
IEEE ISBI 2021 (PHD-Net, :mod:`.models.phdnet`).

* **Candidate Smoothing** (:func:`candidate_smoothing`): per landmark, the region of
  ``region x region`` patches with the highest summed patch-heatmap activation is found;
  every patch in it casts its displacement vote (patch centre + predicted displacement) as a
  small Gaussian (sigma = 1 px) weighted by its heatmap value; the vote map (normalised by
  the total weight, so its values are in [0, 1]) is multiplied by the heatmap up-sampled to
  image resolution (bicubic) and smoothed. The peak of that map is the landmark, its value
  the raw confidence. Fully vectorised over images, landmarks and patches.
* **Calibration** (:func:`calibrate_threshold`): per landmark, on validation patients, the
  threshold is the mean of the raw confidences of the 10% least accurate predictions,
  weighted by their errors (the paper's rule). A prediction above it is flagged ``"high"``,
  otherwise ``"low"``; a landmark the detector calls not present stays ``"absent"``.
* **Reliability** (:func:`reliability`): P(error > 5 mm | flag) etc., what a reader needs
  to decide which points to check.
* **Shipped combination** (:func:`agreement_confidence`): the heatmap U-Net gives the position,
  PHD-Net the confidence: PHD-Net's raw confidence times a Gaussian (sigma 3 mm) of the distance
  between the U-Net's point and PHD-Net's; chosen from the evaluation table
  (:mod:`.evaluation_confidence`, model card ``sax_phdnet.md``).
* :class:`PhdNetConfidence`: the bundled ``sax_phdnet`` weights + card, used by
  :func:`CardiacLandmarksLib.sax.pipeline.detect_landmarks` to give the U-Net's landmarks their
  confidence and flag.

Coordinates are canvas pixels ``(x, y)`` = (column, row) of the fixed-mm canvas of
:mod:`.preprocessing` (pixel centres at integers).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.core.errors import CardiacLandmarksError, ModelIntegrityError
from CardiacLandmarksLib.models.loader import BundledNet, as_input, prepare_net

logger = logging.getLogger(__name__)

#: bundled PHD-Net confidence model (``Resources/Models/<name>.pt`` + ``.json``)
PHDNET_MODEL = "sax_phdnet"
FLAG_HIGH, FLAG_LOW, FLAG_ABSENT = "high", "low", "absent"


class CalibrationError(CardiacLandmarksError, ValueError):
    """Confidence calibration got unusable input (no predictions, mismatched or non-finite arrays)."""


@dataclass
class SmoothingResult:
    """Output of :func:`candidate_smoothing`.

    xy: ``[n, L, 2]`` canvas (x, y) px of the landmark (peak of the smoothed map, sub-pixel);
    confidence: ``[n, L]`` raw confidence = map value at the peak, in [0, 1];
    maps: ``[n, L, H, W]`` the candidate-smoothed maps (only when asked for).
    """

    xy: np.ndarray
    confidence: np.ndarray
    maps: np.ndarray | None = None


def _torch():
    import torch

    return torch


def _gaussian_kernel1d(sigma: float):
    torch = _torch()
    r = max(1, int(np.ceil(3 * sigma)))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def _smooth(maps, sigma: float):
    """Separable Gaussian smoothing of ``[B, H, W]`` (reflect padding)."""
    torch = _torch()
    import torch.nn.functional as F

    if sigma <= 0:
        return maps
    k = _gaussian_kernel1d(sigma).to(maps.device, maps.dtype)
    r = len(k) // 2
    x = maps[:, None]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
    return torch.as_tensor(x[:, 0])


def candidate_smoothing(
    heatmap,
    displacement,
    image_size: tuple[int, int] | None = None,
    patch: int = 8,
    region: int = 5,
    vote_sigma: float = 1.0,
    smooth_sigma: float = 2.0,
    refine_radius: int = 2,
    return_maps: bool = False,
) -> SmoothingResult:
    """Candidate Smoothing of PHD-Net outputs (Schobs et al., ISBI 2021).

    Args:
        heatmap: ``[n, L, h, w]`` patch heatmap in [0, 1] (numpy or torch).
        displacement: ``[n, L, 2, h, w]`` displacement (x, y) in pixels from each patch centre
            to the landmark (already inverse log-scaled).
        image_size: ``(H, W)`` px of the image; default ``(h * patch, w * patch)``.
        patch: pixels per patch side; patch ``(py, px)`` is centred at pixel
            ``(patch * px + (patch - 1) / 2, patch * py + (patch - 1) / 2)``.
        region: side (patches) of the square region of highest summed activation whose
            patches vote.
        vote_sigma: sigma (px) of each vote's Gaussian.
        smooth_sigma: sigma (px) of the Gaussian smoothing of the up-sampled heatmap.
        refine_radius: half-size (px) of the window for the sub-pixel centroid around the peak.
        return_maps: also return the ``[n, L, H, W]`` maps.

    Returns:
        :class:`SmoothingResult` (positions in canvas (x, y) px, raw confidence in [0, 1]).

    Raises:
        ValueError: inconsistent shapes.
    """
    torch = _torch()
    import torch.nn.functional as F

    hm = torch.as_tensor(heatmap, dtype=torch.float32)
    disp = torch.as_tensor(displacement, dtype=torch.float32, device=hm.device)
    if hm.ndim != 4 or disp.ndim != 5 or disp.shape[:2] != hm.shape[:2] or disp.shape[2] != 2 or disp.shape[3:] != hm.shape[2:]:
        raise ValueError(f"candidate_smoothing: heatmap [n, L, h, w] and displacement [n, L, 2, h, w] expected, "
                         f"got {tuple(hm.shape)} and {tuple(disp.shape)}")
    n, n_lm, h, w = hm.shape
    big_h, big_w = image_size or (h * patch, w * patch)
    b = n * n_lm
    if b == 0:
        empty = np.zeros((n, n_lm), np.float32)
        return SmoothingResult(np.zeros((n, n_lm, 2), np.float32), empty,
                               np.zeros((n, n_lm, big_h, big_w), np.float32) if return_maps else None)
    dev = hm.device
    hm = hm.clamp(0.0, 1.0).reshape(b, h, w)
    disp = disp.reshape(b, 2, h, w)
    # 1. region of highest summed activation (box sum over region x region patches)
    r = region // 2
    box = F.avg_pool2d(hm[:, None], region, stride=1, padding=r, count_include_pad=True)[:, 0]
    arg = box.reshape(b, -1).argmax(-1)
    ry, rx = arg // w, arg % w
    off = torch.arange(-r, r + 1, device=dev)
    py = (ry[:, None, None] + off[None, :, None]).expand(b, len(off), len(off)).reshape(b, -1)  # [b, P]
    px = (rx[:, None, None] + off[None, None, :]).expand(b, len(off), len(off)).reshape(b, -1)
    valid = (py >= 0) & (py < h) & (px >= 0) & (px < w)
    py, px = py.clamp(0, h - 1), px.clamp(0, w - 1)
    bi = torch.arange(b, device=dev)[:, None]
    weight = hm[bi, py, px] * valid  # [b, P]
    c = (patch - 1) / 2.0
    vx = px * patch + c + disp[bi, 0, py, px]
    vy = py * patch + c + disp[bi, 1, py, px]
    # 2. votes as Gaussians (separable outer products), weighted by activation, normalised
    xs = torch.arange(big_w, dtype=torch.float32, device=dev)
    ys = torch.arange(big_h, dtype=torch.float32, device=dev)
    gx = torch.exp(-((xs[None, None] - vx[..., None]) ** 2) / (2 * vote_sigma**2))  # [b, P, W]
    gy = torch.exp(-((ys[None, None] - vy[..., None]) ** 2) / (2 * vote_sigma**2))  # [b, P, H]
    votes = torch.einsum("bp,bph,bpw->bhw", weight, gy, gx) / weight.sum(-1).clamp(min=1e-6)[:, None, None]
    # 3. times the up-sampled, smoothed heatmap
    up = F.interpolate(hm[:, None], size=(big_h, big_w), mode="bicubic", align_corners=False)[:, 0].clamp(0.0, 1.0)
    maps = votes * _smooth(up, smooth_sigma)
    # 4. peak = landmark (sub-pixel centroid around it), peak value = raw confidence
    flat = maps.reshape(b, -1)
    peak, idx = flat.max(-1)
    cy, cx = idx // big_w, idx % big_w
    o = torch.arange(-refine_radius, refine_radius + 1, device=dev)
    yy = (cy[:, None, None] + o[None, :, None]).clamp(0, big_h - 1)
    xx = (cx[:, None, None] + o[None, None, :]).clamp(0, big_w - 1)
    win = maps[bi[..., None], yy, xx]  # [b, k, k]
    wsum = win.sum((-1, -2)).clamp(min=1e-12)
    sub_x = (win * xx).sum((-1, -2)) / wsum
    sub_y = (win * yy).sum((-1, -2)) / wsum
    xy = torch.stack([sub_x, sub_y], -1).reshape(n, n_lm, 2).cpu().numpy().astype(np.float32)
    conf = peak.reshape(n, n_lm).cpu().numpy().astype(np.float32)
    out_maps = maps.reshape(n, n_lm, big_h, big_w).cpu().numpy() if return_maps else None
    return SmoothingResult(xy, conf, out_maps)


def map_support(maps: np.ndarray, xy: np.ndarray, radius: float = 2.0) -> np.ndarray:
    """Largest value of candidate-smoothed ``maps [n, L, H, W]`` within ``radius`` px of points ``xy [n, L, 2]``.

    The PHD-Net's confidence *in another detector's point* (e.g. the U-Net's): high only
    when the point lies on a strong, consistent PHD-Net candidate. NaN points give 0.
    """
    maps = np.asarray(maps, np.float32)
    xy = np.asarray(xy, np.float64)
    n, n_lm, h, w = maps.shape
    r = int(np.ceil(radius))
    off = np.arange(-r, r + 1)
    oy, ox = np.meshgrid(off, off, indexing="ij")
    inside = (oy**2 + ox**2) <= radius**2 + 1e-9
    oy, ox = oy[inside], ox[inside]
    finite = np.isfinite(xy).all(-1)
    base = np.rint(np.nan_to_num(xy, nan=0.0)).astype(int)
    yy = np.clip(base[..., 1:2] + oy, 0, h - 1)
    xx = np.clip(base[..., 0:1] + ox, 0, w - 1)
    ni = np.arange(n)[:, None, None]
    li = np.arange(n_lm)[None, :, None]
    vals = maps[ni, li, yy, xx].max(-1)
    return np.where(finite, vals, 0.0).astype(np.float32)


def agreement_confidence(phd_confidence: np.ndarray, phd_xy: np.ndarray, xy: np.ndarray, sigma_mm: float = 3.0,
                         mm_per_px: float = 1.5) -> np.ndarray:
    """Confidence of points ``xy`` given PHD-Net's own result: ``c_phd * exp(-d^2 / (2 sigma^2))``.

    ``d`` (mm) is the distance between the point (e.g. the U-Net's) and PHD-Net's Candidate
    Smoothing peak for the same landmark, so the value is high only when PHD-Net is confident
    *and* both networks agree. Arrays: ``phd_confidence [n, L]``, ``phd_xy``/``xy`` ``[n, L, 2]``
    canvas px; NaN points give 0.
    """
    d = np.linalg.norm(np.asarray(xy, np.float64) - np.asarray(phd_xy, np.float64), axis=-1) * mm_per_px
    d = np.nan_to_num(d, nan=np.inf)
    return (np.asarray(phd_confidence, np.float64) * np.exp(-(d**2) / (2.0 * sigma_mm**2))).astype(np.float32)


def calibrate_threshold(confidence: np.ndarray, errors: np.ndarray, worst_fraction: float = 0.1) -> float:
    """Confidence threshold of one landmark by the rule of Schobs et al. (ISBI 2021).

    The ``worst_fraction`` (10%) least accurate predictions are taken; the threshold is the
    mean of their confidences weighted by their errors, ``sum(e_i c_i) / sum(e_i)``. Points
    whose confidence exceeds it are flagged high.

    Args:
        confidence: ``[m]`` raw confidences of validation predictions (landmark present and found).
        errors: ``[m]`` their L2 errors (mm).
        worst_fraction: fraction of least accurate predictions used (at least one).

    Raises:
        CalibrationError: empty, mismatched or non-finite input, or a fraction outside (0, 1].
    """
    c = np.asarray(confidence, np.float64).ravel()
    e = np.asarray(errors, np.float64).ravel()
    if c.shape != e.shape or c.size == 0:
        raise CalibrationError(f"calibration needs equal, non-empty confidence and error arrays (got {c.size} and {e.size})")
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(e))):
        raise CalibrationError("calibration confidences and errors must be finite")
    if not 0.0 < worst_fraction <= 1.0:
        raise CalibrationError(f"worst_fraction must be in (0, 1], got {worst_fraction}")
    k = max(1, int(np.ceil(worst_fraction * c.size)))
    worst = np.argsort(-e, kind="stable")[:k]
    we = e[worst]
    if we.sum() <= 0:
        return float(c[worst].mean())
    return float((we * c[worst]).sum() / we.sum())


def consistency_gate(confidence: np.ndarray, disagreement_mm: np.ndarray, thresholds, max_mm: float) -> np.ndarray:
    """Confidences ``[n, L]`` kept below the high-confidence threshold where the detector disagrees with itself.

    Where ``disagreement_mm [n, L]`` (:attr:`CardiacLandmarksLib.sax.rvi_segmentation.Located.disagreement_mm`:
    the heatmap peak on the image vs on its mirror image, and vs the segmentation head's derived point) exceeds
    ``max_mm``, the confidence becomes ``min(c, t * max_mm / d)`` with ``t`` the landmark's threshold, so the
    point is flagged low (strictly below ``t``) and its shown confidence falls as the disagreement grows;
    elsewhere it is unchanged. A point both networks agree on can still be doubtful when the U-Net's own
    estimates disagree: on the 10 ACDC choice and calibration patients of sax_unet v1.5.0 (never the test split)
    this gate at 3 mm lowered the mean error of the high points from 0.80 to 0.67 x that of all points and put
    every error > 10 mm (16 of 16) low (see the sax_phdnet card, ``shipped.max_disagreement_mm``).

    Args:
        confidence: ``[n, L]`` raw confidences (e.g. :func:`agreement_confidence`).
        disagreement_mm: ``[n, L]`` mm (inf allowed).
        thresholds: ``[L]`` high-confidence thresholds (or a scalar).
        max_mm: largest disagreement a high point may have (mm).
    """
    conf = np.asarray(confidence, np.float64)
    d = np.asarray(disagreement_mm, np.float64)
    thr = np.broadcast_to(np.asarray(thresholds, np.float64), conf.shape[-1:])
    with np.errstate(divide="ignore", invalid="ignore"):
        cap = np.where(d > max_mm, thr * max_mm / np.maximum(d, 1e-9), np.inf)
    return np.minimum(conf, cap).astype(np.float32)


def flags_from_confidence(confidence: np.ndarray, found: np.ndarray, thresholds) -> np.ndarray:
    """Flags ``[n, L]`` (``"high"``, ``"low"``, ``"absent"``) from confidences ``[n, L]``.

    ``thresholds``: one per landmark ``[L]`` (or a scalar). Not found -> ``"absent"`` whatever
    the confidence; found and confidence > threshold -> ``"high"``; else ``"low"``.
    """
    conf = np.asarray(confidence, np.float64)
    found = np.asarray(found, bool)
    thr = np.broadcast_to(np.asarray(thresholds, np.float64), conf.shape[-1:])
    out = np.where(conf > thr, FLAG_HIGH, FLAG_LOW).astype(object)
    out[~found] = FLAG_ABSENT
    return out


def reliability(errors: np.ndarray, high: np.ndarray, limits: tuple[float, ...] = (5.0, 10.0)) -> dict:
    """What a flag tells a reader: P(error > limit | high) and P(error > limit | low), plus counts.

    Args:
        errors: ``[m]`` L2 errors (mm) of found landmarks that are present in the reference.
        high: ``[m]`` True where flagged high.
        limits: error limits (mm).

    Returns:
        ``{"n_high", "n_low", "p_err_gt_5mm_given_high", "p_err_gt_5mm_given_low", ...,
        "gross_flagged_low_fraction"}`` (gross = error > the last limit; NaN where undefined).
    """
    e = np.asarray(errors, np.float64).ravel()
    hi = np.asarray(high, bool).ravel()
    out: dict = {"n_high": int(hi.sum()), "n_low": int((~hi).sum())}
    for lim in limits:
        tag = f"{lim:g}mm"
        for name, sel in (("high", hi), ("low", ~hi)):
            out[f"p_err_gt_{tag}_given_{name}"] = float((e[sel] > lim).mean()) if sel.any() else float("nan")
    gross = e > limits[-1]
    out["n_gross"] = int(gross.sum())
    out["gross_flagged_low_fraction"] = float((~hi[gross]).mean()) if gross.any() else float("nan")
    return out


def normalise_confidence(raw: np.ndarray, thresholds) -> np.ndarray:
    """Map raw confidences ``[n, L]`` to [0, 1) with 0.5 at each landmark's threshold: ``c / (c + t)``.

    Monotone per landmark, so ``normalised > 0.5`` exactly when ``raw > threshold`` (flag high);
    unlike raw values (whose scale differs between landmarks) it reads the same for every landmark.
    """
    c = np.clip(np.asarray(raw, np.float64), 0.0, None)
    t = np.broadcast_to(np.asarray(thresholds, np.float64), c.shape[-1:])
    return (c / np.maximum(c + t, 1e-12)).astype(np.float32)


@dataclass
class ConfidenceResult:
    """Per-landmark confidence of a set of canvas images.

    confidence: ``[n, L]`` in [0, 1), 0.5 at the calibrated threshold (:func:`normalise_confidence`),
    0 where absent; raw: ``[n, L]`` the shipped raw confidence the thresholds apply to;
    flag: ``[n, L]`` object array of ``"high"``/``"low"``/``"absent"``; phd_xy: ``[n, L, 2]``
    PHD-Net's own landmark (canvas px); phd_confidence: ``[n, L]`` PHD-Net's raw peak value;
    gated: ``[n, L]`` bool, True where the detector disagreed with itself beyond the card's limit, so
    :func:`consistency_gate` holds the point low whatever its agreement; None without a gate.
    """

    confidence: np.ndarray
    flag: np.ndarray
    phd_xy: np.ndarray
    phd_confidence: np.ndarray
    raw: np.ndarray
    gated: np.ndarray | None = None


@dataclass
class PhdNetConfidence(BundledNet):
    """The bundled PHD-Net confidence model (weights + card with per-landmark thresholds).

    Use :meth:`load`, then :meth:`assess` with canvas images and (normally) the heatmap
    U-Net's positions and found mask. The card's ``"shipped"`` entry says how confidence is
    computed (chosen from the evaluation table, see the card's Markdown):

    * ``"agreement"`` (shipped): PHD-Net's raw confidence times a Gaussian (``agreement_sigma_mm``)
      of the distance between the given point and PHD-Net's own (:func:`agreement_confidence`);
    * ``"support"``: the largest value of PHD-Net's candidate-smoothed map within
      ``support_radius_px`` of the given point (:func:`map_support`);
    * ``"phdnet"``: PHD-Net's own raw peak value (for PHD-Net's own points).
    """

    landmarks: tuple[str, ...] = ("A-RVI", "I-RVI", "C-LV")

    @classmethod
    def load(cls, device: str = "auto", models_dir: Path | None = None, name: str = PHDNET_MODEL) -> PhdNetConfidence:
        """Load ``<models_dir>/<name>.pt`` with its card ``<name>.json`` (SHA256 checked; cached per process).

        Raises:
            ModelIntegrityError: weights or card missing, SHA256 mismatch, thresholds missing.
            CardiacLandmarksError: unusable device.
        """
        from CardiacLandmarksLib.models.catalogue import load_bundled
        from CardiacLandmarksLib.models.loader import choose_device
        from CardiacLandmarksLib.models.phdnet import PHDNet

        dev = choose_device(device)

        def build(card: dict, ckpt: dict):
            if "thresholds" not in card or "high_confidence" not in card["thresholds"]:
                raise ModelIntegrityError(f"model card of {name} has no calibrated thresholds")
            arch = card["architecture"]
            net = PHDNet(arch["n_landmarks"], arch.get("in_channels", 1), arch["width"], arch["n_deep"],
                         tuple(arch["head_widths"]))
            net.load_state_dict(ckpt["state_dict"])
            prepare_net(net, dev)
            return net

        net, card, digest = load_bundled(name, dev, build, models_dir)
        return cls(name, card.get("version", "0"), digest, card, dev, net, landmarks=tuple(card["landmarks"]))

    @property
    def smoothing(self) -> dict:
        """Candidate Smoothing settings of the card (region, vote_sigma, smooth_sigma)."""
        return dict(self.card.get("candidate_smoothing", {}))

    @property
    def shipped(self) -> dict:
        """How the shipped confidence is computed: ``{"mode": "agreement"|"support"|"phdnet", ...}``."""
        return dict(self.card.get("shipped", {"mode": "agreement", "agreement_sigma_mm": 3.0}))

    @property
    def max_disagreement_mm(self) -> float | None:
        """The card's gate, ``shipped.max_disagreement_mm`` (mm; None: no gate)."""
        value = self.shipped.get("max_disagreement_mm")
        return None if value is None else float(value)

    @property
    def max_stack_jump_mm(self) -> float | None:
        """The card's stack gate, ``shipped.max_stack_jump_mm`` (mm; None: no stack gate; :func:`stack_jump_mm`)."""
        value = self.shipped.get("max_stack_jump_mm")
        return None if value is None else float(value)

    @property
    def stack_gate_landmarks(self) -> tuple[str, ...]:
        """The landmarks the stack gate judges, ``shipped.stack_gate_landmarks`` (default: the RV insertions)."""
        return tuple(self.shipped.get("stack_gate_landmarks", ("A-RVI", "I-RVI")))

    def thresholds(self) -> np.ndarray:
        """High-confidence thresholds ``[L]`` of the shipped confidence, in landmark order."""
        t = self.card["thresholds"]["high_confidence"]
        return np.array([float(t[n]) for n in self.landmarks])

    def found_thresholds(self) -> np.ndarray:
        """Presence thresholds ``[L]`` on PHD-Net's raw confidence (PHD-Net used alone)."""
        t = self.card["thresholds"].get("found", {})
        return np.array([float(t.get(n, 0.0)) for n in self.landmarks])

    def raw_outputs(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Network outputs for canvas images ``[n, H, W]``: heatmap ``[n, L, h, w]``, displacement px ``[n, L, 2, h, w]``.

        Raises:
            InvalidImageError: not ``[n, H, W]``, sizes not divisible by 8, or non-finite pixels.
        """
        import torch

        from CardiacLandmarksLib.core.errors import InvalidImageError

        images = np.asarray(images, np.float32)
        if images.ndim != 3 or images.shape[1] % 8 or images.shape[2] % 8:
            raise InvalidImageError(f"PHD-Net expects canvas images [n, H, W] with H, W divisible by 8, got {images.shape}")
        if not np.all(np.isfinite(images)):
            raise InvalidImageError("canvas images contain NaN or infinite values")
        hms, disps = [], []
        with torch.inference_mode():
            for s in range(0, len(images), self.batch_size):
                x = as_input(images[s : s + self.batch_size], self.device)
                hm, disp = self.net.predict(x)
                hms.append(hm.float().cpu().numpy())
                disps.append(disp.float().cpu().numpy())
        n_lm = len(self.landmarks)
        h, w = images.shape[1] // 8, images.shape[2] // 8
        if not hms:
            return np.zeros((0, n_lm, h, w), np.float32), np.zeros((0, n_lm, 2, h, w), np.float32)
        return np.concatenate(hms), np.concatenate(disps)

    def predict(self, images: np.ndarray, return_maps: bool = False) -> SmoothingResult:
        """PHD-Net alone on canvas images ``[n, H, W]``: Candidate-Smoothing positions and raw confidences."""
        hm, disp = self.raw_outputs(images)
        out = []
        for s in range(0, len(hm), self.batch_size):  # bounded memory for the [b, L, H, W] maps
            out.append(candidate_smoothing(hm[s : s + self.batch_size], disp[s : s + self.batch_size],
                                           image_size=np.asarray(images).shape[1:], return_maps=return_maps,
                                           **self.smoothing))
        if not out:
            n_lm = len(self.landmarks)
            return SmoothingResult(np.zeros((0, n_lm, 2), np.float32), np.zeros((0, n_lm), np.float32))
        maps = np.concatenate([o.maps for o in out]) if return_maps else None
        return SmoothingResult(np.concatenate([o.xy for o in out]), np.concatenate([o.confidence for o in out]), maps)

    def assess(self, images: np.ndarray, positions: np.ndarray | None = None, found: np.ndarray | None = None,
               disagreement_mm: np.ndarray | None = None) -> ConfidenceResult:
        """Confidence and flag of each landmark on canvas images ``[n, H, W]``.

        Args:
            images: ``[n, H, W]`` float32 canvas images (the same the U-Net saw).
            positions: ``[n, L, 2]`` canvas (x, y) px of the points to assess (the U-Net's);
                None = PHD-Net's own points.
            found: ``[n, L]`` bool, the detector's presence decision (absent stays absent);
                None = PHD-Net's own presence thresholds.
            disagreement_mm: ``[n, L]`` the detector's disagreement with itself
                (:attr:`~CardiacLandmarksLib.sax.rvi_segmentation.Located.disagreement_mm`); with the card's
                ``shipped.max_disagreement_mm``, a point beyond it is flagged low (:func:`consistency_gate`).

        Returns:
            :class:`ConfidenceResult`; ``confidence`` in [0, 1), above 0.5 exactly when flagged
            high, 0 where absent.

        Raises:
            InvalidImageError: bad images; ValueError: positions/found of the wrong shape.
        """
        n_lm = len(self.landmarks)
        shipped = self.shipped
        mode = shipped.get("mode", "agreement")
        need_maps = positions is not None and mode == "support"
        res = self.predict(images, return_maps=need_maps)
        n = len(res.confidence)
        if found is None:
            found = res.confidence >= self.found_thresholds()
        found = np.asarray(found, bool)
        if found.shape != (n, n_lm):
            raise ValueError(f"found must be [n, L] = {(n, n_lm)}, got {found.shape}")
        if positions is None or mode == "phdnet":
            conf = res.confidence.copy()
        else:
            positions = np.asarray(positions, np.float64)
            if positions.shape != (n, n_lm, 2):
                raise ValueError(f"positions must be [n, L, 2] = {(n, n_lm, 2)}, got {positions.shape}")
            if mode == "support":
                conf = map_support(res.maps, positions, float(shipped.get("support_radius_px", 2.0)))
            else:
                conf = agreement_confidence(res.confidence, res.xy, positions, float(shipped.get("agreement_sigma_mm", 3.0)),
                                            float(self.card.get("input", {}).get("canvas_mm", 1.5)))
        raw = np.where(found, np.clip(conf, 0.0, 1.0), 0.0).astype(np.float32)
        thr = self.thresholds()
        max_mm = self.max_disagreement_mm
        gated = None
        if disagreement_mm is not None and max_mm is not None:
            disagreement_mm = np.asarray(disagreement_mm, np.float64)
            if disagreement_mm.shape != (n, n_lm):
                raise ValueError(f"disagreement_mm must be [n, L] = {(n, n_lm)}, got {disagreement_mm.shape}")
            gated = found & (disagreement_mm > max_mm)
            raw = consistency_gate(raw, disagreement_mm, thr, max_mm)
        shown = np.where(found, normalise_confidence(raw, thr), 0.0).astype(np.float32)
        return ConfidenceResult(shown, flags_from_confidence(raw, found, thr), res.xy, res.confidence, raw, gated)
