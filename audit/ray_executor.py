"""The ``ray`` executor: an audit's heavy stages across a Ray cluster, their results back to
this process (``audit.executors`` says what an executor does).

Only this module imports ``ray``, and only when a run chose ``executor = "ray"``, so the local
path, the CLI's validation and the dashboard never load it. The audit's process stays the only
DuckDB writer: a task reads image files and the arrays it is given, and returns arrays; it
never opens the store.

What runs on Ray:

- decode + embed, as a Ray Data pipeline over the images the embedding cache does not hold
  (the cache is read and written here), one block per batch of rows. For ``clip`` and
  ``imagenet`` a pool of ``EncodeBatches`` actors, each building the run's model once, turns
  batches into vectors: on a GPU cluster one actor per GPU, fed by ``decode_files`` tasks
  that decode and transform the images on every CPU; on a CPU-only cluster one actor per CPU
  that decodes its own batches (measured faster there than separate decode tasks, see
  docs/benchmarks.md). ``pixels``' thumbnails need no model, so its pipeline is the decode
  tasks alone; the PCA over the whole dataset then runs here. ``cnn`` trains on the whole
  dataset at once, so it runs here, and the run says so;
- whatever is handed to ``map_rows`` (``audit.executors`` lists the stages), as a Ray Data
  pipeline of ``rows_task`` tasks, one block per batch of rows; the shared inputs (the run's
  ``ImageSource``, the ingest limits) go through the object store once and are read once per
  Ray worker process (``worker_copy``);
- whatever is handed to ``map``, one Ray task per call. Their large inputs (the centred
  features, the vectors) are put in Ray's object store once per ``map`` and shared by every
  task.

Failures: Ray re-runs a task whose worker process died and restarts an actor that died,
re-running its batch (``MAX_RETRIES``). Progress is reported per finished batch or task.

Cancel is polled between batches and tasks and never uses ``ray.cancel``: in Ray 2.60 a cancel
racing a task's completion can abort the calling process ("Tried to complete task that was
not pending", ray-project/ray#54846; it once killed this project's test run), and Ray Data
calls ``ray.cancel`` on the tasks in flight when a pipeline is stopped early. So ``map``
submits at most ``IN_FLIGHT_PER_SLOT`` tasks per slot ahead and on cancel submits no more; a
pipeline is told to stop through a ``StopFlag`` actor that every batch asks first, so the
batches still to come return empty and the pipeline ends by itself. Either way the work in
flight finishes, its results are dropped, and ``Cancelled`` is raised. See docs/scaling.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from audit.embedders import EmbedContext, Embedding, ImageRows, Progress, ShouldCancel
from audit.embedders.loader import DecodedImages, FileEncoding
from audit.errors import Cancelled, ConfigError
from audit.executors import concatenated, row_ranges

PIPELINED_EMBEDDERS = ("clip", "imagenet", "pixels")
MAX_RETRIES = 3           # re-runs of a task, or restarts of an actor, whose process died
POLL_S = 0.5              # how often cancel is polled while tasks run
IN_FLIGHT_PER_SLOT = 2    # tasks submitted ahead per parallel slot
POSITION = "position"     # the row-number column a pipeline carries to put results in order
MAX_THUMBNAIL_ROWS = 4096  # rows per block of a pipeline without a model (thumbnails)
# an encode actor fed by decode tasks leaves most of its CPU to them (a pool as large as the
# CPUs, each taking a whole one, would leave none to decode: the pipeline would wait forever)
ACTOR_CPUS_BESIDE_DECODE_TASKS = 0.5


@dataclasses.dataclass(frozen=True)
class EmbedderSpec:
    """What a Ray worker process needs to build the run's embedder itself."""

    name: str
    context: EmbedContext        # its device: the audit process's (``device`` resolved there)
    clip_model: str
    clip_pretrained: str
    asked_device: str            # the run's ``device`` setting, before it was resolved


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
        executor = RayExecutor(ray, address, spec_of, should_cancel)
        try:
            yield executor
        finally:
            executor.close()


