"""What the ``ray`` executor costs against the local one, stage by stage: decode + embed, the
probe's cross-fitting folds, the kNN graph's cell searches and the detectors' tasks.

N synthetic PNGs (noisy colour squares of a few classes, written as real files) are ingested
into a temp store; then a whole audit (``run_audit`` with the ``outlier``, ``image_quality``,
``near_duplicate`` and ``training_dynamics`` detectors) runs per configuration: the local executor, and Ray on a local
instance limited to 1 CPU and to 2 CPUs. The default 24,000 images are above the kNN graph's
exact limit (20,000), so its approximate cell search runs, and on Ray as tasks. What is timed:

- ``Ray start`` / ``Ray stop``: ``ray.init(num_cpus=C, include_dashboard=False)`` and
  ``ray.shutdown()`` in this process, around each Ray configuration (the run joins that
  instance, so they are outside its stages);
- ``embed``, ``probe``, ``kNN``: the run's own stage timings (``runs.timings``). ``embed`` is
  decode + embed of every image (the embedding cache is emptied before each run, so every image
  is decoded) and the pixels PCA; ``probe`` the 5 cross-fitted folds of the default MLP probe;
  ``kNN`` the graph (k-means cells here, their searches as tasks); ``image_quality`` and
  ``near_duplicate`` the two detectors whose per-image work (one decode of each image,
  measured and hashed for both by whichever runs first) runs as a Ray Data pipeline; ``training_dynamics`` the detector whose heads (groups of seeds) run as tasks; for
  Ray each includes submitting, waiting and joining its tasks.

Each configuration runs the audit ``--repeats`` times in a row: on Ray the first run also starts
the Ray worker processes and their imports (cold), later ones reuse them (warm). Every run's
per-image arrays (from the embedding cache), flags and scores are checked against the local
executor's first run, so only comparable runs are reported.

    python -m bench.bench_ray_executor                                # 24,000 images, pixels
    python -m bench.bench_ray_executor --samples 2000 --embedder imagenet

Prints a table; writes the figures as JSON to
bench/out/bench_ray_executor_<N>[_<embedder>][_lw<loader workers>].json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from audit.embedders.cache import EmbeddingCache
from audit.ingest import ingest
from audit.plan import run_audit
from audit.settings import load_settings
from audit.store import Store
from audit.store import datasets as dataset_store
from audit.store import runs
from bench.figures import save_figures

CLASSES = {"red": (200, 40, 30), "green": (40, 170, 60), "blue": (30, 60, 210),
           "grey": (128, 128, 128)}
DETECTORS = ["outlier", "image_quality", "near_duplicate", "training_dynamics"]
TASKS = ("decode_files", "EncodeBatches", "fold_probabilities", "assign_cells", "search_cells",
         "measure_batch", "train_head_group")
SCORE_TOLERANCE = 1e-4       # as tests/audit/test_ray_executor.py
DEFAULT_LOADER_WORKERS = 2  # the loader_workers setting's default
VECTOR_TOLERANCE = 1e-5      # imagenet vectors: float rounding may differ between processes


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    figures = {"samples": args.samples, "embedder": args.embedder, "side": args.side,
               "repeats": args.repeats, "loader_workers": args.loader_workers,
               "audit": f"run_audit, detectors = {', '.join(DETECTORS)}", "machine": machine()}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_ray_executor_") as tmp:
        work = Path(tmp)
        dataset = build_dataset(work, args.samples, args.side, figures)
        config = {"embedder": args.embedder, "detectors": DETECTORS, "device": "cpu",
                  "loader_workers": args.loader_workers}
        figures["runs"] = measure_all(dataset, config, args)
    figures["benchmark_s"] = round(time.perf_counter() - started, 1)
    print_table(figures)
    save(figures)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.bench_ray_executor",
                                description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=24_000)
    p.add_argument("--embedder", default="pixels", choices=("pixels", "imagenet"))
    p.add_argument("--side", type=int, default=32, help="image side in pixels")
    p.add_argument("--cpus", default="1,2", help="Ray instances to time, by num_cpus")
    p.add_argument("--repeats", type=int, default=2, help="audits per configuration")
    p.add_argument("--no-worker-start", dest="worker_start", action="store_false",
                   help="skip timing a Ray worker's start and imports in a separate instance")
    p.add_argument("--loader-workers", type=int, default=DEFAULT_LOADER_WORKERS,
                   help="the run's loader_workers (DataLoader processes that decode on the "
                        "local executor; on Ray the cluster's CPUs decode)")
    return p


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


# --- the dataset ---------------------------------------------------------------------------

def build_dataset(work: Path, samples: int, side: int, figures: dict) -> dict:
    """``samples`` noisy colour squares in class folders, ingested into a store under work."""
    source = work / "images"
    started = time.perf_counter()
    write_images(source, samples, side)
    figures["write_images_s"] = round(time.perf_counter() - started, 1)
    home = work / "home"
    settings = load_settings(toml_path=work / "absent.toml", env={"AUDIT_DATA_HOME": str(home)})
    store = Store.from_settings(settings)
    started = time.perf_counter()
    dataset_id = ingest(store, source, settings, name="synthetic")
    figures["ingest_s"] = round(time.perf_counter() - started, 1)
    hashes = list(dataset_store.samples_frame(store, dataset_id)["sha256"])
    return {"home": home, "settings": settings, "store": store, "id": dataset_id,
            "hashes": hashes}


def write_images(root: Path, samples: int, side: int) -> None:
    rng = np.random.default_rng(0)
    names = list(CLASSES)
    for name in names:
        (root / name).mkdir(parents=True)
    for i in range(samples):
        name = names[i % len(names)]
        noise = rng.normal(0, 25, size=(side, side, 3))
        pixels = np.clip(np.array(CLASSES[name]) + noise, 0, 255).astype(np.uint8)
        pixels[rng.integers(0, side // 2):, rng.integers(0, side // 2):] //= 2  # a darker corner
        Image.fromarray(pixels, mode="RGB").save(root / name / f"{i:06d}.png")


# --- the measurements ----------------------------------------------------------------------

def measure_all(dataset: dict, config: dict, args) -> list[dict]:
    measured = [run_measured(dataset, config, "local", None, repeat)
                for repeat in range(args.repeats)]
    reference = measured[0]
    for cpus in (int(c) for c in args.cpus.split(",")):
        measured += measure_ray(dataset, config, cpus, args.repeats)
        if args.worker_start:
            measured[-args.repeats]["worker_start"] = measure_worker_start(cpus, args.embedder)
    for result in measured:
        check_same(reference, result, args.embedder)
    for result in measured:
        result.pop("arrays"), result.pop("scores")
    local_best = min(r["embed_s"] for r in measured if r["executor"] == "local")
    for result in measured:
        result["ratio_to_local"] = round(result["embed_s"] / local_best, 2)
    return measured


def measure_ray(dataset: dict, config: dict, cpus: int, repeats: int) -> list[dict]:
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="WARNING")
    start_ms = (time.perf_counter() - started) * 1000
    try:
        results = [run_measured(dataset, config, f"ray {cpus} CPU", cpus, repeat)
                   for repeat in range(repeats)]
    finally:
        started = time.perf_counter()
        ray.shutdown()
        stop_ms = (time.perf_counter() - started) * 1000
    results[0]["ray_start_ms"], results[0]["ray_stop_ms"] = round(start_ms), round(stop_ms)
    return results


def measure_worker_start(cpus: int, embedder: str) -> dict:
    """In a fresh Ray instance of its own: a no-op task's round trip (a worker process starts)
    and, in that worker, the import time of the embedder's module (what a cold shard pays)."""
    import ray

    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="WARNING")
    try:
        started = time.perf_counter()
        ray.get(ray.remote(noop).remote())
        first_task_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        ray.get(ray.remote(noop).remote())
        warm_task_ms = (time.perf_counter() - started) * 1000
        import_ms = ray.get(ray.remote(import_time_ms).remote(embedder))
    finally:
        ray.shutdown()
    return {"first_task_ms": round(first_task_ms), "warm_task_ms": round(warm_task_ms, 1),
            "embedder_import_ms": round(import_ms)}


