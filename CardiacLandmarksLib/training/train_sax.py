"""Train the SAX landmark heatmap U-Net (A-RVI, I-RVI, C-LV) on real labelled stacks.

Method after Xue et al., Radiology: AI 2021: canvas images at a fixed mm grid, one Gaussian
heatmap class per landmark + background, softmax + KL + soft-Dice loss, slices without a
landmark teach "not present". Labels are derived from expert masks (:mod:`..labels`).

Since v1.2 the network also has a segmentation head (background, RV cavity, LV myocardium, LV
cavity; cross-entropy + soft Dice) trained on the same expert masks: dense supervision of the
anatomy the insertion points are defined on, and a second, rule-based estimate of the points
(Xue et al., Radiology: AI 2020; :mod:`..rvi_segmentation`). How much of that estimate is mixed
into each landmark's position is chosen on the validation patients (card ``segmentation_fusion``).
Reproducible from a seed; runs on a 2-core CPU within the hour, faster on a GPU.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from CardiacLandmarksLib.core.errors import CardiacLandmarksError, InputNotFoundError
from CardiacLandmarksLib.core.preprocessing import CANVAS_MM, CANVAS_PX
from CardiacLandmarksLib.datasets.sax import (
    SAX_NAMES,
    SEG_CLASSES,
    SampleSet,
    acdc_cases,
    build_samples,
    development_split,
    paired_cases,
    split_by_patient,
)
from CardiacLandmarksLib.datasets.splits import is_test_case
from CardiacLandmarksLib.io.atomic import atomic_write_text
from CardiacLandmarksLib.io.jsonsafe import dumps_strict
from CardiacLandmarksLib.models.decoding import decode_heatmaps
from CardiacLandmarksLib.models.loader import sha256_file
from CardiacLandmarksLib.models.unet import UNet2D, base_of, count_parameters, transfer_state, widened_to
from CardiacLandmarksLib.sax.presence import (
    MAX_CLV_STACK_JUMP_MM,
    MIN_LV_AREA_MM2,
    calibrate_pair_threshold,
    decide_presence,
    youden_threshold,
)
from CardiacLandmarksLib.sax.rvi_segmentation import (
    fuse_positions,
    landmarks_from_segmentation,
    lv_cavity_area_mm2,
)
from CardiacLandmarksLib.training.augment import domain_randomise, random_affine_batch, random_intensity
from CardiacLandmarksLib.training.losses import (
    gaussian_targets,
    partial_kl_dice_loss,
    partial_segmentation_loss,
    presence_loss,
)
from CardiacLandmarksLib.training.model_card import (
    SAX_BUNDLE_TARGETS,
    bundle_verdict,
    write_markdown,
)

logger = logging.getLogger(__name__)
#: progress lines for a person (the CLI prints them; see CardiacLandmarksLib.cli.main)
PROGRESS = logging.getLogger("CardiacLandmarksLib.progress")

RETRAIN_TEXT = """
v1.7.0 is the midpoint (alpha 0.5) in weight space (WiSE-FT, Wortsman et al., CVPR 2022) between v1.3.1 and a
fine-tune of v1.3.1 by v1.4.0's recipe with the presence loss added (`losses.presence_loss`, weight 1):
`OMP_WAIT_POLICY=PASSIVE cardiac-landmarks train --view sax --epochs 16 --seed 0 --threads 2 --device cpu --base-channels 8 --lr 1e-3 --init-weights v131/sax_unet.pt --presence-weight 1 -o pres`
(26 min on the 2-core machine; v131 as below), then
`cardiac-landmarks train --view sax --interpolate v131/sax_unet.pt pres/sax_unet.pt --alpha 0.5 --model-version 1.7.0 -o runs/sax17`
(a minute for the calibration; same choice and calibration patients as v1.4.0 and v1.5.0).
v1.5.0 (bundled before) is the same midpoint with v1.4.0:
`mkdir v140 && git show e4ba794:Resources/Models/sax_unet.pt > v140/sax_unet.pt && git show e4ba794:Resources/Models/sax_unet.json > v140/sax_unet.json`,
then `cardiac-landmarks train --view sax --interpolate v131/sax_unet.pt v140/sax_unet.pt --alpha 0.5 --model-version 1.5.0 -o runs/sax15`
(alpha was chosen among 0.25 / 0.5 / 0.75 on the choice patients).
`sax_unet_lge` v1.4.1 (LGE and perfusion series) is v1.4.0's weights re-calibrated with the same rules:
`cp -r v140 runs/lge && python -c "from CardiacLandmarksLib.training.train_sax import recalibrate; recalibrate('runs/lge/sax_unet.pt', DATA)"`,
then the files renamed `sax_unet_lge.*` with the card's `name`, `version` and `sequences` set, and
`cardiac-landmarks models --refresh`.
v1.4.0 was fine-tuned from v1.3.1:
`mkdir v131 && git show 252eb5b:Resources/Models/sax_unet.pt > v131/sax_unet.pt && git show 252eb5b:Resources/Models/sax_unet.json > v131/sax_unet.json`, then
`OMP_WAIT_POLICY=PASSIVE cardiac-landmarks train --view sax --epochs 16 --seed 0 --threads 2 --device cpu --base-channels 8 --lr 1e-3 --init-weights v131/sax_unet.pt -o runs/sax`
(24 min on the 2-core machine; the starting model's card must lie beside it: its training patients are kept out of
the choice and calibration sets, which are then its validation patients). Without `--init-weights` the same recipe
trains from scratch and splits every set three ways (below). It reads `$CARDIAC_LANDMARKS_DATA/acdc` (or `--data FOLDER` of `NAME.nii.gz` + `NAME_gt.nii.gz` pairs
with ACDC labels 1 = RV, 2 = myocardium, 3 = LV cavity) and, beside it, `lge/emidec` (EMIDEC LGE) and
`perfusion/mlperf` (the perfusion U-Net's training patients' frames at peak contrast); `--sets acdc` trains on
cine only. The fixed test splits (ACDC 20 patients, EMIDEC 20 cases; `datasets.splits`) are left out; of the
other patients of each set 80% (EMIDEC 90%) train, and the rest is halved by patient into a *choice* set (epoch,
segmentation shares) and a *calibration* set (presence and high/low thresholds, the card's validation figures).
Input: the slice and its two stack neighbours (`--no-context`: the slice alone). Augmentation: rotation, scale,
shift, mirror (A/I-RVI names swapped), then domain randomisation (`training.augment.domain_randomise`;
`--no-domain-randomisation` for the plain gamma/contrast/noise/blur of v1.3). Losses: KL + soft Dice on the
heatmaps, cross-entropy + soft Dice on the segmentation, both marginal where a set has no RV label.
Writes `sax_unet.pt`, `sax_unet.json`, `sax_unet.md`; copy them into `Resources/Models/` to bundle them (the
SHA256 in the card and in `catalogue.json` is checked on load). On a CPU the result depends on the thread count
through float rounding. `OMP_WAIT_POLICY=PASSIVE` only matters when other jobs share the cores (OpenMP threads
that spin while waiting slow down several-fold then); it does not change the result.
`python -c "from CardiacLandmarksLib.training.train_sax import recalibrate; recalibrate('runs/sax/sax_unet.pt', DATA)"`
recomputes the thresholds and shares for saved weights. After replacing the U-Net, re-calibrate the PHD-Net flags
for it: `python -m CardiacLandmarksLib.training.train_phdnet --recalibrate --out Resources/Models` (PHD-Net itself
is not retrained). Recipes of earlier versions: `--sets acdc --no-context --no-domain-randomisation
--base-channels 8 --epochs 90` is v1.3.1's (which also chose and calibrated on one set of validation patients).
"""

LABEL_RULE_TEXT = """
No set carries expert landmark coordinates; labels come from the expert masks
(`CardiacLandmarksLib/labels.py`): C-LV = LV cavity centroid; RV insertion points = the two ends of the
arc along which the RV cavity touches the LV myocardium seen from C-LV (mean of the contact pixels within
4 degrees of each end). A-RVI/I-RVI: ACDC has no patient orientation, so the stored display convention is
used (RV on the viewer's left, anterior at the top; chirality rule, so in-plane rotation keeps the names
and a mirror swaps them). At inference, images with real orientation are resampled to the same anatomical
display (head up), and A-RVI is finally the insertion nearer the patient's head. Slices with no LV cavity have no landmark,
slices where the RV does not touch the myocardium have no RV insertion: the model learns "absent".
"""


#: version written into the card of a model trained by :func:`train_sax`
MODEL_VERSION = "1.4.0"
#: default version written into the card of a model made by :func:`interpolate_sax` (the bundled cine model's)
INTERPOLATED_VERSION = "1.7.0"


@dataclass
class TrainConfig:
    """Hyper-parameters (all stored in the checkpoint and model card)."""

    epochs: int = 30
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    base_channels: int = 8
    depth: int = 4
    crop_px: int = 144
    sigma_px: float = 2.5
    val_fraction: float = 0.2
    seed: int = 0
    threads: int = 2
    init_weights: str | None = None  # continue from a checkpoint (fine-tuning)
    split_seed: int | None = None  # seed of the patient split (None = seed); another seed then only changes order/augmentation
    seg_weight: float = 2.0  # weight of the segmentation head's loss; 0 = heatmap-only model (v1.1 and before)
    ema_decay: float = 0.998  # per-step exponential moving average of the weights, validated and kept instead of them; 0 = off
    # since v1.4 (issue 16): stack context, more sequences, domain randomisation, disjoint choice / calibration sets
    context: bool = True  # input = the slice and its two stack neighbours (3 channels); False = the slice alone
    sets: str = "acdc,emidec,perfusion"  # labelled sets: ACDC cine (or --data), EMIDEC LGE, mlperf perfusion frames
    domain_randomisation: bool = True  # augment.domain_randomise instead of the plain intensity augmentation
    context_dropout: float = 0.15  # share of training samples shown without neighbours (single-slice series)
    holdout_fraction: float = 0.2  # patients held out of training, halved into choice and calibration sets
    validate_from: float = 0.4  # validate (and so possibly keep) the weights from this share of the epochs on
    # since v1.6 (issue 16): MS-CMRSeg LGE (5 subjects, full labels) trains only, each stack shown `mscmr_repeat` times
    # per epoch; `leave_out` (comma-separated patient ids) keeps patients out of training (leave-one-out folds)
    mscmr_repeat: int = 8
    leave_out: str = ""
    # issue 16, thirteenth pass: weight of losses.presence_loss (BCE of each heatmap peak against presence); 0 = off
    presence_weight: float = 0.0
    # the label values of a --data folder's masks ("rv=1,myo=2,lv=3"; "" = ACDC's): a site's own masks
    labels: str = ""


def _labelled_cases(data: Path, labels: str = "") -> list:
    """The labelled stacks of ``data`` (ACDC layout, else ``NAME`` + ``NAME_gt`` pairs with the mask values
    ``labels``, ``"rv=1,myo=2,lv=3"``, ACDC's by default; :func:`CardiacLandmarksLib.sax.labels.parse_labels`).

    Raises:
        InputNotFoundError: no such folder, or no labelled stack in it.
        LabelConventionError: a user's mask does not follow the label values (checked before any training).
    """
    from CardiacLandmarksLib.datasets.sax import check_case_labels, is_acdc_folder
    from CardiacLandmarksLib.sax.labels import parse_labels

    data = Path(data)
    if not data.is_dir():
        raise InputNotFoundError(f"training data folder {data} not found (set CARDIAC_LANDMARKS_DATA or pass --data)")
    cases = acdc_cases(data) if is_acdc_folder(data) else paired_cases(data, parse_labels(labels))
    if not cases:
        raise InputNotFoundError(f"no labelled stacks (image + *_gt mask) found in {data}")
    check_case_labels(cases)
    return cases


def _train_val(data: Path, cfg: TrainConfig):
    return development_split(_labelled_cases(data, cfg.labels), cfg.val_fraction, cfg.seed if cfg.split_seed is None else cfg.split_seed)


def _extra_sets(data: Path, cfg: TrainConfig) -> dict[str, list]:
    """The partially labelled sets of ``cfg.sets`` found beside the ACDC folder (``data/../lge/emidec``,
    ``data/../perfusion/mlperf``); a set that is not there is logged and left out."""
    from CardiacLandmarksLib.datasets.sax import emidec_cases, mlperf_sax_cases, mscmr_cases

    wanted = {s.strip() for s in cfg.sets.split(",") if s.strip()}
    root = Path(data).parent
    out = {}
    where = {"emidec": root / "lge" / "emidec", "perfusion": root / "perfusion" / "mlperf", "mscmr": root / "lge" / "mscmr"}
    if "emidec" in wanted:
        folder = where["emidec"]
        out["emidec"] = emidec_cases(folder) if folder.is_dir() else []
    if "perfusion" in wanted:
        folder = where["perfusion"]
        if folder.is_dir():
            # only the perfusion U-Net's training patients, so its validation patients stay unseen by both models
            card = Path(__file__).resolve().parents[2] / "Resources" / "Models" / "perfusion_unet.json"
            keep = json.loads(card.read_text(encoding="utf-8"))["training"]["train_patients"] if card.exists() else None
            out["perfusion"] = mlperf_sax_cases(folder, keep)
        else:
            out["perfusion"] = []
    if "mscmr" in wanted:
        folder = where["mscmr"]
        out["mscmr"] = mscmr_cases(folder) * max(1, cfg.mscmr_repeat) if folder.is_dir() else []
    for name, cases in out.items():
        if not cases:
            logger.warning("training set %s not found at %s (beside the --data folder): left out (--sets acdc trains "
                           "on the --data folder alone)", name, where[name])
    return out


def _init_patients(cfg: TrainConfig) -> set[str]:
    """Patients the checkpoint ``cfg.init_weights`` was trained on (its card's ``training.train_patients``, the
    card being the ``.json`` beside it); empty without a starting checkpoint or card."""
    if not cfg.init_weights:
        return set()
    card = Path(cfg.init_weights).with_suffix(".json")
    if not card.exists():
        if Path(cfg.init_weights).exists():
            return set()  # a checkpoint without a card: nothing known about what it saw
        raise InputNotFoundError(f"the starting checkpoint {cfg.init_weights} is not there (the split depends on its "
                                 "card's training patients; v1.4.0 started from v1.3.1: see the card's 'How to retrain')")
    return set(json.loads(card.read_text(encoding="utf-8")).get("training", {}).get("train_patients", []))


def split_sets(data: Path, cfg: TrainConfig) -> tuple[list, list, list, str]:
    """Training, choice and calibration cases of every set in ``cfg.sets`` (:func:`three_way_split` per set; the
    fixed test splits are never among them). Perfusion frames only train (no RV label to choose or calibrate on).

    With too few patients for disjoint choice and calibration sets (a small ``--data`` folder), the choice
    patients also calibrate; the returned note says so (it goes into the card).
    """
    from CardiacLandmarksLib.datasets.sax import three_way_split

    seed = cfg.seed if cfg.split_seed is None else cfg.split_seed
    left_out = {p.strip() for p in cfg.leave_out.split(",") if p.strip()}
    cases = [c for c in _labelled_cases(data, cfg.labels) if c.patient not in left_out]  # every set: see the loop below
    note = "choice and calibration patients are disjoint"
    seen = _init_patients(cfg)
    try:
        if seen and not any(c.patient in seen for c in cases):
            # fine-tuning on a folder the starting model never saw (a site's own stacks): every patient is unseen,
            # so the folder is split three ways as for a model from scratch (before, all of them went to choice and
            # calibration and the run ended in a traceback with nothing to train on)
            train, choice, calib = three_way_split(cases, cfg.holdout_fraction, seed)
            note += ("; fine-tuned from " + Path(cfg.init_weights).name + ", which trained on none of these patients")
        elif seen:  # fine-tuning: choose and calibrate only on patients the starting model never trained on
            unseen = [c for c in cases if c.patient not in seen and not is_test_case(c.patient)]
            calib, choice = split_by_patient(unseen, 0.5, seed + 1)
            held = {c.patient for c in unseen}
            train = [c for c in cases if c.patient not in held and not is_test_case(c.patient)]
            note += ("; fine-tuned from " + Path(cfg.init_weights).name + ": choice and calibration patients are "
                     "those its starting model did not train on")
            if not (choice and calib):
                raise CardiacLandmarksError("too few patients unseen by the starting model")
        else:
            train, choice, calib = three_way_split(cases, cfg.holdout_fraction, seed)
    except CardiacLandmarksError:
        train, choice = development_split(cases, cfg.val_fraction, seed)
        calib = choice
        note = "too few patients for disjoint sets: the choice patients also calibrate"
    for name, extra in _extra_sets(data, cfg).items():
        extra = [c for c in extra if c.patient not in left_out]
        if not extra:
            continue
        if name in ("perfusion", "mscmr"):  # train only: perfusion has no RV label; MS-CMRSeg is 5 subjects
            train += extra
            continue
        t, ch, ca = three_way_split(extra, cfg.holdout_fraction / 2, seed)
        train, choice, calib = train + t, choice + ch, calib + ca
    return train, choice, calib, note


def predict_probs(model: torch.nn.Module, images: np.ndarray, device: str = "cpu", batch: int = 32,
                  with_segmentation: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Softmax heatmaps ``[n, L+1, H, W]`` for canvas images ``[n, H, W]`` (or ``[n, C, H, W]`` with stack context).

    With a segmentation head (output channels beyond ``L + 1``) and ``with_segmentation``, also
    its softmax ``[n, 4, H, W]`` (:data:`SEG_CLASSES`), returned second.
    """
    model.eval()
    n_heat = len(SAX_NAMES) + 1
    heat, seg = [], []
    with torch.inference_mode():
        for s in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[s : s + batch]))
            x = (x[:, None] if x.ndim == 3 else x).to(device)
            logits = model(x.contiguous(memory_format=torch.channels_last))
            heat.append(torch.softmax(logits[:, :n_heat], 1).float().cpu().numpy())
            if with_segmentation and logits.shape[1] > n_heat:
                seg.append(torch.softmax(logits[:, n_heat:], 1).float().cpu().numpy())
    heat = np.concatenate(heat)
    if with_segmentation:
        return heat, (np.concatenate(seg) if seg else None)
    return heat


