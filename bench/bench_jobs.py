"""What running an audit as a background job costs over calling the plan directly.

On the demo dataset (generated into a temp data home) with the pixels embedder, it times: the
plan called in this process; the same audit as a job on a freshly started worker (pickup =
enqueued -> claimed, includes the worker's start and imports) and on the now warm worker; and
the store transactions the machinery adds (claim, heartbeat).

    python -m bench.bench_jobs
    python -m bench.bench_jobs --detectors knn_label,outlier
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import tempfile
import time
from pathlib import Path

import pandas as pd

from audit.demo import ensure_demo_dataset
from audit.plan import run_audit
from audit.processes import pid_alive
from audit.settings import load_settings
from audit.store import Store
from audit.store import jobs as job_store
from bench import markdown_table
from jobs.follow import follow_job
from jobs.liveness import live_worker_pids
from jobs.queue import enqueue_audit


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_jobs", description=__doc__)
    parser.add_argument("--detectors", default="knn_label,near_duplicate,outlier,label_issue")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as home:
        settings = load_settings(env={"AUDIT_DATA_HOME": home})
        store = Store.from_settings(settings)
        dataset_id = ensure_demo_dataset(store, settings)
        config = {"embedder": "pixels", "detectors": args.detectors.split(","), "device": "cpu"}
        rows = [time_direct(store, settings, dataset_id, config)]
        for label in ("job on a new worker", "job on a warm worker"):
            rows += time_job(store, settings, dataset_id, config, label)
        rows += time_transactions(store)
        stop_workers(Path(home))
    print(markdown_table(pd.DataFrame(rows, columns=["measure", "seconds"])))


def time_direct(store, settings, dataset_id, config) -> tuple[str, float]:
    run_audit(store, settings, dataset_id, config)            # warms imports and the cache
    started = time.perf_counter()
    run_audit(store, settings, dataset_id, config)
    return "plan in-process (warm)", time.perf_counter() - started


def time_job(store, settings, dataset_id, config, label) -> list[tuple[str, float]]:
    job_id = enqueue_audit(store, settings, dataset_id, config)
    job = follow_job(store, job_id, out=io.StringIO(), poll_s=0.05)
    assert job["status"] == "succeeded", job["error"]
    return [(f"{label}: pickup (queued -> claimed)",
             (job["started_at"] - job["created_at"]).total_seconds()),
            (f"{label}: run (claimed -> finished)",
             (job["finished_at"] - job["started_at"]).total_seconds())]


def time_transactions(store, count: int = 30) -> list[tuple[str, float]]:
    ids = [job_store.insert_job(store, 0, "bench", {}) for _ in range(count)]
    started = time.perf_counter()
    for _ in ids:
        job_store.claim_next_job(store, 0, "bench")
    claim = (time.perf_counter() - started) / count
    started = time.perf_counter()
    for job_id in ids:
        job_store.beat(store, job_id, 0.5, "bench")
    beat = (time.perf_counter() - started) / count
    for job_id in ids:
        job_store.finish_job(store, job_id, "cancelled")
    return [("one claim transaction", claim), ("one heartbeat transaction", beat)]


def stop_workers(data_home: Path, timeout_s: float = 30) -> None:
    """SIGTERM the idle worker and wait for it, before its data home is removed."""
    pids = live_worker_pids(data_home)
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


if __name__ == "__main__":
    main()
