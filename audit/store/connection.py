"""Short-lived DuckDB connections with bounded retry on a locked file.

DuckDB lets one process hold a database file at a time. Every access here opens a
connection, runs one transaction and closes it, so no process holds the file for long; an
open that meets another process's lock retries with backoff until ``lock_timeout_s`` and
then raises ``StoreLockedError``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import threading
import time
from pathlib import Path
from typing import Iterator

import duckdb

from audit.errors import StoreLockedError
from audit.store.migrations import apply_migrations

_LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")
_migrate_guard = threading.Lock()


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
        with _migrate_guard:
            apply_migrations(con)
        return con


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