def noop() -> None:
    return None


def import_time_ms(embedder: str) -> float:
    """In a Ray worker: how long importing the embedder's module (and torch with it) takes."""
    import importlib

    started = time.perf_counter()
    importlib.import_module(f"audit.embedders.{embedder}")
    return (time.perf_counter() - started) * 1000


def run_measured(dataset: dict, config: dict, label: str, cpus: int | None,
                 repeat: int) -> dict:
    """One audit with an empty embedding cache; its embed timing and what it computed."""
    shutil.rmtree(dataset["home"] / "embeddings", ignore_errors=True)
    executor = "local" if cpus is None else "ray"
    started = time.perf_counter()
    run_id = run_audit(dataset["store"], dataset["settings"], dataset["id"],
                       {**config, "executor": executor})
    run_s = time.perf_counter() - started
    run = runs.get_run(dataset["store"], run_id)
    assert run["status"] == "succeeded", run["error"]
    timings, summary = json.loads(run["timings"]), json.loads(run["summary"])
    embed_s = timings["embed"]
    result = {"executor": label, "run": "cold" if repeat == 0 else f"warm {repeat}",
              "embed_s": embed_s, "images_per_s": round(len(dataset["hashes"]) / embed_s, 1),
              "run_s": round(run_s, 2), "timings": timings,
              "executor_facts": summary["executor"],
              "arrays": cached_arrays(dataset), "scores": runs.scores_frame(dataset["store"],
                                                                            run_id)}
    print(f"{label:<10} {result['run']:<7} embed {embed_s:7.2f} s  run {run_s:7.2f} s  "
          f"load avg {os.getloadavg()[0]:.2f}  stages {timings}", flush=True)
    return result


