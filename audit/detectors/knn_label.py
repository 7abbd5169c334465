"""knn_label: how much the nearest neighbours' labels disagree with an example's given label.

Each of the k neighbours votes for its own label with weight ``exp(-d / t)`` (``d`` its cosine
distance, ``t`` the median neighbour distance of the dataset, so the weighting does not depend
on the embedder's scale). ``shares`` are each class's part of the votes; the suggestion is the
neighbours' weighted majority. An example is an issue when its given label gets less than
``max_share`` of the votes and the majority is another class. A sample a reviewer removed
(``inputs.trainable`` False) does not vote: its label is the one the reviewer rejected. An
example whose neighbours were all removed has no votes: it is not flagged and suggests nothing.

The score is continuous, so that ranking never falls back to row order: the votes for the
given label are blended with a prior belief worth ``prior_weight`` votes,

    score = (votes[given] + prior_weight * prior[given]) / (sum(votes) + prior_weight)

where the prior is the out-of-sample probability of the given label when the run has
pred_probs, else the class's frequency. Two examples whose neighbours all disagree are then
told apart by how close those neighbours are and by what the probe believes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from audit.detectors.base import (Detector, DetectorInputs, Progress, nearest_ids, register,
                                  result_frame)


VOTE_BLOCK_BYTES = 1 << 27    # 128 MiB of (rows x classes) votes at a time


class Votes(NamedTuple):
    """Each row's distance-weighted neighbour votes, summed per class a block of rows at a
    time (``VOTE_BLOCK_BYTES``): 1M rows and 1,000 classes would hold 8 GB as one matrix."""

    given: np.ndarray           # the votes for the row's given label
    total: np.ndarray           # every voter's weight
    majority: np.ndarray        # the class with the largest share (the lowest on a tie)
    majority_votes: np.ndarray

    def shares(self) -> tuple[np.ndarray, np.ndarray]:
        """(given label's share, majority's share) of the votes; 0 for a row without votes."""
        voted = self.total > 0
        return tuple(np.divide(votes, self.total, out=np.zeros_like(votes), where=voted)
                     for votes in (self.given, self.majority_votes))


def neighbor_votes(labels: np.ndarray, indices: np.ndarray, distances: np.ndarray,
                   n_classes: int, voters: np.ndarray | None = None) -> Votes:
    """Distance-weighted votes ``exp(-d / t)`` of each example's neighbours (only those where
    ``voters`` is True, when given)."""
    distances = distances.astype(np.float64)
    weights = np.where(_voting(indices, voters), np.exp(-distances / _scale(distances)), 0.0)
    return _votes(labels, indices, weights, n_classes)


def neighbor_label_votes(labels: np.ndarray, indices: np.ndarray, distances: np.ndarray,
                         n_classes: int, voters: np.ndarray | None = None) -> Votes:
    """The votes that shares are read from (``Votes.shares``): each row shifted by its nearest
    voter's distance first, so that weight is 1 and nothing underflows when most distances are
    0 (shares are ratios, so the shift leaves them as they are)."""
    distances = distances.astype(np.float64)
    voting = _voting(indices, voters)
    nearest = np.where(voting, distances, np.inf).min(axis=1, keepdims=True)
    shift = np.where(np.isfinite(nearest), nearest, 0.0)
    weights = np.where(voting, np.exp(-(distances - shift) / _scale(distances)), 0.0)
    return _votes(labels, indices, weights, n_classes)


def _voting(indices: np.ndarray, voters: np.ndarray | None) -> np.ndarray:
    """Which neighbour of each row votes: all, or those where ``voters`` is True."""
    return np.ones(indices.shape, dtype=bool) if voters is None else voters[indices]


def _scale(distances: np.ndarray) -> float:
    return max(float(np.median(distances)), 1e-8)


def _votes(labels: np.ndarray, indices: np.ndarray, weights: np.ndarray,
           n_classes: int) -> Votes:
    n = len(indices)
    parts = []
    block_rows = max(1, VOTE_BLOCK_BYTES // (8 * n_classes))
    for start in range(0, n, block_rows):
        block = slice(start, min(start + block_rows, n))
        votes = _vote_matrix(labels, indices[block], weights[block], n_classes)
        rows, total = np.arange(len(votes)), votes.sum(axis=1)
        majority = np.divide(votes, total[:, None], out=np.zeros_like(votes),
                             where=total[:, None] > 0).argmax(axis=1)   # as shares tie
        parts.append((votes[rows, labels[block]], total, majority, votes[rows, majority]))
    return Votes(*(np.concatenate(column) for column in zip(*parts)))


def _vote_matrix(labels: np.ndarray, indices: np.ndarray, weights: np.ndarray,
                 n_classes: int) -> np.ndarray:
    n = len(indices)
    cells = np.arange(n)[:, None] * n_classes + labels[indices]
    votes = np.bincount(cells.ravel(), weights=weights.ravel(), minlength=n * n_classes)
    return votes.reshape(n, n_classes)


def smoothed_belief(votes: Votes, prior: np.ndarray, prior_weight: float) -> np.ndarray:
    """Votes for the given label blended with a prior belief in it (see the module doc)."""
    return (votes.given + prior_weight * prior) / (votes.total + prior_weight)


def prior_belief(labels: np.ndarray, n_classes: int, pred_probs: np.ndarray | None) -> np.ndarray:
    """Out-of-sample probability of the given label, or its class frequency without pred_probs."""
    if pred_probs is not None:
        return pred_probs[np.arange(len(labels)), labels].astype(np.float64)
    frequency = np.bincount(labels, minlength=n_classes) / max(len(labels), 1)
    return frequency[labels]


def knn_label_issues(votes: Votes, labels: np.ndarray, max_share: float) -> np.ndarray:
    """Issues: the given label gets less than ``max_share`` and another class leads (never a
    row without votes)."""
    given_share, _ = votes.shares()
    return (votes.total > 0) & (given_share < max_share) & (votes.majority != labels)


def knn_details(votes: Votes, labels: np.ndarray, indices: np.ndarray,
                sample_ids: list[str], class_names: list[str]) -> list[dict]:
    given_share, majority_share = votes.shares()
    return [_one_detail(class_names, given, best, given_part, best_part, neighbours)
            for given, best, given_part, best_part, neighbours in zip(
                labels.tolist(), votes.majority.tolist(), given_share.tolist(),
                majority_share.tolist(), nearest_ids(indices, sample_ids))]


def _one_detail(class_names: list[str], given: int, best: int, given_share: float,
                best_share: float, neighbours: list[str]) -> dict:
    if best_share == 0.0:
        return {"reason": "every one of its nearest neighbours was removed by a reviewer, so "
                          "none votes on its label", "neighbors": neighbours}
    if best == given:
        reason = (f"{given_share:.0%} of its nearest neighbours (weighted) share its label "
                  f"'{class_names[given]}'")
    else:
        reason = (f"given label '{class_names[given]}' but {best_share:.0%} of its nearest "
                  f"neighbours (weighted) are '{class_names[best]}' and {given_share:.0%} "
                  f"'{class_names[given]}'")
    return {"reason": reason, "suggested_label": class_names[best],
            "suggested_confidence": round(best_share, 4), "neighbors": neighbours}


@register
class KnnLabel(Detector):
    name = "knn_label"
    family = "label"
    suggests_labels = True
    requires = frozenset({"labels", "knn"})
    belief = "held_out"
    params = {"max_share": 0.2, "prior_weight": 1.0}
    description = ("Nearest-neighbour label disagreement: examples whose neighbours in "
                   "embedding space mostly carry another label.")

    def score(self, inputs: DetectorInputs, params: dict, progress: Progress) -> pd.DataFrame:
        knn, labels, voters = inputs.knn, inputs.labels, inputs.trainable
        classes = len(inputs.class_names)
        share_votes = neighbor_label_votes(labels, knn.indices, knn.distances, classes, voters)
        is_issue = knn_label_issues(share_votes, labels, params["max_share"])
        details = knn_details(share_votes, labels, knn.indices, inputs.sample_ids,
                              inputs.class_names)
        votes = neighbor_votes(labels, knn.indices, knn.distances, classes, voters)
        prior = prior_belief(labels, len(inputs.class_names), inputs.pred_probs)
        score = smoothed_belief(votes, prior, params["prior_weight"])
        progress(1.0, f"{int(is_issue.sum())} neighbour label disagreements")
        return result_frame(inputs, np.clip(score, 0.0, 1.0), is_issue, details)
