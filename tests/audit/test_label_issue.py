"""label_issue: confident learning on planted flips in confident, held-out-like probabilities."""

import numpy as np

from audit.detectors import REGISTRY
from audit.detectors.label_issue import confident_learning_issues, label_quality, top_classes
from tests.audit.detector_inputs import make_inputs, quiet


def planted_probs(seed: int = 0):
    """60 examples of 3 classes, the model 90% sure of the true class; rows 7 and 33 mislabelled."""
    rng = np.random.default_rng(seed)
    true = np.repeat(np.arange(3), 20)
    probs = np.full((60, 3), 0.05) + rng.uniform(0, 0.02, size=(60, 3))
    probs[np.arange(60), true] = 0.9
    probs /= probs.sum(axis=1, keepdims=True)
    given = true.copy()
    given[7], given[33] = 2, 0
    return given, probs, true


def test_planted_flips_score_lowest_and_are_issues():
    given, probs, _ = planted_probs()
    scores = label_quality(given, probs)
    assert set(np.argsort(scores)[:2]) == {7, 33}
    assert scores[7] < 0.1 and np.median(scores) > 0.85
    assert set(np.flatnonzero(confident_learning_issues(given, probs))) == {7, 33}


def test_normalized_margin_is_below_half_for_a_flip():
    given, probs, _ = planted_probs()
    margin = label_quality(given, probs, method="normalized_margin")
    assert margin[7] < 0.1 and margin[0] > 0.9


def test_top_classes_lists_the_three_most_probable():
    assert top_classes(np.array([0.1, 0.6, 0.05, 0.25]), ["a", "b", "c", "d"]) == [
        ["b", 0.6], ["d", 0.25], ["a", 0.1]]


def test_detector_suggests_the_true_class_with_its_confidence():
    given, probs, true = planted_probs()
    inputs = make_inputs(given, pred_probs=probs)
    frame = REGISTRY["label_issue"]().run(inputs, {}, quiet)
    assert frame["is_issue"].sum() == 2
    flagged = frame[frame["is_issue"]]
    assert list(flagged["sample_id"]) == ["s007", "s033"]
    detail = flagged.iloc[0]["details"]
    assert detail["suggested_label"] == "class0" == inputs.class_names[true[7]]
    assert abs(detail["suggested_confidence"] - probs[7].max()) < 1e-4
    assert detail["reason"].startswith("given label 'class2'")
    assert [name for name, _ in detail["top_classes"]][0] == "class0"
    assert frame["score"].between(0, 1).all()
