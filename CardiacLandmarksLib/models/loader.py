"""Loading bundled models (weights + card, SHA256 checked) and running them on CPU or GPU.

Every bundled model is ``Resources/Models/<name>.pt`` (a dict with ``state_dict`` and
``config``) plus ``<name>.json`` (the model card, with ``sha256`` of the weights file).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.core.errors import CardiacLandmarksError
from CardiacLandmarksLib.models.catalogue import load_bundled, model_for, read_card, sha256_file  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)



def choose_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is usable, else ``"cpu"``; ``"cuda"`` without a GPU is an error."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CardiacLandmarksError("device 'cuda' requested but no CUDA GPU is available (use --device cpu or auto)")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise CardiacLandmarksError(f"unknown device {device!r}: use auto, cpu or cuda")
    return device


CPU_BATCH = 8
"""Images per forward pass on CPU. With channels-last weights, batches of 8 (16 with mirror TTA) stay
in cache: about 6 ms/image for the SAX U-Net on 2 cores against 19 ms at 32 in contiguous layout
(benchmarks/README.md)."""


MAX_CPU_WORKERS = 4
"""Most batches :func:`run_batches` runs at once on CPU."""


def cpu_workers(device: str, n_batches: int) -> int:
    """How many batches :func:`run_batches` runs at once: on CPU, ``min(T, n_batches, MAX_CPU_WORKERS)`` where ``T``
    is torch's intra-op thread count (``torch.get_num_threads()``; 1 in a cohort worker, which sets it); 1 on a GPU,
    for a single batch, or with one thread."""
    import torch

    if not str(device).startswith("cpu"):
        return 1
    return max(1, min(torch.get_num_threads(), int(n_batches), MAX_CPU_WORKERS))


def run_batches(fn: Callable, batches: Iterable, device: str, n_batches: int) -> Iterator:
    """``fn(batch)`` for each of ``batches``, yielded in order; on CPU several batches at once.

    With ``W = cpu_workers(device, n_batches) >= 2``, up to ``W`` batches run at once in worker threads and torch's
    intra-op threads are divided among them (``T // W`` each; restored on exit). Each thread then runs whole batches
    (network, decoding, NumPy and SciPy steps) instead of splitting each operation across the cores while the
    Python and NumPy steps between operations leave the other cores idle: about 1.3x faster for the SAX stack on 2
    cores (benchmarks/README.md). ``batches`` is consumed lazily in the calling thread (it may prepare inputs and
    raise, e.g. :class:`~CardiacLandmarksLib.sax.pipeline.Cancelled`); ``fn`` must not change shared state (the
    loaded networks are only read). Results equal the one-at-a-time run's to float rounding (an operation on one
    thread may round differently; on real stacks every presence decision and flag was the same). An exception
    in ``fn`` is raised here when its batch's turn comes, after the batches already running have finished.

    Torch's thread count is process-wide: two analyses running at once in one process share it.
    """
    import torch

    workers = cpu_workers(device, n_batches)
    if workers < 2:
        for batch in batches:
            yield fn(batch)
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // workers))
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="cardiac-landmarks") as pool:
            pending: deque = deque()
            for batch in batches:
                pending.append(pool.submit(fn, batch))
                if len(pending) >= workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
    finally:
        torch.set_num_threads(threads)


def fold_batchnorm(net):
    """Fold every ``Conv2d`` directly followed by ``BatchNorm2d`` (inside an ``nn.Sequential``) into
    one convolution, for inference only (``torch.nn.utils.fusion.fuse_conv_bn_eval``; the BatchNorm
    becomes ``Identity``). The network must be in eval mode. Returns ``net``."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                seq[i + 1] = nn.Identity()
    return net


def prepare_net(net, device: str):
    """Ready a loaded network for inference on ``device``: eval mode, BatchNorm folded into the
    convolutions (:func:`fold_batchnorm`), channels-last weights (oneDNN's fast convolution layout on
    CPU). Outputs equal the plain network's to float rounding (tested). Returns ``net``."""
    import torch

    net.eval()
    fold_batchnorm(net)
    return net.to(device).to(memory_format=torch.channels_last)


