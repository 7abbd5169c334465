"""Engine speed: the audit plan's compute vs cleanlab's Datalab on the same arrays.

Synthetic data: n examples, 512-d L2-normalised embeddings with a low intrinsic dimension (like
real image embeddings: 10 classes, each a mixture of sub-clusters in a 64-d latent space, mapped
to 512-d plus noise) and 5% of labels flipped. The embeddings are given (no images), so Sieve's
plan runs: load samples -> supplied embeddings -> cross-fitted probe -> kNN graph -> every
registered detector that needs no pixels, CLIP or captions -> scores written to DuckDB.
Datalab gets the same embeddings as ``features`` and Sieve's own out-of-sample pred_probs.
Datalab needs cleanlab's optional ``datasets`` dependency; where it is missing, the cleanlab
functions behind its default label and outlier checks run instead (``find_label_issues``,
``get_label_quality_scores``, ``OutOfDistribution().fit_score(features=...)``, which builds the
same brute-force kNN graph) and the table says so.

Each side runs in its own child process, which reports its wall time (compute only: data
generation, imports and the dataset insert are outside the clock) and its peak resident memory
(``audit.processes.peak_rss_mb``: the kernel's high-water mark of the child's own program,
``VmHWM``, including ~0.5 GB of imports; ``ru_maxrss``, used before 2026-11-30, also counted
the parent's peak at the fork, about 8.4 GB at 1M from generating the synthetic data).

    python -m bench.bench_engine_speed --n 100000              # Sieve and Datalab side by side
    python -m bench.bench_engine_speed --n 1000000 --no-datalab
    python -m bench.bench_engine_speed --demo                  # full demo audit, images included
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from audit.processes import peak_rss_mb
from bench import markdown_table

FLIP_RATE = 0.05
EXCLUDED_REQUIREMENTS = {"pixels", "clip", "captions"}


def synthetic(n: int, dims: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings (float32, normalised), given labels and the flip mask."""
    rng = np.random.default_rng(seed)
    latent, subclusters = 64, 20
    truth = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, latent))
    subs = rng.normal(size=(classes, subclusters, latent)) * 0.7
    z = centres[truth] + subs[truth, rng.integers(0, subclusters, n)]
    z += rng.normal(size=(n, latent)).astype(np.float32) * 0.9
    vectors = z.astype(np.float32) @ (rng.normal(size=(latent, dims)) / np.sqrt(latent)).astype(np.float32)
    vectors += rng.normal(size=(n, dims)).astype(np.float32) * 0.1
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    flipped = rng.random(n) < FLIP_RATE
    given = truth.copy()
    given[flipped] = (truth[flipped] + rng.integers(1, classes, flipped.sum())) % classes
    return vectors, given, flipped


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def precision_recall(flags: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    hits = int((flags & truth).sum())
    precision, recall = hits / max(int(flags.sum()), 1), hits / max(int(truth.sum()), 1)
    return precision, recall, 2 * precision * recall / max(precision + recall, 1e-12)


# --- children ------------------------------------------------------------------------------

def sieve_child(workdir: Path, save_pred_probs: bool) -> dict:
    from audit.config import registry
    from audit.plan import run_audit
    from audit.probe import cross_fit_probe
    from audit.settings import load_settings
    from audit.store import Store, runs
    from audit.store.datasets import create_dataset

    labels = np.load(workdir / "labels.npy")
    settings = load_settings(toml_path=workdir / "absent.toml",
                             env={"AUDIT_DATA_HOME": str(workdir / "data")})
    store = Store.from_settings(settings)
    dataset_id = create_dataset(store, "bench", str(workdir), "manifest", str(workdir),
                                sample_frame(labels))
    detectors = sorted(n for n, d in registry().items() if not set(d.requires) & EXCLUDED_REQUIREMENTS)
    before = current_rss_mb()
    started = time.perf_counter()
    run_id = run_audit(store, settings, dataset_id, {
        "detectors": detectors, "embeddings_file": str(workdir / "embeddings.npy"),
        "device": "cpu", "loader_workers": 0})
    wall, peak = time.perf_counter() - started, peak_rss_mb()
    run = runs.get_run(store, run_id)
    scores = runs.scores_frame(store, run_id, ["label_issue", "overall"])
    flags = {d: f.sort_values("sample_id")["is_issue"].to_numpy()
             for d, f in scores.groupby("detector")}
    if save_pred_probs:        # for the cleanlab side, after Sieve's clock and memory were read
        probs = cross_fit_probe(np.load(workdir / "embeddings.npy"), labels, int(labels.max()) + 1)
        np.save(workdir / "pred_probs.npy", probs.pred_probs)
    return {"wall_s": wall, "peak_mb": peak, "rss_before_mb": before, "status": run["status"],
            "detectors": detectors, "timings": json.loads(run["timings"]),
            "peak_rss_mb_after_stage": json.loads(run["summary"]).get("peak_rss_mb", {}),
            "skipped": json.loads(run["skipped"]),
            "flags": {d: np.flatnonzero(f).tolist() for d, f in flags.items()}}


def sample_frame(labels: np.ndarray) -> pd.DataFrame:
    n = len(labels)
    ids = [f"s{i:07d}" for i in range(n)]     # zero-padded: sorting ids keeps source order
    return pd.DataFrame({
        "sample_id": ids, "row_index": np.arange(n), "split": np.where(np.arange(n) % 10, "train", "test"),
        "path": [f"{i}.png" for i in ids], "label": [f"class{c}" for c in labels], "caption": None,
        "width": 32, "height": 32, "file_size": 0, "sha256": [f"{i:064x}" for i in range(n)],
        "load_error": None, "extra": None})


def datalab_child(workdir: Path) -> dict:
    """Datalab.find_issues when cleanlab's Datalab extra is installed, else the cleanlab
    functions its default label and outlier checks run (kNN on the features included)."""
    features = np.load(workdir / "embeddings.npy")
    labels = np.load(workdir / "labels.npy")
    pred_probs = np.load(workdir / "pred_probs.npy")
    before = current_rss_mb()
    started = time.perf_counter()
    try:
        result = _datalab(features, labels, pred_probs)
    except ImportError as exc:          # Datalab needs the optional `datasets` package
        result = _cleanlab_functions(features, labels, pred_probs)
        result["note"] = f"Datalab unavailable ({str(exc).splitlines()[0][:80]})"
    result.update(wall_s=time.perf_counter() - started, peak_mb=peak_rss_mb(),
                  rss_before_mb=before)
    return result


def _datalab(features: np.ndarray, labels: np.ndarray, pred_probs: np.ndarray) -> dict:
    from cleanlab import Datalab

    lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
    lab.find_issues(features=features, pred_probs=pred_probs)
    return {"engine": "cleanlab Datalab.find_issues",
            "detectors": lab.get_issue_summary()["issue_type"].tolist(),
            "flags": {"label": np.flatnonzero(lab.get_issues("label")["is_label_issue"]).tolist()}}


def _cleanlab_functions(features: np.ndarray, labels: np.ndarray, pred_probs: np.ndarray) -> dict:
    from cleanlab.filter import find_label_issues
    from cleanlab.outlier import OutOfDistribution
    from cleanlab.rank import get_label_quality_scores

    OutOfDistribution().fit_score(features=features)
    get_label_quality_scores(labels, pred_probs)
    flags = find_label_issues(labels, pred_probs)
    return {"engine": "cleanlab find_label_issues + OutOfDistribution(features)",
            "detectors": ["label", "outlier"], "flags": {"label": np.flatnonzero(flags).tolist()}}


def demo_audit() -> None:
    """The full plan on the demo (images decoded, embedded, every detector), cold then warm cache."""
    from audit.ingest import ingest
    from audit.demo import generate_demo
    from audit.plan import run_audit
    from audit.settings import load_settings
    from audit.store import Store, runs

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(toml_path=Path(tmp) / "absent.toml",
                                 env={"AUDIT_DATA_HOME": str(Path(tmp) / "data")})
        store = Store.from_settings(settings)
        manifest, _ = generate_demo(Path(tmp) / "demo", seed=0)
        dataset_id = ingest(store, manifest, settings)
        rows = []
        for cache in ("cold", "warm"):
            started = time.perf_counter()
            run = runs.get_run(store, run_audit(store, settings, dataset_id, {}))
            rows.append({"embedding cache": cache, "wall s": round(time.perf_counter() - started, 1),
                         "embedder": json.loads(run["model_ids"])["embedder"],
                         **{k: v for k, v in json.loads(run["timings"]).items()
                            if not k.startswith("detector:")}})
    print(markdown_table(pd.DataFrame(rows), digits=1))


def run_child(kind: str, workdir: Path, *extra: str) -> dict:
    command = [sys.executable, "-m", "bench.bench_engine_speed", "--child", kind,
               "--workdir", str(workdir), *extra]
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the table -----------------------------------------------------------------------------

def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
                 platform.processor())
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, load avg {os.getloadavg()[0]:.1f}"


