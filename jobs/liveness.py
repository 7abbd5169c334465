"""Is a worker alive? A lock the worker holds on its file, which a reused pid cannot fake.

A worker creates ``data_home/workers/<pid>`` (its host name inside) and holds an exclusive
POSIX record lock (``lockf``) on it for as long as it runs; it removes the file when it exits.
The kernel releases the lock the moment the process ends, however it ends (SIGKILL included),
and never passes it on: an unrelated process that got the same pid holds no lock, and a POSIX
lock (unlike ``flock``) is not inherited by forked children, so a pool process outliving its
killed worker does not keep it "alive" either. So a worker is alive exactly while its file's
lock is held; a file nobody holds is what a dead worker left behind, and is removed.

A POSIX lock is dropped when its process closes *any* descriptor of the file, so this process
never opens its own worker files to check them: it remembers them in ``_held``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import uuid
from pathlib import Path

HOST = socket.gethostname()
_held: dict[Path, int] = {}  # this process's worker files -> the descriptors holding their locks


def workers_dir(data_home: Path) -> Path:
    return Path(data_home) / "workers"


def register_worker(data_home: Path) -> Path:
    """Announce this process as a live worker: create its file, locked; return the file.

    The file is written and locked under a temporary name, then renamed into place, so the
    name never shows an unlocked file of a live worker."""
    folder = workers_dir(data_home)
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / str(os.getpid())).resolve()
    if path in _held:
        return path
    pending = folder / f".{os.getpid()}-{uuid.uuid4().hex}"
    fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, HOST.encode("utf-8"))
    os.replace(pending, path)
    _held[path] = fd
    return path


def unregister_worker(path: Path) -> None:
    """Withdraw this process's worker file and release its lock."""
    path = Path(path).resolve()
    path.unlink(missing_ok=True)
    fd = _held.pop(path, None)
    if fd is not None:
        os.close(fd)


def worker_alive(data_home: Path, pid: int | None) -> bool:
    """True while worker ``pid`` of this host holds the lock on its file."""
    if not pid or pid <= 0:
        return False
    return _holder_alive((workers_dir(data_home) / str(pid)).resolve())


def live_worker_pids(data_home: Path) -> list[int]:
    """Pids of this host's workers that hold their file's lock; dead workers' files are removed."""
    folder = workers_dir(data_home)
    if not folder.is_dir():
        return []
    alive = []
    for path in folder.resolve().iterdir():
        if path.name.isdigit() and (path in _held or _host_of(path) == HOST):
            if _holder_alive(path):
                alive.append(int(path.name))
    return sorted(alive)


def _holder_alive(path: Path) -> bool:
    """Whether some process holds the lock on worker file ``path``; removes it when none does."""
    if path in _held:
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return True
        raise
    else:
        _remove_unless_replaced(path, fd)
        return False
    finally:
        os.close(fd)


def _remove_unless_replaced(path: Path, fd: int) -> None:
    """Remove ``path`` unless a new worker has just renamed its own file into its place."""
    try:
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            path.unlink(missing_ok=True)
    except FileNotFoundError:
        pass


def _host_of(worker_file: Path) -> str | None:
    try:
        return worker_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