class RayExecutor:
    """Embeds rows with a Ray Data pipeline and maps functions as Ray tasks; what it did is in
    ``facts`` (for runs.summary: the cluster, the tasks per function, the pipeline's batches
    per stage)."""

    def __init__(self, ray, address: str, spec_of, should_cancel: ShouldCancel | None):
        self.ray, self.spec_of, self.should_cancel = ray, spec_of, should_cancel
        resources = ray.cluster_resources()
        self.facts: dict = {"name": "ray", "address": address or "local instance",
                            "cluster_cpus": int(resources.get("CPU", 0)),
                            "cluster_gpus": int(resources.get("GPU", 0)),
                            "max_retries": MAX_RETRIES, "tasks": {}, "ran_locally": {}}
        # started now, so its process (1.3-1.7 s) comes up while the run does other work
        self.stop = ray.remote(StopFlag).options(num_cpus=0).remote()

    def close(self) -> None:
        """Let the ``StopFlag`` actor go (the cluster may outlive the run)."""
        self.ray.kill(self.stop)

    def cleared_stop_flag(self):
        """The executor's ``StopFlag``, cleared for a new pipeline (one actor per executor, not
        one per pipeline: each would cost an actor process's start)."""
        self.ray.get(self.stop.clear.remote())
        return self.stop

    def embed(self, embedder, rows: ImageRows, progress: Progress | None) -> Embedding:
        """``embedder.embed(rows)``, its files decoded and encoded by a Ray Data pipeline."""
        if embedder.name not in PIPELINED_EMBEDDERS:
            self.facts["ran_locally"][embedder.name] = "trains on the whole dataset at once"
            return embedder.embed(rows, progress, self.should_cancel)
        spec = self.on_encode_device(self.spec_of(embedder.name))
        return embedder.embed(rows, progress, self.should_cancel,
                              functools.partial(self.encode_files, spec))

    def on_encode_device(self, spec: EmbedderSpec) -> EmbedderSpec:
        """``spec`` with the device its encode actors use (``encode_device``)."""
        device = encode_device(spec.asked_device, spec.context.device,
                               self.facts["cluster_gpus"])
        return dataclasses.replace(spec, context=dataclasses.replace(spec.context,
                                                                     device=device))

    def encode_files(self, spec: "EmbedderSpec", encoding: FileEncoding, paths: list[Path],
                     batch_size: int, workers: int, max_pixels: int,
                     progress: Progress | None, should_cancel: ShouldCancel | None
                     ) -> tuple[np.ndarray, dict[int, str]]:
        """Rows of every file in order and the failed positions with the reason, as
        ``loader.encode_files_locally`` returns them, from the pipeline
        of ``files_pipeline``. ``workers`` (DataLoader processes) means nothing here: the
        cluster's CPUs decode."""
        out = np.zeros((len(paths), encoding.width), dtype=encoding.dtype)
        if not paths:
            return out, {}
        encodes = encoding.encode is not None
        on_gpu = encodes and spec.context.device == "cuda"   # thumbnails are decoded on CPUs
        if encodes:
            self.facts["encode_device"] = spec.context.device
        rows = batch_size if encodes else MAX_THUMBNAIL_ROWS
        batches = row_ranges(len(paths), self.slots(on_gpu), rows)
        stop = self.cleared_stop_flag()
        pipeline = self.files_pipeline(spec, encoding, paths, batches, max_pixels, stop, on_gpu)
        return out, self.collect(pipeline, out, stop, progress, should_cancel)

    def collect(self, pipeline, out: np.ndarray, stop, progress: Progress | None,
                should_cancel: ShouldCancel | None) -> dict[int, str]:
        """Each batch's rows into ``out`` by position as the pipeline yields them; the failed
        positions with the reason."""
        failed: dict[int, str] = {}
        done = 0
        for batch in self.until_cancelled(pipeline, stop, should_cancel,
                                          "images were embedded on Ray"):
            out[batch[POSITION]] = batch["rows"]
            failed.update({int(p): str(e) for p, e in zip(batch[POSITION], batch["error"]) if e})
            done += len(batch[POSITION])
            if progress is not None:
                progress(done / len(out), f"embedding on Ray Data: {done:,} of {len(out):,} "
                         "images done")
        return failed

    def until_cancelled(self, pipeline, stop, should_cancel: ShouldCancel | None,
                        what: str) -> Iterator[dict]:
        """The pipeline's batches (numpy) as it yields them. On cancel, ``stop`` is set, the
        rest drained unread and ``Cancelled`` raised (see the module doc)."""
        stopped = False
        for batch in pipeline.iter_batches(batch_size=None, batch_format="numpy"):
            if not stopped and should_cancel is not None and should_cancel():
                self.ray.get(stop.stop.remote())
                stopped = True
            if not stopped:
                yield batch
        if stopped:
            raise Cancelled(f"cancelled while {what}")

    def files_pipeline(self, spec: "EmbedderSpec", encoding: FileEncoding, paths: list[Path],
                       batches: list[tuple[int, int]], max_pixels: int, stop, on_gpu: bool):
        """The Ray Data pipeline over ``paths``, one block per batch: ``decode_files`` tasks
        (1 CPU each) unless the encoding has a model and the cluster no GPU, then, when it has
        a model, a pool of ``EncodeBatches`` actors (1 GPU each on cuda; 1 CPU each, or
        ``ACTOR_CPUS_BESIDE_DECODE_TASKS`` beside decode tasks)."""
        import pyarrow
        import ray.data

        encodes = encoding.encode is not None
        rows_per_batch = max(end - first for first, end in batches)
        files = pyarrow.table({POSITION: np.arange(len(paths)),
                               "path": [str(path) for path in paths]})
        pipeline = blocks_of(files, batches)
        decoded_apart = decodes_in_tasks(on_gpu, encodes)
        if decoded_apart:
            pipeline = pipeline.map_batches(
                decode_files, batch_size=rows_per_batch, zero_copy_batch=True,
                fn_kwargs={"transform": encoding.transform, "shape": encoding.shape,
                           "dtype": np.float32 if encodes else encoding.dtype,
                           "max_pixels": max_pixels, "as_rows": not encodes, "stop": stop},
                num_cpus=1, ray_remote_args_fn=task_retries)
            self.count_tasks("decode_files", len(batches))
        if not encodes:
            return pipeline
        self.count_tasks("EncodeBatches", len(batches))
        return pipeline.map_batches(
            EncodeBatches, batch_size=rows_per_batch, zero_copy_batch=True,
            fn_constructor_args=(spec, max_pixels, stop),
            compute=ray.data.ActorPoolStrategy(size=self.slots(on_gpu)),
            num_gpus=int(on_gpu), num_cpus=ACTOR_CPUS_BESIDE_DECODE_TASKS if decoded_apart else 1,
            ray_remote_args_fn=actor_restarts)

    def count_tasks(self, name: str, count: int) -> None:
        """Add ``count`` tasks (or pipeline batches) of ``name`` to the run's facts."""
        self.facts["tasks"][name] = self.facts["tasks"].get(name, 0) + count

    def slots(self, on_gpu: bool = False) -> int:
        """How many tasks the cluster runs at once (GPUs for GPU tasks, else CPUs)."""
        return max(1, self.facts["cluster_gpus" if on_gpu else "cluster_cpus"])

    def map_rows(self, function: Callable, columns: dict[str, np.ndarray], batch_rows: int,
                 shared: dict | None = None, progress: Progress | None = None,
                 what: str = "rows") -> dict[str, np.ndarray]:
        """``function(batch, **shared)`` over batches of consecutive rows of ``columns`` as a
        Ray Data pipeline (one block and one task per batch: about ``TASKS_PER_SLOT`` per CPU,
        at most ``batch_rows`` rows; 1 CPU each), its output columns put back in row order.
        ``shared`` is put in the object store once and read once per Ray worker process
        (``worker_copy``), not once per task."""
        import pyarrow

        n = len(next(iter(columns.values())))
        if n == 0:
            return function(columns, **(shared or {}))
        batches = row_ranges(n, self.slots(), batch_rows)
        table = pyarrow.table({POSITION: np.arange(n), **columns})
        self.count_tasks(function.__name__, len(batches))
        stop = self.cleared_stop_flag()
        pipeline = one_operator(blocks_of(table, batches)).map_batches(
            rows_task, batch_size=max(end - first for first, end in batches),
            zero_copy_batch=True, num_cpus=1, ray_remote_args_fn=task_retries,
            fn_kwargs={"function": function, "shared": self.ray.put(shared or {}),
                       "stop": stop})
        outputs, done = [], 0
        for batch in self.until_cancelled(pipeline, stop, self.should_cancel, what):
            outputs.append(batch)
            done += len(batch[POSITION])
            if progress is not None:
                progress(done / n, f"{what}: {done:,} of {n:,} done on Ray Data")
        joined = concatenated(outputs)
        order = np.argsort(joined.pop(POSITION), kind="stable")
        return {name: values[order] for name, values in joined.items()}

    def map(self, function: Callable, arguments: Sequence[tuple], shared: dict | None = None,
            progress: Progress | None = None, what: str = "tasks", gpus: int = 0) -> list:
        """``[function(*args, **shared) for args in arguments]`` as Ray tasks (``gpus`` each;
        one CPU otherwise), ``shared`` put in the object store once, at most
        ``IN_FLIGHT_PER_SLOT`` per slot submitted ahead (see the module doc on cancel)."""
        task = self.ray.remote(function).options(max_retries=MAX_RETRIES, num_cpus=1,
                                                 num_gpus=gpus)
        shared_refs = {name: self.ray.put(value) for name, value in (shared or {}).items()}
        self.count_tasks(function.__name__, len(arguments))
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


