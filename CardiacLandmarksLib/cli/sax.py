"""CLI sub-commands of the SAX landmark job: ``detect``, ``train``, ``evaluate``, ``benchmark``."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.cli.study import non_negative, pixel_size, positive_number, share, whole_number
from CardiacLandmarksLib.core.config import data_root, models_root
from CardiacLandmarksLib.io.jsonsafe import dumps_strict

logger = logging.getLogger(__name__)
VIEW_CHOICES = ("sax", "2ch", "3ch", "4ch", "auto")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="detect landmarks on a CMR series and write landmarks.json, .mrk.json, PNG")
    p.add_argument("input", help="DICOM folder/file or NIfTI/NRRD image")
    p.add_argument("-o", "--output", required=True, help="output folder (created)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the networks run: auto (the GPU when one is present, else the CPU), cpu or cuda (default auto)")
    p.add_argument("--view", default="auto", choices=VIEW_CHOICES,
                   help="view (default auto: from the description, orientation and number of slices); a view the "
                        "image does not look like is an error")
    p.add_argument("--force-view", action="store_true",
                   help="run the --view model even when the image looks like another view (warning in every output)")
    p.add_argument("--allow-incomplete", action="store_true",
                   help="analyse a DICOM cine with missing slice positions or phases (warning in every output)")
    p.add_argument("--series-uid", default=None, help="SeriesInstanceUID to pick when a DICOM folder mixes series")
    p.add_argument("--time-axis", default="auto", choices=("auto", "none", "first", "last"),
                   help="how a 3-D image file is read: 'none' = a slice stack, 'first'/'last' = one slice over time "
                        "with time on that axis (default auto: a stack, except a nibabel (t, y, x) array and a "
                        "header of defaults only with >= 20 samples on its third axis)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--pixel-size", type=pixel_size, default=None, metavar="MM",
                   help="in-plane pixel size (mm) of an image file whose header lost it (1 x 1 mm with a placeholder "
                        "affine, e.g. EMIDEC's PNG exports); a file with a real pixel size keeps its own")
    p.add_argument("--discard-review", action="store_true",
                   help="when OUTPUT holds an earlier result of this image, do not carry the points a reader corrected "
                        "or confirmed there into the new detection (the earlier files go to OUTPUT/backup-<time>/ "
                        "either way)")
    p.add_argument("--no-tta", action="store_true", help="skip mirror test-time augmentation of the SAX views (about 2x faster, less accurate); "
                        "long-axis views keep their rotated/scaled copies, which set their flags")
    p.add_argument("--sequence", default="auto", choices=("auto", "cine", "lge", "perfusion", "t1"),
                   help="the series' sequence, which picks the SAX model (LGE and perfusion: sax_unet_lge; others: "
                        "sax_unet); default: from the DICOM tags or the file name ('unknown' -> sax_unet)")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("train", help="train a landmark model from labelled images (default: ACDC in the data root)")
    p.add_argument("--view", default="sax", choices=("sax", "2ch", "3ch", "4ch"), help="view of the model to train (default sax)")
    p.add_argument("--data", default=None, help="folder of labelled stacks (default: $CARDIAC_LANDMARKS_DATA/acdc)")
    p.add_argument("-o", "--output", default=None, help="where to write weights + card (default: runs/<view>)")
    p.add_argument("--epochs", type=whole_number("--epochs", 1), default=30, help="passes over the training images (default 30)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the split, initialisation and augmentation")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the networks run: auto (the GPU when one is present, else the CPU), cpu or cuda (default auto)")
    p.add_argument("--threads", type=whole_number("--threads", 1), default=2, help="CPU threads for torch")
    p.add_argument("--lr", type=positive_number("--lr"), default=None, help="peak learning rate (SAX default 2e-3; 1e-3 or less to fine-tune)")
    p.add_argument("--init-weights", default=None,
                   help="start from this checkpoint to fine-tune (SAX: e.g. Resources/Models/sax_unet.pt; long axis: "
                        "e.g. Resources/Models/lax4ch_unet.pt, or 'none' for random weights; default there: the "
                        "bundled SAX model's encoder)")
    p.add_argument("--seg-weight", type=non_negative("--seg-weight"), default=None,
                   help="SAX: weight of the segmentation head's loss (default 2; 0 = heatmap-only model)")
    p.add_argument("--presence-weight", type=non_negative("--presence-weight"), default=None,
                   help="SAX: weight of a loss on each heatmap's peak against the landmark's presence "
                        "(binary cross-entropy; default 0 = off)")
    p.add_argument("--ema-decay", type=share("--ema-decay", below_one=True), default=None,
                   help="SAX: per-step decay of the moving average of the weights that is validated and kept "
                        "instead of them (default 0.998; 0 = off)")
    p.add_argument("--base-channels", type=whole_number("--base-channels", 1), default=None,
                   help="SAX: channels of the U-Net's first level (default 8, as the v1.4 bundle)")
    p.add_argument("--sets", default=None,
                   help="SAX: labelled sets beside the ACDC folder, comma-separated (default acdc,emidec,perfusion; "
                        "'acdc' = cine only; 'mscmr' adds the 5 MS-CMRSeg LGE stacks, RV labels included, as training "
                        "stacks only)")
    p.add_argument("--leave-out", default=None,
                   help="SAX: patient ids (comma-separated) kept out of training, choice and calibration, e.g. "
                        "'subject8' for a leave-one-out fold on MS-CMRSeg")
    p.add_argument("--labels", type=_label_values, default=None, metavar="rv=N,myo=N,lv=N",
                   help="--data: the label values of the folder's NAME_gt masks (default for SAX ACDC's "
                        "rv=1,myo=2,lv=3; for long-axis views and M&Ms or UK Biobank masks lv=1,myo=2,rv=3); masks "
                        "that do not follow them are refused by name before training")
    p.add_argument("--no-context", action="store_true", help="SAX: the slice alone as input (no stack neighbours)")
    p.add_argument("--no-domain-randomisation", action="store_true",
                   help="SAX: plain gamma/contrast/noise/blur augmentation instead of domain randomisation")
    p.add_argument("--interpolate", nargs=2, metavar=("START", "FINETUNED"), default=None,
                   help="SAX: no training; the model at --alpha between a fine-tuned checkpoint and the one it was "
                        "fine-tuned from (weight-space interpolation, WiSE-FT), calibrated like a trained one "
                        "(v1.5.0 = v1.3.1 and v1.4.0 at 0.5; v1.7.0 = v1.3.1 and the presence-loss fine-tune at 0.5)")
    p.add_argument("--alpha", type=share("--alpha"), default=0.5,
                   help="SAX --interpolate: share of the fine-tuned weights, 0-1 (default 0.5)")
    p.add_argument("--model-version", default=None,
                   help="version written into the card (default: the version this code trains, train_sax."
                        "MODEL_VERSION or train_lax.MODEL_VERSION, or with --interpolate INTERPOLATED_VERSION, the "
                        "bundled cine model's); a site's own model named e.g. 1.7.0-site1 stays apart from the "
                        "bundled releases in every run record")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="compare detections with landmarks derived from expert masks")
    p.add_argument("--data", default=None, help="labelled folder (default: ACDC in the data root)")
    p.add_argument("--labels", type=_label_values, default=None, metavar="rv=N,myo=N,lv=N",
                   help="--data: the label values of the folder's NAME_gt masks (default ACDC's rv=1,myo=2,lv=3; M&Ms "
                        "and UK Biobank masks: lv=1,myo=2,rv=3); masks that do not follow them are refused by name")
    p.add_argument("--view", default="sax", choices=("sax", "2ch", "3ch", "4ch"),
                   help="landmarks of this view (default sax); 2ch/3ch/4ch: the installed long-axis model on --data, "
                        "a folder of long-axis images with NAME_gt masks (LV 1, myocardium 2, RV 3, or --labels), "
                        "every labelled frame through the shipped long-axis pipeline")
    p.add_argument("--task", default="landmarks", choices=("landmarks", "function"),
                   help="landmarks (default) or function: segmentation Dice/HD95 and EDV/ESV/EF/mass agreement "
                        "on the fixed ACDC test split (see 'cardiac-landmarks function')")
    p.add_argument("--split", default=None, choices=("val", "train", "test", "all"),
                   help="which patients: the model's validation/training patients, the fixed ACDC test split "
                        "(20 patients never used for training or model choice), or all")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the networks run: auto (the GPU when one is present, else the CPU), cpu or cuda (default auto)")
    p.add_argument("--json", nargs="?", const="-", default=None,
                   help="also write the figures as JSON to this file (no file: print JSON instead of the table)")
    p.add_argument("--suite", action="store_true",
                   help="run the evaluation suite instead: one row per labelled data set (ACDC test split, "
                        "MS-CMRSeg LGE and its leave-one-out, EMIDEC LGE, M&Ms-2, Sunnybrook, perfusion validation, "
                        "training and an unseen GE series); --data and --split are ignored")
    p.add_argument("--markdown", action="store_true", help="with --suite: print the table as Markdown")
    p.add_argument("--rows", default=None,
                   help="with --suite: only these rows, comma-separated, named as in the table (e.g. "
                        "'ACDC test,perfusion GE (unseen)'); default all")
    p.add_argument("--no-confidence-table", action="store_true",
                   help="skip the confidence table (it runs the models on every labelled set in the data root)")
    from CardiacLandmarksLib.cli.function import add_evaluate_arguments

    add_evaluate_arguments(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("benchmark", help="time model load and inference (CPU, and GPU when present)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--slices", type=whole_number("--slices", 1), default=10, help="slices of the synthetic SAX stack (default 10)")
    p.add_argument("--phases", type=whole_number("--phases", 1), default=25, help="phases of the synthetic SAX stack (default 25: the "
                                                          "10 x 25 stack of the speed target)")
    p.add_argument("--repeats", type=whole_number("--repeats", 1), default=3, help="timed runs after a warm-up; the fastest is reported (default 3)")
    p.set_defaults(func=cmd_benchmark)


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    # shown after half a second: an input refused by the checks (which run first, in the task API) leaves no empty
    # bar above its error
    bar = tqdm(total=total, unit="img", disable=not enabled, file=sys.stderr, delay=0.5)

    def update(done: int, _total: int) -> None:
        bar.update(done - bar.n)

    return bar, update


def cmd_detect(args: argparse.Namespace) -> int:
    from CardiacLandmarksLib.analysis import analyse_landmarks
    from CardiacLandmarksLib.io.load import load_series
    from CardiacLandmarksLib.io.outputs import finish_run, prepare_output_dir
    from CardiacLandmarksLib.sax.pipeline import SaxOptions

    outdir = prepare_output_dir(args.output, inputs=[args.input], hold="detect")  # a bad output path fails before any work
    series = load_series(args.input, series_uid=args.series_uid, time_axis=args.time_axis)
    if args.pixel_size is not None:
        from CardiacLandmarksLib.io.checks import given_pixel_size

        note = given_pixel_size(series, args.pixel_size)
        print(f"note: {note}" if note else f"note: --pixel-size {args.pixel_size:g} not applied: the header of "
              f"{series.source} gives {series.spacing[0]:g} x {series.spacing[1]:g} mm")
    bar, update = _progress_bar(series.n_slices * series.n_phases, not args.no_progress)
    try:
        result = analyse_landmarks(series, args.view, SaxOptions(device=args.device, tta=not args.no_tta), update,
                                   force_view=args.force_view, allow_incomplete=args.allow_incomplete,
                                   sequence=args.sequence)
    finally:
        bar.close()
    view = result.view
    warnings = list(result.landmarks.warnings)
    outdir.begin()  # an earlier result in the folder goes to backup-<time>/
    carried = None
    if outdir.backup_dir is not None and not args.discard_review:
        from CardiacLandmarksLib.results import carry_review_from

        carried = carry_review_from(outdir.backup_dir, result.landmarks, result.series)
        result.landmarks = carried.lmset
    written = result.write(outdir.path)
    record = finish_run(outdir, [args.input], {k: v for k, v in vars(args).items() if k != "func"}, written,
                        models=[dict(result.landmarks.model)], warnings=warnings, command="detect")
    n_found = sum(lm.found for lm in result.landmarks.landmarks)
    n_low = sum(lm.flag == "low" for lm in result.landmarks.landmarks)
    from CardiacLandmarksLib.core.review import doubtful_absences
    from CardiacLandmarksLib.sax.presence import doubt_kinds

    doubted = doubtful_absences(result.landmarks.landmarks)
    unsure = f"; {len(doubted)} absent point(s) to check: {doubt_kinds(doubted)}" if doubted else ""
    print(f"{series.source}: {series.n_slices} slices x {series.n_phases} phases, view {view.upper()}, "
          f"{n_found} landmarks found ({n_low} low confidence{unsure}) in {result.elapsed_s:.1f} s")
    from CardiacLandmarksLib.cli import written_lines

    print("\n".join(written_lines([*written, record.path])))
    _print_trust(result.landmarks.measurements)
    for n in result.landmarks.model.get("lax_checks", []):  # long axis: tracking, naming and handedness notes
        print(f"note: {n}")
    if carried is not None and carried.points:
        print(f"the reader's review of {len(carried.points)} point(s) kept from the earlier result "
              f"({', '.join(carried.points[:6])}{' ...' if len(carried.points) > 6 else ''}); --discard-review "
              "to start afresh")
    elif carried is not None and carried.reason:
        print(f"the earlier result's review was not carried over: {carried.reason}")
    for m in record.messages:
        print(m)
    for w in warnings:
        print(f"warning: {w}")
    return 0


def _print_trust(measurements) -> None:
    """Per measurement name: how many values are ok / review / n/a, and the first few to check. A warning on the
    input is named briefly on these lines (``input (incomplete series)``): its text follows once as ``warning: ...``; the
    CSV's check column keeps it in full."""
    by_name: dict[str, list] = {}
    for m in measurements:
        by_name.setdefault(m.name, []).append(m)
    for name, ms in by_name.items():
        counts = {st: sum(m.status == st for m in ms) for st in ("ok", "review", "n/a")}
        print(f"{name}: {len(ms)} values, {counts['ok']} ok, {counts['review']} review, {counts['n/a']} n/a")
        review = [m for m in ms if m.status != "ok"]
        for m in review[:3]:
            where = f"slice {m.slice} phase {m.phase}" if m.phase is not None else f"slice {m.slice}"
            print(f"  {where}: {m.value:.1f} {m.unit} - {m.caveat(inputs_by_id=True)}")
        if len(review) > 3:
            print(f"  ... {len(review) - 3} more: see the status and check columns of measurements.csv")


