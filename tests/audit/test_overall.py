"""overall: the weighted mean of whichever label detectors ran, its threshold and suggestion."""

import numpy as np
import pandas as pd

from audit.detectors import REGISTRY
from audit.detectors.overall import combine_scores, suggestion
from tests.audit.detector_inputs import make_inputs, quiet


def prior(ids, scores, flags, suggested=None) -> pd.DataFrame:
    details = [{"reason": "x", **({"suggested_label": s, "suggested_confidence": 0.8} if s else {})}
               for s in (suggested or [None] * len(ids))]
    return pd.DataFrame({"sample_id": ids, "score": scores, "is_issue": flags, "details": details})


def test_combined_score_is_the_weighted_mean():
    combined = combine_scores({"a": np.array([0.0, 1.0]), "b": np.array([1.0, 1.0])},
                              {"a": 3.0, "b": 1.0})
    assert np.allclose(combined, [0.25, 1.0])


def test_suggestion_is_the_most_proposed_label():
    details = [{"suggested_label": "dog", "suggested_confidence": 0.6},
               {"suggested_label": "cat", "suggested_confidence": 0.9},
               {"suggested_label": "dog", "suggested_confidence": 0.8}, None]
    assert suggestion(details) == ("dog", 0.7)


def test_runs_with_the_detectors_present_and_aligns_by_sample_id():
    inputs = make_inputs(np.array([0, 0, 1]))
    ids = inputs.sample_ids
    inputs.prior_scores["knn_label"] = prior(ids[::-1], [0.9, 0.1, 0.05], [False, True, True],
                                             ["class1", "class1", "class1"])
    inputs.prior_scores["label_issue"] = prior(ids, [0.1, 0.2, 0.9], [True, False, False],
                                               ["class1", "class1", "class1"])
    detector = REGISTRY["overall"]()
    assert detector.missing_requirements(inputs) is None
    frame = detector.score(inputs, {}, quiet)
    assert np.allclose(frame["score"], [0.075, 0.15, 0.9])
    assert frame["is_issue"].tolist() == [True, True, False]
    first = frame.iloc[0]["details"]
    assert first["flagged_by"] == ["label_issue", "knn_label"]
    assert first["suggested_label"] == "class1"
    assert "suggested_label" not in frame.iloc[2]["details"]        # agrees with the given label


def test_skipped_with_a_reason_when_no_label_detector_ran():
    reason = REGISTRY["overall"]().missing_requirements(make_inputs(np.array([0, 1])))
    assert "label_issue" in reason and "none ran" in reason
