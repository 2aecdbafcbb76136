"""Model cards: the JSON card (machine-read by :mod:`..inference`) rendered as Markdown for people."""

from __future__ import annotations

import json
import math
from pathlib import Path

#: validation figures a SAX landmark model must reach, per landmark, before ``train`` advises bundling
#: it: detection rate (share of present landmarks found) and mean L2 error on the validation patients.
#: The shipped v1.3.1 has 95.1-95.5% and 1.2-4.0 mm; Xue et al. 2021 report 2-3.5 mm.
SAX_BUNDLE_TARGETS = {"detection_rate": 0.90, "mean_error_mm": 5.0}
#: long-axis models are trained on a handful of subjects, and their gross failures are expected (and flagged low):
#: the held-out median error of each landmark must be within 10 mm, so that a model whose typical point misses
#: the landmark is not advised for bundling (it was: only finite figures were required, and a 1-epoch model with
#: 80 mm errors 'may be copied into Resources/Models'). Chosen knowing the bundled v0.2.0's leave-one-subject-out
#: medians (AL-P 4.3, IS-P 2.8, APEX 4.5 mm; its means 5.4, 7.3, 31.3 mm), which it meets.
LAX_BUNDLE_TARGETS: dict[str, float] = {"median_error_mm": 10.0}


def _fmt(v) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return "n/a"
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def bundle_verdict(validation: dict, targets: dict[str, float], required=("mean_error_mm",)) -> dict:
    """Whether a trained model's validation figures allow bundling it, and why not.

    Args:
        validation: ``{landmark: {metric: value}}`` (the card's ``validation``).
        targets: ``{"detection_rate": minimum, "mean_error_mm": maximum, "median_error_mm": maximum}`` (any may be
            absent).
        required: metrics every landmark must report as a finite number (a NaN error means the
            landmark was never detected on the validation data).

    Returns:
        ``{"bundle": bool, "reasons": [str], "targets": targets}``; ``bundle`` is False when there
        are no validation figures, any required figure is missing or not finite, the detection rate
        is below its target or the mean error above its target.
    """
    reasons = []
    if not validation or not any(isinstance(v, dict) for v in validation.values()):
        reasons.append("no validation figures (no held-out data)")
    for name, m in validation.items():
        if not isinstance(m, dict):
            continue
        for key in required:
            v = m.get(key)
            if v is None or not isinstance(v, int | float) or not math.isfinite(float(v)):
                reasons.append(f"{name}: {key} is {'missing' if v is None else 'not a number'} "
                               "(never detected or not evaluable on the validation data)")
        for key, v in m.items():
            if isinstance(v, float) and not math.isfinite(v) and key not in required and key in targets:
                reasons.append(f"{name}: {key} is not a number")
        det, target = m.get("detection_rate"), targets.get("detection_rate")
        if target is not None and isinstance(det, int | float) and math.isfinite(det) and det < target:
            reasons.append(f"{name}: detection {100 * det:.1f}% is below the target {100 * target:.0f}%")
        for key, word in (("mean_error_mm", "mean"), ("median_error_mm", "median")):
            err, target = m.get(key), targets.get(key)
            if target is not None and isinstance(err, int | float) and math.isfinite(err) and err > target:
                reasons.append(f"{name}: {word} error {err:.2f} mm is above the target {target:.1f} mm")
    return {"bundle": not reasons, "reasons": reasons, "targets": dict(targets)}


def verdict_text(verdict: dict) -> str:
    """One paragraph for the card and the ``train`` command: bundle or not, and why."""
    targets = verdict.get("targets", {})
    parts = []
    if "detection_rate" in targets:
        parts.append(f"detection >= {100 * targets['detection_rate']:.0f}%")
    for key, word in (("mean_error_mm", "mean"), ("median_error_mm", "median")):
        if key in targets:
            parts.append(f"{word} error <= {targets[key]:.1f} mm")
    t_txt = ", ".join(parts + ["finite figures for every landmark"])
    if verdict.get("bundle"):
        return f"Meets the bundle targets on its validation data ({t_txt}); it may be copied into Resources/Models."
    return ("DO NOT BUNDLE: the validation figures miss the targets (" + t_txt + "): "
            + "; ".join(verdict.get("reasons", [])) + ". Train longer or on more data and check the figures.")


