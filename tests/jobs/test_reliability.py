"""Reliability with real worker processes on a real DuckDB file: exactly-once claims, SIGKILL
recovery and rerun, cancel mid-embedding, SIGTERM, concurrent flag writes, failing jobs.

Workers run ``python -m jobs worker`` with a fast heartbeat (0.5 s) and a short stale limit
(2 s) passed through ``AUDIT_*``; the slow stage is the real ``cnn`` embedder on a few hundred
tiny images (it trains a small network per fold and checks for cancels every epoch)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from audit.config import AuditConfig
from audit.store import jobs as job_store
from audit.store.datasets import delete_dataset, samples_frame
from audit.store.flags import decision_log
from audit.store.runs import latest_finished_run, list_runs, scores_frame
from jobs.follow import follow_job
from jobs.queue import rerun
from tests.jobs.conftest import PROJECT_ROOT, worker_log

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

WORKER_ENV = {"AUDIT_HEARTBEAT_S": "0.5", "AUDIT_STALE_AFTER_S": "2", "OMP_NUM_THREADS": "1"}
WORKER_ARGS = ("--poll", "0.5", "--idle-exit", "2")
QUICK = {"embedder": "pixels", "detectors": ["knn_label", "outlier"], "device": "cpu",
         "loader_workers": 0, "folds": 2}
SLOW_EMBEDDING = {**QUICK, "embedder": "cnn", "folds": 3}


def queue_audit(store, settings, dataset_id: int, config: dict) -> int:
    """Queue a validated audit without starting a worker (each test starts its own)."""
    checked = AuditConfig.from_dict(config, settings).to_dict()
    return job_store.insert_job(store, dataset_id, "audit", checked)


def wait_for(condition, timeout_s: float, what: str, data_home=None):
    """Poll ``condition`` (each poll is a transaction: not too often, the file is shared)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n" + (
            worker_log(data_home) if data_home else "")
        time.sleep(0.25)


def embedding(store, job_id: int) -> bool:
    """The job is inside the embed stage (the plan maps it to progress 0.02 .. 0.5)."""
    job = job_store.get_job(store, job_id)
    return job["status"] == "running" and 0.02 < job["progress"] < 0.5


def under_way(store, job_id: int) -> bool:
    """Running and past loading: with the cnn embedder, seconds away from finishing."""
    job = job_store.get_job(store, job_id)
    return job["status"] == "running" and job["progress"] > 0.02


def _detector_stage(store, job_id: int) -> tuple:
    """Times of the first and last "detector:... took" log lines: scores are written between."""
    times = [when for when, message in job_store.log_lines(store, job_id)
             if message.startswith("detector:")]
    return min(times), max(times)


def _claims(store, job_id: int) -> int:
    return sum("claimed by worker" in message for _, message in job_store.log_lines(store, job_id))


def _final(job: dict) -> dict | None:
    return job if job["status"] in job_store.FINAL_JOB_STATES else None


def test_two_workers_run_twenty_jobs_exactly_once(store, settings, make_dataset, tmp_path,
                                                  spawn_worker, data_home):
    dataset_id = make_dataset()
    probs = tmp_path / "probs.npy"
    np.save(probs, np.full((30, 3), 1 / 3))       # supplied pred_probs: no probe to train
    ids = [queue_audit(store, settings, dataset_id, {**QUICK, "pred_probs_file": str(probs)})
           for _ in range(20)]
    calm = {**WORKER_ENV, "AUDIT_HEARTBEAT_S": "2"}          # fewer writes: short jobs
    workers = [spawn_worker(*WORKER_ARGS, env=calm) for _ in range(2)]
    assert [w.wait(timeout=150) for w in workers] == [0, 0], worker_log(data_home)
    jobs = [job_store.get_job(store, i) for i in ids]
    assert [j["status"] for j in jobs] == ["succeeded"] * 20, worker_log(data_home)
    assert {j["worker_pid"] for j in jobs} == {w.pid for w in workers}
    runs = list_runs(store, dataset_id)
    assert sorted(runs["job_id"]) == ids and set(runs["status"]) == {"succeeded"}
    assert sorted(j["run_id"] for j in jobs) == sorted(runs["id"])
    assert [_claims(store, i) for i in ids] == [1] * 20


