"""Model cards: the JSON card (machine-read by :mod:`..inference`) rendered as Markdown for people."""

from __future__ import annotations

import json
from pathlib import Path


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def render_markdown(card: dict, extra_sections: dict[str, str] | None = None) -> str:
    """Markdown text of a model card dict (architecture, input, data and split, metrics, thresholds, SHA256)."""
    arch = card.get("architecture", {})
    tr = card.get("training", {})
    lines = [f"# Model card: {card['name']} v{card.get('version', '?')}", ""]
    if card.get("summary"):
        lines += [card["summary"], ""]
    lines += ["## Architecture", "", "| key | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in arch.items()]
    lines += ["", "## Input", "", "| key | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in card.get("input", {}).items()]
    lines += ["", "## Training data and split", "", f"- Data: {tr.get('data', '?')}"]
    if "train_patients" in tr:
        lines.append(f"- Split by patient (seed {tr.get('config', {}).get('seed', '?')}): "
                     f"{len(tr['train_patients'])} training, {len(tr.get('val_patients', []))} validation patients; "
                     f"{tr.get('n_train_samples', '?')} / {tr.get('n_val_samples', '?')} slice images.")
        lines.append(f"- Validation patients: {', '.join(tr.get('val_patients', []))}")
    if "config" in tr:
        lines.append(f"- Hyper-parameters: `{json.dumps(tr['config'])}`")
    if "seconds" in tr:
        lines.append(f"- Trained on {tr.get('device', '?')} in {tr['seconds'] / 60:.1f} min.")
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
    lines += ["", "## Integrity", "", f"SHA256 of the weights file: `{card.get('sha256', '?')}` (checked on every load).", ""]
    return "\n".join(lines)


def write_markdown(card: dict, path: Path, extra_sections: dict[str, str] | None = None) -> Path:
    """Write :func:`render_markdown` of ``card`` to ``path``."""
    from CardiacLandmarksLib.io.atomic import atomic_write_text

    path = Path(path)
    atomic_write_text(path, render_markdown(card, extra_sections))
    return path
