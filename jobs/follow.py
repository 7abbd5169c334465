"""A live terminal progress bar for one job, until it reaches a final state."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from audit.settings import Settings, load_settings
from audit.store import Store
from audit.store.jobs import FINAL_JOB_STATES
from jobs.queue import ensure_worker, get_job

BAR_WIDTH = 30
WORKER_CHECK_S = 5.0


def follow_job(store: Store, job_id: int, out: TextIO | None = None, poll_s: float = 0.5,
               settings: Settings | None = None, stop: threading.Event | None = None) -> dict:
    """Redraw the job's bar on ``out`` (stderr) every ``poll_s`` until it is final; return it.

    While the job waits in the queue, a worker is started every ``WORKER_CHECK_S`` if none is
    alive (one that died before claiming it would otherwise leave this waiting for ever).
    ``stop`` set (by a signal handler, say) raises ``KeyboardInterrupt`` between two polls,
    never inside a store query; the job itself goes on."""
    settings = settings or load_settings()
    out = out or sys.stderr
    stop = stop or threading.Event()
    started = checked = time.monotonic()
    redraw = out.isatty()
    shown = None
    while not stop.is_set():
        job = get_job(store, job_id, settings)
        if job["status"] == "queued" and time.monotonic() - checked >= WORKER_CHECK_S:
            ensure_worker(settings)
            checked = time.monotonic()
        state = (job["status"], job["progress"], job["message"])
        if redraw or state != shown:
            line = progress_line(job, time.monotonic() - started)
            out.write(("\r" + line.ljust(100)) if redraw else line + "\n")
            out.flush()
            shown = state
        if job["status"] in FINAL_JOB_STATES:
            if redraw:
                out.write("\n")
            return job
        stop.wait(poll_s)
    raise KeyboardInterrupt


def progress_line(job: dict, elapsed_s: float) -> str:
    """``job 3 [#####.....]  42.0%  running  embedding 420/1000  01:05``"""
    fraction = float(job["progress"] or 0.0)
    filled = int(round(fraction * BAR_WIDTH))
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    minutes, seconds = divmod(int(elapsed_s), 60)
    message = job["error"] if job["status"] == "failed" else (job["message"] or "")
    return (f"job {job['id']} [{bar}] {fraction:6.1%}  {job['status']}  {message}  "
            f"{minutes:02d}:{seconds:02d}")
