"""outlier: examples far from the rest of the data in embedding space.

Two signals, each turned into a score like cleanlab's ``OutOfDistribution``
(``exp(-x / median(x))``, so a typical example scores about 0.37 and a far one near 0):

- kNN: ``x`` = mean cosine distance to the k nearest neighbours;
- class Gaussian: ``x`` = Mahalanobis distance to the NEAREST class mean under a shared
  covariance with Ledoit-Wolf shrinkage (on the top ``max_dims`` principal directions), so an
  example far from every class is an outlier whatever its label.

Score = geometric mean of the two. ``is_issue`` uses cleanlab Datalab's form of rule on the
combined distance ``x = -log(score)``: ``x > Q3 + (1 / threshold - 1) * IQR``, with threshold
0.25 (Tukey's far-out fence, Q3 + 3 IQR) instead of Datalab's 0.37037 (Q3 + 1.7 IQR), which
flagged twice as many examples as were planted on the demo (docs/benchmarks.md).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from audit.detectors.base import (Detector, DetectorInputs, Progress, nearest_ids, register,
                                  result_frame, rounded)
from audit.principal import PrincipalAxes, principal_axes

CLASS_BLOCK_BYTES = 1 << 27    # 128 MiB of points-to-class-means distances at a time


def distance_to_score(distance: np.ndarray) -> np.ndarray:
    """cleanlab's calibration: exp(-d / median(d))."""
    return np.exp(-distance / max(float(np.median(distance)), 1e-12))


def knn_distance(distances: np.ndarray) -> np.ndarray:
    return distances.astype(np.float64).mean(axis=1)


def principal_projection(x: np.ndarray, max_dims: int, axes: PrincipalAxes,
                         chunk: int = 65_536) -> np.ndarray:
    """Centre and project on the top ``max_dims`` principal ``axes`` of ``x``, ``chunk``
    rows at a time: no centred copy of the whole embeddings (2 GB at 1M x 512)."""
    mean = axes.mean
    if x.shape[1] <= max_dims:
        return (np.asarray(x, dtype=np.float32) - mean).astype(np.float64)
    directions = axes.top(max_dims)
    projected = np.empty((len(x), directions.shape[1]))
    for start in range(0, len(x), chunk):
        projected[start:start + chunk] = (np.asarray(x[start:start + chunk], dtype=np.float32)
                                          - mean) @ directions
    return projected


def class_mahalanobis(x: np.ndarray, labels: np.ndarray, max_dims: int = 64,
                      axes: PrincipalAxes | None = None) -> np.ndarray:
    """Mahalanobis distance to the nearest class mean (shared, shrunk covariance), on the
    top ``max_dims`` principal ``axes`` of ``x`` (fitted here when None)."""
    z = principal_projection(x, max_dims, principal_axes(x) if axes is None else axes)
    classes, own = np.unique(labels, return_inverse=True)
    means = np.stack([z[own == c].mean(axis=0) for c in range(len(classes))])
    covariance = within_class_ledoit_wolf(z, means, own)
    whitening = np.linalg.cholesky(np.linalg.inv(covariance))
    return nearest_mean_distance(z @ whitening, means @ whitening)


