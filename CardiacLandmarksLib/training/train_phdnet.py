"""Train PHD-Net (Schobs et al., ISBI 2021) on the SAX canvas samples and calibrate its confidence.

Same samples, patient split (seed 0, 20% validation) and augmentation as the heatmap U-Net
(:mod:`.train_sax`), so the validation patients are unseen by both networks. Targets per
8x8-pixel patch and landmark (:func:`phdnet_targets`):

* patch heatmap: Gaussian of the distance patch centre -> landmark (``sigma_hm_px``), 0
  everywhere when the landmark is absent; loss = MSE (sigmoid output);
* displacement: log-scaled (x, y) from the patch centre to the landmark; loss = MSE weighted
  by a Gaussian around the landmark (``sigma_disp_px``), zero weight when absent.

After training, Candidate Smoothing (:func:`..confidence.candidate_smoothing`) is run on the
validation patients and the per-landmark thresholds are calibrated by the paper's rule
(:func:`..confidence.calibrate_threshold`). 20 epochs take about 25 minutes on one thread of a
shared 2-core CPU (``python -m CardiacLandmarksLib.training.train_phdnet --out DIR``, :func:`main`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from CardiacLandmarksLib.confidence.phdnet import SmoothingResult, calibrate_threshold, candidate_smoothing
from CardiacLandmarksLib.core.preprocessing import CANVAS_MM
from CardiacLandmarksLib.datasets.sax import SAX_NAMES, SampleSet
from CardiacLandmarksLib.io.jsonsafe import dumps_strict
from CardiacLandmarksLib.models.phdnet import PATCH, PHDNet, count_parameters, log_scale, patch_centres
from CardiacLandmarksLib.training.augment import random_affine_batch, random_intensity

logger = logging.getLogger(__name__)
#: progress lines for a person (the CLI prints them; see CardiacLandmarksLib.cli.main)
PROGRESS = logging.getLogger("CardiacLandmarksLib.progress")


@dataclass
class PhdTrainConfig:
    """Hyper-parameters (stored in the checkpoint and the model card)."""

    epochs: int = 40
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    width: int = 32
    n_deep: int = 3
    head_widths: tuple[int, ...] = (64, 96)
    crop_px: int = 160
    sigma_hm_px: float = 8.0
    sigma_disp_px: float = 16.0
    heatmap_loss_weight: float = 50.0
    landmarks: tuple[str, ...] = tuple(SAX_NAMES)
    val_fraction: float = 0.2
    seed: int = 0
    threads: int = 1


def phdnet_targets(points: torch.Tensor, size: int, sigma_hm_px: float, sigma_disp_px: float,
                   patch: int = PATCH) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PHD-Net training targets for canvas points ``[n, L, 2]`` (x, y px; NaN = absent).

    Returns:
        ``(heatmap [n, L, g, g], log_displacement [n, L, 2, g, g], displacement_weight [n, L, g, g])``
        with ``g = size / patch``; heatmap = exp(-d^2 / 2 sigma_hm^2) of the distance d (px)
        from the patch centre to the landmark; weight = same with ``sigma_disp_px``; both 0 when absent.
    """
    g = size // patch
    centres = patch_centres(g, g, patch)  # [g, g, 2]
    present = torch.isfinite(points).all(-1)  # [n, L]
    p = torch.nan_to_num(points, nan=0.0)
    d = p[:, :, None, None, :] - centres[None, None]  # [n, L, g, g, 2]
    d2 = (d**2).sum(-1)
    pres = present[..., None, None].float()
    hm = torch.exp(-d2 / (2 * sigma_hm_px**2)) * pres
    w = torch.exp(-d2 / (2 * sigma_disp_px**2)) * pres
    return hm, log_scale(d).permute(0, 1, 4, 2, 3), w


