"""Run a cohort: every study of a manifest or folder, resumable, one study per task, on Dask.

:func:`run_batch`:

1. reads the studies (:mod:`.manifest`) and the SQLite state in ``OUT`` (:mod:`.state`);
   studies already finished (``done`` or ``failed``) are skipped unless ``redo``
   (``retry_failed`` re-runs only the failed ones);
2. submits one task per remaining study to a Dask cluster: a ``LocalCluster`` of ``workers``
   worker processes with one thread each on 127.0.0.1 (default), or the existing cluster at
   ``scheduler`` (``tcp://HOST:8786``; started with ``dask scheduler`` / ``dask worker``, or
   dask-jobqueue on Slurm/PBS). ``engine="local"`` runs the studies one after another in this
   process instead (no Dask; for debugging);
3. each task (:func:`.worker.run_study`) writes the study's files into
   ``OUT/studies/<id>/`` and returns a small record; the client stores each record in the
   SQLite state as it arrives (a progress bar counts the studies), so a crash or a kill loses
   only the studies in flight;
4. writes ``OUT/cohort.csv`` (one row per study of the input, in input order: status, error,
   the key values with their status) and ``OUT/cohort.parquet`` when pyarrow is installed,
   and ``OUT/timings.csv`` (seconds and worker per study: kept out of ``cohort.csv``, so the
   cohort table of a re-run or of another number of workers is identical).

The workers must see the same paths as the client (a shared file system on a cluster) and
have this package installed.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import resource
import signal
import sqlite3
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from CardiacLandmarksLib.batch.manifest import StudySpec, load_studies
from CardiacLandmarksLib.batch.state import BatchState
from CardiacLandmarksLib.batch.worker import run_study
from CardiacLandmarksLib.core.errors import CardiacLandmarksError, Interrupted, OutputPathError
from CardiacLandmarksLib.io.atomic import atomic_write_bytes, atomic_write_text
from CardiacLandmarksLib.io.outputs import BATCH_STATE_FILE, prepare_output_dir, release_folder

logger = logging.getLogger(__name__)
PROGRESS = logging.getLogger("CardiacLandmarksLib.progress")  # lines for the person running the batch

ENGINES = ("dask", "local")
STATE_FILE = BATCH_STATE_FILE


class BatchEngineError(CardiacLandmarksError):
    """The batch cannot start: unknown engine, bad worker count, scheduler unreachable."""


@dataclass
class BatchSummary:
    """What a :func:`run_batch` call did."""

    n_studies: int
    n_skipped: int
    n_run: int
    n_done: int
    n_failed: int
    seconds: float
    cohort_csv: Path
    cohort_parquet: Path | None
    engine: str
    workers: int
    worker_peak_rss_mb: dict = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: study id -> reader's points carried from its earlier run into this one (``--redo``)
    review_carried: dict[str, int] = field(default_factory=dict)
    #: what a reader has left to do across the cohort (:func:`review_tally`)
    tally: dict = field(default_factory=dict)

    @property
    def studies_per_hour(self) -> float:
        return 3600.0 * self.n_run / self.seconds if self.seconds > 0 and self.n_run else 0.0


def _peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 1048576.0


def _failed_record(spec: StudySpec, error: str) -> dict:
    return {"study_id": spec.study_id, "status": "failed", "error": error, "row": {}, "paths": spec.paths,
            "height_cm": spec.height_cm, "weight_kg": spec.weight_kg, "output": f"studies/{spec.study_id}",
            "seconds": None, "worker": ""}


def run_batch(
    input_path: str | Path,
    out: str | Path,
    workers: int = 1,
    scheduler: str | None = None,
    redo: bool = False,
    retry_failed: bool = False,
    device: str = "cpu",
    progress: bool = True,
    engine: str = "dask",
    threads_per_worker: int = 1,
    tta: bool = True,
    carry_review: bool = True,
    study_options: dict | None = None,
) -> BatchSummary:
    """Run (or resume) a batch (module docstring).

    Args:
        input_path: CSV manifest or folder of studies.
        out: output folder (created): ``batch.sqlite``, ``studies/<id>/``, ``cohort.csv``
            (+ ``.parquet``), ``timings.csv``.
        workers: worker processes of the local cluster (ignored with ``scheduler``).
        scheduler: address of an existing Dask scheduler, e.g. ``tcp://10.0.0.5:8786``.
        redo: run every study again (finished study folders are kept as backups; the points a reader corrected or
            confirmed in a study's landmark folders are carried into its new detection unless ``carry_review`` is
            False, :func:`.worker.run_study`).
        retry_failed: run the failed studies again (and the unfinished ones).
        device: ``"cpu"`` or ``"cuda"`` for the models.
        progress: show a progress bar over studies (stderr).
        engine: ``"dask"`` or ``"local"`` (in this process, one study at a time).
        threads_per_worker: torch threads per worker process.
        tta: mirror test-time augmentation in every analysis that has one (False: one pass of the SAX, function
            and perfusion networks, about half their time on CPU; long-axis views keep their flag-setting copies;
            a study already finished keeps the setting it ran with, see its study.json).
        carry_review: carry a reader's review of an earlier run of a study into its new run (``--discard-review``:
            False).
        study_options: settings of every study's analysis, passed to
            :func:`CardiacLandmarksLib.study.analyse.analyse_study`: ``pixel_size_mm`` (for headers that lost it),
            ``frame_interval_s`` and ``concentration`` (perfusion, Fermi MBF), ``sequence`` (of series whose
            sequence a study cannot tell); recorded in each study.json.

    Returns:
        :class:`BatchSummary`.

    Raises:
        InputNotFoundError, ManifestError: the input cannot be read (nothing is run).
        OutputPathError: ``out`` is a file, cannot be created or is not writable, or another run (a batch, an
            ``apply-review``, a ``study``) is writing into it (``prepare_output_dir(hold=)``, held to the end):
            nothing is run; or the state or the cohort table cannot be written during the run (a full disk: the
            studies recorded stay recorded).
        BatchEngineError: bad engine/worker count, or the scheduler cannot be reached.
        Interrupted: Ctrl-C (a ``KeyboardInterrupt``): what finished stays recorded; the message says so.
    """
    if engine not in ENGINES:
        raise BatchEngineError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    if workers < 1:
        raise BatchEngineError(f"--workers must be at least 1 (got {workers})")
    t0 = time.perf_counter()
    studies = load_studies(input_path)
    # a bad output path, or another run writing into it, fails before any work; the folder is held from before the
    # removal of temporary files (another batch's, in flight, would go) to the end of the run
    out = prepare_output_dir(out, hold="batch").path
    (out / "studies").mkdir(exist_ok=True)
    n_done = n_failed = 0
    failed: list[tuple[str, str]] = []
    carried: dict[str, int] = {}
    peaks: dict = {}
    try:
        try:
            with BatchState(out / STATE_FILE) as state:
                state.sync(studies)
                todo = state.to_run(studies, redo=redo, retry_failed=retry_failed)
                n_skip = len(studies) - len(todo)
                if n_skip:
                    logger.info("%d of %d studies already finished: skipped", n_skip, len(studies))
                run_id = state.start_run(engine, workers, scheduler, len(studies), len(todo))

                def store(rec: dict) -> None:
                    nonlocal n_done, n_failed
                    state.finish(rec)
                    if rec.get("review_carried"):
                        carried[rec["study_id"]] = int(rec["review_carried"])
                    if rec["status"] == "done":
                        n_done += 1
                    else:
                        n_failed += 1
                        failed.append((rec["study_id"], rec.get("error", "")))

                from tqdm import tqdm

                bar = tqdm(total=len(todo), unit="study", disable=not progress or not todo, file=sys.stderr,
                           desc="studies")
                try:
                    if todo and engine == "local":
                        for spec in todo:
                            state.mark_running(spec.study_id)
                            store(run_study(spec, out, device, threads_per_worker, tta=tta, carry_review=carry_review,
                                            study_options=study_options))
                            bar.update(1)
                            bar.set_postfix(failed=n_failed)
                        peaks["local"] = round(_peak_rss_mb(), 1)
                    elif todo:
                        peaks = _run_dask(todo, out, state, store, bar, workers, scheduler, device,
                                          threads_per_worker, lambda: n_failed, tta=tta, carry_review=carry_review,
                                          study_options=study_options)
                except KeyboardInterrupt:  # Ctrl-C: what is recorded stays; studies in flight are run again next time
                    bar.close()
                    studies_word = "study" if len(todo) == 1 else "studies"
                    raise Interrupted(
                        f"{n_done + n_failed} of the {len(todo)} {studies_word} to run finished ({n_done} done, "
                        f"{n_failed} failed) and are recorded in {out / STATE_FILE}"
                        + (f", besides the {n_skip} finished before" if n_skip else "")
                        + "; the same command again goes on with the rest (cohort.csv is written when a run ends)"
                    ) from None
                finally:
                    bar.close()
                    state.end_run(run_id, n_done, n_failed)
                records = state.records([s.study_id for s in studies])
            csv_path, pq_path = write_cohort(records, out)
            tally = review_tally(cohort_rows(records))
        except sqlite3.OperationalError as exc:  # a full disk, a read-only folder, a state file another batch holds
            raise _state_error(out / STATE_FILE, exc) from exc
    finally:
        release_folder(out)
    return BatchSummary(len(studies), n_skip, len(todo), n_done, n_failed, time.perf_counter() - t0, csv_path,
                        pq_path, engine, workers if scheduler is None else 0, peaks, failed, carried, tally)


def _run_dask(todo, out, state, store, bar, workers, scheduler, device, threads, n_failed, *, tta: bool = True,
              carry_review: bool = True, study_options: dict | None = None) -> dict:
    from distributed import Client, LocalCluster, as_completed

    # Dask logs every connection at INFO level: keep that out of the progress bar unless asked for (-v)
    logging.getLogger("distributed").setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    cluster = None
    try:
        if scheduler:
            try:
                client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise BatchEngineError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
        else:
            with warnings.catch_warnings(), _workers_ignore_ctrl_c():  # 8787 taken: the HTTP port moves on
                warnings.filterwarnings("ignore", message=".*already in use")
                cluster = LocalCluster(n_workers=_local_workers(workers, len(todo)), threads_per_worker=1,
                                       processes=True, host="127.0.0.1",
                                       dashboard_address=None, silence_logs=logging.WARNING)
            client = Client(cluster)
    except BatchEngineError:
        raise
    interrupted = False
    try:
        if scheduler:  # a cluster's workers run their own install: the same code and models, or no study runs
            check_workers(client, scheduler)
        from CardiacLandmarksLib.batch.worker import software

        mine = software()
        futures = {}
        for spec in todo:
            state.mark_running(spec.study_id)
            f = client.submit(run_study, spec, str(out), device, threads, tta=tta, carry_review=carry_review,
                              study_options=study_options, key=f"study-{spec.study_id}-{time.time_ns()}", pure=False, retries=0)
            futures[f] = spec
        for f in as_completed(futures):
            spec = futures[f]
            try:
                rec = f.result()
            except Exception as exc:  # noqa: BLE001 - a lost worker (KilledWorker ...) fails the study only
                rec = _failed_record(spec, f"{type(exc).__name__}: {exc}")
            if rec.get("software", mine) != mine:  # a worker that joined after check_workers, with another install
                rec = _failed_record(spec, "analysed on a Dask worker with other code or models than this client ("
                                     + ", ".join(software_differences(rec["software"], mine)) + "): not taken into "
                                     "the cohort; run the batch again with --retry-failed once every worker runs "
                                     "this install")
            store(rec)
            bar.update(1)
            bar.set_postfix(failed=n_failed())
        try:
            peaks = client.run(_peak_rss_mb)
        except Exception:  # noqa: BLE001 - memory figures are informative only
            peaks = {}
        return {str(k): round(v, 1) for k, v in peaks.items()}
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:  # also on Ctrl-C: studies in flight stay 'running' in the state and are run again next time
        with _quiet_dask_stop(client if interrupted and cluster is not None else None):
            client.close(timeout=10)
            if cluster is not None:
                cluster.close(timeout=10)


def software_differences(theirs: dict, mine: dict) -> list[str]:
    """What differs between two :func:`~.worker.software` records, in words (``"sax_unet 1.5.0 ab12... (here
    1.7.0 cd34...)"``); empty when they are the same."""
    diff = [f"{key} {theirs.get(key)} (here {mine[key]})" for key in ("tool", "code") if theirs.get(key) != mine[key]]
    return diff + [f"{name} {theirs.get('models', {}).get(name, 'missing')} (here {v})"
                   for name, v in mine["models"].items() if theirs.get("models", {}).get(name) != v]


