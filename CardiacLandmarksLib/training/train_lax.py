"""Train a long-axis landmark heatmap U-Net (two mitral-valve points + APEX) on what exists.

Method after Xue et al., Radiology: AI 2021 (canvas at a fixed mm grid, one Gaussian heatmap
per landmark + background, softmax + KL + soft Dice), **transfer-learned** from the SAX
U-Net (:mod:`..models.unet`; same architecture and output size, every weight copied, then
fine-tuned) with **heavy augmentation** (any in-plane rotation, scale 0.7-1.4, shifts,
gamma / contrast / noise / blur) and **no mirror**.

**Handedness.** A mirror image of a four-chamber view is an anatomy that does not exist (the
LV would lie on the other side of the septum / apex axis). The canvas built from the file
geometry (:func:`..core.preprocessing.make_grid` with ``up=LAX_CANVAS_UP``, anterior) never mirrors: it is always seen from the
patient's feet (the canvas normal points superior), so on every subject with a real affine
the RV lies on the same side of the mitral-midpoint -> apex axis
(:func:`..lax.labels.four_chamber_handedness` = :data:`..lax.labels.CANVAS_4CH_HANDEDNESS`,
checked on M&Ms-2 001 and both UK Biobank subjects on every labelled frame). Version 0.1.0
was trained with ``mirror_prob = 0.5`` (and the hinge names kept), which taught it that both
handednesses exist, so it could not use which side of the septum the LV is on and confused
the LV and RV on an unseen 3 T Siemens 4CH cine; ``mirror_prob`` now defaults to 0. Training
subjects whose mask shows the other handedness on the canvas are left out with a warning.

Training data (honest about how little there is):

* default 4CH: the shared data root's ``mnms2/001`` 4CH cine (one subject): the ED and ES
  frames with landmarks derived from the manual masks (**gold**, :mod:`..lax_labels`) and
  the other 23 frames labelled by tracking from those two anchors (**tracked**,
  :mod:`..tracking`), plus the two ``lax/ukbb_demo`` UK Biobank subjects: all 50 frames of
  each 4CH cine with landmarks derived (same rule) from the **silver** four-chamber masks
  ``seg4_la_4ch`` (made by the ukbb_cardiac networks, Bai et al., JCMR 2018).
  ``lax/amrg`` (:func:`amrg_4ch_samples`: 32 frames, hinge points predicted by another model,
  no apex, **no geometry**) is no longer used by default: on the canvas its stored axes show
  the mirror image of the other subjects (its tricuspid and septal mitral hinges lie on the
  other side of the valve -> apex axis), i.e. an anatomy no real-geometry image shows;
* ``folder=``: the user's own labelled long-axis images (any view): every image file
  ``NAME.nii.gz`` / ``.nrrd`` / ``.mha`` with either ``NAME.mrk.json`` (or a folder
  ``NAME_landmarks/`` of ``.mrk.json`` files; Slicer point lists with labels
  ``"<name> s<slice> p<phase>"``, :func:`..markups.read_markups`, or on an image of one
  phase the landmark's name alone, ``"AL-P"``, as a reader names points placed by hand) or a mask
  ``NAME_gt.<ext>`` (LV cavity / myocardium [/ RV] labels, default M&Ms-2's 1/2/3, derived
  with :func:`..lax_labels.derive_lax_landmarks`).

Evaluation is leave-one-subject-out where at least two subjects exist; the final model is
then trained on all subjects. The card records subjects, frames per label kind, the
held-out errors and the thresholds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from CardiacLandmarksLib.core.config import data_root, models_root
from CardiacLandmarksLib.core.errors import InputNotFoundError, InvalidImageError
from CardiacLandmarksLib.core.landmarks import LANDMARKS_BY_VIEW
from CardiacLandmarksLib.core.preprocessing import (
    CANVAS_MM,
    CANVAS_PX,
    make_grid,
    normalise_intensity,
    resample_to_canvas,
)
from CardiacLandmarksLib.lax.labels import LAX_CANVAS_UP
from CardiacLandmarksLib.models.decoding import decode_heatmaps
from CardiacLandmarksLib.models.unet import UNet2D, count_parameters, transfer_state
from CardiacLandmarksLib.training.augment import random_affine_batch, random_intensity
from CardiacLandmarksLib.training.losses import gaussian_targets

logger = logging.getLogger(__name__)
#: progress lines for a person (the CLI prints them; see CardiacLandmarksLib.cli.main)
PROGRESS = logging.getLogger("CardiacLandmarksLib.progress")

LAX_VIEWS = ("2ch", "3ch", "4ch")
#: the UK Biobank demo subjects with silver four-chamber masks (``lax/ukbb_demo/<n>``)
UKBB_SUBJECTS = ("1", "2")
#: version written into the card of a model trained by :func:`train_lax`
MODEL_VERSION = "0.2.0"
#: AMRG key-pred entries (0-based) of the septal and free-wall mitral hinges
AMRG_SEPTAL, AMRG_FREE_WALL = 4, 5


def model_name(view: str) -> str:
    """Bundled model name of a long-axis view: ``"lax4ch_unet"`` etc. (the catalogue's rule,
    :func:`CardiacLandmarksLib.models.catalogue.lax_model_name`)."""
    from CardiacLandmarksLib.models.catalogue import lax_model_name

    return lax_model_name(view)


@dataclass
class LaxSamples:
    """Canvas training samples.

    images ``[N, H, W]`` float32; points ``[N, 3, 2]`` canvas (x, y), NaN = absent or unknown;
    known ``[N, 3]`` bool (False = not labelled: left out of the loss); subject / kind / note
    per sample (kind ``"gold"``, ``"tracked"`` or ``"silver"``).
    """

    images: np.ndarray
    points: np.ndarray
    known: np.ndarray
    subject: list[str]
    kind: list[str]
    note: list[str] = field(default_factory=list)

    def subset(self, idx) -> LaxSamples:
        idx = np.asarray(idx, int)
        return LaxSamples(self.images[idx], self.points[idx], self.known[idx], [self.subject[i] for i in idx],
                          [self.kind[i] for i in idx], [self.note[i] for i in idx] if self.note else [])

    @staticmethod
    def concat(parts: list[LaxSamples]) -> LaxSamples:
        parts = [p for p in parts if len(p.images)]
        return LaxSamples(np.concatenate([p.images for p in parts]), np.concatenate([p.points for p in parts]),
                          np.concatenate([p.known for p in parts]), sum((p.subject for p in parts), []),
                          sum((p.kind for p in parts), []), sum((p.note for p in parts), []))


def _canvas_samples(series, k: int, per_phase: dict[int, dict[str, np.ndarray | None]], names, subject: str,
                    kinds: dict[int, str]) -> LaxSamples:
    """Canvas images + points for the given phases of slice ``k``.

    ``per_phase[t][name]``: ``(i, j)`` (present), None (absent) or missing key (unknown).
    """
    grid = make_grid(series, k, up=LAX_CANVAS_UP)
    imgs, pts, known, subj, kind, note = [], [], [], [], [], []
    for t in sorted(per_phase):
        img = resample_to_canvas(normalise_intensity(series.pixels[t, k])[None], grid)[0]
        p = np.full((len(names), 2), np.nan, np.float32)
        kn = np.zeros(len(names), bool)
        for n, name in enumerate(names):
            if name in per_phase[t]:
                kn[n] = True
                v = per_phase[t][name]
                if v is not None:
                    p[n] = grid.ijk_to_canvas(np.asarray(v, float)[:2])
        imgs.append(img)
        pts.append(p)
        known.append(kn)
        subj.append(subject)
        kind.append(kinds.get(t, "gold"))
        note.append(f"{Path(str(series.source)).name} k{k} t{t}")
    return LaxSamples(np.stack(imgs).astype(np.float32), np.stack(pts), np.stack(known), subj, kind, note)


def _matching_phase(cine: np.ndarray, frame: np.ndarray) -> int:
    return int(np.argmin([np.abs(c - frame).mean() for c in cine]))


def mnms2_4ch_samples(root: Path, track: bool = True) -> LaxSamples:
    """``mnms2/001``: gold ED/ES labels from the masks, tracked labels on the other cine frames."""
    from CardiacLandmarksLib.core.landmarks import Landmark, LandmarkSet
    from CardiacLandmarksLib.io.load import load_series
    from CardiacLandmarksLib.lax.labels import derive_from_series
    from CardiacLandmarksLib.lax.tracking import track_landmarks

    d = Path(root) / "mnms2" / "001"
    cine = load_series(d / "001_LA_CINE.nii.gz")
    for ph in ("ED", "ES"):
        check_canvas_handedness(load_series(d / f"001_LA_{ph}.nii.gz"), load_series(d / f"001_LA_{ph}_gt.nii.gz"),
                                None, f"mnms2-001 {ph}")
    names = LANDMARKS_BY_VIEW["4ch"]
    per_phase: dict[int, dict] = {}
    kinds: dict[int, str] = {}
    seed = LandmarkSet(str(cine.source), "4ch", {})
    for ph in ("ED", "ES"):
        img = load_series(d / f"001_LA_{ph}.nii.gz")
        lab = derive_from_series(img, load_series(d / f"001_LA_{ph}_gt.nii.gz"), "4ch")
        t = _matching_phase(cine.pixels[:, 0], img.pixels[0, 0])
        per_phase[t] = {n: lab.points.get(n) for n in names}
        kinds[t] = "gold"
        for n, p in lab.points.items():
            ijk = np.r_[p, 0.0]
            seed.landmarks.append(Landmark(n, 0, t, True, cine.ijk_to_lps(ijk), ijk, 1.0, "high", corrected=True))
    if track:
        tracked = track_landmarks(cine, seed)
        for lm in tracked.landmarks:
            if kinds.get(lm.phase) != "gold" and lm.found:
                per_phase.setdefault(lm.phase, {})[lm.name] = np.asarray(lm.ijk, float)[:2]
                kinds.setdefault(lm.phase, "tracked")
        for t in list(per_phase):
            if kinds.get(t) == "tracked" and len(per_phase[t]) < len(names):
                per_phase.pop(t)
    return _canvas_samples(cine, 0, per_phase, names, "mnms2-001", kinds)


def check_canvas_handedness(image, mask, labels: dict | None, what: str, phases=None, k: int = 0) -> bool:
    """Whether the canvas of ``image`` shows the 4CH anatomy with the handedness of every real-geometry subject.

    Uses the LV (cavity + myocardium) and RV centroids of ``mask`` and the derived apex /
    mitral midpoint on each phase (:func:`..lax.labels.four_chamber_handedness`); phases whose
    mask has no LV or RV are skipped. Logs a warning naming ``what`` when any phase is mirrored.

    Returns:
        True when no usable phase is mirrored.
    """
    from CardiacLandmarksLib.core.preprocessing import resample_labels_to_canvas
    from CardiacLandmarksLib.lax.labels import (
        CANVAS_4CH_HANDEDNESS,
        MNMS2_LAX_LABELS,
        derive_from_series,
        four_chamber_handedness,
    )

    lab = dict(MNMS2_LAX_LABELS if labels is None else labels)
    if lab.get("rv") is None:
        return True
    grid = make_grid(image, k, up=LAX_CANVAS_UP)
    bad = []
    for t in range(mask.n_phases) if phases is None else phases:
        try:
            d = derive_from_series(image, mask, "4ch", labels=lab, k=k, t=t)
        except InvalidImageError:
            continue
        canvas = resample_labels_to_canvas(mask.pixels[t, k], grid)
        lv = np.argwhere(np.isin(canvas, [lab["lv"], lab["myo"]]))
        rv = np.argwhere(canvas == lab["rv"])
        if d.mitral_midpoint() is None or not len(lv) or not len(rv):
            continue
        h = four_chamber_handedness(grid.ijk_to_canvas(d.points["APEX"]), grid.ijk_to_canvas(d.mitral_midpoint()),
                                    lv[:, ::-1].mean(0), rv[:, ::-1].mean(0))
        if h != CANVAS_4CH_HANDEDNESS:
            bad.append(t)
    if bad:
        logger.warning("%s: the canvas shows the mirror image of a four-chamber view on phases %s (check the file's "
                       "geometry)", what, bad[:10])
    return not bad


def ukbb_4ch_samples(root: Path, subject: str, step: int = 1) -> LaxSamples:
    """``lax/ukbb_demo/<subject>``: every ``step``-th frame of ``la_4ch`` with landmarks derived from
    the silver ``seg4_la_4ch`` masks (hinges = myocardium horseshoe ends, APEX = epicardial apex,
    IS-P = the hinge nearer the RV, as for M&Ms-2). Kind ``"silver"``; frames whose mask yields no
    landmarks are skipped. Returns no samples (with a warning) when the canvas is mirrored."""
    from CardiacLandmarksLib.io.load import load_series
    from CardiacLandmarksLib.lax.labels import UKBB_LAX4CH_LABELS, derive_from_series

    d = Path(root) / "lax" / "ukbb_demo" / str(subject)
    image = load_series(d / "la_4ch.nii.gz")
    mask = load_series(d / "seg4_la_4ch.nii.gz")
    names = LANDMARKS_BY_VIEW["4ch"]
    phases = list(range(0, min(image.n_phases, mask.n_phases), step))
    if not check_canvas_handedness(image, mask, UKBB_LAX4CH_LABELS, f"ukbb-{subject}", phases):
        return LaxSamples(np.zeros((0, CANVAS_PX, CANVAS_PX), np.float32), np.zeros((0, 3, 2), np.float32),
                          np.zeros((0, 3), bool), [], [], [])
    per_phase = {}
    for t in phases:
        lab = derive_from_series(image, mask, "4ch", labels=UKBB_LAX4CH_LABELS, t=t)
        if all(n in lab.points for n in names):
            per_phase[t] = {n: lab.points[n] for n in names}
    return _canvas_samples(image, 0, per_phase, names, f"ukbb-{subject}", {t: "silver" for t in per_phase})


def amrg_4ch_samples(root: Path) -> LaxSamples:
    """``lax/amrg``: 32 frames with model-predicted (silver) hinge points; APEX unknown.

    Not used by default: the file has no geometry, and its canvas (stored axes) is the mirror
    image of every real-geometry subject (see the module docstring)."""
    from CardiacLandmarksLib.io.load import load_series

    d = Path(root) / "lax" / "amrg"
    series = load_series(d / "AMRGAtlas_0031.nii.gz")
    key = np.load(d / "AMRGAtlas_0031_key-pred.npy")  # (T, 2 [first axis, second axis], 10)
    per_phase = {}
    for t in range(min(series.n_phases, key.shape[0])):
        # the first stored axis is the image column i, the second the row j (checked on overlays)
        per_phase[t] = {"IS-P": np.array([key[t, 0, AMRG_SEPTAL], key[t, 1, AMRG_SEPTAL]]),
                        "AL-P": np.array([key[t, 0, AMRG_FREE_WALL], key[t, 1, AMRG_FREE_WALL]])}
    return _canvas_samples(series, 0, per_phase, LANDMARKS_BY_VIEW["4ch"], "amrg-0031",
                           {t: "silver" for t in per_phase})


def shared_samples(view: str, root: Path | None = None) -> LaxSamples:
    """The labelled long-axis data of the shared data root (4CH only; see module docstring).

    Raises:
        InputNotFoundError: no shared LAX data for this view.
    """
    root = Path(root or data_root())
    parts = []
    if view == "4ch":
        if (root / "mnms2" / "001" / "001_LA_CINE.nii.gz").exists():
            parts.append(mnms2_4ch_samples(root))
        for subject in UKBB_SUBJECTS:
            if (root / "lax" / "ukbb_demo" / subject / "seg4_la_4ch.nii.gz").exists():
                parts.append(ukbb_4ch_samples(root, subject))
    if not parts:
        raise InputNotFoundError(f"no labelled {view.upper()} data in {root}; give a folder of images + .mrk.json "
                                 f"landmarks or masks (cardiac-landmarks train --view {view} --data FOLDER)")
    return LaxSamples.concat(parts)


def _parse_labels(labels: dict | None) -> dict:
    from CardiacLandmarksLib.lax.labels import MNMS2_LAX_LABELS

    out = dict(MNMS2_LAX_LABELS)
    out.update(labels or {})
    return out


def _points_from_markups(lmset, series, names) -> dict[int, dict[int, dict]]:
    """``{slice k: {phase t: {name: (i, j) or None}}}`` of the view's landmarks in a read markups set."""
    per_slice: dict[int, dict[int, dict]] = {}
    for lm in lmset.landmarks:
        if lm.name not in names:
            continue
        ijk = series.lps_to_ijk(lm.position) if lm.found else None
        k = int(round(ijk[2])) if ijk is not None else lm.slice
        per_slice.setdefault(k, {}).setdefault(lm.phase, {})[lm.name] = None if ijk is None else ijk[:2]
    return per_slice


