"""Export rules on a real store: decisions, flags, suggestions, duplicates, leakage, weights.

The small dataset (tests/audit/test_export_support.py) has 12 samples s00..s11: even = cat,
odd = dog; i % 3 == 2 is test (s02 s05 s08 s11), the rest train.
"""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from audit.errors import ConfigError, NotFoundError
from audit.export import ExportRules, plan_export, preview_export
from audit.export.outcomes import duplicate_members
from audit.export.rules import check_format, split_rule_text
from audit.store.exports import duplicate_sets
from audit.store.flags import Decision, record_decisions
from audit.store.runs import create_run, finish_run
from tests.audit.test_export_support import ingest_small, succeeded_run


@pytest.fixture
def small(store, settings, tmp_path) -> int:
    return ingest_small(store, settings, tmp_path / "src")


def _actions(plan: pd.DataFrame) -> dict[str, tuple[str, str]]:
    changed = plan[plan["action"] != "keep"]
    return {r.sample_id: (r.action, r.new_label) for r in changed.itertuples()}


def _row(plan: pd.DataFrame, sample_id: str) -> pd.Series:
    return plan.set_index("sample_id").loc[sample_id]


@pytest.mark.reliability
def test_reviewed_decisions_latest_wins_and_undo_withdraws(store, small) -> None:
    record_decisions(store, small, [
        Decision("s01", "remove", note="blurry"),
        Decision("s02", "relabel", "dog"), Decision("s02", "undo"),
        Decision("s03", "remove"), Decision("s03", "keep"),
        Decision("s04", "relabel", "bird"),
        Decision("s05", "relabel", "dog"),
    ])
    plan = plan_export(store, small, ExportRules())
    assert _actions(plan) == {"s01": ("remove", "dog"), "s04": ("relabel", "bird")}
    assert _row(plan, "s01")["reason"] == "removed by reviewer: blurry"
    assert _row(plan, "s04")["reason"] == "relabelled by reviewer: 'cat' -> 'bird'"
    assert _row(plan, "s03")["reason"] == "kept by reviewer"
    preview = preview_export(store, small, ExportRules())
    assert preview.by_class.values.tolist() == [
        ["train", "bird", 0, 0, 0, 0, 1, 1, 0],
        ["train", "cat", 4, 3, 0, 1, 0, 3, 0],
        ["train", "dog", 4, 3, 1, 0, 0, 3, 0],
        ["test", "cat", 2, 2, 0, 0, 0, 2, 0],
        ["test", "dog", 2, 2, 0, 0, 0, 2, 0],
    ]
    assert preview.by_split.values.tolist() == [["train", 8, 1, 1, 0, 7, 7],
                                                ["test", 4, 0, 0, 0, 4, 4]]
    assert preview.by_rule.values.tolist() == [
        ["train", "reviewer", 1, 1, 0, 1], ["train", "none", 0, 0, 0, 5],
        ["test", "reviewer", 0, 0, 0, 1], ["test", "none", 0, 0, 0, 3],
    ]


def test_only_chosen_splits_are_planned(store, small) -> None:
    plan = plan_export(store, small, ExportRules(splits=["test"]))
    assert plan["sample_id"].tolist() == ["s02", "s05", "s08", "s11"]


def _suggest(label: str, confidence: float) -> dict:
    return {"suggested_label": label, "suggested_confidence": confidence}


def _flag_run(store, dataset_id: int) -> int:
    return succeeded_run(store, dataset_id, [
        ("s00", "outlier", 0.10, True, {"reason": "far"}),
        ("s01", "outlier", 0.20, True, {"reason": "far"}),
        ("s03", "outlier", 0.35, False, {"reason": "near"}),
        ("s04", "outlier", 0.90, False, None),
        ("s06", "image_quality", 0.05, True, {"reason": "dark"}),
        ("s07", "outlier", 0.15, True, None),
        ("s07", "label_issue", 0.02, True, _suggest("cat", 0.95)),
        ("s07", "knn_label", 0.20, True, _suggest("cat", 0.60)),
        ("s07", "training_dynamics", 0.10, True, {"reason": "low margin"}),
        ("s09", "label_issue", 0.04, True, _suggest("cat", 0.70)),
        ("s10", "label_issue", 0.03, True, _suggest("cat", 0.99)),
    ])


