"""The ``ray`` executor: an audit's heavy stages as Ray tasks across a cluster, their results
back to this process in order (``audit.executors`` says what an executor does).

Only this module imports ``ray``, and only when a run chose ``executor = "ray"``, so the local
path, the CLI's validation and the dashboard never load it. The audit's process stays the only
DuckDB writer: a task reads image files, the embedding cache (files under ``data_home``) and
the arrays it is given, and returns arrays; it never opens the store.

What runs on Ray:

- decode + embed, over shards of the samples: a task builds the run's embedder once per Ray
  worker process and runs the per-image part of embedding on its shard (the vectors for
  ``clip`` and ``imagenet``, the thumbnails for ``pixels``, whose PCA over the whole dataset
  then runs here). ``cnn`` trains on the whole dataset at once, so it runs here, and the run
  says so;
- whatever is handed to ``map`` (``audit.executors`` lists the stages), one task per call.
  Their large inputs (the centred features, the vectors, the run's ``ImageSource``) are put in
  Ray's object store once per ``map`` and shared by every task.

Tasks ask for one GPU each when the run's device is cuda, one CPU otherwise. Ray re-runs a task
whose worker process died (``MAX_RETRIES``); progress is reported per finished task. At most
``IN_FLIGHT_PER_SLOT`` tasks per slot are submitted ahead, so a cancel request, polled while
tasks run, stops the stage by submitting no more and raising ``Cancelled``; the few tasks in
flight finish and their results are dropped. ``ray.cancel`` is not used: in Ray 2.60 a cancel
racing a task's completion can abort the calling process ("Tried to complete task that was
not pending", ray-project/ray#54846; it once killed this project's test run). See
docs/scaling.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Callable, Iterator, Sequence

import numpy as np

from audit.embedders import EmbedContext, Embedding, ImageRows, Progress, ShouldCancel
from audit.errors import Cancelled, ConfigError
from audit.executors import row_ranges

SHARDED_EMBEDDERS = ("clip", "imagenet", "pixels")
MAX_RETRIES = 3           # re-runs of a task whose Ray worker process died
MAX_SHARD_ROWS = 4096
POLL_S = 0.5              # how often cancel is polled while tasks run
IN_FLIGHT_PER_SLOT = 2    # tasks submitted ahead per parallel slot
_BUILT: dict[str, object] = {}   # in a Ray worker process: the embedder each spec built there


@dataclasses.dataclass(frozen=True)
class EmbedderSpec:
    """What a Ray worker process needs to build the run's embedder itself."""

    name: str
    context: EmbedContext
    clip_model: str
    clip_pretrained: str


