"""2D U-Net used for landmark heatmaps and segmentation.

Architecture after Xue et al., "Landmark detection in cardiac MRI by using a convolutional
neural network", Radiology: AI 2021 (a U-Net whose output classes are the landmark
heatmaps plus background, trained with softmax + KL + soft-Dice), shrunk for CPU speed:
``depth`` resolution levels, each two 3x3 conv + BatchNorm + ReLU, max-pool down,
bilinear up-sampling + 3x3 conv up, skip connections by concatenation.
"""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet2D(nn.Module):
    """2D U-Net.

    Args:
        in_channels: input channels (1 for a cine frame; several frames for 2D+T perfusion).
        n_classes: output channels (landmarks + background, or segmentation labels).
        base: channels of the first level; level ``l`` has ``base * 2**min(l, 3)``.
        depth: number of down-sampling steps; input H and W must be divisible by ``2**depth``.

    Input ``[n, in_channels, H, W]`` float32, output logits ``[n, n_classes, H, W]``.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 4, base: int = 16, depth: int = 4):
        super().__init__()
        self.depth = depth
        chans = [base * 2 ** min(level, 3) for level in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = in_channels
        for c in chans:
            self.down.append(_block(cin, c))
            cin = c
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        for level in range(depth - 1, -1, -1):
            self.up.append(_block(chans[level + 1] + chans[level], chans[level]))
        self.head = nn.Conv2d(chans[0], n_classes, 1)

    def init_background_prior(self, background_logit: float = 5.0, channel: int = -1) -> None:
        """Start with background probability ~0.99 on every pixel (``channel`` = background; the
        last one unless a segmentation head follows the heatmap classes).

        Prior initialisation as in focal-loss detectors: the rare landmark classes then get the
        gradient from the first step instead of the network first learning "all background".
        """
        with torch.no_grad():
            self.head.bias.zero_()
            self.head.bias[channel] = background_logit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, block in enumerate(self.down):
            x = block(x)
            if level < self.depth:
                skips.append(x)
                x = self.pool(x)
        for block in self.up:
            skip = skips.pop()
            x = nn.functional.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def transfer_state(model: nn.Module, state: dict) -> int:
    """Copy the tensors of a checkpoint ``state`` into ``model`` (in place); returns how many were copied.

    Same-shape tensors are copied whole. Where the output heads (``head.*``) differ in channel
    count, the leading channels are copied: every bundled model has its landmark heatmap
    channels first and a segmentation head (SAX v1.2) after them, so a heatmap-only checkpoint
    can start a model with a segmentation head, and the SAX model can start a long-axis model.
    Tensors missing on either side, or differing in other ways, are left as they are.
    """
    own = model.state_dict()
    merged = {}
    for key, value in state.items():
        if key not in own:
            continue
        if own[key].shape == value.shape:
            merged[key] = value
        elif key.startswith("head.") and own[key].shape[1:] == value.shape[1:]:
            target = own[key].clone()
            n = min(target.shape[0], value.shape[0])
            target[:n] = value[:n]
            merged[key] = target
        elif (grown := _input_channels_as(key, value, own[key])) is not None:
            merged[key] = grown
    model.load_state_dict(merged, strict=False)
    return len(merged)


def _input_channels_as(key: str, value: torch.Tensor, like: torch.Tensor) -> torch.Tensor | None:
    """The first convolution's weights ``value`` carried to the input channels of ``like`` (a single-slice model
    starting a stack-context one): the shared leading channels copied, the new ones zero, so the new model first
    answers as the old. None for any other tensor or shape difference."""
    if key != "down.0.0.weight" or value.shape[0] != like.shape[0] or value.shape[2:] != like.shape[2:]:
        return None
    out = torch.zeros_like(like)
    n = min(out.shape[1], value.shape[1])
    out[:, :n] = value[:, :n]
    return out


def interpolate_states(start: dict, finetuned: dict, alpha: float) -> dict:
    """Weight-space interpolation of a fine-tuned network and the checkpoint it was fine-tuned from.

    ``(1 - alpha) * start + alpha * finetuned`` for every floating-point tensor (weights, biases and the BatchNorm
    running statistics); integer tensors (``num_batches_tracked``) come from ``finetuned``. A ``start`` tensor of
    another shape is first carried into ``finetuned``'s shape by :func:`transfer_state`'s rule (a single-slice first
    convolution gains zero weights for the stack-context channels, as fine-tuning started it; a narrower ``start`` is
    first widened by :func:`widen_state` with its default seed and jitter, as ``training.train_sax.load_compatible``
    widened it to start the fine-tuning), so ``alpha = 0`` is the starting model as the fine-tuned architecture runs
    it. WiSE-FT (Wortsman et al., "Robust fine-tuning of zero-shot
    models", CVPR 2022): along this line a fine-tuned model often keeps its gains on the new data while getting back
    the accuracy its starting model had on the old.

    Args:
        start, finetuned: state dicts of the same architecture (up to the first convolution's input channels).
        alpha: share of the fine-tuned weights, in [0, 1].

    Raises:
        ValueError: ``alpha`` outside [0, 1], or the two states do not have the same tensors.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if set(start) != set(finetuned):
        raise ValueError("the two checkpoints do not hold the same tensors: not the same architecture")
    if "down.0.0.weight" in start:
        start = widened_to(start, base_of(finetuned))  # as fine-tuning widened it (same seed)
    out = {}
    for key, ft in finetuned.items():
        st = start[key]
        if st.shape != ft.shape:
            st = _input_channels_as(key, st, ft)
            if st is None:
                raise ValueError(f"tensor {key}: shapes {tuple(start[key].shape)} and {tuple(ft.shape)} differ")
        out[key] = (1.0 - alpha) * st.to(ft.dtype) + alpha * ft if ft.is_floating_point() else ft.clone()
    return out


def base_of(state: dict) -> int:
    """Base width (channels of the first level) of a :class:`UNet2D` state dict."""
    return int(state["down.0.0.weight"].shape[0])


def widened_to(state: dict, base: int) -> dict:
    """``state`` widened by :func:`widen_state` (default seed and jitter) to base width ``base`` when that is an integer
    multiple of its own; ``state`` itself otherwise. The one rule fine-tuning (``training.train_sax.load_compatible``)
    and weight interpolation (:func:`interpolate_states`) both apply, so the two widen a checkpoint identically."""
    own = base_of(state)
    return widen_state(state, base // own) if base != own and base % own == 0 else state


def widen_state(state: dict, factor: int, jitter: float = 0.5, seed: int = 0) -> dict:
    """A :class:`UNet2D` state dict ``factor`` times wider that computes the same function (Net2WiderNet).

    Chen, Goodfellow and Shlens, "Net2Net: accelerating learning via knowledge transfer", ICLR 2016: every hidden
    channel ``c`` of the old network becomes ``factor`` copies (new channels ``c, c + C, c + 2C, ...``) with the same
    incoming weights and BatchNorm parameters and statistics, and each weight that reads channel ``c`` is split among
    the copies in shares that sum to 1. The copies then hold equal activations, so the wider network's output equals
    the old one's (in eval and in train mode) up to float rounding. The shares are drawn at random (``0.5 +- jitter/2``
    for ``factor`` 2) so that the copies receive different gradients and grow apart when trained; equal shares would
    keep them identical for ever.

    The image input channels and the output classes keep their counts; only the hidden widths grow. Used to answer
    the capacity question of issue 16 at an equal training recipe: a wider network started from a trained narrow one
    and fine-tuned exactly as the narrow one was.

    Args:
        state: state dict of a ``UNet2D(in_channels, n_classes, base, depth)``.
        factor: integer >= 1; the new base width is ``factor * base``.
        jitter: spread of the split shares, in [0, 1).
        seed: seed of the shares.

    Returns:
        State dict of ``UNet2D(in_channels, n_classes, factor * base, depth)``.

    Raises:
        ValueError: ``factor`` < 1 or ``jitter`` outside [0, 1).
    """
    if factor < 1 or int(factor) != factor:
        raise ValueError(f"factor must be an integer >= 1, got {factor}")
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must lie in [0, 1), got {jitter}")
    factor = int(factor)
    gen = torch.Generator().manual_seed(seed)

    def shares(shape: tuple) -> torch.Tensor:
        """``factor`` share tensors of ``shape`` summing to 1 element-wise, stacked on dim 0."""
        if factor == 1:
            return torch.ones((1, *shape))
        raw = 1.0 + jitter * (torch.rand((factor, *shape), generator=gen) * 2.0 - 1.0)
        return raw / raw.sum(0, keepdim=True)

    def widen_in(w: torch.Tensor, parts: list[int]) -> torch.Tensor:
        """Input dim 1 of a conv weight: each part (channel group of a concatenation) tiled ``factor`` times with
        split weights."""
        out, start = [], 0
        for n in parts:
            block = w[:, start:start + n]
            s = shares(tuple(block.shape))
            out.append(torch.cat([block * s[j] for j in range(factor)], dim=1))
            start += n
        return torch.cat(out, dim=1)

    def tile_out(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t] * factor, dim=0)

    n_down = len({k.split(".")[1] for k in state if k.startswith("down.")})
    depth = n_down - 1
    base = base_of(state)
    chans = [base * 2 ** min(level, 3) for level in range(depth + 1)]
    groups = {}  # conv weight key -> the old channel counts of its input parts (None = image input, not widened)
    for level in range(depth + 1):
        groups[f"down.{level}.0.weight"] = None if level == 0 else [chans[level - 1]]
        groups[f"down.{level}.3.weight"] = [chans[level]]
    for k, level in enumerate(range(depth - 1, -1, -1)):
        groups[f"up.{k}.0.weight"] = [chans[level + 1], chans[level]]
        groups[f"up.{k}.3.weight"] = [chans[level]]
    out = {}
    for key, value in state.items():
        if key.startswith("head."):
            out[key] = widen_in(value, [value.shape[1]]) if key == "head.weight" else value.clone()
        elif key in groups:
            w = value if groups[key] is None else widen_in(value, groups[key])
            out[key] = tile_out(w)
        elif value.ndim == 0:  # BatchNorm num_batches_tracked
            out[key] = value.clone()
        else:  # BatchNorm weight, bias, running_mean, running_var of a widened layer
            out[key] = tile_out(value)
    return out
