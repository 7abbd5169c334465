"""overall: one ranking of label problems that combines the label-type detectors that ran.

Formula (the same in docs/benchmarks.md, "Detection quality"):

    score    = sum_d w_d * s_d / sum_d w_d     over the detectors d in LABEL_DETECTORS that ran
    is_issue = score < threshold

Every ``s_d`` is already an estimate of "how much the given label is believed", in [0, 1]:
label_issue's self-confidence, knn_label's neighbour share of the given label,
training_dynamics' mean of its AUM and EL2N scores. The weights and the threshold are params;
their defaults were tuned on the demo and CIFAR-10N ``aggre_label`` only (see the benchmark).
The suggested label is the one proposed by the most detectors (ties: the first listed).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from audit.detectors.base import Detector, DetectorInputs, Progress, register, result_frame

LABEL_DETECTORS = ("label_issue", "knn_label", "training_dynamics")


def combine_scores(scores: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Weighted mean of the available detectors' scores."""
    total = sum(weights[name] for name in scores)
    return sum(weights[name] * values for name, values in scores.items()) / total


def aligned(frame: pd.DataFrame, sample_ids: list[str]) -> pd.DataFrame:
    """A detector's result in the row order of ``sample_ids``."""
    return frame.set_index("sample_id").reindex(sample_ids)


def suggestion(details: list[dict | None]) -> tuple[str | None, float | None]:
    """The most proposed label among the detectors' details, and its mean confidence."""
    proposals = [(d["suggested_label"], d.get("suggested_confidence"))
                 for d in details if d and d.get("suggested_label") is not None]
    if not proposals:
        return None, None
    label = Counter(name for name, _ in proposals).most_common(1)[0][0]
    confidences = [c for name, c in proposals if name == label and c is not None]
    return label, (round(float(np.mean(confidences)), 4) if confidences else None)


def overall_details(frames: dict[str, pd.DataFrame], score: np.ndarray,
                    flagged_by: np.ndarray, given: list[str]) -> list[dict]:
    names = list(frames)
    columns = [frames[name]["details"].tolist() for name in names]
    return [_one_detail(i, names, [col[i] for col in columns], score[i], flagged_by[i], given[i])
            for i in range(len(score))]


def _one_detail(row, names, details, score, flagged, given) -> dict:
    label, confidence = suggestion(details)
    voters = [name for name, hit in zip(names, flagged) if hit]
    reason = (f"flagged by {', '.join(voters)}" if voters else "no label detector flags it")
    reason += f"; combined belief in the given label '{given}' is {score:.0%}"
    detail = {"reason": reason, "flagged_by": voters}
    if label is not None and label != given:
        detail.update(suggested_label=label, suggested_confidence=confidence)
    return detail


@register
class Overall(Detector):
    name = "overall"
    after = LABEL_DETECTORS
    params = {"weights": {"label_issue": 1.0, "knn_label": 1.0, "training_dynamics": 1.0},
              "threshold": 0.2}
    description = ("One ranking of likely label problems: the weighted mean of the label "
                   "detectors' scores (label_issue, knn_label, training_dynamics).")

    def missing_requirements(self, inputs: DetectorInputs) -> str | None:
        if not any(name in inputs.prior_scores for name in LABEL_DETECTORS):
            return f"needs at least one of {', '.join(LABEL_DETECTORS)}, and none ran"
        return None

    def score(self, inputs: DetectorInputs, params: dict, progress: Progress) -> pd.DataFrame:
        params = {**self.params, **params}
        weights = {**self.params["weights"], **params["weights"]}
        frames = {name: aligned(inputs.prior_scores[name], inputs.sample_ids)
                  for name in LABEL_DETECTORS if name in inputs.prior_scores}
        scores = {name: frame["score"].to_numpy(dtype=float) for name, frame in frames.items()}
        score = np.clip(combine_scores(scores, weights), 0.0, 1.0)
        flagged = np.stack([f["is_issue"].fillna(False).to_numpy(bool) for f in frames.values()], 1)
        given = [inputs.class_names[c] for c in inputs.labels]
        details = overall_details(frames, score, flagged, given)
        return result_frame(inputs, score, score < params["threshold"], details)
