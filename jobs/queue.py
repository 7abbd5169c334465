"""The job queue as the CLI and the dashboard see it: enqueue (an audit, an ingest, an export),
read, cancel, rerun, recover.

Enqueueing, every worker's loop and the readers (``list_jobs``, ``get_job``) first fail the
jobs whose worker died, so a crash shows up at the next of these. Enqueueing starts a detached
worker when none is alive.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd

from audit.config import AuditConfig, executor_choice
from audit.errors import ConfigError, InputError
from audit.settings import Settings, load_settings
from audit.store import Store
from audit.store import jobs as job_store
from audit.store.datasets import get_dataset
from audit.store.runs import fail_running_runs_of_job
from jobs.kinds import AUDIT, EXPORT, INGEST
from jobs.liveness import HOST, live_worker_pids, worker_alive

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def enqueue_audit(store: Store, settings: Settings, dataset_id: int, config: dict) -> int:
    """Validate the config, queue an audit of the dataset, make sure a worker runs; job id."""
    get_dataset(store, dataset_id)
    checked = AuditConfig.from_dict(config, settings).to_dict()
    return _enqueue(store, settings, AUDIT, checked, dataset_id,
                    f"queued audit of dataset {dataset_id}")


def enqueue_ingest(store: Store, settings: Settings, source: Path, *, name: str | None = None,
                   new_version: bool = False, columns: dict | None = None,
                   executor: str | None = None, ray_address: str | None = None) -> int:
    """Queue the ingest of a folder, manifest or Hugging Face dataset; job id. The source is
    resolved here (a worker may run elsewhere) and must exist. ``executor`` and
    ``ray_address`` (None: the settings') say where its images are read."""
    source = Path(source).expanduser().resolve()
    if not source.exists():
        raise InputError(f"{source} does not exist; give an image folder or a manifest file")
    payload = {"source": str(source), "name": name, "new_version": bool(new_version),
               "columns": columns or {},
               **executor_choice(executor or settings.executor,
                                 settings.ray_address if ray_address is None else ray_address)}
    return _enqueue(store, settings, INGEST, payload, None, f"queued ingest of {source}")


def enqueue_export(store: Store, settings: Settings, dataset_id: int, out_dir: Path, fmt: str,
                   rules: dict, *, overwrite: bool = False) -> int:
    """Check the format, rules and output folder now (a user's mistake is told at once), then
    queue the export; job id."""
    from audit.export.rules import ExportRules, check_format
    from audit.export.staging import check_out_dir

    dataset = get_dataset(store, dataset_id)
    check_format(fmt, ExportRules(**rules))
    out = check_out_dir(Path(out_dir), Path(dataset.root), overwrite)
    payload = {"out_dir": str(out), "format": fmt, "rules": rules, "overwrite": bool(overwrite)}
    return _enqueue(store, settings, EXPORT, payload, dataset_id,
                    f"queued export of dataset {dataset_id} to {out}")


def _enqueue(store: Store, settings: Settings, kind: str, payload: dict,
             dataset_id: int | None, announcement: str) -> int:
    recover_dead_jobs(store, settings)
    job_id = job_store.insert_job(store, dataset_id, kind, payload)
    job_store.append_log(store, job_id, announcement)
    ensure_worker(settings)
    return job_id


def rerun(store: Store, settings: Settings, job_id: int,
          config_overrides: dict | None = None) -> int:
    """Queue a new job with a finished (or any) job's config, changed by the overrides."""
    job = job_store.get_job(store, job_id)
    if job["kind"] != AUDIT:
        raise ConfigError(f"job {job_id} is a {job['kind']!r} job; only audit jobs can be rerun")
    config = {**job["config"], **(config_overrides or {})}
    new_id = enqueue_audit(store, settings, job["dataset_id"], config)
    job_store.append_log(store, new_id, f"rerun of job {job_id}")
    return new_id


def list_jobs(store: Store, limit: int = 20, settings: Settings | None = None) -> pd.DataFrame:
    """Recent jobs, newest first (dead workers' jobs are failed first)."""
    recover_dead_jobs(store, settings)
    return job_store.list_jobs(store, limit)


def get_job(store: Store, job_id: int, settings: Settings | None = None) -> dict:
    """One job as a dict; ``NotFoundError`` when there is none."""
    recover_dead_jobs(store, settings)
    return job_store.get_job(store, job_id)


def request_cancel(store: Store, job_id: int) -> str:
    """queued -> cancelled at once; running -> cancel_requested; final states unchanged."""
    status = job_store.request_cancel(store, job_id)
    if status in ("cancelled", "cancel_requested"):
        job_store.append_log(store, job_id, f"cancel requested: {status}")
    return status


def job_log(store: Store, job_id: int) -> list[str]:
    """The job's log lines, oldest first, each starting with its time."""
    job_store.get_job(store, job_id)
    lines = job_store.log_lines(store, job_id)
    return [f"{when:%Y-%m-%d %H:%M:%S} {message}" for when, message in lines]


# --- crash recovery ------------------------------------------------------------------------

def recover_dead_jobs(store: Store, settings: Settings | None = None) -> list[int]:
    """Fail running jobs whose worker is gone, and their runs; their ids."""
    settings = settings or load_settings()
    recovered = []
    for job in job_store.running_jobs(store):
        reason = death_reason(job, settings)
        silent_s = 0.0 if job["host"] == HOST else settings.stale_after_s
        if reason and job_store.fail_stale_job(store, job["id"], silent_s, reason):
            fail_running_runs_of_job(store, job["id"], reason)
            job_store.append_log(store, job["id"], f"failed: {reason}")
            recovered.append(job["id"])
    return recovered


def death_reason(job: dict, settings: Settings) -> str | None:
    """Why a running job's worker counts as dead, or None while it may still be working.

    On this host a worker is dead the moment it no longer holds its lock (``jobs.liveness``);
    a worker on another host cannot be checked, so its job is dead once its heartbeat is older
    than ``stale_after_s``."""
    if job["host"] == HOST:
        if worker_alive(settings.data_home, job["pid"]):
            return None
        return (f"worker pid {job['pid']} on this host stopped without finishing the job "
                f"(last heartbeat {job['age_s']:.0f} s ago); rerun the job")
    if job["age_s"] <= settings.stale_after_s:
        return None
    return (f"worker pid {job['pid']} on host {job['host']} stopped without finishing the job "
            f"(no heartbeat for {job['age_s']:.0f} s); rerun the job")


# --- starting workers ----------------------------------------------------------------------

def ensure_worker(settings: Settings) -> int | None:
    """Start a detached worker unless one is alive on this host; the new pid, or None."""
    if live_worker_pids(Path(settings.data_home)):
        return None
    return start_worker(settings).pid


def start_worker(settings: Settings, *args: str) -> subprocess.Popen:
    """``python -m jobs worker ARGS`` in its own session, logging to data_home/logs."""
    logs = Path(settings.data_home).resolve() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pending = logs / f"worker-starting-{uuid.uuid4().hex}.log"
    with open(pending, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "jobs", "worker", *args],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            env=worker_environment(settings), start_new_session=True,
        )
    pending.rename(logs / f"worker-{process.pid}.log")
    return process


def worker_environment(settings: Settings) -> dict[str, str]:
    """This process's environment plus every setting as ``AUDIT_*``, so the worker agrees."""
    env = dict(os.environ)
    for field in dataclasses.fields(settings):
        env[f"AUDIT_{field.name.upper()}"] = str(getattr(settings, field.name))
    env["AUDIT_DATA_HOME"] = str(Path(settings.data_home).resolve())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env