def folder_samples(folder: Path, view: str, labels: dict | None = None) -> LaxSamples:
    """User data: images with ``.mrk.json`` landmarks or ``_gt`` masks (see module docstring).

    Each image file is one subject (for leave-one-subject-out), except that files whose names differ only by an
    ED/ES or frame tag (``P1_LA_ED`` and ``P1_LA_ES``: :func:`~CardiacLandmarksLib.datasets.sax.patient_of_stem`)
    are one subject, so that a fold never trains on a subject's other phase. Landmarks of other views in a
    markups file are ignored; phases/slices without any of the view's landmarks are skipped.

    Masks are checked against ``labels`` first (:func:`~CardiacLandmarksLib.sax.labels.label_problem` with
    :data:`~CardiacLandmarksLib.lax.labels.MIN_LAX_LV_ENCLOSURE`): masks in ACDC's convention (RV 1, LV 3) read
    with M&Ms-2's default (LV 1, RV 3) would train every hinge point on the wrong ventricle without a word.

    Raises:
        InputNotFoundError: the folder does not exist or holds no labelled image.
        LabelConventionError: one or more ``_gt`` masks do not follow ``labels`` (the first three named, with the
            values that fit), before any model runs.
    """
    from CardiacLandmarksLib.datasets.sax import patient_of_stem
    from CardiacLandmarksLib.io.image import is_image_file
    from CardiacLandmarksLib.io.load import load_series
    from CardiacLandmarksLib.io.markups import read_markups
    from CardiacLandmarksLib.lax.labels import derive_from_series, lax_label_error, lax_mask_problem

    folder = Path(folder)
    if not folder.is_dir():
        raise InputNotFoundError(f"training folder {folder} does not exist")
    names = LANDMARKS_BY_VIEW[view]
    lab = _parse_labels(labels)
    parts = []
    problems: list[str] = []
    n_masks = 0
    for f in sorted(folder.iterdir()):
        if not f.is_file() or not is_image_file(f):
            continue
        stem = f.name.split(".")[0]
        if stem.endswith("_gt"):
            continue
        ext = f.name[len(stem):]
        mrk = [folder / f"{stem}.mrk.json", folder / f"{stem}_landmarks"]
        mask = folder / f"{stem}_gt{ext}"
        series = load_series(f)
        per_slice: dict[int, dict[int, dict]] = {}
        src = next((m for m in mrk if m.exists()), None)
        if src is not None:
            per_slice = _points_from_markups(read_markups(src, series, bare_names=True), series, names)
        elif mask.exists():
            ms = load_series(mask)
            if ms.pixels.shape[1:] != series.pixels.shape[1:]:
                logger.warning("%s: mask grid %s differs from the image %s; skipped", mask.name, ms.pixels.shape,
                            series.pixels.shape)
                continue
            n_masks += 1
            problem = lax_mask_problem(ms.pixels, lab)
            if problem or problems:  # once one mask is refused, the others are only checked
                if problem:
                    problems.append(f"{mask.name}: {problem}")
                continue
            if view == "4ch" and not all(check_canvas_handedness(series, ms, lab, f.name, k=k)
                                         for k in range(ms.n_slices)):
                logger.warning("%s: skipped (mirrored four-chamber view on the canvas)", f.name)
                continue
            for t in range(ms.n_phases):
                for k in range(ms.n_slices):
                    d = derive_from_series(series, ms, view, labels=lab, k=k, t=t)
                    if d.points:
                        per_slice.setdefault(k, {})[t] = dict(d.points)
        else:
            logger.info("%s: no %s.mrk.json, %s_landmarks/ or %s_gt%s beside it; skipped", f.name, stem, stem, stem, ext)
            continue
        for k, per_phase in per_slice.items():
            if per_phase:
                parts.append(_canvas_samples(series, k, per_phase, names, patient_of_stem(stem), {}))
    if problems:
        raise lax_label_error(problems, n_masks, lab)
    if not parts:
        raise InputNotFoundError(f"no labelled {view.upper()} image in {folder} (need NAME.nii.gz with "
                                 "NAME.mrk.json or NAME_gt.nii.gz)")
    return LaxSamples.concat(parts)


