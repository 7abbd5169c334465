"""The review loop (issue 10) run by AppTest against the scored demo store: next / previous in
Explore's order, decisions that advance, undo, the author, conflicts between tabs, deciding
from a card, bulk "accept suggested label" and bulk undo. Keys cannot be pressed in AppTest,
so the buttons that carry them are clicked (the browser test presses the keys)."""

from __future__ import annotations

import getpass

import pytest
from streamlit.testing.v1 import AppTest

from audit.store.explore import explore_page
from audit.store.flags import Decision, current_decisions, decision_log, record_decisions
from tests.dashboard.conftest import APP, text_lines

TIMEOUT = 60


@pytest.fixture
def app(app_home) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()   # opens on Explore
    return _ok(at)


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def _explore_order(at: AppTest, app_home, page_size: int = 48) -> list[str]:
    """The samples in the order the Explore page pages through, for the filters it showed."""
    rows = explore_page(app_home["store"], app_home["dataset_id"], app_home["run_id"],
                        at.session_state["explore_filters"], page_size=page_size).rows
    return rows["sample_id"].tolist()


def _open_example(at: AppTest, sample_id: str) -> AppTest:
    at.session_state["example_sample"] = sample_id
    return _ok(at.switch_page("pages/example.py").run())


def _shown(at: AppTest) -> str:
    return next(t.value for t in at.text if t.value.startswith("id: ")).removeprefix("id: ")


def _standing(app_home) -> dict[str, tuple[str, object]]:
    standing = current_decisions(app_home["store"], app_home["dataset_id"])
    return {r.sample_id: (r.action, r.new_label) for r in standing.itertuples()}


def _click(at: AppTest, key: str) -> AppTest:
    return at.button(key=key).click().run()


# --- the Example review loop ---------------------------------------------------------------

def test_next_and_previous_walk_explores_order(app, app_home):
    order = _explore_order(app, app_home)
    at = _open_example(app, order[0])
    assert any(c.value.startswith("1 of ") for c in at.caption)
    assert at.button(key="review_prev").disabled
    for expected in order[1:4]:
        assert _shown(_ok(_click(at, "review_next"))) == expected
    for expected in reversed(order[:3]):
        assert _shown(_ok(_click(at, "review_prev"))) == expected


def test_a_decision_advances_and_undo_goes_back_and_withdraws_it(app, app_home):
    order = _explore_order(app, app_home)
    at = _open_example(app, order[0])
    assert _shown(_ok(_click(at, "decide_remove"))) == order[1]       # auto-advance
    assert _standing(app_home) == {order[0]: ("remove", None)}
    assert decision_log(app_home["store"], app_home["dataset_id"])["author"].tolist() == [
        getpass.getuser()]
    assert _shown(_ok(_click(at, "decide_undo"))) == order[0]         # back to it, withdrawn
    assert _standing(app_home) == {}
    assert any(c.value == "undecided" for c in at.caption)


def test_with_auto_advance_off_the_decision_shows_at_once(app, app_home):
    order = _explore_order(app, app_home)
    at = _open_example(app, order[0])
    _ok(at.toggle(key="auto_advance").set_value(False).run())
    _ok(_click(at, "decide_keep"))
    assert _shown(at) == order[0]
    assert any("badge[:material/check: kept]" in m.value for m in at.markdown)  # the badge
    _ok(_click(at, "decide_undo"))                                    # a decided sample: here
    assert _shown(at) == order[0] and _standing(app_home) == {}


def test_accept_the_suggestion_as_the_name_set_in_the_sidebar(app, app_home):
    flip = app_home["truth"]["label_flip"]["d0012"]
    at = _open_example(app, "d0012")
    _ok(at.sidebar.text_input(key="author").input("ada").run())
    _ok(_click(at, "decide_accept"))
    assert _standing(app_home) == {"d0012": ("relabel", flip["true_label"])}
    assert decision_log(app_home["store"], app_home["dataset_id"])["author"].tolist() == ["ada"]


def test_a_decision_another_tab_made_since_is_shown_not_replaced(app, app_home):
    at = _open_example(app, "d0012")
    record_decisions(app_home["store"], app_home["dataset_id"], [Decision("d0012", "keep")],
                     author="bob")                                    # the other tab
    at = _click(at, "decide_remove")
    assert not at.exception
    assert len(at.error) == 1 and "since you opened it" in at.error[0].value
    assert at.error[0].value.startswith("bob decided")
    assert _standing(app_home) == {"d0012": ("keep", None)}
    assert _shown(at) == "d0012"                                      # it did not move on
    _ok(_click(at, "decide_remove"))                                  # decided again: replaces
    assert _standing(app_home) == {"d0012": ("remove", None)}


# --- Explore: cards and bulk ---------------------------------------------------------------

def test_decide_from_a_card_and_undo_there(app, app_home):
    sample_id = _explore_order(app, app_home)[2]
    _ok(_click(app, f"card_remove|{sample_id}"))
    assert _standing(app_home) == {sample_id: ("remove", None)}
    assert "decided: remove" in text_lines(app)
    _ok(_click(app, f"card_undo|{sample_id}"))
    assert _standing(app_home) == {}


def test_bulk_accept_suggestions_then_bulk_undo_step_back(app, app_home):
    flips = app_home["truth"]["label_flip"]
    suggested = [s for s in _explore_order(app, app_home) if s in flips]
    assert len(suggested) >= 4
    for sample_id in suggested[:2]:
        app.checkbox(key=f"pick|{sample_id}").check()
    _ok(app.run())
    _ok(_click(app, "accept_picked"))
    assert _standing(app_home) == {s: ("relabel", flips[s]["true_label"]) for s in suggested[:2]}
    _ok(_click(app, "accept_filter"))                                 # every other one
    standing = _standing(app_home)
    assert set(standing) >= set(suggested) and all(
        standing[s] == ("relabel", flips[s]["true_label"]) for s in suggested)
    _ok(_click(app, "bulk_undo"))                                     # the filter-wide batch
    assert _standing(app_home) == {s: ("relabel", flips[s]["true_label"]) for s in suggested[:2]}
    _ok(_click(app, "bulk_undo"))                                     # then the selection's
    assert _standing(app_home) == {}