def encode_device(asked: str, here: str, cluster_gpus: int) -> str:
    """The encode actors' device: the audit process's (``here``), except that ``auto`` takes
    the cluster's GPUs when that process, the Ray driver, runs on a node without one. GPU
    actors on a cluster that advertises no GPU would wait forever: refused instead."""
    if cluster_gpus == 0 and here == "cuda":
        raise ConfigError("this process has a GPU but the Ray cluster it joined advertises none "
                          "(started with --num-gpus=0?); start Ray with its GPUs, or set "
                          "device = cpu")
    return "cuda" if asked == "auto" and cluster_gpus > 0 else here


def decodes_in_tasks(on_gpu: bool, encodes: bool) -> bool:
    """Whether ``decode_files`` tasks feed the pipeline: always without a model; with one,
    only beside GPUs (on CPUs the actors decode their own batches: measured faster)."""
    return on_gpu or not encodes


def blocks_of(table, batches: list[tuple[int, int]]):
    """A Ray Data dataset of ``table`` (pyarrow), one block per batch of rows, with Ray Data's
    progress bars and info logs off."""
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray.data.from_arrow([table.slice(first, end - first) for first, end in batches])


def one_operator(blocks):
    """``blocks`` (a Ray Data dataset) for a pipeline of one operator after them: without Ray
    Data's per-operator resource reservation, which there only caps the operator at half the
    cluster's CPUs (measured on 2 CPUs: its tasks ran one at a time). Not used for the embed
    pipeline: there, on a new 1-CPU instance, it made the first run's embed stage 8 s slower
    (docs/benchmarks.md)."""
    blocks.context.op_resource_reservation_enabled = False
    return blocks


