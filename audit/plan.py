"""The audit plan: one dataset in, one run of scores out.

Stages, each timed, logged and followed by a cancel check:

    load samples -> embed (cached) -> out-of-sample pred_probs -> kNN graph
    -> every selected detector in dependency order -> per-sample run facts -> finish

Decode + embed and the other heavy stages ``audit.executors`` lists run through the run's
executor: in this process, or with ``executor = "ray"`` as Ray tasks
(``audit.ray_executor``); this process stays the only writer of the store.

Only samples whose image decoded at ingestion (``load_error`` NULL) are scored. The run is
created first and written stage by stage, each write one short transaction; no connection is
held while computing. Failures are isolated: a detector that raises, or whose inputs are
missing, is recorded in ``skipped`` with the reason and the rest go on. Any other error fails
the run (its error recorded) and is re-raised; a cancel request marks it ``cancelled`` and
raises ``Cancelled``. Only the very end marks the run ``succeeded``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import traceback
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

import audit
from audit.config import AuditConfig, registry
from audit.corrections import Corrections, reviewed_corrections
from audit.errors import Cancelled, ConfigError, InputError
from audit.executors import LocalExecutor, executor_for
from audit.processes import cyclic_gc_paused, peak_rss_mb
from audit.sample_table import SampleTable
from audit.settings import Settings
from audit.store import Store
from audit.store import datasets as dataset_store
from audit.store import runs as run_store
from audit.explore_ready import make_ready_for_explore
from audit.store.neighbours import write_neighbours
from audit.store.run_scores import run_sample_frame, scores_for_store
from audit.two_d_map import two_d_map
from audit.versions import software_versions

Progress = Callable[[float, str], None]
ShouldCancel = Callable[[], bool]
Log = Callable[[str], None]
EMBEDDING_NEEDS = frozenset({"embeddings", "knn", "clip"})   # detector needs met by embedding
# Stage -> (start, end) share of the progress bar.
PROGRESS_SPAN = {"load": (0.0, 0.02), "embed": (0.02, 0.5), "probe": (0.5, 0.6),
                 "knn": (0.6, 0.65), "detectors": (0.65, 0.97), "write": (0.97, 1.0)}


def run_audit(store: Store, settings: Settings, dataset_id: int, config: "AuditConfig | dict",
              progress: Progress | None = None, should_cancel: ShouldCancel | None = None,
              job_id: int | None = None, log: Log | None = None) -> int:
    """Run every stage for one dataset; return the id of the (succeeded) run."""
    if not isinstance(config, AuditConfig):
        config = AuditConfig.from_dict(config, settings)
    dataset = dataset_store.get_dataset(store, dataset_id)
    run_id = run_store.create_run(store, dataset.id, config.to_dict(), job_id)
    audit_run = AuditRun(store, settings, config, run_id, progress, should_cancel, log)
    try:
        audit_run.execute(dataset)
    except Cancelled:
        audit_run.finish("cancelled", error="cancelled on request")
        raise
    except BaseException as exc:
        audit_run.finish("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    return run_id


class AuditRun:
    """The state of one run while its stages execute: timings, skips, model ids."""

    def __init__(self, store: Store, settings: Settings, config: AuditConfig, run_id: int,
                 progress: Progress | None, should_cancel: ShouldCancel | None, log: Log | None):
        self.store, self.settings, self.config, self.run_id = store, settings, config, run_id
        self._progress, self._should_cancel, self._log = progress, should_cancel, log
        self.timings: dict[str, float] = {}
        self.skipped: dict[str, str] = {}     # detector -> why it did not run
        self.notes: dict[str, str] = {}       # stage -> what the user should know about it
        self.model_ids: dict[str, str] = {}
        self.summary: dict[str, dict] = {}    # what the run measured about itself, for the UI
        self.scored: list[str] = []           # detectors whose scores the run holds
        self.device, self.clip, self.folds = "cpu", None, None
        self.axes = None     # the embeddings' principal axes, fitted for the probe
        self.corrections = Corrections()
        self.executor = LocalExecutor(should_cancel)   # the config's while the inputs and
                                                       # the detectors run

    # --- reporting ------------------------------------------------------------------------

    def log(self, message: str) -> None:
        if self._log is not None:
            self._log(message)

    def report(self, stage: str, fraction: float, message: str) -> None:
        start, end = PROGRESS_SPAN[stage]
        if self._progress is not None:
            self._progress(start + (end - start) * min(max(fraction, 0.0), 1.0), message)

    def stage_progress(self, stage: str) -> Progress:
        return lambda fraction, message: self.report(stage, fraction, message)

    def extra_embedding_progress(self, what: str) -> Progress:
        """Progress of an embedding after the run's own (``what``: pixels, CLIP): its
        messages, the embed stage's bar kept full."""
        return lambda fraction, message: self.report("embed", 1.0, f"{what}: {message}")

    def check_cancel(self) -> None:
        if self._should_cancel is not None and self._should_cancel():
            raise Cancelled(f"run {self.run_id} was cancelled")

    def skip(self, name: str, reason: str) -> None:
        self.skipped[name] = reason
        self.log(f"skipped {name}: {reason}")

    def note(self, stage: str, message: str) -> None:
        self.notes[stage] = message
        self.log(f"{stage}: {message}")

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage and note this process's peak memory so far at its end (the stage
        whose figure jumps is the one that set the peak; a worker that ran a larger job
        before keeps that job's peak), log both, then poll for a cancel request."""
        started = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - started, 3)
        peak = self.summary.setdefault("peak_rss_mb", {})
        peak[name] = peak_rss_mb()
        self.log(f"{name} took {self.timings[name]:.2f} s (peak memory so far {peak[name]:,} MB)")
        self.check_cancel()

    # --- stages ---------------------------------------------------------------------------

    def execute(self, dataset) -> None:
        from audit.embedders.clip import resolve_device

        self.device = resolve_device(self.config.device)
        with self.stage("load"):
            table = self.load_samples(dataset)
        with self.config_executor():
            inputs = self.build_inputs(table)
            self.run_detectors(inputs)
        with self.stage("write"):
            self.report("write", 0.0, "writing per-sample facts")
            positions = map_positions(inputs.embeddings, inputs.n, self.config.seed)
            run_store.write_run_samples(self.store, self.run_id,
                                        run_sample_frame(inputs, self.folds, positions))
            if inputs.knn is not None:
                write_neighbours(self.store, self.run_id, inputs.sample_ids, inputs.knn.indices,
                                 inputs.knn.distances)
        self.finish("succeeded")
        self.report("write", 0.9, "making the run ready for Explore")
        self.ready_for_explore()
        self.report("write", 1.0, "done")

    def ready_for_explore(self) -> None:
        """Build the finished run's Explore index and its opening page's thumbnails here, so no
        page has to (``audit.explore_ready``)."""
        try:
            made = make_ready_for_explore(self.store, self.settings, self.run_id)
            self.log(f"Explore index built; {made} thumbnails of its opening page made")
        except Exception as exc:  # the run is complete; the first page to open it builds it
            self.log(f"Explore not made ready ({type(exc).__name__}: {exc}); the first page "
                     "to open the run does it")

    def load_samples(self, dataset) -> "SampleTable":
        self.report("load", 0.0, "loading samples")
        frame = dataset_store.samples_frame(self.store, dataset.id)
        if self.config.use_decisions:
            self.corrections = reviewed_corrections(self.store, dataset.id)
            self.summary["decisions"] = self.corrections.summary()
            self.note("decisions", self.corrections.note())
        table = SampleTable.from_frame(self.corrections.relabelled(frame), Path(dataset.root),
                                       dataset.name, self.config.class_order,
                                       follow_links=self.settings.follow_outside_links)
        if table.unreadable:
            self.note("samples", f"{table.unreadable} of {table.total} samples have unreadable "
                                 "images (see their load errors) and are not scored")
        return table

    def build_inputs(self, table: "SampleTable"):
        """Embeddings, pred_probs and the kNN graph, each only when something will use it."""
        needs = required_inputs(self.config.detectors)
        embeddings = pred_probs = knn = None
        if self.embeddings_needed(needs):
            with self.stage("embed"):
                embeddings, table = self.embed(table)
        if self.config.pred_probs_file or embeddings is not None:
            with self.stage("probe"):
                pred_probs = self.pred_probs(table, embeddings)
        if self.knn_needed(needs, embeddings):
            with self.stage("knn"):
                knn = self.knn(embeddings)
        return table.detector_inputs(self.settings, embeddings, pred_probs, knn, self.clip,
                                     self.config.seed, self.device, self.corrections,
                                     self.executor, self.axes)

    def embeddings_needed(self, needs: frozenset[str]) -> bool:
        """Embed when a detector reads embeddings, the kNN graph or CLIP, or a probe must be
        cross-fitted for pred_probs; a supplied embeddings file is always loaded (and checked)."""
        if self.config.embeddings_file or needs & EMBEDDING_NEEDS:
            return True
        if "pred_probs" in needs and not self.config.pred_probs_file:
            return True
        why = "pred_probs were supplied" if "pred_probs" in needs else "none needs pred_probs"
        self.note("embed", "skipped: no selected detector needs embeddings, a kNN graph or CLIP, "
                           f"and {why}; the 2-D map is left empty")
        return False

    def knn_needed(self, needs: frozenset[str], embeddings: np.ndarray | None) -> bool:
        if "knn" in needs and embeddings is not None:
            return True
        if embeddings is not None:
            self.note("knn", "skipped: no selected detector needs the kNN graph")
        return False

    def embed(self, table: "SampleTable") -> tuple[np.ndarray, "SampleTable"]:
        if self.config.embeddings_file:
            from audit.supplied import load_embeddings

            vectors = table.audited_rows(load_embeddings(self.config.embeddings_file,
                                                         table.total))
            self.model_ids["embedder"] = f"supplied:{Path(self.config.embeddings_file).name}"
            self.clip = self.clip_for_detectors(table, None, vectors)
            return vectors, table
        return self.embed_images(table)

    def embed_context(self):
        from audit.embedders import EmbedContext

        return EmbedContext(Path(self.settings.data_home), self.settings.max_image_pixels,
                            self.config.batch_size, self.config.loader_workers, self.device,
                            self.config.seed, self.config.folds)

    def embed_images(self, table: "SampleTable") -> tuple[np.ndarray, "SampleTable"]:
        from audit.embedders import ImageRows, make_embedder

        embedder, note = make_embedder(self.config.embedder, self.embed_context(),
                                       self.config.clip_model, self.config.clip_pretrained)
        if note:
            self.note("clip", note)
        self.summary["embedder"] = {"name": embedder.name, "model_id": embedder.model_id,
                                    "asked_for": self.config.embedder, "why": note}
        self.log(f"embedding {table.n:,} images with {embedder.model_id}")
        rows = ImageRows(table.paths, table.sha256, table.labels)
        result = self.executor.embed(embedder, rows, self.stage_progress("embed"))
        if self.config.embedder == "auto" and embedder.name != "pixels":
            embedder, result = self.settle_auto(embedder, result, rows)
        self.model_ids["embedder"] = result.model_id
        table = self.drop_failed(table, result.failed)
        vectors = result.vectors[table.kept_rows]
        table = table.reindexed()
        self.clip = self.clip_for_detectors(table, getattr(embedder, "clip", None), vectors)
        return vectors, table

    @contextlib.contextmanager
    def config_executor(self) -> Iterator[None]:
        """``self.executor`` is the config's for the length of the block (a Ray session is
        started or joined first, timed as the ``executor`` stage, and left at the end); the
        run records which executor ran and what it did."""
        if self.config.executor != "local":
            self.log(f"joining Ray ({self.config.ray_address or 'a local instance'})")
        with contextlib.ExitStack() as stack:
            with self.stage("executor"):
                self.executor = stack.enter_context(executor_for(
                    self.config.executor, self.config.ray_address, self.embedder_spec,
                    self._should_cancel))
            self.summary["executor"] = self.executor.facts
            try:
                yield
            finally:
                ran_locally = self.executor.facts.get("ran_locally", {})
                self.executor = LocalExecutor(self._should_cancel)
        for name, why in ran_locally.items():
            self.note("executor", f"{name} ran in the audit's process, not on Ray: it {why}")

    def embedder_spec(self, name: str):
        """What a Ray worker needs to build the embedder ``name`` itself."""
        from audit.ray_executor import EmbedderSpec

        context = dataclasses.replace(self.embed_context(),
                                      data_home=Path(self.settings.data_home).resolve())
        return EmbedderSpec(name, context, self.config.clip_model, self.config.clip_pretrained,
                            self.config.device)

    def settle_auto(self, pretrained, result, rows) -> tuple:
        """``auto``'s last step: keep the pretrained vectors unless the pixels explain the
        given labels clearly better (audit/embedders/auto_choice.py)."""
        from audit.embedders.auto_choice import compare_label_agreement
        from audit.embedders.pixels import PixelEmbedder

        self.check_cancel()
        self.log("embedding the same images as pixels, to compare")
        pixel_embedder = PixelEmbedder(self.embed_context())
        pixels = self.executor.embed(pixel_embedder, rows,
                                     self.extra_embedding_progress("pixels"))
        usable = np.array([r not in result.failed and r not in pixels.failed
                           for r in range(len(rows.paths))])
        agreement = compare_label_agreement(result.vectors[usable], pixels.vectors[usable],
                                            rows.labels[usable], self.config.seed)
        summary = self.summary["embedder"]
        summary["label_agreement"] = agreement.as_dict(pretrained.name)
        if not agreement.prefers_pixels:
            return pretrained, result
        why = (f"pixels chosen over {pretrained.name}: nearest neighbours match the given label "
               f"for {agreement.pixels:.1%} of samples against {agreement.pretrained:.1%} "
               f"(z = {agreement.z:.1f})")
        self.note("embedding choice", why)
        summary.update(name="pixels", model_id=pixels.model_id,
                       why="; ".join(filter(None, [summary["why"], why])))
        return pixel_embedder, pixels

    def drop_failed(self, table: "SampleTable", failed: dict[int, str]) -> "SampleTable":
        if failed:
            first = next(iter(failed.values()))
            self.note("embedding", f"{len(failed)} image(s) failed to decode while embedding and "
                                   f"are not scored; first: {first}")
        return table.without(sorted(failed))

    def clip_for_detectors(self, table: "SampleTable", embedder_clip, vectors: np.ndarray):
        """A pretrained CLIP with image embeddings for the detectors that need one, or None."""
        if not any("clip" in registry()[n].requires for n in self.config.detectors):
            return None
        clip = embedder_clip
        if clip is None and "clip" not in self.notes:
            clip = self.load_clip_quietly()
        if clip is None:
            return None
        if not clip.pretrained:
            self.note("clip", f"{clip.model_id} has random weights, not pretrained ones")
            return None
        clip.image_embeddings = vectors if clip is embedder_clip else self.clip_images(clip, table)
        self.model_ids["clip"] = clip.model_id
        return clip

    def clip_images(self, clip, table: "SampleTable") -> np.ndarray:
        """CLIP image vectors of the usable rows when the run's embedder was another one,
        embedded by the run's executor."""
        from audit.embedders import ImageRows
        from audit.embedders.clip import ClipEmbedder

        self.log(f"embedding {table.n:,} images with {clip.model_id} for CLIP detectors")
        rows = ImageRows(table.paths, table.sha256, table.labels)
        embedder = ClipEmbedder(clip, self.embed_context())
        return self.executor.embed(embedder, rows, self.extra_embedding_progress("CLIP")).vectors

    def load_clip_quietly(self):
        from audit.embedders.clip import load_clip
        from audit.errors import ModelUnavailableError

        try:
            return load_clip(self.config.clip_model, self.config.clip_pretrained, self.device)
        except ModelUnavailableError as exc:
            self.note("clip", str(exc))
            return None

    def pred_probs(self, table: "SampleTable", embeddings: np.ndarray | None) -> np.ndarray | None:
        if self.config.pred_probs_file:
            from audit.supplied import check_label_agreement, load_pred_probs

            path = self.config.pred_probs_file
            probs = table.audited_rows(load_pred_probs(path, table.total,
                                                       len(table.class_names)))
            check_label_agreement(path, probs, table.labels)
            self.model_ids["pred_probs"] = f"supplied:{Path(path).name}"
            self.summary["pred_probs"] = probe_summary(probs, table.labels, "supplied")
            return probs
        return self.cross_fit(table, embeddings)

    def cross_fit(self, table: "SampleTable", embeddings: np.ndarray) -> np.ndarray | None:
        from audit.principal import principal_axes
        from audit.probe import cross_fit_probe

        self.report("probe", 0.0, "cross-fitting the probe")
        self.axes = principal_axes(embeddings)      # kept for the outlier detector
        try:
            result = cross_fit_probe(embeddings, table.labels, len(table.class_names),
                                     self.config.folds, self.config.seed, self.device,
                                     self.config.probe,
                                     trainable=self.corrections.trainable(table.sample_ids),
                                     executor=self.executor, axes=self.axes)
        except InputError as exc:
            self.note("pred_probs", str(exc))
            return None
        if result.notes:
            self.note("probe", "; ".join(result.notes))
        self.folds = result.folds
        self.model_ids["pred_probs"] = f"{self.config.probe}-probe-{result.n_folds}fold"
        self.summary["pred_probs"] = probe_summary(
            result.pred_probs, table.labels,
            f"cross-fitted {self.config.probe} probe, {result.n_folds} folds")
        return result.pred_probs

    def knn(self, embeddings: np.ndarray):
        from audit.knn import build_knn_graph

        self.report("knn", 0.0, "building the neighbour graph")
        try:
            graph = build_knn_graph(embeddings, self.config.k, self.device, seed=self.config.seed,
                                    executor=self.executor)
        except InputError as exc:
            self.note("knn", str(exc))
            return None
        self.log(f"kNN graph: k={graph.indices.shape[1]}, "
                 f"{'exact' if graph.exact else 'approximate (IVF)'} search")
        return graph

    def run_detectors(self, inputs) -> None:
        order = detector_order(self.config.detectors)
        read_later = details_read_later(order)
        self.check_cancel()
        for position, name in enumerate(order):
            self.report("detectors", position / len(order), f"running {name}")
            with self.stage(f"detector:{name}"), cyclic_gc_paused():
                progress = self.detector_progress(name, position, len(order))
                frame = self.run_one(name, inputs, progress)
                if frame is not None:
                    if name in read_later:
                        inputs.prior_scores[name] = with_details_cut(frame, read_later[name])
                    run_store.write_scores(self.store, self.run_id, scores_for_store(name, frame))
                    self.scored.append(name)

    def detector_progress(self, name: str, position: int, total: int) -> Progress:
        def report(fraction: float, message: str) -> None:
            self.report("detectors", (position + fraction) / total, f"{name}: {message}")
        return report

    def run_one(self, name: str, inputs, progress: Progress) -> pd.DataFrame | None:
        detector = registry()[name]()
        reason = detector.missing_requirements(inputs)
        if reason is not None:
            self.skip(name, reason)
            return None
        try:
            frame = detector.run(inputs, self.detector_params(name), progress)
            check_result(name, frame, inputs)
            if detector.suggests_labels:
                frame = without_trusted_issues(frame, inputs.trusted)
            if detector.summary:
                self.summary[name] = detector.summary
        except (Cancelled, KeyboardInterrupt):
            raise
        except Exception as exc:  # one failing detector is recorded; the rest go on
            self.skip(name, f"failed: {type(exc).__name__}: {exc}")
            self.log(traceback.format_exc(limit=-3))
            return None
        return frame

    def detector_params(self, name: str) -> dict:
        """The config's parameters for a detector (its class fills in the rest)."""
        seeds = {"seeds": self.config.seeds} if "seeds" in registry()[name].params else {}
        return {**seeds, **(self.config.params.get(name) or {})}

    def finish(self, status: str, error: str | None = None) -> None:
        run_store.finish_run(self.store, self.run_id, status, model_ids=self.model_ids,
                             versions=software_versions(), code_version=audit.__version__,
                             timings=self.timings, skipped=self.skipped, notes=self.notes,
                             summary={**self.summary, "detectors": self.detector_facts()},
                             error=error)
        self.log(f"run {self.run_id} {status}" + (f": {error}" if error else ""))

    def detector_facts(self) -> dict[str, dict]:
        """What each detector that wrote scores declares (family, label suggestions ...), so
        the export and the pages read the run's facts instead of naming detectors."""
        return {name: run_store.recorded_facts(registry()[name].facts()) for name in self.scored}


