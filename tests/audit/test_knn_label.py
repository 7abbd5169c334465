"""knn_label: neighbour label disagreement on a hand-made graph and on planted flips in blobs."""

import numpy as np

from audit.detectors import REGISTRY, KnnGraph
from audit.detectors.knn_label import knn_label_issues, neighbor_label_votes
from tests.audit.detector_inputs import blobs, flip, make_inputs, precision_recall, quiet


def test_shares_weight_nearer_neighbours_more():
    labels = np.array([0, 0, 1, 1])
    indices = np.array([[1, 2], [0, 2], [3, 0], [2, 1]])
    distances = np.array([[0.1, 0.3], [0.1, 0.2], [0.1, 0.2], [0.1, 0.3]])
    votes = neighbor_label_votes(labels, indices, distances, 2)
    given_share, majority_share = votes.shares()
    scale = np.median(distances)
    expected = np.exp(-0.1 / scale) / (np.exp(-0.1 / scale) + np.exp(-0.3 / scale))
    assert np.isclose(given_share[0], expected) and np.isclose(majority_share[0], expected)
    assert votes.majority.tolist() == [0, 0, 1, 1]
    own = np.exp(-0.1 / scale) / (np.exp(-0.1 / scale) + np.exp(-0.2 / scale))
    assert np.isclose(given_share[2], own)             # its nearer neighbour is its own
    assert knn_label_issues(votes, labels, 0.5).tolist() == [False] * 4
    relabelled = np.array([0, 0, 1, 0])     # 3's nearer neighbour (2) says 1; 2's both say 0
    flags = knn_label_issues(neighbor_label_votes(relabelled, indices, distances, 2),
                             relabelled, 0.5)
    assert flags.tolist() == [False, False, True, True]


def test_planted_flips_in_blobs_are_found():
    points, true = blobs(per_class=60, classes=3)
    noisy, flipped = flip(true, 9, 3)
    inputs = make_inputs(noisy, points)
    frame = REGISTRY["knn_label"]().run(inputs, {}, quiet)
    precision, recall = precision_recall(frame["is_issue"].to_numpy(), flipped)
    assert precision >= 0.9 and recall >= 0.9
    assert set(np.argsort(frame["score"].to_numpy())[:9]) == set(flipped)
    detail = frame.iloc[flipped[0]]["details"]
    assert detail["suggested_label"] == f"class{true[flipped[0]]}"
    assert len(detail["neighbors"]) == 5 and detail["neighbors"][0] == \
        inputs.sample_ids[inputs.knn.indices[flipped[0], 0]]


def test_scores_never_tie_when_every_neighbour_disagrees():
    """Three samples whose neighbours all carry another label: the score still orders them, by
    how close those neighbours are and by the probe's belief, never by row order."""
    labels = np.array([0, 0, 0, 1, 1, 1])
    indices = np.array([[3, 4], [4, 5], [5, 3], [4, 5], [3, 5], [3, 4]])
    distances = np.array([[0.1, 0.2], [0.3, 0.5], [0.3, 0.5], [0.1, 0.1], [0.1, 0.1], [0.1, 0.1]])
    probs = np.array([[0.3, 0.7], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8], [0.2, 0.8], [0.2, 0.8]])
    inputs = make_inputs(labels, pred_probs=probs, knn=KnnGraph(indices, distances))
    frame = REGISTRY["knn_label"]().run(inputs, {}, quiet)
    first_three = frame["score"].to_numpy()[:3]
    assert len(set(np.round(first_three, 9))) == 3
    assert first_three[0] < first_three[1] < first_three[2]   # nearer disagreement, then prior


def test_samples_a_reviewer_removed_do_not_vote():
    """Sample 0 (class 0) has two neighbours of class 1 that a reviewer removed and one kept
    neighbour of its own class: only the kept one votes. Sample 3's neighbours were all removed:
    no votes, so it is neither flagged nor given a suggestion."""
    labels = np.array([0, 1, 1, 1, 0, 0])
    indices = np.array([[1, 2, 4], [2, 0, 3], [1, 0, 3], [1, 2, 1], [0, 5, 1], [4, 0, 2]])
    distances = np.array([[0.1, 0.1, 0.4]] * 6)
    kept = np.array([True, False, False, True, True, True])
    blind = neighbor_label_votes(labels, indices, distances, 2)
    assert knn_label_issues(blind, labels, 0.2)[0]          # the removed labels outvote it
    votes = neighbor_label_votes(labels, indices, distances, 2, voters=kept)
    given_share, majority_share = votes.shares()
    assert (given_share[0], majority_share[0], votes.majority[0]) == (1.0, 1.0, 0)
    assert (given_share[3], majority_share[3], votes.total[3]) == (0.0, 0.0, 0.0)
    assert not knn_label_issues(votes, labels, 0.2)[[0, 3]].any()
    inputs = make_inputs(labels, knn=KnnGraph(indices, distances), trainable=kept)
    frame = REGISTRY["knn_label"]().run(inputs, {}, quiet)
    assert not frame["is_issue"].iloc[[0, 3]].any()
    assert "suggested_label" not in frame["details"].iloc[3]
    assert "removed by a reviewer" in frame["details"].iloc[3]["reason"]
    assert frame["details"].iloc[0]["suggested_label"] == "class0"


def test_votes_summed_a_block_of_rows_at_a_time_equal_the_whole_matrix(monkeypatch):
    """Many classes: the (rows x classes) votes are made a block of rows at a time, with the
    same sums, majorities and shares as one matrix."""
    import audit.detectors.knn_label as knn_label

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 300, 2_000)
    indices = rng.integers(0, 2_000, (2_000, 7))
    distances = rng.uniform(0.0, 0.5, (2_000, 7))
    whole = knn_label.neighbor_label_votes(labels, indices, distances, 300)
    monkeypatch.setattr(knn_label, "VOTE_BLOCK_BYTES", 8 * 300 * 53)      # blocks of 53 rows
    blocks = knn_label.neighbor_label_votes(labels, indices, distances, 300)
    for a, b in zip(whole, blocks):
        assert np.array_equal(a, b)
    assert (whole.total > 0).all() and (whole.majority != labels).mean() > 0.5
