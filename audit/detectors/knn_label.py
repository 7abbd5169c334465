"""knn_label: how much the nearest neighbours' labels disagree with an example's given label.

Each of the k neighbours votes for its own label with weight ``exp(-d / t)`` (``d`` its cosine
distance, ``t`` the median neighbour distance of the dataset, so the weighting does not depend
on the embedder's scale). The score is the weighted share of votes for the given label; the
suggestion is the neighbours' weighted majority. An example is an issue when its given label
gets less than ``max_share`` of the votes and the majority is another class.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.detectors.base import Detector, DetectorInputs, Progress, register, result_frame

MAX_NEIGHBORS_SHOWN = 5


def neighbor_label_shares(labels: np.ndarray, indices: np.ndarray, distances: np.ndarray,
                          n_classes: int) -> np.ndarray:
    """(n, n_classes) distance-weighted share of each class among each example's neighbours."""
    scale = max(float(np.median(distances)), 1e-8)
    distances = distances.astype(np.float64)
    # Shares are ratios, so shifting each row by its nearest distance changes nothing but
    # keeps the nearest weight at 1 (no underflow when most distances are 0).
    weights = np.exp(-(distances - distances[:, :1]) / scale)
    n = len(indices)
    cells = np.arange(n)[:, None] * n_classes + labels[indices]
    votes = np.bincount(cells.ravel(), weights=weights.ravel(), minlength=n * n_classes)
    votes = votes.reshape(n, n_classes)
    return votes / votes.sum(axis=1, keepdims=True)


def given_label_share(shares: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return shares[np.arange(len(labels)), labels]


def knn_label_issues(shares: np.ndarray, labels: np.ndarray, max_share: float) -> np.ndarray:
    """Issues: the given label gets less than ``max_share`` and another class leads."""
    return (given_label_share(shares, labels) < max_share) & (shares.argmax(axis=1) != labels)


def knn_details(shares: np.ndarray, labels: np.ndarray, indices: np.ndarray,
                sample_ids: list[str], class_names: list[str]) -> list[dict]:
    majority = shares.argmax(axis=1)
    return [_one_detail(row, int(labels[i]), int(majority[i]), indices[i], sample_ids, class_names)
            for i, row in enumerate(shares)]


def _one_detail(row: np.ndarray, given: int, best: int, neighbors: np.ndarray,
                sample_ids: list[str], class_names: list[str]) -> dict:
    if best == given:
        reason = (f"{row[given]:.0%} of its nearest neighbours (weighted) share its label "
                  f"'{class_names[given]}'")
    else:
        reason = (f"given label '{class_names[given]}' but {row[best]:.0%} of its nearest "
                  f"neighbours (weighted) are '{class_names[best]}' and {row[given]:.0%} "
                  f"'{class_names[given]}'")
    return {"reason": reason, "suggested_label": class_names[best],
            "suggested_confidence": round(float(row[best]), 4),
            "neighbors": [sample_ids[j] for j in neighbors[:MAX_NEIGHBORS_SHOWN]]}


@register
class KnnLabel(Detector):
    name = "knn_label"
    requires = frozenset({"labels", "knn"})
    params = {"max_share": 0.2}
    description = ("Nearest-neighbour label disagreement: examples whose neighbours in "
                   "embedding space mostly carry another label.")

    def score(self, inputs: DetectorInputs, params: dict, progress: Progress) -> pd.DataFrame:
        params = {**self.params, **params}
        knn, labels = inputs.knn, inputs.labels
        shares = neighbor_label_shares(labels, knn.indices, knn.distances, len(inputs.class_names))
        is_issue = knn_label_issues(shares, labels, params["max_share"])
        details = knn_details(shares, labels, knn.indices, inputs.sample_ids, inputs.class_names)
        progress(1.0, f"{int(is_issue.sum())} neighbour label disagreements")
        return result_frame(inputs, given_label_share(shares, labels), is_issue, details)
