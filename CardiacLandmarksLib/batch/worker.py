"""Run one study in a batch worker: isolated, with the worker's own model cache.

:func:`run_study` never raises for a bad study: any error becomes a ``failed`` record with
the error's type and message (and ``error.txt`` with the traceback in the study folder),
so one study cannot stop the batch. Outputs are written into a hidden
``<OUT>/studies/.<id>.partial-<pid>`` folder first and renamed to ``<OUT>/studies/<id>``
when the study ends, so a crash or a kill never leaves a half-written study folder under
its final name; an existing folder of the same study (``--redo``) is kept as
``<id>.bak-YYYYmmdd-HHMMSS`` with only what the new run changed or did not write again
(:func:`CardiacLandmarksLib.io.outputs.settle_backup`; no backup when it rewrote everything identically), and the
points a reader corrected or confirmed in it are carried into the new detection of the same images
(:func:`CardiacLandmarksLib.results.carry_review`). Each finished study folder has its ``run.json`` (inputs with
SHA-256, options, files written with SHA-256, written last), as ``study`` writes.

Models are loaded once per worker process (:data:`_MODELS`, a :class:`CardiacLandmarksLib.study.tasks.Models`
kept at module level) and reused for every study the worker runs.

A study is ``failed`` when it cannot be read at all (missing path, no DICOM or image file)
or when not one analysis succeeded (every analysis failed, or no series is analysable:
damaged files, only localisers ...); otherwise it is ``done``, with the errors of single
series (if any) in its ``error`` field and its study status (ok / review / n/a).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import socket
import time
import traceback
from pathlib import Path

from CardiacLandmarksLib.batch.manifest import StudySpec
from CardiacLandmarksLib.io.atomic import atomic_write_text
from CardiacLandmarksLib.io.outputs import OutputDir, finish_run, settle_backup

logger = logging.getLogger(__name__)

_MODELS = None  # per-process model cache (one per Dask worker process)


def worker_models(device: str = "cpu", tta: bool = True):
    """The model cache of this process (created on first use; anew when the device or TTA setting changes)."""
    global _MODELS
    from CardiacLandmarksLib.study.tasks import Models

    if _MODELS is None or _MODELS.device != device or _MODELS.tta != bool(tta):
        _MODELS = Models(device, tta=tta)
    return _MODELS


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().name.__str__() + f"@{socket.gethostname()}:{os.getpid()}"
    except (ImportError, ValueError):
        return f"local@{socket.gethostname()}:{os.getpid()}"


def _backup_name(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    cand = path.with_name(f"{path.name}.bak-{stamp}")
    n = 1
    while cand.exists():
        cand = path.with_name(f"{path.name}.bak-{stamp}-{n}")
        n += 1
    return cand


def study_dir(out_root: str | Path, study_id: str) -> Path:
    """Final output folder of a study."""
    return Path(out_root) / "studies" / study_id


@functools.lru_cache(maxsize=1)
def software() -> dict:
    """What this process would analyse a study with: the tool's version, a digest of its Python code and the bundled
    models (name -> ``"version sha256[:12]"`` from the catalogue). Run on every Dask worker before a batch starts
    (:func:`CardiacLandmarksLib.batch.engine.check_workers`): a cluster's workers must give the cohort's values with
    the same code and models as the client that records them."""
    import hashlib

    from CardiacLandmarksLib.io.outputs import _tool_version
    from CardiacLandmarksLib.models.catalogue import catalogue

    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for f in sorted(package.rglob("*.py")):
        digest.update(str(f.relative_to(package)).encode() + b"\0" + f.read_bytes())
    return {"tool": _tool_version(), "code": digest.hexdigest()[:12],
            "models": {name: f"{e.version} {e.sha256[:12]}" for name, e in sorted(catalogue().items())}}


def run_study(spec: StudySpec, out_root: str | Path, device: str = "cpu", threads: int | None = 1, *,
              tta: bool = True, carry_review: bool = True, study_options: dict | None = None) -> dict:
    """Analyse one study and write its outputs (module docstring).

    Args:
        spec: the study.
        out_root: batch output folder (``<out_root>/studies/<id>/`` is written).
        device: ``"cpu"`` or ``"cuda"``.
        threads: torch CPU threads for this worker (1 per worker by default; None = leave).
        tta: mirror test-time augmentation in the analyses (recorded in the record and the study report).
        carry_review: when the study's folder holds an earlier run (``--redo``), carry the points a reader
            corrected or confirmed there into the new detection (``analyse_study(review_from=...)``); the record's
            ``review_carried`` counts them.
        study_options: more settings of the study's analysis (``pixel_size_mm``, ``frame_interval_s``,
            ``concentration``: :func:`CardiacLandmarksLib.study.analyse.analyse_study`); the study's own manifest
            values win (:meth:`.manifest.StudySpec.study_options`).

    Returns:
        the record (JSON-ready dict): ``study_id``, ``status`` (``done``/``failed``), ``error``,
        ``row`` (the cohort row, see :meth:`.study.analyse.StudyResult.cohort_row`), ``paths``,
        ``height_cm``, ``weight_kg``, ``output`` (study folder, relative to ``out_root``),
        ``seconds``, ``worker``, ``model_loads`` (models this call loaded: 0 after the first
        study of a worker).
    """
    t0 = time.perf_counter()
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    models = worker_models(device, tta)
    before = dict(models.loads)
    root = Path(out_root)
    final = study_dir(root, spec.study_id)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{spec.study_id}.partial-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    partial = final.with_name(f".{spec.study_id}.partial-{os.getpid()}")
    partial.mkdir()
    record: dict = {"study_id": spec.study_id, "paths": list(spec.paths), "height_cm": spec.height_cm,
                    "weight_kg": spec.weight_kg, "output": str(final.relative_to(root)), "tta": bool(tta),
                    "software": software()}  # the client compares it with its own (a worker that joined late)
    try:
        from CardiacLandmarksLib.study.analyse import analyse_study

        result = analyse_study(spec.paths if len(spec.paths) != 1 else spec.paths[0], partial, models=models,
                               subject={"height_cm": spec.height_cm, "weight_kg": spec.weight_kg},
                               name=spec.study_id, review_from=final if carry_review and final.is_dir() else None,
                               **spec.study_options(study_options))
        written = result.write(partial)
        options = {"device": device, "tta": bool(tta), "carry_review": bool(carry_review),
                   **spec.study_options(study_options), "study_id": spec.study_id}
        finish_run(OutputDir(partial, begun=True), spec.paths, options,  # a fresh folder: nothing to back up
                   [partial / f for o in result.outcomes for f in o.files] + list(written),
                   warnings=list(result.errors), command="batch", timings=result.timings())
        row = result.cohort_row()
        # the height and weight the study used: the manifest's, else those of the DICOM header (and which)
        record.update(height_cm=result.subject.get("height_cm"), weight_kg=result.subject.get("weight_kg"),
                      height_weight_source=result.subject.get("source") or (
                          "manifest" if result.subject.get("height_cm") is not None
                          or result.subject.get("weight_kg") is not None else None))
        carried = sum(o.review_carried for o in result.outcomes)
        if carried:
            record["review_carried"] = carried
        ok = [o for o in result.outcomes if o.ok]
        if ok:
            record.update(status="done", error="; ".join(result.errors))
        else:
            reasons = result.errors or [f"{s.label}: {s.reason}" for s in result.routing.series][:5]
            record.update(status="failed", error="no series could be analysed: " + "; ".join(reasons))
        record["row"] = row
    except Exception as exc:  # noqa: BLE001 - isolation: a bad study is recorded, never raised
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}", row={})
        with contextlib.suppress(OSError):  # no room for it on a full disk: the record holds the error anyway
            atomic_write_text(partial / "error.txt", traceback.format_exc())
        logger.info("study %s failed: %s", spec.study_id, record["error"])
    backup = _backup_name(final) if final.exists() else None
    if backup is not None:
        final.rename(backup)
    partial.rename(final)
    if backup is not None:  # the earlier run keeps only what the new one changed (or did not write again)
        kept = settle_backup(backup, final)
        if kept:
            record["backup"] = str(backup.relative_to(root))
        logger.info("study %s: earlier run %s", spec.study_id,
                    f"kept in {backup.name} ({len(kept)} file(s) changed or not rewritten)" if kept
                    else "rewritten identically: no backup kept")
    record["seconds"] = round(time.perf_counter() - t0, 3)
    record["worker"] = _worker_name()
    record["model_loads"] = {k: v - before.get(k, 0) for k, v in models.loads.items() if v - before.get(k, 0)}
    return record
