"""Background jobs and their logs: the ``jobs`` and ``job_logs`` tables.

A job is ``queued``, then ``running`` (claimed by one worker), then exactly one final state:
``succeeded``, ``failed`` or ``cancelled``. Every state change is one conditional UPDATE, so
two processes can never both move the same job: a claim only takes a ``queued`` job, a final
state is only written over ``running``, and crash recovery only fails a job whose heartbeat is
still as old as it demands inside its own transaction.

A job has a kind (``audit``, ``ingest``, ``export``: ``jobs.kinds``), a JSON payload (the
``config`` column) and, once finished, the JSON ``result`` its runner returned; a failed job's
result says whether its error was the user's to fix (``user_error``).
"""

from __future__ import annotations

import json

import pandas as pd

from audit.errors import NotFoundError
from audit.store.connection import Store

FINAL_JOB_STATES = ("succeeded", "failed", "cancelled")
JOB_FIELDS = (
    "id", "dataset_id", "kind", "config", "status", "progress", "message", "created_at",
    "started_at", "finished_at", "worker_pid", "worker_host", "heartbeat_at", "device",
    "cancel_requested", "error", "traceback", "run_id", "result",
)
_SELECT_JOB = f"SELECT {', '.join(JOB_FIELDS)} FROM jobs WHERE id = ?"
_CLAIM_NEXT = """
    UPDATE jobs SET status = 'running', started_at = current_timestamp,
        heartbeat_at = current_timestamp, worker_pid = ?, worker_host = ?, progress = 0,
        message = 'starting'
    WHERE id = (SELECT min(id) FROM jobs WHERE status = 'queued') AND status = 'queued'
    RETURNING id, dataset_id, kind, config
"""
_LIST_JOBS = """
    SELECT j.id, CASE WHEN j.dataset_id IS NULL THEN '(new dataset)'
            ELSE coalesce(d.name, '(deleted dataset ' || j.dataset_id || ')') END AS dataset,
        j.kind, j.status, j.progress, j.message, j.created_at, j.started_at, j.finished_at,
        j.device, j.run_id, j.error
    FROM jobs j LEFT JOIN datasets d ON d.id = j.dataset_id
    ORDER BY j.id DESC LIMIT ?
"""
_RUNNING = """
    SELECT id, worker_pid, worker_host, epoch(current_timestamp - heartbeat_at) AS age_s
    FROM jobs WHERE status = 'running' ORDER BY id
"""


def insert_job(store: Store, dataset_id: int | None, kind: str, config: dict) -> int:
    """Queue a job (``config``: its kind's payload); return its id."""
    with store.transaction() as con:
        row = con.execute(
            "INSERT INTO jobs (dataset_id, kind, config, status, message) "
            "VALUES (?, ?, ?, 'queued', 'waiting for a worker') RETURNING id",
            [dataset_id, kind, json.dumps(config, sort_keys=True)],
        ).fetchone()
    return int(row[0])


def has_queued_jobs(store: Store) -> bool:
    with store.transaction() as con:
        return con.execute("SELECT count(*) FROM jobs WHERE status = 'queued'").fetchone()[0] > 0


def claim_next_job(store: Store, pid: int, host: str) -> dict | None:
    """Atomically move the oldest queued job to running for this worker; None when none."""
    with store.transaction() as con:
        row = con.execute(_CLAIM_NEXT, [pid, host]).fetchone()
    if row is None:
        return None
    return {"id": int(row[0]), "dataset_id": row[1], "kind": row[2], "config": json.loads(row[3])}


def set_device(store: Store, job_id: int, device: str) -> None:
    with store.transaction() as con:
        con.execute("UPDATE jobs SET device = ? WHERE id = ?", [device, job_id])


def beat(store: Store, job_id: int, progress: float | None, message: str | None) -> bool:
    """Write the heartbeat (and the latest progress); return whether a cancel was requested."""
    with store.transaction() as con:
        row = con.execute(
            "UPDATE jobs SET heartbeat_at = current_timestamp, "
            "progress = coalesce(?, progress), message = coalesce(?, message) "
            "WHERE id = ? RETURNING cancel_requested",
            [progress, message, job_id],
        ).fetchone()
    return bool(row and row[0])


