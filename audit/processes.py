"""Facts about processes: is one alive (the one check, for the job worker's liveness and the
export's leftovers), how much memory this one has held at most; and this process's cyclic
garbage collector paused while a stage builds millions of small objects, and torch's thread
count set for a block."""

from __future__ import annotations

import contextlib
import gc
import os
import resource
from pathlib import Path


def peak_rss_mb() -> int:
    """The most resident memory this process's program has held so far, in MB: the kernel's
    high-water mark of this address space (``VmHWM``). ``getrusage``'s ``ru_maxrss`` is the
    fallback where /proc is absent; on Linux it also counts the parent's peak up to the fork
    that started this program, so a child of a large process would report its parent's."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


@contextlib.contextmanager
def cyclic_gc_paused():
    """Pause the cyclic garbage collector for the block (reference counting still frees what
    is dropped; only reference cycles wait until it is back on). A detector builds one details
    dict per sample; with millions already alive, each collection the new ones set off scans
    them all: building the five detectors' details for 1M samples took 27 s with the
    collector on and 13 s with it paused (bench/bench_engine_speed.py, docs/benchmarks.md)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextlib.contextmanager
def torch_threads(count: int | None):
    """torch's intra-op threads set to ``count`` for the block (None: left as they are), then
    restored; the setting is per process. torch is imported here only when called."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(previous if count is None else count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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
