"""The worker loop in this process: every job ends in exactly one final state, a failing job
never stops the worker, cancel and stop requests end a job cancelled, an idle worker exits.

The job kinds here are registered through ``jobs.kinds.KINDS`` (the worker's real dispatch
point) so the timing is under the test's control; the audit plan itself runs in
test_reliability.py with real processes."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import threading
import time

import pytest

from audit.errors import Cancelled, NotFoundError
from audit.store import jobs as job_store
from audit.store.runs import create_run, finish_run, get_run
from jobs.kinds import KINDS
from jobs.liveness import live_worker_pids
from jobs.worker import STOPPED_BY_SIGNAL, work


@pytest.fixture
def fast(settings):
    return dataclasses.replace(settings, heartbeat_s=0.05, device="cpu")


def _succeed(context) -> dict:
    run_id = create_run(context.store, context.dataset_id, context.config, job_id=context.job_id)
    context.reporter.progress(0.5, "half")
    finish_run(context.store, run_id, "succeeded")
    return {"run_id": run_id}


def _explode(context) -> dict:
    create_run(context.store, context.dataset_id, context.config, job_id=context.job_id)
    raise RuntimeError("boom in the middle")


def _missing_dataset(context) -> dict:
    raise NotFoundError(f"no dataset {context.dataset_id}; it was deleted")


def _wait_for_cancel(context) -> dict:
    run_id = create_run(context.store, context.dataset_id, context.config, job_id=context.job_id)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if context.reporter.should_cancel():
            finish_run(context.store, run_id, "cancelled")
            raise Cancelled()
        time.sleep(0.01)
    raise AssertionError("never cancelled")


@pytest.fixture
def kinds(monkeypatch):
    for name, runner in [("ok", _succeed), ("explode", _explode), ("gone", _missing_dataset),
                         ("wait", _wait_for_cancel)]:
        monkeypatch.setitem(KINDS, name, runner)


def test_failures_are_recorded_and_the_worker_takes_the_next_job(store, fast, kinds):
    ids = [job_store.insert_job(store, 1, kind, {}) for kind in ("explode", "gone", "nope", "ok")]
    assert work(fast, idle_exit_s=0) == 4
    jobs = [job_store.get_job(store, i) for i in ids]
    assert [j["status"] for j in jobs] == ["failed", "failed", "failed", "succeeded"]
    assert jobs[0]["error"] == "RuntimeError: boom in the middle"
    assert "raise RuntimeError" in jobs[0]["traceback"]
    assert jobs[1]["error"] == "no dataset 1; it was deleted"
    assert "unknown kind 'nope'" in jobs[2]["error"]
    assert get_run(store, 1)["status"] == "failed"           # the exploded job's run
    assert (jobs[3]["run_id"], jobs[3]["progress"], jobs[3]["result"]) == (2, 1.0, {"run_id": 2})
    # whose error it is: the CLI exits 2 and says "error: ..." for the user's to fix
    assert [j["result"] for j in jobs[:3]] == [{"user_error": False}, {"user_error": True},
                                               {"user_error": True}]
    assert get_run(store, 2)["status"] == "succeeded"


def test_a_cancel_request_ends_the_running_job_cancelled(store, fast, kinds):
    job_id = job_store.insert_job(store, 1, "wait", {})
    worker = threading.Thread(target=work, args=(fast,), kwargs={"once": True})
    worker.start()
    _wait_for_status(store, job_id, "running")
    assert job_store.request_cancel(store, job_id) == "cancel_requested"
    worker.join(timeout=120)
    assert not worker.is_alive()
    job = job_store.get_job(store, job_id)
    assert (job["status"], job["message"]) == ("cancelled", "cancelled on request")
    assert get_run(store, 1)["status"] == "cancelled"


def test_a_stop_request_cancels_the_job_and_ends_the_worker(store, fast, kinds):
    first = job_store.insert_job(store, 1, "wait", {})
    second = job_store.insert_job(store, 1, "ok", {})
    stop = threading.Event()
    worker = threading.Thread(target=work, args=(fast,), kwargs={"stop": stop})
    worker.start()
    _wait_for_status(store, first, "running")
    stop.set()
    worker.join(timeout=120)
    assert not worker.is_alive()
    assert job_store.get_job(store, first)["message"] == STOPPED_BY_SIGNAL
    assert job_store.get_job(store, first)["status"] == "cancelled"
    assert job_store.get_job(store, second)["status"] == "queued"


def test_an_idle_worker_exits_and_withdraws_its_pid_file(store, fast, data_home):
    started = time.monotonic()
    assert work(fast, poll_s=0.05, idle_exit_s=0.3) == 0
    assert time.monotonic() - started >= 0.3          # it waited its idle time before leaving
    assert live_worker_pids(data_home) == []


def test_cuda_asked_without_a_gpu_fails_the_audit_job_clearly(store, fast):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    job_id = job_store.insert_job(store, 1, "audit", {"device": "cuda"})
    work(fast, once=True)
    assert "no CUDA GPU is visible" in job_store.get_job(store, job_id)["error"]


def _wait_for_status(store, job_id: int, status: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while job_store.get_job(store, job_id)["status"] != status:
        assert time.monotonic() < deadline, f"job {job_id} never became {status}"
        time.sleep(0.02)


FORK_AFTER_STOP_HANDLERS = """
import multiprocessing, signal, sys, threading, time
from jobs.worker import stop_on_signals

stop = threading.Event()
stop_on_signals(stop)
child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(30,))
child.start()
time.sleep(1)                          # let the child finish forking
child.terminate()                      # SIGTERM, as multiprocessing.Pool stops its workers
child.join(timeout=10)
print(child.exitcode, stop.is_set())
"""


def test_processes_forked_by_a_job_still_die_on_sigterm(subprocess_env):
    """cleanlab's pool stops its workers with SIGTERM: a forked child must not inherit the
    worker's stop-flag handler, or the pool (and the job) waits for it forever."""
    out = subprocess.run([sys.executable, "-c", FORK_AFTER_STOP_HANDLERS], env=subprocess_env,
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == [str(-signal.SIGTERM), "False"], out.stderr
