"""kNN graph recall: Sieve's approximate cluster search against brute force.

Recall@10 of ``audit.knn.build_knn_graph``'s approximate search (the one used beyond
``EXACT_LIMIT`` samples) over ``--queries`` sampled rows, against FAISS's exact inner-product
search, on:

1. the synthetic embeddings of bench/bench_engine_speed.py (low intrinsic dimension), ``--n``
   rows;
2. CIFAR-10N's 10,000 images embedded by the ``imagenet`` embedder (real image features,
   1,280-d; ``../shared/datasets/cifar10n-10k``, skipped when absent), forced through the
   approximate search with ``exact_limit=1000``. Beside recall, the AUROC of knn_label's
   neighbour vote (class-frequency prior, no pred_probs) for the wrong ``aggre_label`` labels,
   on the exact graph and on the approximate one.

    python -m bench.bench_knn_recall [--n 200000] [--queries 1000] [--cache bench/out/cache]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from audit.detectors.knn_label import neighbor_votes, prior_belief, smoothed_belief
from audit.knn import build_knn_graph
from bench import markdown_table
from bench.bench_engine_speed import synthetic
from bench.bench_quality import CIFAR_PATH, cifar_embeddings

K = 10


def recall_at_k(vectors: np.ndarray, indices: np.ndarray, queries: int, seed: int = 1) -> float:
    """Mean share of each sampled row's true K nearest neighbours (self excluded) found."""
    rows = np.random.default_rng(seed).choice(len(vectors), min(queries, len(vectors)),
                                              replace=False)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    truth = index.search(vectors[rows], K + 1)[1]
    return float(np.mean([len(set(t[t != r][:K]) & set(indices[r][:K])) / K
                          for r, t in zip(rows, truth)]))


def vote_auroc(labels: np.ndarray, wrong: np.ndarray, graph) -> float:
    votes = neighbor_votes(labels, graph.indices, graph.distances, int(labels.max()) + 1)
    belief = smoothed_belief(votes, prior_belief(labels, int(labels.max()) + 1, None), 1.0)
    return float(roc_auc_score(wrong, -belief))


def timed_graph(vectors: np.ndarray, exact_limit: int):
    started = time.perf_counter()
    graph = build_knn_graph(vectors, K, exact_limit=exact_limit)
    return graph, time.perf_counter() - started


def synthetic_row(n: int, queries: int) -> dict:
    vectors, _, _ = synthetic(n, 512, 10, 0)
    graph, seconds = timed_graph(vectors, exact_limit=min(n - 1, 20_000))
    return {"data": f"synthetic {n:,} x 512",
            "search": "exact" if graph.exact else "approximate",
            "recall@10": recall_at_k(vectors, graph.indices, queries), "graph s": seconds,
            "knn_label vote AUROC": "-"}


def cifar_rows(queries: int, cache: Path | None) -> list[dict]:
    data = dict(np.load(CIFAR_PATH))
    vectors = np.ascontiguousarray(cifar_embeddings(data, "aggre_label", "imagenet", cache),
                                   dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = data["aggre_label"].astype(np.int64)
    wrong = labels != data["clean_label"]
    rows = []
    for search, limit in (("exact", len(vectors)), ("approximate (forced)", 1000)):
        graph, seconds = timed_graph(vectors, limit)
        rows.append({"data": f"CIFAR-10N 10,000 x {vectors.shape[1]} (imagenet)",
                     "search": search, "recall@10": recall_at_k(vectors, graph.indices, queries),
                     "graph s": seconds,
                     "knn_label vote AUROC": round(vote_auroc(labels, wrong, graph), 4)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--cache", type=Path, default=Path("bench/out/cache"))
    args = parser.parse_args()
    print(f"{datetime.datetime.now():%Y-%m-%d %H:%M}  "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load avg {os.getloadavg()[0]:.1f}")
    rows = [synthetic_row(args.n, args.queries)]
    if Path(CIFAR_PATH).exists():
        rows += cifar_rows(args.queries, args.cache)
    else:
        print(f"CIFAR-10N skipped: {CIFAR_PATH} is absent")
    print(markdown_table(pd.DataFrame(rows)))


if __name__ == "__main__":
    main()