# --------------------------------------------------------------------------------------------
# loss, training, evaluation
# --------------------------------------------------------------------------------------------

def partial_kl_dice_loss(logits: torch.Tensor, target: torch.Tensor, known: torch.Tensor,
                         landmark_weight: float = 50.0, dice_weight: float = 1.0) -> torch.Tensor:
    """KL + soft Dice like :func:`.losses.kl_dice_loss`, with unlabelled landmarks left out.

    For a sample whose landmark ``l`` is not labelled (``known[n, l]`` False) the model's
    probability of ``l`` is merged with the background before the KL (the target says
    "background or l, we do not know which"), and ``l`` is left out of the Dice.

    Args:
        logits: ``[n, L + 1, H, W]``; target: ``[n, L + 1, H, W]`` (from
            :func:`.losses.gaussian_targets` with unknown points NaN); known: ``[n, L]`` bool.
    """
    logp = torch.log_softmax(logits, 1)
    n_l = logits.shape[1] - 1
    unk = ~known  # [n, L]
    neg = torch.finfo(logp.dtype).min / 4
    lm_unknown = torch.where(unk[..., None, None], logp[:, :n_l], torch.full_like(logp[:, :n_l], neg))
    bg_merged = torch.logsumexp(torch.cat([logp[:, n_l:], lm_unknown], 1), 1, keepdim=True)
    t_lm = target[:, :n_l] * known[..., None, None]
    t_bg = target[:, n_l:]
    kl_px = (t_lm * (torch.log(t_lm.clamp(min=1e-8)) - logp[:, :n_l])).sum(1) + \
        (t_bg * (torch.log(t_bg.clamp(min=1e-8)) - bg_merged))[:, 0]
    w = 1.0 + landmark_weight * (1.0 - t_bg[:, 0])
    kl = (kl_px * w).sum() / w.sum()
    p = logp.exp()[:, :n_l]
    inter = (p * t_lm).sum((-1, -2))
    denom = (p * p).sum((-1, -2)) + (t_lm * t_lm).sum((-1, -2))
    dice = (2 * inter + 1.0) / (denom + 1.0)
    k = known.float()
    dice_loss = ((1.0 - dice) * k).sum() / k.sum().clamp(min=1.0)
    return kl * 10.0 + dice_weight * dice_loss


