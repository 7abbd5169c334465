"""label_issue: confident learning on out-of-sample predicted probabilities (cleanlab).

``is_issue`` comes from ``cleanlab.filter.find_label_issues`` (Northcutt et al. 2021: per-class
thresholds, the confident joint, pruning by the estimated noise rate); ``score`` is
``cleanlab.rank.get_label_quality_scores`` (self-confidence by default, or normalized margin).
The suggested label is the class the out-of-sample model believes most.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.detectors.base import (Detector, DetectorInputs, Progress, register, result_frame,
                                  rounded)

TOP_CLASSES = 3


def label_quality(labels: np.ndarray, pred_probs: np.ndarray,
                  method: str = "self_confidence") -> np.ndarray:
    """cleanlab's label quality score per example, in [0, 1], lower = more likely mislabelled."""
    from cleanlab.rank import get_label_quality_scores

    scores = get_label_quality_scores(labels, pred_probs, method=method)
    return np.clip(scores, 0.0, 1.0)


def confident_learning_issues(labels: np.ndarray, pred_probs: np.ndarray,
                              filter_by: str = "prune_by_noise_rate") -> np.ndarray:
    """cleanlab's boolean mask of label issues (confident learning). ``n_jobs=1``: no forked
    pool inside a worker that already runs torch threads (fork + threads can deadlock)."""
    from cleanlab.filter import find_label_issues

    mask = find_label_issues(labels, pred_probs, filter_by=filter_by, n_jobs=1)
    return np.asarray(mask, dtype=bool)


def top_classes(probs: np.ndarray, class_names: list[str], count: int = TOP_CLASSES) -> list:
    """The ``count`` most probable classes of one row as ``[[name, prob], ...]``."""
    return top_classes_of_rows(probs[None, :], class_names, count)[0]


def top_classes_of_rows(pred_probs: np.ndarray, class_names: list[str],
                        count: int = TOP_CLASSES) -> list[list]:
    """``top_classes`` of every row, names and rounded probabilities taken from the arrays
    whole, then paired per row."""
    top = np.argsort(-pred_probs, axis=1)[:, :count]
    names = np.asarray(class_names, dtype=object)[top].tolist()
    probs = rounded(np.take_along_axis(pred_probs, top, 1)).tolist()
    return [[[name, p] for name, p in zip(row_names, row_probs)]
            for row_names, row_probs in zip(names, probs)]


def label_details(labels: np.ndarray, pred_probs: np.ndarray, class_names: list[str]) -> list[dict]:
    """Per-example details: the reason in words, the suggestion and the top classes (the
    numbers taken from the arrays whole, then one dict per row)."""
    rows = np.arange(len(labels))
    best = pred_probs.argmax(axis=1)
    return [_one_detail(class_names, given, suggested, confidence, given_prob, top)
            for given, suggested, confidence, given_prob, top in zip(
                labels.tolist(), best.tolist(), pred_probs[rows, best].astype(float).tolist(),
                pred_probs[rows, labels].astype(float).tolist(),
                top_classes_of_rows(pred_probs, class_names))]


def _one_detail(class_names: list[str], given: int, best: int, best_prob: float,
                given_prob: float, top: list) -> dict:
    if best == given:
        reason = f"the model agrees with the given label '{class_names[given]}' ({best_prob:.0%})"
    else:
        reason = (f"given label '{class_names[given]}' ({given_prob:.0%}) but the model puts "
                  f"{best_prob:.0%} on '{class_names[best]}'")
    return {"reason": reason, "suggested_label": class_names[best],
            "suggested_confidence": round(best_prob, 4), "top_classes": top}


@register
class LabelIssue(Detector):
    name = "label_issue"
    family = "label"
    suggests_labels = True
    requires = frozenset({"labels", "pred_probs"})
    belief = "held_out"
    params = {"method": "self_confidence", "filter_by": "prune_by_noise_rate"}
    description = ("Confident learning (cleanlab) on out-of-sample predicted probabilities: "
                   "examples whose given label the model finds unlikely.")

    def score(self, inputs: DetectorInputs, params: dict, progress: Progress) -> pd.DataFrame:
        labels, probs = inputs.labels, inputs.pred_probs
        progress(0.1, "ranking label quality")
        scores = label_quality(labels, probs, params["method"])
        progress(0.5, "finding label issues with confident learning")
        is_issue = confident_learning_issues(labels, probs, params["filter_by"])
        details = label_details(labels, probs, inputs.class_names)
        progress(1.0, f"{int(is_issue.sum())} label issues")
        return result_frame(inputs, scores, is_issue, details)