def task_retries() -> dict:
    """A pipeline task's Ray options: re-run when its process died (Ray Data's default: forever)."""
    return {"max_retries": MAX_RETRIES}


def actor_restarts() -> dict:
    """An encode actor's Ray options: restarted, and its batch re-run, when its process died."""
    return {"max_restarts": MAX_RETRIES, "max_task_retries": MAX_RETRIES}


def rows_task(batch: dict, function: Callable, shared, stop) -> dict:
    """In a Ray task: ``function`` on one batch of rows with the ``shared`` inputs (an object
    ref), its output with the rows' positions (none, the same columns, once the ``StopFlag``
    is set)."""
    import ray

    if ray.get(stop.is_stopped.remote()):
        batch = {name: values[:0] for name, values in batch.items()}
    positions = batch.pop(POSITION)
    return {POSITION: positions, **function(batch, **worker_copy(shared))}


_WORKER_COPIES: dict[str, object] = {}


def worker_copy(ref) -> object:
    """The object behind ``ref``, read once per Ray worker process and kept for the tasks after
    (a run's ``ImageSource`` holds every relative path: at 1M rows about 0.15 s to read each
    time); only the latest ref's object is kept."""
    import ray

    key = ref.hex()
    if key not in _WORKER_COPIES:
        _WORKER_COPIES.clear()
        _WORKER_COPIES[key] = ray.get(ref)
    return _WORKER_COPIES[key]


