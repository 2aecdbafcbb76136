"""CLI sub-command ``function``: LV and RV volumes, EF and LV mass from short-axis cine MR.

Examples::

    cardiac-landmarks function SAX_CINE_DICOM_FOLDER -o out/P1 --height 172 --weight 70
    cardiac-landmarks function cine_4d.nii.gz -o out/P1 --ed-phase 0
    cardiac-landmarks function --ed patient_ED.nii.gz --es patient_ES.nii.gz -o out/P1

A cine (DICOM folder or 4-D file): every phase is segmented, ED = the phase of the largest and
ES = the phase of the smallest LV cavity volume (--ed-phase / --es-phase override, 0-based).
Two 3-D volumes: --ed and --es. Writes function.json, function.csv, the segmentation as NIfTI
(labels 1 RV cavity, 2 LV myocardium, 3 LV cavity; one 4-D file for a cine) and as 3D Slicer
.seg.nrrd (ED and ES for a cine), function_overlay.png and, for a cine, volume_curve.png, then
run.json (the run record; an earlier run in the folder goes to backup-<time>/, as for detect).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("function", help="LV/RV volumes, EF and LV mass from a SAX cine (or ED + ES volumes)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", nargs="?", default=None, help="SAX cine: DICOM folder/file or 4-D NIfTI/NRRD")
    p.add_argument("-o", "--output", required=True, help="output folder (created)")
    p.add_argument("--ed", default=None, help="3-D SAX volume at end-diastole (with --es, instead of INPUT)")
    p.add_argument("--es", default=None, help="3-D SAX volume at end-systole (with --ed)")
    p.add_argument("--ed-phase", type=int, default=None, help="ED phase index of the cine (0-based; default: largest LV)")
    p.add_argument("--es-phase", type=int, default=None, help="ES phase index of the cine (0-based; default: smallest LV)")
    p.add_argument("--height", type=float, default=None, help="height in cm (with --weight: indexed values, Mosteller BSA)")
    p.add_argument("--weight", type=float, default=None, help="weight in kg (with --height)")
    p.add_argument("--series-uid", default=None, help="SeriesInstanceUID to pick when a DICOM folder mixes series")
    p.add_argument("--allow-incomplete", action="store_true",
                   help="measure a DICOM cine with missing slice positions or phases (every value then 'review')")
    p.add_argument("--time-axis", default="auto", choices=("auto", "none", "first", "last"),
                   help="how a 3-D image file is read: 'none' = a slice stack, 'first'/'last' = time on that axis "
                        "(default: auto)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the networks run: auto (the GPU when one is present, else the CPU), cpu or cuda (default auto)")
    p.add_argument("--no-tta", action="store_true", help="skip mirror test-time augmentation (faster, less accurate)")
    p.add_argument("--no-clean", action="store_true", help="keep every connected component (no clean-up)")
    p.add_argument("--basal-rule", action="store_true",
                   help="drop the LV cavity on slices where it is less than half surrounded by myocardium")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run in the output folder without keeping its changed files in backup-<time>/")
    p.set_defaults(func=cmd_function)


def cmd_function(args: argparse.Namespace) -> int:
    from CardiacLandmarksLib.function.measurements import FunctionInputError, bsa_mosteller
    from CardiacLandmarksLib.function.pipeline import FunctionOptions, analyse_function
    from CardiacLandmarksLib.io.load import load_series

    if (args.input is None) == (args.ed is None and args.es is None):
        raise FunctionInputError("give either one cine (INPUT) or two volumes (--ed ED_FILE --es ES_FILE)")
    if args.input is None and (args.ed is None or args.es is None):
        raise FunctionInputError("give both --ed and --es")
    bsa_mosteller(args.height, args.weight)  # checked before loading anything
    from CardiacLandmarksLib.io.outputs import finish_run, prepare_output_dir

    in_paths = [args.input] if args.input is not None else [args.ed, args.es]
    outdir = prepare_output_dir(args.output, inputs=in_paths, hold="function")  # a bad output folder fails before any work
    opts = FunctionOptions(ed_phase=args.ed_phase, es_phase=args.es_phase, height_cm=args.height,
                           weight_kg=args.weight, device=args.device, tta=not args.no_tta, clean=not args.no_clean,
                           basal_rule=args.basal_rule, allow_incomplete=args.allow_incomplete)
    if args.input is not None:
        inputs = load_series(args.input, series_uid=args.series_uid, time_axis=args.time_axis)
    else:
        inputs = (load_series(args.ed, series_uid=args.series_uid, time_axis="none"),
                  load_series(args.es, series_uid=args.series_uid, time_axis="none"))
    from CardiacLandmarksLib.function.measurements import subject_from_header, summary_lines

    subject: dict = {"height_cm": args.height, "weight_kg": args.weight} if args.height is not None else {}
    notes: list[str] = []
    first = inputs if args.input is not None else inputs[0]
    subject_from_header(subject, first, Path(str(first.source)).name, notes)  # as study and batch do
    opts.height_cm, opts.weight_kg = subject.get("height_cm"), subject.get("weight_kg")
    for note in notes:
        print(f"note: {note}")
    result = analyse_function(inputs, opts)
    outdir.begin()  # an earlier run's files go to backup-<time>/
    written = result.write(outdir.path, if_exists="overwrite")
    record = finish_run(outdir, in_paths, {k: v for k, v in vars(args).items() if k != "func"}, written,
                        models=[dict(result.model)], warnings=notes, command="function", keep_backup=not args.overwrite)
    if result.mode == "cine":
        print(f"ED phase {result.ed_phase}, ES phase {result.es_phase} of {result.series[0].n_phases}")
    for line in summary_lines(result.values):  # the values, then the reasons to review them in words
        print(line)
    print(f"wrote {len(written) + 1} files to {outdir.path}", file=sys.stderr)
    for m in record.messages:
        print(m, file=sys.stderr)
    return 0


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``evaluate --task function`` that the SAX ``evaluate`` does not have."""
    p.add_argument("-o", "--output", default=None, help="(--task function) folder for function_evaluation.json/.txt and "
                                                  "bland_altman.png (default: print only)")
    p.add_argument("--patients", default=None, help="(--task function) 'test' (the fixed ACDC test split, default), "
                                                    "'unseen' (101-121 only), 'val' (the SAX model's validation "
                                                    "patients outside the test split) or comma-separated patient ids")
    p.add_argument("--sunnybrook", default=None, help="(--task function) Sunnybrook case folder (dicom/ + contours/); "
                                                      "default: sunnybrook/SCD0000101 in the data root when present")


