"""CLI sub-commands of the long-axis job: ``lax-track``, ``lv-length``, ``lax-validate``.

``detect --view 2ch|3ch|4ch|auto`` and ``train --view 2ch|3ch|4ch`` are routed by
:mod:`.commands_sax` to :func:`.lax_pipeline.detect_lax` and
:func:`.training.train_lax.train_lax`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.cli.study import pixel_size, whole_number
from CardiacLandmarksLib.core.errors import InputNotFoundError
from CardiacLandmarksLib.io.jsonsafe import dumps_strict
from CardiacLandmarksLib.io.markups import load_landmarks

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lax-track", help="track long-axis landmarks placed on one phase through the whole cine, "
                                         "then LV length and longitudinal shortening")
    p.add_argument("input", help="long-axis cine (DICOM folder/file or NIfTI/NRRD)")
    p.add_argument("--points", required=True,
                   help="landmarks on one (or more) phases: landmarks.json, a .mrk.json file or a folder of them")
    p.add_argument("-o", "--output", required=True, help="output folder (created)")
    p.add_argument("--view", default=None, choices=("2ch", "3ch", "4ch"), help="view (default: from the points)")
    p.add_argument("--slice", type=whole_number("--slice", 0), default=0, help="slice index k of the cine (default 0)")
    p.add_argument("--ed", default="max", help="ED phase: max (longest LV, default), first, or a phase number")
    p.add_argument("--es", default="min", help="ES phase: min (shortest LV, default) or a phase number")
    p.add_argument("--series-uid", default=None, help="SeriesInstanceUID to pick when a DICOM folder mixes series")
    p.add_argument("--pixel-size", type=pixel_size, default=None, metavar="MM",
                   help="in-plane pixel size (mm) of a cine whose header lost it (default: the size recorded with the "
                        "points' landmarks.json, if any); a file with a real pixel size keeps its own")
    p.add_argument("--phase", type=whole_number("--phase", 0), default=None, metavar="N",
                   help="the phase (0-based) on which points labelled with the landmark's name alone were placed "
                        "(AL-P, IS-P, APEX, as a reader names points placed by hand in Slicer; a .mrk.json does not "
                        "record the phase shown); points labelled 'AL-P s0 p12' carry their own")
    p.set_defaults(func=cmd_track)

    p = sub.add_parser("lv-length", help="LV length per phase and longitudinal shortening from long-axis landmarks")
    p.add_argument("points", help="landmarks.json, a .mrk.json file or a folder of .mrk.json files")
    p.add_argument("--ed", default=None, help="ED phase: max, first, or a phase number (default: the phase the "
                                              "result knows, e.g. from an ED + ES file pair, else max)")
    p.add_argument("--es", default=None, help="ES phase: min or a phase number (default: the phase the result "
                                              "knows, else min)")
    p.add_argument("--view", default=None, choices=("2ch", "3ch", "4ch"), help="view (default: from the points)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_lv_length)

    p = sub.add_parser("lax-validate", help="track the mask-derived ED landmarks of mnms2/001 through its 4CH cine "
                                            "and compare with the ES labels")
    p.add_argument("--data", default=None, help="data root (default: $CARDIAC_LANDMARKS_DATA)")
    p.add_argument("-o", "--output", default=None, help="write validation.json and the PNG here")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_validate)


def _phase_rule(text: str | None, rules: tuple[str, ...]):
    if text is None:
        return None
    t = str(text).strip().lower()
    if t in rules:
        return t
    try:
        return int(t)
    except ValueError:
        raise SystemExit(f"cardiac-landmarks: error: phase rule must be one of {rules} or a number, not {text!r}") from None


def _infer_view(lmset, view):
    from CardiacLandmarksLib.core.landmarks import LANDMARKS_BY_VIEW

    names = {lm.name for lm in lmset.landmarks}
    if lmset.view == "sax" or (names and names <= set(LANDMARKS_BY_VIEW["sax"])):
        raise SystemExit(f"cardiac-landmarks: error: these are short-axis landmarks ({', '.join(sorted(names))}): LV "
                         "length needs the mitral points and the apex of a long-axis result (detect on a 2CH, 3CH "
                         "or 4CH cine)")
    if view:
        return view
    for v in ("2ch", "3ch", "4ch"):
        if set(LANDMARKS_BY_VIEW[v]) - {"APEX"} <= names:
            return v
    raise SystemExit("cardiac-landmarks: error: cannot tell the long-axis view from the landmark names "
                     f"{sorted(names)}; pass --view")


def _print_curve(curve) -> None:
    print(f"view {curve.view.upper()} slice {curve.slice}")
    print("phase  LV length (mm)  status")
    for t, v in zip(curve.phases, curve.lengths_mm):
        mark = " ED" if t == curve.ed_phase else (" ES" if t == curve.es_phase else "")
        low = " (low confidence)" if t in curve.low_phases else ""
        print(f"{t:5d}  {v:8.1f}        {curve.status_of_phase(int(t))}{mark}{low}" if np.isfinite(v)
              else f"{t:5d}       n/a        n/a")
    sh = curve.shortening_pct
    caveat = f" [{curve.shortening_status}{': ' + curve.shortening.caveat() if curve.shortening_status != 'ok' else ''}]" \
        if curve.shortening is not None else ""
    print(f"Longitudinal shortening: {sh:.1f}% (ED phase {curve.ed_phase} by {curve.ed_rule}, ES phase "
          f"{curve.es_phase} by {curve.es_rule}){caveat}" if np.isfinite(sh) else
          "Longitudinal shortening: not computable")
    for n in curve.notes:
        print(f"note: {n}")


def _check_anchors(seed, k: int) -> None:
    """Every landmark of the view needs a found point on slice ``k`` (on any phase) to track from.

    Raises:
        NoAnchorError: naming the landmarks without a point and the slices/phases the file holds.
    """
    from CardiacLandmarksLib.core.landmarks import LANDMARKS_BY_VIEW
    from CardiacLandmarksLib.lax.tracking import NoAnchorError

    missing = [n for n in LANDMARKS_BY_VIEW[seed.view]
               if not any(lm.name == n and lm.slice == k and lm.found for lm in seed.landmarks)]
    if missing:
        held = sorted({(lm.slice, lm.phase) for lm in seed.landmarks if lm.found})
        raise NoAnchorError(f"{', '.join(missing)} {'has' if len(missing) == 1 else 'have'} no placed point on slice "
                            f"{k} in the given points (found points on (slice, phase) {held[:6]}"
                            f"{' ...' if len(held) > 6 else ''}); place all of {list(LANDMARKS_BY_VIEW[seed.view])} "
                            "on one phase, or pass --slice")


def recorded_pixel_size(points: str | Path) -> float | None:
    """The in-plane pixel size recorded with a result's points (``landmarks.json`` ``source_pixel_size_mm``, the
    file itself or the one in a result folder), or None (none recorded, or only ``.mrk.json`` point lists)."""
    from CardiacLandmarksLib.core.errors import CardiacLandmarksError

    p = Path(points)
    f = p / "landmarks.json" if p.is_dir() else p
    if not (f.is_file() and f.name.endswith(".json") and not f.name.endswith(".mrk.json")):
        return None
    try:
        return load_landmarks(f).source_pixel_size_mm
    except CardiacLandmarksError:
        return None  # named by the load of the points that follows


def cmd_track(args: argparse.Namespace) -> int:
    from CardiacLandmarksLib.core.landmarks import LANDMARKS_BY_VIEW
    from CardiacLandmarksLib.io import markups
    from CardiacLandmarksLib.io.load import load_series
    from CardiacLandmarksLib.io.outputs import finish_run, prepare_output_dir
    from CardiacLandmarksLib.lax.measurements import (
        check_phase_choice,
        lv_length_curve,
        lv_length_measurements,
    )
    from CardiacLandmarksLib.lax.report import render_lax_png
    from CardiacLandmarksLib.lax.tracking import NoAnchorError, track_landmarks
    from CardiacLandmarksLib.sax import report

    # fails before any work; the points' folder may be the output (a result re-tracked in place)
    outdir = prepare_output_dir(args.output, inputs=[args.input, args.points], allow_input_folder=True,
                                hold="lax-track")
    series = load_series(args.input, series_uid=args.series_uid)
    # the points' positions are in the scale they were placed at: a pixel size given then is recorded with them
    mm = args.pixel_size or recorded_pixel_size(args.points)
    if mm is not None:
        from CardiacLandmarksLib.io.checks import given_pixel_size

        note = given_pixel_size(series, mm)
        if note:
            print(f"note: {note}")
    if args.phase is not None and args.phase >= series.n_phases:
        from CardiacLandmarksLib.core.errors import OptionError

        raise OptionError(f"--phase {args.phase}: the cine has {series.n_phases} phases (0-{series.n_phases - 1})")
    seed = load_landmarks(args.points, series, bare_names=True, bare_phase=args.phase)
    if not seed.landmarks:  # it said 'cannot tell the long-axis view from the landmark names []; pass --view'
        from CardiacLandmarksLib.core.errors import InvalidMarkupsError

        raise InvalidMarkupsError(
            f"no landmark read from {args.points}: label each point with its name and, on a cine, give the phase "
            "the points were placed on (--phase N), or label them '<name> s<slice> p<phase>' ('AL-P s0 p12')")
    seed.view = _infer_view(seed, args.view)
    seed.source = seed.source or str(series.source)
    _check_anchors(seed, args.slice)
    ed, es = _phase_rule(args.ed, ("max", "first")), _phase_rule(args.es, ("min",))
    check_phase_choice(series.n_phases, ed, es)  # a phase the cine cannot have fails before tracking
    tracked = track_landmarks(series, seed, k=args.slice)
    tracked.source_pixel_size_mm = (series.metadata or {}).get("pixel_size_given_mm")
    missing = [n for n in LANDMARKS_BY_VIEW[seed.view]
               if not any(lm.name == n and lm.slice == args.slice and lm.found for lm in tracked.landmarks)]
    if missing:
        raise NoAnchorError(f"{', '.join(missing)} could not be tracked on slice {args.slice}: no output written")
    tracked.measurements = lv_length_measurements(tracked, seed.view, ed=ed, es=es)
    outdir.begin()
    out = outdir.path
    written = [report.write_landmarks_json(tracked, out / "landmarks.json"),
               report.write_measurements_csv(tracked.measurements, out / "measurements.csv")]
    written += list(markups.write_markups(tracked, out))
    curve = lv_length_curve(tracked, seed.view, args.slice, ed=ed, es=es, n_phases=series.n_phases)
    written.append(render_lax_png(series, tracked, out / "lv_length.png", k=args.slice, curve=curve))
    record = finish_run(outdir, [args.input, args.points], {k: v for k, v in vars(args).items() if k != "func"},
                        written, models=[dict(tracked.model or {})], command="lax-track")
    _print_curve(curve)
    from CardiacLandmarksLib.cli import written_lines

    print("\n".join(written_lines([*written, record.path])))
    for m in record.messages:
        print(m)
    return 0


def cmd_lv_length(args: argparse.Namespace) -> int:
    from CardiacLandmarksLib.lax.measurements import lv_length_curve

    lmset = load_landmarks(args.points)
    view = _infer_view(lmset, args.view)
    ed, es = _phase_rule(args.ed, ("max", "first")), _phase_rule(args.es, ("min",))
    slices = sorted({lm.slice for lm in lmset.landmarks})
    curves = [lv_length_curve(lmset, view, k, ed=ed, es=es) for k in slices]
    if args.json:
        print(dumps_strict([c.to_dict() for c in curves], indent=1))
    else:
        for c in curves:
            _print_curve(c)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from CardiacLandmarksLib.core.config import data_root
    from CardiacLandmarksLib.evaluation.lax import validate_mnms2
    from CardiacLandmarksLib.io.outputs import finish_run, prepare_output_dir
    from CardiacLandmarksLib.lax.report import render_lax_png

    root = Path(args.data) if args.data else data_root()
    if not (root / "mnms2" / "001").exists():
        raise InputNotFoundError(f"{root / 'mnms2' / '001'} not found (set CARDIAC_LANDMARKS_DATA or --data)")
    outdir = prepare_output_dir(args.output, hold="lax-validate") if args.output else None  # a bad output path fails before any work
    res = validate_mnms2(root)
    d = res.to_dict()
    if outdir is not None:
        from CardiacLandmarksLib.io.atomic import atomic_write_text

        outdir.begin()
        out = outdir.path
        written = [atomic_write_text(out / "validation.json", dumps_strict(d, indent=1) + "\n"),
                   render_lax_png(res.series, res.tracked, out / "mnms2_001_tracking.png", curve=res.curve_labelled,
                                  reference=res.reference,
                                  title="mnms2/001 4CH: tracked from ED labels (+/x), derived labels (o)")]
        record = finish_run(outdir, [root / "mnms2" / "001"], {k: v for k, v in vars(args).items() if k != "func"},
                            written, models=[dict(res.tracked.model or {})], command="lax-validate")
        for m in record.messages:
            print(m)
    if args.json:
        print(dumps_strict(d, indent=1))
        return 0
    print(f"ED = cine phase {res.ed_phase}, ES = cine phase {res.es_phase}")
    for n, e in res.es_error_mm.items():
        print(f"  {n}: ES error {e:.2f} mm (tracking confidence {res.es_confidence[n]:.2f})")
    print(f"  mean ES error {np.mean(list(res.es_error_mm.values())):.2f} mm")
    _print_curve(res.curve)
    print(f"Shortening with the labelled ED/ES phases: {res.shortening_labelled_phases_pct:.1f}%; "
          f"from the two derived label sets: {res.shortening_derived_pct:.1f}%")
    return 0
