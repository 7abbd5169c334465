"""How far a finished run can be trusted, in words, from what it measured about itself.

``runs.summary`` (see ``audit/plan.py``) records the embedder that ran and why, how well the
pred_probs explain the given labels, the ``overall`` estimate of the number of label errors and,
when the run started from reviewed decisions, their counts. ``run_trust`` turns that into the
lines the Explore page shows first, and says when the signal is weak and what would make it
stronger. Every line is plain text: dataset strings in it (a model path, a dataset name) are
for the caller to render escaped.
"""

from __future__ import annotations

import dataclasses
import json
import shlex

WEAK_AGREEMENT = 0.7            # pred_probs whose argmax matches fewer of the given labels
WEIGHT_FREE_EMBEDDERS = ("pixels", "cnn")   # no pretrained weights: a weak signal
WIDE_INTERVAL_MIN = 10          # an interval this narrow is never called wide


@dataclasses.dataclass(frozen=True)
class RunTrust:
    facts: list[str]            # what the run measured, one sentence each
    weak_reasons: list[str]     # why the signal is weak; empty when it is not

    @property
    def weak(self) -> bool:
        return bool(self.weak_reasons)

    @property
    def advice(self) -> str | None:
        """Why the signal is weak and what to do about it (``stronger_signal_commands``)."""
        if not self.weak:
            return None
        return (f"The signal is weak: {'; '.join(self.weak_reasons)}. Treat the flags with "
                "care; for a stronger signal, audit with a better embedder (CLIP with its "
                "weights) or supply your own model's out-of-sample pred_probs:")


def run_trust(run: dict) -> RunTrust:
    """The facts and weak-signal reasons of a ``runs`` row (``audit.store.runs.get_run``)."""
    summary, model_ids = _parsed(run.get("summary")), _parsed(run.get("model_ids"))
    facts = [_embedder_fact(summary.get("embedder"), model_ids), _pred_probs_fact(summary),
             _estimate_fact(summary.get("overall")), _decisions_fact(summary.get("decisions"))]
    return RunTrust([f for f in facts if f], _weak_reasons(summary))


def stronger_signal_commands(dataset_name: str) -> list[str]:
    """What to run for a stronger signal: a pretrained CLIP embedder, or the user's own
    out-of-sample pred_probs (README: "your own model's out-of-sample probabilities")."""
    name = shlex.quote(dataset_name)
    return [f"python -m audit run {name} --embedder clip --clip-pretrained PATH_TO_WEIGHTS",
            f"python -m audit run {name} --pred-probs probs.npy"]


def _parsed(value) -> dict:
    if isinstance(value, dict):
        return value
    return json.loads(value) if isinstance(value, str) and value else {}


def _embedder_fact(embedder: dict | None, model_ids: dict) -> str | None:
    if not embedder:
        supplied = model_ids.get("embedder")
        return f"Embeddings: {supplied}." if supplied else None
    text = f"Embedder: {embedder['name']} ({embedder.get('model_id') or 'no model id'})"
    asked_for = embedder.get("asked_for")
    if asked_for and asked_for != embedder["name"]:
        text += f", asked for {asked_for}"
    if embedder.get("why"):
        text += f"; why: {embedder['why']}"
    return text + "."


def _pred_probs_fact(summary: dict) -> str | None:
    pred_probs = summary.get("pred_probs")
    if not pred_probs:
        return None
    agreement = pred_probs["agreement_with_labels"]
    if pred_probs.get("source") == "supplied":
        return f"Supplied pred_probs agree with the given labels on {agreement:.1%} of samples."
    return (f"Probe ({pred_probs.get('source', 'cross-fitted')}): cross-validated accuracy "
            f"against the given labels {agreement:.1%}.")


def _estimate_fact(overall: dict | None) -> str | None:
    if not overall or "estimated_label_errors" not in overall:
        return None
    low, high = overall.get("interval_90", [None, None])
    text = f"Estimated label errors: {overall['estimated_label_errors']:,}"
    if low is not None:
        text += f" (90% interval {low:,} to {high:,})"
    if "flagged" in overall:
        text += f"; overall flags {overall['flagged']:,}"
    weights = overall.get("weights") or {}
    if weights:
        text += "; signal weights " + ", ".join(f"{n} {w:.2f}" for n, w in weights.items())
    return text + "."


def _decisions_fact(decisions: dict | None) -> str | None:
    if not decisions:
        return None
    return (f"Started from the reviewed decisions up to log entry {decisions.get('through_id')}: "
            f"{decisions.get('relabelled', 0):,} relabelled, {decisions.get('removed', 0):,} "
            f"removed, {decisions.get('kept', 0):,} kept.")


def _weak_reasons(summary: dict) -> list[str]:
    reasons = []
    embedder = summary.get("embedder") or {}
    if embedder.get("name") in WEIGHT_FREE_EMBEDDERS and not _measured_better(embedder):
        reasons.append(f"the images were embedded with {embedder['name']}, which has no "
                       "pretrained weights")
    agreement = (summary.get("pred_probs") or {}).get("agreement_with_labels")
    if agreement is not None and agreement < WEAK_AGREEMENT:
        reasons.append(f"the pred_probs match only {agreement:.1%} of the given labels "
                       f"(below {WEAK_AGREEMENT:.0%}), so many flags may be the model's mistakes")
    overall = summary.get("overall") or {}
    if _interval_is_wide(overall):
        low, high = overall["interval_90"]
        reasons.append(f"the estimate's 90% interval ({low:,} to {high:,}) is wider than the "
                       "estimate itself")
    return reasons


def _measured_better(embedder: dict) -> bool:
    """``auto`` keeps weight-free vectors only when their neighbours agree with the labels
    measurably more than the pretrained ones' (audit.embedders.auto_choice): not a weakness."""
    return embedder.get("asked_for") == "auto" and bool(embedder.get("label_agreement"))


def _interval_is_wide(overall: dict) -> bool:
    if "interval_90" not in overall or "estimated_label_errors" not in overall:
        return False
    low, high = overall["interval_90"]
    return high - low > max(overall["estimated_label_errors"], WIDE_INTERVAL_MIN)
