"""The export tells kinds of detectors apart by the facts the run recorded (family,
suggests_labels, belief), never by their names: a run's duplicate detector feeds dedupe, its
label detectors' flags are answered by a relabel, and any detector that suggests labels
feeds apply_suggested (where several flag a sample, the suggestion Explore shows)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from audit.errors import ConfigError
from audit.export import ExportRules, plan_export
from audit.store.explore import ExploreFilters, explore_page
from audit.store.runs import create_run, finish_run, write_scores
from tests.audit.test_export_support import ingest_small

LABEL = {"family": "label", "suggests_labels": False, "belief": None}
SUGGESTS = {"family": "label", "suggests_labels": True, "belief": "held_out"}
DUPLICATE = {"family": "duplicate", "suggests_labels": False, "belief": None}
OUTLIER = {"family": "outlier", "suggests_labels": False, "belief": None}


@pytest.fixture
def small(store, settings, tmp_path) -> int:
    """s00..s11, even cat, odd dog; train: s00 s01 s03 s04 s06 s07 s09 s10."""
    return ingest_small(store, settings, tmp_path / "src")


def _run(store, dataset_id: int, rows: list[tuple], facts: dict | None) -> int:
    """A succeeded run of (sample_id, detector, score, is_issue, details) rows that recorded
    ``facts`` (None: an old run that recorded none)."""
    run_id = create_run(store, dataset_id, {})
    frame = pd.DataFrame(rows, columns=["sample_id", "detector", "score", "is_issue", "details"])
    frame["details"] = [json.dumps(d) if d is not None else None for d in frame["details"]]
    write_scores(store, run_id, frame)
    finish_run(store, run_id, "succeeded",
               summary=None if facts is None else {"detectors": facts})
    return run_id


def _suggest(label: str, confidence: float) -> dict:
    return {"suggested_label": label, "suggested_confidence": confidence}


def _actions(plan: pd.DataFrame) -> dict[str, tuple[str, str]]:
    changed = plan[plan["action"] != "keep"]
    return {r.sample_id: (r.action, r.new_label) for r in changed.itertuples()}


def test_dedupe_reads_the_runs_duplicate_family(store, small) -> None:
    _run(store, small, [
        ("s00", "copies", 0.1, True, {"set_id": "A"}),
        ("s03", "copies", 0.1, True, {"set_id": "A"}),
        ("s06", "odd_one", 0.1, True, {"reason": "far"}),
    ], {"copies": DUPLICATE, "odd_one": OUTLIER})
    plan = plan_export(store, small, ExportRules(dedupe=True))
    assert _actions(plan) == {"s03": ("remove", "dog")}
    flagged = plan_export(store, small, ExportRules(include_flagged=True))
    assert _actions(flagged) == {"s06": ("remove", "cat")}    # copies is not a flag to drop


def test_a_relabel_answers_every_label_family_flag(store, small) -> None:
    _run(store, small, [
        ("s07", "noise_v2", 0.1, True, {"reason": "noisy"}),
        ("s07", "guesser", 0.05, True, _suggest("cat", 0.95)),
        ("s09", "noise_v2", 0.1, True, {"reason": "noisy"}),
    ], {"noise_v2": LABEL, "guesser": SUGGESTS})
    plan = plan_export(store, small, ExportRules(include_flagged=True, apply_suggested=0.9))
    assert _actions(plan) == {"s07": ("relabel", "cat"), "s09": ("remove", "dog")}


def test_suggestions_come_from_any_suggesting_detector_as_explore_shows_them(
        store, small) -> None:
    run_id = _run(store, small, [       # an old run: knn_label's registry facts apply
        ("s07", "knn_label", 0.05, True, _suggest("bird", 0.80)),
        ("s07", "label_issue", 0.30, True, _suggest("cat", 0.95)),
        ("s09", "knn_label", 0.20, True, _suggest("cat", 0.75)),
    ], None)
    plan = plan_export(store, small, ExportRules(apply_suggested=0.7))
    assert _actions(plan) == {"s07": ("relabel", "bird"), "s09": ("relabel", "cat")}
    card = explore_page(store, small, run_id, ExploreFilters(sample_ids=("s07",))).rows
    assert card["suggested_label"].tolist() == ["bird"]


def test_auto_uses_each_held_out_suggesters_own_class_thresholds(store, small) -> None:
    """knn_label's mean score: cat 0.8, dog 0.5; t_cat 0.8 and t_dog 0.5 apply to its own
    suggestions; a suggester without held-out scores is never applied by "auto"."""
    train = {"s00": 0.8, "s04": 0.8, "s06": 0.9, "s10": 0.7,       # cat, mean 0.8
             "s01": 0.6, "s03": 0.2, "s07": 0.7, "s09": 0.5}       # dog, mean 0.5
    suggestions = {"s03": _suggest("cat", 0.85), "s09": _suggest("cat", 0.75),
                   "s10": _suggest("dog", 0.55)}
    rows = [(sid, "neighbours", score, sid in suggestions, suggestions.get(sid))
            for sid, score in train.items()]
    rows.append(("s01", "captions", 0.01, True, _suggest("cat", 0.99)))
    _run(store, small, rows, {"neighbours": SUGGESTS,
                              "captions": {**SUGGESTS, "family": "consistency", "belief": None}})
    plan = plan_export(store, small, ExportRules(apply_suggested="auto"))
    assert _actions(plan) == {"s03": ("relabel", "cat"), "s10": ("relabel", "dog")}


def test_auto_needs_a_held_out_suggester_and_names_the_registered_ones(store, small) -> None:
    run_id = _run(store, small, [("s01", "captions", 0.01, True, _suggest("cat", 0.99))],
                  {"captions": {**SUGGESTS, "family": "consistency", "belief": None}})
    with pytest.raises(ConfigError, match=rf"^run {run_id} has no scores from a detector that "
                                          r"suggests labels from held-out probabilities "
                                          r"\(knn_label, label_issue\)"):
        plan_export(store, small, ExportRules(apply_suggested="auto"))