def render_markdown(card: dict, extra_sections: dict[str, str] | None = None) -> str:
    """Markdown text of a model card dict (architecture, input, data and split, metrics, thresholds, SHA256)."""
    arch = card.get("architecture", {})
    tr = card.get("training", {})
    lines = [f"# Model card: {card['name']} v{card.get('version', '?')}", ""]
    if card.get("summary"):
        lines += [card["summary"], ""]
    if card.get("bundle_verdict"):
        lines += ["## Bundle verdict", "", verdict_text(card["bundle_verdict"]), ""]
    lines += ["## Architecture", "", "| key | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in arch.items()]
    lines += ["", "## Input", "", "| key | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in card.get("input", {}).items()]
    lines += ["", "## Training data and split", "", f"- Data: {tr.get('data', '?')}"]
    if "train_patients" in tr and tr.get("calibration_patients"):  # v1.4 on: choice and calibration sets
        lines.append(f"- Split by patient (seed {tr.get('config', {}).get('seed', '?')}): "
                     f"{len(tr['train_patients'])} training, {len(tr.get('val_patients', []))} choice and "
                     f"{len(tr['calibration_patients'])} calibration patients / cases; {tr.get('n_train_samples', '?')} / "
                     f"{tr.get('n_val_samples', '?')} / {tr.get('n_calibration_samples', '?')} slice images"
                     + (f" ({tr['split_note']})" if tr.get("split_note") else "") + ".")
        lines.append(f"- Choice patients (epoch, segmentation shares): {', '.join(tr.get('val_patients', []))}")
        lines.append(f"- Calibration patients (thresholds; the validation metrics below): "
                     f"{', '.join(tr['calibration_patients'])}")
        if tr.get("n_train_samples_by_sequence"):
            lines.append(f"- Training slice images by sequence: {json.dumps(tr['n_train_samples_by_sequence'])}")
    elif "train_patients" in tr:
        lines.append(f"- Split by patient (seed {tr.get('config', {}).get('seed', '?')}): "
                     f"{len(tr['train_patients'])} training, {len(tr.get('val_patients', []))} validation patients; "
                     f"{tr.get('n_train_samples', '?')} / {tr.get('n_val_samples', '?')} slice images.")
        lines.append(f"- Validation patients: {', '.join(tr.get('val_patients', []))}")
    if "config" in tr:
        lines.append(f"- Hyper-parameters: `{json.dumps(tr['config'])}`")
    if "seconds" in tr:
        lines.append(f"- Trained on {tr.get('device', '?')} in {tr['seconds'] / 60:.1f} min.")
    if tr.get("interpolation"):
        ip = tr["interpolation"]
        lines.append(f"- **Not trained itself**: {ip.get('method', 'weight interpolation')} at alpha {ip.get('alpha')} "
                     f"between {ip.get('start')} and {ip.get('finetuned')}; the sample counts, hyper-parameters and training time above "
                     "are the fine-tuned model's (its validation figures below are its own).")
    val = card.get("validation", {})
    if val:
        keys = sorted({k for v in val.values() if isinstance(v, dict) for k in v})
        lines += ["", "## Validation metrics", "", "| landmark | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for name, v in val.items():
            if isinstance(v, dict):
                lines.append(f"| {name} | " + " | ".join(_fmt(v.get(k, '')) for k in keys) + " |")
    fusion = card.get("segmentation_fusion")
    if fusion:
        est = card.get("segmentation_estimate", {})
        lines += ["", "## Segmentation head", "",
                  "Share of the position taken from the derived-label rule applied to the segmentation head "
                  "(chosen on the validation patients; 0 = heatmap peak only): "
                  + ", ".join(f"{k} {_fmt(v)}" for k, v in fusion.items()) + "."]
        if est:
            lines.append("")
            lines.append("Segmentation alone: mean per-slice Dice " + ", ".join(f"{k} {_fmt(v)}" for k, v in est.get("dice", {}).items())
                         + "; landmarks from the rule on it, mean error " + ", ".join(
                             f"{k} {_fmt(v.get('mean_error_mm'))} mm" for k, v in est.get("validation", {}).items()) + ".")
    lines += ["", "## Thresholds", "", "| key | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in card.get("thresholds", {}).items()]
    for title, body in (extra_sections or {}).items():
        lines += ["", f"## {title}", "", body.strip()]
    if card.get("suite"):
        from CardiacLandmarksLib.evaluation.suite import card_section

        lines += ["", "## Evaluation suite", "", card_section(card["suite"]).strip()]
    lines += ["", "## Integrity", "", f"SHA256 of the weights file: `{card.get('sha256', '?')}` (checked on every load).", ""]
    return "\n".join(lines)


def write_markdown(card: dict, path: Path, extra_sections: dict[str, str] | None = None) -> Path:
    """Write :func:`render_markdown` of ``card`` to ``path``."""
    from CardiacLandmarksLib.io.atomic import atomic_write_text

    path = Path(path)
    atomic_write_text(path, render_markdown(card, extra_sections))
    return path
