"""Heatmap -> landmark position, presence and confidence (Xue et al., Radiology: AI 2021).

The heatmap U-Net outputs a softmax over ``L`` landmark classes + background at every
pixel. For each landmark: the peak probability is its raw confidence; the landmark is
"found" when the peak reaches a presence threshold (calibrated on validation data and
stored in the model card); its sub-pixel position comes from a parabola fitted to the log
probabilities of the peak and its two neighbours along each axis (exact for a Gaussian peak,
as in the "DARK" decoding of Zhang et al., CVPR 2020), falling back to the
probability-weighted centroid of a small window where the log fit is undefined.
"""

from __future__ import annotations

import numpy as np


def decode_heatmaps(probs: np.ndarray, radius: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Peak positions and values of landmark heatmaps.

    Args:
        probs: ``[n, L + 1, H, W]`` softmax probabilities; channel ``L`` (last) is background.
        radius: half-size of the centroid window in pixels.

    Returns:
        ``(xy [n, L, 2] canvas (x, y) float, peak [n, L] float in [0, 1])``.
    """
    probs = np.asarray(probs, np.float32)
    n, c1, h, w = probs.shape
    hm = probs[:, : c1 - 1]
    flat = hm.reshape(n, c1 - 1, -1)
    idx = flat.argmax(-1)
    peak = np.take_along_axis(flat, idx[..., None], -1)[..., 0]
    py, px = np.divmod(idx, w)
    off = np.arange(-radius, radius + 1)
    yy = np.clip(py[..., None, None] + off[:, None], 0, h - 1)  # [n, L, k, 1]
    xx = np.clip(px[..., None, None] + off[None, :], 0, w - 1)  # [n, L, 1, k]
    ni = np.arange(n)[:, None, None, None]
    ci = np.arange(c1 - 1)[None, :, None, None]
    win = hm[ni, ci, yy, xx]  # [n, L, k, k]
    wsum = win.sum((-1, -2)) + 1e-12
    cy = (win * yy).sum((-1, -2)) / wsum
    cx = (win * xx).sum((-1, -2)) / wsum
    r = radius
    lx = np.log(np.clip(win[..., r, r - 1 : r + 2], 1e-12, None))  # along x through the peak
    ly = np.log(np.clip(win[..., r - 1 : r + 2, r], 1e-12, None))  # along y
    ok = (win[..., r, r - 1 : r + 2] > 1e-6).all(-1) & (win[..., r - 1 : r + 2, r] > 1e-6).all(-1)
    ok &= (px > 0) & (px < w - 1) & (py > 0) & (py < h - 1)

    def vertex(v: np.ndarray) -> np.ndarray:
        den = v[..., 0] - 2 * v[..., 1] + v[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(den < -1e-9, 0.5 * (v[..., 0] - v[..., 2]) / den, 0.0)
        return np.clip(d, -0.5, 0.5)

    fx = np.where(ok, px + vertex(lx), cx)
    fy = np.where(ok, py + vertex(ly), cy)
    return np.stack([fx, fy], -1), peak
