"""The standing-decision rule, written once (audit/store/flags.py ``STANDING_DECISIONS``):
the export's ``current_decisions`` and Explore's decision join read the same query, so a log
gives the same standing decision through both, for every sample and every past state."""

from __future__ import annotations

import random

import pytest

from audit.store import explore, flags
from audit.store.explore import ExploreFilters, explore_page
from audit.store.flags import Decision, current_decisions, record_decisions
from tests.audit.test_export_support import ingest_small, succeeded_run

# sample -> its log, oldest first; the last entry is the standing decision the rule gives
LOGS = {
    "s00": (["remove", "relabel:bird", "undo", "undo", "keep"], "keep"),
    "s01": (["remove", "relabel:bird", "undo"], "remove"),
    "s02": (["remove", "relabel:bird", "undo", "undo"], None),
    "s03": (["undo", "undo", "relabel:bird"], "relabel"),        # undo with nothing: no-op
    "s04": (["keep", "remove", "undo", "relabel:bird", "undo", "undo"], None),
    "s05": (["relabel:bird", "keep", "undo", "remove", "undo"], "relabel"),
}


def _decision(sample_id: str, entry: str) -> Decision:
    action, _, label = entry.partition(":")
    return Decision(sample_id, action, label or None)


def _interleaved(logs: dict[str, list[str]]) -> list[Decision]:
    """The samples' logs written round-robin, so one sample's rows are not adjacent ids."""
    longest = max(len(entries) for entries in logs.values())
    return [_decision(sample_id, entries[i]) for i in range(longest)
            for sample_id, entries in logs.items() if i < len(entries)]


def _by_python_stack(decisions: list[Decision]) -> dict[str, str]:
    """The rule as the docs say it: the latest row stands; undo withdraws the one before."""
    stacks: dict[str, list[str]] = {}
    for d in decisions:
        stack = stacks.setdefault(d.sample_id, [])
        if d.action != "undo":
            stack.append(d.action)
        elif stack:
            stack.pop()
    return {sample_id: stack[-1] for sample_id, stack in stacks.items() if stack}


def _through_explore(store, dataset_id: int, run_id: int) -> dict[str, str]:
    rows = explore_page(store, dataset_id, run_id, ExploreFilters(sort_by="order"),
                        page_size=100).rows
    decided = rows[rows["decision"].notna()]
    return dict(zip(decided["sample_id"], decided["decision"]))


def _through_export(store, dataset_id: int, through_id: int | None = None) -> dict[str, str]:
    standing = current_decisions(store, dataset_id, through_id)
    return dict(zip(standing["sample_id"], standing["action"]))


@pytest.fixture
def small(store, settings, tmp_path) -> int:
    return ingest_small(store, settings, tmp_path / "src")


def test_the_rule_lives_once_in_the_decisions_module() -> None:
    assert explore.STANDING_DECISIONS is flags.STANDING_DECISIONS


def test_one_log_gives_one_standing_decision_through_both_paths(store, small) -> None:
    run_id = succeeded_run(store, small, [("s00", "outlier", 0.5, False, None)])
    record_decisions(store, small, _interleaved({s: log for s, (log, _) in LOGS.items()}))
    expected = {s: action for s, (_, action) in LOGS.items() if action is not None}
    assert _through_export(store, small) == expected
    assert _through_explore(store, small, run_id) == expected
    standing = current_decisions(store, small).set_index("sample_id")
    assert standing.loc["s05", "new_label"] == "bird"
    for state in ("keep", "remove", "relabel"):
        page = explore_page(store, small, run_id, ExploreFilters(decision=state, sort_by="order"))
        chosen = sorted(sample for sample, action in expected.items() if action == state)
        assert sorted(page.rows["sample_id"]) == chosen


@pytest.mark.reliability
def test_random_logs_and_their_past_states_agree_with_the_stack_rule(store, small) -> None:
    rng = random.Random(7)
    samples = [f"s{i:02d}" for i in range(12)]
    actions = ["remove", "relabel:bird", "keep", "undo", "undo"]
    decisions = [_decision(rng.choice(samples), rng.choice(actions)) for _ in range(200)]
    record_decisions(store, small, decisions)
    first_id = int(flags.decision_log(store, small)["id"].min())
    for written in (1, 7, 50, 120, 200):
        through = first_id + written - 1
        assert _through_export(store, small, through) == _by_python_stack(decisions[:written])
    run_id = succeeded_run(store, small, [("s00", "outlier", 0.5, False, None)])
    assert _through_explore(store, small, run_id) == _by_python_stack(decisions)


def test_a_decision_filter_keeps_the_chosen_samples_filter(store, small) -> None:
    run_id = succeeded_run(store, small, [("s00", "outlier", 0.5, False, None)])
    record_decisions(store, small, [Decision("s00", "keep"), Decision("s01", "keep"),
                                    Decision("s02", "remove")])
    filters = ExploreFilters(sample_ids=("s00", "s02", "s03"), decision="keep", sort_by="order")
    assert explore_page(store, small, run_id, filters).rows["sample_id"].tolist() == ["s00"]