@dataclass
class LaxTrainConfig:
    """Hyper-parameters (stored in the checkpoint and the card)."""

    epochs: int = 20
    steps_per_epoch: int = 40
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    crop_px: int = 128
    sigma_px: float = 2.5
    max_rot_deg: float = 180.0
    scale_range: tuple[float, float] = (0.7, 1.4)
    max_shift_px: float = 24.0
    mirror_prob: float = 0.0  # never mirror a long-axis view (see the module docstring)
    seed: int = 0
    threads: int = 1
    init: str = "sax"  # "sax" (bundled SAX weights), "none" or a checkpoint path


def _init_weights(model: torch.nn.Module, init: str) -> str:
    if init == "none":
        return "random initialisation"
    path = Path(init) if init != "sax" else models_root() / "sax_unet.pt"
    if not path.exists():
        logger.warning("initial weights %s not found; training from scratch", path)
        return f"random initialisation ({path} not found)"
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    own = model.state_dict()
    copied = transfer_state(model, state)  # the SAX heatmap head's channels; its segmentation head is left out
    logger.info("copied %d/%d tensors from %s", copied, len(own), path)
    return f"transfer from {path.name} ({copied}/{len(own)} tensors copied)"


def predict(model: torch.nn.Module, images: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Softmax heatmaps ``[n, L + 1, H, W]`` of canvas images ``[n, H, W]``."""
    model.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(images), 16):
            x = torch.from_numpy(np.ascontiguousarray(images[s : s + 16]))[:, None].to(device)
            out.append(torch.softmax(model(x), 1).float().cpu().numpy())
    return np.concatenate(out)


def fit(samples: LaxSamples, cfg: LaxTrainConfig, n_landmarks: int = 3, device: str = "cpu",
        progress: bool = True, tag: str = "") -> tuple[torch.nn.Module, dict]:
    """Train a U-Net on ``samples``; returns ``(model, info)``. Batches draw subjects equally."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = UNet2D(1, n_landmarks + 1, 8, 4)
    init_note = _init_weights(model, cfg.init)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * cfg.steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.15)
    imgs = torch.from_numpy(samples.images)[:, None]
    pts = torch.from_numpy(samples.points)
    known = torch.from_numpy(samples.known)
    subjects = sorted(set(samples.subject))
    by_subject = [torch.tensor([i for i, s in enumerate(samples.subject) if s == subj]) for subj in subjects]
    t0 = time.time()
    losses = []
    for step in range(total):
        model.train()
        per = max(1, cfg.batch_size // len(by_subject))
        b = torch.cat([ix[torch.randint(len(ix), (per,), generator=gen)] for ix in by_subject])
        x, p = random_affine_batch(imgs[b], pts[b].clone(), cfg.crop_px, gen, max_rot_deg=cfg.max_rot_deg,
                                   scale_range=cfg.scale_range, max_shift_px=cfg.max_shift_px,
                                   mirror_prob=cfg.mirror_prob, swap_pair=None)
        x = random_intensity(x, gen)
        target = gaussian_targets(p, cfg.crop_px, cfg.sigma_px)
        loss = partial_kl_dice_loss(model(x.to(device)), target.to(device), known[b].to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if progress and (step + 1) % cfg.steps_per_epoch == 0:
            PROGRESS.info(f"{tag}epoch {(step + 1) // cfg.steps_per_epoch}/{cfg.epochs} loss "
                          f"{np.mean(losses[-cfg.steps_per_epoch:]):.4f} ({time.time() - t0:.0f} s)")
    return model, {"init": init_note, "seconds": round(time.time() - t0), "final_loss": float(np.mean(losses[-20:]))}


def errors_mm(probs: np.ndarray, samples: LaxSamples) -> tuple[np.ndarray, np.ndarray]:
    """``(error_mm [N, L] (NaN where not labelled/absent), peak [N, L])`` on the canvas (mm = canvas px x 1.5)."""
    xy, peak = decode_heatmaps(probs)
    err = np.linalg.norm(xy - samples.points, axis=-1) * CANVAS_MM
    err[~(samples.known & np.isfinite(samples.points[..., 0]))] = np.nan
    return err, peak


def summarise_errors(err: np.ndarray, peak: np.ndarray, names, high_t: list[float] | None = None) -> dict:
    """Per landmark: n, mean / median / 90th percentile / max error (mm), share within 5 mm,
    and (with thresholds) the share flagged high and the mean error of high / low points."""
    out = {}
    for n, name in enumerate(names):
        e = err[:, n]
        ok = np.isfinite(e)
        if not ok.any():
            out[name] = {"n": 0}
            continue
        d = {"n": int(ok.sum()), "mean_error_mm": float(e[ok].mean()), "median_error_mm": float(np.median(e[ok])),
             "p90_error_mm": float(np.percentile(e[ok], 90)), "max_error_mm": float(e[ok].max()),
             "within_5mm": float((e[ok] <= 5.0).mean()), "mean_peak": float(peak[ok, n].mean())}
        if high_t is not None:
            hi = ok & (peak[:, n] >= high_t[n])
            lo = ok & ~hi
            d["flagged_high"] = float(hi.sum() / ok.sum())
            d["mean_error_high_mm"] = float(e[hi].mean()) if hi.any() else float("nan")
            d["mean_error_low_mm"] = float(e[lo].mean()) if lo.any() else float("nan")
        out[name] = d
    return out


def train_lax(
    folder: Path | None,
    view: str,
    out_dir: Path,
    *,
    epochs: int = 20,
    seed: int = 0,
    device: str = "cpu",
    labels: dict | None = None,
    include_shared: bool | None = None,
    init: str = "sax",
    evaluate: bool = True,
    progress: bool = True,
    threads: int = 1,
    steps_per_epoch: int = 40,
    command: str | None = None,
    version: str | None = None,
) -> dict:
    """Train (and evaluate leave-one-subject-out) a long-axis landmark model; write weights + card.

    Args:
        folder: the user's labelled images (see module docstring); None = the shared data
            root's labelled 4CH data.
        view: ``"2ch"``, ``"3ch"`` or ``"4ch"``.
        out_dir: where ``lax<view>_unet.pt``, ``.json`` (card) and ``.md`` go.
        epochs: passes of ``steps_per_epoch`` batches of 8 augmented canvases.
        steps_per_epoch: batches per epoch (default 40).
        seed: random seed (reproducible on CPU).
        device: ``"cpu"`` or ``"cuda"``.
        labels: mask label values ``{"lv", "myo", "rv"}`` for ``_gt`` masks (default 1/2/3).
        include_shared: also use the shared 4CH data with a user folder (default: only when
            ``folder`` is None).
        init: ``"sax"`` (transfer from the bundled SAX model), ``"none"`` or a checkpoint.
        evaluate: run leave-one-subject-out folds first (skipped with one subject).
        threads: CPU threads for torch.
        command: the command line that ran the training (recorded in the card).
        version: the version written into the card (default :data:`MODEL_VERSION`, the version this code
            trains); a site's model named e.g. ``0.2.0-site1`` stays apart from the bundled release.

    Returns:
        The model card dict (also written as JSON and Markdown).

    Raises:
        ValueError: unknown view. InputNotFoundError: no labelled data, or ``init`` names no file.
        LabelConventionError: masks that do not follow ``labels`` (:func:`folder_samples`).
    """
    from CardiacLandmarksLib.models.loader import sha256_file
    from CardiacLandmarksLib.training.model_card import LAX_BUNDLE_TARGETS, bundle_verdict

    view = (view or "").lower()
    if view not in LAX_VIEWS:
        raise ValueError(f"long-axis view must be one of {LAX_VIEWS}, not {view!r}")
    if init not in ("sax", "none") and not Path(init).is_file():  # a mistyped path would train from scratch
        raise InputNotFoundError.at(init, "initial weights")
    torch.set_num_threads(threads)
    np.random.seed(seed)
    out_dir = Path(out_dir)
    names = LANDMARKS_BY_VIEW[view]
    parts = []
    if folder is not None:
        parts.append(folder_samples(Path(folder), view, labels))
    if folder is None or include_shared:
        parts.append(shared_samples(view))
    samples = LaxSamples.concat(parts)
    subjects = sorted(set(samples.subject))
    cfg = LaxTrainConfig(epochs=epochs, steps_per_epoch=steps_per_epoch, seed=seed, threads=threads, init=init)
    logger.info("%d samples from %d subjects: %s", len(samples.images), len(subjects), subjects)
    t0 = time.time()

    folds = {}
    pooled_err, pooled_peak = [], []
    if evaluate and len(subjects) > 1:
        for held in subjects:
            tr = samples.subset([i for i, s in enumerate(samples.subject) if s != held])
            te = samples.subset([i for i, s in enumerate(samples.subject) if s == held])
            model, _ = fit(tr, cfg, len(names), device, progress, tag=f"[without {held}] ")
            err, peak = errors_mm(predict(model, te.images, device), te)
            # a landmark never labelled in this fold's training data cannot be evaluated on it
            unlabelled = [n for i, n in enumerate(names) if not tr.known[:, i].any()]
            for n in unlabelled:
                err[:, names.index(n)] = np.nan
            folds[held] = {"trained_on": sorted(set(tr.subject)), "n_test_frames": len(te.images),
                           "label_kinds": sorted(set(te.kind)), "metrics": summarise_errors(err, peak, names),
                           "not_evaluable": unlabelled}
            pooled_err.append(err)
            pooled_peak.append(peak)
    thresholds = _thresholds(pooled_err, pooled_peak, names)
    pooled = {}
    if folds:
        high = [thresholds["high_confidence"][n] for n in names]
        pooled = summarise_errors(np.concatenate(pooled_err), np.concatenate(pooled_peak), names, high)

    model, info = fit(samples, cfg, len(names), device, progress, tag="[all subjects] ")
    name = model_name(view)
    out_dir.mkdir(parents=True, exist_ok=True)  # only now: refused data leaves no empty folder
    weights = out_dir / f"{name}.pt"
    tmp = weights.with_suffix(".tmp")
    torch.save({"state_dict": model.state_dict(), "config": asdict(cfg)}, tmp)
    tmp.replace(weights)
    counts = {s: {k: int(sum(1 for a, b in zip(samples.subject, samples.kind) if a == s and b == k))
                  for k in sorted(set(samples.kind))} for s in subjects}
    card = {
        "name": name,
        "version": version or MODEL_VERSION,
        "view": view,
        "landmarks": list(names),
        "summary": summary_text(view, counts),
        "architecture": {"type": "UNet2D", "in_channels": 1, "n_classes": len(names) + 1, "base_channels": 8,
                         "depth": 4, "parameters": count_parameters(model)},
        "input": {"canvas_mm": CANVAS_MM, "canvas_px": CANVAS_PX,
                  "intensity": "per-image 1st-99th percentile to [0,1], clipped at 1.5"},
        "thresholds": thresholds,
        "confidence": {"tta": "the image and 4 rotated/scaled copies (+-12 deg, x0.9/x1.1); a point whose "
                              "positions spread more than tta_max_spread_mm is flagged low",
                       "tta_max_spread_mm": 5.0},
        "training": {
            "data": _data_text(folder, view, include_shared),
            **({"mask_labels": _parse_labels(labels)} if folder is not None else {}),
            "subjects": subjects,
            "n_subjects": len(subjects),
            "frames_per_subject_and_label_kind": counts,
            "n_frames": int(len(samples.images)),
            "config": asdict(cfg),
            "init": info["init"],
            "device": device,
            "seconds": round(time.time() - t0),
            "command": command or "CardiacLandmarksLib.training.train_lax.train_lax (Python)",
        },
        "validation": pooled,
        "bundle_verdict": bundle_verdict(pooled, LAX_BUNDLE_TARGETS),
        "leave_one_subject_out": folds,
        "expected_accuracy": _expected_text(folds, pooled, len(subjects)),
        "sha256": sha256_file(weights),
    }
    if folder is not None:  # a site's images: their terms, which `models --refresh` copies into the catalogue
        card["licence"] = ("the terms of the site's own labelled images it was trained on (the card's training "
                           "data)" + ("; also research use (M&Ms-2 and UK Biobank example data)" if include_shared
                                      else ", not M&Ms-2's or UK Biobank's"))
    write_card(card, out_dir)
    return card


_KIND_TEXT = {"gold": "frames labelled from manual masks", "tracked": "frames tracked from those",
              "silver": "silver frames (labels from another network's masks or points, not a person's)"}


def summary_text(view: str, counts: dict[str, dict[str, int]]) -> str:
    """One paragraph saying plainly what a LAX model has seen: subjects, frames per subject and label kind.

    ``counts``: ``{subject: {kind: frames}}`` as in the card's ``frames_per_subject_and_label_kind``.
    """
    n = sum(sum(c.values()) for c in counts.values())
    per = "; ".join(f"{s}: " + ", ".join(f"{v} {_KIND_TEXT.get(k, k)}" for k, v in c.items() if v)
                    for s, c in counts.items())
    gold = sum(c.get("gold", 0) for c in counts.values())
    return (f"{view.upper()} landmark U-Net trained on only {len(counts)} subject(s), {n} frames ({per}). "
            f"Only {gold} frame(s) carry labels derived from manual masks; no landmark was placed by a person. "
            "Experimental: expect errors well above Xue et al.'s 2-3.5 mm on scanners, sequences and hearts "
            "unlike these, and check every point; low-confidence points must be placed or corrected by the reader, "
            "then tracked.")


def write_card(card: dict, out_dir: Path) -> tuple[Path, Path]:
    """Write a LAX model card as ``<name>.json`` and ``<name>.md`` (atomic writes). Returns both paths."""
    from CardiacLandmarksLib.io.atomic import atomic_write_text
    from CardiacLandmarksLib.io.jsonsafe import dumps_strict
    from CardiacLandmarksLib.training.model_card import write_markdown

    out_dir = Path(out_dir)
    name = card["name"]
    js = out_dir / f"{name}.json"
    atomic_write_text(js, dumps_strict(card, default=_json_default))
    md = out_dir / f"{name}.md"
    write_markdown(card, md, {
        "Expected accuracy": card["expected_accuracy"],
        "Training command": f"`{card.get('training', {}).get('command', 'not recorded')}` "
                            f"({card.get('training', {}).get('seconds', '?')} s on {card.get('training', {}).get('device', '?')})",
        "Leave-one-subject-out": _folds_md(card.get("leave_one_subject_out", {})),
        "Confidence and flags": CONFIDENCE_TEXT,
        "How to retrain": RETRAIN_TEXT.format(view=card["view"], name=name),
        "Labels": LABEL_TEXT,
    })
    return js, md


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(type(o))


#: "high" threshold of a landmark never evaluated on a held-out subject: above any peak, so never "high"
NEVER_HIGH = 1.01

#: fewest held-out (leave-one-subject-out) evaluations of a landmark before its peak may earn "high"; with fewer, a
#: run of a few lucky held-out frames would let the final model call any confident point high
MIN_HELD_OUT = 10


def _thresholds(pooled_err: list, pooled_peak: list, names) -> dict:
    """found / high thresholds per landmark on the peak probability.

    found: 0.1 (a LAX image always holds the three points; below it the model has not seen
    anything like the image). high: from the held-out predictions, the smallest peak above
    which every held-out error was within 5 mm (at least 0.5). A landmark with no held-out
    evaluation (one subject only, or only one subject labels it) gets :data:`NEVER_HIGH`:
    its accuracy on a new subject is unknown, so it is never flagged "high"; so does one evaluated on fewer than
    :data:`MIN_HELD_OUT` held-out frames (too little evidence: a two-frame run once flagged an apex 53 mm off high).
    """
    found = [0.1] * len(names)
    high = [NEVER_HIGH] * len(names)
    if pooled_err:
        err, peak = np.concatenate(pooled_err), np.concatenate(pooled_peak)
        for n in range(len(names)):
            ok = np.isfinite(err[:, n])
            if ok.sum() < MIN_HELD_OUT:
                continue
            bad = ok & (err[:, n] > 5.0)
            high[n] = float(min(0.99, max(0.5, peak[bad, n].max() + 1e-3))) if bad.any() else 0.5
    return {"found": dict(zip(names, found)), "high_confidence": dict(zip(names, high))}


def _data_text(folder, view, include_shared) -> str:
    parts = []
    if folder is not None:
        parts.append(f"user folder {folder}")
    if folder is None or include_shared:
        parts.append("M&Ms-2 subject 001 4CH cine (Martin-Isla et al. 2023; ED/ES landmarks derived from the manual "
                     "masks (gold), 23 frames labelled by tracking from them) and two UK Biobank subjects' 4CH cines "
                     "(lax/ukbb_demo 1 and 2, all 50 frames each; landmarks derived from the silver four-chamber masks "
                     "made by the ukbb_cardiac networks, Bai et al., JCMR 2018, not by a person), research use only. "
                     "The AMRG atlas cine used by v0.1.0 is left out: without geometry its display is the mirror "
                     "image of the other subjects'")
    return "; ".join(parts)


def _expected_text(folds: dict, pooled: dict, n_subjects: int) -> str:
    if not folds:
        return (f"Trained on {n_subjects} subject; no held-out subject, so no accuracy figure exists. Treat every "
                "point as unverified.")
    lines = [f"Leave-one-subject-out over {n_subjects} subjects (each subject's frames predicted by a model that "
             "never saw that subject):"]
    for name, m in pooled.items():
        if m.get("n"):
            lines.append(f"- {name}: mean {m['mean_error_mm']:.1f} mm, median {m['median_error_mm']:.1f} mm, "
                         f"90th percentile {m['p90_error_mm']:.1f} mm, {100 * m['within_5mm']:.0f}% within 5 mm "
                         f"(n = {m['n']} frames)")
        else:
            lines.append(f"- {name}: not evaluable held-out (only one subject carries {name} labels, so no fold "
                         "both trains and tests it); its accuracy on new subjects is unknown")
    if "amrg-0031" in folds:
        lines.append("The AMRG cine carries no geometry (1 mm placeholder pixels), so its 'mm' are nominal.")
    kinds = sorted({k for f in folds.values() for k in f["label_kinds"]})
    if "silver" in kinds:
        lines.append("Folds whose held-out subject has silver labels measure agreement with another network's masks, "
                     "not with a person.")
    lines.append("With this little data, expect failures on images unlike the training subjects (other scanners, "
                 "contrast, field of view). The reference labels are derived from masks (gold), tracked, or another "
                 "model's predictions (silver), so these errors mix model and label error.")
    return "\n".join(lines)


def _folds_md(folds: dict) -> str:
    if not folds:
        return "Not run (one subject)."
    rows = ["| held-out subject | trained on | frames | labels | landmark | mean mm | median mm | max mm |",
            "|---|---|---|---|---|---|---|---|"]
    for held, f in folds.items():
        for name, m in f["metrics"].items():
            if m.get("n"):
                rows.append(f"| {held} | {', '.join(f['trained_on'])} | {f['n_test_frames']} | "
                            f"{'/'.join(f['label_kinds'])} | {name} | {m['mean_error_mm']:.2f} | "
                            f"{m['median_error_mm']:.2f} | {m['max_error_mm']:.2f} |")
    return "\n".join(rows)


RETRAIN_TEXT = """`cardiac-landmarks train --view {view} [--data FOLDER] -o runs/{view}` trains from a folder of
long-axis images (`NAME.nii.gz`, `.nrrd`, `.mha`) each with `NAME.mrk.json` (Slicer point list, control
points labelled `"<landmark> s<slice> p<phase>"`, e.g. as written by `cardiac-landmarks detect` and corrected
in Slicer) or a mask `NAME_gt.nii.gz` (1 = LV cavity, 2 = LV myocardium, 3 = RV), runs leave-one-subject-out
folds when there are two or more subjects, and writes `{name}.pt`, `{name}.json`, `{name}.md`. Without
`--data` it uses the shared data root's 4CH data. Copy the three files into `Resources/Models/` to bundle
them (the SHA256 in the card is checked on load). Python: `CardiacLandmarksLib.training.train_lax.train_lax`."""

LABEL_TEXT = """Hinge points = the two basal ends of the myocardium horseshoe (geodesic diameter of the myocardium
mask, centroid of the 3 mm end caps); APEX = the LV (cavity + myocardium) point farthest from the hinges'
midpoint. The septal hinge IS-P is the one nearer the RV cavity (`CardiacLandmarksLib/lax/labels.py`). M&Ms-2 001:
derived from the manual ED/ES masks (gold); its other frames are labelled by SimpleITK tracking from those two
(`lax/tracking.py`). UK Biobank demo subjects 1 and 2: derived with the same rule on every one of the 50 frames
from the silver four-chamber masks (`seg4_la_4ch`, labels 1 LV cavity, 2 LV myocardium, 3 RV cavity; made by
the ukbb_cardiac networks, not by a person). The masks' LA label was not used: the LV cavity and the LA are
separated by a gap of a few pixels in those masks, and the ends of the LV-cavity/LA contact lay 4-14 mm
(mean per subject and hinge) from the myocardium ends, inside the valve gap.

Handedness: no mirror augmentation (a mirrored four-chamber view is an anatomy that does not exist); the
canvas comes from the file geometry and is always seen from the patient's feet, and every training subject's
canvas was checked to show the RV on the same side of the mitral-midpoint -> apex axis. The AMRG atlas cine
used by v0.1.0 has no geometry and its stored axes show the mirror image, so it was dropped."""

CONFIDENCE_TEXT = """A point's confidence is its heatmap peak averaged over the image and four rotated/scaled copies
(`lax_pipeline.detect_lax`). It is "high" only when the peak reaches `high_confidence` (the smallest peak
above which every held-out error was within 5 mm) and the copies agree within `tta_max_spread_mm`; a landmark
never evaluated on a held-out subject is never "high". With the bundled thresholds nearly every point on a
subject the model has not seen is flagged "low": the reader is asked to check or place the three points on one
phase, and tracking (`tracking.py`) carries them through the cine. Tracked points inherit the anchor's flag."""
