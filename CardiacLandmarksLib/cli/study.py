"""CLI sub-command ``study``: route every series of a study and run every analysis that applies.

Example::

    cardiac-landmarks study /data/study_0042 -o out/study_0042

STUDY is a DICOM study folder (SAX cine stack, 2CH/3CH/4CH cines, perfusion, LGE, T1,
localisers ...; a SAX stack stored as one series per slice is assembled) or a folder of
NIfTI/NRRD/MHA files with real geometry (``*_ED``/``*_ES`` frame pairs are paired). The
routing table is printed first; then SAX landmarks and RVI angles, LV length and shortening on
the long-axis cines, one AHA perfusion report of all perfusion series (stress and rest, with the reserve), and
the long-axis vs SAX cross-checks. Output: ``study.json``, ``routing.txt``, ``summary.png`` and one folder per
analysis.

Files whose header lost the pixel size or the frame timing, and quantitative perfusion (an arterial input
function curve beside the series in contrast concentration: Fermi MBF)::

    cardiac-landmarks study ../shared/data/perfusion/qperf -o out/qperf --pixel-size 2 --dt 0.5 --concentration

An anonymised export whose one-phase stacks say nothing of their sequence (LGE, or one frame of a cine?) is listed,
not analysed; ``--sequence lge`` takes every such series as LGE, ``--sequence SERIES=cine`` one series (named as in
the routing table's first column)::

    cardiac-landmarks study export/ -o out/export --sequence lge --sequence scan=cine

Sub-command ``apply-review``: after a reader has reviewed the SAX and long-axis result folders of a study output
(Slicer Export, ``cardiac-landmarks review``), recompute the study's key values, cross-checks and status from
the reviewed landmarks (``study.json``, the old one kept as a backup); on a batch output folder, every finished
study and ``cohort.csv`` (:mod:`CardiacLandmarksLib.study.review`)::

    cardiac-landmarks review out/study_0042          # correct / confirm the flagged points, Save
    cardiac-landmarks apply-review out/study_0042    # study.json now holds the reviewed values
    cardiac-landmarks apply-review cohort_out/       # every study of a batch, then cohort.csv
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="route every series of a study (DICOM folder or image files) and run every "
                                     "analysis that applies; one study report",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", nargs="+", help="study folder (or several image files / folders of one study)")
    p.add_argument("-o", "--output", required=True, help="output folder (created)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the networks run: auto (the GPU when one is present, else the CPU), cpu or cuda (default auto)")
    p.add_argument("--no-tta", action="store_true",
                   help="skip mirror test-time augmentation (SAX landmarks, function, perfusion; faster on CPU, a little "
                        "less accurate); long-axis views keep their flag-setting copies")
    p.add_argument("--route-only", action="store_true", help="print the routing table and stop")
    p.add_argument("--sequence", action="append", type=given_sequence, default=[], metavar="[SERIES=]SEQ",
                   help="the sequence (cine, lge or perfusion) of series the study cannot tell from the tags or the "
                        "shape (an anonymised export of one-phase stacks): SEQ alone for every such series, "
                        "SERIES=SEQ for one series (its name in the routing table's first column) whatever was "
                        "recognised; may be repeated")
    p.add_argument("--height", type=float, default=None, metavar="CM",
                   help="the subject's height in cm (with --weight: LV/RV volumes and LV mass indexed to the "
                        "body-surface area, Mosteller; in a batch, the manifest's height_cm column)")
    p.add_argument("--weight", type=float, default=None, metavar="KG", help="the subject's weight in kg (with --height)")
    p.add_argument("--discard-review", action="store_true",
                   help="when OUTPUT holds an earlier run of this study, do not carry the points a reader corrected or "
                        "confirmed there into the new detection (the earlier run is kept in OUTPUT/backup-<time>/ "
                        "either way)")
    add_study_options(p)
    p.set_defaults(func=cmd_study)
    r = sub.add_parser("apply-review", help="recompute a study's (or a batch's) key values, cross-checks and cohort "
                                            "table from the reader's reviewed landmarks",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("path", help="a 'study -o' output folder (study.json) or a 'batch -o' output folder (batch.sqlite)")
    r.set_defaults(func=cmd_apply_review)


def _number(kind: str, ok, need: str):
    """An argparse ``type`` for a finite number for which ``ok(value)`` holds, named ``kind`` in the error, which
    says ``need`` (``"a positive number"``)."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{kind} must be a number, got {text!r}") from None
        if not (math.isfinite(v) and ok(v)):
            raise argparse.ArgumentTypeError(f"{kind} must be {need}, got {text!r}")
        return v

    return parse


def positive_number(kind: str):
    """An argparse ``type`` for a positive finite number (``kind`` names the option in the error)."""
    return _number(kind, lambda v: v > 0, "a positive number")


