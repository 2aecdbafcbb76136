"""Train the perfusion LV segmentation (localiser + segmenter U-Nets) on the mlperf patients.

Data: ``perfusion/mlperf`` (Martin-Isla et al., cmartin-isla/ML-perfusion): first-pass
perfusion, stress and rest, basal and mid SAX slice, ``<id>_<cond>_<level>.nii.gz`` with
``_gt`` masks (1 = LV myocardium, 2 = LV blood pool) drawn on the frames of peak contrast.
Split by patient (seeded). Method: :mod:`CardiacLandmarksLib.perfusion.segmentation` (after Xue et al.,
Radiology: AI 2020). Reproducible from the seed; meant to run on 1 CPU thread::

    nice -n 10 python -m CardiacLandmarksLib.training.train_perfusion --out Resources/Models

writes ``perfusion_unet.pt`` + ``perfusion_unet.json`` / ``.md`` (model card with validation
Dice and mean boundary distance).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from CardiacLandmarksLib.core.config import data_root
from CardiacLandmarksLib.io.atomic import atomic_write_text, sha256_file
from CardiacLandmarksLib.io.jsonsafe import dumps_strict
from CardiacLandmarksLib.models.unet import count_parameters
from CardiacLandmarksLib.perfusion import segmentation as ps
from CardiacLandmarksLib.training.augment import domain_randomise

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^(?P<pid>\d+)_(?P<cond>stress|rest)_(?P<level>base|mid|apex)\.nii(\.gz)?$")


@dataclass
class PerfTrainConfig:
    """Hyper-parameters (stored in the checkpoint and the model card)."""

    seed: int = 0
    n_val_patients: int = 3
    loc_iters: int = 400
    seg_iters: int = 1500
    batch: int = 8
    lr: float = 2e-3
    loc_base: int = 8
    loc_depth: int = 4
    seg_base: int = 12
    seg_depth: int = 4
    seg_pre_px: int = 112
    max_shift_mm: float = 12.0
    threads: int = 1
    #: seed of the train / validation patient split (None: ``seed``, as v1.0.0 was split): lets models trained
    #: with other seeds keep the same validation patients
    split_seed: int | None = None
    #: :func:`..augment.domain_randomise` (kept intensity scale) instead of the plain gamma/gain/noise. Off by
    #: default: the bundled v1.0.0 was trained without it, and a v1.1.0 candidate with it (3000 segmenter
    #: iterations) did not beat v1.0.0 on validation (myocardium Dice 0.866 vs 0.868; issue 16, perf6 note)
    domain_randomisation: bool = False
    #: probabilities of its per-tissue remapping, bias field, resolution and ringing steps (thickness and
    #: coil-shading correction are off: the channels are time frames that must keep their relative intensities)
    p_tissue: float = 0.3
    p_bias: float = 0.5
    p_resolution: float = 0.3
    p_ringing: float = 0.2
    #: cross-sequence pretraining of the segmenter (issue 16, sixth pass; transfer learning across sequences as in
    #: Xue et al. 2021 and the MESA atlas work): ``"acdc,emidec"`` first trains the segmenter for ``pretrain_iters``
    #: on the LV myocardium / cavity masks of the non-test ACDC cine and EMIDEC LGE slices (:func:`pretrain_samples`)
    #: mixed with the perfusion frames (``pretrain_mix`` = perfusion share of the pool), then ``seg_iters`` on the
    #: perfusion frames alone. Empty: perfusion only (v1.0.0)
    pretrain_sets: str = ""
    pretrain_iters: int = 1500
    pretrain_mix: float = 0.5
    #: reuse the localiser of this perfusion checkpoint instead of training one (``loc_iters`` unused)
    localiser_from: str | None = None
    #: mirror test-time augmentation of the segmenter written into the card (``input.flip_tta``): the
    #: softmax averaged over the crop and its left-right / up-down mirrors (3 passes)
    flip_tta: bool = True


#: version written into the model card
VERSION = "1.2.0"
#: mirror axes of the card's ``input.flip_tta`` (see :func:`ps.flip_tta_axes`)
FLIP_TTA = ["i", "j"]


def card_flips(cfg: PerfTrainConfig) -> list[str]:
    """The card's ``input.flip_tta`` for a training config: :data:`FLIP_TTA`, or none when ``cfg.flip_tta`` is off."""
    return list(FLIP_TTA) if cfg.flip_tta else []


