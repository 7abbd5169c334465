"""The dashboard's read queries (audit.store.explore, .insights, .lookups) against the scored
demo store."""

from __future__ import annotations

import pytest

from audit.errors import NotFoundError
from audit.store import explore, insights, lookups
from audit.store import runs as run_store
from audit.store.flags import Decision, record_decisions


def _page(home, **filters):
    return explore.explore_page(home["store"], home["dataset_id"], home["run_id"],
                                explore.ExploreFilters(**filters))


def test_index_is_built_once_with_every_detector(app_home):
    store, run_id = app_home["store"], app_home["run_id"]
    first = explore.ensure_explore_index(store, run_id)
    again = explore.ensure_explore_index(store, run_id)
    assert first == again == sorted(first) and len(first) == 8
    with store.transaction() as con:
        rows = con.execute("SELECT count(*) FROM explore_rows WHERE run_id = ?",
                           [run_id]).fetchone()
        samples = con.execute("SELECT count(*) FROM samples").fetchone()
    assert rows == samples  # every sample, the unreadable ones included


def test_detector_filter_finds_exactly_the_planted_flips(app_home):
    flips = app_home["truth"]["label_flip"]
    page = _page(app_home, detector="label_issue", flagged_only=True, sort_by="label_issue")
    assert page.total == len(flips)
    assert set(page.rows["sample_id"]) <= set(flips)
    position = page.detectors.index("label_issue")
    assert page.rows["scores"].map(lambda s: s[position]).is_monotonic_increasing
    first = page.rows.iloc[0]
    assert first["suggested_label"] == flips[first["sample_id"]]["true_label"]
    assert "label_issue" in first["flagged_by"] and "knn_label" in first["flagged_by"]


def test_any_detector_flagged_is_the_union_of_planted_sets(app_home):
    truth = app_home["truth"]
    planted = (set(truth["label_flip"]) | set(truth["outlier"]) | set(truth["caption_mismatch"])
               | {pair[0] for pair in truth["near_duplicate"]})
    planted -= set(truth["unreadable"])
    assert _page(app_home, flagged_only=True).total == len(planted)


def test_class_split_search_and_threshold_filters(app_home):
    everything = _page(app_home).total
    ones = _page(app_home, classes=("one",))
    assert 0 < ones.total < everything and set(ones.rows["label"]) == {"one"}
    tests = _page(app_home, splits=("test",))
    assert set(tests.rows["split"]) == {"test"}
    assert _page(app_home, classes=("one",), splits=("test",)).total < ones.total
    found = _page(app_home, search="D0012")  # case-insensitive, on id, path and caption
    assert list(found.rows["sample_id"]) == ["d0012"]
    low = _page(app_home, detector="outlier", max_score=0.1)
    assert low.total == len([s for s in app_home["truth"]["outlier"]])


def test_paging_and_sort_direction(app_home):
    first = explore.explore_page(app_home["store"], app_home["dataset_id"], app_home["run_id"],
                                 explore.ExploreFilters(sort_by="order"), page=0, page_size=10)
    second = explore.explore_page(app_home["store"], app_home["dataset_id"], app_home["run_id"],
                                  explore.ExploreFilters(sort_by="order"), page=1, page_size=10)
    assert len(first.rows) == len(second.rows) == 10
    assert not set(first.rows["sample_id"]) & set(second.rows["sample_id"])
    best = _page(app_home, sort_by="worst", worst_first=False).rows["worst_score"]
    worst = _page(app_home, sort_by="worst").rows["worst_score"]
    assert worst.iloc[0] < best.iloc[0] and best.is_monotonic_decreasing


def test_decision_filters_follow_the_log_with_undo(app_home):
    store, dataset_id = app_home["store"], app_home["dataset_id"]
    record_decisions(store, dataset_id, [Decision("d0012", "remove"), Decision("d0068", "keep"),
                                         Decision("d0072", "relabel", "zero")])
    record_decisions(store, dataset_id, [Decision("d0068", "undo")])
    assert set(_page(app_home, decision="decided").rows["sample_id"]) == {"d0012", "d0072"}
    assert list(_page(app_home, decision="remove").rows["sample_id"]) == ["d0012"]
    relabelled = _page(app_home, decision="relabel").rows.iloc[0]
    assert (relabelled["decision"], relabelled["decision_label"]) == ("relabel", "zero")
    assert _page(app_home, decision="undecided").total == _page(app_home).total - 2


