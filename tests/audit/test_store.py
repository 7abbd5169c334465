"""The store: migrations, one-transaction writes, and two processes at once (locks held by
other processes: test_store_lock.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import pandas as pd
import pytest

from audit.store import Store
from audit.store.datasets import SAMPLE_COLUMNS, create_dataset, list_datasets
from audit.store.explore import ExploreFilters, explore_page
from audit.store.flags import Decision, current_decisions, decision_log, record_decisions
from audit.store.migrations import MIGRATIONS, schema_version
from audit.store.runs import create_run, finish_run, latest_finished_run, scores_frame, write_scores
from tests.conftest import PROJECT_ROOT


def _samples(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({
        "sample_id": ids, "row_index": range(len(ids)), "split": "train",
        "path": [f"{i}.png" for i in ids], "label": "a", "caption": None, "width": 4,
        "height": 4, "file_size": 10, "sha256": "x", "load_error": None, "extra": None,
    })[SAMPLE_COLUMNS]


def _scores(ids: list[str], detector: str) -> pd.DataFrame:
    return pd.DataFrame({"sample_id": ids, "detector": detector, "score": 0.5, "is_issue": False,
                         "details": json.dumps({"reason": "ok"})})


def test_migrations_apply_once_in_order(store: Store) -> None:
    with store.transaction() as con:
        assert schema_version(con) == max(v for v, _ in MIGRATIONS)
    with store.transaction() as con:  # a second open applies nothing again
        assert con.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)
    assert [v for v, _ in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


def test_an_explore_index_built_before_the_top_reason_column_is_rebuilt_with_it(tmp_path) -> None:
    """Migration 12: indexes built under migration 11 are dropped; the next page builds the
    run's index again, each row with its worst flagging detector and that detector's reason."""
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:       # a store as migration 11 left it
        con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                    "applied_at TIMESTAMP DEFAULT current_timestamp)")
        for version, sql in MIGRATIONS[:11]:
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations (version) VALUES (?)", [version])
        con.execute("INSERT INTO explore_runs (run_id, dataset_id, detectors) VALUES (1, 1, [])")
        con.execute("INSERT INTO explore_rows VALUES (1, 'a', 0, 'train', 'a', 'a.png', NULL, "
                    "'x', NULL, NULL, [], [], 0, NULL, 'a')")
    store = Store(path)
    with store.transaction() as con:
        assert con.execute("SELECT count(*) FROM explore_rows").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM explore_runs").fetchone()[0] == 0
    dataset_id = create_dataset(store, "d", "/src", "manifest", "/src", _samples(["a", "b", "c"]))
    run_id = create_run(store, dataset_id, {})
    flagged = {"a": {"outlier": 0.2, "label_issue": 0.1}, "b": {"outlier": 0.3}}
    for detector in ("label_issue", "outlier"):
        scores = _scores(["a", "b", "c"], detector)
        for i, sample_id in enumerate(scores["sample_id"]):
            if detector in flagged.get(sample_id, {}):
                scores.loc[i, ["score", "is_issue", "details"]] = [
                    flagged[sample_id][detector], True,
                    json.dumps({"reason": f"{detector} doubts {sample_id}"})]
        write_scores(store, run_id, scores)
    finish_run(store, run_id, "succeeded")
    rows = explore_page(store, dataset_id, run_id, ExploreFilters()).rows.set_index("sample_id")
    assert rows.loc["a", ["reason_detector", "top_reason"]].tolist() == [
        "label_issue", "label_issue doubts a"]
    assert rows.loc["b", ["reason_detector", "top_reason"]].tolist() == [
        "outlier", "outlier doubts b"]
    assert rows.loc["c", ["reason_detector", "top_reason"]].isna().all()   # nothing flagged it


def test_explore_sorts_and_thresholds_on_each_detectors_column_and_beyond_them(store) -> None:
    """Migration 13: each index row carries its first SCORE_COLUMNS scores in columns of their
    own and the mean of its scores; a sort or threshold on a detector past them reads the list.
    Either way the page is the order a plain sort of the scores gives (NULL scores last, then
    the mean, then dataset order)."""
    import numpy as np

    from audit.store.explore import SCORE_COLUMNS

    ids = [f"s{i:02d}" for i in range(40)]
    detectors = [f"d{k:02d}" for k in range(SCORE_COLUMNS + 2)]       # 18: two past the columns
    rng = np.random.default_rng(0)
    table = pd.DataFrame(np.round(rng.uniform(size=(len(ids), len(detectors))), 1),
                         index=ids, columns=detectors)          # rounded: many ties
    table.iloc[3, 1] = table.iloc[5, 17] = np.nan                # scores a detector did not give
    dataset_id = create_dataset(store, "d", "/src", "manifest", "/src", _samples(ids))
    run_id = create_run(store, dataset_id, {})
    for name in detectors:
        given = table[name].dropna()
        write_scores(store, run_id, _scores(list(given.index), name).assign(score=given.to_numpy()))
    finish_run(store, run_id, "succeeded")
    with store.transaction() as con:
        explore_page(store, dataset_id, run_id, ExploreFilters())      # builds the index
        row = con.execute("SELECT scores, mean_score, score_2, score_16 FROM explore_rows "
                          "WHERE sample_id = 's03'").fetchone()
    assert row[2] is None and row[3] == row[0][15] and row[1] == pytest.approx(
        np.nanmean(table.loc["s03"]))
    mean = table.mean(axis=1)
    for name, max_score in (("d01", None), ("d15", 0.5), ("d16", None), ("d17", 0.3)):
        page = explore_page(store, dataset_id, run_id,
                            ExploreFilters(detector=name, max_score=max_score, sort_by=name),
                            page_size=len(ids))
        kept = table if max_score is None else table[table[name] <= max_score]
        expected = (pd.DataFrame({"score": kept[name], "mean": mean[kept.index],
                                  "row": range(len(kept))}, index=kept.index)
                    .sort_values(["score", "mean", "row"], na_position="last").index.tolist())
        assert page.rows["sample_id"].tolist() == expected and page.total == len(kept)


def test_reads_together_share_one_connection_and_keep_each_transaction_whole(store) -> None:
    with store.transaction() as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    with store.reads_together():
        with store.transaction() as first, store.transaction() as inner:
            assert inner is first                      # a transaction inside joins it
        with store.transaction() as second:
            assert second is first                     # one connection for the block
        with pytest.raises(ValueError), store.transaction() as failing:
            failing.execute("INSERT INTO t VALUES (1)")
            raise ValueError("rolled back, alone")
        with store.transaction() as con:
            con.execute("INSERT INTO t VALUES (2)")
    with store.transaction() as con:
        assert con.execute("SELECT x FROM t").fetchall() == [(2,)]
    # the block released the file: another process opens it at once
    opened = subprocess.run([sys.executable, "-c", "import duckdb, sys; "
                             "duckdb.connect(sys.argv[1]).close()", str(store.path)],
                            capture_output=True, text=True, timeout=60)
    assert opened.returncode == 0, opened.stderr


def test_failed_dataset_insert_leaves_nothing(store: Store) -> None:
    with pytest.raises(duckdb.ConstraintException):
        create_dataset(store, "broken", "/src", "manifest", "/src", _samples(["a", "b", "a"]))
    assert list_datasets(store).empty
    with store.transaction() as con:
        assert con.execute("SELECT count(*) FROM samples").fetchone()[0] == 0


def test_scores_are_never_overwritten_and_unfinished_runs_are_not_latest(store: Store) -> None:
    dataset_id = create_dataset(store, "d", "/src", "manifest", "/src", _samples(["a", "b"]))
    first = create_run(store, dataset_id, {"k": 1})
    write_scores(store, first, _scores(["a", "b"], "outlier"))
    finish_run(store, first, "succeeded")
    second = create_run(store, dataset_id, {"k": 2})
    write_scores(store, second, _scores(["a", "b"], "outlier").assign(score=0.1))
    assert latest_finished_run(store, dataset_id) == first
    finish_run(store, second, "succeeded")
    assert latest_finished_run(store, dataset_id) == second
    assert scores_frame(store, first)["score"].tolist() == [0.5, 0.5]
    assert scores_frame(store, second)["score"].tolist() == [0.1, 0.1]


@pytest.mark.reliability
def test_decision_log_is_append_only_and_undo_steps_back(store: Store) -> None:
    dataset_id = create_dataset(store, "d", "/src", "manifest", "/src", _samples(["a", "b"]))
    record_decisions(store, dataset_id, [Decision("a", "remove"), Decision("a", "relabel", "c"),
                                         Decision("b", "keep")])
    record_decisions(store, dataset_id, [Decision("a", "undo"), Decision("b", "undo")])
    standing = current_decisions(store, dataset_id).set_index("sample_id")
    assert standing.loc["a", "action"] == "remove"
    assert "b" not in standing.index
    assert len(decision_log(store, dataset_id)) == 5


DECISIONS = 400    # one transaction each, between the other process's 20 score writes
WRITER = """
import sys, json
sys.path.insert(0, {root!r})
import pandas as pd
from pathlib import Path
from audit.store import Store
from audit.store.runs import write_scores
from audit.store.flags import Decision, record_decisions
store = Store(Path({db!r}), lock_timeout_s=60)
if {mode!r} == "scores":
    ids = [f"s{{i}}" for i in range(1000)]
    for batch in range(20):
        frame = pd.DataFrame({{"sample_id": ids, "detector": f"det{{batch}}", "score": 0.5,
                               "is_issue": False, "details": None}})
        write_scores(store, {run_id}, frame)
else:
    for i in range({decisions}):
        record_decisions(store, {dataset_id}, [Decision(f"s{{i}}", "keep", note=str(i))])
"""


@pytest.mark.slow
def test_two_processes_write_at_once_and_nothing_is_lost(store: Store) -> None:
    ids = [f"s{i}" for i in range(1000)]
    dataset_id = create_dataset(store, "d", "/src", "manifest", "/src", _samples(ids))
    run_id = create_run(store, dataset_id, {})
    scripts = [WRITER.format(root=str(PROJECT_ROOT), db=str(store.path), mode=mode, run_id=run_id,
                             dataset_id=dataset_id, decisions=DECISIONS)
               for mode in ("scores", "flags")]
    procs = [subprocess.Popen([sys.executable, "-c", s], stderr=subprocess.PIPE, text=True)
             for s in scripts]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert len(scores_frame(store, run_id)) == 20 * 1000
    log = decision_log(store, dataset_id)
    assert len(log) == DECISIONS
    assert sorted(log["note"].astype(int)) == list(range(DECISIONS))