def test_a_killed_workers_job_is_failed_by_the_rerun_that_follows(
        store, settings, make_dataset, spawn_worker, data_home, monkeypatch):
    dataset_id = make_dataset(per_class=100)
    job_id = queue_audit(store, settings, dataset_id, SLOW_EMBEDDING)
    worker = spawn_worker(*WORKER_ARGS, env=WORKER_ENV)
    wait_for(lambda: embedding(store, job_id), 90, "the embedding stage", data_home)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    assert job_store.get_job(store, job_id)["status"] == "running"     # nobody has looked yet
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    again = rerun(store, settings, job_id, {"embedder": "pixels"})  # starts a detached worker
    job = job_store.get_job(store, job_id)            # failed by the enqueue, not by a reader
    assert job["status"] == "failed" and "stopped without finishing" in job["error"]
    assert list(list_runs(store, dataset_id)["status"]) == ["failed"]
    final = follow_job(store, again, poll_s=0.2, settings=settings)
    assert final["status"] == "succeeded", final["error"]
    assert latest_finished_run(store, dataset_id) == final["run_id"]
    runs = list_runs(store, dataset_id).set_index("job_id")["status"].to_dict()
    assert runs == {job_id: "failed", again: "succeeded"}
    assert len(scores_frame(store, final["run_id"])) == 300 * 2


def test_cancel_during_embedding_ends_the_job_cancelled(store, settings, make_dataset,
                                                       spawn_worker, data_home):
    """The state, not the latency: how fast a cancel lands is measured in bench/bench_jobs.py."""
    dataset_id = make_dataset(per_class=100)
    job_id = queue_audit(store, settings, dataset_id, SLOW_EMBEDDING)
    worker = spawn_worker(*WORKER_ARGS, env=WORKER_ENV)
    wait_for(lambda: embedding(store, job_id), 90, "the embedding stage", data_home)
    assert job_store.request_cancel(store, job_id) == "cancel_requested"
    job = wait_for(lambda: _final(job_store.get_job(store, job_id)), 120, "the cancel", data_home)
    assert (job["status"], job["message"]) == ("cancelled", "cancelled on request")
    assert list(list_runs(store, dataset_id)["status"]) == ["cancelled"]
    assert latest_finished_run(store, dataset_id) is None
    assert worker.wait(timeout=180) == 0                # it went on, found no work, exited


def test_sigterm_cancels_the_running_jobs_and_stops_all_workers(store, settings, make_dataset,
                                                               spawn_worker, data_home):
    dataset_id = make_dataset(per_class=60)
    ids = [queue_audit(store, settings, dataset_id, SLOW_EMBEDDING) for _ in range(2)]
    parent = spawn_worker("--concurrency", "2", *WORKER_ARGS, env=WORKER_ENV)
    wait_for(lambda: all(under_way(store, i) for i in ids), 90, "both jobs under way", data_home)
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=180) == 0, worker_log(data_home)
    jobs = [job_store.get_job(store, i) for i in ids]
    assert [(j["status"], j["message"]) for j in jobs] == [
        ("cancelled", "worker stopped by signal")] * 2
    assert len({j["worker_pid"] for j in jobs}) == 2
    assert set(list_runs(store, dataset_id)["status"]) == {"cancelled"}


