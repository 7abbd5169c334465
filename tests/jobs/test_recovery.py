"""Crash recovery: a running job whose heartbeat is stale and whose worker is gone ends failed,
its run with it; a live worker's job, or a fresh heartbeat, is left alone."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time

import pytest

from audit.store import jobs as job_store
from audit.store.runs import create_run, get_run
from jobs.liveness import HOST, pid_alive
from jobs.queue import get_job, list_jobs, recover_dead_jobs


@pytest.fixture
def quick(settings):
    return dataclasses.replace(settings, stale_after_s=0.3)


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _running_job(store, pid: int, host: str = HOST) -> tuple[int, int]:
    job_id = job_store.insert_job(store, 1, "audit", {})
    job_store.claim_next_job(store, pid, host)
    return job_id, create_run(store, 1, {}, job_id=job_id)


def test_a_dead_workers_stale_job_and_its_run_are_failed(store, quick):
    job_id, run_id = _running_job(store, _dead_pid())
    assert recover_dead_jobs(store, quick) == []          # heartbeat still fresh
    time.sleep(0.4)
    assert recover_dead_jobs(store, quick) == [job_id]
    job = get_job(store, job_id, quick)
    assert job["status"] == "failed" and "no heartbeat" in job["error"]
    assert job["finished_at"] is not None
    assert get_run(store, run_id)["status"] == "failed"
    assert recover_dead_jobs(store, quick) == []


def test_a_live_workers_job_is_never_failed_however_stale(store, quick):
    job_id, run_id = _running_job(store, os.getpid())
    time.sleep(0.4)
    assert recover_dead_jobs(store, quick) == []
    assert list_jobs(store, settings=quick).loc[0, "status"] == "running"
    assert get_run(store, run_id)["status"] == "running"


def test_a_stale_job_of_another_host_is_failed_without_a_pid_check(store, quick):
    job_id, _ = _running_job(store, os.getpid(), host="other-machine")
    time.sleep(0.4)
    assert recover_dead_jobs(store, quick) == [job_id]
    assert "on host other-machine" in job_store.get_job(store, job_id)["error"]


def test_zombies_and_missing_pids_are_not_alive():
    zombie = subprocess.Popen(["true"])
    deadline = time.monotonic() + 5
    while open(f"/proc/{zombie.pid}/stat").read().split(") ")[1][0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not pid_alive(zombie.pid)       # exited but not reaped: kill(pid, 0) still succeeds
    zombie.wait()
    assert not pid_alive(zombie.pid)
    assert pid_alive(os.getpid())
    assert not pid_alive(None) and not pid_alive(0)
