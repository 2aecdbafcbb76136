"""PHD-Net: patch-based multi-task landmark network (Schobs et al., ISBI 2021).

Schobs, Swift, Lu, "Confidence-quantifying landmark localisation for cardiac MRI",
IEEE ISBI 2021. The image is
cut into ``PATCH`` x ``PATCH`` pixel patches by three stages of 3x3 conv + BatchNorm +
ReLU + 2x2 max-pool; three more 3x3 convs at patch resolution widen the receptive field
(as in the authors' implementation). Two branches of 1x1 convolutions then predict, for
every patch and every landmark:

* a **patch heatmap** value in [0, 1] (sigmoid; trained by MSE against a Gaussian of the
  distance from the patch centre to the landmark), and
* a **displacement** from the patch centre to the landmark, log-scaled
  (:func:`log_scale` / :func:`inverse_log_scale`), trained by MSE weighted by a Gaussian
  around the landmark.

The paper trains one network per landmark; here ``n_landmarks`` heads share one backbone
(N heatmap channels + 2N displacement channels); see the model card for the comparison.
Input ``[n, 1, H, W]`` with H, W divisible by ``PATCH``; outputs ``[n, N, H/8, W/8]`` and
``[n, N, 2, H/8, W/8]``.
"""

from __future__ import annotations

import torch
from torch import nn

#: pixels per patch side (three 2x2 max-pools)
PATCH = 8


def _conv(cin: int, cout: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def _head(cin: int, widths: tuple[int, ...], cout: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Conv2d(cin, w, 1), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        cin = w
    layers.append(nn.Conv2d(cin, cout, 1))
    return nn.Sequential(*layers)


def log_scale(d: torch.Tensor) -> torch.Tensor:
    """Displacement (px) -> network target ``sign(d) * log(1 + |d|)`` (elementwise)."""
    return torch.sign(d) * torch.log1p(d.abs())


def inverse_log_scale(y: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`log_scale`: ``sign(y) * (exp(|y|) - 1)`` px."""
    return torch.sign(y) * torch.expm1(y.abs())


class PHDNet(nn.Module):
    """Patch heatmap + displacement network.

    Args:
        n_landmarks: landmarks predicted by this network (heads: N heatmap, 2N displacement channels).
        in_channels: image channels (1).
        width: channels of every 3x3 conv (paper: 32).
        n_deep: extra 3x3 convs at patch resolution after the three pooling stages (paper code: 3).
        head_widths: hidden 1x1-conv widths of each branch (paper code: 64, 96).

    ``forward(x [n, C, H, W])`` returns ``(heatmap_logits [n, N, h, w], log_displacement [n, N, 2, h, w])``
    with ``h = H / 8``; displacement channel 0 is x (column), 1 is y (row), in canvas pixels
    after :func:`inverse_log_scale`. :meth:`predict` applies the sigmoid and the inverse scaling.
    """

    def __init__(self, n_landmarks: int = 3, in_channels: int = 1, width: int = 32, n_deep: int = 3,
                 head_widths: tuple[int, ...] = (64, 96)):
        super().__init__()
        self.n_landmarks = n_landmarks
        layers = [_conv(in_channels, width, True), _conv(width, width, True), _conv(width, width, True)]
        layers += [_conv(width, width, False) for _ in range(n_deep)]
        self.backbone = nn.Sequential(*layers)
        self.heatmap_head = _head(width, tuple(head_widths), n_landmarks)
        self.displacement_head = _head(width, tuple(head_widths), 2 * n_landmarks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[-1] % PATCH or x.shape[-2] % PATCH:
            raise ValueError(f"PHDNet input size {tuple(x.shape[-2:])} is not divisible by the patch size {PATCH}")
        f = self.backbone(x)
        hm = self.heatmap_head(f)
        disp = self.displacement_head(f)
        n, _, h, w = disp.shape
        return hm, disp.reshape(n, self.n_landmarks, 2, h, w)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(heatmap [n, N, h, w] in [0, 1], displacement [n, N, 2, h, w] px)`` in eval mode."""
        hm, disp = self(x)
        return torch.sigmoid(hm), inverse_log_scale(disp)


def patch_centres(h: int, w: int, patch: int = PATCH) -> torch.Tensor:
    """Pixel coordinates ``(x, y)`` of the patch centres, ``[h, w, 2]`` (pixel centres at integers)."""
    c = (patch - 1) / 2.0
    ys = torch.arange(h, dtype=torch.float32) * patch + c
    xs = torch.arange(w, dtype=torch.float32) * patch + c
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], -1)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
