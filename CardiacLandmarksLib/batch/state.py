"""Batch state in one SQLite database (``<OUT>/batch.sqlite``), so a re-run resumes.

Table ``studies`` (one row per study id): ``paths`` (JSON list), ``status`` (``pending``,
``running``, ``done``, ``failed``), ``error``, ``record`` (the JSON record the worker
returned: cohort row, files, timings), ``attempts``, ``started``/``finished`` (Unix time),
``seconds``, ``worker``. Table ``runs``: one row per batch run (start, end, engine, workers,
scheduler, counts).

Only the client process writes (workers return small records), so the database never sees
concurrent writers across machines; each update is its own committed transaction, so a
crash or a kill loses at most the studies in flight, which stay ``running`` and are run
again next time. ``done`` and ``failed`` are finished: a re-run skips them (``redo`` runs
everything again, ``retry_failed`` the failed ones).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from CardiacLandmarksLib.io.jsonsafe import dumps_strict

SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    study_id TEXT PRIMARY KEY,
    paths TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    error TEXT NOT NULL DEFAULT '',
    record TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    started REAL,
    finished REAL,
    seconds REAL,
    worker TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    finished REAL,
    engine TEXT,
    workers INTEGER,
    scheduler TEXT,
    n_studies INTEGER,
    n_submitted INTEGER,
    n_done INTEGER,
    n_failed INTEGER
);
"""

FINISHED = ("done", "failed")


class BatchState:
    """The SQLite state of one batch output folder (module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the database connection."""
        self.db.close()

    def __enter__(self) -> BatchState:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ studies

    def sync(self, studies) -> None:
        """Insert new studies as ``pending``; keep the state of known ones (their paths are updated)."""
        with self.db:
            for s in studies:
                self.db.execute(
                    "INSERT INTO studies (study_id, paths) VALUES (?, ?) "
                    "ON CONFLICT(study_id) DO UPDATE SET paths = excluded.paths",
                    (s.study_id, json.dumps(s.paths)))

    def statuses(self) -> dict[str, str]:
        """``{study_id: status}`` (``pending``, ``running``, ``done``, ``failed``) of every known study."""
        return dict(self.db.execute("SELECT study_id, status FROM studies"))

    def to_run(self, studies, redo: bool = False, retry_failed: bool = False) -> list:
        """The studies of ``studies`` that this run must process."""
        st = self.statuses()
        skip = set() if redo else {"done"} | (set() if retry_failed else {"failed"})
        return [s for s in studies if st.get(s.study_id, "pending") not in skip]

    def mark_running(self, study_id: str) -> None:
        """Record that a study was handed to a worker (its start time; one more attempt)."""
        self.db.execute("UPDATE studies SET status='running', started=?, attempts=attempts+1 WHERE study_id=?",
                        (time.time(), study_id))

    def finish(self, record: dict) -> None:
        """Store a worker's record (``status`` ``done`` or ``failed``)."""
        self.db.execute(
            "UPDATE studies SET status=?, error=?, record=?, finished=?, seconds=?, worker=? WHERE study_id=?",
            (record["status"], record.get("error", ""), dumps_strict(record, indent=None), time.time(),
             record.get("seconds"), record.get("worker", ""), record["study_id"]))

    def update_record(self, record: dict) -> None:
        """Replace a finished study's record (e.g. its cohort row after a reader's review), keeping its status,
        timing and worker."""
        self.db.execute("UPDATE studies SET record=? WHERE study_id=?",
                        (dumps_strict(record, indent=None), record["study_id"]))

    def records(self, study_ids: list[str] | None = None) -> list[dict]:
        """Finished records (``study_ids`` order when given, else by id); unfinished studies get a
        minimal record with their status."""
        rows = {sid: (status, error, rec) for sid, status, error, rec in
                self.db.execute("SELECT study_id, status, error, record FROM studies")}
        ids = study_ids if study_ids is not None else sorted(rows)
        out = []
        for sid in ids:
            if sid not in rows:
                continue
            status, error, rec = rows[sid]
            if rec and status in FINISHED:
                out.append(json.loads(rec))
            else:
                out.append({"study_id": sid, "status": status, "error": error})
        return out

    # ------------------------------------------------------------------ runs

    def start_run(self, engine: str, workers: int, scheduler: str | None, n_studies: int, n_submitted: int) -> int:
        """Record the start of one ``batch`` run (engine, workers, scheduler, studies known and submitted); returns its id."""
        cur = self.db.execute(
            "INSERT INTO runs (started, engine, workers, scheduler, n_studies, n_submitted) VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), engine, workers, scheduler or "", n_studies, n_submitted))
        return int(cur.lastrowid)

    def end_run(self, run_id: int, n_done: int, n_failed: int) -> None:
        """Record the end of run ``run_id`` with its counts."""
        self.db.execute("UPDATE runs SET finished=?, n_done=?, n_failed=? WHERE run_id=?",
                        (time.time(), n_done, n_failed, run_id))