def details_read_later(order: list[str]) -> dict[str, set[str]]:
    """Each detector whose result a later one reads (``after``) -> the detail keys read."""
    read: dict[str, set[str]] = {}
    for name in order:
        for dependency in registry()[name].after:
            read.setdefault(dependency, set()).update(registry()[name].reads_details)
    return read


def with_details_cut(frame: pd.DataFrame, keys: set[str]) -> pd.DataFrame:
    """A detector's result as later detectors see it: details cut to ``keys`` (None when none
    is left), so the plan does not hold every sample's full details in memory."""
    return frame.assign(details=[({key: d[key] for key in keys if key in d} or None) if d
                                 else None for d in frame["details"]])


def without_trusted_issues(frame: pd.DataFrame, trusted: np.ndarray | None) -> pd.DataFrame:
    """A label check's result with the samples a person kept not counted as issues (their
    scores stay as measured; their details say why)."""
    if trusted is None:
        return frame
    cleared = trusted & frame["is_issue"].to_numpy(dtype=bool)
    if not cleared.any():
        return frame
    details = [_trusted_details(d or {}) if c else d for d, c in zip(frame["details"], cleared)]
    return frame.assign(is_issue=frame["is_issue"].to_numpy(dtype=bool) & ~cleared,
                        details=details)


