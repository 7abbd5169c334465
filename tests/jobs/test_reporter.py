"""The heartbeat thread: bounded write rate however often progress is reported, beats during a
long silent stretch, and carries a cancel request back to ``should_cancel``."""

from __future__ import annotations

import threading
import time

from audit.store import jobs as job_store
from jobs.reporter import JobReporter


def _claimed(store) -> int:
    job_id = job_store.insert_job(store, 1, "audit", {})
    job_store.claim_next_job(store, 1, "here")
    return job_id


def _wait_until(condition, what: str, timeout_s: float = 60.0) -> None:
    """Poll ``condition`` until true; a generous deadline, so a busy machine only waits longer."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _heartbeat_age(store, job_id: int) -> float:
    return next(j["age_s"] for j in job_store.running_jobs(store) if j["id"] == job_id)


def test_progress_is_written_at_a_bounded_rate(store):
    job_id = _claimed(store)
    with JobReporter(store, job_id, interval_s=0.2) as reporter:
        started = time.monotonic()
        for step in range(20_000):
            reporter.progress(step / 20_000, f"step {step}")
        reporter.progress(0.5, "halfway")
        _wait_until(lambda: reporter.beats >= 3, "three heartbeats")
        elapsed = time.monotonic() - started
    assert reporter.beats <= 1 + elapsed / 0.2 + 1   # at most one write per interval, however slow
    job = job_store.get_job(store, job_id)
    assert (job["progress"], job["message"]) == (0.5, "halfway")


def test_a_silent_long_batch_still_beats(store):
    job_id = _claimed(store)
    with JobReporter(store, job_id, interval_s=0.1) as reporter:     # no progress call at all
        _wait_until(lambda: reporter.beats >= 3, "two beats after the one on entry")
        assert _heartbeat_age(store, job_id) < 30


def test_a_cancel_request_reaches_should_cancel_within_one_interval(store):
    job_id = _claimed(store)
    with JobReporter(store, job_id, interval_s=0.1) as reporter:
        assert not reporter.should_cancel()
        job_store.request_cancel(store, job_id)
        _wait_until(reporter.should_cancel, "the cancel request")


def test_a_stop_signal_cancels_without_the_store(store):
    stop = threading.Event()
    with JobReporter(store, _claimed(store), interval_s=10, stop=stop) as reporter:
        stop.set()
        assert reporter.should_cancel()


def test_log_lines_are_kept_in_the_store(store, capsys):
    job_id = _claimed(store)
    reporter = JobReporter(store, job_id, interval_s=1)
    reporter.log("embed: 1.2 s")
    reporter.log("skipped vl_consistency: no CLIP weights")
    assert [m for _, m in job_store.log_lines(store, job_id)] == [
        "embed: 1.2 s", "skipped vl_consistency: no CLIP weights"]
    assert "job 1: embed: 1.2 s" in capsys.readouterr().out
