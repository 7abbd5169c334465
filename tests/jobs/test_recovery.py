"""Crash recovery: a running job whose worker is gone ends failed, its run with it, as soon as
the next worker, enqueue or reader looks; a live worker's job is left alone however stale.

A worker is alive while it holds the lock on its worker file: a pid reused by another process,
or a child the worker forked, does not pass for it."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest

from audit.processes import pid_alive
from audit.store import jobs as job_store
from audit.store.runs import create_run, get_run
from jobs.liveness import HOST, live_worker_pids, register_worker, unregister_worker
from jobs.queue import enqueue_audit, ensure_worker, get_job, list_jobs, recover_dead_jobs
from jobs.worker import work
from tests.jobs.conftest import PROJECT_ROOT

pytestmark = pytest.mark.reliability


@pytest.fixture
def quick(settings):
    return dataclasses.replace(settings, stale_after_s=0.3)


@pytest.fixture
def this_process_is_the_worker(data_home):
    """A live worker file (ours), so enqueueing starts no worker process."""
    pid_file = register_worker(data_home)
    yield
    unregister_worker(pid_file)


@pytest.fixture
def unrelated_process():
    """A live process that is not a worker: the pid a dead worker's pid was reused by."""
    process = subprocess.Popen(["sleep", "600"])
    yield process
    process.kill()
    process.wait()


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _running_job(store, pid: int, host: str = HOST) -> tuple[int, int]:
    job_id = job_store.insert_job(store, 1, "audit", {})
    job_store.claim_next_job(store, pid, host)
    return job_id, create_run(store, 1, {}, job_id=job_id)


def _leave_worker_file(data_home, pid: int) -> None:
    """What a SIGKILLed worker leaves behind: its file, with this host inside."""
    (data_home / "workers").mkdir(exist_ok=True)
    (data_home / "workers" / str(pid)).write_text(HOST)


def test_a_dead_workers_job_and_its_run_are_failed_without_waiting(store, settings):
    job_id, run_id = _running_job(store, _dead_pid())
    assert recover_dead_jobs(store, settings) == [job_id]   # stale_after_s is 60 s: not waited
    job = get_job(store, job_id, settings)
    assert job["status"] == "failed" and "stopped without finishing" in job["error"]
    assert job["finished_at"] is not None
    assert get_run(store, run_id)["status"] == "failed"
    assert recover_dead_jobs(store, settings) == []


def test_a_live_workers_job_is_never_failed_however_stale(store, quick,
                                                        this_process_is_the_worker):
    job_id, run_id = _running_job(store, os.getpid())
    time.sleep(0.4)
    assert recover_dead_jobs(store, quick) == []
    assert list_jobs(store, settings=quick).loc[0, "status"] == "running"
    assert get_run(store, run_id)["status"] == "running"


def test_a_stale_job_of_another_host_is_failed_without_a_pid_check(store, quick):
    job_id, _ = _running_job(store, os.getpid(), host="other-machine")
    assert recover_dead_jobs(store, quick) == []          # its heartbeat is still fresh
    time.sleep(0.4)
    assert recover_dead_jobs(store, quick) == [job_id]
    assert "on host other-machine" in job_store.get_job(store, job_id)["error"]


def test_zombies_and_missing_pids_are_not_alive():
    zombie = subprocess.Popen(["true"])
    deadline = time.monotonic() + 60
    while open(f"/proc/{zombie.pid}/stat").read().split(") ")[1][0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not pid_alive(zombie.pid)       # exited but not reaped: kill(pid, 0) still succeeds
    zombie.wait()
    assert not pid_alive(zombie.pid)
    assert pid_alive(os.getpid())
    assert not pid_alive(None) and not pid_alive(0)


def test_a_reused_pid_is_not_a_live_worker(settings, data_home, unrelated_process):
    _leave_worker_file(data_home, unrelated_process.pid)
    assert pid_alive(unrelated_process.pid)
    assert live_worker_pids(data_home) == []
    assert not (data_home / "workers" / str(unrelated_process.pid)).exists()   # cleaned up
    _leave_worker_file(data_home, unrelated_process.pid)
    assert ensure_worker(settings) is not None             # a worker is started after all


def test_a_job_whose_worker_pid_was_reused_is_failed(store, settings, data_home,
                                                      unrelated_process):
    job_id, run_id = _running_job(store, unrelated_process.pid)
    _leave_worker_file(data_home, unrelated_process.pid)
    assert recover_dead_jobs(store, settings) == [job_id]
    assert get_run(store, run_id)["status"] == "failed"


CLAIMING_WORKER = """
import os, sys, time
from audit.settings import load_settings
from audit.store import Store
from audit.store import jobs as job_store
from jobs.liveness import HOST, register_worker
settings = load_settings()
register_worker(settings.data_home)
job = job_store.claim_next_job(Store.from_settings(settings), os.getpid(), HOST)
if sys.argv[1] == "fork" and os.fork() == 0:
    time.sleep(600)                    # a child of the worker (a pool process) lives on
print(job["id"], flush=True)
time.sleep(600)
"""


@pytest.fixture
def killed_worker(store, subprocess_env):
    """Factory: a real process registers as a worker, claims the queued job and is SIGKILLed;
    the job is left ``running`` in the store. Returns the job id."""
    started = []

    def kill_while_running(mode: str = "plain") -> int:
        job_id = job_store.insert_job(store, 1, "audit", {})
        worker = subprocess.Popen([sys.executable, "-c", CLAIMING_WORKER, mode],
                                  env=subprocess_env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                                  text=True, start_new_session=True)
        started.append(worker)
        assert int(worker.stdout.readline()) == job_id
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        assert job_store.get_job(store, job_id)["status"] == "running"
        return job_id

    yield kill_while_running
    for worker in started:
        try:
            os.killpg(worker.pid, signal.SIGKILL)      # the forked child too
        except ProcessLookupError:
            pass


def test_the_next_enqueue_fails_a_killed_workers_job(store, settings, make_dataset,
                                                      killed_worker, this_process_is_the_worker):
    dataset_id = make_dataset()
    job_id = killed_worker()
    enqueue_audit(store, settings, dataset_id, {"detectors": ["outlier"]})
    job = job_store.get_job(store, job_id)              # read without recovery
    assert job["status"] == "failed" and "stopped without finishing" in job["error"]


def test_the_next_worker_fails_a_killed_workers_job(store, settings, killed_worker):
    job_id = killed_worker()
    assert work(dataclasses.replace(settings, device="cpu"), idle_exit_s=0) == 0
    assert job_store.get_job(store, job_id)["status"] == "failed"


def test_a_forked_child_does_not_keep_a_killed_worker_alive(store, settings, data_home,
                                                             killed_worker):
    job_id = killed_worker("fork")
    assert live_worker_pids(data_home) == []
    assert recover_dead_jobs(store, settings) == [job_id]
