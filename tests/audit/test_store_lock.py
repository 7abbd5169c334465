"""A program outside Sieve holding the database file (a real second process with a real DuckDB
connection, even a read-only one): commands and readers say at once what holds the file and what
to do; a running audit waits for the file and goes on."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit.errors import StoreLockedError
from audit.store import Store
from audit.store import jobs as job_store
from audit.store.runs import create_run, finish_run, get_run
from jobs.kinds import KINDS
from jobs.worker import work
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.reliability

HOLDER = """
import sys, time, duckdb
path, seconds, marker = sys.argv[1], float(sys.argv[2]), sys.argv[3]
while True:                                   # Sieve may hold the file for a moment
    try:
        con = duckdb.connect(path, read_only=True)
        break
    except duckdb.IOException:
        time.sleep(0.01)
print("held", flush=True)
time.sleep(seconds)
open(marker, "w").close()                     # written before the release, so no race
con.close()
"""

_holders: list[subprocess.Popen] = []


def hold_store(path: Path, seconds: float) -> subprocess.Popen:
    """Start a process that opens ``path`` read-only for ``seconds``; return once it holds it.
    ``holder.releasing`` is a file the holder writes just before it lets go."""
    releasing = path.with_name(f"{path.name}.releasing-{len(_holders)}-{time.monotonic_ns()}")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(seconds),
                               str(releasing)], stdout=subprocess.PIPE, text=True)
    holder.releasing = releasing
    _holders.append(holder)
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.fixture(autouse=True)
def stop_holders():
    yield
    while _holders:
        holder = _holders.pop()
        holder.kill()
        holder.wait()


@pytest.fixture
def created(store: Store) -> Store:
    with store.transaction():
        pass                        # create the file and its schema first
    return store


def test_a_reader_names_the_outside_holder_at_once(created: Store) -> None:
    patient_for_sieve = dataclasses.replace(created, lock_timeout_s=600)
    holder = hold_store(created.path, seconds=120)
    with pytest.raises(StoreLockedError) as raised:
        with patient_for_sieve.transaction():
            pass
    assert holder.poll() is None, "the reader waited the outside holder out"
    message = str(raised.value)
    assert f"PID {holder.pid}" in message and "python" in message
    assert str(created.path) in message and "close" in message


def test_a_cli_command_prints_one_line_naming_the_holder(created: Store, subprocess_env) -> None:
    holder = hold_store(created.path, seconds=120)
    done = subprocess.run([sys.executable, "-m", "audit", "datasets"], env=subprocess_env,
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert holder.poll() is None, "the command waited the outside holder out"
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("error: ") and f"PID {holder.pid}" in lines[0]
    assert "close" in lines[0]


def test_a_patient_store_waits_for_the_outside_holder(created: Store) -> None:
    patient = dataclasses.replace(created, lock_timeout_s=0.5, outside_lock_wait_s=600)
    holder = hold_store(created.path, seconds=2)
    with patient.transaction() as con:
        assert holder.releasing.exists()              # it got the file once the holder let go
        assert con.execute("SELECT 1").fetchone()[0] == 1


def test_a_patient_store_gives_up_after_its_bound(created: Store) -> None:
    patient = dataclasses.replace(created, outside_lock_wait_s=1.5)
    holder = hold_store(created.path, seconds=120)
    with pytest.raises(StoreLockedError, match=r"waited \d+ s.*AUDIT_AUDIT_LOCK_WAIT_S") as raised:
        with patient.transaction():
            pass
    assert f"PID {holder.pid}" in str(raised.value)


SIEVE_HOLDER = """
import sys, time
from pathlib import Path
from audit.store import Store
with Store(Path(sys.argv[1])).transaction():
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_another_sieve_process_is_waited_for_within_lock_timeout(created: Store,
                                                                 subprocess_env) -> None:
    holder = subprocess.Popen([sys.executable, "-c", SIEVE_HOLDER, str(created.path), "120"],
                              env=subprocess_env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                              text=True)
    _holders.append(holder)
    assert holder.stdout.readline().strip() == "held"
    impatient = dataclasses.replace(created, lock_timeout_s=0.5)
    with pytest.raises(StoreLockedError, match="another Sieve process.*AUDIT_LOCK_TIMEOUT_S"):
        with impatient.transaction():
            pass


def _write_during_an_outside_lock(context) -> dict:
    """A job stage that writes while a program outside Sieve holds the file for a while."""
    holder = hold_store(context.store.path, seconds=3)
    run_id = create_run(context.store, context.dataset_id, context.config, job_id=context.job_id)
    assert holder.releasing.exists()                  # the write waited for the release
    finish_run(context.store, run_id, "succeeded")
    return {"run_id": run_id}


def test_a_running_audit_waits_out_an_outside_lock(created: Store, settings, monkeypatch) -> None:
    monkeypatch.setitem(KINDS, "outside_lock", _write_during_an_outside_lock)
    quick = dataclasses.replace(settings, lock_timeout_s=1.0, heartbeat_s=0.2, device="cpu")
    job_id = job_store.insert_job(created, 1, "outside_lock", {})
    assert work(quick, once=True) == 1
    job = job_store.get_job(created, job_id)
    assert job["status"] == "succeeded", job["error"]
    assert get_run(created, job["run_id"])["status"] == "succeeded"


def test_a_process_forked_inside_a_transaction_does_not_keep_the_turn(created: Store) -> None:
    """A DataLoader worker forked while the heartbeat thread held Sieve's turn used to keep the
    sidecar flock (shared with the parent's open file) for its whole life: other Sieve
    processes then failed after lock_timeout_s ("stayed in use by another Sieve process")."""
    with created.transaction():
        child = os.fork()
        if child == 0:                                   # the forked worker: lives on a while
            time.sleep(120)
            os._exit(0)
    try:
        with dataclasses.replace(created, lock_timeout_s=10).transaction() as con:
            assert con.execute("SELECT 1").fetchone()[0] == 1
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
