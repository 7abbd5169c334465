"""The queue API the CLI and dashboard call: enqueue (validated, worker started when none is
alive), cancel, logs, rerun with changed options, the job list."""

from __future__ import annotations

import os
import time

import pytest

from audit.errors import ConfigError, NotFoundError
from jobs.follow import follow_job
from jobs.liveness import live_worker_pids, register_worker, unregister_worker
from jobs.queue import (enqueue_audit, ensure_worker, get_job, job_log, list_jobs,
                        request_cancel, rerun)

FAST_AUDIT = {"embedder": "pixels", "detectors": ["knn_label", "outlier"], "device": "cpu",
              "loader_workers": 0, "folds": 2}


@pytest.fixture
def this_process_is_the_worker(data_home):
    """A live pid file (ours), so enqueueing starts no worker process."""
    pid_file = register_worker(data_home)
    yield
    unregister_worker(pid_file)


def test_enqueue_validates_and_queues_the_full_config(store, settings, make_dataset,
                                                      this_process_is_the_worker):
    dataset_id = make_dataset()
    job_id = enqueue_audit(store, settings, dataset_id, {"detectors": ["outlier"], "k": 3})
    job = get_job(store, job_id, settings)
    assert (job["status"], job["kind"], job["dataset_id"]) == ("queued", "audit", dataset_id)
    assert job["config"]["k"] == 3 and job["config"]["detectors"] == ["outlier"]
    assert job["config"]["folds"] == settings.folds            # filled in from the settings
    with pytest.raises(ConfigError, match="unknown detector"):
        enqueue_audit(store, settings, dataset_id, {"detectors": ["no_such_detector"]})
    with pytest.raises(NotFoundError, match="no dataset"):
        enqueue_audit(store, settings, 999, {})
    assert list(list_jobs(store, settings=settings)["id"]) == [job_id]


def test_rerun_is_a_new_job_with_the_changed_options(store, settings, make_dataset,
                                                     this_process_is_the_worker):
    first = enqueue_audit(store, settings, make_dataset(), {"detectors": ["outlier"], "k": 3})
    second = rerun(store, settings, first, {"k": 5})
    old, new = get_job(store, first, settings), get_job(store, second, settings)
    assert second > first and new["status"] == "queued"
    assert (old["config"]["k"], new["config"]["k"]) == (3, 5)
    assert new["config"]["detectors"] == ["outlier"]
    assert job_log(store, second)[-1].endswith(f"rerun of job {first}")
    with pytest.raises(ConfigError, match="unknown audit option"):
        rerun(store, settings, first, {"bogus": 1})


def test_cancel_words_and_the_timestamped_log(store, settings, make_dataset,
                                              this_process_is_the_worker):
    job_id = enqueue_audit(store, settings, make_dataset(), {})
    assert request_cancel(store, job_id) == "cancelled"
    assert request_cancel(store, job_id) == "cancelled"
    lines = job_log(store, job_id)
    assert len(lines) == 3 and lines[0].endswith("queued audit of dataset 1")
    assert time.strptime(lines[0][:19], "%Y-%m-%d %H:%M:%S")
    with pytest.raises(NotFoundError, match="no job 77"):
        job_log(store, 77)
    with pytest.raises(NotFoundError):
        get_job(store, 77, settings)


def test_ensure_worker_starts_one_only_when_none_is_alive(settings, data_home,
                                                          this_process_is_the_worker):
    assert ensure_worker(settings) is None
    assert live_worker_pids(data_home) == [os.getpid()]


@pytest.mark.slow
def test_enqueue_starts_a_detached_worker_that_runs_the_audit(store, settings, make_dataset,
                                                              data_home, monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    job_id = enqueue_audit(store, settings, make_dataset(), FAST_AUDIT)
    log_files = list((data_home / "logs").glob("worker-*.log"))
    assert len(log_files) == 1
    worker_pid = int(log_files[0].stem.split("-")[1])
    assert os.getsid(worker_pid) == worker_pid != os.getsid(0)     # its own session
    job = follow_job(store, job_id, poll_s=0.2, settings=settings)
    assert job["status"] == "succeeded", job["error"]
    assert (job["worker_pid"], job["device"], job["progress"]) == (worker_pid, "cpu", 1.0)
    bar = capsys.readouterr().err.splitlines()
    assert bar[-1].startswith(f"job {job_id} [{'#' * 30}] 100.0%  succeeded")
    log = "\n".join(job_log(store, job_id))
    assert "embed took" in log and "detector:outlier took" in log and "succeeded" in log
    assert ensure_worker(settings) is None                   # the idle worker is still alive


@pytest.mark.slow
def test_follow_starts_a_worker_when_the_queued_job_has_none(store, settings, make_dataset,
                                                             data_home, monkeypatch, capsys):
    """A worker that died before claiming the job must not leave `run --wait` hanging."""
    from audit.store import jobs as job_store

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    job_id = job_store.insert_job(store, make_dataset(), "audit", FAST_AUDIT)  # no worker started
    assert live_worker_pids(data_home) == []
    started = time.monotonic()
    job = follow_job(store, job_id, poll_s=0.2, settings=settings)
    assert job["status"] == "succeeded", job["error"]
    assert time.monotonic() - started >= 5.0       # waited one check interval, then started one
    assert len(list((data_home / "logs").glob("worker-*.log"))) == 1
