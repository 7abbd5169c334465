"""Insights' read queries for one run: per-detector summary and score histograms, issues per
class and split, the given-vs-predicted label matrix, the 2-D map's points, and issues per
detector across a dataset's runs. The per-class, matrix and map queries read the Explore index
(``audit.store.explore``) and build it first when no page has yet."""

from __future__ import annotations

import pandas as pd

from audit.store.connection import Store
from audit.store.explore import ensure_explore_index


def detector_summary(store: Store, run_id: int) -> pd.DataFrame:
    """Per detector: samples scored, issues, and the threshold (highest score flagged)."""
    with store.transaction() as con:
        return con.execute(
            "SELECT detector, count(*) AS scored, count(*) FILTER (WHERE is_issue) AS issues, "
            "max(score) FILTER (WHERE is_issue) AS threshold, avg(score) AS mean_score "
            "FROM scores WHERE run_id = ? GROUP BY detector ORDER BY detector",
            [run_id],
        ).df()


def score_histograms(store: Store, run_id: int, bins: int = 20) -> pd.DataFrame:
    """Per detector and bin of [0, 1]: bin_start, bin_end, count (empty bins left out)."""
    with store.transaction() as con:
        frame = con.execute(
            "SELECT detector, least(floor(score * $bins), $bins - 1)::INTEGER AS bin, "
            "count(*) AS count FROM scores WHERE run_id = $run_id AND score IS NOT NULL "
            "GROUP BY ALL ORDER BY detector, bin",
            {"run_id": run_id, "bins": bins},
        ).df()
    frame["bin_start"] = frame["bin"] / bins
    frame["bin_end"] = (frame["bin"] + 1) / bins
    return frame


def issues_by_class_and_split(store: Store, run_id: int) -> pd.DataFrame:
    """Per detector, class and split: issues, next to the number of samples there."""
    ensure_explore_index(store, run_id)
    with store.transaction() as con:
        return con.execute(
            """
            WITH sizes AS (
                SELECT label, split, count(*) AS samples FROM explore_rows
                WHERE run_id = $run_id GROUP BY ALL
            ), issues AS (
                SELECT sc.detector, r.label, r.split, count(*) AS issues
                FROM scores sc JOIN explore_rows r
                    ON r.run_id = sc.run_id AND r.sample_id = sc.sample_id
                WHERE sc.run_id = $run_id AND sc.is_issue GROUP BY ALL
            )
            SELECT i.detector, i.label, i.split, i.issues, s.samples
            FROM issues i JOIN sizes s USING (label, split) ORDER BY ALL
            """,
            {"run_id": run_id},
        ).df()


def label_matrix(store: Store, run_id: int) -> pd.DataFrame:
    """Given label x the probe's predicted label (the confident joint's counts)."""
    ensure_explore_index(store, run_id)
    with store.transaction() as con:
        return con.execute(
            "SELECT r.label AS given, rs.predicted_label AS predicted, count(*) AS count "
            "FROM run_samples rs JOIN explore_rows r "
            "ON r.run_id = rs.run_id AND r.sample_id = rs.sample_id "
            "WHERE rs.run_id = ? AND rs.predicted_label IS NOT NULL GROUP BY ALL ORDER BY ALL",
            [run_id],
        ).df()


def map_points(store: Store, run_id: int, limit: int = 20_000) -> pd.DataFrame:
    """Points of the 2-D map: every flagged sample first, then a fixed sample of the rest."""
    ensure_explore_index(store, run_id)
    with store.transaction() as con:
        return con.execute(
            "SELECT rs.sample_id, rs.map_x, rs.map_y, r.label, r.split, r.issue_count, "
            "r.worst_score, r.suggested_label "
            "FROM run_samples rs JOIN explore_rows r "
            "ON r.run_id = rs.run_id AND r.sample_id = rs.sample_id "
            "WHERE rs.run_id = ? AND rs.map_x IS NOT NULL "
            "ORDER BY r.issue_count > 0 DESC, hash(rs.sample_id) LIMIT ?",
            [run_id, limit],
        ).df()


def run_issue_counts(store: Store, dataset_id: int) -> pd.DataFrame:
    """Issues per detector for every succeeded run of a dataset."""
    with store.transaction() as con:
        return con.execute(
            "SELECT sc.run_id, sc.detector, count(*) FILTER (WHERE sc.is_issue) AS issues, "
            "count(*) AS scored FROM scores sc JOIN runs r ON r.id = sc.run_id "
            "WHERE r.dataset_id = ? AND r.status = 'succeeded' GROUP BY ALL ORDER BY ALL",
            [dataset_id],
        ).df()
