"""The test Ray cluster's ``worker_process_setup_hook``: the tiny test CLIP's architecture
registered and the kill switch armed in every Ray worker process.

Its own module, importing nothing heavy: Ray imports the hook's module in every worker process
it starts, and each executor's ``StopFlag`` actor is a new process. From the test module (which
imports torch, streamlit and the audit), with open_clip imported to register the CLIP, the hook
took 7-12 s per process on 2 CPUs. So each step runs only once its module is imported there.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import signal
import sys
from pathlib import Path

KILL_SWITCH_ENV = "SIEVE_TEST_RAY_KILL_SWITCH"
TINY_CLIP_ENV = "SIEVE_TEST_TINY_CLIP_CONFIG"


def prepare_worker() -> None:
    after_import("open_clip", lambda open_clip: open_clip.add_model_config(
        os.environ[TINY_CLIP_ENV]))
    after_import("audit.embedders.loader", lambda loader: arm_kill_switch(
        loader.DecodedImages, "__getitem__", "decode"))
    after_import("audit.ray_executor", lambda ray_executor: arm_kill_switch(
        ray_executor.EncodeBatches, "__call__", "encode"))


def arm_kill_switch(cls: type, method: str, stage: str) -> None:
    """While the kill-switch file holds ``stage``, the first call of ``cls.method`` to take it
    (an atomic rename) writes its pid next to it and kills its own worker process."""
    work = getattr(cls, method)

    def work_or_die(self, *args):
        switch = Path(os.environ[KILL_SWITCH_ENV])
        fired = switch.with_suffix(".fired")
        try:
            if switch.read_text() != stage:
                return work(self, *args)
            switch.rename(fired)
        except FileNotFoundError:
            return work(self, *args)
        fired.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)

    setattr(cls, method, work_or_die)


def after_import(name: str, then) -> None:
    """``then(module)`` once the module ``name`` is imported in this process (now if it is)."""
    if name in sys.modules:
        then(sys.modules[name])
    else:
        sys.meta_path.insert(0, _AfterImport(name, then))


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds ``name`` as the other finders do, its loader made to call ``then`` once it ran."""

    def __init__(self, name: str, then):
        self.name, self.then = name, then

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            self.then(module)

        spec.loader.exec_module = exec_module
        return spec
