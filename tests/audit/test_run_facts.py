"""``runs.run_detector_facts``: the facts a run recorded about the detectors it ran, or, for a
run older than that record, the facts its detectors declare now."""

from __future__ import annotations

import pytest

from audit.errors import NotFoundError
from audit.store.runs import create_run, finish_run, run_detector_facts
from tests.audit.test_export_support import ingest_small, succeeded_run


@pytest.fixture
def small(store, settings, tmp_path) -> int:
    return ingest_small(store, settings, tmp_path / "src")


def test_a_run_without_recorded_facts_gets_the_registry_facts_of_its_scored_detectors(
        store, small) -> None:
    run_id = succeeded_run(store, small, [("s00", "near_duplicate", 0.1, True, None),
                                          ("s00", "label_issue", 0.2, True, None),
                                          ("s01", "retired_check", 0.3, False, None)])
    assert run_detector_facts(store, run_id) == {
        "label_issue": {"family": "label", "suggests_labels": True, "belief": "held_out"},
        "near_duplicate": {"family": "duplicate", "suggests_labels": False, "belief": None},
        "retired_check": {"family": None, "suggests_labels": False, "belief": None}}


def test_recorded_facts_win_over_what_the_registry_says_now(store, small) -> None:
    recorded = {"label_issue": {"family": "outlier", "suggests_labels": False, "belief": None}}
    run_id = create_run(store, small, {"detectors": ["label_issue"]})
    finish_run(store, run_id, "succeeded", summary={"detectors": recorded})
    assert run_detector_facts(store, run_id) == recorded


def test_an_unknown_run_is_named(store, small) -> None:
    with pytest.raises(NotFoundError, match="no run 999"):
        run_detector_facts(store, 999)