def cached_arrays(dataset: dict) -> np.ndarray:
    """The per-image arrays the run computed (thumbnails for pixels, vectors for imagenet), in
    sample order, read back from the embedding cache it wrote."""
    models = sorted(p.name for p in (dataset["home"] / "embeddings").iterdir())
    assert len(models) == 1, models
    found, missing = EmbeddingCache(dataset["home"], models[0]).lookup(dataset["hashes"])
    assert not missing, f"{len(missing)} images were not embedded"
    return np.stack([found[h] for h in dataset["hashes"]])


def check_same(reference: dict, result: dict, embedder: str) -> None:
    """The run computed what the local executor's did: arrays, flags, scores."""
    name = f"{result['executor']} {result['run']}"
    if embedder == "pixels":
        assert np.array_equal(reference["arrays"], result["arrays"]), f"{name}: thumbnails differ"
    else:
        gap = np.abs(reference["arrays"] - result["arrays"]).max()
        assert gap <= VECTOR_TOLERANCE, f"{name}: vectors differ by {gap}"
    ours, theirs = reference["scores"], result["scores"]
    assert ours[["sample_id", "detector"]].equals(theirs[["sample_id", "detector"]]), name
    assert (ours["is_issue"] == theirs["is_issue"]).all(), f"{name}: flags differ"
    gap = np.abs(ours["score"] - theirs["score"]).max()
    assert gap <= SCORE_TOLERANCE, f"{name}: scores differ by {gap}"


# --- the report ----------------------------------------------------------------------------

def print_table(figures: dict) -> None:
    load = figures["machine"]["load_average_at_start"]
    print(f"\nRay vs local, stage by stage: {figures['samples']:,} {figures['side']}x"
          f"{figures['side']} PNGs, {figures['embedder']}, {figures['machine']['cpus']} CPUs, "
          f"load avg at start {load[0]} / {load[1]} / {load[2]}")
    print("| executor | run | Ray start ms | embed s | images/s | embed vs local | probe s | "
          "kNN s | image_quality s | near_duplicate s | training_dynamics s | tasks | whole run s "
          "| Ray stop ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in figures["runs"]:
        timings, tasks = r["timings"], r["executor_facts"].get("tasks")
        tasks = "-" if tasks is None else " / ".join(str(tasks.get(f, 0)) for f in TASKS)
        print(f"| {r['executor']} | {r['run']} | {r.get('ray_start_ms', '-')} | "
              f"{r['embed_s']:.2f} | {r['images_per_s']:,.0f} | {r['ratio_to_local']:.2f}x | "
              f"{timings['probe']:.2f} | {timings['knn']:.2f} | "
              f"{timings['detector:image_quality']:.2f} | {timings['detector:near_duplicate']:.2f}"
              f" | {timings['detector:training_dynamics']:.2f} | {tasks} | {r['run_s']:.1f} | {r.get('ray_stop_ms', '-')} |")
    print(f"tasks: {' / '.join(TASKS)}")
    for r in figures["runs"]:
        if "worker_start" in r:
            print(f"{r['executor']}, separate instance: {r['worker_start']}")
    print(f"(write images {figures['write_images_s']} s, ingest {figures['ingest_s']} s, "
          f"whole benchmark {figures['benchmark_s']} s)")


def save(figures: dict) -> None:
    suffix = "" if figures["embedder"] == "pixels" else f"_{figures['embedder']}"
    if figures["loader_workers"] != DEFAULT_LOADER_WORKERS:
        suffix += f"_lw{figures['loader_workers']}"
    save_figures(f"bench_ray_executor_{figures['samples']}{suffix}", figures)


if __name__ == "__main__":
    main()
