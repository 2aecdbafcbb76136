"""CLI sub-command ``batch``: run ``study`` over a cohort, resumable, on a Dask cluster.

Examples::

    cardiac-landmarks batch manifest.csv -o out/cohort --workers 4
    cardiac-landmarks batch /data/studies -o out/cohort --scheduler tcp://10.0.0.5:8786

INPUT is a CSV manifest (``study_id,path[,height_cm,weight_kg]``: height and weight index the volumes and LV mass
to the body-surface area; ``path`` a study folder,
files, a glob pattern, or several joined by ``;``) or a folder with one sub-folder per study.
State lives in ``OUT/batch.sqlite``: a re-run skips finished studies (``--redo`` runs all
again, keeping what each earlier study folder held that the new run changed as ``<id>.bak-<time>`` and carrying the points a reader corrected or
confirmed there into the new detection unless ``--discard-review``; ``--retry-failed`` runs the failed ones). A failing study is recorded with its error and
the run goes on. Output: ``OUT/studies/<id>/`` (the study report), ``OUT/cohort.csv`` (+
``cohort.parquet`` with pyarrow) and ``OUT/timings.csv``.
"""

from __future__ import annotations

import argparse

from CardiacLandmarksLib.cli.study import add_study_options, study_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("batch", help="run the study analysis over a cohort (CSV manifest or folder of studies), "
                                     "resumable, on Dask",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="CSV manifest or folder of studies")
    p.add_argument("-o", "--output", required=True, help="output folder (created; holds the state)")
    p.add_argument("--workers", type=int, default=1, help="worker processes of the local Dask cluster (default 1)")
    p.add_argument("--scheduler", default=None, help="submit to an existing Dask cluster, e.g. tcp://HOST:8786")
    p.add_argument("--redo", action="store_true", help="run every study again (earlier outputs kept as backups)")
    p.add_argument("--discard-review", action="store_true",
                   help="with --redo: do not carry the points a reader corrected or confirmed in a study's earlier run "
                        "into its new detection (the earlier folder is kept as a backup either way)")
    p.add_argument("--retry-failed", action="store_true", help="run the failed studies again")
    p.add_argument("--engine", default="dask", choices=("dask", "local"),
                   help="dask (default) or local: one study at a time in this process, no cluster")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="where the networks run: cpu (default: a cohort's workers each use one CPU core; results do "
                        "not depend on which GPU a worker had) or cuda (each worker uses the GPU)")
    p.add_argument("--no-tta", action="store_true",
                   help="skip mirror test-time augmentation in every study (SAX landmarks, function, perfusion; about half "
                        "their network time on CPU); long-axis views keep their flag-setting copies")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    from CardiacLandmarksLib.core.series import GIVEN_SEQUENCES

    p.add_argument("--sequence", default=None, choices=GIVEN_SEQUENCES,
                   help="the sequence of every series whose sequence a study cannot tell from the tags or the shape "
                        "(anonymised exports of one-phase stacks), as `study --sequence SEQ`; recognised series keep "
                        "theirs")
    add_study_options(p)
    p.set_defaults(func=cmd_batch)


def cmd_batch(args: argparse.Namespace) -> int:
    from CardiacLandmarksLib.batch.engine import run_batch

    s = run_batch(args.input, args.output, workers=args.workers, scheduler=args.scheduler, redo=args.redo,
                  retry_failed=args.retry_failed, device=args.device, progress=not args.no_progress,
                  engine=args.engine, tta=not args.no_tta, carry_review=not args.discard_review,
                  study_options={**study_options(args), **({"sequence": args.sequence} if args.sequence else {})})
    rate = f", {s.studies_per_hour:.0f} studies/hour" if s.n_run else ""
    print(f"{s.n_studies} stud{'y' if s.n_studies == 1 else 'ies'}: {s.n_skipped} already finished (skipped), {s.n_run} run "
          f"({s.n_done} done, {s.n_failed} failed) in {s.seconds:.1f} s{rate}")
    if s.worker_peak_rss_mb:
        print("peak memory per worker: " + ", ".join(f"{v:.0f} MB" for v in s.worker_peak_rss_mb.values()))
    for sid, err in s.failed:
        print(f"  failed {sid}: {err}")
    if s.review_carried:
        n = len(s.review_carried)
        print(f"readers' reviews kept from the earlier run: {sum(s.review_carried.values())} point(s) in "
              f"{n} stud{'y' if n == 1 else 'ies'} ({', '.join(list(s.review_carried)[:5])}"
              f"{' ...' if len(s.review_carried) > 5 else ''})")
    from CardiacLandmarksLib.batch.engine import tally_lines

    for line in tally_lines(s.tally):
        print(line)
    print(f"wrote {s.cohort_csv}" + (f" and {s.cohort_parquet}" if s.cohort_parquet else ""))
    return 0