@contextlib.contextmanager
def ray_session(address: str) -> Iterator[object]:
    """The ``ray`` module, connected for the length of the block: the instance this process
    already joined, else ``ray.init`` ("" starts a local instance, ``auto`` joins the running
    cluster, else the cluster at that address), shut down again at the end."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    starts_local = not address
    try:
        ray.init(address=address or None, logging_level=logging.WARNING,
                 **({"include_dashboard": False} if starts_local else {}))
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"ray_address={address!r}: could not start or join Ray ({exc}); start "
                          "a cluster (`ray start --head`) and give its address or auto, or leave "
                          "ray_address empty for a local instance") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


@contextlib.contextmanager
def ray_executor(address: str, spec_of, should_cancel: ShouldCancel | None
                 ) -> Iterator["RayExecutor"]:
    """A ``RayExecutor`` for the length of the block (``spec_of(name)``: the EmbedderSpec of
    an embedder by name)."""
    with ray_session(address) as ray:
        yield RayExecutor(ray, address, spec_of, should_cancel)


class RayExecutor:
    """Embeds rows and maps functions with Ray tasks; what it did is in ``facts`` (for
    runs.summary: the cluster, and the tasks run per function)."""

    def __init__(self, ray, address: str, spec_of, should_cancel: ShouldCancel | None):
        self.ray, self.spec_of, self.should_cancel = ray, spec_of, should_cancel
        resources = ray.cluster_resources()
        self.facts: dict = {"name": "ray", "address": address or "local instance",
                            "cluster_cpus": int(resources.get("CPU", 0)),
                            "cluster_gpus": int(resources.get("GPU", 0)),
                            "max_retries": MAX_RETRIES, "tasks": {}, "ran_locally": {}}

    def embed(self, embedder, rows: ImageRows, progress: Progress | None) -> Embedding:
        """``embedder.embed(rows)``, its per-image part run as Ray tasks over shards."""
        if embedder.name not in SHARDED_EMBEDDERS:
            self.facts["ran_locally"][embedder.name] = "trains on the whole dataset at once"
            return embedder.embed(rows, progress, self.should_cancel)
        if not rows.paths:
            return embedder.embed(rows, progress, self.should_cancel)
        spec = self.spec_of(embedder.name)
        on_gpu = spec.context.device == "cuda"
        bounds = row_ranges(len(rows.paths), self.slots(on_gpu), MAX_SHARD_ROWS)
        results = self.map(embed_shard, [(spec, rows_between(rows, a, b)) for a, b in bounds],
                           progress=progress, what=f"embedding {len(rows.paths):,} images, shards",
                           gpus=int(on_gpu))
        per_image, failed = assemble(dict(zip((start for start, _ in bounds), results)))
        if embedder.name == "pixels":
            return embedder.from_thumbnails(per_image, failed)
        return Embedding(per_image, embedder.model_id, failed)

    def slots(self, on_gpu: bool = False) -> int:
        """How many tasks the cluster runs at once (GPUs for GPU tasks, else CPUs)."""
        return max(1, self.facts["cluster_gpus" if on_gpu else "cluster_cpus"])

    def map(self, function: Callable, arguments: Sequence[tuple], shared: dict | None = None,
            progress: Progress | None = None, what: str = "tasks", gpus: int = 0) -> list:
        """``[function(*args, **shared) for args in arguments]`` as Ray tasks (``gpus`` each;
        one CPU otherwise), ``shared`` put in the object store once, at most
        ``IN_FLIGHT_PER_SLOT`` per slot submitted ahead (see the module doc on cancel)."""
        task = self.ray.remote(function).options(max_retries=MAX_RETRIES, num_cpus=1,
                                                 num_gpus=gpus)
        shared_refs = {name: self.ray.put(value) for name, value in (shared or {}).items()}
        tasks = self.facts["tasks"]
        tasks[function.__name__] = tasks.get(function.__name__, 0) + len(arguments)
        unsubmitted = list(enumerate(arguments))[::-1]
        in_flight = IN_FLIGHT_PER_SLOT * self.slots(on_gpu=gpus > 0)
        pending: dict[object, int] = {}
        results: dict[int, object] = {}
        while unsubmitted or pending:
            self.check_cancel()
            while unsubmitted and len(pending) < in_flight:
                index, args = unsubmitted.pop()
                pending[task.remote(*args, **shared_refs)] = index
            ready, _ = self.ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            for ref in ready:
                results[pending.pop(ref)] = self.ray.get(ref)
                if progress is not None:
                    progress(len(results) / len(arguments),
                             f"{what}: {len(results)} of {len(arguments)} done on Ray")
        return [results[i] for i in range(len(arguments))]

    def check_cancel(self) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled("cancelled while tasks ran on Ray")


def rows_between(rows: ImageRows, start: int, stop: int) -> ImageRows:
    return ImageRows(rows.paths[start:stop], rows.hashes[start:stop], rows.labels[start:stop])


def assemble(results: dict[int, tuple[np.ndarray, dict[int, str]]]
             ) -> tuple[np.ndarray, dict[int, str]]:
    """The shards' arrays joined in row order, and their failed rows as dataset rows."""
    starts = sorted(results)
    per_image = np.concatenate([results[start][0] for start in starts])
    failed = {start + row: reason for start in starts for row, reason in results[start][1].items()}
    return per_image, dict(sorted(failed.items()))


def embed_shard(spec: EmbedderSpec, rows: ImageRows) -> tuple[np.ndarray, dict[int, str]]:
    """In a Ray worker process: the per-image part of embedding one shard, and its failed rows
    (shard rows -> reason)."""
    if spec.name == "pixels":
        from audit.embedders import pixels

        return pixels.thumbnails(rows, spec.context)
    key = repr(spec)
    if key not in _BUILT:
        from audit.embedders import make_embedder

        _BUILT[key], _ = make_embedder(spec.name, spec.context, spec.clip_model,
                                       spec.clip_pretrained)
    result = _BUILT[key].embed(rows)
    return result.vectors, result.failed
