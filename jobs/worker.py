"""The worker process: claim one queued job at a time, run it, end it in one final state.

``work`` is one worker: it claims the oldest queued job in one transaction (two workers never
take the same job), runs it with a heartbeat, and records ``succeeded`` (with its runner's result),
``failed`` (error and traceback) or ``cancelled``. A failing job never stops the worker. It
exits after ``idle_exit_s`` without work, or after one job with ``once``.

SIGTERM (or SIGINT) stops a worker cleanly: an idle worker exits at once; a running job is
asked to stop at its next batch, its run is marked cancelled and the job ends **cancelled**
with the message "worker stopped by signal" (rerun it to start again). A second signal kills.

``work_concurrently`` runs N such workers as child processes and forwards the signal to them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import traceback

from audit.errors import AuditError, Cancelled, ConfigError
from audit.settings import Settings
from audit.store import Store
from audit.store import jobs as job_store
from audit.store.runs import fail_running_runs_of_job
from jobs.kinds import KINDS, JobContext
from jobs.liveness import HOST, register_worker, unregister_worker
from jobs.queue import recover_dead_jobs, worker_environment
from jobs.reporter import JobReporter

STOPPED_BY_SIGNAL = "worker stopped by signal"


def work(settings: Settings, *, once: bool = False, poll_s: float = 1.0,
         idle_exit_s: float = 30.0, stop: threading.Event | None = None) -> int:
    """Run jobs until idle for ``idle_exit_s`` (or one job with ``once``); jobs run."""
    stop = stop or threading.Event()
    store = Store.for_audit(settings)
    worker_file = register_worker(settings.data_home)
    try:
        return _claim_and_run(store, settings, once, poll_s, idle_exit_s, stop, worker_file)
    finally:
        unregister_worker(worker_file)


def _claim_and_run(store, settings, once, poll_s, idle_exit_s, stop, worker_file) -> int:
    ran, idle_since = 0, time.monotonic()
    while not stop.is_set():
        recover_dead_jobs(store, settings)
        job = job_store.claim_next_job(store, os.getpid(), HOST)
        if job is None and time.monotonic() - idle_since >= idle_exit_s:
            if not _still_wanted(store, settings, worker_file):
                break
            continue
        if job is None:
            stop.wait(poll_s)
            continue
        execute_job(store, settings, job, stop)
        ran, idle_since = ran + 1, time.monotonic()
        if once:
            break
    return ran


def _still_wanted(store, settings, worker_file) -> bool:
    """Withdraw the worker file, then look once more: a job queued meanwhile is never stranded
    (its enqueuer either saw this worker and this look finds the job, or started another).
    A worker claims only while registered, so no running job ever lacks a live worker file."""
    unregister_worker(worker_file)
    if not job_store.has_queued_jobs(store):
        return False
    register_worker(settings.data_home)
    return True


# --- one job -------------------------------------------------------------------------------

def execute_job(store: Store, settings: Settings, job: dict, stop: threading.Event) -> str:
    """Run one claimed job to exactly one final state; return that state."""
    job_id, started = job["id"], time.monotonic()
    reporter = JobReporter(store, job_id, settings.heartbeat_s, stop)
    try:
        with reporter:
            result = _run(store, settings, job, reporter)
    except Cancelled:
        reason = STOPPED_BY_SIGNAL if stop.is_set() else "cancelled on request"
        return _end(store, job_id, "cancelled", message=reason, run_reason=f"job {reason}")
    except Exception as exc:  # any failure of the job is recorded; the worker goes on
        user_error = isinstance(exc, AuditError)
        error = str(exc) if user_error else f"{type(exc).__name__}: {exc}"
        return _end(store, job_id, "failed", error=error, traceback=traceback.format_exc(),
                    message="failed", run_reason=error, result={"user_error": user_error})
    message = f"finished in {time.monotonic() - started:.1f} s"
    return _end(store, job_id, "succeeded", result=result, message=message)


def _run(store: Store, settings: Settings, job: dict, reporter: JobReporter) -> dict:
    runner = KINDS.get(job["kind"])
    if runner is None:
        raise ConfigError(f"job {job['id']} has unknown kind {job['kind']!r}; "
                          f"known kinds: {sorted(KINDS)}")
    reporter.log(f"claimed by worker pid {os.getpid()} on {HOST}")
    return runner(JobContext(store, settings, job["id"], job["dataset_id"], job["config"],
                             reporter))


def _end(store: Store, job_id: int, status: str, *, run_reason: str | None = None,
         **fields) -> str:
    if run_reason is not None:
        fail_running_runs_of_job(store, job_id, run_reason)
    if job_store.finish_job(store, job_id, status, **fields):
        detail = fields.get("error") or fields.get("message")
        job_store.append_log(store, job_id, f"{status}: {detail}")
        print(f"job {job_id} {status}: {detail}", flush=True)
        return status
    print(f"job {job_id} was already finished elsewhere; {status} not recorded", flush=True)
    return job_store.get_job(store, job_id)["status"]


# --- signals and concurrency ---------------------------------------------------------------

def stop_on_signals(stop: threading.Event) -> None:
    """First SIGTERM/SIGINT sets ``stop``; the default action returns for a second one.

    Processes forked by a job (cleanlab's multiprocessing pool, DataLoader workers) get the
    previous handlers back: a pool stops its workers with SIGTERM, and a child that only set
    a flag would never exit, hanging the job."""
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}

    def handle(signum, frame):
        print(f"worker {os.getpid()}: signal {signum}, stopping", flush=True)
        stop.set()
        _restore_handlers({s: signal.SIG_DFL for s in previous})

    _restore_handlers({signum: handle for signum in previous})
    os.register_at_fork(after_in_child=lambda: _restore_handlers(previous))


def _restore_handlers(handlers: dict) -> None:
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def work_concurrently(settings: Settings, concurrency: int, args: list[str]) -> int:
    """N worker child processes, each claiming jobs; 0, or the first failing exit code.

    The children share this process group, so a terminal's Ctrl-C (SIGINT) reaches each of
    them directly and is not passed on again; SIGTERM sent to this process is passed on."""
    children: list[subprocess.Popen] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: _signal_all(children, signum))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for _ in range(concurrency):
        children.append(subprocess.Popen([sys.executable, "-m", "jobs", "worker", *args],
                                         env=worker_environment(settings)))
    codes = [child.wait() for child in children]
    return next((code for code in codes if code != 0), 0)


def _signal_all(children: list[subprocess.Popen], signum: int) -> None:
    for child in children:
        child.send_signal(signum)