def check_workers(client, scheduler: str) -> None:
    """The workers connected to ``scheduler`` run this client's code and models (:func:`~.worker.software`): a
    worker machine with an older install would put values of other models into the one cohort table.

    Workers that join after this check (a job queue still starting them; with none connected yet a note says the
    batch waits for them) are checked by their records instead: a study analysed with another install is recorded
    as failed (:func:`_run_dask`).

    Raises:
        BatchEngineError: a worker cannot import this tool, or runs other code or models (each named, with what
            differs), before any study is submitted.
    """
    from CardiacLandmarksLib.batch.worker import software

    mine = software()
    try:
        theirs = client.run(software)
    except Exception as exc:  # noqa: BLE001 - a worker without the package fails to unpickle the function
        raise BatchEngineError(f"the Dask workers of {scheduler} cannot run this tool ({type(exc).__name__}: {exc}); "
                               "install cardiac-landmarks (the same version) on every worker machine") from None
    if not theirs:
        PROGRESS.info(f"note: no worker is connected to {scheduler} yet: the batch waits for them (a study analysed "
                      "on one with other code or models is recorded as failed)")
        return
    other = {address: diff for address, sw in sorted(theirs.items()) if (diff := software_differences(sw, mine))}
    if other:
        lines = "; ".join(f"{a}: {', '.join(d)}" for a, d in list(other.items())[:3])
        raise BatchEngineError(f"{len(other)} of {len(theirs)} Dask workers run other code or models than this client "
                               f"({lines}{' ...' if len(other) > 3 else ''}); install the same version of "
                               "cardiac-landmarks and its models on every worker machine")