def finish_job(store: Store, job_id: int, status: str, *, result: dict | None = None,
               error: str | None = None, traceback: str | None = None,
               message: str | None = None) -> bool:
    """Put a running job in its final state with its result; False when it was no longer
    running. A result's ``run_id`` (the run an audit made) and ``dataset_id`` (the dataset an
    ingest made) also fill those columns, so the job lists beside them."""
    if status not in FINAL_JOB_STATES:
        raise ValueError(f"final job status must be one of {FINAL_JOB_STATES}, not {status!r}")
    result = result or {}
    with store.transaction() as con:
        row = con.execute(
            "UPDATE jobs SET status = ?, result = ?, run_id = coalesce(?, run_id), "
            "dataset_id = coalesce(dataset_id, ?), error = ?, traceback = ?, "
            "message = coalesce(?, message), "
            "progress = CASE WHEN ? = 'succeeded' THEN 1 ELSE progress END, "
            "finished_at = current_timestamp WHERE id = ? AND status = 'running' RETURNING id",
            [status, json.dumps(result, sort_keys=True), result.get("run_id"),
             result.get("dataset_id"), error, traceback, message, status, job_id],
        ).fetchone()
    return row is not None


def request_cancel(store: Store, job_id: int) -> str:
    """Cancel a queued job at once, flag a running one; return the job's resulting status."""
    with store.transaction() as con:
        con.execute(
            "UPDATE jobs SET status = 'cancelled', message = 'cancelled before it started', "
            "finished_at = current_timestamp WHERE id = ? AND status = 'queued'",
            [job_id],
        )
        con.execute(
            "UPDATE jobs SET cancel_requested = true WHERE id = ? AND status = 'running'",
            [job_id],
        )
        row = con.execute("SELECT status, cancel_requested FROM jobs WHERE id = ?",
                          [job_id]).fetchone()
    if row is None:
        raise NotFoundError(f"no job {job_id}; list jobs with `python -m audit jobs`")
    return "cancel_requested" if row[0] == "running" and row[1] else row[0]


def get_job(store: Store, job_id: int) -> dict:
    with store.transaction() as con:
        row = con.execute(_SELECT_JOB, [job_id]).fetchone()
    if row is None:
        raise NotFoundError(f"no job {job_id}; list jobs with `python -m audit jobs`")
    job = dict(zip(JOB_FIELDS, row))
    job["config"] = json.loads(job["config"])
    job["result"] = json.loads(job["result"]) if job["result"] else {}
    return job


def list_jobs(store: Store, limit: int = 20) -> pd.DataFrame:
    """The newest jobs first, with their dataset's name."""
    with store.transaction() as con:
        return con.execute(_LIST_JOBS, [limit]).df()


def running_jobs(store: Store) -> list[dict]:
    """Every running job: id, worker pid and host, and the age of its heartbeat in seconds."""
    with store.transaction() as con:
        rows = con.execute(_RUNNING).fetchall()
    return [{"id": r[0], "pid": r[1], "host": r[2], "age_s": float(r[3])} for r in rows]


def fail_stale_job(store: Store, job_id: int, stale_after_s: float, reason: str) -> bool:
    """Fail a running job only if its heartbeat is still at least ``stale_after_s`` old now
    (a worker that beat in between is left alone); True when it was failed."""
    with store.transaction() as con:
        row = con.execute(
            "UPDATE jobs SET status = 'failed', error = ?, message = 'worker died', "
            "finished_at = current_timestamp WHERE id = ? AND status = 'running' "
            "AND heartbeat_at <= current_timestamp - to_seconds(?) RETURNING id",
            [reason, job_id, stale_after_s],
        ).fetchone()
    return row is not None


def append_log(store: Store, job_id: int, message: str) -> None:
    with store.transaction() as con:
        con.execute("INSERT INTO job_logs (job_id, message) VALUES (?, ?)", [job_id, message])


def log_lines(store: Store, job_id: int) -> list[tuple[object, str]]:
    """A job's log as (time, message) pairs, oldest first."""
    with store.transaction() as con:
        return con.execute(
            "SELECT logged_at, message FROM job_logs WHERE job_id = ? ORDER BY logged_at, rowid",
            [job_id],
        ).fetchall()
