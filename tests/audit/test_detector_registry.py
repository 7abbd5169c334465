"""The registry's facts: every detector declares what it judges, and the catalogue lists them."""

from __future__ import annotations

import pytest

from audit.detectors import FAMILIES, REGISTRY, base, catalogue


def test_register_refuses_a_detector_without_a_family(monkeypatch):
    monkeypatch.setattr(base, "REGISTRY", {})

    class Nameless(base.Detector):
        name = "no_family"

    with pytest.raises(ValueError, match="no_family.*needs a family, one of label"):
        base.register(Nameless)
    assert base.REGISTRY == {}


def test_the_catalogue_lists_every_detector_with_its_facts():
    facts = {d["name"]: d for d in catalogue()}
    assert list(facts) == sorted(REGISTRY)
    assert {d["family"] for d in facts.values()} <= set(FAMILIES)
    assert {n for n, d in facts.items() if d["family"] == "label"} == {
        "label_issue", "knn_label", "training_dynamics", "overall"}
    assert {n for n, d in facts.items() if d["suggests_labels"]} == {
        "label_issue", "knn_label", "overall", "vl_consistency"}
    assert facts["vl_consistency"]["requires"] == ["clip"]
    assert facts["overall"]["after"] == ["label_issue", "knn_label", "training_dynamics"]
