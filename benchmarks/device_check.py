"""GPU checks in one prepared run: the shipped GPU path against the CPU path on real images, GPU timings, and every
trainer on CUDA (issue 16; figures in ``benchmarks/README.md``, 'First GPU figures').

Runs the package's own code on the inputs packed by ``benchmarks/device_pack.py`` (the device machine has neither
the shared data nor SimpleITK; the packed series are already loaded, so nothing here calls SimpleITK, and a
placeholder module stands in for it where it is not installed, only so that the package's readers import). Without
a GPU every step runs on the CPU, shortened, which checks the script itself.

Steps (each result, or its error, goes into ``dev.json`` under ``$OUT`` or ``--out``):

* ``sax_cpu_vs_device``: ``analyse_landmarks`` on ACDC patient001 ED and ES on the CPU and on the GPU: points
  found, largest position, confidence and measurement differences, flags that differ.
* ``perfusion``: one 74-frame series segmented on both (seconds with and without the mirror TTA; share of equal
  labels).
* ``steps``: one training step of the SAX U-Net by width (8 to 64) and batch (16, 64), and the CPU augmentation of
  a batch.
* ``train``: the SAX recipe (``train_sax``, fine-tuning v1.3.1 with the presence loss) end to end on the packed subset.
* ``perf_train``: the perfusion trainer (``train_perfusion``) on three packed series, on the GPU and (shortened) on
  the CPU, seconds per iteration.
* ``phd_train`` and ``lax_fit``: the PHD-Net and long-axis trainers for a few epochs.
* ``benchmark``: ``cardiac-landmarks benchmark --json`` (CPU on 2 threads, and the GPU).
* ``train_full`` (only when named, on a pack made with ``device_pack.py --full``): the SAX recipe on the whole
  training split, choosing its epoch on the choice patients and calibrating on the calibration patients as
  ``cardiac-landmarks train`` does; default the fine-tune that v1.7.0 interpolates (16 epochs, lr 1e-3, from
  v1.3.1, presence loss 1), other settings by ``--train-config '{"epochs": 48, "base_channels": 16}'``
  (:class:`~CardiacLandmarksLib.training.train_sax.TrainConfig` fields). Writes ``sax_unet.{pt,json,md}`` under
  ``train_full/`` of the output. The canvases travelled as uint8 (``device_pack.compact``), so recalibrate the
  weights on the real images before comparing them (``training.train_sax.recalibrate``), as the card says.

Run on the device machine, from the repository root: ``python3 benchmarks/device_check.py gpu/ [STEP ...]`` (about
3 minutes on an H200 after the machine's start); here: the same, on the CPU. ``-v`` logs each trainer's epochs.
Several ``train_full`` settings side by side: ``benchmarks/device_arms.sh``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import lzma
import os
import pickle
import sys
import time
import traceback
import types
from pathlib import Path

import numpy as np
import torch

# the package from this checkout: the device machine has a copy of the working tree but nothing installed from it
# (run as a script, only benchmarks/ is on the path)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _placeholders() -> None:
    """Stand-ins for the image readers where they are not installed (the device machine has neither SimpleITK nor
    pydicom): the packed inputs are loaded already and no step calls a reader, but the readers' modules import them.
    A step that did call one would fail on the missing attribute, not give a wrong result."""
    def module(name: str) -> types.ModuleType:
        sys.modules[name] = types.ModuleType(name)
        return sys.modules[name]

    try:
        import SimpleITK  # noqa: F401
    except ImportError:
        module("SimpleITK")
    try:
        import pydicom  # noqa: F401
    except ImportError:
        pydicom = module("pydicom")
        for sub in ("config", "dataelem", "uid"):
            setattr(pydicom, sub, module(f"pydicom.{sub}"))
        pydicom.dataelem.RawDataElement = type("RawDataElement", (), {})
        pydicom.uid.UID = str


_placeholders()

DEV = "cuda" if torch.cuda.is_available() else "cpu"
QUICK = DEV == "cpu"  # no GPU: every step shortened, to check the script


def sax_cpu_vs_device(pack: dict) -> dict:
    from CardiacLandmarksLib.analysis import analyse_landmarks
    from CardiacLandmarksLib.sax.pipeline import SaxOptions

    out: dict = {}
    for name in ("acdc001_ED", "acdc001_ES"):
        runs = {}
        for dev in ("cpu", DEV):
            t = time.perf_counter()
            runs[dev] = analyse_landmarks(pack["series"][name], "sax", SaxOptions(device=dev), check_view=False).landmarks
            out[f"{name}_{dev}_s"] = round(time.perf_counter() - t, 3)
        a = {(p.name, p.slice, p.phase): p for p in runs["cpu"].landmarks}
        b = {(p.name, p.slice, p.phase): p for p in runs[DEV].landmarks}
        both = set(a) & set(b)
        found = [k for k in both if np.isfinite(a[k].position).all() and np.isfinite(b[k].position).all()]
        ma = {m.name: m.value for m in runs["cpu"].measurements}
        mb = {m.name: m.value for m in runs[DEV].measurements}
        out[name] = {
            "points": len(a), "only_on_one": len(set(a) ^ set(b)), "found": len(found),
            "found_differs": int(sum(np.isfinite(a[k].position).all() != np.isfinite(b[k].position).all() for k in both)),
            "max_position_diff_mm": max((float(np.linalg.norm(a[k].position - b[k].position)) for k in found),
                                        default=None),
            "flag_differs": sorted(f"{k[0]} slice {k[1]}: {a[k].flag} / {b[k].flag} ({a[k].doubt or b[k].doubt})"
                                   for k in both if a[k].flag != b[k].flag),
            "max_confidence_diff": max((abs(a[k].confidence - b[k].confidence) for k in both), default=None),
            "max_measurement_diff": max((abs(ma[k] - mb[k]) for k in ma if k in mb and ma[k] is not None
                                         and mb[k] is not None), default=None)}
    return out


def perfusion(pack: dict) -> dict:
    from CardiacLandmarksLib.perfusion import segmentation as ps

    s = pack["series"]["perf_1450949_stress_mid"]
    frames, spacing = s.pixels[:, 0], s.spacing[:2]
    out: dict = {"frames": int(len(frames))}
    labels = {}
    for dev in ("cpu", DEV):
        model = ps.load_model(device=dev)
        ps.segment_series(model, frames, spacing, tta=True)  # warm-up
        t = time.perf_counter()
        labels[dev] = ps.segment_series(model, frames, spacing, tta=True).raw_labels
        out[f"{dev}_tta_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        ps.segment_series(model, frames, spacing, tta=False)
        out[f"{dev}_plain_s"] = round(time.perf_counter() - t, 3)
    out["equal_labels"] = float((labels["cpu"] == labels[DEV]).mean())
    return out


def steps(pack: dict) -> dict:
    from CardiacLandmarksLib.models.unet import UNet2D
    from CardiacLandmarksLib.training.augment import domain_randomise, random_affine_batch

    tr = pack["sets"]["train"]
    x0 = torch.from_numpy(tr.inputs().astype(np.float32)[:16])
    p0 = torch.from_numpy(tr.points[:16])
    m0 = torch.from_numpy(np.concatenate([tr.masks[:16, None], tr.context_masks[:16]], 1).astype(np.int64))
    gen = torch.Generator().manual_seed(0)
    out: dict = {}
    for threads in (2,) if QUICK else (2, 8):
        torch.set_num_threads(threads)
        n = 3 if QUICK else 10
        t = time.perf_counter()
        for _ in range(n):
            x, _p, m = random_affine_batch(x0, p0, 144, gen, masks=m0)
            domain_randomise(x, m, gen)
        out[f"augment_batch16_cpu{threads}_ms"] = round(1000 * (time.perf_counter() - t) / n, 1)
    for base in (8,) if QUICK else (8, 16, 32, 64):
        for batch in (16,) if QUICK else (16, 64):
            net = UNet2D(3, 8, base, 4).to(DEV).to(memory_format=torch.channels_last)
            opt = torch.optim.AdamW(net.parameters(), 1e-3)
            x = torch.randn(batch, 3, 144, 144, device=DEV).contiguous(memory_format=torch.channels_last)

            def one(net=net, opt=opt, x=x):
                loss = net(x).float().square().mean()
                opt.zero_grad()
                loss.backward()
                opt.step()

            for _ in range(3):
                one()
            if DEV == "cuda":
                torch.cuda.synchronize()
            n = 3 if QUICK else 30
            t = time.perf_counter()
            for _ in range(n):
                one()
            if DEV == "cuda":
                torch.cuda.synchronize()
            out[f"step_base{base}_batch{batch}_ms"] = round(1000 * (time.perf_counter() - t) / n, 2)
            out[f"parameters_base{base}"] = sum(p.numel() for p in net.parameters())
    return out


def _float_sets(pack: dict) -> dict:
    for s in pack["sets"].values():
        s.images, s.context = s.images.astype(np.float32), s.context.astype(np.float32)
    return pack["sets"]


def _train_sax_on(sets: dict, note: str, settings: dict, out_dir: Path) -> tuple[dict, float]:
    """``train_sax`` (the real recipe: epoch chosen on ``sets["choice"]``, calibrated on ``sets["calib"]``) on packed
    sample sets instead of the data folder; ``(card, seconds)``."""
    import CardiacLandmarksLib.training.train_sax as ts

    order = iter(["train", "choice", "calib"])  # split_sets' three case lists, built in this order
    ts.split_sets = lambda data, cfg: ([], [], [], note)
    ts.build_samples = lambda cases, context: sets[next(order)]
    t = time.perf_counter()
    card = ts.train_sax(Path("packed"), out_dir, ts.TrainConfig(**settings), device=DEV, progress=False)
    return card, time.perf_counter() - t


def train(pack: dict, folder: Path, out_dir: Path) -> dict:
    sets = _float_sets(pack)
    settings = {"epochs": 2 if QUICK else 6, "lr": 1e-3, "init_weights": str(folder / "v131" / "sax_unet.pt"),
                "presence_weight": 1.0, "threads": 2 if QUICK else 8, "validate_from": 0.0}
    card, seconds = _train_sax_on(sets, "packed subset (device check)", settings, out_dir / "sax_train")
    for f in (out_dir / "sax_train").glob("*.pt"):
        f.unlink()  # the weights of a run on 64 slices are not wanted
    return {"seconds": round(seconds, 1), "epochs": settings["epochs"], "samples": len(sets["train"].images),
            "device": card.get("training", {}).get("device"), "history": card.get("training", {}).get("history")}


def train_full(folder: Path, out_dir: Path, overrides: dict) -> dict:
    from device_pack import expand

    with lzma.open(folder / "pack_full.pkl.xz") as f:
        packed = pickle.load(f)["sets"]
    sets = {name: expand(p) for name, p in packed.items()}
    if QUICK:  # no GPU: check the step on a few batches
        sets = {name: s.subset(np.arange(min(48, len(s.images)))) for name, s in sets.items()}
    settings = {"epochs": 1 if QUICK else 16, "lr": 1e-3, "init_weights": str(folder / "v131" / "sax_unet.pt"),
                "presence_weight": 1.0, "threads": 2 if QUICK else 8, **overrides}
    card, seconds = _train_sax_on(sets, "the bundled recipe's split, packed (device_pack.py --full)", settings,
                                  out_dir / "train_full")
    return {"seconds": round(seconds, 1), "config": settings,
            "samples": {name: len(s.images) for name, s in sets.items()},
            "kept": card.get("training", {}).get("kept"), "validation": card.get("validation")}


def perf_train(pack: dict, out_dir: Path) -> dict:
    from CardiacLandmarksLib.training import train_perfusion as tp

    tp.mlperf_cases = lambda root: pack["perf_cases"]  # the packed series instead of the folder
    tp.load_case = lambda case: pack["perf"][case.series]
    out = {}
    for dev in [DEV] if QUICK else [DEV, "cpu"]:
        iters = (20, 30) if QUICK or dev == "cpu" else (400, 1500)
        cfg = tp.PerfTrainConfig(n_val_patients=1, loc_iters=iters[0], seg_iters=iters[1], threads=2)
        t = time.perf_counter()
        card = tp.train_perfusion(Path("packed"), out_dir / f"perf_train_{dev}", cfg, device=dev)
        seconds = time.perf_counter() - t
        for f in (out_dir / f"perf_train_{dev}").glob("*.pt"):
            f.unlink()
        out[dev] = {"seconds": round(seconds, 1), "iterations": iters, "s_per_iteration": round(seconds / sum(iters), 4),
                    "card_device": card["training"]["device"], "dice_myo": card["validation"]["dice_myo"]["mean"],
                    "not_segmented": card["validation"].get("not_segmented")}
    return out


def phd_train(pack: dict) -> dict:
    from CardiacLandmarksLib.training.train_phdnet import PhdTrainConfig, train_phdnet

    sets = _float_sets(pack)
    cfg = PhdTrainConfig(epochs=2 if QUICK else 10, threads=2)
    t = time.perf_counter()
    model, info = train_phdnet(sets["train"], sets["choice"], None, cfg, device=DEV, progress=False)
    return {"seconds": round(time.perf_counter() - t, 1), "epochs": cfg.epochs, "on": str(next(model.parameters()).device),
            "best_epoch": info.get("best_epoch"), "best_val_mean_error_mm": info.get("best_val_mean_error_mm")}


def lax_fit(pack: dict) -> dict:
    from CardiacLandmarksLib.training import train_lax as tl

    cfg = tl.LaxTrainConfig(epochs=2 if QUICK else 10)
    t = time.perf_counter()
    model, info = tl.fit(pack["lax"], cfg, 3, DEV, progress=False)
    probs = tl.predict(model, pack["lax"].images[:8], DEV)
    return {"seconds": round(time.perf_counter() - t, 1), "epochs": cfg.epochs, "steps_per_epoch": cfg.steps_per_epoch,
            "finite": bool(np.isfinite(probs).all()), "final_loss": info.get("final_loss")}


def benchmark(pack: dict) -> dict:
    from CardiacLandmarksLib.cli import main

    torch.set_num_threads(2)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(["benchmark", "--json", "--repeats", "1" if QUICK else "3"])
    return json.loads(buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pack", type=Path, help="folder written by benchmarks/device_pack.py")
    ap.add_argument("steps", nargs="*", help="steps to run (default all)")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "device_check_out")))
    ap.add_argument("--train-config", default="{}", help="train_full: TrainConfig fields as JSON")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="log the trainers' progress (one line per epoch), so a run stopped at its time limit says how "
                         "far it came")
    args = ap.parse_args(argv)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
    args.out.mkdir(parents=True, exist_ok=True)
    packs: dict = {}

    def pack_() -> dict:  # the checks' pack, read when a step needs it (train_full reads its own)
        if not packs:
            with lzma.open(args.pack / "pack.pkl.xz") as f:
                packs["checks"] = pickle.load(f)
        return packs["checks"]
    res: dict = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0) if DEV == "cuda" else "cpu",
                 "cpu_count": os.cpu_count()}
    steps_ = {"sax_cpu_vs_device": lambda: sax_cpu_vs_device(pack_()), "perfusion": lambda: perfusion(pack_()),
              "steps": lambda: steps(pack_()), "train": lambda: train(pack_(), args.pack, args.out),
              "perf_train": lambda: perf_train(pack_(), args.out), "phd_train": lambda: phd_train(pack_()),
              "lax_fit": lambda: lax_fit(pack_()), "benchmark": lambda: benchmark(pack_()),
              "train_full": lambda: train_full(args.pack, args.out, json.loads(args.train_config))}
    unknown = set(args.steps) - set(steps_)
    if unknown:
        ap.error(f"unknown step(s) {sorted(unknown)}: choose from {list(steps_)}")
    for name, fn in steps_.items():
        if (args.steps and name not in args.steps) or (not args.steps and name == "train_full"):
            continue
        t = time.perf_counter()
        try:
            res[name] = fn()
        except Exception as exc:  # noqa: BLE001 - one step's failure is a result too; the others still run
            traceback.print_exc()
            res[name] = {"error": repr(exc)}
        print(f"== {name} ({time.perf_counter() - t:.1f} s): {json.dumps(res[name], default=str)[:2000]}", flush=True)
        (args.out / "dev.json").write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
