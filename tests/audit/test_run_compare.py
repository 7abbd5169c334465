"""Run to run (audit.store.run_compare) on a real store: a real image folder ingested, two
succeeded runs written through ``audit.store.runs`` the way the worker writes them, with
planted changes, then the comparison's counts, score moves, changed samples and Explore's
change filter."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from PIL import Image

from audit.ingest import ingest
from audit.errors import ConfigError, NotFoundError
from audit.store import runs as run_store
from audit.store.datasets import samples_frame
from audit.store.explore import ExploreFilters, explore_page
from audit.store.run_compare import RunChange, compare_runs

# Eight samples, s0-s3 cats and s4-s7 dogs (dataset order). Per detector: scores in run A and
# run B (None: the run did not run that detector), and which samples each run flags.
LABEL_ISSUE_A = [0.05, 0.1, 0.9, 0.9, 0.2, 0.6, 0.7, 0.8]
LABEL_ISSUE_B = [0.5, 0.1, 0.95, 0.8, 0.6, 0.1, 0.2, 0.9]
PLANTED = {
    #                 scores A, flagged in A, scores B, flagged in B
    "label_issue": (LABEL_ISSUE_A, {0, 1, 4}, LABEL_ISSUE_B, {1, 5, 6}),
    "outlier": ([0.5] * 8, {7}, [0.7] * 8, {7}),
    "knn_label": ([0.5] * 8, {2}, None, set()),         # dropped from run B
    "near_duplicate": (None, set(), [0.5] * 8, {3}),    # new in run B
}


@pytest.fixture
def two_runs(store, settings, tmp_path) -> dict:
    dataset_id = _ingest_pets(store, settings, tmp_path / "pets")
    ids = samples_frame(store, dataset_id).sort_values("row_index")["sample_id"].tolist()
    run_a = _succeeded_run(store, dataset_id, ids, run=0)
    run_b = _succeeded_run(store, dataset_id, ids, run=1)
    return {"store": store, "dataset_id": dataset_id, "ids": ids, "a": run_a, "b": run_b}


def _ingest_pets(store, settings, folder) -> int:
    for label in ("cat", "dog"):
        (folder / label).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (16, 16), (i * 60, 40, 90)).save(folder / label / f"{i}.png")
    return ingest(store, folder, settings, name=folder.name)


def _succeeded_run(store, dataset_id: int, ids: list[str], run: int) -> int:
    run_id = run_store.create_run(store, dataset_id, {"planted": run})
    rows = []
    for detector, planted in PLANTED.items():
        scores, flagged = planted[2 * run], planted[2 * run + 1]
        if scores is not None:
            rows += [{"sample_id": s, "detector": detector, "score": scores[i],
                      "is_issue": i in flagged, "details": json.dumps({})}
                     for i, s in enumerate(ids)]
    run_store.write_scores(store, run_id, pd.DataFrame(rows))
    run_store.finish_run(store, run_id, "succeeded")
    return run_id


def test_counts_per_detector(two_runs):
    compared = compare_runs(two_runs["store"], two_runs["a"], two_runs["b"])
    assert (compared.dataset_id, compared.run_a, compared.run_b) == (
        two_runs["dataset_id"], two_runs["a"], two_runs["b"])
    table = compared.by_detector.set_index("detector")
    columns = ["scored_a", "scored_b", "flagged_a", "flagged_b", "newly_flagged",
               "no_longer_flagged", "still_flagged"]
    assert table[columns].to_dict("index") == {
        "label_issue": dict(zip(columns, [8, 8, 3, 3, 2, 2, 1])),
        "outlier": dict(zip(columns, [8, 8, 1, 1, 0, 0, 1])),
        # a detector only one run scored changes nobody's verdict
        "knn_label": dict(zip(columns, [8, 0, 1, 0, 0, 0, 0])),
        "near_duplicate": dict(zip(columns, [0, 8, 0, 1, 0, 0, 0])),
    }


def test_score_moves_are_b_minus_a(two_runs):
    table = compare_runs(two_runs["store"], two_runs["a"], two_runs["b"]).by_detector
    table = table.set_index("detector")
    moves = pd.Series(LABEL_ISSUE_B) - pd.Series(LABEL_ISSUE_A)
    assert table.loc["label_issue", "mean_score_move"] == pytest.approx(moves.mean())  # -0.0125
    assert table.loc["label_issue", "median_score_move"] == pytest.approx(0.025)
    assert table.loc["outlier", "mean_score_move"] == pytest.approx(0.2)
    assert pd.isna(table.loc["knn_label", "mean_score_move"])


def test_counts_per_detector_and_class(two_runs):
    by_class = compare_runs(two_runs["store"], two_runs["a"], two_runs["b"]).by_class
    issues = by_class[by_class["detector"] == "label_issue"].set_index("label")
    columns = ["flagged_a", "flagged_b", "newly_flagged", "no_longer_flagged", "still_flagged"]
    assert issues[columns].to_dict("index") == {
        "cat": dict(zip(columns, [2, 1, 0, 1, 1])),
        "dog": dict(zip(columns, [1, 2, 2, 1, 0])),
    }
    assert sorted(by_class["detector"].unique()) == sorted(PLANTED)


def test_changed_samples_one_row_per_changed_verdict(two_runs):
    ids = two_runs["ids"]
    changes = compare_runs(two_runs["store"], two_runs["a"], two_runs["b"]).changes
    assert changes[["sample_id", "label", "detector", "change"]].values.tolist() == [
        [ids[5], "dog", "label_issue", "newly flagged"],
        [ids[6], "dog", "label_issue", "newly flagged"],
        [ids[0], "cat", "label_issue", "no longer flagged"],
        [ids[4], "dog", "label_issue", "no longer flagged"],
    ]
    first = changes.iloc[0]
    assert (first["score_a"], first["score_b"]) == (0.6, 0.1)
    assert (bool(first["flagged_a"]), bool(first["flagged_b"])) == (False, True)


def test_swapped_runs_swap_the_changes(two_runs):
    backwards = compare_runs(two_runs["store"], two_runs["b"], two_runs["a"]).by_detector
    table = backwards.set_index("detector")
    assert table.loc["label_issue", ["newly_flagged", "no_longer_flagged"]].tolist() == [2, 2]
    assert table.loc["knn_label", ["scored_a", "scored_b"]].tolist() == [0, 8]
    assert table.loc["outlier", "mean_score_move"] == pytest.approx(-0.2)


def _explore(two_runs, change: RunChange) -> list[str]:
    page = explore_page(two_runs["store"], two_runs["dataset_id"], two_runs["b"],
                        ExploreFilters(change=change, sort_by="order"))
    return page.rows["sample_id"].tolist()


def test_explore_shows_exactly_the_samples_of_one_change(two_runs):
    ids, a, b = two_runs["ids"], two_runs["a"], two_runs["b"]
    assert _explore(two_runs, RunChange(a, b, "label_issue", "newly flagged")) == [ids[5], ids[6]]
    assert _explore(two_runs, RunChange(a, b, "label_issue", "no longer flagged")) == [
        ids[0], ids[4]]
    assert _explore(two_runs, RunChange(a, b, "label_issue", "no longer flagged", "dog")) == [
        ids[4]]
    assert _explore(two_runs, RunChange(a, b, "outlier", "newly flagged")) == []
    assert _explore(two_runs, RunChange(a, b, "knn_label", "no longer flagged")) == []


def test_a_change_must_be_newly_or_no_longer_flagged():
    with pytest.raises(ValueError, match="newly flagged"):
        RunChange(1, 2, "outlier", "still flagged")


def test_runs_of_two_datasets_are_refused(two_runs, settings, tmp_path):
    store = two_runs["store"]
    other = _ingest_pets(store, settings, tmp_path / "other")
    ids = samples_frame(store, other)["sample_id"].tolist()
    other_run = _succeeded_run(store, other, ids, run=0)
    with pytest.raises(ConfigError, match=f"run {two_runs['a']} audited dataset "
                                          f"{two_runs['dataset_id']} and run {other_run} dataset "
                                          f"{other}; compare two runs of the same dataset"):
        compare_runs(store, two_runs["a"], other_run)


def test_unfinished_and_missing_runs_are_refused(two_runs):
    store = two_runs["store"]
    running = run_store.create_run(store, two_runs["dataset_id"], {})
    with pytest.raises(NotFoundError, match=f"run {running} is running"):
        compare_runs(store, two_runs["a"], running)
    with pytest.raises(NotFoundError, match="no run 999"):
        compare_runs(store, 999, two_runs["b"])
