"""Views that last (issue 10, item 3), run by AppTest on the scored demo store: the dataset,
run, Explore's filters and page come from the URL and go back into it; a bad value falls back
to its default; named saved views save, apply and delete.

AppTest has no browser, so a filter changed by a user's click updates the URL only in a real
one (Streamlit's frontend writes a bound widget's parameter): test_views_browser.py checks that.
Here the URL follows what the server sets: the sidebar's picks (on a session's first run; after
it AppTest reruns only the page), the page number, and the widgets a saved view sets."""

from __future__ import annotations

import math
import re

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from audit.ingest import ingest
from audit.store import runs as run_store
from audit.store.explore import ExploreFilters, explore_page
from audit.store.saved_views import list_views, load_view, save_view
from tests.dashboard.conftest import APP, write_truth_run

TIMEOUT = 60
FIVES = {"flagged": "false", "class": "five", "sort": "label_issue score",
         "worst_first": "false", "decision": "undecided", "score": "0.9", "page": "2"}


def _open(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(query or {})
    return _ok(at.run())


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def _total(at: AppTest) -> int:
    caption = next(c.value for c in at.caption if c.value.endswith("matching samples"))
    return int(re.match(r"([\d,]+) ", caption).group(1).replace(",", ""))


def _cards(at: AppTest) -> list[str]:
    return [c.key.removeprefix("pick|") for c in at.checkbox if c.key and c.key.startswith("pick|")]


def _expected(home, filters: ExploreFilters, page: int, run_id: int | None = None) -> list[str]:
    result = explore_page(home["store"], home["dataset_id"], run_id or home["run_id"], filters,
                          page - 1, 48)
    return list(result.rows["sample_id"])


def _url(at: AppTest) -> dict:
    return dict(at.query_params)


def test_explore_restores_the_filters_sort_and_page_the_url_names(app_home):
    at = _open(FIVES)
    assert at.checkbox(key="flagged").value is False
    assert at.multiselect(key="class").value == ["five"]
    assert at.selectbox(key="sort").value == "label_issue"
    assert at.toggle(key="worst_first").value is False
    assert at.selectbox(key="decision").value == "undecided"
    assert at.slider(key="score").value == pytest.approx(0.9)
    assert at.session_state["page"] == 2
    filters = ExploreFilters(flagged_only=False, max_score=0.9, classes=("five",),
                             decision="undecided", sort_by="label_issue", worst_first=False)
    assert _total(at) > 48
    assert _cards(at) == _expected(app_home, filters, page=2)


def test_the_url_names_the_dataset_and_run_shown(app_home):
    older = app_home["run_id"]
    newer = write_truth_run(app_home["store"], app_home["dataset_id"], app_home["truth"])
    at = _open()
    assert _url(at) == {"dataset": str(app_home["dataset_id"]), "run": str(newer)}
    at = _open({"dataset": str(app_home["dataset_id"]), "run": str(older)})
    assert at.sidebar.selectbox(key=f"run_id_{app_home['dataset_id']}").value == older
    assert _url(at) == {"dataset": str(app_home["dataset_id"]), "run": str(older)}


def test_the_page_goes_into_the_url_and_a_changed_filter_starts_again_at_page_one(app_home):
    at = _open({"flagged": "false"})
    _ok(at.button(key="page_next").click().run())
    _ok(at.button(key="page_next").click().run())
    assert _url(at)["page"] == "3"
    filters = ExploreFilters(flagged_only=False, sort_by="overall")
    assert _cards(at) == _expected(app_home, filters, page=3)
    _ok(at.multiselect(key="class").set_value(["five"]).run())
    assert at.session_state["page"] == 1 and "page" not in _url(at)
    assert _cards(at) == _expected(app_home, ExploreFilters(
        flagged_only=False, classes=("five",), sort_by="overall"), page=1)


def _pets_with_a_run(app_home, tmp_path) -> int:
    """A second dataset (four real PNGs) with a finished run of its own; returns the run."""
    for label in ("cat", "dog"):
        (tmp_path / "pets" / label).mkdir(parents=True)
        for i in range(2):
            image = Image.new("RGB", (16, 16), (i * 90, 60, 40))
            image.save(tmp_path / "pets" / label / f"{i}.png")
    pets = ingest(app_home["store"], tmp_path / "pets", app_home["settings"], name="pets")
    run_id = run_store.create_run(app_home["store"], pets, {"detectors": []})
    run_store.finish_run(app_home["store"], run_id, "succeeded")
    return run_id


def test_bad_values_in_the_url_fall_back_to_the_defaults(app_home, tmp_path):
    pets_run = _pets_with_a_run(app_home, tmp_path)
    at = _open({"dataset": str(app_home["dataset_id"]), "run": str(pets_run),
                "detector": "no_such_detector", "score": "abc", "flagged": "maybe",
                "sort": "nonsense", "decision": "<script>", "class": "not-a-class",
                "page": "abc"})
    assert at.sidebar.selectbox(key=f"run_id_{app_home['dataset_id']}").value == app_home["run_id"]
    assert at.selectbox(key="detector").value is None
    assert at.slider(key="score").value == 1.0
    assert at.checkbox(key="flagged").value is True
    assert at.selectbox(key="sort").value == "overall"
    assert at.selectbox(key="decision").value == "any"
    assert at.multiselect(key="class").value == []
    default = ExploreFilters(flagged_only=True, sort_by="overall")
    assert _cards(at) == _expected(app_home, default, 1)
    assert _url(at) == {"dataset": str(app_home["dataset_id"]), "run": str(app_home["run_id"])}


def test_a_page_past_the_last_shows_the_last(app_home):
    at = _open({"detector": "label_issue", "page": "99"})
    last = math.ceil(_total(at) / 48)
    assert at.session_state["page"] == last < 99
    filters = ExploreFilters(detector="label_issue", flagged_only=True, sort_by="overall")
    assert _cards(at) == _expected(app_home, filters, last)


# --- saved views ---------------------------------------------------------------------------

def _save(at: AppTest, name: str) -> AppTest:
    at.text_input(key="view_name").input(name)
    return at.button(key="save_view").click().run()


def test_a_saved_view_saves_applies_and_deletes(app_home):
    dataset_id = app_home["dataset_id"]
    at = _open({"flagged": "false", "class": "five"})
    _ok(at.button(key="page_next").click().run())
    _ok(_save(at, "fives, page 2"))
    assert load_view(app_home["store"], dataset_id, "fives, page 2").params == {
        "flagged": False, "class": ["five"], "page": 2}
    on_page_two = _cards(at)

    _ok(at.multiselect(key="class").set_value([]).run())
    _ok(at.checkbox(key="flagged").check().run())
    assert _cards(at) != on_page_two
    at.selectbox(key="saved_view").set_value("fives, page 2")
    _ok(at.button(key="apply_view").click().run())
    assert at.checkbox(key="flagged").value is False
    assert at.multiselect(key="class").value == ["five"]
    assert at.session_state["page"] == 2 and _cards(at) == on_page_two
    assert {k: _url(at).get(k) for k in ("class", "page")} == {"class": "five", "page": "2"}

    at.selectbox(key="saved_view").set_value("fives, page 2")
    _ok(at.button(key="delete_view").click().run())
    assert list_views(app_home["store"], dataset_id) == []
    assert at.selectbox(key="saved_view").options == []


def test_saving_without_a_name_or_with_a_taken_one_says_so(app_home):
    save_view(app_home["store"], app_home["dataset_id"], "flips", {"detector": "label_issue"})
    at = _save(_open(), "   ")
    assert any("needs a name" in e.value for e in at.error)
    at = _save(_open(), "flips")
    assert any("already has a saved view named" in e.value for e in at.error)
    assert load_view(app_home["store"], app_home["dataset_id"], "flips").params == {
        "detector": "label_issue"}


def test_a_saved_value_this_run_cannot_take_falls_back_to_the_default(app_home):
    save_view(app_home["store"], app_home["dataset_id"], "old run",
              {"detector": "gone_detector", "score": "abc", "class": ["five", "eleven"],
               "sort": "label_issue", "page": -3})
    at = _open()
    at.selectbox(key="saved_view").set_value("old run")
    _ok(at.button(key="apply_view").click().run())
    assert at.selectbox(key="detector").value is None
    assert at.slider(key="score").value == 1.0
    assert at.multiselect(key="class").value == []
    assert at.selectbox(key="sort").value == "label_issue"
    assert at.session_state["page"] == 1