def _silence_distributed() -> None:
    """Run in a worker process (``Client.run``): its Dask logs off, as the batch stops."""
    logging.getLogger("distributed").setLevel(logging.CRITICAL + 1)


@contextlib.contextmanager
def _quiet_dask_stop(client):
    """Closing a local cluster on Ctrl-C while its workers are still inside a study: the workers cannot stop a
    running study at once, so they log a cancelled task, then a traceback when their heartbeat finds the scheduler
    gone, and the nannies (in this process) say they kill them. The person pressed Ctrl-C and is told what is
    recorded and how to go on; these lines only hid that (two runs in five printed a traceback). ``client``: the
    interrupted local cluster's client (its workers' and this process's Dask logs are turned off while it closes),
    or None (nothing changes)."""
    if client is None:
        yield
        return
    with contextlib.suppress(Exception):  # a worker that does not answer must not keep the batch from stopping
        client.run(_silence_distributed, on_error="ignore")
    dask_log = logging.getLogger("distributed")
    level = dask_log.level
    dask_log.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        dask_log.setLevel(level)


#: peak memory of a worker running full studies (benchmarks/README.md: 0.8-1.0 GB), for the note on --workers
WORKER_MEMORY_GB = 1.0


def _local_workers(workers: int, n_studies: int) -> int:
    """The local cluster's size: ``--workers``, but no more than the studies to run (an idle worker process only
    costs memory); a note when the workers outnumber the CPU cores (each study runs on one core: more workers than
    cores only share them, and slow every study) or would need more memory than is free."""
    n = max(1, min(workers, n_studies))
    if n < workers:
        logger.info("--workers %d for %d stud%s: %d worker process(es) started", workers, n_studies,
                    "y" if n_studies == 1 else "ies", n)
    cores = os.cpu_count() or 1
    if n > cores:
        PROGRESS.info("note: %d workers on %d CPU cores: each study runs on one core, so workers beyond the cores share "
                      "them and every study runs slower (--workers %d is usually the fastest here)", n, cores, cores)
    with contextlib.suppress(Exception):
        import psutil  # a dependency of distributed

        free_gb = psutil.virtual_memory().available / 1e9
        if n * WORKER_MEMORY_GB > free_gb:
            PROGRESS.info("note: %d workers need about %.0f GB of memory at their peak (%.1f GB each, measured), "
                          "%.1f GB is free: a worker out of memory fails its study", n, n * WORKER_MEMORY_GB,
                          WORKER_MEMORY_GB, free_gb)
    return n


