"""near_duplicate: hash and embedding duplicates, sets as connected components, leakage."""

import numpy as np

from audit.detectors import REGISTRY
from audit.detectors.near_duplicate import duplicate_sets, hash_pairs, leaking_sets, near_pairs
from audit.embedders import l2_normalise
from tests.audit.detector_inputs import blobs, make_inputs, quiet


def test_hash_pairs_link_equal_hashes_and_skip_missing():
    pairs = hash_pairs(["a", "b", "a", None, None, "a"])
    assert pairs.tolist() == [[2, 0], [5, 0]]


def test_sets_are_connected_components_and_singletons_get_minus_one():
    set_id = duplicate_sets(6, np.array([[0, 2], [2, 5], [3, 4]]))
    assert set_id.tolist() == [0, -1, 0, 1, 1, 0]


def test_leak_needs_train_and_another_split_in_one_set():
    set_id = np.array([0, 0, 1, 1, -1])
    splits = np.array(["train", "test", "train", "train", "test"])
    assert leaking_sets(set_id, splits) == {0}


def test_near_pairs_use_a_fraction_of_the_median_nearest_distance():
    indices = np.array([[1], [0], [3], [2]])
    distances = np.array([[0.01], [0.01], [0.4], [0.5]])
    assert near_pairs(indices, distances, 0.13).tolist() == [[0, 1], [1, 0]]


def test_planted_copies_and_identical_files_form_sets_with_leaks():
    points, labels = blobs(per_class=40, classes=3, dim=16, spread=0.5)
    rng = np.random.default_rng(3)
    copies = l2_normalise(points[[5, 50]] + 1e-4 * rng.normal(size=(2, 16)))
    x = np.concatenate([points, copies]).astype(np.float32)
    n = len(x)
    splits = np.array(["train"] * n)
    splits[n - 1] = "test"
    sha = [f"h{i}" for i in range(n)]
    sha[100] = sha[7]
    inputs = make_inputs(np.concatenate([labels, labels[[5, 50]]]), x, splits=splits, sha256=sha)
    frame = REGISTRY["near_duplicate"]().score(inputs, {}, quiet)
    assert set(np.flatnonzero(frame["is_issue"])) == {5, 50, 7, 100, n - 2, n - 1}
    copy_of_50 = frame.iloc[n - 1]["details"]
    assert copy_of_50["duplicate_of"] == ["s050"] and copy_of_50["leak"] is True
    assert frame.iloc[5]["details"]["leak"] is False
    assert frame.iloc[7]["score"] == 0.0 and "identical file" in frame.iloc[7]["details"]["reason"]
    scores, flagged = frame["score"], frame["is_issue"]
    assert scores[~flagged].min() > scores[flagged].max()
