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
    """Random affine warp of ``images [n, C, H, W]`` to ``[n, C, out, out]`` and of ``points [n, L, 2]`` (x, y px).

    Points leaving the output canvas become NaN (absent). ``swap_pair``: landmark indices whose
    names swap under a mirror. ``masks [n, H, W]`` or ``[n, C, H, W]`` (integer labels), when given, get the same warp
    by nearest neighbour (0 outside) and are returned third as ``[n, (C,) out, out]`` int64; label
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
        m4 = masks[:, None] if masks.ndim == 3 else masks
        warped_masks = F.grid_sample(m4.float(), grid, mode="nearest", padding_mode="zeros", align_corners=True).round().long()
        warped_masks = warped_masks[:, 0] if masks.ndim == 3 else warped_masks
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


def _smooth_field(n: int, size: int, generator: torch.Generator, grid: int = 4) -> torch.Tensor:
    """Smooth random fields ``[n, 1, size, size]`` in about [-1, 1]: a ``grid x grid`` normal grid, bicubically upsampled."""
    coarse = torch.randn(n, 1, grid, grid, generator=generator)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True).clamp(-2.5, 2.5) / 2.5


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[n, C, H, W]`` (reflect padding)."""
    r = max(1, int(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def renormalise(x: torch.Tensor) -> torch.Tensor:
    """Per-image 1st-99th percentile -> [0, 1], clipped to [0, 1.5]: the inference normalisation
    (:func:`CardiacLandmarksLib.core.preprocessing.normalise_intensity`) applied after augmentation, so the
    network sees the intensity range it will get. ``x [n, C, H, W]``; percentiles per image over all channels."""
    flat = x.reshape(x.shape[0], -1)[:, ::7]
    q = torch.quantile(flat, torch.tensor([0.01, 0.99]), dim=1)  # [2, n]
    lo, hi = q[0].view(-1, 1, 1, 1), q[1].view(-1, 1, 1, 1)
    return ((x - lo) / (hi - lo).clamp(min=1e-3)).clamp(0.0, 1.5)


def domain_randomise(images: torch.Tensor, masks: torch.Tensor | None, generator: torch.Generator,
                     p_tissue: float = 0.6, p_bias: float = 0.6, p_resolution: float = 0.3, p_ringing: float = 0.2,
                     p_shading: float = 0.5, p_thickness: float = 0.3, normalise: bool = True) -> torch.Tensor:
    """Domain-randomisation augmentation against vendor and sequence shift, per image of ``images [n, C, H, W]``.

    Channel 0 is the slice itself; channels 1.. are its neighbours in the stack (stack context), which get the
    same intensity transform so the stack stays coherent. ``masks [n, C, H, W]`` int64 tissue labels of every
    channel (0 background, 1 RV cavity, 2 LV myocardium, 3 LV cavity; :data:`..datasets.sax.SEG_CLASSES`), or
    None. Steps, each with its own probability:

    * per-tissue intensity remapping driven by the masks (SynthSeg-style: Billot et al., Med Image Anal 2023):
      each labelled tissue gets its own random offset and gain, blended with a soft (blurred) mask, so blood,
      myocardium and background take the contrasts of cine bSSFP, LGE (dark nulled myocardium, grey blood) or
      first-pass perfusion (bright LV blood at peak);
    * random gamma / contrast curve (a monotone piecewise-linear curve through 5 random knots);
    * smooth multiplicative bias field (surface-coil shading), up to a factor 2.2 between corners;
    * slice-thickness simulation: the slice mixed with its neighbours' mean (partial volume through the slice);
    * in-plane resolution simulation: down-sampling by 1-2.5x along one or both axes and back (anisotropic pixels);
    * Gibbs ringing: k-space truncated along one axis to 45-90% of its width;
    * Gaussian blur and Rician-like noise;
    * with ``p_shading``, Xue's coil-shading correction as an alternative input (the image divided by its heavily
      smoothed self, Xue et al., Radiology: AI 2021, surface-coil inhomogeneity correction);

    and finally :func:`renormalise`, the inference normalisation. Returns a new tensor ``[n, C, H, W]``.

    ``normalise=False`` keeps the caller's intensity scale instead (no :func:`renormalise`, output clipped at 0
    only): for inputs whose scale carries meaning across channels, e.g. the perfusion segmenter's frames around a
    target frame divided by one series intensity scale (:func:`CardiacLandmarksLib.perfusion.segmentation.intensity_scale`,
    blood-pool peak about 1), where a per-image percentile stretch would change the time course. The steps assume
    an input of about [0, 1.5] (the contrast curve maps [0, 1.5] onto itself and clips above). Such callers should
    also pass ``p_thickness=0`` when the channels are not stack neighbours (time frames), and ``p_shading=0`` when
    the channels must keep their relative intensities (the shading correction divides each channel by its own
    smoothed self).
    """
    g = generator
    x = images.clamp(min=0).clone()
    n, c, h, w = x.shape

    def pick(p: float) -> torch.Tensor:
        return torch.rand(n, generator=g) < p

    if masks is not None:
        sel = pick(p_tissue)
        if sel.any():
            soft = _blur(F.one_hot(masks[sel].clamp(0, 3), 4).permute(0, 1, 4, 2, 3).float().reshape(-1, 4, h, w), 1.0)
            soft = soft.reshape(int(sel.sum()), c, 4, h, w)
            offs = (torch.rand(int(sel.sum()), 1, 4, 1, 1, generator=g) * 2 - 1) * 0.7
            gain = 0.5 + torch.rand(int(sel.sum()), 1, 4, 1, 1, generator=g)
            offs[:, :, 0] = 0.0  # background keeps its own texture; labelled tissues move
            gain[:, :, 0] = 1.0
            xs = x[sel][:, :, None]  # [m, C, 1, H, W]
            x[sel] = ((xs * gain + offs) * soft).sum(2) / soft.sum(2).clamp(min=1e-6)
            x = x.clamp(min=0)
    sel = pick(0.7)  # monotone random contrast curve
    if sel.any():
        m = int(sel.sum())
        knots = torch.sort(torch.rand(m, 3, generator=g), 1).values
        ys = torch.cat([torch.zeros(m, 1), knots, torch.ones(m, 1)], 1)  # values at 0, .25, .5, .75, 1
        xi = (x[sel] / 1.5).clamp(0, 1) * 4
        lo = xi.floor().clamp(max=3).long()
        frac = xi - lo
        y0 = torch.gather(ys, 1, lo.view(m, -1)).view_as(xi)
        y1 = torch.gather(ys, 1, (lo + 1).view(m, -1)).view_as(xi)
        x[sel] = (y0 + frac * (y1 - y0)) * 1.5
    sel = pick(p_bias)
    if sel.any():
        x[sel] = x[sel] * torch.exp(_smooth_field(int(sel.sum()), h, g) * 0.4 * torch.rand(int(sel.sum()), 1, 1, 1, generator=g))
    if c > 1:
        sel = pick(p_thickness)
        if sel.any():
            wgt = torch.rand(int(sel.sum()), 1, 1, generator=g) * 0.35
            x[sel, 0] = (1 - wgt) * x[sel, 0] + wgt * x[sel, 1:].mean(1)
    sel = pick(p_resolution)
    if sel.any():
        f = 1.0 + 1.5 * torch.rand(2, generator=g)
        both = bool(torch.rand(1, generator=g) < 0.5)
        size = (max(8, int(h / f[0])), max(8, int(w / f[1]))) if both else (max(8, int(h / f[0])), w)
        small = F.interpolate(x[sel], size=size, mode="area")
        x[sel] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    sel = pick(p_ringing)
    if sel.any():
        k = torch.fft.fftshift(torch.fft.fft2(x[sel]), dim=(-2, -1))
        keep = 0.45 + 0.45 * float(torch.rand(1, generator=g))
        axis = -1 if bool(torch.rand(1, generator=g) < 0.5) else -2
        size = k.shape[axis]
        lo, hi = int(size * (1 - keep) / 2), int(size * (1 + keep) / 2)
        win = torch.zeros(size)
        win[lo:hi] = 1
        k = k * (win.view(1, 1, 1, -1) if axis == -1 else win.view(1, 1, -1, 1))
        x[sel] = torch.fft.ifft2(torch.fft.ifftshift(k, dim=(-2, -1))).real.clamp(min=0)
    sel = pick(p_shading)
    if sel.any():
        smooth = F.interpolate(_blur(F.avg_pool2d(x[sel], 4), 3.0), size=(h, w), mode="bilinear", align_corners=False)
        x[sel] = x[sel] / (smooth + 0.1 * smooth.mean((-1, -2), keepdim=True) + 1e-3)
    sel = pick(0.3)
    if sel.any():
        x[sel] = _blur(x[sel], 0.5 + float(torch.rand(1, generator=g)))
    if normalise:
        x = renormalise(x)
    sd = torch.rand(n, 1, 1, 1, generator=g) * 0.06
    noisy = torch.sqrt((x + torch.randn(x.shape, generator=g) * sd) ** 2 + (torch.randn(x.shape, generator=g) * sd) ** 2)
    return noisy.clamp(0.0, 1.5) if normalise else noisy