def non_negative(kind: str):
    """An argparse ``type`` for a finite number of at least 0, named ``kind`` in the error (a loss weight)."""
    return _number(kind, lambda v: v >= 0, "0 or more")


def share(kind: str, *, below_one: bool = False):
    """An argparse ``type`` for a number from 0 to 1 (``below_one``: below 1), named ``kind`` in the error."""
    if below_one:
        return _number(kind, lambda v: 0 <= v < 1, "from 0 to below 1")
    return _number(kind, lambda v: 0 <= v <= 1, "from 0 to 1")


def whole_number(kind: str, lowest: int, highest: int | None = None):
    """An argparse ``type`` for an integer from ``lowest`` (to ``highest``), named ``kind`` in the error: a count of
    epochs, threads, slices or repeats, a port."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{kind} must be a whole number, got {text!r}") from None
        if v < lowest or (highest is not None and v > highest):
            bounds = f"at least {lowest}" if highest is None else f"{lowest} to {highest}"
            raise argparse.ArgumentTypeError(f"{kind} must be {bounds}, got {v}")
        return v

    return parse


def _checked(kind: str, check, text: str) -> float:
    """``text`` as a positive number that ``check`` (a rule of the library raising a CardiacLandmarksError) accepts;
    its message, after the option's name, when it does not."""
    from CardiacLandmarksLib.core.errors import CardiacLandmarksError

    v = positive_number(kind)(text)
    try:
        check(v)
    except CardiacLandmarksError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return v


def pixel_size(text: str) -> float:
    """An argparse ``type`` for ``--pixel-size``: an in-plane pixel size in mm
    (:func:`CardiacLandmarksLib.io.checks.check_pixel_size`), refused before any work."""
    from CardiacLandmarksLib.io.checks import check_pixel_size

    return _checked("--pixel-size", check_pixel_size, text)


def frame_interval(text: str) -> float:
    """An argparse ``type`` for ``--dt``: a perfusion frame interval in seconds
    (:func:`CardiacLandmarksLib.io.checks.check_frame_interval`), refused before any work."""
    from CardiacLandmarksLib.io.checks import check_frame_interval

    return _checked("--dt", check_frame_interval, text)


def add_study_options(p: argparse.ArgumentParser) -> None:
    """The options of a study's analysis shared by ``study`` and ``batch``."""
    p.add_argument("--pixel-size", type=pixel_size, default=None, metavar="MM",
                   help="in-plane pixel size (mm) of image files whose header lost it (1 x 1 mm with a placeholder "
                        "affine, e.g. QPerf's crops); files with a real pixel size keep theirs")
    p.add_argument("--dt", type=frame_interval, default=None, metavar="SECONDS",
                   help="frame interval of perfusion series whose frames carry no timing (Fermi MBF)")
    p.add_argument("--concentration", action="store_true",
                   help="the perfusion series hold contrast concentration (mmol/L): with an arterial input function "
                        "curve in the study (one sample per frame) the study reports Fermi MBF (ml/min/g)")


def study_options(args: argparse.Namespace) -> dict:
    """``analyse_study`` keyword arguments from :func:`add_study_options`' options."""
    return {"pixel_size_mm": args.pixel_size, "frame_interval_s": args.dt, "concentration": args.concentration}


def given_sequence(text: str) -> tuple[str | None, str]:
    """An argparse ``type`` for ``study --sequence``: ``SEQ`` -> ``(None, SEQ)`` (every series of unrecognised
    sequence), ``SERIES=SEQ`` -> ``(SERIES, SEQ)``; SEQ one of
    :data:`CardiacLandmarksLib.core.series.GIVEN_SEQUENCES`, refused before any work."""
    from CardiacLandmarksLib.core.series import GIVEN_SEQUENCES

    name, _, seq = text.rpartition("=")
    if seq.strip().lower() not in GIVEN_SEQUENCES or (_ and not name.strip()):
        raise argparse.ArgumentTypeError(f"--sequence must be SEQ or SERIES=SEQ with SEQ one of "
                                         f"{', '.join(GIVEN_SEQUENCES)}, got {text!r}")
    return (name.strip() or None), seq.strip().lower()


def _kv_text(d: dict | None) -> str:
    if d is None:
        return "-"
    from CardiacLandmarksLib.core.landmarks import format_value

    val = format_value(d.get("value"), d.get("unit", ""))
    return f"{val} [{d.get('status', 'n/a')}]"


def _print_update(upd, indent: str = "") -> None:
    for a in upd.analyses:
        print(f"{indent}{a.task:<4} {a.series}: {a.corrected} corrected, {a.confirmed} confirmed by the reader")
    for name, before, after in upd.changes:
        print(f"{indent}  {name}: {_kv_text(before)} -> {_kv_text(after)}")
    if not upd.changes:
        print(f"{indent}  no key value changed")
    print(f"{indent}study status: {upd.status_before} -> {upd.status_after}")


