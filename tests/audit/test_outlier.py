"""outlier: cleanlab-style calibration, class Gaussians, and planted far points among blobs."""

import numpy as np
from sklearn.covariance import ledoit_wolf

from audit.detectors import REGISTRY
from audit.detectors.outlier import (class_mahalanobis, distance_to_score, outlier_issues,
                                     principal_projection, within_class_ledoit_wolf)
from audit.embedders import l2_normalise
from audit.principal import principal_axes
from tests.audit.detector_inputs import blobs, make_inputs, precision_recall, quiet


def test_distance_to_score_maps_the_median_to_exp_minus_one():
    scores = distance_to_score(np.array([0.1, 0.2, 0.3, 2.0]))
    assert np.isclose(scores[1], np.exp(-0.2 / 0.25)) and np.isclose(scores[3], np.exp(-8.0))


def test_datalab_rule_flags_only_the_far_value():
    scores = np.exp(-np.array([1.0, 1.1, 0.9, 1.05, 0.95, 1.0, 6.0]))
    assert outlier_issues(scores).tolist() == [False] * 6 + [True]


def test_class_mahalanobis_is_largest_away_from_every_class():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (50, 3)), rng.normal(8, 1, (50, 3)), [[4, 4, 30]]])
    labels = np.array([0] * 50 + [1] * 50 + [0])
    distances = class_mahalanobis(x, labels)
    assert distances.argmax() == 100 and distances[100] > 3 * np.median(distances)


def test_nearest_class_distances_in_blocks_are_the_whole_arrays(monkeypatch):
    """Many classes: the (points x means) distances are made a block of rows at a time."""
    import audit.detectors.outlier as outlier

    rng = np.random.default_rng(4)
    points, means = rng.normal(size=(1_000, 16)), rng.normal(size=(300, 16))
    whole = np.sqrt(((points[:, None, :] - means[None, :, :]) ** 2).sum(2).min(1))
    monkeypatch.setattr(outlier, "CLASS_BLOCK_BYTES", 8 * 300 * 37)   # blocks of 37 rows
    assert np.allclose(outlier.nearest_mean_distance(points, means), whole, rtol=1e-9)
    assert whole.min() > 1.0        # distances, not zeros


def test_projection_in_chunks_is_the_whole_arrays_projection():
    x = np.random.default_rng(1).normal(size=(1_000, 24)).astype(np.float32)
    axes = principal_axes(x, sample=500)
    whole = principal_projection(x, 6, axes, chunk=len(x))
    chunked = principal_projection(x, 6, axes, chunk=7)
    assert whole.shape == (1_000, 6) and np.abs(whole).max() > 1.0
    assert np.allclose(chunked, whole, atol=1e-5)
    centred = x - x.mean(axis=0)
    assert np.allclose(np.abs(whole).sum(axis=0), np.abs(centred @ np.linalg.svd(
        centred[::2], full_matrices=False)[2][:6].T).sum(axis=0), rtol=1e-4)


def test_fewer_samples_than_principal_dimensions_still_get_class_distances():
    """40 photos with imagenet's 1,904-d vectors span 40 directions, fewer than the 64 kept:
    the class Gaussians use those 40 (this raised a broadcast error before)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 1_904)).astype(np.float32)
    x[-1] += 6.0 * rng.normal(size=1_904).astype(np.float32)     # one far from everything
    labels = np.arange(40) % 4
    assert principal_projection(x, 64, principal_axes(x)).shape == (40, 40)
    distances = class_mahalanobis(x, labels)
    assert np.isfinite(distances).all() and distances.argmax() == 39


def test_the_within_class_covariance_from_chunks_is_scikit_learns_ledoit_wolf():
    rng = np.random.default_rng(2)
    for rows, dims, classes in [(3_000, 64, 10), (500, 5, 3), (200, 1, 2)]:
        scales = rng.uniform(0.1, 3.0, dims)            # uneven variances: a real shrinkage
        z = rng.normal(size=(rows, dims)) * scales + rng.normal(0, 5, dims)
        own = rng.integers(0, classes, rows)
        means = np.stack([z[own == c].mean(axis=0) for c in range(classes)])
        expected, shrinkage = ledoit_wolf(z - means[own])
        assert dims == 1 or 0.0 < shrinkage < 1.0
        for chunk in (rows, 97):
            found = within_class_ledoit_wolf(z, means, own, chunk=chunk)
            assert np.allclose(found, expected, rtol=1e-9, atol=1e-12), (rows, dims, chunk)


def test_planted_far_points_are_the_outliers():
    points, labels = blobs(per_class=60, classes=3, dim=16, spread=0.3)
    far = l2_normalise(np.random.default_rng(5).normal(size=(4, 16)))
    x = np.concatenate([points, far]).astype(np.float32)
    all_labels = np.concatenate([labels, [0, 1, 2, 0]])
    frame = REGISTRY["outlier"]().run(make_inputs(all_labels, x), {}, quiet)
    planted = np.arange(180, 184)
    precision, recall = precision_recall(frame["is_issue"].to_numpy(), planted)
    assert recall == 1.0 and precision >= 0.8
    assert set(np.argsort(frame["score"].to_numpy())[:4]) == set(planted)
    assert "far from the rest" in frame.iloc[180]["details"]["reason"]
