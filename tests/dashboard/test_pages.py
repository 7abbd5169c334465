"""Every page run by AppTest against the scored demo store; what the store holds afterwards."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from audit.demo import CLASS_NAMES
from audit.store import jobs as job_store
from audit.store.datasets import list_datasets
from audit.store.flags import Decision, current_decisions, decision_log, record_decisions
from audit.store.neighbours import write_neighbours
from dashboard.widgets import plain
from tests.dashboard.conftest import APP, run_until_job_ends, text_lines

TIMEOUT = 60


@pytest.fixture
def app(app_home) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _total(at: AppTest) -> int:
    caption = next(c.value for c in at.caption if c.value.endswith("matching samples"))
    return int(re.match(r"([\d,]+) ", caption).group(1).replace(",", ""))


def _card_labels(at: AppTest) -> list[str]:
    return [t.removeprefix("label: ") for t in text_lines(at) if t.startswith("label: ")]


def _picks(at: AppTest) -> list[str]:
    return [c.key.removeprefix("pick|") for c in at.checkbox if c.key and c.key.startswith("pick|")]


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


# --- Explore -------------------------------------------------------------------------------

def test_explore_opens_on_flagged_samples_with_images(app, app_home):
    flagged_total = _total(app)
    assert 0 < flagged_total < 300
    assert len(app.image) == 48 and len(_picks(app)) == 48
    assert "label_issue" in app.selectbox(key="detector").options


def test_sidebar_says_which_detectors_the_run_skipped_and_why(app):
    expander = next(e for e in app.sidebar.expander if "skipped" in e.label)
    assert expander.label == "About this run (1 detector(s) skipped)"
    assert [t.value for t in expander.text] == [
        "vl_consistency: needs clip, which this run does not have",
        "samples: 2 of 1829 samples have unreadable images"]


def test_explore_filters_narrow_the_grid(app, app_home):
    flips = app_home["truth"]["label_flip"]
    _ok(app.selectbox(key="detector").set_value("label_issue").run())
    assert _total(app) == len(flips)
    assert set(_picks(app)) <= set(flips)
    _ok(app.multiselect(key="class").set_value(["five"]).run())
    labels = _card_labels(app)
    assert labels and set(labels) == {"five"}
    assert _total(app) == sum(1 for t in flips.values() if t["given_label"] == "five")
    _ok(app.text_input(key="search").set_value("no such sample anywhere").run())
    assert _total(app) == 0 and not _picks(app)


def test_explore_pages_forward_and_back(app):
    _ok(app.checkbox(key="flagged").uncheck().run())
    assert _total(app) > 1700
    first_page = _picks(app)
    _ok(app.button(key="page_next").click().run())
    assert app.session_state["page"] == 2
    second_page = _picks(app)
    assert len(second_page) == 48 and not set(first_page) & set(second_page)
    _ok(app.button(key="page_prev").click().run())
    assert _picks(app) == first_page


def test_bulk_decision_appends_one_row_per_picked_sample(app, app_home):
    chosen = _picks(app)[:3]
    for sample_id in chosen:
        app.checkbox(key=f"pick|{sample_id}").check()
    app.selectbox(key="bulk_action").set_value("remove")
    _ok(app.run())
    app.text_input(key="bulk_note").input("blurry scans")
    _ok(app.button(key="bulk_apply").click().run())
    log = decision_log(app_home["store"], app_home["dataset_id"])
    assert sorted(log["sample_id"]) == sorted(chosen)
    assert set(log["action"]) == {"remove"} and set(log["note"]) == {"blurry scans"}
    assert not any(app.checkbox(key=f"pick|{s}").value for s in chosen)  # picks cleared
    _ok(app.selectbox(key="decision").set_value("remove").run())
    assert _total(app) == 3 and sorted(_picks(app)) == sorted(chosen)


def test_bulk_relabel_to_a_class(app, app_home):
    chosen = _picks(app)[:2]
    for sample_id in chosen:
        app.checkbox(key=f"pick|{sample_id}").check()
    app.selectbox(key="bulk_action").set_value("relabel")
    _ok(app.run())
    app.selectbox(key="bulk_label").set_value("seven")
    _ok(app.button(key="bulk_apply").click().run())
    standing = current_decisions(app_home["store"], app_home["dataset_id"]).set_index("sample_id")
    assert sorted(standing.index) == sorted(chosen)
    assert set(standing["new_label"]) == {"seven"}


@pytest.mark.reliability
def test_a_decision_from_another_tab_shows_on_the_next_rerun(app, app_home):
    sample_id = _picks(app)[0]
    record_decisions(app_home["store"], app_home["dataset_id"], [Decision(sample_id, "keep")])
    _ok(app.run())
    assert "decided: keep" in text_lines(app)


def test_map_selection_limits_explore(app, app_home):
    app.session_state["sample_set"] = {"ids": ["d0012", "d0068", "d0001"],
                                       "why": "selected on the Insights map"}
    _ok(app.run())                  # "Flagged only" is off while a chosen set is shown
    assert _total(app) == 3 and sorted(_picks(app)) == ["d0001", "d0012", "d0068"]
    assert app.checkbox(key="flagged").disabled
    _ok(app.button(key="clear_sample_set").click().run())
    assert 0 < _total(app) < 1700    # flagged only again


# --- Example -------------------------------------------------------------------------------

def _open_example(app: AppTest, sample_id: str) -> AppTest:
    app.session_state["example_sample"] = sample_id
    return _ok(app.switch_page("pages/example.py").run())


def test_more_like_this_opens_explore_on_the_nearest_samples(app, app_home):
    """From an example, and from a selection: the samples and their kNN neighbours (written
    here for the truth run as an audit writes them), flagged or not, until cleared."""
    store, run_id = app_home["store"], app_home["run_id"]
    ids = [f"d{i:04d}" for i in range(12)]
    ring = np.array([[(i + 1) % 12, (i + 2) % 12] for i in range(12)])   # a ring of neighbours
    write_neighbours(store, run_id, ids, ring, np.zeros((12, 2)))
    at = _open_example(app, "d0003")
    _ok(at.button(key="more_like_this").click().run())
    assert sorted(_picks(at)) == ["d0003", "d0004", "d0005", "d0006", "d0007"]  # 2 hops
    assert at.checkbox(key="flagged").disabled
    assert any("most like d0003" in i.value for i in at.info)
    at = _ok(at.switch_page("pages/explore.py").run())     # AppTest reruns the page it opened
    assert _total(at) == 5
    _ok(at.button(key="clear_sample_set").click().run())
    assert _total(at) > 5


def test_explore_open_button_leads_to_the_example(app):
    sample_id = _picks(app)[0]
    _ok(app.button(key=f"open|{sample_id}").click().run())
    assert any(t.value == f"id: {sample_id}" for t in app.text)


def test_example_shows_why_and_suggests_the_true_label(app, app_home):
    flip = app_home["truth"]["label_flip"]["d0012"]
    at = _open_example(app, "d0012")
    texts = [t.value for t in at.text]
    assert f"label: {flip['given_label']}" in texts
    assert f"label_issue suggests: {flip['true_label']} (90%)" in texts
    scores = at.dataframe[0].value
    assert sorted(scores["detector"][:2]) == ["knn_label", "label_issue"]  # the worst two
    assert scores.set_index("detector").loc["label_issue", "why"].startswith("the probe")
    assert at.selectbox(key="relabel_to").value == flip["true_label"]
    assert len(at.image) == 1 + 5  # the sample and its five neighbours


def test_example_relabel_then_undo(app, app_home):
    store, dataset_id = app_home["store"], app_home["dataset_id"]
    at = _open_example(app, "d0012")
    at.text_input(key="decision_note").input("clearly a two")
    _ok(at.button(key="decide_relabel").click().run())
    standing = current_decisions(store, dataset_id)
    assert standing[["sample_id", "action", "new_label", "note"]].values.tolist() == [
        ["d0012", "relabel", "two", "clearly a two"]]
    _ok(at.button(key="decide_undo").click().run())
    assert current_decisions(store, dataset_id).empty
    assert list(decision_log(store, dataset_id)["action"]) == ["relabel", "undo"]
    assert list(at.dataframe[-1].value["action"]) == ["relabel", "undo"]


def test_example_remove_is_one_row_per_click(app, app_home):
    at = _open_example(app, "d0068")
    _ok(at.button(key="decide_remove").click().run())
    _ok(at.button(key="decide_keep").click().run())
    _ok(at.run())  # a plain rerun (a reload) writes nothing
    log = decision_log(app_home["store"], app_home["dataset_id"])
    assert list(log["action"]) == ["remove", "keep"]


# --- Insights, Datasets, Jobs, Export ------------------------------------------------------

def test_insights_draws_every_chart(app):
    at = _ok(app.switch_page("pages/insights.py").run())
    charts = at.get("plotly_chart")
    assert len(charts) == 8 + 2 + 1 + 1  # histograms, class/split, matrix, map (this run's tab)
    summary = at.dataframe[0].value.set_index("detector")
    assert summary.loc["overall", "issues"] == 0 and summary.loc["label_issue", "issues"] == 90


def _map_traces(at: AppTest) -> dict[str, int]:
    """The map's legend: each trace's name and how many points it draws."""
    figure = json.loads(at.get("plotly_chart")[-1].proto.spec)
    return {trace["name"]: _length(trace["x"]) for trace in figure["data"]}


def _length(values) -> int:
    """A trace's point count; plotly writes numeric arrays as typed base64 (``bdata``)."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).size
    return len(values)


