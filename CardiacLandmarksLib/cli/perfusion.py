"""CLI sub-command ``perfusion``: AHA 16-segment perfusion report from first-pass perfusion series.

Example (one mlperf patient, stress + rest, base + mid)::

    cardiac-landmarks perfusion P_stress_base.nii.gz P_stress_mid.nii.gz P_rest_base.nii.gz \\
        P_rest_mid.nii.gz -o out/P

Condition and level come from the file names (``stress``/``rest``, ``base``/``mid``/``apex``)
unless given (``--condition``/``--level``, once for all inputs or once per input). Quantitative
MBF needs series in contrast concentration (``--concentration``) and an AIF (``--aif``).
RV insertion points: ``--rvi FILE.mrk.json`` per input, or ``--rvi-from DIR`` to reuse the
(possibly corrected) ``<series>_rvi.mrk.json`` of an earlier run.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.cli.study import frame_interval, pixel_size
from CardiacLandmarksLib.core.errors import PerfusionInputError
from CardiacLandmarksLib.core.landmarks import status_line
from CardiacLandmarksLib.io.curves import read_curve
from CardiacLandmarksLib.perfusion.analysis import METRIC_WORDS, value_words
from CardiacLandmarksLib.perfusion.pipeline import per_input, unique_name

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("perfusion", help="AHA 16-segment perfusion report (segmentation, RV insertion, sectors, "
                                         "semi-quantitative indices, Fermi MBF, bull's-eye)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="perfusion series: NIfTI 2D+T files or DICOM folders, one per slice, or a DICOM series of several slices (analysed slice by slice)")
    p.add_argument("-o", "--output", required=True, help="output folder (created)")
    p.add_argument("--condition", action="append", default=None, choices=("stress", "rest", "auto"),
                   help="stress or rest (once for all inputs, or once per input; default: from the name)")
    p.add_argument("--level", action="append", default=None, choices=("base", "mid", "apex", "auto"),
                   help="slice level (once for all, or once per input; default: from the name, else position)")
    p.add_argument("--rvi", action="append", default=None,
                   help="RV insertion markups (.mrk.json with A-RVI and I-RVI) per input, '-' to detect")
    p.add_argument("--rvi-from", default=None, help="folder with <series>_rvi.mrk.json from an earlier run to reuse")
    p.add_argument("--aif", action="append", default=None,
                   help="arterial input function per input (.txt/.csv/.npy/.mat or an image), '-' for none")
    p.add_argument("--concentration", action="store_true",
                   help="the series hold contrast concentration (mmol/L): enables Fermi MBF with --aif")
    p.add_argument("--dt", type=frame_interval, default=None, metavar="SECONDS",
                   help="frame interval in s (default: from trigger times)")
    p.add_argument("--mbf-map", action="append", default=None, help="precomputed MBF map (ml/min/g) per input, '-' for none")
    p.add_argument("--time-axis", default="auto", choices=("auto", "first", "last"),
                   help="which axis of a 3-D image file is time (default: auto)")
    p.add_argument("--pixel-size", type=pixel_size, default=None, help="override the in-plane pixel size (mm)")
    p.add_argument("--no-sax-model", action="store_true", help="do not try the SAX landmark model for the RVI")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="analyse series that differ in patient, matrix or pixel size (warning; no stress/rest "
                        "reserve)")
    p.add_argument("--allow-incomplete", action="store_true",
                   help="analyse a DICOM series whose slices miss frames on the frames all its slices have (every "
                        "value it gives is review); without it such a series is refused by name")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the networks run: auto (the GPU when one is present, else the CPU), cpu or cuda (default auto)")
    p.add_argument("--no-tta", action="store_true",
                   help="skip mirror test-time augmentation of the segmenter and the SAX landmark model (faster; "
                        "for cohorts on CPU)")
    p.set_defaults(func=cmd_perfusion)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    bar = tqdm(total=total, unit="series", disable=not enabled, file=sys.stderr)
    return bar, lambda done, _total: bar.update(done - bar.n)


def series_name(path: Path, description: str, used: set[str]) -> str:
    """File stem (``.nii.gz`` etc. stripped) or DICOM folder name, made unique and file-safe."""
    name = path.name
    for suf in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".hdr", ".img"):
        if name.lower().endswith(suf):
            name = name[: -len(suf)]
            break
    if path.is_dir() and description:
        name = f"{name}_{description}"
    return unique_name(name, used)


def _rvi_from_markups(path: Path, series) -> dict | None:
    from CardiacLandmarksLib.io.markups import read_markups

    lmset = read_markups(path, series)
    out = {}
    for lm in lmset.landmarks:
        if lm.name in ("A-RVI", "I-RVI") and lm.found:
            out[lm.name] = np.asarray(lm.position, float)
    if "A-RVI" not in out:
        raise PerfusionInputError(f"{path.name}: no A-RVI point defined")
    return out


def _load_inputs(args: argparse.Namespace, conds, levels, rvis, aifs, mbfs):
    """One :class:`SeriesInput` per readable input; ``failed`` = ``[(input name, error)]`` for the others."""
    from CardiacLandmarksLib.core.errors import CardiacLandmarksError
    from CardiacLandmarksLib.io.load import load_series
    from CardiacLandmarksLib.perfusion import pipeline as pp

    n = len(args.inputs)
    failed: list[tuple[str, str]] = []
    used: set[str] = set()
    inputs = []
    for k, src in enumerate(args.inputs):
        path = Path(src)
        print(f"[{k + 1}/{n}] loading {path.name}", file=sys.stderr)
        try:  # one unreadable input is reported, the others are analysed
            s = load_series(path, time_axis=args.time_axis)
            if args.pixel_size:
                s.spacing = (args.pixel_size, args.pixel_size, s.spacing[2])
            name = series_name(path, s.description if path.is_dir() else "", used)
            parts = pp.slice_series(s, name)  # a multi-slice series (base, mid, apex in one): one input per slice
            pp.refuse_one_slice_options(path.name, len(parts), [opt for opt, v in (
                ("--rvi", rvis[k]), ("--mbf-map", mbfs[k]), ("--level", levels[k])) if v])
            if len(parts) > 1:
                print(f"  {path.name}: {len(parts)} slices, analysed as {', '.join(n for n, _ in parts)}",
                      file=sys.stderr)
            aif = read_curve(aifs[k]) if aifs[k] else None  # one arterial input function for all its slices
            mbf_map = load_series(mbfs[k]).pixels[0, 0] if mbfs[k] else None
            for part_name, part in parts:
                rvi = None
                if rvis[k]:
                    rvi = _rvi_from_markups(Path(rvis[k]), part)
                elif args.rvi_from:
                    cand = Path(args.rvi_from) / f"{part_name}_rvi.mrk.json"
                    if cand.exists():
                        rvi = _rvi_from_markups(cand, part)
                        logger.info("%s: RV insertion points from %s", part_name, cand)
                inputs.append(pp.SeriesInput(series=part, name=part_name, condition=conds[k], level=levels[k],
                                             rvi_lps=rvi, aif=aif, concentration=args.concentration, dt_s=args.dt,
                                             mbf_map=mbf_map))
        except CardiacLandmarksError as exc:
            failed.append((path.name, f"{type(exc).__name__}: {exc}"))
    return inputs, failed


def _status_line(trust: dict, text: str) -> str:
    """``"[review] <text>  (<check>)"``: a report value's line with its status first and, when not ok, what to
    check (``trust``: the value's ``status`` and ``check`` in the report; no status is review), as ``study`` prints
    its key values (:meth:`CardiacLandmarksLib.study.tasks.KeyValue.line`)."""
    status = trust.get("status") or "review"
    return status_line(status, text, trust.get("check", "") if status != "ok" else "")


def cmd_perfusion(args: argparse.Namespace) -> int:
    """Exit code: 0 all inputs analysed, 1 nothing analysed (error), 3 some inputs failed (named on
    stderr and in run.json); the others are analysed and reported."""
    from CardiacLandmarksLib.io.outputs import finish_run, prepare_output_dir
    from CardiacLandmarksLib.perfusion import pipeline as pp
    from CardiacLandmarksLib.perfusion import report as pr

    n = len(args.inputs)
    conds = per_input(args.condition, n, "--condition")
    levels = per_input(args.level, n, "--level")
    rvis = per_input(args.rvi, n, "--rvi")
    aifs = per_input(args.aif, n, "--aif")
    mbfs = per_input(args.mbf_map, n, "--mbf-map")
    extra_inputs = [x for x in (*rvis, *aifs, *mbfs) if x]
    outdir = prepare_output_dir(args.output, inputs=[*args.inputs, *extra_inputs], hold="perfusion")  # fails before any work
    out = outdir.path
    t0 = time.time()
    inputs, failed = _load_inputs(args, conds, levels, rvis, aifs, mbfs)
    if not inputs:
        raise PerfusionInputError(f"none of the {n} perfusion input(s) could be read: "
                                  + "; ".join(f"{nm}: {msg}" for nm, msg in failed))
    bar, update = _progress(len(inputs), not getattr(args, "no_progress", False))
    try:  # the inputs that could not even be read are named with the others that fail (result.failed)
        result = pp.analyse_perfusion(inputs, device=args.device, use_sax_model=not args.no_sax_model,
                                      progress=update, allow_mismatch=args.allow_mismatch,
                                      allow_incomplete=args.allow_incomplete, tta=not args.no_tta, unread=failed)
    finally:
        bar.close()
    failed = list(result.failed)
    for name, msg in failed:
        print(f"error: {name}: {msg}", file=sys.stderr)
    analyses, summary = result.analyses, result.summary
    for an in analyses:
        print(f"{an.name}: {an.condition}, {an.level or 'level ?'}, {an.series.n_phases} frames, reference frame "
              f"{an.seg.reference_frame}, RVI from {an.rvi_source or 'none'}")
    outdir.begin()
    written = result.write(out)
    metric = pr.primary_metric(summary)
    for c in summary["conditions"]:  # as 'study' shows them: status first, the reason after a value not ok
        g = summary["global"].get(c, {}).get(metric)
        if g:
            print(_status_line(g, f"global {value_words(c, metric)}: {g['mean']:.3f} ± {g['sd']:.3f} "
                                  f"{summary['units'][metric]} ({g['n_pixels']} pixels)"))
    for key, v in summary["global"].get("reserve", {}).items():
        print(_status_line(summary["global"]["reserve_trust"].get(key, {}),
                           f"global {value_words('reserve', key)} (stress/rest): {v:.3f}"))
    n_review = sum(1 for s in summary["segments"].values() for c in summary["conditions"]
                   if c in s and metric in s[c] and s[c][metric].get("status") != "ok")
    if n_review:
        print(f"{n_review} segment value(s) of the {METRIC_WORDS[metric]} are not ok (review or n/a): see the status and check "
              "columns of report.csv")
    warnings = [f"{a.name}: {w}" for a in analyses for w in a.warnings]
    for w in warnings:
        print(f"warning: {w}")
    record = finish_run(outdir, [*args.inputs, *extra_inputs], {k: v for k, v in vars(args).items() if k != "func"},
                        written, models=[{"name": result.model_card.get("name", ""),
                                          "version": result.model_card.get("version", ""),
                                          "sha256": result.model_sha}],
                        warnings=warnings, failed=[{"input": nm, "error": msg} for nm, msg in failed],
                        command="perfusion")
    for m in record.messages:
        print(m)
    print(f"wrote {len(written) + 1} files to {out} in {time.time() - t0:.1f} s")
    if failed:
        print(f"{len(failed)} of {n} input(s) failed: " + ", ".join(nm for nm, _ in failed), file=sys.stderr)
        return 3
    return 0
