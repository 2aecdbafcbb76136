"""Cohort throughput: studies per hour and memory per worker, at 1 and 2 Dask workers.

    python benchmarks/batch_throughput.py [--patients 6] [--workers 1 2] [--json]

Builds a manifest of the first N ACDC patients of the data root (ED + ES stacks, paths into the
shared data, nothing copied), runs ``run_batch`` into a fresh temporary folder for each worker
count (a real LocalCluster on 127.0.0.1, one thread per worker) and prints:

* wall time of the whole run (cluster start, one model load per worker, every study, cohort
  table) and the studies per hour it gives;
* median seconds per study inside a worker (analysis + writing, from ``timings.csv``);
* peak resident memory per worker process (``ru_maxrss``).

Run it on a quiet machine: the figures scale with whatever else shares the cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import tempfile
import time
from pathlib import Path

from CardiacLandmarksLib.batch.engine import run_batch
from CardiacLandmarksLib.core.config import data_root


def acdc_manifest(acdc: Path, n: int, path: Path) -> Path:
    """A manifest of the first ``n`` ACDC patients present in ``acdc`` (with height and weight)."""
    rows = [r for r in csv.DictReader(open(acdc / "acdc_info.csv")) if (acdc / f"{r['patient']}_ED.nii.gz").exists()]
    lines = ["study_id,path,height_cm,weight_kg"]
    for r in rows[:n]:
        lines.append(f"{r['patient']},{acdc}/{r['patient']}_*.nii.gz,{r['height_cm']},{r['weight_kg']}")
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=6)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--data", default=None, help="ACDC folder (default: <data root>/acdc)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    acdc = Path(args.data) if args.data else data_root() / "acdc"
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        manifest = acdc_manifest(acdc, args.patients, Path(tmp) / "manifest.csv")
        for w in args.workers:
            out = Path(tmp) / f"w{w}"
            t = time.perf_counter()
            s = run_batch(manifest, out, workers=w, progress=False)
            wall = time.perf_counter() - t
            secs = [float(r["seconds"]) for r in csv.DictReader(open(out / "timings.csv")) if r["seconds"]]
            results.append({"workers": w, "studies": s.n_run, "done": s.n_done, "failed": s.n_failed,
                            "wall_s": round(wall, 1), "studies_per_hour": round(3600 * s.n_run / wall),
                            "median_s_per_study_in_worker": round(statistics.median(secs), 2),
                            "peak_rss_mb_per_worker": sorted(s.worker_peak_rss_mb.values())})
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("| workers | studies | wall s | studies / hour | median s / study (in worker) | peak RSS / worker |")
    print("|---|---|---|---|---|---|")
    for r in results:
        mem = ", ".join(f"{m:.0f} MB" for m in r["peak_rss_mb_per_worker"])
        print(f"| {r['workers']} | {r['studies']} | {r['wall_s']} | {r['studies_per_hour']} | "
              f"{r['median_s_per_study_in_worker']} | {mem} |")


if __name__ == "__main__":
    main()
