"""SAX landmark speed against the targets of issue 2 (and Xue et al. 2021's 5.6 s CPU / 0.61 s GPU per series).

Prints the figures of ``cardiac-landmarks benchmark --json`` and their ratio to the targets:
model load <= 100 ms; a 10-slice x 25-phase stack <= 10 s on 2 CPU cores (goal 3 s).
Run: ``python benchmarks/bench_sax.py`` (set ``OMP_NUM_THREADS``/``--threads`` to pin cores).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json

import torch

from CardiacLandmarksLib.cli import main

TARGET_LOAD_MS = 100.0
TARGET_STACK_S = 10.0
GOAL_STACK_S = 3.0
XUE_CPU_S = 5.6  # per 30-phase series, Xue et al. 2021


def run(threads: int) -> dict:
    torch.set_num_threads(threads)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(["benchmark", "--json", "--slices", "10", "--phases", "25"])
    return json.loads(buf.getvalue())


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    res = run(ap.parse_args().threads)
    print(json.dumps(res, indent=2))
    cpu = res["cpu"]
    print(f"model load      {res['model_load_ms']:8.1f} ms   ratio to target (100 ms): {res['model_load_ms'] / TARGET_LOAD_MS:.2f}")
    print(f"10x25 stack CPU {cpu['stack_s']:8.2f} s    ratio to target (10 s): {cpu['stack_s'] / TARGET_STACK_S:.2f}, "
          f"to goal (3 s): {cpu['stack_s'] / GOAL_STACK_S:.2f}")
    print(f"per image CPU   {cpu['ms_per_image']:8.2f} ms   (network alone {cpu['network_only_ms_per_image']:.2f} ms)")
    fast = res["cpu_no_tta"]
    print(f"10x25 stack CPU without mirror TTA {fast['stack_s']:.2f} s   ratio to target (10 s): {fast['stack_s'] / TARGET_STACK_S:.2f}")
    if "cuda" in res:
        print(f"10x25 stack GPU {res['cuda']['stack_s']:8.2f} s")
