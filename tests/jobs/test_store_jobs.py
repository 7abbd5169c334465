"""The job table's state machine, on a real DuckDB file: claim order, heartbeat, cancel,
exactly one final state, running jobs with their heartbeat's age, failing only a silent job."""

from __future__ import annotations

import time

import pytest

from audit.errors import NotFoundError
from audit.store import jobs as job_store


def test_claim_takes_the_oldest_queued_job_once(store):
    first = job_store.insert_job(store, 1, "audit", {"k": 5})
    second = job_store.insert_job(store, 2, "audit", {})
    claimed = job_store.claim_next_job(store, pid=123, host="here")
    assert claimed == {"id": first, "dataset_id": 1, "kind": "audit", "config": {"k": 5}}
    assert job_store.claim_next_job(store, pid=124, host="here")["id"] == second
    assert job_store.claim_next_job(store, pid=125, host="here") is None
    job = job_store.get_job(store, first)
    assert (job["status"], job["worker_pid"], job["worker_host"]) == ("running", 123, "here")
    assert job["started_at"] is not None and job["heartbeat_at"] is not None


def test_beat_writes_progress_and_reports_a_cancel_request(store):
    job_id = job_store.insert_job(store, 1, "audit", {})
    job_store.claim_next_job(store, pid=1, host="here")
    assert job_store.beat(store, job_id, 0.25, "embedding 25/100") is False
    assert job_store.request_cancel(store, job_id) == "cancel_requested"
    assert job_store.beat(store, job_id, None, None) is True
    job = job_store.get_job(store, job_id)
    assert (job["progress"], job["message"], job["status"]) == (0.25, "embedding 25/100", "running")


def test_cancel_of_a_queued_job_is_immediate_and_final_states_stay(store):
    queued = job_store.insert_job(store, 1, "audit", {})
    assert job_store.request_cancel(store, queued) == "cancelled"
    assert job_store.claim_next_job(store, pid=1, host="here") is None
    assert job_store.request_cancel(store, queued) == "cancelled"
    assert job_store.get_job(store, queued)["finished_at"] is not None
    with pytest.raises(NotFoundError, match="no job 99"):
        job_store.request_cancel(store, 99)


def test_a_job_ends_in_exactly_one_final_state(store):
    job_id = job_store.insert_job(store, 1, "audit", {})
    job_store.claim_next_job(store, pid=1, host="here")
    assert job_store.finish_job(store, job_id, "succeeded", result={"run_id": 7}, message="done")
    assert not job_store.finish_job(store, job_id, "failed", error="late")
    job = job_store.get_job(store, job_id)
    assert (job["status"], job["run_id"], job["error"]) == ("succeeded", 7, None)
    assert job["result"] == {"run_id": 7}
    assert job["progress"] == 1.0
    with pytest.raises(ValueError):
        job_store.finish_job(store, job_id, "running")


def test_running_jobs_carry_their_heartbeats_age_and_only_a_silent_one_is_failed(store):
    old = job_store.insert_job(store, 1, "audit", {})
    fresh = job_store.insert_job(store, 1, "audit", {})
    job_store.insert_job(store, 1, "audit", {})                    # queued: not running
    job_store.claim_next_job(store, pid=11, host="h")
    time.sleep(0.4)
    job_store.claim_next_job(store, pid=12, host="h")
    running = job_store.running_jobs(store)
    assert [(j["id"], j["pid"], j["host"]) for j in running] == [(old, 11, "h"), (fresh, 12, "h")]
    assert running[0]["age_s"] >= 0.4 and running[0]["age_s"] > running[1]["age_s"]
    # Windows far from the ages involved, so a busy machine cannot flip the answers.
    assert not job_store.fail_stale_job(store, fresh, 3600, "not stale")
    job_store.beat(store, old, None, None)          # it beat again
    assert not job_store.fail_stale_job(store, old, 3600, "beat in between")
    assert job_store.fail_stale_job(store, fresh, 0.0, "silent for the whole window")
    assert job_store.get_job(store, old)["status"] == "running"
    assert job_store.get_job(store, fresh)["status"] == "failed"


def test_logs_keep_their_order_and_the_list_shows_deleted_datasets(store):
    job_id = job_store.insert_job(store, 42, "audit", {})
    for message in ("one", "two", "three"):
        job_store.append_log(store, job_id, message)
    assert [m for _, m in job_store.log_lines(store, job_id)] == ["one", "two", "three"]
    frame = job_store.list_jobs(store, limit=5)
    assert frame.loc[0, "dataset"] == "(deleted dataset 42)"
    assert frame.loc[0, "status"] == "queued"