def _state_error(path: Path, exc: sqlite3.OperationalError) -> CardiacLandmarksError:
    """The named error for a batch whose state database cannot be written or read."""
    text = str(exc)
    if "full" in text or "readonly" in text or "read-only" in text or "disk I/O" in text:
        return OutputPathError(f"cannot record the batch's state in {path}: {text}: free some space (or make the "
                               "folder writable), then run the same command again (finished studies are skipped; "
                               "--retry-failed for those that failed for want of space)")
    return BatchEngineError(f"the batch's state {path} cannot be used: {text}"
                            + (" (another batch into the same output folder?)" if "locked" in text else ""))


@contextlib.contextmanager
def _workers_ignore_ctrl_c():
    """Start the local cluster's worker processes with SIGINT ignored (a disposition a new process inherits, and
    Python then leaves alone), so a Ctrl-C in the terminal stops the batch in this process alone: it records what
    finished, closes the cluster (which ends the workers) and says how to go on, instead of every worker printing a
    KeyboardInterrupt traceback. Outside the main thread signals cannot be set: nothing changes there."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# --------------------------------------------------------------------------- cohort table


def cohort_columns() -> list[str]:
    """Columns of ``cohort.csv`` in order."""
    from CardiacLandmarksLib.study.analyse import COHORT_VALUES, PERFUSION_COLUMNS

    cols = ["study_id", "status", "error", "study_status", "reader_points", "analyses", "n_series", "n_analysed",
            "n_listed_only", "height_cm", "weight_kg", "height_weight_source"]
    for _, c in COHORT_VALUES:
        cols += [c, c + "_status"] + ([c + "_metric"] if c in PERFUSION_COLUMNS else [])
        if c == "lax_shortening_pct":  # the long-axis view the three LV length columns come from
            cols.append("lax_view")
    return cols + ["output", "paths"]


def cohort_rows(records: list[dict]) -> list[dict]:
    """The rows of ``cohort.csv`` (:func:`cohort_columns`, in that order) from the studies' worker records: each study's
    cohort row (its key values and their statuses), then its id, run status, error, height and weight with their
    source, output folder and input paths (``;``-joined). A failed study has a row too, with its error.
    """
    cols = cohort_columns()
    rows = []
    for rec in records:
        row = dict.fromkeys(cols)
        row.update({k: v for k, v in (rec.get("row") or {}).items() if k in row})
        for k in ("study_id", "status", "error", "height_cm", "weight_kg", "height_weight_source", "output"):
            row[k] = rec.get(k)
        row["paths"] = ";".join(rec.get("paths") or [])
        rows.append(row)
    return rows


def review_tally(rows: list[dict]) -> dict:
    """What a reader has left to do across a cohort, from the rows of ``cohort.csv`` (:func:`cohort_rows`).

    Returns:
        ``{"studies": {"ok": n, "review": n, "n/a": n, "failed": n}, "values": {column: (n_review, n_measured)}}``:
        the studies by their study status (a failed run counts as failed), and for every key value column of
        ``cohort.csv`` that some study measured, how many of the studies that have it hold it as ``review``
        (a number a reader must check before it is used), in the table's column order.
    """
    from CardiacLandmarksLib.study.analyse import COHORT_VALUES

    studies = {"ok": 0, "review": 0, "n/a": 0, "failed": 0}
    for r in rows:
        key = "failed" if r.get("status") == "failed" else str(r.get("study_status") or "n/a")
        studies[key] = studies.get(key, 0) + 1
    values = {}
    for _, col in COHORT_VALUES:
        measured = [r for r in rows if r.get(col) not in (None, "") and r.get(col + "_status") in ("ok", "review")]
        if measured:
            values[col] = (sum(r.get(col + "_status") == "review" for r in measured), len(measured))
    return {"studies": studies, "values": values}


def tally_lines(tally: dict) -> list[str]:
    """:func:`review_tally` as the ``batch`` command prints it: the studies by status, then the cohort.csv columns
    with values to review (``rvi_angle_deg 3 of 3``); nothing when the tally is empty."""
    if not tally:
        return []
    st = tally["studies"]
    lines = ["study status: " + ", ".join(f"{n} {k}" for k, n in st.items() if n or k in ("ok", "review"))]
    doubt = [f"{col} {n} of {m}" for col, (n, m) in tally["values"].items() if n]
    if doubt:
        lines.append("values to review (cohort.csv *_status, of the studies that have the value): " + ", ".join(doubt))
    elif tally["values"]:
        lines.append("values to review: none (every measured value ok)")
    return lines


def write_cohort(records: list[dict], out: Path) -> tuple[Path, Path | None]:
    """Write ``cohort.csv`` (and ``cohort.parquet`` when pyarrow is installed) and ``timings.csv``.

    Returns:
        ``(csv path, parquet path or None)``.
    """
    rows = cohort_rows(records)
    cols = cohort_columns()
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    csv_path = atomic_write_text(out / "cohort.csv", buf.getvalue())
    tb = io.StringIO()
    tw = csv.writer(tb, lineterminator="\n")
    tw.writerow(["study_id", "status", "seconds", "worker"])
    for rec in records:
        tw.writerow([rec.get("study_id"), rec.get("status"), rec.get("seconds", ""), rec.get("worker", "")])
    atomic_write_text(out / "timings.csv", tb.getvalue())
    pq_path = None
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        logger.info("pyarrow not installed: cohort.parquet not written")
    else:
        table = pa.Table.from_pylist(rows)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        pq_path = atomic_write_bytes(out / "cohort.parquet", sink.getvalue().to_pybytes())
    return csv_path, pq_path