def test_the_map_colours_by_class_flag_score_and_decision(app, app_home):
    record_decisions(app_home["store"], app_home["dataset_id"], [Decision("d0012", "remove")])
    at = _ok(app.switch_page("pages/insights.py").run())
    by_class = _map_traces(at)
    assert len(by_class) == len(CLASS_NAMES)                            # one colour per class
    at = _ok(at.segmented_control(key="map_colour").set_value("decision").run())
    assert _map_traces(at)["remove"] == 1
    assert _map_traces(at)["undecided"] == sum(by_class.values()) - 1
    at = _ok(at.segmented_control(key="map_colour").set_value("worst_score").run())
    assert len(_map_traces(at)) == 1                                    # one continuous scale


def test_datasets_lists_and_adds_a_folder(app, app_home, tmp_path):
    at = _ok(app.switch_page("pages/datasets.py").run())
    table = at.dataframe[0].value
    assert table.loc[0, "name"] == "demo" and table.loc[0, "samples"] > 1700
    for label in ("cat", "dog"):
        (tmp_path / "pets" / label).mkdir(parents=True)
        for i in range(2):
            picture = Image.new("RGB", (16, 16), (i * 90, 40, 40))
            picture.save(tmp_path / "pets" / label / f"{i}.png")
    at.text_input[0].input(str(tmp_path / "pets"))
    at.text_input[1].input("pets")
    _ok(at.button[0].click().run())
    assert list_datasets(app_home["store"])["name"].tolist() == ["demo"]   # queued, not run here
    _ok(run_until_job_ends(at, "ingest_job"))  # the page's INGEST_JOB_KEY
    assert any(plain("Added dataset 'pets'") in s.value for s in at.success)   # escaped: a name
    datasets = list_datasets(app_home["store"]).set_index("name")
    assert datasets.loc["pets", "samples"] == 4 and datasets.loc["pets", "classes"] == 2


