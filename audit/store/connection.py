"""Short-lived DuckDB connections with bounded waiting for a locked file.

DuckDB lets one process hold a database file at a time. Every access here opens a
connection, runs one transaction and closes it, so no process holds the file for long.

Sieve's processes take turns through a sidecar lock file (``audit.duckdb.lock``, ``flock``)
polled every few milliseconds, which is cheap and fair, instead of racing each other's
``duckdb.connect`` with backoff (a worker's heartbeat once waited 14 s that way). That wait
is bounded by ``lock_timeout_s``.

A program outside Sieve (a DuckDB shell, a notebook, even a read-only connection) can hold the
file for as long as it likes. An open that meets one gives its turn back and retries with
backoff for ``outside_lock_wait_s``: a moment for commands and the dashboard, which then say
which program holds the file and that closing it is the fix; minutes for a running audit
(``Store.for_audit``), which should outlast a short outside look rather than fail its job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import random
import re
import threading
import time
from pathlib import Path
from typing import Iterator

import duckdb

from audit.errors import StoreLockedError
from audit.store.migrations import apply_migrations

_LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")
# DuckDB names the holder: "Conflicting lock is held in /usr/bin/python3.11 (PID 4242)".
_HOLDER = re.compile(r"held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")
# A command or page waits this long for an outside program (a quick query elsewhere), no more.
BRIEF_OUTSIDE_WAIT_S = 1.0
_MAX_BACKOFF_S = 2.0
# DuckDB keeps one database instance per file and process: a thread that opens the file while
# another thread's close tears that instance down fails ("Unique file handle conflict"). One
# process-wide lock around each transaction rules that out (workers beat from a second thread,
# Streamlit serves each browser session from its own thread). Re-entrant for nested use.
_one_transaction_at_a_time = threading.RLock()


@dataclasses.dataclass(frozen=True)
class Store:
    """Where the database lives and how long to wait for Sieve's and outside programs' locks."""

    path: Path
    lock_timeout_s: float = 30.0
    outside_lock_wait_s: float = BRIEF_OUTSIDE_WAIT_S

    @classmethod
    def from_settings(cls, settings) -> "Store":
        """The store as commands and the dashboard use it: an outside holder is reported."""
        return cls(Path(settings.db_path), settings.lock_timeout_s)

    @classmethod
    def for_audit(cls, settings) -> "Store":
        """The store as a running audit uses it: an outside holder is waited out, within
        ``audit_lock_wait_s``."""
        return cls(Path(settings.db_path), settings.lock_timeout_s, settings.audit_lock_wait_s)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One connection, one transaction: commit on success, roll back on any error. Inside
        ``reads_together`` the block's one connection is used; a transaction inside another
        joins it."""
        shared = _shared_connections().get(self.path)
        if shared is not None and shared.in_transaction:
            yield shared.con
            return
        with contextlib.ExitStack() as stack:
            con = shared.con if shared else stack.enter_context(self._connection())
            try:
                con.begin()
                if shared:
                    shared.in_transaction = True
                yield con
                con.commit()
            except BaseException:
                _rollback_quietly(con)
                raise
            finally:
                if shared:
                    shared.in_transaction = False

    @contextlib.contextmanager
    def reads_together(self) -> Iterator[None]:
        """Several transactions in a row on one connection (a page's reads before it draws):
        one open of the file instead of one each, about 12 ms apiece. The file is held, as by
        a transaction, only until the block ends; keep the block short."""
        connections = _shared_connections()
        if self.path in connections:
            yield
            return
        with self._connection() as con:
            connections[self.path] = _Shared(con)
            try:
                yield
            finally:
                del connections[self.path]

    @contextlib.contextmanager
    def _connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file in Sieve's turn; while an outside program holds it, give the turn back
        (other Sieve processes and threads go on failing fast, or waiting, on their own) and
        try again with backoff until ``outside_lock_wait_s`` has passed."""
        started, delay = time.monotonic(), 0.01
        while True:
            with _one_transaction_at_a_time, _turn_at(self.path, self.lock_timeout_s):
                try:
                    con = self._connect()
                except duckdb.Error as exc:
                    if not _is_lock_error(exc):
                        raise
                    waited_s = time.monotonic() - started
                    if waited_s >= self.outside_lock_wait_s:
                        raise _outside_holder_error(self, exc, waited_s) from exc
                else:
                    try:
                        yield con
                    finally:
                        con.close()
                    return
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, _MAX_BACKOFF_S)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(self.path))
        try:
            apply_migrations(con)
        except BaseException:
            con.close()
            raise
        return con


@dataclasses.dataclass
class _Shared:
    con: duckdb.DuckDBPyConnection
    in_transaction: bool = False


_this_thread = threading.local()


def _shared_connections() -> dict[Path, _Shared]:
    """This thread's ``reads_together`` connections, by database path."""
    if not hasattr(_this_thread, "shared"):
        _this_thread.shared = {}
    return _this_thread.shared


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
        # Unlock explicitly: a process forked meanwhile (a DataLoader worker) shares this open
        # file and its flock, so closing our descriptor alone would leave the turn held by the
        # child for as long as it lives.
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


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


def _outside_holder_error(store: Store, exc: duckdb.Error, waited_s: float) -> StoreLockedError:
    """DuckDB's lock error as one line naming the program that holds the file and the fix."""
    found = _HOLDER.search(str(exc))
    holder = f"{found['program']} (PID {found['pid']})" if found else "another program"
    message = (f"{store.path} is open in {holder}, and DuckDB lets only one program at a time "
               "open it; close that program (or its connection to the file) and try again")
    if store.outside_lock_wait_s > BRIEF_OUTSIDE_WAIT_S:     # an audit, which waited for it
        message += (f" (waited {waited_s:.0f} s for it; raise AUDIT_AUDIT_LOCK_WAIT_S to wait "
                    "longer)")
    return StoreLockedError(message)


def _is_lock_error(exc: Exception) -> bool:
    return any(marker in str(exc) for marker in _LOCK_MARKERS)


def _rollback_quietly(con: duckdb.DuckDBPyConnection) -> None:
    # The transaction may already be aborted by the error being raised; the original
    # error is the one worth reporting, so a failed rollback is not.
    with contextlib.suppress(duckdb.Error):
        con.rollback()


def one_row(store: Store, sql: str, params: list) -> dict | None:
    """The query's first row as a dict of its column names, or None."""
    with store.transaction() as con:
        cursor = con.execute(sql, params)
        row = cursor.fetchone()
        names = [column[0] for column in cursor.description]
    return None if row is None else dict(zip(names, row))
