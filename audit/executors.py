"""Where an audit's heavy stages run: the executor a run chose (``executor`` in its config).

An executor does three things for the plan:

- ``embed(embedder, rows, progress)``: decode + embed the rows (the run's embedder, auto's
  pixels comparison, and CLIP's image vectors for the CLIP detectors when the run's embedder
  is another one);
- ``map_rows(function, columns, batch_rows, shared, progress, what)``: per-row work over
  batches of consecutive rows, ``function(batch, **shared)`` taking a dict of the columns'
  slices and returning a dict of per-row output columns, concatenated back in row order.
  Through it run: ingestion's reading of every image (size, sha256, decodability) and the
  run's image measures (one decode per image for ``image_quality`` and ``near_duplicate``,
  ``audit.image_measures``);
- ``map(function, arguments, shared, progress, what, gpus)``: call ``function(*args, **shared)`` for
  each tuple in ``arguments`` and return the results in the same order. Through it run: the
  probe's cross-fitting folds (one call per fold), the kNN graph's cell assignment (ranges of
  rows) and cell searches (groups of cells), and, through ``DetectorInputs.executor``, the head
  groups of ``training_dynamics``. These lists are the one place that names them.

``LocalExecutor`` does all three in the audit's process, one call after another.
``RayExecutor`` (``audit.ray_executor``, which alone imports ``ray``) runs ``embed`` and
``map_rows`` as Ray Data pipelines and ``map`` as Ray tasks across a cluster. A ``function``
given to ``map`` or ``map_rows`` must be a module-level function (a Ray worker imports it) that
reads only its arguments; ``shared`` holds the read-only inputs, sent to the cluster once.
Either way the audit's process stays the only writer of the store.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator, Sequence

import numpy as np

from audit.embedders import ShouldCancel
from audit.errors import Cancelled

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

    def map_rows(self, function: Callable, columns: dict[str, np.ndarray], batch_rows: int,
                 shared: dict | None = None, progress: Progress | None = None,
                 what: str = "rows") -> dict[str, np.ndarray]:
        """``function(batch, **shared)`` over batches of at most ``batch_rows`` consecutive
        rows of ``columns``, one after another, its output columns concatenated in row order;
        cancel is checked between batches."""
        n = len(next(iter(columns.values())))
        outputs = []
        for start in range(0, max(n, 1), batch_rows):
            if self.should_cancel is not None and self.should_cancel():
                raise Cancelled(f"cancelled while {what}")
            batch = {name: values[start:start + batch_rows] for name, values in columns.items()}
            outputs.append(function(batch, **(shared or {})))
            if progress is not None and n:
                done = min(start + batch_rows, n)
                progress(done / n, f"{what}: {done:,} of {n:,}")
        return concatenated(outputs)


def concatenated(outputs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The batches' output columns, each joined end to end (batch order kept)."""
    return {name: np.concatenate([output[name] for output in outputs]) for name in outputs[0]}


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

