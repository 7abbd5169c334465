"""Small real inputs for detector tests: labelled Gaussian blobs and DetectorInputs around them."""

from __future__ import annotations

import numpy as np

from audit.detectors.base import DetectorInputs
from audit.embedders import l2_normalise
from audit.knn import build_knn_graph


def blobs(per_class: int = 60, classes: int = 3, dim: int = 16, spread: float = 0.35,
          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised points around ``classes`` random unit centres, and their true labels."""
    rng = np.random.default_rng(seed)
    centres = l2_normalise(rng.normal(size=(classes, dim)))
    labels = np.repeat(np.arange(classes), per_class)
    points = centres[labels] + spread * rng.normal(size=(len(labels), dim)) / np.sqrt(dim)
    return l2_normalise(points), labels


def flip(labels: np.ndarray, count: int, classes: int,
         seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Labels with ``count`` random rows moved to another class, and those rows."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(labels), size=count, replace=False)
    noisy = labels.copy()
    noisy[rows] = (labels[rows] + rng.integers(1, classes, size=count)) % classes
    return noisy, np.sort(rows)


def make_inputs(labels: np.ndarray, embeddings: np.ndarray | None = None, k: int = 10,
                **extra) -> DetectorInputs:
    """DetectorInputs over the rows, with the real kNN graph when embeddings are given."""
    n = len(labels)
    classes = int(labels.max()) + 1
    fields = {"sample_ids": [f"s{i:03d}" for i in range(n)], "labels": labels,
              "class_names": [f"class{c}" for c in range(classes)],
              "splits": np.array(["train"] * n), "sha256": [f"h{i}" for i in range(n)],
              "widths": np.full(n, 32), "heights": np.full(n, 32), "embeddings": embeddings}
    if embeddings is not None:
        fields["knn"] = build_knn_graph(embeddings, k)
    return DetectorInputs(**{**fields, **extra})


def quiet(fraction: float, message: str) -> None:
    return None


def precision_recall(flags: np.ndarray, truth_rows: np.ndarray) -> tuple[float, float]:
    truth = np.zeros(len(flags), dtype=bool)
    truth[truth_rows] = True
    hits = int((flags & truth).sum())
    return hits / max(int(flags.sum()), 1), hits / len(truth_rows)