def as_input(images: np.ndarray, device: str, add_channel: bool = True):
    """Float32 tensor ``[n, 1, H, W]`` (``add_channel``) or ``[n, C, H, W]`` in channels-last layout on ``device``."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images, np.float32))
    if add_channel:
        x = x[:, None]
    return x.to(device).contiguous(memory_format=torch.channels_last)


def default_batch(device: str) -> int:
    """Images per forward pass: :data:`CPU_BATCH` on CPU, 32 on a GPU."""
    return CPU_BATCH if str(device).startswith("cpu") else 32


@dataclass
class BundledNet:
    """A bundled network loaded from ``Resources/Models`` (weights checked against the card's SHA256).

    ``batch_size`` 0 means :func:`default_batch` for the device.
    """

    name: str
    version: str
    sha256: str
    card: dict
    device: str
    net: object = field(repr=False)
    batch_size: int = 0

    def __post_init__(self) -> None:
        if not self.batch_size:
            self.batch_size = default_batch(self.device)

    def describe(self) -> dict:
        """``{"name", "version", "sha256"}`` as written into ``landmarks.json``."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


@dataclass
class LoadedModel(BundledNet):
    """A bundled heatmap/segmentation network ready to run.

    ``predict(images [n, H, W] float32) -> probs [n, C, H, W]`` softmax probabilities of the
    heatmap classes (landmarks + background, Xue et al. 2021). A SAX model with a segmentation head
    (card ``architecture.segmentation_classes``) has more output channels; :meth:`predict_maps`
    returns both; :func:`CardiacLandmarksLib.sax.rvi_segmentation.locate` turns them into SAX landmark positions.
    """

    @property
    def in_channels(self) -> int:
        """Input channels: 1, or 3 for a model with stack context (the slice, then its two neighbours)."""
        return int(self.card["architecture"].get("in_channels", 1))

    def as_model_input(self, images: np.ndarray) -> np.ndarray:
        """``[n, C, H, W]`` network input from canvas images ``[n, H, W]`` (slice alone) or ``[n, C', H, W]``.

        A stack-context model given a slice alone, or fewer channels than it takes, sees the slice itself in
        place of the missing neighbours (as it was trained for single-slice series); a single-channel model
        given context keeps channel 0, the slice.
        """
        x = np.asarray(images, np.float32)
        if x.ndim == 3:
            x = x[:, None]
        c = self.in_channels
        if x.shape[1] < c:
            x = np.concatenate([x] + [x[:, :1]] * (c - x.shape[1]), 1)
        return x[:, :c]

    @property
    def n_heatmap(self) -> int:
        """Heatmap output channels (landmarks + background)."""
        return int(self.card["architecture"]["n_classes"])

    def predict(self, images: np.ndarray, tta: bool = True) -> np.ndarray:
        """Softmax heatmaps ``[n, L + 1, H, W]`` for canvas images ``[n, H, W]`` (see :meth:`predict_maps`)."""
        return self.predict_maps(images, tta, segmentation=False)[0]

    def predict_maps(self, images: np.ndarray, tta: bool = True, segmentation: bool = True,
                     mirror_disagreement: bool = False) -> tuple:
        """Heatmap and segmentation softmax maps for canvas images ``[n, H, W]``, or ``[n, C, H, W]`` with stack
        context (:meth:`as_model_input`; channel 0 is the slice the maps belong to).

        Returns ``(heatmaps [n, L + 1, H, W], segmentation [n, S, H, W] or None)``; each is a
        softmax over its own channels. The segmentation is None without a segmentation head or
        with ``segmentation=False``.

        When the card's ``input.mirror_tta`` names a heatmap channel pair (e.g. ``[0, 1]`` = A-RVI,
        I-RVI), the mirrored image is also run and averaged back in with that pair swapped (a mirror
        swaps anterior and inferior under the display convention; segmentation classes do not
        swap). ``tta=False`` skips it (about twice as fast; the card's thresholds were calibrated
        with it on).

        ``mirror_disagreement``: also return, third, ``[n, L]`` the distance (canvas px) between each landmark's
        heatmap peak (:func:`~CardiacLandmarksLib.models.decoding.decode_heatmaps`) on the image and on its mirror
        image (mapped back) before they are averaged: a per-point sign of doubt (0 without mirror TTA).
        """
        import torch

        from CardiacLandmarksLib.models.decoding import decode_heatmaps

        pair = self.card.get("input", {}).get("mirror_tta") if tta else None
        n_heat = self.n_heatmap
        heat, seg, apart = [], [], []
        shape = tuple(np.shape(images)[-2:])
        images = self.as_model_input(images) if len(images) else images
        with torch.inference_mode():
            for s in range(0, len(images), self.batch_size):
                x = as_input(images[s : s + self.batch_size], self.device, add_channel=False)
                if pair:
                    x = torch.cat([x, torch.flip(x, dims=[-1])]).contiguous(memory_format=torch.channels_last)
                logits = self.net(x)
                parts = [torch.softmax(logits[:, :n_heat], 1)]
                if segmentation and logits.shape[1] > n_heat:
                    parts.append(torch.softmax(logits[:, n_heat:], 1))
                if pair:
                    n = x.shape[0] // 2
                    order = list(range(n_heat))
                    order[pair[0]], order[pair[1]] = pair[1], pair[0]
                    back = torch.flip(parts[0][n:], dims=[-1])[:, order]
                    if mirror_disagreement:
                        xy_a, _ = decode_heatmaps(parts[0][:n].float().cpu().numpy())
                        xy_b, _ = decode_heatmaps(back.float().cpu().numpy())
                        apart.append(np.linalg.norm(xy_a - xy_b, axis=-1).astype(np.float32))
                    parts[0] = 0.5 * (parts[0][:n] + back)
                    parts[1:] = [0.5 * (q[:n] + torch.flip(q[n:], dims=[-1])) for q in parts[1:]]
                heat.append(parts[0].float().cpu().numpy())
                if len(parts) > 1:
                    seg.append(parts[1].float().cpu().numpy())
                if mirror_disagreement and not pair:
                    apart.append(np.zeros((heat[-1].shape[0], n_heat - 1), np.float32))
        if not heat:
            out = (np.zeros((0, n_heat) + shape, np.float32), None)
            return out + (np.zeros((0, n_heat - 1), np.float32),) if mirror_disagreement else out
        out = (np.concatenate(heat), (np.concatenate(seg) if seg else None))
        return out + (np.concatenate(apart),) if mirror_disagreement else out


def load_model(view: str = "sax", device: str = "auto", models_dir: Path | None = None, name: str | None = None,
               sequence: str | None = None) -> LoadedModel:
    """Load the bundled landmark model of ``view`` (catalogue task ``landmarks``; cached per process).

    Args:
        view: ``"sax"``, ``"2ch"``, ``"3ch"`` or ``"4ch"``; the catalogue names the model.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        models_dir: a models folder other than the bundled one (e.g. a training run's output; its own
            ``<view>`` model is used whatever the sequence).
        name: a model name that overrides the catalogue's choice.
        sequence: the series' sequence (:attr:`CMRSeries.sequence`): a bundled model made for it is chosen
            (:func:`CardiacLandmarksLib.models.catalogue.model_for`; SAX: ``sax_unet_lge`` for LGE and perfusion),
            the general one otherwise.

    Raises:
        ModelIntegrityError: weights or card missing, or SHA256 mismatch with the card or catalogue.
        CardiacLandmarksError: no model for this view, or unusable device.
    """
    from CardiacLandmarksLib.models.unet import UNet2D

    name = name or model_for("landmarks", view, sequence=None if models_dir else sequence)
    dev = choose_device(device)

    def build(card: dict, ckpt: dict):
        arch = card["architecture"]
        n_out = arch["n_classes"] + len(arch.get("segmentation_classes") or [])
        net = UNet2D(arch["in_channels"], n_out, arch["base_channels"], arch["depth"])
        net.load_state_dict(ckpt["state_dict"])
        prepare_net(net, dev)
        return net

    net, card, digest = load_bundled(name, dev, build, models_dir)
    return LoadedModel(name, card.get("version", "0"), digest, card, dev, net)
