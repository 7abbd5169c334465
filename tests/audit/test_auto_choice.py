"""auto's last step: keep the pretrained vectors unless pixels explain the labels clearly better."""

import numpy as np

from audit.embedders.auto_choice import MIN_Z, compare_label_agreement, neighbour_vote_matches


def clustered(labels: np.ndarray, spread: float, seed: int) -> np.ndarray:
    """Vectors around one centre per class; a larger spread mixes the classes more."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(labels.max() + 1, 16))
    vectors = centres[labels] + spread * rng.normal(size=(len(labels), 16))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


LABELS = np.repeat(np.arange(4), 150)


def test_neighbour_votes_follow_the_labels_only_where_the_classes_are_apart():
    tight = neighbour_vote_matches(clustered(LABELS, 0.1, 0), LABELS)
    mixed = neighbour_vote_matches(clustered(LABELS, 3.0, 0), LABELS)
    assert tight.mean() > 0.98
    assert 0.2 < mixed.mean() < 0.7


def test_pixels_win_only_when_they_explain_the_labels_clearly_better():
    sharp, blurred = clustered(LABELS, 0.3, 1), clustered(LABELS, 2.0, 2)
    better_pixels = compare_label_agreement(blurred, sharp, LABELS)
    assert better_pixels.prefers_pixels and better_pixels.z > MIN_Z
    assert better_pixels.pixels > better_pixels.pretrained + 0.2
    better_pretrained = compare_label_agreement(sharp, blurred, LABELS)
    assert not better_pretrained.prefers_pixels and better_pretrained.z < -MIN_Z


def test_a_tie_keeps_the_pretrained_network():
    vectors = clustered(LABELS, 1.0, 3)
    same = compare_label_agreement(vectors, vectors.copy(), LABELS)
    assert same.z == 0.0 and not same.prefers_pixels
    recorded = same.as_dict("imagenet")
    assert recorded["imagenet"] == recorded["pixels"] == round(same.pretrained, 4)
    assert recorded["rows"] == len(LABELS)
