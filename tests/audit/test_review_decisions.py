"""The review loop's store side (issue 10): authors, decision batches and bulk undo, conflicts
between tabs, and a sample's place in Explore's order. A real DuckDB file, real PNGs."""

from __future__ import annotations

import getpass

import pytest

from audit.store.explore import (ExploreFilters, explore_page, place_in_order,
                                 undecided_suggestions)
from audit.store.flags import (Decision, DecisionConflict, current_decisions, decision_log,
                               latest_flag_ids, record_decisions, undo_last_bulk)
from tests.audit.test_export_support import ingest_small, succeeded_run


@pytest.fixture
def small(store, settings, tmp_path) -> int:
    return ingest_small(store, settings, tmp_path / "src")


def _standing(store, dataset_id: int) -> dict[str, str]:
    standing = current_decisions(store, dataset_id)
    return dict(zip(standing["sample_id"], standing["action"]))


# --- authors -------------------------------------------------------------------------------

def test_a_decision_records_the_os_user_unless_a_name_is_given(store, small) -> None:
    record_decisions(store, small, [Decision("s00", "keep")])
    record_decisions(store, small, [Decision("s01", "remove")], author="ada")
    log = decision_log(store, small).set_index("sample_id")
    assert log.loc["s00", "author"] == getpass.getuser()
    assert log.loc["s01", "author"] == "ada"


# --- batches and bulk undo -----------------------------------------------------------------

def test_one_call_is_one_batch(store, small) -> None:
    record_decisions(store, small, [Decision("s00", "keep"), Decision("s01", "remove")])
    record_decisions(store, small, [Decision("s02", "keep")])
    batches = decision_log(store, small)["batch_id"].tolist()
    assert batches[0] == batches[1] and batches[2] > batches[1]


def test_undo_last_bulk_withdraws_that_batch_only(store, small) -> None:
    record_decisions(store, small, [Decision("s00", "keep"), Decision("s01", "keep")])
    record_decisions(store, small, [Decision(s, "relabel", "dog") for s in ("s01", "s02", "s03")])
    record_decisions(store, small, [Decision("s05", "remove")])   # one click: not bulk
    assert undo_last_bulk(store, small, author="ada") == 3
    assert _standing(store, small) == {"s00": "keep", "s01": "keep", "s05": "remove"}
    undos = decision_log(store, small).query("action == 'undo'")
    assert set(undos["author"]) == {"ada"} and undos["batch_id"].nunique() == 1
    assert undo_last_bulk(store, small) == 2        # then the bulk action before it
    assert _standing(store, small) == {"s05": "remove"}
    assert undo_last_bulk(store, small) == 0        # nothing bulk is left
    assert _standing(store, small) == {"s05": "remove"}


def test_bulk_undo_keeps_a_sample_decided_again_since(store, small) -> None:
    record_decisions(store, small, [Decision(s, "remove") for s in ("s00", "s01", "s02")])
    record_decisions(store, small, [Decision("s01", "keep")])
    assert undo_last_bulk(store, small) == 2
    assert _standing(store, small) == {"s01": "keep"}


# --- conflicts -----------------------------------------------------------------------------

def test_a_decision_on_a_sample_changed_since_it_was_seen_is_refused(store, small) -> None:
    seen = latest_flag_ids(store, small, ["s00"]).get("s00")            # nothing yet: None
    record_decisions(store, small, [Decision("s00", "remove")], author="bob",
                     seen={"s00": None})                                # another tab decides
    with pytest.raises(DecisionConflict, match=r"^bob decided 'remove' on s00 at \d\d:\d\d "
                                               r"since you opened it; decide again"):
        record_decisions(store, small, [Decision("s00", "keep")], seen={"s00": seen})
    assert _standing(store, small) == {"s00": "remove"}                 # not replaced
    fresh = latest_flag_ids(store, small, ["s00"])                      # the page read again
    record_decisions(store, small, [Decision("s00", "keep")], seen=fresh)
    assert _standing(store, small) == {"s00": "keep"}


def test_an_undo_by_another_tab_is_a_conflict_too(store, small) -> None:
    record_decisions(store, small, [Decision("s03", "relabel", "dog")])
    seen = latest_flag_ids(store, small, ["s03"])
    record_decisions(store, small, [Decision("s03", "undo")], author="bob")
    with pytest.raises(DecisionConflict, match="bob decided 'undo' on s03"):
        record_decisions(store, small, [Decision("s03", "remove")], seen=seen)


# --- the review loop's order ---------------------------------------------------------------

def _scored_run(store, dataset_id: int) -> int:
    rows = [(f"s{i:02d}", "label_issue", i / 20, i < 6,
             {"suggested_label": "cat" if i % 2 else "dog"} if i < 6 else None)
            for i in range(12)]
    return succeeded_run(store, dataset_id, rows)


def test_next_and_previous_follow_explores_order(store, small) -> None:
    run_id = _scored_run(store, small)
    filters = ExploreFilters(flagged_only=True, sort_by="label_issue", worst_first=False)
    order = explore_page(store, small, run_id, filters).rows["sample_id"].tolist()
    assert len(order) == 6
    places = [place_in_order(store, small, run_id, filters, s) for s in order]
    assert [p.next for p in places] == [*order[1:], None]
    assert [p.previous for p in places] == [None, *order[:-1]]
    assert [p.position for p in places] == list(range(1, 7)) and places[0].total == 6
    outside = place_in_order(store, small, run_id, filters, "s11")
    assert (outside.position, outside.previous, outside.next) == (None, None, None)
    assert outside.total == 6


def test_suggestions_of_a_filter_leave_out_decided_samples(store, small) -> None:
    run_id = _scored_run(store, small)
    record_decisions(store, small, [Decision("s01", "keep")])
    suggestions = undecided_suggestions(store, small, run_id, ExploreFilters(flagged_only=True))
    assert suggestions == [("s00", "dog"), ("s02", "dog"), ("s03", "cat"), ("s04", "dog"),
                           ("s05", "cat")]