#: mlperf label -> :func:`..augment.domain_randomise` tissue class (1 myocardium -> 2 LV myocardium,
#: 2 blood pool -> 3 LV cavity)
_DR_CLASSES = torch.tensor([0, 2, 3])


# --------------------------------------------------------------------------- data


@dataclass
class Case:
    patient: str
    series: str
    image: Path
    gt: Path


def mlperf_cases(root: Path) -> list[Case]:
    """Image + ``_gt`` pairs of the mlperf folder, sorted."""
    cases = []
    for p in sorted(Path(root).glob("*.nii*")):
        m = _NAME.match(p.name)
        if not m:
            continue
        gt = p.with_name(p.name.replace(".nii", "_gt.nii"))
        if gt.exists():
            cases.append(Case(m["pid"], p.name.split(".nii")[0], p, gt))
    return cases


def split_patients(patients: list[str], n_val: int, seed: int) -> tuple[list[str], list[str]]:
    """Seeded split of sorted patient ids into (train, val)."""
    ids = sorted(set(patients))
    rng = np.random.default_rng(seed)
    val = sorted(rng.choice(ids, size=n_val, replace=False).tolist())
    return [p for p in ids if p not in val], val


def config_split(cfg: PerfTrainConfig, patients: list[str]) -> tuple[list[str], list[str]]:
    """(train, val) patients of a training config: :func:`split_patients` with ``cfg.split_seed`` (``cfg.seed`` when
    None, as v1.0.0 was split), so that runs with other training seeds can keep the same validation patients."""
    return split_patients(patients, cfg.n_val_patients, cfg.seed if cfg.split_seed is None else cfg.split_seed)


def load_case(case: Case) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """``(frames [t, j, i] float32, gt [t, j, i] uint8, spacing (si, sj))`` through the library loader."""
    from CardiacLandmarksLib.io.load import load_series

    img = load_series(case.image)
    gt = load_series(case.gt)
    return img.pixels[:, 0].astype(np.float32), np.rint(gt.pixels[:, 0]).astype(np.uint8), img.spacing[:2]


def _lv_centroid(mask: np.ndarray) -> np.ndarray:
    jj, ii = np.nonzero(mask > 0)
    return np.array([ii.mean(), jj.mean()])


def build_samples(cases: list[Case], cfg: PerfTrainConfig) -> dict:
    """Pre-computed canvases: localiser inputs/labels per series, segmenter crops per labelled frame."""
    loc_x, loc_y, seg_x, seg_y = [], [], [], []
    for case in cases:
        frames, gt, sp = load_case(case)
        timing = ps.bolus_timing(frames)
        scale = ps.intensity_scale(frames)
        labelled = np.nonzero(gt.reshape(len(gt), -1).max(1) > 0)[0]
        canvas = ps.localiser_canvas(frames.shape[1:], sp)
        loc_x.append(canvas.sample(ps.localiser_input(frames, timing, scale)))
        near = labelled[np.argmin(np.abs(labelled - timing.peak))]
        loc_y.append(canvas.sample((gt[near] > 0)[None].astype(np.float32), order=0)[0].astype(np.uint8))
        for t in labelled:
            c = _lv_centroid(gt[t])
            cv = ps.Canvas((float(c[0]), float(c[1])), tuple(map(float, sp)), ps.SEG_MM, cfg.seg_pre_px)
            seg_x.append(cv.sample(frames[ps.segmenter_frames(int(t), len(frames))] / scale))
            seg_y.append(cv.sample(gt[t][None].astype(np.float32), order=0)[0].astype(np.uint8))
    return {"loc_x": np.stack(loc_x), "loc_y": np.stack(loc_y), "seg_x": np.stack(seg_x), "seg_y": np.stack(seg_y)}


