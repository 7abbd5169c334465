"""Offline embedders compared: imagenet (EfficientNet-Lite0) vs pixels (PCA) vs the CNN.

For each dataset the images are embedded from files, then the run's own probe (5-fold
cross-fitted logistic regression) gives out-of-sample pred_probs. Reported per embedder:
probe accuracy against the given labels (and the clean ones where known), label-error
detection of cleanlab's ``find_label_issues`` on those pred_probs (precision, recall, F1), AUROC
of the self-confidence and of the kNN label agreement (k=10), and the embedding time.

    python -m bench.bench_embedders                       # demo + CIFAR-10N aggre + random1
    python -m bench.bench_embedders --datasets demo
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.metrics import roc_auc_score

from audit.demo import generate_demo
from bench import markdown_table
from audit.embedders import EmbedContext, ImageRows, make_embedder
from audit.knn import build_knn_graph
from audit.probe import cross_fit_probe

CIFAR = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "cifar10n-10k"


def file_rows(paths: list[Path], labels: np.ndarray) -> ImageRows:
    hashes = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    return ImageRows(paths, hashes, labels)


def demo_case(workdir: Path) -> tuple[ImageRows, np.ndarray, np.ndarray | None]:
    manifest, truth_path = generate_demo(workdir / "demo", seed=0)
    frame = pd.read_csv(manifest)
    truth = json.loads(truth_path.read_text())
    frame = frame[~frame["id"].isin(truth["unreadable"])].reset_index(drop=True)
    names = sorted(frame["label"].unique())
    labels = frame["label"].map({n: i for i, n in enumerate(names)}).to_numpy()
    is_error = frame["id"].isin(list(truth["label_flip"])).to_numpy()
    paths = [manifest.parent / p for p in frame["path"]]
    return file_rows(paths, labels), is_error, None


def cifar_cases(workdir: Path) -> dict[str, tuple[ImageRows, np.ndarray, np.ndarray]]:
    data = np.load(CIFAR / "cifar10n_10k.npz", allow_pickle=False)
    folder = workdir / "cifar"
    folder.mkdir()
    paths = []
    for i, pixels in enumerate(data["images"]):
        paths.append(folder / f"{i:05d}.png")
        Image.fromarray(pixels).save(paths[-1])
    clean = data["clean_label"].astype(np.int64)
    cases = {}
    for column in ("aggre_label", "random_label1"):
        given = data[column].astype(np.int64)
        cases[f"cifar10n {column}"] = (file_rows(paths, given), given != clean, clean)
    return cases


def evaluate(vectors: np.ndarray, rows: ImageRows, is_error: np.ndarray,
             clean: np.ndarray | None) -> dict:
    from cleanlab.filter import find_label_issues

    labels = rows.labels
    probe = cross_fit_probe(vectors, labels, int(labels.max()) + 1, folds=5, seed=0)
    flagged = find_label_issues(labels, probe.pred_probs)
    graph = build_knn_graph(vectors, 10)
    agreement = (labels[graph.indices] == labels[:, None]).mean(axis=1)
    self_confidence = probe.pred_probs[np.arange(len(labels)), labels]
    tp = int((flagged & is_error).sum())
    precision, recall = tp / max(flagged.sum(), 1), tp / max(is_error.sum(), 1)
    return {
        "probe acc (given)": (probe.pred_probs.argmax(1) == labels).mean(),
        "probe acc (clean)": np.nan if clean is None else (probe.pred_probs.argmax(1) == clean).mean(),
        "precision": precision, "recall": recall,
        "F1": 2 * precision * recall / max(precision + recall, 1e-12),
        "AUROC self-conf": roc_auc_score(is_error, -self_confidence),
        "AUROC kNN agree": roc_auc_score(is_error, -agreement),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="demo,cifar", help="demo and/or cifar")
    parser.add_argument("--embedders", default="imagenet,pixels,cnn",
                        help="comma-separated embedders to compare")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cases = {}
        if "demo" in args.datasets:
            cases["demo"] = demo_case(work)
        if "cifar" in args.datasets and CIFAR.is_dir():
            cases.update(cifar_cases(work))
        for case, (rows, is_error, clean) in cases.items():
            for name in args.embedders.split(","):
                context = EmbedContext(work / f"data-{case}-{name}", 100_000_000, 256, 0, "cpu", 0, 5)
                embedder, _ = make_embedder(name, context)
                started = time.perf_counter()
                vectors = embedder.embed(rows).vectors
                seconds = time.perf_counter() - started
                metrics = evaluate(vectors, rows, is_error, clean)
                results.append({"dataset": case, "embedder": name, **metrics, "embed s": seconds,
                                "img/s": len(rows.paths) / seconds})
                print(pd.DataFrame(results[-1:]).round(3).to_string(index=False), flush=True)
    print()
    print(markdown_table(pd.DataFrame(results)))


if __name__ == "__main__":
    main()
