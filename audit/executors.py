"""Where an audit's heavy stages run: the executor a run chose (``executor`` in its config).

An executor does two things for the plan:

- ``embed(embedder, rows, progress)``: decode + embed the rows (the run's embedder, auto's
  pixels comparison, and CLIP's image vectors for the CLIP detectors when the run's embedder
  is another one);
- ``map(function, arguments, shared, progress, what, gpus)``: call ``function(*args, **shared)`` for
  each tuple in ``arguments`` and return the results in the same order. Through it run: the
  probe's cross-fitting folds (one call per fold), the kNN graph's cell assignment (ranges of
  rows) and cell searches (groups of cells), and, through ``DetectorInputs.executor``, the
  image batches of ``image_quality`` and ``near_duplicate`` and the head groups of
  ``training_dynamics``. This list is the one place that names them.

``LocalExecutor`` does both in the audit's process, one call after another. ``RayExecutor``
(``audit.ray_executor``, which alone imports ``ray``) runs them as Ray tasks across a cluster.
A ``function`` given to ``map`` must be a module-level function (a Ray worker imports it) that
reads only its arguments; ``shared`` holds the large read-only inputs, sent to the cluster once.
Either way the audit's process stays the only writer of the store.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator, Sequence

from audit.embedders import ShouldCancel

Progress = Callable[[float, str], None]
TASKS_PER_SLOT = 4    # tasks per parallel slot when a stage is cut up: balance, little overhead


def row_ranges(n: int, slots: int, max_rows: int | None = None) -> list[tuple[int, int]]:
    """[start, stop) ranges of consecutive rows covering ``n``: about ``TASKS_PER_SLOT`` per
    parallel slot, each at most ``max_rows`` rows."""
    size = max(1, math.ceil(n / (max(slots, 1) * TASKS_PER_SLOT)))
    size = min(size, max_rows) if max_rows else size
    return [(start, min(start + size, n)) for start in range(0, n, size)]


class LocalExecutor:
    """Everything in the audit's process."""

    facts = {"name": "local"}

    def __init__(self, should_cancel: ShouldCancel | None = None):
        self.should_cancel = should_cancel

    def embed(self, embedder, rows, progress: Progress | None):
        return embedder.embed(rows, progress, self.should_cancel)

    def slots(self, on_gpu: bool = False) -> int:
        """Tasks run at once: one."""
        return 1

    def map(self, function: Callable, arguments: Sequence[tuple], shared: dict | None = None,
            progress: Progress | None = None, what: str = "tasks", gpus: int = 0) -> list:
        """``[function(*args, **shared) for args in arguments]``, one after another (``gpus``
        is the Ray executor's and means nothing here)."""
        results = []
        for done, args in enumerate(arguments, start=1):
            results.append(function(*args, **(shared or {})))
            if progress is not None:
                progress(done / len(arguments), f"{what}: {done} of {len(arguments)}")
        return results


@contextlib.contextmanager
def executor_for(name: str, ray_address: str, spec_of: Callable,
                 should_cancel: ShouldCancel | None) -> Iterator["LocalExecutor"]:
    """The executor ``name`` (``local`` or ``ray``) for the length of the block; a Ray session
    is joined or started here and left at the end (``spec_of(name)``: what a Ray worker needs
    to build the embedder ``name`` itself)."""
    if name == "local":
        yield LocalExecutor(should_cancel)
        return
    from audit.ray_executor import ray_executor

    with ray_executor(ray_address, spec_of, should_cancel) as executor:
        yield executor