def nearest_mean_distance(points: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Each point's Euclidean distance to its nearest mean, for ``CLASS_BLOCK_BYTES`` of
    (points x means) distances at a time: 1M points and 1,000 classes would hold 8 GB."""
    rows = max(1, CLASS_BLOCK_BYTES // (8 * len(means)))
    mean_squares = (means ** 2).sum(1)[None, :]
    nearest = np.empty(len(points))
    for start in range(0, len(points), rows):
        block = points[start:start + rows]
        squared = (block ** 2).sum(1)[:, None] - 2 * block @ means.T + mean_squares
        nearest[start:start + rows] = squared.min(axis=1)
    return np.sqrt(np.maximum(nearest, 0.0))


def within_class_ledoit_wolf(z: np.ndarray, means: np.ndarray, own: np.ndarray,
                             chunk: int = 65_536) -> np.ndarray:
    """scikit-learn's ``ledoit_wolf(z - means[own])`` (the rows centred on their class's mean,
    centred again on their mean as it does, then its shrinkage), from sums over ``chunk``
    rows at a time: no centred copy of ``z`` and no squared copy (512 MB each at 1M x 64;
    making them took 8.6 of class_mahalanobis's 15.4 s there)."""
    rows, dims = z.shape
    shift = (z.sum(axis=0) - np.bincount(own, minlength=len(means)) @ means) / rows   # ~0
    cross, squares_cross = np.zeros((dims, dims)), np.zeros((dims, dims))
    for start in range(0, rows, chunk):
        part = z[start:start + chunk] - means[own[start:start + chunk]]
        part -= shift
        cross += part.T @ part
        part **= 2
        squares_cross += part.T @ part
    covariance = cross / rows
    trace = np.trace(covariance)
    mu = trace / dims
    delta_ = np.sum(cross ** 2) / rows ** 2
    delta = (delta_ - 2.0 * mu * trace + dims * mu ** 2) / dims
    beta = min((np.sum(squares_cross) / rows - delta_) / (dims * rows), delta)
    shrinkage = 0.0 if beta == 0 or delta <= 0 else beta / delta
    shrunk = (1.0 - shrinkage) * covariance
    shrunk.flat[:: dims + 1] += shrinkage * mu
    return shrunk


def outlier_issues(score: np.ndarray, threshold: float = 0.25) -> np.ndarray:
    """Datalab's rule on x = -log(score): x > Q3 + (1/threshold - 1) * IQR."""
    x = -np.log(np.maximum(score, 1e-300))
    q1, q3 = np.percentile(x, [25, 75])
    return x > q3 + (1.0 / threshold - 1.0) * (q3 - q1)


def outlier_details(knn_score, class_score, indices, sample_ids, is_issue) -> list[dict]:
    return [{"reason": _reason(k, c, issue), "knn": k_shown, "class_gaussian": c_shown,
             "neighbors": neighbours}
            for k, c, k_shown, c_shown, neighbours, issue in zip(
                np.asarray(knn_score, dtype=float).tolist(),
                np.asarray(class_score, dtype=float).tolist(), rounded(knn_score).tolist(),
                rounded(class_score).tolist(), nearest_ids(indices, sample_ids),
                np.asarray(is_issue, dtype=bool).tolist())]


def _reason(knn: float, gauss: float, issue: bool) -> str:
    far = -math.log(max(min(knn, gauss), 1e-300))
    verdict = "far from the rest of the data" if issue else "within the data"
    return f"{verdict}: its distance to its neighbours / classes is {far:.1f}x the typical one"


@register
class Outlier(Detector):
    name = "outlier"
    family = "outlier"
    requires = frozenset({"embeddings", "knn", "labels"})
    params = {"threshold": 0.25, "max_dims": 64}
    description = ("Examples far from their nearest neighbours and from every class in "
                   "embedding space (kNN distance and class Gaussians).")

    def score(self, inputs: DetectorInputs, params: dict, progress: Progress) -> pd.DataFrame:
        knn_score = distance_to_score(knn_distance(inputs.knn.distances))
        progress(0.3, "fitting class Gaussians")
        gauss = class_mahalanobis(inputs.embeddings, inputs.labels, params["max_dims"],
                                  inputs.principal_axes())
        class_score = distance_to_score(gauss)
        score = np.sqrt(knn_score * class_score)
        is_issue = outlier_issues(score, params["threshold"])
        details = outlier_details(knn_score, class_score, inputs.knn.indices, inputs.sample_ids,
                                  is_issue)
        progress(1.0, f"{int(is_issue.sum())} outliers")
        return result_frame(inputs, score, is_issue, details)