def test_datasets_add_shows_a_missing_path_as_an_error(app, app_home, tmp_path):
    at = _ok(app.switch_page("pages/datasets.py").run())
    at.text_input[0].input(str(tmp_path / "nowhere"))
    at.button[0].click().run()
    assert len(at.error) == 1 and "does not exist" in at.error[0].value
    assert len(list_datasets(app_home["store"])) == 1


def test_jobs_shows_a_queued_job_and_cancels_it(app, app_home):
    store = app_home["store"]
    job_id = job_store.insert_job(store, app_home["dataset_id"], "audit", {"k": 7})
    job_store.append_log(store, job_id, "queued audit of dataset 1")
    at = _ok(app.switch_page("pages/jobs.py").run())
    assert at.dataframe[0].value["status"].tolist() == ["queued"]
    assert "queued audit of dataset 1" in at.code[-1].value
    _ok(at.button(key="job_cancel").click().run())
    assert job_store.get_job(store, job_id)["status"] == "cancelled"


def test_jobs_rerun_with_bad_json_explains(app, app_home):
    job_store.insert_job(app_home["store"], app_home["dataset_id"], "audit", {"k": 7})
    at = _ok(app.switch_page("pages/jobs.py").run())
    at.text_area(key="job_config").input("{not json")
    at.button(key="job_rerun_changed").click().run()
    assert "not valid JSON" in at.error[0].value
    assert len(job_store.list_jobs(app_home["store"])) == 1


