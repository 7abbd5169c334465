"""Is a worker alive? Process checks on this host, and the pid files workers leave behind.

A worker writes ``data_home/workers/<pid>`` (its host name inside) while it runs and removes
it when it exits; ``ensure_worker`` reads these to decide whether a new worker is needed. A
process killed with SIGKILL leaves its file behind, and a dead or zombie pid is not alive.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

HOST = socket.gethostname()


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` is a running (not zombie) process on this host."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _exited_or_zombie(pid)


def _exited_or_zombie(pid: int) -> bool:
    """A zombie (killed, not yet reaped) still answers ``kill(pid, 0)``; procfs tells."""
    if not Path("/proc/self").exists():
        return False
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    # The state letter follows the parenthesised command name, which may hold spaces.
    return text[text.rindex(")") + 2:].startswith("Z")


def workers_dir(data_home: Path) -> Path:
    return Path(data_home) / "workers"


def register_worker(data_home: Path, pid: int | None = None) -> Path:
    """Announce a live worker; return its pid file."""
    folder = workers_dir(data_home)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / str(pid or os.getpid())
    path.write_text(HOST, encoding="utf-8")
    return path


def unregister_worker(path: Path) -> None:
    path.unlink(missing_ok=True)


def live_worker_pids(data_home: Path) -> list[int]:
    """Pids of this host's registered workers that are still running; stale files are removed."""
    folder = workers_dir(data_home)
    if not folder.is_dir():
        return []
    alive = []
    for path in folder.iterdir():
        if not path.name.isdigit() or _host_of(path) != HOST:
            continue
        if pid_alive(int(path.name)):
            alive.append(int(path.name))
        else:
            path.unlink(missing_ok=True)
    return sorted(alive)


def _host_of(pid_file: Path) -> str | None:
    try:
        return pid_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
