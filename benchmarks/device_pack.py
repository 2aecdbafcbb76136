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


def _subset(samples, n: int):
    s = samples.subset(np.arange(min(n, len(samples.images))))
    s.images = s.images.astype(np.float16)
    s.context = s.context.astype(np.float16)
    return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="folder to write pack.pkl.xz and v131/ into (git-ignored)")
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