def _trusted_details(details: dict) -> dict:
    measured = details.get("reason", "")
    return {**details, "trusted": True,
            "reason": f"kept by a reviewer, so not an issue (measured: {measured})"}


def probe_summary(pred_probs: np.ndarray, labels: np.ndarray, source: str) -> dict:
    """How well out-of-sample pred_probs explain the given labels: their argmax's agreement
    (the probe's cross-validated accuracy against the labels as given, noise included)."""
    agreement = float((pred_probs.argmax(axis=1) == labels).mean()) if len(labels) else 0.0
    return {"source": source, "agreement_with_labels": round(agreement, 4)}


def required_inputs(names: list[str]) -> frozenset[str]:
    """What the selected detectors require between them (a detector listed in another's
    ``after`` runs only when selected, so its needs count only then)."""
    known = registry()
    return frozenset().union(*(known[name].requires for name in names))


def detector_order(names: list[str]) -> list[str]:
    """The selected detectors, each after those it reads (``after``), otherwise by name."""
    known, ordered, visiting = registry(), [], set()

    def visit(name: str) -> None:
        if name in ordered:
            return
        if name in visiting:
            raise ConfigError(f"detectors {sorted(visiting)} depend on each other in a cycle")
        visiting.add(name)
        for dependency in known[name].after:
            if dependency in names:
                visit(dependency)
        visiting.discard(name)
        ordered.append(name)

    for name in sorted(names):
        visit(name)
    return ordered


def check_result(name: str, frame: pd.DataFrame, inputs) -> None:
    """A detector's rows must be one per sample, scores in [0, 1], in the inputs' order."""
    if len(frame) != inputs.n or not (frame["sample_id"].to_numpy(dtype=object)
                                      == np.asarray(inputs.sample_ids, dtype=object)).all():
        raise ValueError(f"{name} returned rows that are not one per sample in input order")
    scores = frame["score"].to_numpy(dtype=np.float64)
    if not np.all((scores >= 0) & (scores <= 1)):
        raise ValueError(f"{name} returned scores outside [0, 1]")


def map_positions(embeddings: np.ndarray | None, n: int, seed: int) -> np.ndarray:
    """Each sample's 2-D map position (``audit.two_d_map``), NaN without embeddings."""
    return two_d_map(embeddings, seed) if embeddings is not None else np.full((n, 2), np.nan)
