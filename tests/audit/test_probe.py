"""The cross-fitted probe: out-of-sample, stratified, seeded, and calm about small classes."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from audit.embedders import l2_normalise
from audit.errors import InputError
from audit.principal import principal_axes
from audit.probe import (INVERSE_REGULARISATION, MAX_INPUT_DIMS, cross_fit_probe, probe_input,
                         stratified_folds)


def blobs(per_class: int, classes: int = 3, dims: int = 8, noise: float = 0.4, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dims)) * 2
    labels = np.repeat(np.arange(classes), per_class)
    return l2_normalise(centres[labels] + noise * rng.normal(size=(len(labels), dims))), labels


def test_held_out_probabilities_expose_flipped_labels():
    vectors, labels = blobs(60)
    flipped = np.array([3, 70, 150])
    given = labels.copy()
    given[flipped] = (labels[flipped] + 1) % 3
    result = cross_fit_probe(vectors, given, 3, folds=5, seed=0)
    assert result.pred_probs.shape == (180, 3)
    np.testing.assert_allclose(result.pred_probs.sum(axis=1), 1.0, atol=1e-5)
    own = result.pred_probs[np.arange(180), given]
    assert own[flipped].max() < 0.2                      # a model that never saw the flip
    assert (result.pred_probs.argmax(1) == labels).mean() > 0.97


def test_wide_embeddings_reach_the_probe_on_their_principal_directions():
    """Wider than MAX_INPUT_DIMS: the probe sees the rows on their top principal directions.
    With fewer rows than that they span fewer directions, all kept: the same cosines as the
    unprojected rows. Flipped labels are still found on 1,000-d blobs."""
    vectors, labels = blobs(100, dims=1_000, noise=1.5)
    axes = principal_axes(vectors)
    mean, directions = axes.mean, axes.top(MAX_INPUT_DIMS)
    assert directions.shape == (1_000, 300)
    assert np.allclose(directions.T @ directions, np.eye(300), atol=1e-4)
    projected, whole = probe_input(vectors, mean, directions), probe_input(vectors, mean, None)
    assert projected.shape == (300, 300)
    assert np.abs(projected @ projected.T - whole @ whole.T).max() < 1e-4

    wide, truth = blobs(400, classes=4, dims=1_000, noise=2.0, seed=1)
    wide = np.hstack([wide, wide[:, :100]])          # 1,100 dims, 1,600 rows: 512 directions kept
    flipped = np.arange(0, 1_600, 97)
    given = truth.copy()
    given[flipped] = (truth[flipped] + 1) % 4
    probs = cross_fit_probe(wide, given, 4, folds=5, seed=0).pred_probs
    own = probs[np.arange(1_600), given]
    assert np.isin(np.argsort(own)[:len(flipped)], flipped).mean() >= 0.9
    assert (probs.argmax(1) == truth).mean() > 0.95


def test_folds_are_stratified_and_seeded():
    labels = np.repeat([0, 1, 2], [50, 23, 7])
    folds, n_folds, notes = stratified_folds(labels, 5, seed=1)
    assert n_folds == 5 and notes == []
    for label in (0, 1, 2):
        counts = np.bincount(folds[labels == label], minlength=5)
        assert counts.max() - counts.min() <= 1
    assert np.array_equal(folds, stratified_folds(labels, 5, seed=1)[0])
    assert not np.array_equal(folds, stratified_folds(labels, 5, seed=2)[0])


def test_accuracy_matches_sklearn_logistic_regression():
    vectors, labels = blobs(80, classes=4, noise=1.2, seed=3)
    result = cross_fit_probe(vectors, labels, 4, folds=5, seed=0, kind="logistic")
    ours = (result.pred_probs.argmax(1) == labels).mean()
    theirs = []
    for fold in range(5):
        train, held = result.folds != fold, result.folds == fold
        centred = probe_input(vectors, vectors.mean(axis=0), None)
        model = LogisticRegression(C=INVERSE_REGULARISATION, max_iter=1000).fit(centred[train],
                                                                             labels[train])
        theirs.append((model.predict(centred[held]) == labels[held]).sum())
    assert ours == pytest.approx(sum(theirs) / len(labels), abs=0.04)


def test_a_class_with_one_member_is_noted_not_crashed_on():
    vectors, labels = blobs(20)
    labels = np.append(labels, 3)
    vectors = np.vstack([vectors, vectors[:1]])
    result = cross_fit_probe(vectors, labels, 4, folds=5)
    assert result.pred_probs.shape == (61, 4)
    assert any("3 (1)" in note for note in result.notes)
    assert result.pred_probs[60, 3] < 0.5               # its fold never saw class 3


def test_fewer_samples_than_folds_reduces_folds():
    vectors, labels = blobs(1)
    result = cross_fit_probe(vectors, labels, 3, folds=5)
    assert result.n_folds == 3 and sorted(result.folds.tolist()) == [0, 1, 2]
    assert "reduced from 5 to 3" in result.notes[0]


def test_single_class_and_single_sample_are_clear_errors():
    vectors, _ = blobs(10, classes=1)
    with pytest.raises(InputError, match="at least two classes"):
        cross_fit_probe(vectors, np.zeros(10, dtype=int), 1)
    with pytest.raises(InputError, match="at least 2 samples"):
        stratified_folds(np.array([0]), 5, 0)


def test_large_folds_train_on_a_sample_that_keeps_every_class(monkeypatch):
    import audit.probe as probe

    monkeypatch.setattr(probe, "MAX_TRAIN_ROWS", 40)
    vectors, labels = blobs(30, classes=4)
    labels[0] = 3                                       # class 0 keeps 29 members
    result = cross_fit_probe(vectors, labels, 4, folds=5)
    assert "random sample of 40 rows" in result.notes[-1]
    # 2 folds already train on 60 candidates each, so 5 would add fits, not training rows
    assert result.n_folds == 2 and set(result.folds) == {0, 1}
    assert "folds reduced from 5 to 2" in result.notes[0]
    assert probe.fewest_sampled_folds(60, 5)[0] == 3          # 3 folds train on 40 each
    assert probe.fewest_sampled_folds(59, 5)[0] == 4          # 3 would train on 39.3
    assert probe.fewest_sampled_folds(49, 5) == (5, [])     # 4 folds train on 36.75 < 40
    rows = probe.training_rows(np.arange(100), labels, np.random.default_rng(0))
    assert len(rows) == 40 and set(labels[rows]) == {0, 1, 2, 3}
    assert (result.pred_probs.argmax(1) == labels).mean() > 0.9


def test_mlp_and_logistic_probes_agree_on_easy_blobs_and_an_unknown_probe_is_refused():
    vectors, labels = blobs(60, classes=3, noise=0.6, seed=4)
    mlp = cross_fit_probe(vectors, labels, 3, folds=5, seed=0, kind="mlp").pred_probs
    logistic = cross_fit_probe(vectors, labels, 3, folds=5, seed=0, kind="logistic").pred_probs
    assert (mlp.argmax(1) == labels).mean() > 0.9
    assert (mlp.argmax(1) == logistic.argmax(1)).mean() > 0.9
    with pytest.raises(InputError, match="unknown probe 'svm'"):
        cross_fit_probe(vectors, labels, 3, kind="svm")