def validation_metrics(probs: np.ndarray, samples: SampleSet, found_threshold: float | list[float],
                       xy: np.ndarray | None = None, pair_threshold: float | None = None,
                       lv_area_mm2: np.ndarray | None = None, min_lv_area_mm2: float | None = None) -> dict:
    """Detection rate, false-positive rate and L2 error (mm) per landmark on canvas samples.

    Presence comes from the heatmap peaks (:func:`CardiacLandmarksLib.sax.presence.decide_presence`: the RV
    insertions as a pair when ``pair_threshold`` is given, C-LV on a segmented LV cavity of at least
    ``min_lv_area_mm2`` when ``lv_area_mm2 [n]`` is given); positions too unless ``xy [n, L, 2]`` (e.g. fused with
    the segmentation estimate, :func:`CardiacLandmarksLib.sax.rvi_segmentation.fuse_positions`) is given.
    """
    heat_xy, peak = decode_heatmaps(probs)
    xy = heat_xy if xy is None else xy
    found = decide_presence(peak, SAX_NAMES, np.broadcast_to(np.asarray(found_threshold, float), (peak.shape[1],)),
                            pair_threshold, lv_area_mm2, min_lv_area_mm2)
    res = {}
    known = samples.labelled()
    for n, name in enumerate(SAX_NAMES):
        pres = samples.present[:, n] & known[:, n]
        absent = ~samples.present[:, n] & known[:, n]
        err = np.linalg.norm(xy[:, n] - samples.points[:, n], axis=-1) * CANVAS_MM
        hit = pres & found[:, n]
        res[name] = {
            "n_present": int(pres.sum()),
            "detection_rate": float(hit.sum() / max(1, pres.sum())),
            "false_positive_rate": float((found[:, n] & absent).sum() / max(1, absent.sum())),
            "mean_error_mm": float(err[hit].mean()) if hit.any() else float("nan"),
            "sd_error_mm": float(err[hit].std()) if hit.any() else float("nan"),
            "median_error_mm": float(np.median(err[hit])) if hit.any() else float("nan"),
        }
    return res