def row(name: str, result: dict, flipped: np.ndarray, flag_key: str) -> dict:
    flags = np.zeros(len(flipped), dtype=bool)
    flags[result["flags"].get(flag_key, [])] = True
    precision, recall, f1 = precision_recall(flags, flipped)
    return {"engine": name, "wall s": round(result["wall_s"], 1),
            "peak RSS MB": round(result["peak_mb"]), "RSS before MB": round(result["rss_before_mb"]),
            "checks": len(result["detectors"]), "label flags P/R/F1": f"{precision:.2f}/{recall:.2f}/{f1:.2f}"}


def main() -> None:
    parser = argparse.ArgumentParser(description="Audit plan speed vs cleanlab Datalab")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-datalab", action="store_true", help="time Sieve alone")
    parser.add_argument("--demo", action="store_true",
                        help="instead: the full audit of the demo dataset, cold and warm cache")
    parser.add_argument("--child", choices=["sieve", "datalab"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--save-pred-probs", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = (sieve_child(args.workdir, args.save_pred_probs) if args.child == "sieve"
                  else datalab_child(args.workdir))
        print(json.dumps(result))
        return
    print(f"{datetime.datetime.now():%Y-%m-%d %H:%M}  {machine()}")
    print(f"command: python -m bench.bench_engine_speed {' '.join(sys.argv[1:])}", flush=True)
    if args.demo:
        demo_audit()
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        vectors, labels, flipped = synthetic(args.n, args.dims, args.classes, args.seed)
        np.save(workdir / "embeddings.npy", vectors)
        np.save(workdir / "labels.npy", labels)
        del vectors
        sieve = run_child("sieve", workdir, *([] if args.no_datalab else ["--save-pred-probs"]))
        rows = [row("Sieve plan (label_issue flags)", sieve, flipped, "label_issue"),
                row("Sieve plan (overall flags)", sieve, flipped, "overall")]
        if not args.no_datalab:
            cleanlab = run_child("datalab", workdir)
            rows.append(row(cleanlab["engine"], cleanlab, flipped, "label"))
    print(f"\nn={args.n:,}, d={args.dims}, classes={args.classes}, {FLIP_RATE:.0%} labels flipped")
    print(markdown_table(pd.DataFrame(rows)))
    if not args.no_datalab and cleanlab.get("note"):
        print(f"\ncleanlab: {cleanlab['note']}")
    print(f"\nSieve detectors: {', '.join(sieve['detectors'])}; skipped: {sieve['skipped'] or 'none'}")
    print("Sieve stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in sieve["timings"].items()))
    print("Sieve peak memory so far at the end of each stage (MB): " + ", ".join(
        f"{k} {v:,}" for k, v in sieve["peak_rss_mb_after_stage"].items()))


if __name__ == "__main__":
    main()