def _slice_samples(img: np.ndarray, lab: np.ndarray, spacing_ij: tuple[float, float], mapping: dict[int, int],
                   cfg: PerfTrainConfig) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Segmenter samples of one SAX stack: ``img``, ``lab`` ``[k, j, i]``; every slice with at least 20 px each of
    myocardium and cavity becomes a crop around the cavity centroid, the slice repeated in every time channel
    (intensity / the stack's 99.5th percentile), labels mapped by ``mapping`` to 1 myocardium, 2 cavity."""
    xs, ys = [], []
    scale = float(np.percentile(img, 99.5)) or 1.0
    for k in range(img.shape[0]):
        y = np.zeros_like(lab[k])
        for a, b in mapping.items():
            y[lab[k] == a] = b
        if (y == 2).sum() < 20 or (y == 1).sum() < 20:
            continue
        jj, ii = np.nonzero(y == 2)
        cv = ps.Canvas((float(ii.mean()), float(jj.mean())), tuple(map(float, spacing_ij)), ps.SEG_MM, cfg.seg_pre_px)
        xs.append(np.repeat(cv.sample(img[k][None] / scale), len(ps.SEG_OFFSETS), 0).astype(np.float32))
        ys.append(cv.sample(y[None].astype(np.float32), order=0)[0].astype(np.uint8))
    return xs, ys


def pretrain_samples(root: Path, cfg: PerfTrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Cine / LGE segmenter samples for :attr:`PerfTrainConfig.pretrain_sets` from the shared data ``root``.

    ``acdc``: the ED / ES stacks of the ACDC patients outside the fixed test split (labels 2 myocardium, 3 cavity;
    RV to background). ``emidec``: the EMIDEC cases outside its fixed test split at the nominal pixel size
    (myocardium = healthy + infarct + MVO, 1 cavity). The test splits (:mod:`CardiacLandmarksLib.datasets.splits`)
    are never read.

    Returns:
        ``(x [n, len(SEG_OFFSETS), P, P] float32, y [n, P, P] uint8)`` with ``P = cfg.seg_pre_px``.

    Raises:
        FileNotFoundError: a named set is not under ``root``, or gives no slice.
    """
    from CardiacLandmarksLib.datasets.sax import EMIDEC_NOMINAL_MM, acdc_cases, emidec_cases
    from CardiacLandmarksLib.datasets.splits import ACDC_TEST_PATIENTS, EMIDEC_TEST_CASES
    from CardiacLandmarksLib.io.load import load_series

    xs, ys = [], []
    for name in [s.strip() for s in cfg.pretrain_sets.split(",") if s.strip()]:
        if name == "acdc":
            cases, mapping, test = acdc_cases(Path(root) / "acdc"), {2: 1, 3: 2}, ACDC_TEST_PATIENTS
        elif name == "emidec":
            cases, mapping, test = emidec_cases(Path(root) / "lge" / "emidec"), {2: 1, 3: 1, 4: 1, 1: 2}, EMIDEC_TEST_CASES
        else:
            raise FileNotFoundError(f"unknown pretraining set {name!r} (acdc, emidec)")
        n0 = len(xs)
        for c in cases:
            if c.patient in test:
                continue
            s, m = load_series(c.image), load_series(c.mask)
            sp = (EMIDEC_NOMINAL_MM, EMIDEC_NOMINAL_MM) if name == "emidec" else s.spacing[:2]
            x_, y_ = _slice_samples(s.pixels[0].astype(np.float32), np.rint(m.pixels[0]).astype(np.uint8), sp, mapping, cfg)
            xs += x_
            ys += y_
        if len(xs) == n0:
            raise FileNotFoundError(f"pretraining set {name!r}: no labelled slice under {root}")
    return np.stack(xs), np.stack(ys)


# --------------------------------------------------------------------------- augmentation


def augment(x: torch.Tensor, y: torch.Tensor, out_px: int, gen: torch.Generator, max_shift_px: float,
            scale_range: tuple[float, float] = (0.85, 1.2), cfg: PerfTrainConfig | None = None,
            tissue_masks: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Random rotation (any angle), mirror, scale, shift and intensity of ``x [n, C, H, W]`` and labels ``y [n, H, W]``.

    Output ``[n, C, out, out]`` / ``[n, out, out]`` (labels by nearest neighbour). Intensity: with
    ``cfg.domain_randomisation``, :func:`CardiacLandmarksLib.training.augment.domain_randomise` keeping the series
    intensity scale (``normalise=False``; per-tissue remapping from ``y`` mapped to its classes when
    ``tissue_masks``, the same mask for every channel: the frames around the target move little), then a random
    gain 0.8-1.25 (another series scale); else (or with ``cfg=None``) gamma, gain and noise. The same transform
    for all channels of a sample keeps the time course.
    """
    n, _, h, w = x.shape
    ang = torch.rand(n, generator=gen) * 2 * math.pi
    sc = scale_range[0] + torch.rand(n, generator=gen) * (scale_range[1] - scale_range[0])
    mirror = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * max_shift_px
    cos, sin = torch.cos(ang), torch.sin(ang)
    # affine_grid maps output normalised coords to input normalised coords
    ratio = out_px / w
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * mirror * ratio / sc
    theta[:, 0, 1] = -sin * ratio / sc
    theta[:, 1, 0] = sin * mirror * ratio / sc
    theta[:, 1, 1] = cos * ratio / sc
    theta[:, :, 2] = shift * 2 / w
    grid = F.affine_grid(theta, (n, 1, out_px, out_px), align_corners=False)
    xo = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    yo = F.grid_sample(y[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)[:, 0].long()
    xo = xo.clamp(min=0)
    if cfg is not None and cfg.domain_randomisation:
        masks = _DR_CLASSES[yo.clamp(0, 2)][:, None].expand(-1, xo.shape[1], -1, -1) if tissue_masks else None
        xo = domain_randomise(xo, masks, gen, p_tissue=cfg.p_tissue, p_bias=cfg.p_bias,
                              p_resolution=cfg.p_resolution, p_ringing=cfg.p_ringing, p_shading=0.0,
                              p_thickness=0.0, normalise=False)
        return xo * torch.exp((torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * math.log(1.25)), yo
    # intensity: gamma, gain, offset, noise (same for all channels of a sample: keeps the time course)
    gamma = torch.exp((torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * math.log(1.5))
    xo = xo.pow(gamma) * (0.75 + 0.5 * torch.rand(n, 1, 1, 1, generator=gen))
    xo = xo + torch.randn(xo.shape, generator=gen) * torch.rand(n, 1, 1, 1, generator=gen) * 0.05
    return xo, yo


def ce_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy + mean soft Dice loss of the foreground classes."""
    ce = F.cross_entropy(logits, target)
    p = torch.softmax(logits, 1)[:, 1:]
    t = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()[:, 1:]
    inter = (p * t).sum((0, 2, 3))
    dice = (2 * inter + 1.0) / (p.sum((0, 2, 3)) + t.sum((0, 2, 3)) + 1.0)
    return ce + (1 - dice).mean()


def _train_net(net: torch.nn.Module, x: np.ndarray, y: np.ndarray, out_px: int, iters: int, cfg: PerfTrainConfig,
               gen: torch.Generator, max_shift_px: float, name: str, tissue_masks: bool = True,
               device: str = "cpu") -> list[float]:
    """Train ``net`` (already on ``device``) for ``iters`` steps on batches drawn from ``x [n, C, H, W]``, labels
    ``y [n, H, W]``; the augmentation runs on the CPU (seeded by ``gen``), the network steps on ``device``."""
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=iters, pct_start=0.1)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    losses = []
    net.train()
    t0 = time.time()
    for it in range(iters):
        idx = torch.randint(0, len(xt), (cfg.batch,), generator=gen)
        xb, yb = augment(xt[idx], yt[idx], out_px, gen, max_shift_px, cfg=cfg, tissue_masks=tissue_masks)
        loss = ce_dice_loss(net(xb.to(device)), yb.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (it + 1) % 100 == 0:
            logger.info("%s iter %d/%d loss %.4f (%.0f s)", name, it + 1, iters, np.mean(losses[-100:]), time.time() - t0)
    net.eval()
    return losses


# --------------------------------------------------------------------------- metrics


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * (a & b).sum() / s)


def mean_boundary_distance_mm(a: np.ndarray, b: np.ndarray, spacing_ij: tuple[float, float]) -> float:
    """Symmetric mean distance (mm) between the boundaries of two 2D masks ``[j, i]``; NaN if one is empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if not a.any() or not b.any():
        return float("nan")
    samp = (spacing_ij[1], spacing_ij[0])
    ba = a & ~ndimage.binary_erosion(a)
    bb = b & ~ndimage.binary_erosion(b)
    da = ndimage.distance_transform_edt(~bb, sampling=samp)[ba]
    db = ndimage.distance_transform_edt(~ba, sampling=samp)[bb]
    return float((da.sum() + db.sum()) / (len(da) + len(db)))


def evaluate_cases(model: ps.PerfusionModel, cases: list[Case], tta: bool = True) -> dict:
    """Dice / mean boundary distance of the full pipeline (localiser + segmenter, raw per-frame
    labels) on every labelled frame of the given series; ``tta`` as in :func:`ps.segment_series`.

    A series in which the model finds no LV (:class:`~CardiacLandmarksLib.core.errors.PerfusionInputError` from
    :func:`ps.segment_series`, as an undertrained model can give) is scored as an empty prediction (Dice 0, boundary
    distance NaN) and named with the reason in ``not_segmented`` (present only then), so a training run or the
    suite reports it instead of stopping."""
    from CardiacLandmarksLib.core.errors import PerfusionInputError

    rows, failed = [], {}
    for case in cases:
        frames, gt, sp = load_case(case)
        try:
            raw = ps.segment_series(model, frames, sp, tta=tta).raw_labels
        except PerfusionInputError as e:
            raw, failed[case.series] = np.zeros(gt.shape, np.uint8), str(e)
        for t in np.nonzero(gt.reshape(len(gt), -1).max(1) > 0)[0]:
            pred = raw[t]
            rows.append({
                "series": case.series, "frame": int(t),
                "dice_myo": dice(pred == 1, gt[t] == 1), "dice_bp": dice(pred == 2, gt[t] == 2),
                "mbd_myo_mm": mean_boundary_distance_mm(pred == 1, gt[t] == 1, sp),
                "mbd_bp_mm": mean_boundary_distance_mm(pred == 2, gt[t] == 2, sp),
            })
    out: dict = {"n_frames": len(rows), "n_series": len({r["series"] for r in rows})}
    for k in ("dice_myo", "dice_bp", "mbd_myo_mm", "mbd_bp_mm"):
        v = np.array([r[k] for r in rows], float)
        with warnings.catch_warnings():  # all NaN (boundary distances of series not segmented): NaN, said once
            warnings.simplefilter("ignore", RuntimeWarning)
            out[k] = {"mean": float(np.nanmean(v)), "sd": float(np.nanstd(v)), "median": float(np.nanmedian(v))}
    per_series: dict = {}
    for r in rows:
        per_series.setdefault(r["series"], []).append(r["dice_myo"])
    out["dice_myo_per_series"] = {k: float(np.mean(v)) for k, v in per_series.items()}
    if failed:
        out["not_segmented"] = failed
    return out


# --------------------------------------------------------------------------- main


def train_perfusion(data: Path, out_dir: Path, cfg: PerfTrainConfig, command: str | None = None,
                    pretrain_root: Path | None = None, device: str = "cpu") -> dict:
    """Train both networks, evaluate on the validation patients, write weights + model card.

    ``command``: the exact command line, recorded in the card (default: the generic retrain line).
    ``pretrain_root``: shared data folder holding the :attr:`PerfTrainConfig.pretrain_sets` (default the data root).
    ``device``: ``"cpu"``, ``"cuda"`` or ``"auto"`` (:func:`CardiacLandmarksLib.models.loader.choose_device`): where
    the networks train and are validated; the samples and their augmentation stay on the CPU, and the weights are
    saved as CPU tensors, so a model trained on a GPU loads anywhere. Results differ from a CPU run's by float
    rounding.

    Raises:
        CardiacLandmarksError: ``device`` is ``"cuda"`` without a usable GPU (before any data is read).
    """
    from CardiacLandmarksLib.models.loader import choose_device

    device = choose_device(device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    t_start = time.time()
    cases = mlperf_cases(data)
    if not cases:
        raise FileNotFoundError(f"no mlperf image + _gt pairs found in {data}")
    train_p, val_p = config_split(cfg, [c.patient for c in cases])
    train_c = [c for c in cases if c.patient in train_p]
    val_c = [c for c in cases if c.patient in val_p]
    logger.info("train patients %s (%d series), val patients %s (%d series)", train_p, len(train_c), val_p, len(val_c))
    samples = build_samples(train_c, cfg)
    logger.info("samples: localiser %d, segmenter %d (%.0f s)", len(samples["loc_x"]), len(samples["seg_x"]), time.time() - t_start)
    pre = pretrain_samples(Path(pretrain_root or data_root()), cfg) if cfg.pretrain_sets.strip() else None
    config = asdict(cfg)
    loc, seg = ps.build_networks(config)
    loc, seg = loc.to(device), seg.to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    if cfg.localiser_from:
        loc.load_state_dict(torch.load(cfg.localiser_from, map_location=device, weights_only=True)["localiser"])
        loc.eval()
        loc_loss: list[float] = []
    else:
        loc_loss = _train_net(loc, samples["loc_x"], samples["loc_y"], ps.LOC_PX, cfg.loc_iters, cfg, gen,
                              max_shift_px=40.0 / ps.LOC_MM, name="localiser", tissue_masks=False, device=device)
    if pre is not None:
        n_rep = max(1, int(round(cfg.pretrain_mix / (1 - cfg.pretrain_mix) * len(pre[0]) / len(samples["seg_x"]))))
        samples["n_pretrain"] = len(pre[0])
        logger.info("segmenter pretraining: %d cine / LGE slices + perfusion frames x%d", len(pre[0]), n_rep)
        _train_net(seg, np.concatenate([pre[0]] + [samples["seg_x"]] * n_rep),
                   np.concatenate([pre[1]] + [samples["seg_y"]] * n_rep), ps.SEG_PX, cfg.pretrain_iters, cfg, gen,
                   max_shift_px=cfg.max_shift_mm / ps.SEG_MM, name="segmenter pretraining", device=device)
    seg_loss = _train_net(seg, samples["seg_x"], samples["seg_y"], ps.SEG_PX, cfg.seg_iters, cfg, gen,
                          max_shift_px=cfg.max_shift_mm / ps.SEG_MM, name="segmenter", device=device)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{ps.MODEL_STEM}.pt"
    tmp = weights.with_suffix(".tmp")
    torch.save({"localiser": _cpu_state(loc), "segmenter": _cpu_state(seg), "config": config}, tmp)
    tmp.replace(weights)
    train_seconds = time.time() - t_start
    model = ps.PerfusionModel(localiser=loc, segmenter=seg, card={"input": {"flip_tta": card_flips(cfg)}},
                              sha256="", device=device)
    metrics = evaluate_cases(model, val_c)
    logger.info("validation: %s", json.dumps({k: v for k, v in metrics.items() if k != "dice_myo_per_series"}))
    if cfg.flip_tta:
        plain = evaluate_cases(model, val_c, tta=False)
        metrics["without_tta"] = {k: plain[k] for k in ("dice_myo", "dice_bp")}
    card = make_card(cfg, train_p, val_p, train_c, val_c, samples, metrics, loc, seg, weights, train_seconds,
                     loc_loss, seg_loss, device)
    if command:
        card["retrain"] = command
    atomic_write_text(out_dir / f"{ps.MODEL_STEM}.json", dumps_strict(card) + "\n")
    atomic_write_text(out_dir / f"{ps.MODEL_STEM}.md", render_card_markdown(card))
    return card


def _augmentation_text(cfg: PerfTrainConfig) -> str:
    geo = "rotation 0-360 deg, mirror, scale 0.85-1.2, shift"
    if not cfg.domain_randomisation:
        return geo + ", gamma/gain/noise"
    return (geo + "; domain randomisation (augment.domain_randomise, series intensity scale kept: normalise=False): "
            f"per-tissue intensity remapping from the expert mask (SynthSeg-style, segmenter only, p {cfg.p_tissue}), "
            f"monotone random contrast curve (p 0.7), smooth bias field (p {cfg.p_bias}), in-plane resolution "
            f"(p {cfg.p_resolution}), Gibbs ringing (p {cfg.p_ringing}), blur (p 0.3), Rician-like noise; no "
            "slice-thickness mixing or coil-shading correction (the channels are time frames); then gain 0.8-1.25")


def _provenance(weights: str) -> str:
    """``weights`` plus the name, version and SHA256 of the card beside it (the file may be replaced later)."""
    try:
        card = json.loads(Path(weights).with_suffix(".json").read_text(encoding="utf-8"))
        return f"{weights} ({card['name']} v{card['version']}, SHA256 {card['sha256'][:12]}...)"
    except (OSError, ValueError, KeyError):
        return str(weights)


def _cpu_state(net: torch.nn.Module) -> dict:
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}


def make_card(cfg, train_p, val_p, train_c, val_c, samples, metrics, loc, seg, weights, seconds, loc_loss, seg_loss,
              device: str = "cpu") -> dict:
    return {
        "name": ps.MODEL_STEM,
        "version": VERSION,
        "task": "LV myocardium (1) and LV blood pool (2) segmentation of first-pass perfusion SAX slices (2D+T)",
        "summary": "Two-stage 2D U-Net after Xue et al., Radiology: AI 2020: a localiser on the whole field of view, "
                   "then a segmenter on a crop around the LV with frames around the target frame as channels.",
        "architecture": {
            "localiser": f"UNet2D(in_channels=3, n_classes=2, base={cfg.loc_base}, depth={cfg.loc_depth})",
            "segmenter": f"UNet2D(in_channels={len(ps.SEG_OFFSETS)}, n_classes=3, base={cfg.seg_base}, depth={cfg.seg_depth})",
            "parameters_localiser": count_parameters(loc),
            "parameters_segmenter": count_parameters(seg),
        },
        "input": {
            "localiser_canvas": f"{ps.LOC_PX}x{ps.LOC_PX} px at {ps.LOC_MM} mm/px, centred on the image",
            "localiser_channels": "pre-contrast baseline, frame of peak enhancement, max enhancement over time",
            "segmenter_canvas": f"{ps.SEG_PX}x{ps.SEG_PX} px at {ps.SEG_MM} mm/px, centred on the LV",
            "segmenter_channels": f"frames t{list(ps.SEG_OFFSETS)} (clamped)",
            "intensity": "divided by the 99.5th percentile of the temporal maximum image",
            "labels": {"0": "background", "1": "LV myocardium", "2": "LV blood pool"},
            "flip_tta": card_flips(cfg),
        },
        "training": {
            "data": "perfusion/mlperf (Martin-Isla et al., cmartin-isla/ML-perfusion; research use, not redistributed): "
                    "stress and rest, basal and mid SAX, expert masks on the frames of peak contrast"
                    + (f"; segmenter pretrained on {samples.get('n_pretrain')} cine / LGE slices ({cfg.pretrain_sets}: "
                       "ACDC Bernard et al. 2018, EMIDEC Lalande et al. 2020; LV myocardium and cavity masks, each slice "
                       "repeated in every time channel; their fixed test splits never read)" if cfg.pretrain_sets else "")
                    + (f"; localiser reused from {_provenance(cfg.localiser_from)}, not retrained" if cfg.localiser_from else ""),
            "split": "by patient, seeded",
            "train_patients": train_p,
            "val_patients": val_p,
            "n_train_series": len(train_c),
            "n_val_series": len(val_c),
            "n_train_frames": int(len(samples["seg_x"])),
            "augmentation": _augmentation_text(cfg),
            "loss": "cross-entropy + soft Dice",
            "config": asdict(cfg),
            "seconds": round(seconds, 1),
            "device": f"{device}, {cfg.threads} CPU thread(s)" if device != "cpu" else f"cpu, {cfg.threads} thread(s)",
            "final_loss": {"localiser": float(np.mean(loc_loss[-50:])) if loc_loss else None,
                           "segmenter": float(np.mean(seg_loss[-50:]))},
        },
        "validation": {
            "protocol": "full pipeline (localiser -> crop -> segmenter) on every labelled frame of the validation "
                        "patients' series; raw per-frame network output vs expert mask on the input grid",
            **metrics,
        },
        "retrain": "nice -n 10 python -m CardiacLandmarksLib.training.train_perfusion --data <data>/perfusion/mlperf "
                   "--out Resources/Models  (seed and iterations in the config above)",
        "sha256": sha256_file(weights),
        "references": [
            "Xue H, et al. Automated inline analysis of myocardial perfusion MRI with deep learning. Radiol Artif Intell 2020.",
            "Martin-Isla C, et al. ML-perfusion data (github.com/cmartin-isla/ML-perfusion).",
        ],
    }


def render_card_markdown(card: dict) -> str:
    from CardiacLandmarksLib.evaluation.suite import card_section

    v = card["validation"]
    tr = card["training"]
    lines = [
        f"# Model card: {card['name']} v{card['version']}", "", card["summary"], "",
        f"**Task**: {card['task']}", "",
        "## Architecture", "",
        *[f"- {k}: {val}" for k, val in card["architecture"].items()], "",
        "## Input", "", *[f"- {k}: {val}" for k, val in card["input"].items()], "",
        "## Training data and split", "",
        f"- Data: {tr['data']}",
        f"- Split {tr['split']} (seed {tr['config']['seed']}): training patients {', '.join(tr['train_patients'])} "
        f"({tr['n_train_series']} series, {tr['n_train_frames']} labelled frames); validation patients "
        f"{', '.join(tr['val_patients'])} ({tr['n_val_series']} series).",
        f"- Augmentation: {tr['augmentation']}; loss: {tr['loss']}.",
        f"- Trained on {tr['device']} in {tr['seconds'] / 60:.1f} min; hyper-parameters `{json.dumps(tr['config'])}`.",
        "", "## Validation (patients never seen in training)", "", v["protocol"] + ".", "",
        "| metric | mean | sd | median |", "|---|---|---|---|",
    ]
    for k in ("dice_myo", "dice_bp", "mbd_myo_mm", "mbd_bp_mm"):
        lines.append(f"| {k} | {v[k]['mean']:.3f} | {v[k]['sd']:.3f} | {v[k]['median']:.3f} |")
    plain = v.get("without_tta")
    lines += ["", f"{v['n_frames']} frames from {v['n_series']} series. Mean myocardium Dice per series: "
              + ", ".join(f"{s} {d:.3f}" for s, d in v["dice_myo_per_series"].items()) + ".",
              *(["", f"Figures with the card's mirror test-time augmentation of the segmenter (input.flip_tta "
                 f"{card['input'].get('flip_tta')}: mean softmax of the crop and its mirrors); one plain pass "
                 f"(`segment_series(..., tta=False)`): myocardium Dice {plain['dice_myo']['mean']:.3f}, blood pool "
                 f"{plain['dice_bp']['mean']:.3f}."] if plain else []),
              "", "Paper (Xue et al. 2020, far larger training set): myocardium Dice 0.93.",
              "", "## Limitations", "",
              "- Trained on 8 patients from one public set (one vendor/site); validated on 3. Expect lower accuracy on "
              "other scanners, and check every result visually.",
              "- Rigid in-plane motion only (per-frame translation of the reference mask).",
              *(["", "## Notes", "", *[f"- **{k}**: {text}" for k, text in card["notes"].items()]]
                if card.get("notes") else []),
              *(["", "## Evaluation suite", "", card_section(card["suite"]).strip()] if card.get("suite") else []),
              "", "## How to retrain", "", f"`{card['retrain']}`", "",
              "## Integrity", "", f"SHA256 of `{card['name']}.pt`: `{card['sha256']}` (checked on every load).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="mlperf folder (default <data root>/perfusion/mlperf)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "Resources" / "Models")
    ap.add_argument("--seed", type=int, default=PerfTrainConfig.seed)
    ap.add_argument("--seg-iters", type=int, default=PerfTrainConfig.seg_iters)
    ap.add_argument("--loc-iters", type=int, default=PerfTrainConfig.loc_iters)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"),
                    help="where the networks train: cpu (default, as the bundled model was trained), cuda, or auto "
                         "(cuda when a GPU is usable)")
    ap.add_argument("--seg-base", type=int, default=PerfTrainConfig.seg_base, help="segmenter U-Net base width")
    ap.add_argument("--split-seed", type=int, default=None,
                    help="seed of the patient split (default: --seed); keep 0 to keep v1.0.0's validation patients")
    ap.add_argument("--pretrain-sets", default="",
                    help="pretrain the segmenter on these cine / LGE sets first, e.g. 'acdc,emidec' (their LV myocardium "
                         "and cavity masks, test splits never read; default: none, perfusion only)")
    ap.add_argument("--pretrain-iters", type=int, default=PerfTrainConfig.pretrain_iters)
    ap.add_argument("--localiser-from", default=None,
                    help="reuse the localiser of this perfusion_unet.pt instead of training one")
    ap.add_argument("--flip-tta", action=argparse.BooleanOptionalAction, default=PerfTrainConfig.flip_tta,
                    help="card enables mirror test-time augmentation of the segmenter (input.flip_tta; default on)")
    ap.add_argument("--domain-randomisation", action=argparse.BooleanOptionalAction,
                    default=PerfTrainConfig.domain_randomisation,
                    help="augment.domain_randomise in the segmenter's intensity scale instead of the plain "
                         "gamma/gain/noise (the v1.0.0 recipe, default)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = PerfTrainConfig(seed=args.seed, split_seed=args.split_seed, seg_iters=args.seg_iters, loc_iters=args.loc_iters,
                          seg_base=args.seg_base,
                          threads=args.threads, pretrain_sets=args.pretrain_sets, pretrain_iters=args.pretrain_iters,
                          localiser_from=args.localiser_from, flip_tta=args.flip_tta,
                          domain_randomisation=args.domain_randomisation)
    data = args.data or (data_root() / "perfusion" / "mlperf")
    import shlex
    import sys

    command = "nice -n 10 python -m CardiacLandmarksLib.training.train_perfusion " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    card = train_perfusion(data, args.out, cfg, command=command, device=args.device)
    print(json.dumps(card["validation"], indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
