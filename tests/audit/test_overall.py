"""overall: reliability weights fit on the labels, calibrated flag count, suggestion, alignment."""

import numpy as np
import pandas as pd

from audit.detectors import REGISTRY
from audit.detectors.overall import (estimated_error_count, lowest, mixture_weights,
                                     suggestions)
from audit.plan import with_details_cut
from tests.audit.detector_inputs import blobs, flip, make_inputs, quiet


def prior(ids, scores, flags, suggested=None) -> pd.DataFrame:
    details = [{"reason": "x", **({"suggested_label": s, "suggested_confidence": 0.8} if s else {})}
               for s in (suggested or [None] * len(ids))]
    return pd.DataFrame({"sample_id": ids, "score": scores, "is_issue": flags, "details": details})


def test_mixture_weights_favour_the_signal_that_explains_the_labels():
    rng = np.random.default_rng(0)
    sharp = np.where(rng.random(2000) < 0.9, 0.95, 0.05)     # right about 90% of labels
    vague = rng.uniform(0.2, 0.4, 2000)                       # says little about any label
    weights = mixture_weights(np.stack([sharp, vague], axis=1))
    assert np.isclose(weights.sum(), 1.0)
    assert weights[0] > 0.8 and weights[1] < 0.2


def test_mixture_weights_reach_the_best_likelihood_of_a_grid():
    rng = np.random.default_rng(1)
    beliefs = np.stack([rng.beta(5, 1, 3000), rng.beta(3, 1, 3000)], axis=1)
    beliefs[rng.random(3000) < 0.1] *= 0.2                  # some labels neither believes
    def log_likelihood(w): return np.log(beliefs @ np.array([w, 1 - w])).sum()
    fitted = mixture_weights(beliefs)
    best_on_grid = max(log_likelihood(w) for w in np.linspace(0, 1, 201))
    assert log_likelihood(fitted[0]) >= best_on_grid - 0.01


def test_lowest_flags_exactly_count_rows_by_score():
    score = np.array([0.5, 0.1, 0.1, 0.9, 0.05])
    assert lowest(score, 2).tolist() == [False, True, False, False, True]
    assert lowest(score, 0).sum() == 0 and lowest(score, 99).sum() == 5


def test_error_count_estimate_is_near_the_planted_count_with_an_interval():
    rng = np.random.default_rng(2)
    true = rng.integers(0, 4, 4000)
    noisy, flipped = flip(true, 400, 4, seed=3)
    probs = np.full((4000, 4), 0.05)
    probs[np.arange(4000), true] = 0.85                       # a model right about the truth
    estimate, low, high = estimated_error_count(noisy, probs)
    assert abs(estimate - len(flipped)) <= 0.1 * len(flipped)
    assert low <= estimate <= high and high - low < 0.5 * estimate


def test_planted_flips_are_ranked_first_and_flagged_in_number():
    points, true = blobs(per_class=80, classes=3)
    noisy, flipped = flip(true, 12, 3)
    probs = np.full((240, 3), 0.1)
    probs[np.arange(240), true] = 0.8
    inputs = make_inputs(noisy, points, pred_probs=probs)
    for name in ("label_issue", "knn_label"):
        inputs.prior_scores[name] = REGISTRY[name]().run(inputs, {}, quiet)
    detector = REGISTRY["overall"]()
    frame = detector.run(inputs, {}, quiet)
    assert set(np.argsort(frame["score"].to_numpy())[:12]) == set(flipped)
    assert abs(int(frame["is_issue"].sum()) - 12) <= 2
    assert detector.summary["estimated_label_errors"] == int(frame["is_issue"].sum())
    assert set(detector.summary["weights"]) == {"label_issue", "knn_label"}


def test_overall_reads_only_the_details_it_names_and_scores_the_same_on_them():
    """The plan keeps of each label detector's details only the keys overall reads."""
    points, true = blobs(per_class=60, classes=3)
    noisy, _ = flip(true, 9, 3)
    probs = np.full((180, 3), 0.1)
    probs[np.arange(180), true] = 0.8
    full, cut = (make_inputs(noisy, points, pred_probs=probs) for _ in range(2))
    for name in ("label_issue", "knn_label"):
        frame = REGISTRY[name]().run(full, {}, quiet)
        full.prior_scores[name] = frame
        cut.prior_scores[name] = with_details_cut(frame, set(REGISTRY["overall"].reads_details))
    kept = [d for d in cut.prior_scores["label_issue"]["details"] if d]
    assert kept and all(set(d) <= {"suggested_label", "suggested_confidence"} for d in kept)
    assert "reason" in full.prior_scores["label_issue"]["details"].iloc[0]
    on_full, on_cut = (REGISTRY["overall"]().run(inputs, {}, quiet) for inputs in (full, cut))
    assert on_full["is_issue"].sum() >= 5 and on_full.equals(on_cut)