def calibrate_found_threshold(probs: np.ndarray, samples: SampleSet, min_detection: float | None = 0.95) -> list[float]:
    """Per-landmark presence threshold on the peak probability (samples whose labels cannot tell the landmark,
    :meth:`SampleSet.labelled`, left out).

    Default: among thresholds that keep the detection rate (found / present) at or above ``min_detection``, the
    one with the best Youden index (TPR + TNR - 1), so the model says "absent" as often as it can without
    missing more than 5% of real landmarks. ``min_detection=None``: the threshold with the most right
    present/absent answers (TP + TN); with few absent examples (a small calibration set has few slices outside
    the LV) it drifts to the lowest threshold tried, which is why it is not the default.
    """
    _, peak = decode_heatmaps(probs)
    known = samples.labelled()
    out = []
    for n in range(peak.shape[1]):
        if min_detection is None:
            k = known[:, n]
            pres, pk = samples.present[k, n], peak[k, n]
            grid = np.linspace(0.05, 0.8, 31)
            right = [int(((pk >= t) == pres).sum()) for t in grid]
            out.append(float(grid[int(np.argmax(right))]) if k.any() else 0.3)
            continue
        k = known[:, n]
        out.append(youden_threshold(peak[k, n], samples.present[k, n], min_detection) if k.any() else 0.3)
    return out