def cmd_train(args: argparse.Namespace) -> int:
    started = time.time()
    try:
        return _train(args)
    except KeyboardInterrupt:  # Ctrl-C: say what the stopped training left (a half-trained model is no model)
        from CardiacLandmarksLib.core.errors import Interrupted

        out = _train_output(args)
        kept = [w for w in sorted(out.glob("*.pt")) if w.stat().st_mtime >= started]
        if kept:
            raise Interrupted(f"the training stopped; {', '.join(map(str, kept))} holds the weights of its last "
                              "validated epoch, with no card of its own (not calibrated: not for use or bundling; a "
                              "card beside it is an earlier run's); train again to finish") from None
        raise Interrupted(f"the training stopped before it saved any weights in {out}") from None


def _train_output(args: argparse.Namespace) -> Path:
    """The folder a training writes: ``-o``, else ``runs/<view>``."""
    return Path(args.output or f"runs/{args.view}")


def _train(args: argparse.Namespace) -> int:
    from CardiacLandmarksLib.io.outputs import prepare_output_dir
    from CardiacLandmarksLib.models.loader import choose_device
    from CardiacLandmarksLib.training.model_card import verdict_text

    device = choose_device(args.device)
    if args.view != "sax":
        from CardiacLandmarksLib.sax.labels import parse_labels
        from CardiacLandmarksLib.training.train_lax import train_lax

        _refuse_sax_only(args)
        out = _train_output(args)
        prepare_output_dir(out)  # an unwritable -o is named now, not after the training; removed again if refused
        card = train_lax(Path(args.data) if args.data else None, args.view, out, epochs=args.epochs, seed=args.seed,
                         device=device, threads=args.threads,
                         labels=parse_labels(args.labels) if args.labels else None,
                         init=args.init_weights or "sax", version=args.model_version,
                         command="cardiac-landmarks " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
        print(f"wrote {out}")
        print(verdict_text(card["bundle_verdict"]))
        return 0
    from CardiacLandmarksLib.training.train_sax import (
        INTERPOLATED_VERSION,
        TrainConfig,
        interpolate_sax,
        train_sax,
    )

    data = Path(args.data) if args.data else data_root() / "acdc"
    out = _train_output(args)  # runs/sax
    prepare_output_dir(out)  # an unwritable -o is named now, not after the training; removed again if refused
    if args.interpolate:
        card = interpolate_sax(Path(args.interpolate[0]), Path(args.interpolate[1]), args.alpha, out, data, device,
                               version=args.model_version or INTERPOLATED_VERSION)
        print(dumps_strict(card["validation"], indent=1))
        print(f"wrote {out / 'sax_unet.pt'}, {out / 'sax_unet.json'} and {out / 'sax_unet.md'}")
        print(verdict_text(card["bundle_verdict"]))
        return 0
    cfg = TrainConfig(epochs=args.epochs, seed=args.seed, threads=args.threads, init_weights=args.init_weights)
    if args.lr is not None:
        cfg.lr = args.lr
    if args.seg_weight is not None:
        cfg.seg_weight = args.seg_weight
    if args.presence_weight is not None:
        cfg.presence_weight = args.presence_weight
    if args.ema_decay is not None:
        cfg.ema_decay = args.ema_decay
    if args.base_channels is not None:
        cfg.base_channels = args.base_channels
    if args.sets is not None:
        cfg.sets = args.sets
    if args.leave_out:
        cfg.leave_out = args.leave_out
    if args.labels:
        cfg.labels = args.labels
    cfg.context = not args.no_context
    cfg.domain_randomisation = not args.no_domain_randomisation
    card = train_sax(data, out, cfg, device=device, version=args.model_version)
    print(dumps_strict(card["validation"], indent=1))
    verdict = card["bundle_verdict"]
    print(f"wrote {out / 'sax_unet.pt'}, {out / 'sax_unet.json'} and {out / 'sax_unet.md'}")
    if verdict["bundle"]:
        print(verdict_text(verdict) + f" Copy the three files into {models_root()} to bundle them.")
    else:
        print(verdict_text(verdict))
    return 0


#: ``train`` options that only the SAX trainer reads: (flag, attribute, its value when not given)
_SAX_ONLY_OPTIONS = (("--lr", "lr", None), ("--seg-weight", "seg_weight", None),
                     ("--presence-weight", "presence_weight", None), ("--ema-decay", "ema_decay", None),
                     ("--base-channels", "base_channels", None), ("--sets", "sets", None),
                     ("--leave-out", "leave_out", None), ("--no-context", "no_context", False),
                     ("--no-domain-randomisation", "no_domain_randomisation", False),
                     ("--interpolate", "interpolate", None))


def _refuse_sax_only(args: argparse.Namespace) -> None:
    """``train --view 2ch|3ch|4ch`` with an option of the SAX trainer: named before any work (it was ignored,
    so a long-axis model was trained with settings other than those the user typed).

    Raises:
        OptionError: naming the options and what the long-axis trainer takes.
    """
    from CardiacLandmarksLib.core.errors import OptionError

    given = [flag for flag, attr, unset in _SAX_ONLY_OPTIONS if getattr(args, attr, unset) != unset]
    if given:
        raise OptionError(
            f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to SAX training only (--view sax); "
            f"the long-axis trainer (--view {args.view}) takes --data, --labels, --init-weights, --epochs, --seed, "
            "--threads, --device, --model-version and -o")


def _label_values(text: str) -> str:
    """An argparse ``type`` for ``--labels rv=N,myo=N,lv=N`` (:func:`CardiacLandmarksLib.sax.labels.parse_labels`),
    kept as text (it goes into the training config and card)."""
    from CardiacLandmarksLib.sax.labels import parse_labels

    try:
        parse_labels(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _evaluation_cases(args: argparse.Namespace) -> list:
    """The labelled cases of ``evaluate``: ``--data`` (default ACDC in the data root) on ``--split`` (the bundled
    SAX model's validation or training patients from its card, the fixed test split, or all)."""
    from CardiacLandmarksLib.datasets.sax import acdc_cases, paired_cases, test_cases
    from CardiacLandmarksLib.models.loader import read_card

    data = Path(args.data) if args.data else data_root() / "acdc"
    if not data.exists():
        from CardiacLandmarksLib.core.errors import InputNotFoundError
        raise InputNotFoundError(f"evaluation data folder {data} does not exist")
    from CardiacLandmarksLib.datasets.sax import check_case_labels, is_acdc_folder
    from CardiacLandmarksLib.sax.labels import parse_labels

    labels = parse_labels(getattr(args, "labels", None))
    cases = acdc_cases(data) if is_acdc_folder(data) else paired_cases(data, labels)  # the layout test training uses
    if not cases:
        from CardiacLandmarksLib.core.errors import InputNotFoundError
        raise InputNotFoundError(f"no labelled case in {data}: evaluate --data needs NAME.nii.gz + NAME_gt.nii.gz "
                                 "pairs (ACDC labels 1 = RV, 2 = myocardium, 3 = LV cavity; others with --labels)")
    check_case_labels(cases)  # a site's masks in another convention: named before any model runs
    if args.split == "test":
        if not (chosen := test_cases(cases)):
            from CardiacLandmarksLib.core.errors import InputNotFoundError
            raise InputNotFoundError(f"no patient of the fixed ACDC test split in {data} (--split test is for the "
                                     "ACDC folder; --split all evaluates every case of a folder of your own)")
        return chosen
    if args.split == "all":
        return cases
    keep = set(read_card("sax_unet").get("training", {}).get(f"{args.split}_patients", []))
    chosen = [c for c in cases if c.patient in keep]
    if not chosen:  # a folder of one's own: the model's split names ACDC patients, none of them here
        print(f"note: none of the bundled SAX model's {'validation' if args.split == 'val' else 'training'} "
              f"patients is in {data}: every case is evaluated (as --split all)", file=sys.stderr)
    return chosen or cases


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.json and args.json != "-":
        from CardiacLandmarksLib.io.outputs import check_output_file

        check_output_file(args.json)  # a bad --json path fails now, not after the evaluation
    if args.suite:
        return cmd_suite(args)
    if getattr(args, "view", "sax") != "sax":
        _refuse_for_long_axis(args)
        return _evaluate_lax(args)
    if args.task == "function":
        from CardiacLandmarksLib.cli.function import cmd_evaluate_function

        return cmd_evaluate_function(args)
    args.split = args.split or "val"
    from CardiacLandmarksLib.evaluation.sax import (
        evaluate_case,
        format_table,
        patient_bootstrap_ci,
        summarise,
    )
    from CardiacLandmarksLib.models.loader import load_model
    from CardiacLandmarksLib.sax.pipeline import detect_landmarks

    cases = _evaluation_cases(args)
    from tqdm import tqdm

    from CardiacLandmarksLib.core.errors import CardiacLandmarksError
    from CardiacLandmarksLib.evaluation.confidence import confidence_table, format_confidence_table

    model = load_model("sax", args.device)
    results, failed = [], []
    for c in tqdm(cases, desc="evaluate", unit="case", file=sys.stderr, disable=not sys.stderr.isatty()):
        try:  # one bad case is reported and the others are still evaluated
            results.append(evaluate_case(c, lambda s: detect_landmarks(s, model=model)))
        except CardiacLandmarksError as exc:
            failed.append((c, exc))
            print(f"error: {c.patient} ({c.image.name}): {exc}", file=sys.stderr)
        if not sys.stderr.isatty():
            print(f"[{len(results) + len(failed)}/{len(cases)}] {c.patient} {c.image.name}", file=sys.stderr)
    if not results:
        raise CardiacLandmarksError(f"none of the {len(cases)} cases could be evaluated")
    summary = summarise(results)
    summary["ci95"] = patient_bootstrap_ci(results)  # empty below 5 patients
    if failed:
        summary["failed_cases"] = [{"patient": c.patient, "image": str(c.image), "error": str(e)} for c, e in failed]
    # strict JSON: a figure that cannot be computed (e.g. the error of a landmark never found) is null, not NaN
    strict = dumps_strict(summary)
    if args.json == "-":
        print(strict)
        return 3 if failed else 0
    print(format_table(results, summary))
    if args.json:
        from CardiacLandmarksLib.io.atomic import atomic_write_text

        atomic_write_text(Path(args.json), strict)
    if not args.no_confidence_table:
        print()
        print("computing the confidence table (all labelled sets) ...", file=sys.stderr)
        good = [c for c in cases if all(c is not f for f, _ in failed)]
        try:
            print(format_confidence_table(confidence_table(good, device=args.device)))
        except CardiacLandmarksError as exc:
            print(f"(confidence table skipped: {exc})")
    if failed:
        print(f"{len(failed)} of {len(cases)} case(s) failed: " + ", ".join(c.patient for c, _ in failed),
              file=sys.stderr)
        return 3
    return 0


def _refuse_for_long_axis(args: argparse.Namespace) -> None:
    """``evaluate --view 2ch|3ch|4ch`` with an option of the SAX or function evaluation: named (they were ignored).

    Raises:
        OptionError: naming the options and what the long-axis evaluation takes.
    """
    from CardiacLandmarksLib.core.errors import OptionError

    given = [flag for flag, given in (("--task function", args.task == "function"), ("--split", args.split),
                                      ("--patients", getattr(args, "patients", None)),
                                      ("--sunnybrook", getattr(args, "sunnybrook", None)),
                                      ("--output", getattr(args, "output", None)),
                                      ("--no-confidence-table", args.no_confidence_table)) if given]
    if given:
        raise OptionError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to the SAX or function "
                          f"evaluation only; evaluate --view {args.view} takes --data, --labels, --device and --json")


def _evaluate_lax(args: argparse.Namespace) -> int:
    """``evaluate --view 2ch|3ch|4ch --data FOLDER``: :func:`CardiacLandmarksLib.evaluation.lax.evaluate_lax_folder`,
    printed as the suite's long-axis table (or JSON)."""
    from CardiacLandmarksLib.core.errors import OptionError
    from CardiacLandmarksLib.evaluation.lax import evaluate_lax_folder
    from CardiacLandmarksLib.evaluation.suite import lax_table_lines
    from CardiacLandmarksLib.sax.labels import parse_labels

    if not args.data:
        raise OptionError(f"evaluate --view {args.view} needs --data FOLDER: your labelled long-axis images (NAME "
                          "with a NAME_gt mask); the shared data's 4CH frames trained the bundled model and are on "
                          "the suite (evaluate --suite)")
    model, row = evaluate_lax_folder(Path(args.data), args.view, parse_labels(args.labels) if args.labels else None,
                                     args.device)
    doc = dumps_strict({"model": {"name": model.name, "version": model.version, "sha256": model.sha256},
                        "row": row.to_dict()})
    if args.json == "-":
        print(doc)
        return 0
    print(f"{model.name} {model.version} on {args.data} (L2 in mm against landmarks derived from the masks; flags "
          "from the rotated and scaled copies)")
    print("\n".join(lax_table_lines([row])))
    if args.json:
        from CardiacLandmarksLib.io.atomic import atomic_write_text

        atomic_write_text(Path(args.json), doc)
    return 0


def cmd_suite(args: argparse.Namespace) -> int:
    from CardiacLandmarksLib.evaluation.suite import format_suite, format_suite_markdown, run_suite
    from CardiacLandmarksLib.io.atomic import atomic_write_text

    def progress(row: str, done: int, total: int) -> None:
        print(f"  {row}: {done}/{total}", file=sys.stderr, flush=True)

    rows = tuple(r.strip() for r in args.rows.split(",") if r.strip()) if getattr(args, "rows", None) else None
    table = run_suite(device=args.device, progress=progress, rows=rows)
    if args.json == "-":
        print(table.to_json())
        return 0
    print(format_suite_markdown(table) if args.markdown else format_suite(table))
    if args.json:
        atomic_write_text(Path(args.json), table.to_json() + "\n")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    import torch

    from CardiacLandmarksLib.core.series import CMRSeries
    from CardiacLandmarksLib.models import catalogue
    from CardiacLandmarksLib.models import loader as inference
    from CardiacLandmarksLib.sax.pipeline import detect_landmarks

    res: dict = {"torch_threads": torch.get_num_threads(), "stack": f"{args.slices} slices x {args.phases} phases"}
    catalogue._CACHE.clear()
    t = time.perf_counter()
    model = inference.load_model("sax", "cpu")
    res["model_load_ms"] = round(1000 * (time.perf_counter() - t), 1)
    rng = np.random.default_rng(0)
    pix = rng.normal(100, 20, (args.phases, args.slices, 256, 216)).astype(np.float32)
    series = CMRSeries(pix, (1.4, 1.4, 8.0), np.eye(3), np.arange(args.slices)[:, None] * np.array([0, 0, 8.0]))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    n = args.slices * args.phases
    for dev in devices:
        m = model if dev == "cpu" else inference.load_model("sax", dev)
        for label, tta in (("", True), ("_no_tta", False)):
            print(f"benchmark: {dev}{' without TTA' if not tta else ''}: warm-up + {args.repeats} runs of "
                  f"{n} images ...", file=sys.stderr)
            detect_landmarks(series, model=m, tta=tta)  # warm-up
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                detect_landmarks(series, model=m, tta=tta)
                times.append(time.perf_counter() - t)
            best = min(times)
            res[dev + label] = {"stack_s": round(best, 3), "ms_per_image": round(1000 * best / n, 2),
                                "images_per_s": round(n / best, 1)}
            x = np.zeros((n, 192, 192), np.float32)
            t = time.perf_counter()
            m.predict_maps(x, tta=tta)
            res[dev + label]["network_only_ms_per_image"] = round(1000 * (time.perf_counter() - t) / n, 2)
    if args.json:
        print(dumps_strict(res))
    else:
        for k, v in res.items():
            print(f"{k}: {v}")
    return 0
