"""CLI sub-command ``function``: LV and RV volumes, EF and LV mass from short-axis cine MR.

Examples::

    cardiac-landmarks function SAX_CINE_DICOM_FOLDER -o out/P1 --height 172 --weight 70
    cardiac-landmarks function cine_4d.nii.gz -o out/P1 --ed-phase 0
    cardiac-landmarks function --ed patient_ED.nii.gz --es patient_ES.nii.gz -o out/P1

A cine (DICOM folder or 4-D file): every phase is segmented, ED = the phase of the largest and
ES = the phase of the smallest LV cavity volume (--ed-phase / --es-phase override, 0-based).
Two 3-D volumes: --ed and --es. Writes function.json, function.csv, the segmentation as NIfTI
(labels 1 RV cavity, 2 LV myocardium, 3 LV cavity; one 4-D file for a cine) and as 3D Slicer
.seg.nrrd (ED and ES for a cine), function_overlay.png and, for a cine, volume_curve.png.
"""

from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger(__name__)


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
    p.add_argument("--time-axis", default="auto", choices=("auto", "first", "last"),
                   help="which axis of a 4-D image file is time (default: auto)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--no-tta", action="store_true", help="skip mirror test-time augmentation (faster, less accurate)")
    p.add_argument("--no-clean", action="store_true", help="keep every connected component (no clean-up)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs without keeping backups")
    p.set_defaults(func=cmd_function)


def cmd_function(args: argparse.Namespace) -> int:
    from ..series import load_series
    from .measurements import FunctionInputError, bsa_mosteller
    from .pipeline import FunctionOptions, analyse_function

    if (args.input is None) == (args.ed is None and args.es is None):
        raise FunctionInputError("give either one cine (INPUT) or two volumes (--ed ED_FILE --es ES_FILE)")
    if args.input is None and (args.ed is None or args.es is None):
        raise FunctionInputError("give both --ed and --es")
    bsa_mosteller(args.height, args.weight)  # checked before loading anything
    opts = FunctionOptions(ed_phase=args.ed_phase, es_phase=args.es_phase, height_cm=args.height,
                           weight_kg=args.weight, device=args.device, tta=not args.no_tta, clean=not args.no_clean)
    if args.input is not None:
        inputs = load_series(args.input, series_uid=args.series_uid, time_axis=args.time_axis)
    else:
        inputs = (load_series(args.ed, series_uid=args.series_uid, time_axis="none"),
                  load_series(args.es, series_uid=args.series_uid, time_axis="none"))
    result = analyse_function(inputs, opts)
    written = result.write(args.output, if_exists="overwrite" if args.overwrite else "backup")
    lv, rv = result.values["LV"], result.values["RV"]

    def show(v):
        return "n/a" if v.value is None else f"{v.value:.1f} {v.unit}" + ("" if v.status == "ok" else f" [{v.status}]")
    if result.mode == "cine":
        print(f"ED phase {result.ed_phase}, ES phase {result.es_phase} of {result.series[0].n_phases}")
    print(f"LV  EDV {show(lv['EDV_ml'])}  ESV {show(lv['ESV_ml'])}  SV {show(lv['SV_ml'])}  EF {show(lv['EF_pct'])}  "
          f"mass {show(lv['mass_g'])}")
    print(f"RV  EDV {show(rv['EDV_ml'])}  ESV {show(rv['ESV_ml'])}  SV {show(rv['SV_ml'])}  EF {show(rv['EF_pct'])}")
    print(f"wrote {len(written)} files to {args.output}", file=sys.stderr)
    return 0