def test_flagged_by_chosen_detectors_unless_kept(store, small) -> None:
    _flag_run(store, small)
    record_decisions(store, small, [Decision("s00", "keep")])
    only_outlier = plan_export(store, small, ExportRules(include_flagged=True, detectors=["outlier"]))
    assert set(_actions(only_outlier)) == {"s01", "s07"}
    assert _row(only_outlier, "s01")["reason"] == "flagged by outlier (score 0.200)"
    assert _row(only_outlier, "s00")["reason"] == (
        "kept by reviewer (overrides: flagged by outlier (score 0.100))")
    below = plan_export(store, small, ExportRules(include_flagged=True, detectors=["outlier"],
                                                  threshold=0.4))
    assert set(_actions(below)) == {"s01", "s03", "s07"}
    every = plan_export(store, small, ExportRules(include_flagged=True))
    assert set(_actions(every)) == {"s01", "s06", "s07", "s09", "s10"}
    assert _row(every, "s07")["reason"] == (
        "flagged by knn_label (score 0.200), label_issue (score 0.020), outlier (score 0.150), "
        "training_dynamics (score 0.100)")


def test_suggested_labels_replace_label_issue_drops(store, small) -> None:
    _flag_run(store, small)
    relabel_only = plan_export(store, small, ExportRules(apply_suggested=0.9))
    assert _actions(relabel_only) == {"s07": ("relabel", "cat")}
    assert _row(relabel_only, "s07")["reason"] == (
        "suggested label 'cat' (confidence 0.950) replaces 'dog'")
    with_flags = plan_export(store, small, ExportRules(
        include_flagged=True, detectors=["label_issue"], apply_suggested=0.9))
    assert _actions(with_flags) == {"s07": ("relabel", "cat"), "s09": ("remove", "dog"),
                                    "s10": ("remove", "cat")}
    label_type = plan_export(store, small, ExportRules(
        include_flagged=True, detectors=["label_issue", "knn_label", "training_dynamics"],
        apply_suggested=0.9))
    assert _actions(label_type) == {"s07": ("relabel", "cat"), "s09": ("remove", "dog"),
                                    "s10": ("remove", "cat")}
    outlier_too = plan_export(store, small, ExportRules(
        include_flagged=True, detectors=["label_issue", "outlier"], apply_suggested=0.9))
    assert _row(outlier_too, "s07")["action"] == "remove"
    assert _row(outlier_too, "s07")["reason"] == "flagged by outlier (score 0.150)"


def _duplicate_run(store, dataset_id: int) -> int:
    return succeeded_run(store, dataset_id, [
        ("s00", "near_duplicate", 0.1, True, {"set_id": "A", "leak": False}),
        ("s04", "near_duplicate", 0.1, True, {"set_id": "A", "leak": False}),
        ("s06", "near_duplicate", 0.1, True, {"set_id": "A", "duplicate_of": ["s00"]}),
        ("s01", "near_duplicate", 0.1, True, {"set_id": "B", "leak": True}),
        ("s05", "near_duplicate", 0.1, True, {"set_id": "B", "leak": True}),
        ("s11", "near_duplicate", 0.1, True, {"duplicate_of": ["s05"], "leak": True}),
        ("s09", "near_duplicate", 0.1, True, {"duplicate_of": ["s03"]}),
        ("s02", "near_duplicate", 0.9, False, {"reason": "unique"}),
    ])


def test_duplicate_sets_join_through_set_ids_and_links(store, small) -> None:
    run_id = _duplicate_run(store, small)
    members = duplicate_members(duplicate_sets(store, run_id, ["near_duplicate"]))
    assert dict(zip(members["sample_id"], members["set_id"])) == {
        "s00": "A", "s04": "A", "s06": "A", "s01": "B", "s05": "B", "s11": "B",
        "s03": "of s03", "s09": "of s03",
    }