@pytest.mark.parametrize("use_decisions", [True, False], ids=["default", "unticked"])
def test_jobs_rerun_starts_from_the_reviewed_decisions_unless_unticked(app, app_home,
                                                                       use_decisions):
    job_store.insert_job(app_home["store"], app_home["dataset_id"], "audit", {"k": 7})
    at = _ok(app.switch_page("pages/jobs.py").run())
    assert at.checkbox(key="job_rerun_decisions").value is True
    if not use_decisions:
        at.checkbox(key="job_rerun_decisions").uncheck().run()
    at.button(key="job_rerun").click().run()
    newest = job_store.list_jobs(app_home["store"]).iloc[0]
    config = job_store.get_job(app_home["store"], int(newest["id"]))["config"]
    assert config["use_decisions"] is use_decisions and config["k"] == 7


def test_export_preview_counts_decisions_and_flag_rule(app, app_home):
    store, dataset_id = app_home["store"], app_home["dataset_id"]
    record_decisions(store, dataset_id, [Decision("d0012", "remove"),
                                         Decision("d0068", "relabel", "four")])
    at = _ok(app.switch_page("pages/export.py").run())
    preview = at.dataframe[0].value
    assert preview["removed"].sum() == 1 and preview["relabelled"].sum() == 1
    assert preview["before"].sum() == preview["after"].sum() + 1
    _ok(at.radio(key="export_rule").set_value("flagged").run())
    at.multiselect(key="export_detectors").set_value(["label_issue"])
    at.multiselect(key="export_auto_splits").set_value(["train", "test"])  # flips in both
    _ok(at.run())
    flagged = at.dataframe[0].value
    flips = len(app_home["truth"]["label_flip"])
    # every flagged flip is dropped (d0012 among them), except d0068 that a person relabelled
    assert flagged["removed"].sum() == flips - 1 and flagged["relabelled"].sum() == 1


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl", "imagefolder"])
def test_export_page_writes_the_cleaned_dataset(app, app_home, tmp_path, fmt):
    import json

    from audit.store.exports import list_exports

    store, dataset_id = app_home["store"], app_home["dataset_id"]
    record_decisions(store, dataset_id, [Decision("d0012", "remove"),
                                         Decision("d0068", "relabel", "four")])
    at = _ok(app.switch_page("pages/export.py").run())
    _ok(at.selectbox(key="export_format").set_value(fmt).run())
    preview = at.dataframe[0].value
    out = tmp_path / f"cleaned-{fmt}"
    at.text_input(key="export_out").input(str(out))
    _ok(at.button(key="export_go").click().run())
    _ok(run_until_job_ends(at, "export_job"))     # the page's EXPORT_JOB_KEY: a real worker
    provenance = json.loads((out / "sieve_export.json").read_text())
    assert provenance["format"] == fmt
    assert provenance["counts"]["total"] == {"before": int(preview["before"].sum()), "removed": 1,
                                             "relabelled": 1, "after": int(preview["after"].sum())}
    assert {c["sample_id"] for c in provenance["changed"]} == {"d0012", "d0068"}
    written = list_exports(store, dataset_id)
    assert len(written) == 1 and written.iloc[0]["format"] == fmt
    assert at.get("download_button")  # the zip is offered
