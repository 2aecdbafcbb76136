"""Perfusion segmentation speed: one 2D+T series through :func:`segment_series`, with and without the
segmenter's mirror test-time augmentation (``input.flip_tta`` of the model card, perfusion_unet v1.2.0 on).

Prints seconds per series (median of ``--repeats`` runs after a warm-up) and the ratio TTA / plain.
Run: ``python benchmarks/bench_perfusion.py [--series <mlperf NIfTI>] [--threads 2]`` (default series:
``<data root>/perfusion/mlperf/1450949_stress_mid.nii.gz``, a validation patient of the bundled model).
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np
import torch

from CardiacLandmarksLib.core.config import data_root
from CardiacLandmarksLib.io.load import load_series
from CardiacLandmarksLib.perfusion import segmentation as ps


def run(series: str | None, threads: int, repeats: int) -> dict:
    torch.set_num_threads(threads)
    logging.getLogger("CardiacLandmarksLib.io.image").setLevel(logging.WARNING)
    path = series or str(data_root() / "perfusion" / "mlperf" / "1450949_stress_mid.nii.gz")
    img = load_series(path)
    frames, spacing = img.pixels[:, 0], img.spacing[:2]
    model = ps.load_model()
    out = {"series": path, "frames": int(len(frames)), "threads": threads, "model": model.version,
           "flip_tta": list(model.card.get("input", {}).get("flip_tta", []))}
    for name, tta in (("tta_s", True), ("plain_s", False)):
        ps.segment_series(model, frames, spacing, tta=tta)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            ps.segment_series(model, frames, spacing, tta=tta)
            times.append(time.perf_counter() - t0)
        out[name] = float(np.median(times))
    out["ratio"] = out["tta_s"] / out["plain_s"]
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    r = run(a.series, a.threads, a.repeats)
    print(json.dumps(r, indent=2))
    print(f"perfusion series ({r['frames']} frames): {r['plain_s']:.2f} s plain, {r['tta_s']:.2f} s with mirror TTA "
          f"(x{r['ratio']:.2f})")
