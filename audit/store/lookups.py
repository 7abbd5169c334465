"""Small reads for the dashboard: the store's change fingerprint, a dataset's classes, splits,
succeeded runs, overview and root folder, and one example's fields, scores and run facts."""

from __future__ import annotations

import json

import pandas as pd

from audit.classes import class_order
from audit.errors import NotFoundError
from audit.store.connection import Store, one_row


# --- small lookups -------------------------------------------------------------------------

def store_version(store: Store) -> tuple:
    """A cheap fingerprint that changes whenever decisions, runs, datasets or saved views
    change."""
    with store.transaction() as con:
        return con.execute(
            "SELECT (SELECT max(id) FROM flags), (SELECT max(id) FROM runs), "
            "(SELECT count(*) FROM runs WHERE status <> 'running'), "
            "(SELECT max(id) FROM datasets), (SELECT count(*) FROM datasets), "
            "(SELECT max(id) FROM saved_views), (SELECT count(*) FROM saved_views)"
        ).fetchone()


def dataset_labels(store: Store, dataset_id: int) -> tuple[list[str], list[str]]:
    """The dataset's classes (in ``audit.classes`` order) and splits (sorted)."""
    with store.transaction() as con:
        classes = con.execute("SELECT DISTINCT label FROM samples WHERE dataset_id = ? ORDER BY 1",
                              [dataset_id]).fetchall()
        splits = con.execute("SELECT DISTINCT split FROM samples WHERE dataset_id = ? ORDER BY 1",
                             [dataset_id]).fetchall()
    return class_order(r[0] for r in classes), [r[0] for r in splits]


def finished_runs(store: Store, dataset_id: int) -> pd.DataFrame:
    """Succeeded runs of a dataset, newest first: id, times, config, skipped detectors, notes."""
    with store.transaction() as con:
        return con.execute(
            "SELECT id, started_at, finished_at, config, skipped, notes FROM runs "
            "WHERE dataset_id = ? AND status = 'succeeded' ORDER BY id DESC",
            [dataset_id],
        ).df()


def dataset_overview(store: Store) -> pd.DataFrame:
    """One row per dataset: size, splits, classes, unreadable files, last run, flagged samples."""
    with store.transaction() as con:
        return con.execute(
            """
            WITH last_run AS (
                SELECT dataset_id, max(id) AS run_id FROM runs WHERE status = 'succeeded'
                GROUP BY dataset_id
            ), flagged AS (
                SELECT l.dataset_id, count(DISTINCT sc.sample_id) AS flagged
                FROM last_run l JOIN scores sc ON sc.run_id = l.run_id AND sc.is_issue
                GROUP BY l.dataset_id
            ), sizes AS (
                SELECT dataset_id, count(*) AS samples, count(load_error) AS unreadable,
                    string_agg(DISTINCT split, ', ' ORDER BY split) AS splits,
                    count(DISTINCT label) AS classes
                FROM samples GROUP BY dataset_id
            )
            SELECT d.id, d.name, d.version, d.kind, d.source, s.samples, s.splits, s.classes,
                s.unreadable,
                l.run_id AS last_run, r.finished_at AS last_run_at,
                coalesce(f.flagged, 0) AS flagged
            FROM datasets d LEFT JOIN sizes s ON s.dataset_id = d.id
            LEFT JOIN last_run l ON l.dataset_id = d.id LEFT JOIN runs r ON r.id = l.run_id
            LEFT JOIN flagged f ON f.dataset_id = d.id
            ORDER BY d.id
            """
        ).df()


# --- example detail ------------------------------------------------------------------------

def sample_detail(store: Store, dataset_id: int, sample_id: str) -> dict:
    """One sample's stored fields plus its dataset's root folder."""
    row = one_row(
        store,
        "SELECT s.sample_id, s.row_index, s.split, s.path, s.label, s.caption, s.width, "
        "s.height, s.sha256, s.load_error, s.extra, d.root FROM samples s "
        "JOIN datasets d ON d.id = s.dataset_id WHERE s.dataset_id = ? AND s.sample_id = ?",
        [dataset_id, sample_id])
    if row is None:
        raise NotFoundError(
            f"dataset {dataset_id} has no sample {sample_id!r}; pick one in Explore")
    return row


def sample_scores(store: Store, run_id: int, sample_id: str) -> pd.DataFrame:
    """Every detector's verdict on one sample: detector, score, is_issue, details (a dict)."""
    with store.transaction() as con:
        frame = con.execute(
            "SELECT detector, score, is_issue, details FROM scores "
            "WHERE run_id = ? AND sample_id = ? ORDER BY score NULLS LAST, detector",
            [run_id, sample_id],
        ).df()
    frame["details"] = [json.loads(d) if d else {} for d in frame["details"]]
    return frame


def sample_run_facts(store: Store, run_id: int, sample_id: str) -> dict | None:
    """The run's audited label, probe prediction, fold and map position for one sample, if
    stored."""
    return one_row(
        store,
        "SELECT audited_label, fold, predicted_label, predicted_confidence, map_x, map_y "
        "FROM run_samples WHERE run_id = ? AND sample_id = ?",
        [run_id, sample_id])


def samples_by_ids(store: Store, dataset_id: int, sample_ids: list[str]) -> pd.DataFrame:
    """Samples in the order asked for (unknown ids are left out): id, label, split, path ..."""
    with store.transaction() as con:
        frame = con.execute(
            "SELECT s.sample_id, s.label, s.split, s.path, s.caption, s.sha256, s.load_error "
            "FROM samples s WHERE s.dataset_id = ? AND list_contains(?::VARCHAR[], s.sample_id)",
            [dataset_id, list(sample_ids)],
        ).df()
    order = {sample_id: i for i, sample_id in enumerate(sample_ids)}
    return frame.sort_values("sample_id", key=lambda ids: ids.map(order)).reset_index(drop=True)


def dataset_root(store: Store, dataset_id: int) -> str:
    with store.transaction() as con:
        row = con.execute("SELECT root FROM datasets WHERE id = ?", [dataset_id]).fetchone()
    if row is None:
        raise NotFoundError(f"no dataset {dataset_id}; pick one on the Datasets page")
    return row[0]