def test_dedupe_keeps_one_per_split_and_leakage_drops_the_chosen_side(store, small) -> None:
    _duplicate_run(store, small)
    record_decisions(store, small, [Decision("s04", "keep")])
    train_only = plan_export(store, small, ExportRules(dedupe=True))
    assert set(_actions(train_only)) == {"s00", "s06", "s09"}
    deduped = plan_export(store, small, ExportRules(dedupe=True, auto_splits=["train", "test"]))
    assert set(_actions(deduped)) == {"s00", "s06", "s11", "s09"}
    assert _row(deduped, "s09")["reason"] == "near-duplicate of 's03' (set of s03)"
    assert _row(deduped, "s00")["reason"] == "near-duplicate of 's04' (set A)"
    test_side = plan_export(store, small, ExportRules(leakage="test"))
    assert set(_actions(test_side)) == {"s05", "s11"}
    assert _row(test_side, "s05")["reason"] == (
        "train/test leak: near-duplicate set B spans train and test; removed from the test side")
    train_side = plan_export(store, small, ExportRules(leakage="train", dedupe=True,
                                                       auto_splits=["train", "test"]))
    assert set(_actions(train_side)) == {"s01", "s11", "s00", "s06", "s09"}


def test_weights_follow_the_documented_formula(store, small) -> None:
    succeeded_run(store, small, [
        ("s00", "outlier", 0.10, True, None), ("s01", "outlier", 0.30, True, None),
        ("s02", "outlier", 0.90, False, None), ("s01", "image_quality", 0.20, True, None),
        ("s02", "image_quality", 0.50, True, None), ("s05", "outlier", 0.60, False, None),
        ("s04", "label_issue", 0.05, True, _suggest("dog", 0.8)),
    ])
    record_decisions(store, small, [Decision("s00", "keep"), Decision("s03", "remove")])
    plan = plan_export(store, small, ExportRules(weights=True, apply_suggested=0.75,
                                                 auto_splits=["train", "test"]))
    weights = dict(zip(plan["sample_id"], plan["sample_weight"]))
    assert len(plan) == 12
    assert weights == pytest.approx({
        "s00": 1.0, "s01": 0.2, "s02": 0.5, "s03": 0.0, "s04": 0.8, "s05": 1.0,
        "s06": 1.0, "s07": 1.0, "s08": 1.0, "s09": 1.0, "s10": 1.0, "s11": 1.0})
    train_only = plan_export(store, small, ExportRules(weights=True, apply_suggested=0.75))
    weights = dict(zip(train_only["sample_id"], train_only["sample_weight"]))
    assert (weights["s01"], weights["s02"]) == (pytest.approx(0.2), 1.0)  # s02 is in test
    scaled = plan_export(store, small, ExportRules(weights=True, detectors=["outlier"],
                                                   threshold=0.4, include_flagged=True))
    weights = dict(zip(scaled["sample_id"], scaled["sample_weight"]))
    assert (weights["s00"], weights["s01"], weights["s02"], weights["s03"]) == (1.0, 0.0, 1.0, 0.0)
    assert weights["s05"] == 1.0
    soft = plan_export(store, small, ExportRules(weights=True, detectors=["outlier"],
                                                 threshold=0.4))
    assert dict(zip(soft["sample_id"], soft["sample_weight"]))["s01"] == pytest.approx(0.75)


@pytest.mark.parametrize("kwargs, words", [
    ({"threshold": 1.5}, "threshold 1.5 is not a number in [0, 1]"),
    ({"apply_suggested": math.nan}, "apply_suggested nan is not a number in [0, 1]"),
    ({"leakage": "both"}, "leakage 'both' is not one of ['keep', 'test', 'train']"),
    ({"splits": ["dev"]}, "split 'dev' is not one of ['train', 'val', 'test']"),
    ({"detectors": "outlier"}, "detectors 'outlier' must be a non-empty list"),
    ({"detectors": []}, "detectors [] must be a non-empty list"),
    ({"run_id": 0}, "run_id 0 is not a run id"),
    ({"auto_splits": ["dev"]}, "split 'dev' is not one of ['train', 'val', 'test']"),
    ({"auto_splits": "train"}, "auto_splits 'train' must be a list of split names"),
    ({"apply_suggested": "sure"}, "apply_suggested 'sure' is not a number in [0, 1]"),
])
def test_bad_rules_name_the_value(kwargs, words) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(words)):
        ExportRules(**kwargs)


def test_bad_formats_are_refused() -> None:
    with pytest.raises(ConfigError, match="format 'zip' is not one of"):
        check_format("zip", ExportRules())
    with pytest.raises(ConfigError, match="cannot carry sample weights"):
        check_format("imagefolder", ExportRules(weights=True))