def test_insights_numbers_match_the_planted_truth(app_home):
    store, run_id, truth = app_home["store"], app_home["run_id"], app_home["truth"]
    explore.ensure_explore_index(store, run_id)
    summary = insights.detector_summary(store, run_id).set_index("detector")
    assert summary.loc["label_issue", "issues"] == len(truth["label_flip"])
    assert summary.loc["overall", "issues"] == 0
    assert summary.loc["label_issue", "threshold"] < 0.1
    histograms = insights.score_histograms(store, run_id, 10)
    assert histograms.groupby("detector")["count"].sum().eq(summary["scored"]).all()
    matrix = insights.label_matrix(store, run_id)
    disagreeing = matrix.loc[matrix["given"] != matrix["predicted"], "count"].sum()
    assert disagreeing == len(truth["label_flip"])
    points = insights.map_points(store, run_id, limit=50)
    assert len(points) == 50 and (points["issue_count"].head(20) > 0).all()
    by_group = insights.issues_by_class_and_split(store, run_id)
    assert by_group.loc[by_group["detector"] == "outlier", "issues"].sum() == len(truth["outlier"])


def test_issue_counts_of_every_succeeded_run(app_home):
    # what changed between two runs: tests/audit/test_run_compare.py
    store, dataset_id, run_id = app_home["store"], app_home["dataset_id"], app_home["run_id"]
    scores = run_store.scores_frame(store, run_id)
    second = run_store.create_run(store, dataset_id, {})
    flags = scores[scores["detector"] == "outlier"].copy()
    flags.loc[flags.index[:3], "is_issue"] = True  # three more flagged samples
    run_store.write_scores(store, second, flags)
    run_store.finish_run(store, second, "succeeded")
    run_store.create_run(store, dataset_id, {})  # running: not counted
    counts = insights.run_issue_counts(store, dataset_id).set_index(["run_id", "detector"])
    outliers = len(app_home["truth"]["outlier"])
    newly = int((~scores.loc[flags.index[:3], "is_issue"]).sum())
    assert counts.loc[(run_id, "outlier"), "issues"] == outliers
    assert counts.loc[(second, "outlier"), "issues"] == outliers + newly
    assert set(counts.index.get_level_values("run_id")) == {run_id, second}


def test_only_succeeded_runs_are_indexed(app_home):
    running = run_store.create_run(app_home["store"], app_home["dataset_id"], {})
    with pytest.raises(NotFoundError, match="running"):
        explore.ensure_explore_index(app_home["store"], running)


def test_sample_detail_and_neighbours_in_asked_order(app_home):
    store, dataset_id = app_home["store"], app_home["dataset_id"]
    detail = lookups.sample_detail(store, dataset_id, "d0012")
    assert detail["label"] == app_home["truth"]["label_flip"]["d0012"]["given_label"]
    assert detail["root"].endswith("demo")
    ordered = lookups.samples_by_ids(store, dataset_id, ["d0005", "d0001", "nope", "d0003"])
    assert list(ordered["sample_id"]) == ["d0005", "d0001", "d0003"]
    scores = lookups.sample_scores(store, app_home["run_id"], "d0012")
    assert scores.iloc[0]["detector"] in ("label_issue", "knn_label")
    assert scores.set_index("detector").loc["label_issue", "details"]["suggested_label"]
    with pytest.raises(NotFoundError, match="no sample"):
        lookups.sample_detail(store, dataset_id, "missing")


def test_overview_counts_flagged_samples_of_the_last_run(app_home):
    overview = lookups.dataset_overview(app_home["store"]).iloc[0]
    truth = app_home["truth"]
    assert overview["unreadable"] == len(truth["unreadable"])
    assert overview["last_run"] == app_home["run_id"]
    assert overview["flagged"] == _page(app_home, flagged_only=True).total
    assert overview["splits"] == "test, train"
