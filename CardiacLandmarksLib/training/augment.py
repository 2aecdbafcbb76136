"""Batch augmentation on the canvas (torch): rotation, scale, translation, mirror, intensity, noise, blur.

Landmark coordinates follow the same affine. A mirror swaps the A-RVI / I-RVI names, so that
the labels stay consistent with the display convention of
:func:`CardiacLandmarksLib.sax.labels.display_anterior_end` (chirality-based naming).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine_batch(
    images: torch.Tensor,
    points: torch.Tensor,
    out_size: int,
    generator: torch.Generator,
    max_rot_deg: float = 60.0,
    scale_range: tuple[float, float] = (0.85, 1.2),
    max_shift_px: float = 14.0,
    mirror_prob: float = 0.5,
    swap_pair: tuple[int, int] | None = (0, 1),
    masks: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random affine warp of ``images [n, 1, H, W]`` to ``[n, 1, out, out]`` and of ``points [n, L, 2]`` (x, y px).

    Points leaving the output canvas become NaN (absent). ``swap_pair``: landmark indices whose
    names swap under a mirror. ``masks [n, H, W]`` (integer labels), when given, get the same warp
    by nearest neighbour (0 outside) and are returned third as ``[n, out, out]`` int64; label
    values do not change under a mirror.
    """
    n, _, h, w = images.shape
    g = generator
    ang = (torch.rand(n, generator=g) * 2 - 1) * math.radians(max_rot_deg)
    scale = scale_range[0] + torch.rand(n, generator=g) * (scale_range[1] - scale_range[0])
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * max_shift_px
    mirror = torch.rand(n, generator=g) < mirror_prob
    # output pixel (xo, yo) -> input pixel (xi, yi) = A @ (xo - co) + ci + shift
    cos, sin = torch.cos(ang), torch.sin(ang)
    a = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2) / scale[:, None, None]
    flip = torch.ones(n, 2)
    flip[mirror, 0] = -1.0
    a = a * flip[:, None, :]  # mirror x of the output
    co = (out_size - 1) / 2.0
    ci = torch.tensor([(w - 1) / 2.0, (h - 1) / 2.0])
    # normalised coords for grid_sample (align_corners=True): u = 2 * p / (size - 1) - 1
    ys, xs = torch.meshgrid(torch.arange(out_size, dtype=torch.float32), torch.arange(out_size, dtype=torch.float32), indexing="ij")
    out_xy = torch.stack([xs, ys], -1).reshape(-1, 2) - co  # (P, 2)
    in_xy = torch.einsum("nij,pj->npi", a, out_xy) + ci + shift[:, None, :]
    grid = torch.stack([2 * in_xy[..., 0] / (w - 1) - 1, 2 * in_xy[..., 1] / (h - 1) - 1], -1).reshape(n, out_size, out_size, 2)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    warped_masks = None
    if masks is not None:
        warped_masks = F.grid_sample(masks[:, None].float(), grid, mode="nearest", padding_mode="zeros",
                                     align_corners=True)[:, 0].round().long()
    # points: input -> output = A^-1 (p - ci - shift) + co
    a_inv = torch.linalg.inv(a)
    new_pts = torch.einsum("nij,nlj->nli", a_inv, points - ci - shift[:, None, :]) + co
    outside = (new_pts < 0).any(-1) | (new_pts > out_size - 1).any(-1)
    new_pts[outside] = float("nan")
    if swap_pair is not None and mirror.any():
        i, j = swap_pair
        swapped = new_pts[mirror].clone()
        swapped[:, [i, j]] = swapped[:, [j, i]]
        new_pts[mirror] = swapped
    if warped_masks is not None:
        return warped, new_pts, warped_masks
    return warped, new_pts


def random_intensity(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Gamma, contrast/brightness, Gaussian noise and blur, per image."""
    g = generator
    n = images.shape[0]
    x = images.clamp(min=0)
    gamma = torch.exp((torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * math.log(1.6))
    x = x.pow(gamma)
    x = x * (0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=g)) + (torch.rand(n, 1, 1, 1, generator=g) - 0.5) * 0.2
    blur = torch.rand(n, generator=g) < 0.3
    if blur.any():
        k = torch.tensor([0.25, 0.5, 0.25])
        kernel = (k[:, None] * k[None, :])[None, None]
        x[blur] = F.conv2d(x[blur], kernel, padding=1)
    noise_sd = torch.rand(n, 1, 1, 1, generator=g) * 0.06
    return x + torch.randn(x.shape, generator=g) * noise_sd
