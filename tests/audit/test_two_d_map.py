"""The Insights map separates classes that the two main axes mix (issue 10, item 4)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import silhouette_score

from audit.two_d_map import two_d_map


def _classes_hidden_under_a_loud_axis(n_per_class: int = 80, classes: int = 10, seed: int = 0):
    """Tight classes, each apart along its own quiet direction, plus noise along two loud
    directions that carry no class: the two main axes (what the old PCA map drew) show the
    noise, while each sample's nearest neighbours are still mostly of its class."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    centres = np.zeros((classes, 64))
    centres[np.arange(classes), np.arange(classes)] = 3.0
    points = centres[labels] + rng.normal(0, 0.3, size=(len(labels), 64))
    points[:, 20:22] += rng.normal(0, 2.0, size=(len(labels), 2))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32), labels


def _pca_map(points: np.ndarray) -> np.ndarray:
    centred = points - points.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    return centred @ axes[:2].T


def test_the_map_separates_classes_the_main_axes_mix():
    points, labels = _classes_hidden_under_a_loud_axis()
    layout = two_d_map(points, seed=0, landmarks=300)      # 500 of 800 placed by landmarks
    assert layout.shape == (800, 2) and np.isfinite(layout).all()
    assert silhouette_score(_pca_map(points), labels) < 0.1
    assert silhouette_score(layout, labels) > 0.4
    placed = np.ones(len(points), dtype=bool)
    placed[np.sort(np.random.default_rng(0).choice(800, 300, replace=False))] = False
    assert silhouette_score(layout[placed], labels[placed]) > 0.4


def test_tiny_inputs_get_a_map_without_failing():
    assert two_d_map(np.ones((3, 8), dtype=np.float32)).tolist() == [[0.0, 0.0]] * 3
    rng = np.random.default_rng(1)
    few = rng.normal(size=(7, 8)).astype(np.float32)
    assert np.isfinite(two_d_map(few)).all()