def phdnet_loss(hm_logits: torch.Tensor, log_disp: torch.Tensor, targets: tuple, heatmap_weight: float) -> tuple[torch.Tensor, float, float]:
    """``heatmap_weight`` x MSE(sigmoid heatmap) + Gaussian-weighted MSE of the log displacement.

    Returns ``(loss, heatmap part, displacement part)``.
    """
    hm_t, disp_t, w = targets
    hm_loss = ((torch.sigmoid(hm_logits) - hm_t) ** 2).mean()
    se = ((log_disp - disp_t) ** 2).sum(2)  # [n, L, g, g]
    disp_loss = (w * se).sum() / w.sum().clamp(min=1e-6)
    return heatmap_weight * hm_loss + disp_loss, float(hm_loss.detach()), float(disp_loss.detach())


def predict_outputs(model: PHDNet, images: np.ndarray, device: str = "cpu", batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps ``[n, L, h, w]`` in [0, 1] and displacements (px) ``[n, L, 2, h, w]`` of canvas images ``[n, H, W]``."""
    model.eval()
    hms, disps = [], []
    with torch.inference_mode():
        for s in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[s : s + batch]))[:, None].to(device)
            hm, disp = model.predict(x)
            hms.append(hm.cpu().numpy())
            disps.append(disp.cpu().numpy())
    return np.concatenate(hms), np.concatenate(disps)


def smooth_all(hm: np.ndarray, disp: np.ndarray, image_size: tuple[int, int], batch: int = 64,
               return_maps: bool = False, **kw) -> SmoothingResult:
    """:func:`candidate_smoothing` in chunks (bounded memory)."""
    parts = [candidate_smoothing(hm[s : s + batch], disp[s : s + batch], image_size=image_size, return_maps=return_maps, **kw)
             for s in range(0, len(hm), batch)]
    maps = np.concatenate([p.maps for p in parts]) if return_maps else None
    return SmoothingResult(np.concatenate([p.xy for p in parts]), np.concatenate([p.confidence for p in parts]), maps)


def errors_mm(xy: np.ndarray, samples: SampleSet, landmark_index: list[int]) -> np.ndarray:
    """L2 error (mm) ``[N, L]`` of canvas predictions against the samples' points (NaN where absent)."""
    ref = samples.points[:, landmark_index]
    return np.linalg.norm(xy - ref, axis=-1) * CANVAS_MM


def calibrate_found(conf: np.ndarray, present: np.ndarray, min_detection: float = 0.95) -> float:
    """Presence threshold on PHD-Net's raw confidence (PHD-Net used alone), by the U-Net's rule.

    Among thresholds keeping the detection rate at or above ``min_detection``, the one with the
    best Youden index (TPR + TNR - 1); the threshold with the highest detection rate otherwise.
    """
    best, best_t = -2.0, None
    candidates = np.unique(np.quantile(conf, np.linspace(0.0, 0.99, 100)))
    for t in candidates:
        f = conf >= t
        tpr = (f & present).sum() / max(1, present.sum())
        tnr = (~f & ~present).sum() / max(1, (~present).sum())
        if tpr >= min_detection and tpr + tnr - 1 > best:
            best, best_t = tpr + tnr - 1, float(t)
    return best_t if best_t is not None else float(candidates[0])


def calibrate(result: SmoothingResult, samples: SampleSet, names: tuple[str, ...], worst_fraction: float = 0.1) -> dict:
    """Per landmark: presence threshold and the paper's high-confidence threshold on the validation samples."""
    idx = [SAX_NAMES.index(n) for n in names]
    err = errors_mm(result.xy, samples, idx)
    out: dict = {"found": {}, "high_confidence": {}}
    for j, name in enumerate(names):
        pres = samples.present[:, idx[j]]
        out["found"][name] = calibrate_found(result.confidence[:, j], pres)
        ok = pres & (result.confidence[:, j] >= out["found"][name])
        out["high_confidence"][name] = calibrate_threshold(result.confidence[ok, j], err[ok, j], worst_fraction)
    return out


def train_phdnet(train: SampleSet, val: SampleSet, out_path: Path | None, cfg: PhdTrainConfig,
                 device: str = "cpu", progress: bool = True) -> tuple[PHDNet, dict]:
    """Train one PHD-Net for ``cfg.landmarks`` on canvas samples; keep the epoch with the lowest validation error.

    Args:
        train, val: :class:`SampleSet` from :func:`.sax_dataset.build_samples` (split by patient).
        out_path: checkpoint written after every epoch (latest) and at the end (best); None = none.
        cfg: hyper-parameters; device: torch device.

    Returns:
        ``(model with the best weights, info dict: history, seconds, parameters, best epoch)``.
    """
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    t0 = time.time()
    idx = [SAX_NAMES.index(n) for n in cfg.landmarks]
    model = PHDNet(len(idx), 1, cfg.width, cfg.n_deep, tuple(cfg.head_widths)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = int(np.ceil(len(train.images) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(cfg.seed)
    imgs = torch.from_numpy(train.images)[:, None]
    pts = torch.from_numpy(train.points)  # all SAX landmarks: the mirror swap of augment needs A/I at 0/1
    history, best = [], (np.inf, None, 0)
    size = val.images.shape[1:]
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(len(imgs), generator=gen)
        parts = []
        for s in range(0, len(perm), cfg.batch_size):
            b = perm[s : s + cfg.batch_size]
            x, p = random_affine_batch(imgs[b], pts[b], cfg.crop_px, gen)
            x = random_intensity(x, gen)
            targets = phdnet_targets(p[:, idx], cfg.crop_px, cfg.sigma_hm_px, cfg.sigma_disp_px)
            hm, disp = model(x.to(device))
            loss, lh, ld = phdnet_loss(hm, disp, tuple(t.to(device) for t in targets), cfg.heatmap_loss_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            parts.append((float(loss.detach()), lh, ld))
        hm_v, disp_v = predict_outputs(model, val.images, device)
        res = smooth_all(hm_v, disp_v, size)
        err = errors_mm(res.xy, val, idx)
        pres = val.present[:, idx]
        per_lm = [float(err[pres[:, j], j].mean()) for j in range(len(idx))]
        score = float(np.mean(per_lm))
        mean_parts = np.mean(parts, 0)
        history.append({"epoch": epoch + 1, "loss": float(mean_parts[0]), "heatmap_mse": float(mean_parts[1]),
                        "displacement_mse": float(mean_parts[2]), "val_mean_error_mm": score,
                        **{f"{n}_err": e for n, e in zip(cfg.landmarks, per_lm)}})
        msg = (f"epoch {epoch + 1}/{cfg.epochs} loss {mean_parts[0]:.4f} (hm {mean_parts[1]:.5f} disp {mean_parts[2]:.4f}) "
               f"val err mm " + " ".join(f"{n}={e:.2f}" for n, e in zip(cfg.landmarks, per_lm)) + f" ({time.time() - t0:.0f} s)")
        logger.info(msg)
        if progress:
            PROGRESS.info(msg)
        if score < best[0]:
            best = (score, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, epoch + 1)
        if out_path is not None:
            save_checkpoint(model.state_dict(), cfg, Path(out_path))
    model.load_state_dict(best[1])
    if out_path is not None:
        save_checkpoint(model.state_dict(), cfg, Path(out_path))
    info = {"history": history, "seconds": round(time.time() - t0), "parameters": count_parameters(model),
            "n_train_samples": len(train.images), "n_val_samples": len(val.images),
            "best_epoch": best[2], "best_val_mean_error_mm": best[0]}
    return model, info


def save_checkpoint(state: dict, cfg: PhdTrainConfig, path: Path) -> None:
    """Atomic ``torch.save({"state_dict", "config"})``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"state_dict": state, "config": asdict(cfg)}, tmp)
    tmp.replace(path)


def write_bundle(model: PHDNet, cfg: PhdTrainConfig, info: dict, out_dir: Path, unet, sets: dict[str, SampleSet],
                 shipped: dict, extra: dict | None = None, smoothing: dict | None = None) -> dict:
    """Write ``sax_phdnet.pt`` + calibrated card ``sax_phdnet.json`` / ``.md`` into ``out_dir``.

    Args:
        model, cfg, info: from :func:`train_phdnet`.
        out_dir: e.g. ``Resources/Models``.
        unet: the heatmap U-Net the confidence is shipped with (``.predict``, ``.card``).
        sets: ``{name: SampleSet}``, the first being the ACDC validation patients (calibration).
        shipped: ``{"mode": "agreement"|"support"|"phdnet", "agreement_sigma_mm": float,
            "support_radius_px": float, "why": str}`` (see :class:`..confidence.PhdNetConfidence`).
        extra: more card entries (e.g. the multi- vs single-landmark comparison).
        smoothing: Candidate Smoothing settings (default the function's defaults).

    Returns:
        The card dict.
    """
    from CardiacLandmarksLib.core.preprocessing import CANVAS_PX
    from CardiacLandmarksLib.models.loader import sha256_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / "sax_phdnet.pt"
    save_checkpoint(model.state_dict(), cfg, weights)
    smoothing = dict(smoothing or {"region": 5, "vote_sigma": 1.0, "smooth_sigma": 2.0})
    names = tuple(cfg.landmarks)
    val = next(iter(sets.values()))
    hm, disp = predict_outputs(model, val.images)
    own = calibrate(smooth_all(hm, disp, val.images.shape[1:], **smoothing), val, names)
    card = {
        "name": "sax_phdnet",
        "version": "1.0.0",
        "view": "sax",
        "landmarks": list(names),
        "purpose": "confidence (high/low flag) of the SAX landmarks; positions come from the heatmap U-Net "
                   "unless shipped.mode is 'phdnet'",
        "method": "PHD-Net + Candidate Smoothing, Schobs, Swift, Lu, 'Confidence-quantifying landmark localisation "
                  "for cardiac MRI', IEEE ISBI 2021",
        "architecture": {"type": "PHDNet", "n_landmarks": len(names), "in_channels": 1, "width": cfg.width,
                         "n_deep": cfg.n_deep, "head_widths": list(cfg.head_widths), "patch_px": PATCH,
                         "parameters": count_parameters(model)},
        "input": {"canvas_mm": CANVAS_MM, "canvas_px": CANVAS_PX,
                  "intensity": "per-image 1st-99th percentile to [0,1], clipped at 1.5 (as the U-Net)"},
        "candidate_smoothing": smoothing,
        "shipped": dict(shipped),
        "thresholds": {"found": own["found"], "high_confidence": {}, "phdnet_own": own["high_confidence"],
                       "rule": "per landmark: error-weighted mean confidence of the 10% least accurate validation "
                               "predictions (Schobs et al. 2021); flag high when confidence > threshold"},
        "training": {"data": "ACDC (Bernard et al., IEEE TMI 2018), CC BY-NC-SA 4.0; landmarks derived from expert masks",
                     "split": "by patient, stratified by group, val_fraction 0.2, seed 0 (same as sax_unet)",
                     "config": asdict(cfg), **{k: v for k, v in info.items() if k != "history"},
                     "history": info.get("history", [])},
        "unet": unet.card.get("sha256") if hasattr(unet, "card") else None,
        **(extra or {}),
    }
    card["sha256"] = sha256_file(weights)
    _atomic_text(out_dir / "sax_phdnet.json", dumps_strict(card) + "\n")
    return evaluate_into_card(card, out_dir, unet, sets)


def recalibrate_bundle(out_dir: Path, unet, sets: dict[str, SampleSet]) -> dict:
    """Re-calibrate the shipped high/low thresholds of an existing ``sax_phdnet`` bundle in ``out_dir``
    for another heatmap U-Net (its positions enter the agreement confidence), without retraining
    PHD-Net, and rewrite the evaluation table of the card. ``sets`` as in :func:`write_bundle`."""
    card = json.loads((Path(out_dir) / "sax_phdnet.json").read_text(encoding="utf-8"))
    card["unet"] = unet.card.get("sha256") if hasattr(unet, "card") else None
    return evaluate_into_card(card, Path(out_dir), unet, sets)


def evaluate_into_card(card: dict, out_dir: Path, unet, sets: dict[str, SampleSet]) -> dict:
    """Calibrate every confidence method on the first set, evaluate them on all sets (Schobs et al.
    2021, Table 2) and write the shipped method's thresholds and the table into the card
    (``sax_phdnet.json`` / ``.md`` in ``out_dir``, written atomically). Returns the card."""
    from CardiacLandmarksLib.confidence.phdnet import PhdNetConfidence
    from CardiacLandmarksLib.evaluation.confidence import METHODS, confidence_table, format_confidence_table

    phd = PhdNetConfidence.load("cpu", models_dir=out_dir)
    shipped = card["shipped"]
    rows = confidence_table(unet=unet, phd=phd, per_landmark=True, sets=sets)
    method = shipped.get("mode", "agreement")
    by_method = {m: next(r["thresholds"] for r in rows if r["method"] == m and isinstance(r["thresholds"], dict))
                 for m in METHODS}
    card["thresholds"]["high_confidence"] = dict(by_method[method])
    card["thresholds"]["by_method"] = by_method
    card["evaluation"] = rows
    card["evaluation_text"] = format_confidence_table([r for r in rows if r["landmark"] == "all"])
    _atomic_text(out_dir / "sax_phdnet.json", dumps_strict(card) + "\n")
    _atomic_text(out_dir / "sax_phdnet.md", card_markdown(card))
    return card


def _atomic_text(path: Path, text: str) -> None:
    from CardiacLandmarksLib.io.atomic import atomic_write_text

    atomic_write_text(path, text)


def card_markdown(card: dict) -> str:
    """Human-readable model card (Markdown) from the card dict."""
    arch, sh = card["architecture"], card["shipped"]
    thr = card["thresholds"]
    lines = [
        f"# {card['name']} {card['version']}: PHD-Net landmark confidence (SAX)",
        "",
        f"**Method**: {card['method']}.",
        "",
        f"**Purpose**: {card['purpose']}.",
        "",
        f"**Architecture**: {arch['type']}, three 3x3 conv + BN + ReLU + 2x2 max-pool stages (8x8-pixel patches), "
        f"{arch['n_deep']} more 3x3 convs at patch resolution, width {arch['width']}, two 1x1-conv branches "
        f"({'-'.join(str(w) for w in arch['head_widths'])}): patch heatmap ({arch['n_landmarks']} ch, sigmoid) and "
        f"log-scaled displacement ({2 * arch['n_landmarks']} ch); {arch['parameters']:,} parameters.",
        "",
        f"**Input**: canvas {card['input']['canvas_px']} px at {card['input']['canvas_mm']} mm/px, {card['input']['intensity']}.",
        "",
        f"**Candidate Smoothing**: {card['candidate_smoothing']}.",
        "",
        f"**Shipped confidence**: mode `{sh.get('mode')}` "
        f"({', '.join(f'{k} {v}' for k, v in sh.items() if k not in ('mode', 'why', 'gate_why', 'stack_gate_why'))}).",
        "",
        sh.get("why", ""),
        "",
        *([f"**Gate**: {sh['gate_why']}", ""] if sh.get("gate_why") else []),
        *([f"**Stack gate**: {sh['stack_gate_why']}", ""] if sh.get("stack_gate_why") else []),
        "## Thresholds (flag high when confidence > threshold)",
        "",
        f"Rule: {thr['rule']}.",
        "",
        "The confidence written to landmarks.json / .mrk.json is raw / (raw + threshold): 0.5 at the threshold, "
        "above 0.5 exactly when flagged high, comparable between landmarks.",
        "",
        "| landmark | shipped high-confidence (raw) | PHD-Net presence (alone) | PHD-Net own high |",
        "|---|---|---|---|",
    ]
    for n in card["landmarks"]:
        lines.append(f"| {n} | {thr['high_confidence'].get(n, float('nan')):.4f} | {thr['found'][n]:.4f} | {thr['phdnet_own'][n]:.4f} |")
    lines += ["", "## Evaluation (Schobs et al. 2021, Table 2 layout)", "",
              "x-cal: thresholds calibrated on the other half of the validation patients (2-fold, by patient), "
              "so the flags are judged on patients they were not calibrated on; the other rows use the shipped "
              "thresholds (all validation patients).", "", "```", card.get("evaluation_text", ""), "```", ""]
    flag_method = "gated" if sh.get("max_disagreement_mm") is not None else sh.get("mode")
    per = [r for r in card.get("evaluation", []) if r["landmark"] != "all" and r["method"] == flag_method]
    if per:
        lines += [f"Shipped flag (`{flag_method}`) per landmark:", "", "| set | landmark | n | all mm | high mm | high % | >10 mm | of them low % |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in per:
            lines.append(f"| {r['set']} | {r['landmark']} | {r['n_points']} | {r['mean_error_mm']:.2f} ± {r['sd_error_mm']:.2f} | "
                         f"{r['mean_error_high_mm']:.2f} ± {r['sd_error_high_mm']:.2f} | {100 * r['fraction_high']:.0f} | "
                         f"{r['n_gross']} | {100 * r['gross_flagged_low']:.0f} |")
        lines.append("")
    for key in ("comparison_multi_vs_single", "notes"):
        if key in card:
            lines += [f"## {key.replace('_', ' ')}", "", "```", dumps_strict(card[key], indent=1), "```", ""]
    if card.get("suite"):
        from CardiacLandmarksLib.evaluation.suite import card_section

        lines += ["## Evaluation suite", "", card_section(card["suite"]).strip(), ""]
    tr = card["training"]
    lines += ["## Training", "", f"Data: {tr['data']}. Split: {tr['split']}.",
              f"Config: `{dumps_strict(tr['config'], indent=None)}`. Best epoch {tr.get('best_epoch')}, "
              f"{tr.get('seconds')} s on CPU.",
              "", "Retrain (about 30 min on one CPU thread): `nice -n 10 python -m CardiacLandmarksLib.training.train_phdnet "
              "--out runs/phdnet` (needs the bundled sax_unet and the shared data), then copy `sax_phdnet.{pt,json,md}` "
              "into Resources/Models.", "", f"SHA256 of the weights: `{card['sha256']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m CardiacLandmarksLib.training.train_phdnet --out DIR``: train, calibrate, evaluate, write the bundle."""
    import argparse

    from CardiacLandmarksLib.core.config import data_root
    from CardiacLandmarksLib.datasets.sax import acdc_cases, build_samples, development_split
    from CardiacLandmarksLib.evaluation.confidence import labelled_sets
    from CardiacLandmarksLib.models.loader import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for sax_phdnet.{pt,json,md}")
    ap.add_argument("--data", default=None, help="shared data root (default CARDIAC_LANDMARKS_DATA)")
    ap.add_argument("--epochs", type=int, default=PhdTrainConfig.epochs)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--recalibrate", action="store_true",
                    help="keep the PHD-Net weights in --out and only re-calibrate its thresholds and table for the "
                         "U-Net in --unet-dir (after the U-Net was retrained)")
    ap.add_argument("--unet-dir", default=None, help="folder holding sax_unet.{pt,json} (default: the bundled one)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    root = Path(args.data) if args.data else data_root()
    cfg = PhdTrainConfig(epochs=args.epochs, seed=args.seed)
    train_cases, val_cases = development_split(acdc_cases(root / "acdc"), cfg.val_fraction, cfg.seed)
    unet = load_model("sax", args.device, models_dir=Path(args.unet_dir) if args.unet_dir else None)
    # calibrate on the U-Net's calibration patients where its card names them (v1.4 on), else the validation ones
    calib = [p for p in unet.card.get("training", {}).get("calibration_patients", []) if p.startswith("patient")]
    context = getattr(unet, "in_channels", 1) > 1
    sets = {name: build_samples(cs, context)
            for name, cs in labelled_sets(root, calib or sorted({c.patient for c in val_cases})).items()}
    if args.recalibrate:
        card = recalibrate_bundle(Path(args.out), unet, sets)
        print(card["evaluation_text"])
        return 0
    model, info = train_phdnet(build_samples(train_cases), sets["ACDC val"], Path(args.out) / "sax_phdnet_latest.pt", cfg, args.device)
    shipped = {"mode": "agreement", "agreement_sigma_mm": 3.0, "support_radius_px": 2.0, "max_disagreement_mm": 3.0,
               "max_stack_jump_mm": 6.0, "stack_gate_landmarks": ["A-RVI", "I-RVI"],
               "why": "see the evaluation table; U-Net position, PHD-Net agreement confidence, gated by the U-Net's "
                      "disagreement with itself (confidence.phdnet.consistency_gate)"}
    card = write_bundle(model, cfg, info, Path(args.out), unet, sets, shipped)
    print(card["evaluation_text"])
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