def calibrate_high_threshold(probs: np.ndarray, samples: SampleSet, found_t: list[float],
                             xy: np.ndarray | None = None) -> list[float]:
    """Per-landmark high/low threshold on the peak probability by the rule of Schobs et al. (PHD-Net, ISBI 2021):
    error-weighted mean peak of the 10% least accurate validation detections
    (:func:`CardiacLandmarksLib.confidence.phdnet.calibrate_threshold`)."""
    from CardiacLandmarksLib.confidence.phdnet import calibrate_threshold

    heat_xy, peak = decode_heatmaps(probs)
    xy = heat_xy if xy is None else xy  # positions as shipped (e.g. fused with the segmentation)
    err = np.linalg.norm(xy - samples.points, axis=-1) * CANVAS_MM
    out = []
    for n, t in enumerate(found_t):
        hit = samples.present[:, n] & samples.labelled()[:, n] & (peak[:, n] >= t)
        out.append(max(t, calibrate_threshold(peak[hit, n], err[hit, n])) if hit.any() else t)
    return out


def train_sax(data: Path, out_dir: Path, cfg: TrainConfig, device: str = "cpu", progress: bool = True,
              version: str | None = None) -> dict:
    """Train, validate, calibrate and write ``sax_unet.pt`` + model card into ``out_dir``. ``version``: the card's
    model version (default :data:`MODEL_VERSION`, the version this code trains; a site naming its own model, e.g.
    ``1.7.0-site1``, keeps it apart from the bundled releases in every run record).

    Returns the metrics dict written into the card.
    """
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    data, out_dir = Path(data), Path(out_dir)
    t0 = time.time()
    train_cases, val_cases, calib_cases, split_note = split_sets(data, cfg)
    train = build_samples(train_cases, cfg.context)
    val = build_samples(val_cases, cfg.context)
    calib = val if calib_cases is val_cases else build_samples(calib_cases, cfg.context)
    out_dir.mkdir(parents=True, exist_ok=True)  # only now: a refused folder or checkpoint leaves no empty folder

    def _n(cases) -> str:
        n = len({c.patient for c in cases})
        return f"{n} patient{'s' if n != 1 else ''}"

    split_text = (f"training {len(train.images)} slice images ({_n(train_cases)}), model choice {len(val.images)} "
                  f"({_n(val_cases)}), calibration {len(calib.images)} ({_n(calib_cases)}); {split_note}")
    logger.info("%s, built in %.0f s", split_text, time.time() - t0)
    if progress:  # a user training on their own folder sees how it was split before the first epoch
        PROGRESS.info(split_text)
    n_heat = len(SAX_NAMES) + 1
    n_seg = len(SEG_CLASSES) if cfg.seg_weight > 0 else 0
    model = UNet2D(3 if cfg.context else 1, n_heat + n_seg, cfg.base_channels, cfg.depth)
    model.init_background_prior(channel=n_heat - 1)
    if cfg.init_weights:
        load_compatible(model, torch.load(cfg.init_weights, map_location="cpu", weights_only=True)["state_dict"])
    model = model.to(device).to(memory_format=torch.channels_last)  # ~1.5x faster steps on CPU
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = int(np.ceil(len(train.images) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.02)
    gen = torch.Generator().manual_seed(cfg.seed)
    imgs = torch.from_numpy(train.inputs() if cfg.context else train.images[:, None])
    pts = torch.from_numpy(train.points)
    masks = torch.from_numpy(train.masks.astype(np.int64))
    if cfg.context:  # the neighbours' labels too, for the per-tissue intensity remapping
        masks = torch.cat([masks[:, None], torch.from_numpy(train.context_masks.astype(np.int64))], 1)
    known = torch.from_numpy(train.labelled())
    known_cls = torch.from_numpy(train.known_classes)
    ema = None
    if cfg.ema_decay > 0:  # validate and keep an average of the recent weights (BatchNorm statistics included)
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    history = []
    best = (np.inf, None, None)
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(len(imgs), generator=gen)
        losses = []
        batches = range(0, len(perm), cfg.batch_size)
        for s in tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False, file=sys.stderr,
                      disable=not progress):
            b = perm[s : s + cfg.batch_size]
            x, p, m_b = random_affine_batch(imgs[b], pts[b], cfg.crop_px, gen, masks=masks[b])
            if cfg.context:
                x, m_b = _shuffle_context(x, m_b, cfg.context_dropout, gen)
            x = domain_randomise(x, m_b if m_b.ndim == 4 else m_b[:, None], gen) if cfg.domain_randomisation \
                else random_intensity(x, gen)
            m_b = m_b[:, 0] if m_b.ndim == 4 else m_b
            target = gaussian_targets(p, cfg.crop_px, cfg.sigma_px)
            logits = model(x.to(device).contiguous(memory_format=torch.channels_last))
            loss = partial_kl_dice_loss(logits[:, :n_heat], target.to(device), known[b].to(device))
            if cfg.presence_weight > 0:
                present = torch.isfinite(p).all(-1)
                loss = loss + cfg.presence_weight * presence_loss(logits[:, :n_heat], present.to(device),
                                                                  known[b].to(device))
            if n_seg:
                loss = loss + cfg.seg_weight * partial_segmentation_loss(logits[:, n_heat:], m_b.to(device),
                                                                         known_cls[b].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(model)
            losses.append(float(loss.detach()))
        # with EMA only the moving average is validated and kept: in the v1.3.0 run, which validated both, the
        # average scored better in 41 of the last 51 epochs and was kept; validating once saves ~6 s per epoch
        if epoch + 1 < cfg.validate_from * cfg.epochs:  # too early in the schedule to be kept: save time
            logger.info("epoch %d loss %.4f (%.0f s)", epoch + 1, np.mean(losses), time.time() - t0)
            if progress:
                PROGRESS.info(f"epoch {epoch + 1}/{cfg.epochs} loss {np.mean(losses):.4f} ({time.time() - t0:.0f} s)")
            continue
        net, kind = (model, "raw") if ema is None else (ema.module, "ema")
        tag = "ema " if kind == "ema" else ""
        probs, seg = predict_probs(net, val.inputs(), device, with_segmentation=True)
        fw, m = best_fusion_metrics(probs, seg, val, 0.3)
        errors = [m[n]["mean_error_mm"] for n in SAX_NAMES if np.isfinite(m[n]["mean_error_mm"])]
        # an epoch that finds nothing scores worst but still counts, so a short run always keeps a model
        score = (np.mean(errors) if errors else 1e6) + 20 * (1 - np.mean([m[n]["detection_rate"] for n in SAX_NAMES]))
        history.append({"epoch": epoch + 1, "weights": kind, "loss": float(np.mean(losses)),
                        "val_score": float(score), **{f"{n}_err": m[n]["mean_error_mm"] for n in SAX_NAMES}})
        logger.info("epoch %d %sloss %.4f val %s (%.0f s)", epoch + 1, tag, np.mean(losses),
                 {n: round(m[n]["mean_error_mm"], 2) for n in SAX_NAMES}, time.time() - t0)
        if progress:
            PROGRESS.info(f"epoch {epoch + 1}/{cfg.epochs} {tag}loss {np.mean(losses):.4f} val err mm "
                          + " ".join(f"{n}={m[n]['mean_error_mm']:.2f}" for n in SAX_NAMES)
                          + f" det {np.mean([m[n]['detection_rate'] for n in SAX_NAMES]):.3f} seg share {fw} "
                          f"({time.time() - t0:.0f} s)")
        if best[1] is None or score < best[0]:
            best = (score, {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}, {"epoch": epoch + 1, "weights": kind})
        _save(model.state_dict(), cfg, out_dir / "sax_unet.pt")  # latest, so a usable model exists early
    model.load_state_dict(best[1])
    weights = out_dir / "sax_unet.pt"
    _save(model.state_dict(), cfg, weights)
    training = {"train_patients": sorted({c.patient for c in train_cases}), "n_train_samples": len(train.images),
                "n_train_samples_by_sequence": {k: train.kinds.count(k) for k in sorted(set(train.kinds))},
                "device": device, "seconds": round(time.time() - t0), "kept": best[2], "history": history,
                "calibration_patients": sorted({c.patient for c in calib_cases}), "split_note": split_note,
                "data": training_data_text(cfg, train_cases + val_cases + calib_cases, data),
                "licence": training_licence(train_cases + val_cases + calib_cases)}
    return finish_card(model, cfg, weights, val_cases, val, training, device, version=version, calib=calib)


def _shuffle_context(x: torch.Tensor, m: torch.Tensor, dropout: float, gen: torch.Generator):
    """Stack-context channels of a training batch ``x [n, 3, H, W]`` (slice, neighbour, neighbour), labels
    ``m [n, 3, H, W]``: the two neighbours swap with p = 0.5 (stacks run base-to-apex or apex-to-base), and with
    p = ``dropout`` both are replaced by the slice itself, as a single-slice series is given at inference."""
    x, m = x.clone(), m.clone()
    swap = torch.rand(len(x), generator=gen) < 0.5
    x[swap] = x[swap][:, [0, 2, 1]]
    m[swap] = m[swap][:, [0, 2, 1]]
    drop = torch.rand(len(x), generator=gen) < dropout
    x[drop, 1:] = x[drop, :1]
    m[drop, 1:] = m[drop, :1]
    return x, m


def finish_card(model: torch.nn.Module, cfg: TrainConfig, weights: Path, val_cases: list, val: SampleSet,
                training: dict, device: str = "cpu", notes: dict[str, str] | None = None,
                version: str | None = None, calib: SampleSet | None = None) -> dict:
    """Calibrate a trained SAX model and write its card next to ``weights``.

    ``val``: the choice samples (epoch and segmentation shares were chosen on them); ``calib``: the calibration
    samples, from other patients (default: ``val``, as up to v1.3), on which the presence and confidence
    thresholds are fitted and the card's ``validation`` figures measured.

    The model is run as it is shipped (:class:`CardiacLandmarksLib.models.loader.LoadedModel`: folded
    BatchNorm, mirror test-time augmentation), so the calibration and the reported metrics are those of
    ``cardiac-landmarks detect``. In order: presence thresholds (:func:`calibrate_found_threshold`),
    segmentation shares (:func:`best_fusion_metrics`), high/low thresholds on the peak
    (:func:`calibrate_high_threshold`, with the fused positions). Writes ``sax_unet.json`` and
    ``sax_unet.md``; returns the card. ``notes``: ``{title: text}`` sections kept in the card and
    rendered into the Markdown (e.g. known limitations). ``version``: the card's model version
    (default :data:`MODEL_VERSION`, the version this code trains).
    """
    import copy

    from CardiacLandmarksLib.models.loader import LoadedModel, prepare_net

    out_dir = Path(weights).parent
    n_heat = len(SAX_NAMES) + 1
    seg_classes = list(SEG_CLASSES) if cfg.seg_weight > 0 else []
    card = {
        "name": "sax_unet",
        "version": version or MODEL_VERSION,
        "view": "sax",
        "landmarks": list(SAX_NAMES),
        "architecture": {"type": "UNet2D", "in_channels": 3 if cfg.context else 1, "n_classes": n_heat,
                         "segmentation_classes": seg_classes,
                         "base_channels": cfg.base_channels, "depth": cfg.depth,
                         "parameters": count_parameters(model)},
        "input": {"canvas_mm": CANVAS_MM, "canvas_px": CANVAS_PX,
                  "intensity": "per-image 1st-99th percentile to [0,1], clipped at 1.5",
                  "mirror_tta": [0, 1]},
    }
    if cfg.context:
        card["input"]["stack_context"] = ("channels: the slice, the slice below, the slice above (same phase, resampled "
                                          "onto the slice's canvas); the slice itself where the stack ends or the "
                                          "series has one slice")
    calib = val if calib is None else calib
    shipped = LoadedModel("sax_unet", card["version"], "", card, device, prepare_net(copy.deepcopy(model), device))
    probs_v, seg_v = shipped.predict_maps(val.inputs(), tta=True)
    probs, seg = (probs_v, seg_v) if calib is val else shipped.predict_maps(calib.inputs(), tta=True)
    found_t = calibrate_found_threshold(probs, calib)
    heat_xy, peak = decode_heatmaps(probs)
    pair_t = calibrate_pair_threshold(peak, calib.present, calib.labelled(), SAX_NAMES)
    # a model choice, so on the choice samples; on their cine part where there is one: the other sets' errors are in
    # nominal mm (EMIDEC has no geometry) or cover C-LV only, and would decide the RVI shares by the C-LV error
    cine = np.array([k == "cine" for k in (val.kinds or ["cine"] * len(val.images))])
    fv = (probs_v, seg_v, val) if not cine.any() or cine.all() else (
        probs_v[cine], None if seg_v is None else seg_v[cine], val.subset(cine))
    fusion, _ = best_fusion_metrics(*fv, found_t)
    seg_xy = landmarks_from_segmentation(seg, tuple(SAX_NAMES))[0] if seg is not None else None
    card["segmentation_fusion"] = dict(zip(SAX_NAMES, fusion))
    xy = heat_xy
    if seg_xy is not None:  # positions as LoadedModel.locate gives them; the rule alone, for the card
        xy = fuse_positions(heat_xy, seg_xy, fusion)
        card["segmentation_estimate"] = {"validation": validation_metrics(probs, calib, found_t, fuse_positions(heat_xy, seg_xy, 1.0)),
                                         "dice": segmentation_dice(seg.argmax(1), calib.masks)}
    area, min_area = (lv_cavity_area_mm2(seg, CANVAS_MM), MIN_LV_AREA_MM2) if seg is not None else (None, None)
    metrics = validation_metrics(probs, calib, found_t, xy, pair_t, area, min_area)
    high_t = calibrate_high_threshold(probs, calib, found_t, xy)
    card.update({
        "thresholds": {"found": dict(zip(SAX_NAMES, found_t)), "high_confidence": dict(zip(SAX_NAMES, high_t)),
                       **({"found_pair": pair_t} if pair_t is not None else {}),
                       **({"min_lv_area_mm2": min_area} if min_area is not None else {}),
                       "max_clv_stack_jump_mm": MAX_CLV_STACK_JUMP_MM},
        **({"licence": training["licence"]} if training.get("licence") else {}),
        "training": {"data": training_data_text(cfg),
                     **{k: v for k, v in training.items() if k not in ("history", "licence")},
                     "val_patients": sorted({c.patient for c in val_cases}), "n_val_samples": len(val.images),
                     "n_calibration_samples": len(calib.images),
                     "config": asdict(cfg), "history": training.get("history", [])},
        "validation": metrics,
        "bundle_verdict": bundle_verdict(metrics, SAX_BUNDLE_TARGETS),
        "notes": dict(notes or {}),
        "sha256": sha256_file(weights),
    })
    atomic_write_text(out_dir / "sax_unet.json", dumps_strict(card))
    write_markdown(card, out_dir / "sax_unet.md", {"How to retrain": RETRAIN_TEXT, "Derived-label rule": LABEL_RULE_TEXT,
                                                   **card["notes"]})
    return card


def training_licence(cases: list) -> str:
    """The terms a model inherits from the data it was trained on (``Case.source`` of its training, choice and
    calibration cases), as the catalogue words them: ``"CC BY-NC-SA 4.0 (ACDC); also trained on EMIDEC LGE and
    mlperf perfusion frames (research use)"``; a site's own stacks: their own terms. Written into the card's
    ``licence``, which ``models --refresh`` copies into the catalogue (the bundled cards have none, and their
    catalogue entries keep theirs)."""
    sources = {c.source for c in cases}
    if "user" in sources:
        return "the terms of the site's own labelled stacks it was trained on (the card's training data), not ACDC's"
    extra = [name for key, name in (("emidec", "EMIDEC LGE"), ("mscmr", "MS-CMRSeg LGE"),
                                    ("perfusion", "mlperf perfusion frames")) if key in sources]
    also = (", ".join(extra[:-1]) + " and " + extra[-1]) if len(extra) > 1 else "".join(extra)
    return "CC BY-NC-SA 4.0 (ACDC)" + (f"; also trained on {also} (research use)" if extra else "")


def training_data_text(cfg: TrainConfig, cases: list | None = None, data: Path | None = None) -> str:
    """The card's one-line description of the training data of ``cfg``.

    Args:
        cfg: the training configuration (its ``sets``, ``mscmr_repeat``, ``leave_out``).
        cases: the cases the run read (training, choice and calibration; ``Case.source`` names their set). With
            them the text names the sets actually read (a set of ``cfg.sets`` missing beside ``data`` was left out
            of the run, and is left out of the text) and a user's folder of labelled pairs as such, not as ACDC.
            None: every set of ``cfg.sets``, as the bundled models were trained (ACDC in the data root).
        data: the ``--data`` folder (named for a user's folder).
    """
    sources = None if cases is None else {c.source for c in cases}
    if sources is not None and "user" in sources:
        users = list({c.image: c for c in cases if c.source == "user"}.values())  # the choice ones may calibrate too
        lab = users[0].labels
        parts = [f"the labelled stacks of {data if data is not None else 'the --data folder'} ({len(users)} image + "
                 f"NAME_gt mask pairs of {len({c.patient for c in users})} patients, the patient being the name "
                 f"without its ED/ES or frame tag; label values: {lab['rv']} RV cavity, {lab['myo']} LV myocardium, "
                 f"{lab['lv']} LV cavity)"]
    else:
        parts = ["ACDC cine (Bernard et al., IEEE TMI 2018; CC BY-NC-SA 4.0), ED/ES stacks"]
    sets = {s.strip() for s in cfg.sets.split(",")} if sources is None else sources
    if "emidec" in sets:
        parts.append("EMIDEC LGE (Lalande et al., Data 2020; research use): LV cavity / myocardium, no RV label, "
                     "so C-LV and LV/myocardium only (partial-label loss)")
    if "perfusion" in sets:
        parts.append("mlperf first-pass perfusion frames at peak contrast (Martin-Isla et al.; the perfusion U-Net's "
                     "training patients only): C-LV and LV/myocardium only")
    if "mscmr" in sets:
        parts.append(f"MS-CMRSeg LGE (Zhuang, MICCAI 2019; research use), all labels, training only, each stack "
                     f"{cfg.mscmr_repeat}x per epoch")
    tests = [name for name, there in (("ACDC 20 patients", "user" not in sets), ("EMIDEC 20 cases", "emidec" in sets))
             if there]
    text = "; ".join(parts) + (f". Fixed test splits ({', '.join(tests)}) never seen." if tests else
                               ". No test split of its own: keep patients out with --leave-out to test on them.")
    if cfg.leave_out.strip():
        text += f" Left out (never seen): {cfg.leave_out}."
    return text


def recalibrate(weights: Path, data: Path, device: str = "cpu") -> dict:
    """Re-run :func:`finish_card` for a saved ``sax_unet.pt`` (its config in the checkpoint gives the
    split); the training record and notes of an existing ``sax_unet.json`` next to it are kept."""
    weights = Path(weights)
    ckpt = torch.load(weights, map_location="cpu", weights_only=True)
    # fields a checkpoint lacks predate them: no segmentation head before v1.2, no weight average before v1.3
    # and no stack context, extra sets or separate calibration patients before v1.4
    cfg = TrainConfig(**{"seg_weight": 0.0, "ema_decay": 0.0, "context": False, "sets": "acdc",
                         "domain_randomisation": False, **ckpt["config"]})
    n_out = len(SAX_NAMES) + 1 + (len(SEG_CLASSES) if cfg.seg_weight > 0 else 0)
    model = UNet2D(3 if cfg.context else 1, n_out, cfg.base_channels, cfg.depth)
    model.load_state_dict(ckpt["state_dict"])
    old = weights.with_suffix(".json")
    old_card = json.loads(old.read_text(encoding="utf-8")) if old.exists() else {}
    drop = ("val_patients", "n_val_samples", "n_calibration_samples", "config", "data")
    training = {k: v for k, v in old_card.get("training", {}).items() if k not in drop}
    if "holdout_fraction" in ckpt["config"]:
        train_cases, val_cases, calib_cases, _ = split_sets(Path(data), cfg)
        val = build_samples(val_cases, cfg.context)
        calib = val if calib_cases is val_cases else build_samples(calib_cases, cfg.context)
    else:  # up to v1.3: one validation set chose and calibrated
        train_cases, val_cases = _train_val(Path(data), cfg)
        calib_cases = val_cases
        calib = val = build_samples(val_cases, cfg.context)
    read = train_cases + val_cases + calib_cases
    if any(c.source == "user" for c in read):  # a site's model: its data and terms, not ACDC's (the default text)
        training.update(data=training_data_text(cfg, read, Path(data)), licence=training_licence(read))
    elif old_card.get("licence"):
        training["licence"] = old_card["licence"]
    return finish_card(model, cfg, weights, val_cases, val, training, device, old_card.get("notes"),
                       old_card.get("version"), calib=calib)


def interpolate_sax(start: Path, finetuned: Path, alpha: float, out_dir: Path, data: Path, device: str = "cpu",
                    version: str = INTERPOLATED_VERSION) -> dict:
    """A SAX model between a fine-tuned checkpoint and the one it was fine-tuned from, calibrated and carded.

    The weights are :func:`CardiacLandmarksLib.models.unet.interpolate_states` (WiSE-FT, Wortsman et al., CVPR
    2022) of ``start`` and ``finetuned`` at ``alpha`` (share of ``finetuned``); the architecture, input and training
    record are ``finetuned``'s, whose card must lie beside it. ``start`` becomes the configuration's starting
    checkpoint, so the choice and calibration patients are those of the fine-tuning (:func:`split_sets`); the
    presence, pair, segmentation-share and high/low thresholds are then fitted anew (:func:`recalibrate`).

    Writes ``sax_unet.pt`` / ``.json`` / ``.md`` into ``out_dir``; returns the card.

    Raises:
        InputNotFoundError: a checkpoint or the fine-tuned model's card is missing.
        ValueError: ``alpha`` outside [0, 1] or checkpoints of different architectures.
    """
    from CardiacLandmarksLib.models.unet import interpolate_states

    start, finetuned, out_dir = Path(start), Path(finetuned), Path(out_dir)
    for f in (start, finetuned, finetuned.with_suffix(".json")):
        if not f.exists():
            raise InputNotFoundError(f"{f} not found (both checkpoints, and the fine-tuned one's card beside it)")
    a = torch.load(finetuned, map_location="cpu", weights_only=True)
    b = torch.load(start, map_location="cpu", weights_only=True)
    config = {**a["config"], "init_weights": str(start)}
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / "sax_unet.pt"
    torch.save({"state_dict": interpolate_states(b["state_dict"], a["state_dict"], float(alpha)), "config": config},
               weights)
    card = json.loads(finetuned.with_suffix(".json").read_text(encoding="utf-8"))
    finetuned_version = card.get("version", "?")
    presence = float(a["config"].get("presence_weight", 0.0) or 0.0)
    card["version"] = version
    card["training"] = {**card.get("training", {}), "config": config,
                        "interpolation": {"method": "WiSE-FT weight-space interpolation (Wortsman et al., CVPR 2022)",
                                          "start": f"{start} ({_card_version(start)})",
                                          "finetuned": f"{finetuned} (v{finetuned_version}"
                                                       + (f" recipe + presence loss, weight {presence:g})" if presence
                                                          else ")"),
                                          "alpha": float(alpha),
                                          "note": "the training record (history, seconds, samples) is the "
                                                  "fine-tuned model's"}}
    card.pop("suite", None)  # figures of another model
    atomic_write_text(out_dir / "sax_unet.json", dumps_strict(card))
    return recalibrate(weights, data, device)


def _card_version(weights: Path) -> str:
    card = Path(weights).with_suffix(".json")
    try:
        return "v" + json.loads(card.read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError):
        return "no card"


FUSION_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def best_fusion_metrics(probs: np.ndarray, seg: np.ndarray | None, samples: SampleSet,
                        found_threshold: float | list[float], seg_xy: np.ndarray | None = None) -> tuple[list[float], dict]:
    """Per landmark, the share of the segmentation-derived position (:data:`FUSION_WEIGHTS`) with the
    lowest mean validation error, and the metrics with it.

    Without a segmentation head the share is 0 (heatmap positions, Xue et al. 2021); otherwise
    the heatmap peak and the derived-label rule on the segmentation (Xue et al. 2020,
    :mod:`CardiacLandmarksLib.sax.rvi_segmentation`) are mixed. Presence always comes from the heatmap.
    ``seg_xy``: the rule's points when the caller already has them.
    """
    heat_only = validation_metrics(probs, samples, found_threshold)
    if seg is None:
        return [0.0] * len(SAX_NAMES), heat_only
    heat_xy, _ = decode_heatmaps(probs)
    if seg_xy is None:
        seg_xy, _ = landmarks_from_segmentation(seg, tuple(SAX_NAMES))
    per_w = {w: validation_metrics(probs, samples, found_threshold, fuse_positions(heat_xy, seg_xy, w)) for w in FUSION_WEIGHTS}
    weights, metrics = [], {}
    for name in SAX_NAMES:
        w = min(FUSION_WEIGHTS, key=lambda w: np.nan_to_num(per_w[w][name]["mean_error_mm"], nan=np.inf))
        weights.append(float(w))
        metrics[name] = per_w[w][name]
    return weights, metrics


def segmentation_dice(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Mean per-slice Dice of each foreground class of :data:`SEG_CLASSES` (slices where either has the class)."""
    out = {}
    for c, name in enumerate(SEG_CLASSES[1:], start=1):
        a, b = pred == c, ref == c
        den = a.sum((-1, -2)) + b.sum((-1, -2))
        ok = den > 0
        out[name] = float(np.mean(2 * (a & b).sum((-1, -2))[ok] / den[ok])) if ok.any() else float("nan")
    return out


class WrongModelError(CardiacLandmarksError, ValueError):
    """A checkpoint given to start training from does not fit the model being trained."""


def load_compatible(model: torch.nn.Module, state: dict) -> None:
    """Load ``state`` into ``model``; an output head with fewer channels (e.g. a heatmap-only
    checkpoint into a model with a segmentation head) fills the first channels only
    (:func:`..models.unet.transfer_state`).

    A ``state`` of a narrower network (the model's base width an integer multiple of the state's) is first widened
    by :func:`..models.unet.widen_state` (Net2WiderNet: the wider model starts computing what the narrow one did).

    Raises:
        WrongModelError: some tensor of the model has no counterpart in ``state`` (another architecture).
    """
    own_base, base = base_of(model.state_dict()), base_of(state)
    if base != own_base:
        logger.info("starting checkpoint of base %d for a base-%d model (widened when a multiple)", base, own_base)
    copied = transfer_state(model, widened_to(state, own_base))
    if copied != len(model.state_dict()):
        raise WrongModelError(f"checkpoint does not fit the model: {copied} of {len(model.state_dict())} tensors match "
                         f"(base channels / depth must be the same)")


def _save(state: dict, cfg: TrainConfig, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": state, "config": asdict(cfg)}, tmp)
    tmp.replace(path)