def test_rules_are_checked_against_the_store(store, small) -> None:
    with pytest.raises(ConfigError, match="no succeeded audit run.*python -m audit run small"):
        plan_export(store, small, ExportRules(include_flagged=True))
    with pytest.raises(ConfigError, match="has no 'val' split; it has test, train"):
        plan_export(store, small, ExportRules(splits=["val"]))
    failed = create_run(store, small, {})
    finish_run(store, failed, "failed", error="boom")
    with pytest.raises(ConfigError, match=f"run {failed} is failed, not succeeded"):
        plan_export(store, small, ExportRules(run_id=failed))
    with pytest.raises(NotFoundError, match="has no run 999"):
        plan_export(store, small, ExportRules(run_id=999))
    run_id = _flag_run(store, small)
    with pytest.raises(ConfigError, match=r"no scores from \['nope'\]; choose among "
                                          r"\['image_quality', 'knn_label', 'label_issue', "
                                          r"'outlier', 'training_dynamics'\]"):
        plan_export(store, small, ExportRules(include_flagged=True, detectors=["nope"]))
    with pytest.raises(ConfigError, match=rf"run {run_id} has no scores from a duplicate "
                                          r"detector \(near_duplicate\), which dedupe"):
        plan_export(store, small, ExportRules(dedupe=True))


def _self_confidence_run(store, dataset_id: int, config: dict | None = None) -> int:
    """label_issue scores (self-confidence) for every sample; class means: cat 0.6833, dog 0.45.
    Flagged with suggestions: s10 (cat -> dog 0.70), s03 (dog -> cat 0.85), s07 (dog -> cat
    0.60) in train, s11 (dog -> cat 0.95) in test."""
    scores = {"s00": 0.8, "s02": 0.9, "s04": 0.7, "s06": 0.6, "s08": 0.9, "s10": 0.2,
              "s01": 0.9, "s03": 0.1, "s05": 0.8, "s07": 0.15, "s09": 0.7, "s11": 0.05}
    suggestions = {"s10": _suggest("dog", 0.70), "s03": _suggest("cat", 0.85),
                   "s07": _suggest("cat", 0.60), "s11": _suggest("cat", 0.95)}
    return succeeded_run(store, dataset_id, [
        (sid, "label_issue", score, sid in suggestions, suggestions.get(sid))
        for sid, score in scores.items()
    ], config)


def test_auto_suggestions_use_confident_learning_thresholds(store, small) -> None:
    _self_confidence_run(store, small)
    engine = plan_export(store, small, ExportRules(apply_suggested="auto"))
    # s10: 0.70 >= t_dog 0.45; s03: 0.85 >= t_cat 0.683; s07: 0.60 < 0.683; s11 is in test
    assert _actions(engine) == {"s10": ("relabel", "dog"), "s03": ("relabel", "cat")}
    fixed = plan_export(store, small, ExportRules(apply_suggested=0.8))
    assert _actions(fixed) == {"s03": ("relabel", "cat")}
    every_split = plan_export(store, small, ExportRules(apply_suggested="auto",
                                                        auto_splits=["train", "test"]))
    assert _actions(every_split) == {"s10": ("relabel", "dog"), "s03": ("relabel", "cat"),
                                     "s11": ("relabel", "cat")}


def test_auto_suggestions_need_self_confidence_scores(store, small) -> None:
    run_id = _self_confidence_run(
        store, small, {"params": {"label_issue": {"method": "normalized_margin"}}})
    with pytest.raises(ConfigError, match=f"^run {run_id} scored label_issue with method "
                                          "'normalized_margin'.*--apply-suggested 0.9$"):
        plan_export(store, small, ExportRules(apply_suggested="auto"))


def test_the_split_rule_in_words() -> None:
    assert split_rule_text(ExportRules()) == (
        "Automatic rules (flagged drops, suggested labels, dedupe and score weights) act on "
        "train only. Val and test change only through reviewed decisions.")
    assert split_rule_text(ExportRules(auto_splits=["val", "train"], leakage="test")) == (
        "Automatic rules (flagged drops, suggested labels, dedupe and score weights) act on "
        "train and val only. Test changes only through reviewed decisions and the leakage "
        "rule. Leakage drops train/test near-duplicates from the test side (every split but "
        "train), as chosen.")
