"""Short-lived DuckDB connections with bounded waiting for a locked file.

DuckDB lets one process hold a database file at a time. Every access here opens a
connection, runs one transaction and closes it, so no process holds the file for long.

Sieve's processes take turns through a sidecar lock file (``audit.duckdb.lock``, ``flock``)
polled every few milliseconds, which is cheap and fair, instead of racing each other's
``duckdb.connect`` with backoff (a worker's heartbeat once waited 14 s that way). An open
that still meets a lock (a process outside Sieve holding the file) retries with backoff.
Either wait is bounded by ``lock_timeout_s``, then ``StoreLockedError`` names the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import random
import threading
import time
from pathlib import Path
from typing import Iterator

import duckdb

from audit.errors import StoreLockedError
from audit.store.migrations import apply_migrations

_LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")
# DuckDB keeps one database instance per file and process: a thread that opens the file while
# another thread's close tears that instance down fails ("Unique file handle conflict"). One
# process-wide lock around each transaction rules that out (workers beat from a second thread,
# Streamlit serves each browser session from its own thread). Re-entrant for nested use.
_one_transaction_at_a_time = threading.RLock()


@dataclasses.dataclass(frozen=True)
class Store:
    """Where the database lives and how long to wait for a lock."""

    path: Path
    lock_timeout_s: float = 30.0

    @classmethod
    def from_settings(cls, settings) -> "Store":
        return cls(Path(settings.db_path), settings.lock_timeout_s)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One connection, one transaction: commit on success, roll back on any error."""
        with _one_transaction_at_a_time, _turn_at(self.path, self.lock_timeout_s):
            con = self._connect()
            try:
                con.begin()
                yield con
                con.commit()
            except BaseException:
                _rollback_quietly(con)
                raise
            finally:
                con.close()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = _open_with_retry(self.path, self.lock_timeout_s)
        apply_migrations(con)
        return con


_turns_held: dict[str, int] = {}


@contextlib.contextmanager
def _turn_at(path: Path, timeout_s: float) -> Iterator[None]:
    """Hold the sidecar lock of ``path`` (re-entrant within this process)."""
    key = str(path)
    if _turns_held.get(key):
        _turns_held[key] += 1
        try:
            yield
        finally:
            _turns_held[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _flock_within(fd, path, timeout_s)
        _turns_held[key] = 1
        try:
            yield
        finally:
            _turns_held.pop(key, None)
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _flock_within(fd: int, path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise StoreLockedError(
                    f"{path} stayed in use by another Sieve process for {timeout_s:.0f} s; "
                    "wait for it to finish or raise AUDIT_LOCK_TIMEOUT_S"
                ) from None
            time.sleep(0.002 + 0.003 * random.random())


def _open_with_retry(path: Path, timeout_s: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.Error as exc:
            if not _is_lock_error(exc):
                raise
            if time.monotonic() >= deadline:
                raise StoreLockedError(
                    f"{path} stayed locked by another process for {timeout_s:.0f} s; "
                    "wait for it to finish or raise AUDIT_LOCK_TIMEOUT_S"
                ) from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.25)


def _is_lock_error(exc: Exception) -> bool:
    return any(marker in str(exc) for marker in _LOCK_MARKERS)


def _rollback_quietly(con: duckdb.DuckDBPyConnection) -> None:
    # The transaction may already be aborted by the error being raised; the original
    # error is the one worth reporting, so a failed rollback is not.
    with contextlib.suppress(duckdb.Error):
        con.rollback()

