"""Is a process alive? The one check, for the job worker's liveness and the export's leftovers."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` is a running (not zombie) process on this host (any process: this
    says nothing about what the process is)."""
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
