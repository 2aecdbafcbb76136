"""Heatmap targets and the loss of Xue et al., Radiology: AI 2021: softmax + KL divergence + soft Dice."""

from __future__ import annotations

import torch


def gaussian_targets(points: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Per-pixel class distributions ``[n, L + 1, size, size]`` from ``points [n, L, 2]`` (x, y; NaN = absent).

    Landmark channel = Gaussian of peak 1 and ``sigma`` px; background (last channel) = 1 - sum, so
    every pixel's distribution sums to 1 (landmark Gaussians are renormalised where they overlap).
    """
    n, n_lm, _ = points.shape
    ar = torch.arange(size, dtype=torch.float32)
    present = torch.isfinite(points).all(-1)
    p = torch.nan_to_num(points, nan=-1e4)
    gx = torch.exp(-((ar[None, None, :] - p[..., 0:1]) ** 2) / (2 * sigma**2))  # [n, L, W]
    gy = torch.exp(-((ar[None, None, :] - p[..., 1:2]) ** 2) / (2 * sigma**2))  # [n, L, H]
    hm = gy[..., :, None] * gx[..., None, :] * present[..., None, None]
    total = hm.sum(1, keepdim=True)
    hm = hm / total.clamp(min=1.0)
    bg = (1.0 - hm.sum(1, keepdim=True)).clamp(min=0.0)
    return torch.cat([hm, bg], 1)


def kl_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0, landmark_weight: float = 50.0
) -> torch.Tensor:
    """Pixel-weighted KL(target || softmax(logits)) + ``dice_weight`` x (1 - soft Dice) of the landmark channels.

    Landmark pixels outnumbered ~1:1000 by background make a plain pixel-mean KL collapse to
    a constant prior on a small network; each pixel's KL is therefore weighted by
    ``1 + landmark_weight * (1 - target_background)`` and normalised by the weight sum.
    """
    logp = torch.log_softmax(logits, 1)
    kl_px = (target * (torch.log(target.clamp(min=1e-8)) - logp)).sum(1)
    w = 1.0 + landmark_weight * (1.0 - target[:, -1])
    kl = (kl_px * w).sum() / w.sum()
    p = logp.exp()[:, :-1]
    t = target[:, :-1]
    inter = (p * t).sum((-1, -2))
    denom = (p * p).sum((-1, -2)) + (t * t).sum((-1, -2))
    dice = (2 * inter + 1.0) / (denom + 1.0)
    return kl * 10.0 + dice_weight * (1.0 - dice).mean()


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy + (1 - mean soft Dice of the foreground classes) for ``logits [n, C, H, W]``, ``labels [n, H, W]``.

    The usual U-Net segmentation loss (as in Xue et al., Radiology: AI 2020, perfusion); used for
    the SAX model's segmentation head (RV cavity, LV myocardium, LV cavity).
    """
    ce = torch.nn.functional.cross_entropy(logits, labels)
    p = torch.softmax(logits, 1)[:, 1:]
    onehot = torch.nn.functional.one_hot(labels, logits.shape[1]).permute(0, 3, 1, 2).float()[:, 1:]
    inter = (p * onehot).sum((0, -1, -2))
    denom = p.sum((0, -1, -2)) + onehot.sum((0, -1, -2))
    dice = (2 * inter + 1.0) / (denom + 1.0)
    return ce + (1.0 - dice).mean()


def _marginal_log_probs(logits: torch.Tensor, unknown: torch.Tensor, background: int) -> torch.Tensor:
    """Log-softmax ``[n, C, H, W]`` in which the background channel holds log(p_background + sum of the
    probabilities of the channels ``unknown [n, C]`` marks as unlabelled for that image) - the marginal loss
    for partially labelled data (Shi et al., Med Image Anal 2021): a structure the image's labels do not
    cover may be predicted anywhere its labels say "background" without penalty."""
    logp = torch.log_softmax(logits, 1)
    merge = unknown.clone()
    merge[:, background] = True
    merged = torch.logsumexp(logp.masked_fill(~merge[:, :, None, None], float("-inf")), 1)
    out = logp.clone()
    out[:, background] = merged
    return out


def partial_kl_dice_loss(logits: torch.Tensor, target: torch.Tensor, known: torch.Tensor,
                         dice_weight: float = 1.0, landmark_weight: float = 50.0) -> torch.Tensor:
    """:func:`kl_dice_loss` for images whose labels support only some landmarks.

    ``known [n, L]`` bool: landmark ``l`` of image ``n`` is labelled (present or truly absent). For an
    unlabelled landmark the network's probability is merged into the background (marginal loss) and left out of
    the soft Dice, so e.g. EMIDEC LGE or perfusion frames (no RV label) train C-LV but neither teach nor forbid
    the RV insertion points. With every landmark known it equals :func:`kl_dice_loss`.
    """
    n_lm = known.shape[1]
    unknown = torch.cat([~known, torch.zeros(len(known), 1, dtype=torch.bool, device=known.device)], 1)
    logp = _marginal_log_probs(logits, unknown, n_lm)
    t = target.masked_fill(unknown[:, :, None, None], 0.0)
    kl_px = (t * (torch.log(t.clamp(min=1e-8)) - logp)).sum(1)
    w = 1.0 + landmark_weight * (1.0 - t[:, -1])
    kl = (kl_px * w).sum() / w.sum()
    p = torch.softmax(logits, 1)[:, :-1]
    tt = t[:, :-1]
    inter = (p * tt).sum((-1, -2))
    denom = (p * p).sum((-1, -2)) + (tt * tt).sum((-1, -2))
    dice = (2 * inter + 1.0) / (denom + 1.0)
    k = known.float()
    return kl * 10.0 + dice_weight * ((1.0 - dice) * k).sum() / k.sum().clamp(min=1.0)


def presence_loss(logits: torch.Tensor, present: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of each landmark's peak probability against its presence.

    ``logits [n, L + 1, H, W]`` (landmark channels, then background), ``present [n, L]`` and ``known [n, L]``
    bool. The decoder calls a landmark found when the peak of its softmax channel reaches a calibrated threshold
    (:mod:`CardiacLandmarksLib.models.decoding`, Xue et al., Radiology: AI 2021, "absent" outside the LV); the
    KL term trains that peak only weakly where a landmark is absent (one background pixel among ``H x W``), so
    this term trains the decision statistic itself: the peak towards 1 where the landmark is present, towards 0
    where it is absent. Unlabelled landmarks (``known`` False, e.g. RV insertions on EMIDEC LGE) are left out.
    Returns the mean over known (image, landmark) pairs; 0 when none is known.
    """
    peak = torch.softmax(logits, 1)[:, :-1].flatten(2).amax(-1).clamp(1e-6, 1.0 - 1e-6)
    bce = torch.nn.functional.binary_cross_entropy(peak, present.to(peak.dtype), reduction="none")
    k = known.to(peak.dtype)
    return (bce * k).sum() / k.sum().clamp(min=1.0)


def partial_segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """:func:`segmentation_loss` for images whose masks cover only some classes.

    ``known [n, C]`` bool per image and class (class 0, background, always known). Unlabelled classes (e.g. the
    RV cavity in EMIDEC or perfusion masks) are merged into the background for the cross-entropy (marginal loss)
    and left out of the soft Dice of the images that lack them. With every class known it equals
    :func:`segmentation_loss`.
    """
    unknown = ~known
    logp = _marginal_log_probs(logits, unknown, 0)
    ce = torch.nn.functional.nll_loss(logp, labels)
    p = torch.softmax(logits, 1)[:, 1:]
    onehot = torch.nn.functional.one_hot(labels, logits.shape[1]).permute(0, 3, 1, 2).float()[:, 1:]
    k = known[:, 1:].float()[:, :, None, None]
    inter = (p * onehot * k).sum((0, -1, -2))
    denom = (p * k).sum((0, -1, -2)) + (onehot * k).sum((0, -1, -2))
    dice = (2 * inter + 1.0) / (denom + 1.0)
    has = known[:, 1:].any(0).float()
    return ce + ((1.0 - dice) * has).sum() / has.sum().clamp(min=1.0)