FLAG_WRITER = """
import sys, time
from audit.settings import load_settings
from audit.store import Store
from audit.store.datasets import samples_frame
from audit.store.flags import Decision, record_decisions
from audit.store.jobs import log_lines
store = Store.from_settings(load_settings())
dataset_id, job_id = int(sys.argv[1]), int(sys.argv[2])
ids = samples_frame(store, dataset_id)["sample_id"].tolist()
deadline = time.monotonic() + 300
while not any(message.startswith("knn took") for _, message in log_lines(store, job_id)):
    assert time.monotonic() < deadline, "the job's kNN stage did not end within 300 s"
    time.sleep(0.05)                   # start as the detectors start, on a machine of any speed
written = 0
for batch in range(100):
    decisions = [Decision(ids[(batch * 10 + i) % len(ids)], "keep", note=f"{batch}-{i}")
                 for i in range(10)]
    written += record_decisions(store, dataset_id, decisions, author="reviewer")
    time.sleep(0.05)                   # a reviewer's pace: spread over the job's stages
print(written)
"""


def test_flags_recorded_while_a_job_writes_scores_are_all_kept(store, settings, make_dataset,
                                                               spawn_worker, subprocess_env,
                                                               data_home):
    dataset_id = make_dataset(per_class=100)
    detectors = ["image_quality", "knn_label", "label_issue", "near_duplicate", "outlier",
                 "training_dynamics"]
    slower = {"training_dynamics": {"epochs": 60, "seeds": 1}}     # a detector stage of seconds
    job_id = queue_audit(store, settings, dataset_id,
                         {**QUICK, "detectors": detectors, "params": slower})
    spawn_worker(*WORKER_ARGS, env=WORKER_ENV)
    wait_for(lambda: job_store.get_job(store, job_id)["status"] == "running", 90, "the job",
             data_home)
    writer = subprocess.run([sys.executable, "-c", FLAG_WRITER, str(dataset_id), str(job_id)],
                            env=subprocess_env, cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=420)
    assert (writer.returncode, writer.stdout.strip()) == (0, "1000"), writer.stderr
    job = wait_for(lambda: _final(job_store.get_job(store, job_id)), 120, "the job", data_home)
    assert job["status"] == "succeeded", job["error"]
    flags = decision_log(store, dataset_id)
    assert len(flags) == 1000 and flags["note"].nunique() == 1000
    first, last = _detector_stage(store, job_id)    # when the scores were being written
    created = flags["created_at"]
    assert created.min() < last and created.max() > first, (first, last, created.min(),
                                                           created.max())
    scores = scores_frame(store, job["run_id"])
    assert len(scores) == 300 * len(scores["detector"].unique())
    assert set(scores["detector"]) >= {"knn_label", "outlier", "near_duplicate"}


def test_failing_jobs_leave_the_worker_taking_the_next_one(store, settings, make_dataset,
                                                           spawn_worker, data_home):
    deleted = make_dataset("deleted")
    kept = make_dataset("kept", seed=1)
    base = AuditConfig.from_dict(QUICK, settings).to_dict()
    delete_dataset(store, deleted)    # a deletion refuses while a job is queued: queue it after
    ids = [job_store.insert_job(store, deleted, "audit", base)]
    ids.append(job_store.insert_job(store, kept, "audit", {**base, "detectors": ["no_such"]}))
    ids.append(queue_audit(store, settings, kept,
                           {**QUICK, "embedder": "clip", "clip_model": "no-such-model"}))
    ids.append(queue_audit(store, settings, kept, QUICK))
    worker = spawn_worker(*WORKER_ARGS, env=WORKER_ENV)
    assert worker.wait(timeout=120) == 0, worker_log(data_home)
    jobs = [job_store.get_job(store, i) for i in ids]
    assert [j["status"] for j in jobs] == ["failed", "failed", "failed", "succeeded"]
    assert jobs[0]["error"].startswith(f"no dataset {deleted};")
    assert "unknown detector(s) ['no_such']" in jobs[1]["error"]
    assert "unknown open_clip model 'no-such-model'" in jobs[2]["error"]
    assert {j["worker_pid"] for j in jobs} == {worker.pid}
    assert all(j["traceback"] for j in jobs[:3])
    assert set(list_runs(store, kept)["status"]) == {"failed", "succeeded"}
    assert len(samples_frame(store, kept)) == 30