class StopFlag:
    """A Ray actor every pipeline batch asks before its work: set, the batch returns empty."""

    def __init__(self):
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True

    def clear(self) -> None:
        self.stopped = False

    def is_stopped(self) -> bool:
        return self.stopped


def decode_files(batch: dict, transform: Callable, shape: tuple[int, ...], dtype: type,
                 max_pixels: int, as_rows: bool, stop) -> dict:
    """In a Ray task: decode and transform a batch of files (``position``, ``path``) into
    ``tensor`` (or, ``as_rows``, flattened ``rows``) of ``dtype``, with ``error`` ("" when it
    decoded; its tensor is zeros)."""
    import ray

    if ray.get(stop.is_stopped.remote()):
        return {POSITION: batch[POSITION][:0], "error": np.array([], dtype=object),
                "rows" if as_rows else "tensor": np.zeros((0, *shape), dtype)}
    images = DecodedImages(list(batch["path"]), transform, shape, max_pixels)
    _, tensors, errors = zip(*(images[i] for i in range(len(images))))
    stacked = np.stack([tensor.numpy().astype(dtype, copy=False) for tensor in tensors])
    decoded = stacked.reshape(len(stacked), -1) if as_rows else stacked
    return {POSITION: batch[POSITION], "error": np.array(errors, dtype=object),
            "rows" if as_rows else "tensor": decoded}


class EncodeBatches:
    """A Ray Data actor: the run's model built once (from an ``EmbedderSpec``), then each
    batch -> its rows. A batch of files (no ``tensor`` column: a CPU cluster, where the actor
    decodes its own batch) is decoded here first."""

    def __init__(self, spec: EmbedderSpec, max_pixels: int, stop):
        from audit.embedders import make_embedder

        embedder, _ = make_embedder(spec.name, spec.context, spec.clip_model,
                                    spec.clip_pretrained)
        self.encoding, self.max_pixels, self.stop = embedder.file_encoding(), max_pixels, stop

    def __call__(self, batch: dict) -> dict:
        import ray
        import torch

        if "tensor" not in batch:               # decode_files asks the StopFlag itself
            batch = decode_files(batch, self.encoding.transform, self.encoding.shape,
                                 np.float32, self.max_pixels, False, self.stop)
        elif ray.get(self.stop.is_stopped.remote()):
            batch = {column: values[:0] for column, values in batch.items()}
        if not len(batch[POSITION]):          # stopped
            return {POSITION: batch[POSITION], "error": batch["error"],
                    "rows": np.zeros((0, self.encoding.width), self.encoding.dtype)}
        tensors = torch.from_numpy(np.require(batch["tensor"], requirements=["C", "W"]))
        return {POSITION: batch[POSITION], "error": batch["error"],
                "rows": self.encoding.rows_of(tensors)}
