"""Pack the inputs of ``benchmarks/device_check.py`` for a machine with a GPU that has neither the shared data nor
SimpleITK (the device machine of this workplace: its calls carry at most 64 MiB, and its Python has torch but not
SimpleITK, pydicom or nibabel).

Loads, through the package's own readers: ACDC patient001 ED and ES and mlperf 1450949 stress mid (the CPU / GPU
agreement and timings), the first samples of the SAX training, choice and calibration sets of the bundled model's
split (the SAX and PHD-Net trainers), three mlperf stress-mid series (the perfusion trainer) and the long-axis 4CH
samples (the long-axis trainer), and writes them as one LZMA-compressed pickle (about 30 MB) with the v1.3.1 SAX
checkpoint the SAX recipe fine-tunes. Nothing of it may be committed (patient data): write it into a folder that
``.git/info/exclude`` ignores.

Run: ``python benchmarks/device_pack.py gpu/`` (under a minute on 2 cores), then on the device
machine ``python3 benchmarks/device_check.py gpu/`` (see ``benchmarks/README.md``, 'First GPU figures').
``--full``: the whole SAX split of the bundled recipe instead (:func:`compact`), for training the real recipe there:
``python benchmarks/device_pack.py --full gpu_train/`` (a few minutes), then ``python3 benchmarks/device_check.py
gpu_train/ train_full [--train-config JSON]``.
"""

from __future__ import annotations

import argparse
import lzma
import pickle
import subprocess
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.core.config import data_root

#: the commit whose sax_unet is v1.3.1, the starting point of the SAX recipe (model card, 'How to retrain')
V131_COMMIT = "252eb5b"
#: samples of each SAX set packed (float16): enough to run every step of the trainers, small enough to travel
N_TRAIN, N_CHOICE, N_CALIB = 64, 40, 40
PERFUSION_PATIENTS = ("1132584", "119151", "1292260")  # two training patients and one validation patient


def compact(samples) -> dict:
    """A :class:`~CardiacLandmarksLib.datasets.sax.SampleSet` made small enough to travel (the whole SAX training split
    in about 43 MB with LZMA): the canvases as uint8 (``round(x / 1.5 * 255)``: the inputs are normalised to 0-1.5,
    so the step is 0.006), each stack-context channel as the index of the identical canvas it is (neighbours share
    their stack's canvas grid; stored as uint8 itself where none is identical), the rest as it is."""
    images = np.clip(np.rint(samples.images / 1.5 * 255), 0, 255).astype(np.uint8)
    index = {im.tobytes(): i for i, im in enumerate(samples.images)}
    context_idx = np.full(samples.context.shape[:2], -1, np.int32)
    extra = {}
    for i, channels in enumerate(samples.context):
        for c, im in enumerate(channels):
            j = index.get(im.tobytes())
            if j is None:
                extra[(i, c)] = np.clip(np.rint(im / 1.5 * 255), 0, 255).astype(np.uint8)
            else:
                context_idx[i, c] = j
    fields = {k: v for k, v in vars(samples).items() if k not in ("images", "context")}
    return {"images": images, "context_idx": context_idx, "context_extra": extra, "fields": fields}


def expand(packed: dict):
    """The :class:`~CardiacLandmarksLib.datasets.sax.SampleSet` of :func:`compact` (float32 canvases again, to the
    uint8 step)."""
    from CardiacLandmarksLib.datasets.sax import SampleSet

    images = packed["images"].astype(np.float32) * np.float32(1.5 / 255)
    context = images[np.maximum(packed["context_idx"], 0)]
    for (i, c), im in packed["context_extra"].items():
        context[i, c] = im.astype(np.float32) * np.float32(1.5 / 255)
    return SampleSet(images=images, context=context, **packed["fields"])


def _subset(samples, n: int):
    s = samples.subset(np.arange(min(n, len(samples.images))))
    s.images = s.images.astype(np.float16)
    s.context = s.context.astype(np.float16)
    return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="folder to write pack.pkl.xz and v131/ into (git-ignored)")
    ap.add_argument("--full", action="store_true",
                    help="instead: the whole SAX training, choice and calibration split of the bundled recipe, compact "
                         "(pack_full.pkl.xz, about 43 MB: carry it alone, e.g. in gpu_train/), for device_check.py's "
                         "train_full step")
    args = ap.parse_args(argv)
    from CardiacLandmarksLib.datasets.sax import build_samples
    from CardiacLandmarksLib.io.load import load_series
    from CardiacLandmarksLib.training import train_lax as tl
    from CardiacLandmarksLib.training import train_perfusion as tp
    from CardiacLandmarksLib.training.train_sax import TrainConfig, split_sets

    root = data_root()
    v131 = args.out / "v131"
    v131.mkdir(parents=True, exist_ok=True)
    repo = Path(__file__).resolve().parents[1]
    for suffix in ("pt", "json"):
        blob = subprocess.run(["git", "show", f"{V131_COMMIT}:Resources/Models/sax_unet.{suffix}"], cwd=repo,
                              check=True, capture_output=True).stdout
        (v131 / f"sax_unet.{suffix}").write_bytes(blob)
    train, choice, calib, _ = split_sets(root / "acdc", TrainConfig(init_weights=str(v131 / "sax_unet.pt")))
    if args.full:
        packed = {name: compact(build_samples(cases, True)) for name, cases in
                  (("train", train), ("choice", choice), ("calib", calib))}
        with lzma.open(args.out / "pack_full.pkl.xz", "wb", preset=6) as f:
            pickle.dump({"sets": packed}, f, protocol=5)
        print(f"wrote {args.out / 'pack_full.pkl.xz'} ({(args.out / 'pack_full.pkl.xz').stat().st_size / 1e6:.1f} MB; "
              + ", ".join(f"{k} {len(v['images'])} samples" for k, v in packed.items()) + ")")
        return 0
    sets = {"train": _subset(build_samples(train[:12], True), N_TRAIN),
            "choice": _subset(build_samples(choice[:4], True), N_CHOICE),
            "calib": _subset(build_samples(calib[:4], True), N_CALIB)}
    series = {name: load_series(root / rel) for name, rel in (
        ("acdc001_ED", "acdc/patient001_ED.nii.gz"), ("acdc001_ES", "acdc/patient001_ES.nii.gz"),
        ("perf_1450949_stress_mid", "perfusion/mlperf/1450949_stress_mid.nii.gz"))}
    cases = [c for c in tp.mlperf_cases(root / "perfusion" / "mlperf")
             if c.series.endswith("stress_mid") and c.patient in PERFUSION_PATIENTS]
    pack = {"sets": sets, "series": series, "perf_cases": cases, "perf": {c.series: tp.load_case(c) for c in cases},
            "lax": tl.shared_samples("4ch", root)}
    with lzma.open(args.out / "pack.pkl.xz", "wb", preset=6) as f:
        pickle.dump(pack, f, protocol=5)
    print(f"wrote {args.out / 'pack.pkl.xz'} ({(args.out / 'pack.pkl.xz').stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