def cmd_evaluate_function(args: argparse.Namespace) -> int:
    """``cardiac-landmarks evaluate --task function``: ACDC test split and the Sunnybrook cine."""
    from pathlib import Path

    from CardiacLandmarksLib.core.config import data_root
    from CardiacLandmarksLib.core.errors import InputNotFoundError
    from CardiacLandmarksLib.datasets.splits import ACDC_TEST_PATIENTS, UNSEEN_BY_V1_3
    from CardiacLandmarksLib.evaluation.function import (
        check_targets,
        evaluate_acdc,
        format_table,
        render_bland_altman_png,
        summarise,
        sunnybrook_lv_volumes,
    )
    from CardiacLandmarksLib.function.pipeline import FunctionOptions, function_model_name
    from CardiacLandmarksLib.io.atomic import atomic_write_text
    from CardiacLandmarksLib.models.loader import load_model

    data = Path(args.data) if getattr(args, "data", None) else data_root() / "acdc"
    if not data.exists():
        raise InputNotFoundError(f"evaluation data folder {data} does not exist")
    sel = getattr(args, "patients", None) or getattr(args, "split", None) or "test"
    from CardiacLandmarksLib.datasets.sax import is_acdc_folder

    acdc = is_acdc_folder(data)
    labels = site_files = None
    if not acdc:  # a site's folder: its own patients (all by default) and label values, no ACDC split
        from CardiacLandmarksLib.datasets.sax import check_case_labels, paired_cases
        from CardiacLandmarksLib.evaluation.function import site_patients
        from CardiacLandmarksLib.sax.labels import parse_labels

        labels = parse_labels(getattr(args, "labels", None))
        site_files, left = site_patients(data)
        found = list(site_files)
        ids = f"{', '.join(found[:5])}{' ...' if len(found) > 5 else ''}"
        if not found:
            raise InputNotFoundError(
                f"no patient in {data} with an ED and an ES stack, each with its mask (NAME.nii.gz, .nii or .nrrd "
                "and NAME_gt beside it; ED or ES in NAME, e.g. P7_ED and P7_ES)"
                + (f": {'; '.join(left[:3])}{' ...' if len(left) > 3 else ''}" if left else ""))
        given = getattr(args, "patients", None)
        if given in ("test", "unseen", "val") or (not given and getattr(args, "split", None) in ("test", "val",
                                                                                                 "train")):
            option = f"--patients {given}" if given else f"--split {args.split}"
            raise InputNotFoundError(f"{option} names ACDC patients; {data} is a folder of your own: give its ids "
                                     f"with --patients ({ids}) or leave {option.split()[0]} out for all of them")
        if sel in ("test", "all"):
            sel = ",".join(found)
        else:
            unknown = [p for p in (x.strip() for x in sel.split(",")) if p and p not in site_files]
            if unknown:
                raise InputNotFoundError(f"--patients: {', '.join(unknown)} not among the patients of {data} ({ids})")
        if left:
            print(f"left out of {data.name}: {'; '.join(left)}", file=sys.stderr)
        check_case_labels([c for c in paired_cases(data, labels)
                           if c.patient in sel.split(",")])  # another label convention: named before any model runs
    if sel == "val":  # the SAX model's validation patients outside the test split (used to choose the clean-up)
        from CardiacLandmarksLib.models.loader import read_card

        val = read_card("sax_unet").get("training", {}).get("val_patients", [])
        sel = ",".join(p for p in val if p not in ACDC_TEST_PATIENTS)
    if sel == "test":
        patients = ACDC_TEST_PATIENTS
    elif sel == "unseen":
        patients = UNSEEN_BY_V1_3
    else:
        patients = tuple(x.strip() for x in sel.split(",") if x.strip())
    opts = FunctionOptions(device=args.device)
    model = load_model("sax", device=args.device, name=function_model_name())
    records = evaluate_acdc(data, patients, model, opts, labels=labels, files=site_files)
    summary = summarise(records)
    targets = check_targets(summary, records)
    which = sel if acdc or len(patients) < 6 else f"{len(patients)} patients"  # a site's ids: a count when many
    text = format_table(summary, targets, title=f"function on {'ACDC' if acdc else data} ({which}), "
                                                f"model {model.name} {model.version}")
    unseen = [r for r in records if r.patient in UNSEEN_BY_V1_3]
    out = {"patients": list(patients), "model": model.describe(), "summary": summary, "targets": targets,
           "cases": [r.__dict__ for r in records]}
    if unseen and len(unseen) < len(records):
        s2 = summarise(unseen)
        out["summary_unseen_101_121"] = s2
        text += "\n\n" + format_table(s2, check_targets(s2, unseen), title="patients 101-121 only (unseen by the model)")
    sb = Path(args.sunnybrook) if getattr(args, "sunnybrook", None) else data_root() / "sunnybrook" / "SCD0000101"
    if sb.exists() and (acdc or getattr(args, "sunnybrook", None)):  # a site's folder: its figures alone
        r = sunnybrook_lv_volumes(sb, model, opts)
        out["sunnybrook"] = r
        lines = [f"\nSunnybrook {sb.name}: automatic ED/ES phases {r['auto_ed_phase']}/{r['auto_es_phase']}, "
                 f"LV EF {r['auto_ef_pct']:.1f}% (expert contours: phases {r.get('expert_ed_phase')}/"
                 f"{r.get('expert_es_phase')}, EF {r.get('expert_ef_pct', float('nan')):.1f}% on the contoured slices; "
                 f"automatic on the same slices and phases {r.get('auto_ef_same_slices_pct', float('nan')):.1f}%)"]
        for t, d in r["phases"].items():
            lines.append(f"  phase {t}: expert LV cavity {d['expert_ml']:.1f} ml, automatic {d['auto_ml']:.1f} ml on the "
                         f"same {len(d['slices'])} slices ({d['auto_all_slices_ml']:.1f} ml on all), mean slice Dice "
                         f"{d['mean_dice']:.3f}")
        text += "\n".join(lines)
    print(text)
    if args.output:
        outdir = Path(args.output)
        from CardiacLandmarksLib.io.jsonsafe import dumps_strict

        # strict JSON: a figure that cannot be computed (e.g. an SD over one patient) is null, not NaN
        atomic_write_text(outdir / "function_evaluation.json",
                          dumps_strict(out, default=float) + "\n")
        atomic_write_text(outdir / "function_evaluation.txt", text + "\n")
        where = f"ACDC {sel} split" if acdc and sel in ("test", "unseen", "val") else (
            "ACDC" if acdc else data.name)
        render_bland_altman_png(records, outdir / "bland_altman.png",
                                title=f"Function on {where} ({len(records)} patients): automatic - expert masks")
    return 0