def test_suggestion_is_the_most_proposed_label():
    """Per sample (a column of each detector's details): the most proposed label, the first
    proposed among ties, with the mean confidence of the detectors proposing it."""
    by_detector = [
        [{"suggested_label": "dog", "suggested_confidence": 0.6}, None,
         {"suggested_label": "cat", "suggested_confidence": 0.2}, None],
        [{"suggested_label": "cat", "suggested_confidence": 0.9}, None,
         {"suggested_label": "dog", "suggested_confidence": 0.4}, {"reason": "agrees"}],
        [{"suggested_label": "dog", "suggested_confidence": 0.8}, {"suggested_label": "cow"},
         None, None],
    ]
    labels, confidences = suggestions(by_detector)
    assert labels == ["dog", "cow", "cat", None]
    assert confidences == [0.7, None, 0.2, None]


def test_manual_weights_and_threshold_align_by_sample_id():
    inputs = make_inputs(np.array([0, 0, 1]))
    ids = inputs.sample_ids
    inputs.prior_scores["knn_label"] = prior(ids[::-1], [0.9, 0.1, 0.05], [False, True, True],
                                             ["class1", "class1", "class1"])
    inputs.prior_scores["label_issue"] = prior(ids, [0.1, 0.2, 0.9], [True, False, False],
                                               ["class1", "class1", "class1"])
    detector = REGISTRY["overall"]()
    assert detector.missing_requirements(inputs) is None
    params = {"weights": {"label_issue": 1.0, "knn_label": 1.0}, "threshold": 0.2}
    frame = detector.run(inputs, params, quiet)
    assert np.allclose(frame["score"], [0.075, 0.15, 0.9])
    assert frame["is_issue"].tolist() == [True, True, False]
    first = frame.iloc[0]["details"]
    assert first["flagged_by"] == ["label_issue", "knn_label"]
    assert first["suggested_label"] == "class1"
    assert "suggested_label" not in frame.iloc[2]["details"]        # agrees with the given label


def test_in_sample_signals_do_not_weigh_in_when_a_held_out_one_ran():
    inputs = make_inputs(np.array([0, 1, 0, 1]))
    ids = inputs.sample_ids
    inputs.prior_scores["label_issue"] = prior(ids, [0.9, 0.8, 0.2, 0.7], [False] * 4)
    inputs.prior_scores["training_dynamics"] = prior(ids, [0.99] * 4, [False] * 4)
    frame = REGISTRY["overall"]().run(inputs, {}, quiet)
    assert np.allclose(frame["score"], [0.9, 0.8, 0.2, 0.7])


def test_skipped_with_a_reason_when_no_label_detector_ran():
    reason = REGISTRY["overall"]().missing_requirements(make_inputs(np.array([0, 1])))
    assert "label_issue" in reason and "none ran" in reason


def test_strong_supplied_pred_probs_are_not_diluted_by_weak_embeddings():
    """Good pred_probs with meaningless embeddings: overall ranks as well as label_issue."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    true = rng.integers(0, 4, 1200)
    noisy, flipped = flip(true, 120, 4, seed=6)
    probs = rng.dirichlet(np.ones(4) * 0.5, 1200) * 0.3
    probs[np.arange(1200), true] += 0.7
    noise = rng.normal(size=(1200, 16))
    inputs = make_inputs(noisy, noise / np.linalg.norm(noise, axis=1, keepdims=True),
                         pred_probs=probs)
    for name in ("label_issue", "knn_label"):
        inputs.prior_scores[name] = REGISTRY[name]().run(inputs, {}, quiet)
    detector = REGISTRY["overall"]()
    frame = detector.run(inputs, {}, quiet)
    truth = np.isin(np.arange(1200), flipped)
    auroc = {name: roc_auc_score(truth, -inputs.prior_scores[name]["score"])
             for name in ("label_issue", "knn_label")}
    assert auroc["knn_label"] < auroc["label_issue"] - 0.02      # the neighbours add little
    assert roc_auc_score(truth, -frame["score"]) >= auroc["label_issue"] - 0.005
    assert detector.summary["weights"]["label_issue"] > 0.8
