"""audit.run_trust: the first page's facts and the weak-signal rule, from a run's summary."""

from __future__ import annotations

import json

import pytest

from audit.run_trust import WEAK_AGREEMENT, run_trust, stronger_signal_commands

STRONG = {
    "embedder": {"name": "imagenet", "model_id": "efficientnet-lite0", "asked_for": "auto",
                 "why": None},
    "pred_probs": {"source": "supplied", "agreement_with_labels": 0.88},
    "overall": {"estimated_label_errors": 40, "interval_90": [31, 52], "flagged": 40,
                "weights": {"label_issue": 1.0}},
}


def _run(summary: dict | None, model_ids: dict | None = None) -> dict:
    """A ``runs`` row as ``get_run`` returns it: JSON text, or NULL."""
    return {"summary": None if summary is None else json.dumps(summary),
            "model_ids": None if model_ids is None else json.dumps(model_ids)}


def _with(section: str, **changes) -> dict:
    return {**STRONG, section: {**STRONG[section], **changes}}


def test_a_strong_run_states_its_facts_without_advice():
    trust = run_trust(_run(STRONG))
    assert trust.facts == [
        "Embedder: imagenet (efficientnet-lite0), asked for auto.",
        "Supplied pred_probs agree with the given labels on 88.0% of samples.",
        "Estimated label errors: 40 (90% interval 31 to 52); overall flags 40; "
        "signal weights label_issue 1.00."]
    assert not trust.weak and trust.advice is None


@pytest.mark.parametrize("summary, reason", [
    (_with("embedder", name="pixels"), "embedded with pixels"),
    (_with("pred_probs", agreement_with_labels=WEAK_AGREEMENT - 0.01), "match only 69.0%"),
    (_with("overall", interval_90=[5, 90]), "(5 to 90) is wider than the estimate"),
])
def test_each_weak_signal_alone_brings_the_advice(summary, reason):
    trust = run_trust(_run(summary))
    assert len(trust.weak_reasons) == 1 and reason in trust.weak_reasons[0]
    assert trust.advice.startswith("The signal is weak: ") and "pred_probs" in trust.advice


def test_a_narrow_interval_on_a_small_count_is_not_wide():
    assert not run_trust(_run(_with("overall", estimated_label_errors=2,
                                    interval_90=[0, 9]))).weak


def test_an_old_run_without_summary_says_only_what_it_recorded():
    assert run_trust(_run(None)).facts == []
    supplied = run_trust(_run(None, {"embedder": "supplied:emb.npy"}))
    assert supplied.facts == ["Embeddings: supplied:emb.npy."] and not supplied.weak


def test_commands_quote_the_dataset_name():
    commands = stronger_signal_commands("my data; rm -rf x")
    assert commands[1] == "python -m audit run 'my data; rm -rf x' --pred-probs probs.npy"


def test_pixels_chosen_by_auto_on_measured_agreement_is_not_called_weak():
    chosen = {"embedder": {"name": "pixels", "asked_for": "auto", "why": "pixels chosen",
                           "label_agreement": {"imagenet": 0.879, "pixels": 0.921, "z": 7.0,
                                               "rows": 2000}}}
    assert not run_trust({"summary": json.dumps(chosen)}).weak
    asked = {"embedder": {"name": "pixels", "asked_for": "pixels"}}
    assert run_trust({"summary": json.dumps(asked)}).weak
