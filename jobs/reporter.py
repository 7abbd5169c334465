"""What a running job tells the store: progress, heartbeat, cancel requests and log lines.

A heartbeat thread is the only writer of the job's row while it runs: every ``interval_s`` it
writes the heartbeat with the latest progress and reads ``cancel_requested`` back in the same
transaction. So progress costs one write per interval however often the plan reports, a long
single batch still beats, and ``should_cancel`` is a cheap read of the last answer.
"""

from __future__ import annotations

import threading
import time

from audit.errors import StoreLockedError
from audit.store import Store
from audit.store import jobs as job_store


class JobReporter:
    """Context manager: beats once on entry, then every ``interval_s`` until exit."""

    def __init__(self, store: Store, job_id: int, interval_s: float,
                 stop: threading.Event | None = None):
        self.store, self.job_id, self.interval_s = store, job_id, interval_s
        self.stop = stop or threading.Event()
        self.beats = 0
        self._latest: tuple[float | None, str | None] = (None, None)
        self._cancel_requested = False
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat_until_done, daemon=True,
                                        name=f"heartbeat-job-{job_id}")

    def __enter__(self) -> "JobReporter":
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._thread.join()

    def progress(self, fraction: float, message: str) -> None:
        """Remember the latest progress; the next beat writes it."""
        with self._lock:
            self._latest = (min(max(float(fraction), 0.0), 1.0), str(message))

    def should_cancel(self) -> bool:
        return self._cancel_requested or self.stop.is_set()

    def log(self, message: str) -> None:
        job_store.append_log(self.store, self.job_id, message)
        print(f"{time.strftime('%H:%M:%S')} job {self.job_id}: {message}", flush=True)

    def beat(self) -> None:
        with self._lock:
            fraction, message = self._latest
        if job_store.beat(self.store, self.job_id, fraction, message):
            self._cancel_requested = True
        self.beats += 1

    def _beat_until_done(self) -> None:
        while not self._done.wait(self.interval_s):
            try:
                self.beat()
            except StoreLockedError as exc:
                # The job goes on; the next beat tries again. Recorded in the worker's log.
                print(f"job {self.job_id}: heartbeat skipped: {exc}", flush=True)