def cmd_apply_review(args: argparse.Namespace) -> int:
    from CardiacLandmarksLib.batch.engine import STATE_FILE
    from CardiacLandmarksLib.study.review import apply_review, apply_review_batch

    path = Path(args.path)
    if (path / STATE_FILE).exists():
        updates, errors = apply_review_batch(path)
        for upd in updates:
            print(f"{upd.study_dir.name}:")
            _print_update(upd, "  ")
        for sid, err in errors.items():
            print(f"{sid}: review not applied, values kept: {err}", file=sys.stderr)
        n, same = len(updates), sum(u.unchanged for u in updates)
        print(f"{n - same} stud{'y' if n - same == 1 else 'ies'} updated, {len(errors)} not"
              + (f", {same} as reviewed before (nothing saved since: report kept, no backup)" if same else "")
              + f"; wrote each updated study's study.json (its predecessor kept as study.json.bak-<time>) and "
                f"summary.png, and {path / 'cohort.csv'}")
        import csv

        from CardiacLandmarksLib.batch.engine import review_tally, tally_lines

        with open(path / "cohort.csv", newline="", encoding="utf-8") as fh:  # what is left to review after it
            print("\n".join(tally_lines(review_tally(list(csv.DictReader(fh))))))
        return 1 if errors else 0
    upd = apply_review(path)
    _print_update(upd)
    if upd.unchanged:
        print(f"nothing saved since the review was applied ({upd.applied}): {path / 'study.json'} kept as it is, "
              "no backup made" + "".join(f"; {p} drawn again (it was missing)" for p in upd.written))
    else:
        print(f"wrote {', '.join(str(p) for p in upd.written)} (the previous study.json kept as study.json.bak-<time>)")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from CardiacLandmarksLib.function.measurements import bsa_mosteller
    from CardiacLandmarksLib.io.outputs import finish_run, prepare_output_dir
    from CardiacLandmarksLib.study.analyse import TASK_FOLDERS, analyse_study
    from CardiacLandmarksLib.study.routing import expand_patterns, route_study

    bsa_mosteller(args.height, args.weight)  # both or neither, plausible: checked before any work
    # a quoted pattern (or one no shell expanded): its files, so that run.json records and hashes them
    args.study = [str(p) for p in expand_patterns([Path(s).expanduser() for s in args.study])]
    src = args.study[0] if len(args.study) == 1 else args.study
    # a bad output path (a file, the study folder itself, not writable) fails before any work
    outdir = None if args.route_only else prepare_output_dir(args.output, inputs=args.study,
                                                             result_folders=TASK_FOLDERS, hold="study")
    routing = route_study(src, sequences=dict(args.sequence) or None)  # a series it lacks: named error, no work yet
    print(routing.table())
    for note in routing.notes:
        print(f"note: {note}")
    if args.route_only:
        for problem in routing.problems():  # what makes the study review whatever its analyses give
            print(problem)
        return 0
    out = outdir.path
    outdir.begin()  # an earlier run of the study (report and analysis folders) goes to backup-<time>/
    earlier = None if args.discard_review else outdir.backup_dir
    views = {e.key: e.view for e in routing.series}
    subject = {"height_cm": args.height, "weight_kg": args.weight} if args.height is not None else None
    result = analyse_study(src, out, device=args.device, routing=routing, tta=not args.no_tta, review_from=earlier,
                           subject=subject,
                           progress=lambda msg: print(f"  running {msg}", file=sys.stderr), **study_options(args))
    written = result.write(out)
    record = finish_run(outdir, args.study, {k: v for k, v in vars(args).items() if k != "func"},
                        [out / f for o in result.outcomes for f in o.files] + list(written),
                        warnings=list(result.errors), command="study", timings=result.timings())
    print()
    for e in routing.series:
        if e.view != views[e.key]:
            print(f"{e.label}: view decided after the SAX landmarks: {e.view.upper()} ({e.evidence[-1]})")
    for o in result.outcomes:
        state = f"{o.seconds:.1f} s" if o.ok else f"FAILED: {o.error}"
        print(f"{o.task:<10} {o.series_key:<24} {state}")
        if o.review_note:
            print(f"  {o.review_note}")
    for v in result.key_values():
        print(f"  {v.line()}")
    for problem in result.routing.problems():  # a series not read, several patients: the study is review
        print(problem)
    for note in result.notes:
        print(f"note: {note}")
    print(f"study status: {result.status}; wrote {', '.join(str(p) for p in [*written, record.path])}")
    for m in record.messages:
        print(m)
    return 0
