"""Numbered schema migrations, applied in order when a connection opens.

Add a migration by appending ``(next_number, sql)`` to ``MIGRATIONS``; never edit one that
has shipped. Each migration runs in its own transaction together with its version row.
"""

from __future__ import annotations

import duckdb

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE SEQUENCE dataset_ids START 1;
        CREATE TABLE datasets (
            id INTEGER PRIMARY KEY DEFAULT nextval('dataset_ids'),
            name VARCHAR NOT NULL UNIQUE,
            source VARCHAR NOT NULL,            -- the folder or manifest, absolute
            kind VARCHAR NOT NULL,              -- folder | manifest
            root VARCHAR NOT NULL,              -- sample paths are relative to this folder
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE samples (
            dataset_id INTEGER NOT NULL,
            sample_id VARCHAR NOT NULL,
            row_index INTEGER NOT NULL,          -- order in the source: aligns supplied arrays
            split VARCHAR NOT NULL,
            path VARCHAR NOT NULL,               -- relative to datasets.root
            label VARCHAR NOT NULL,
            caption VARCHAR,
            width INTEGER,
            height INTEGER,
            file_size BIGINT,
            sha256 VARCHAR,
            load_error VARCHAR,                  -- NULL when the image decodes
            extra VARCHAR,                       -- JSON object of other manifest columns
            PRIMARY KEY (dataset_id, sample_id)
        );
        CREATE SEQUENCE run_ids START 1;
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY DEFAULT nextval('run_ids'),
            dataset_id INTEGER NOT NULL,
            job_id INTEGER,
            status VARCHAR NOT NULL,             -- running | succeeded | failed | cancelled
            config VARCHAR NOT NULL,             -- JSON
            model_ids VARCHAR,                   -- JSON
            versions VARCHAR,                    -- JSON: package versions
            code_version VARCHAR,
            timings VARCHAR,                     -- JSON: stage -> seconds
            skipped VARCHAR,                     -- JSON: detector -> reason
            error VARCHAR,
            started_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            finished_at TIMESTAMP
        );
        CREATE TABLE scores (
            run_id INTEGER NOT NULL,
            sample_id VARCHAR NOT NULL,
            detector VARCHAR NOT NULL,
            score DOUBLE,                        -- [0, 1], lower = more likely a problem
            is_issue BOOLEAN NOT NULL,
            details VARCHAR                      -- JSON
        );
        CREATE SEQUENCE flag_ids START 1;
        CREATE TABLE flags (
            id BIGINT PRIMARY KEY DEFAULT nextval('flag_ids'),
            dataset_id INTEGER NOT NULL,
            sample_id VARCHAR NOT NULL,
            action VARCHAR NOT NULL CHECK (action IN ('remove', 'relabel', 'keep', 'undo')),
            new_label VARCHAR,
            note VARCHAR,
            author VARCHAR,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        CREATE SEQUENCE job_ids START 1;
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY DEFAULT nextval('job_ids'),
            dataset_id INTEGER,
            kind VARCHAR NOT NULL,               -- audit
            config VARCHAR NOT NULL,             -- JSON
            status VARCHAR NOT NULL,             -- queued | running | succeeded | failed | cancelled
            progress DOUBLE NOT NULL DEFAULT 0,
            message VARCHAR,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            started_at TIMESTAMP,
            finished_at TIMESTAMP,
            worker_pid INTEGER,
            worker_host VARCHAR,
            heartbeat_at TIMESTAMP,
            device VARCHAR,
            cancel_requested BOOLEAN NOT NULL DEFAULT false,
            error VARCHAR,
            traceback VARCHAR,
            run_id INTEGER
        );
        CREATE TABLE job_logs (
            job_id INTEGER NOT NULL,
            logged_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            message VARCHAR NOT NULL
        );
        CREATE SEQUENCE export_ids START 1;
        CREATE TABLE exports (
            id INTEGER PRIMARY KEY DEFAULT nextval('export_ids'),
            dataset_id INTEGER NOT NULL,
            run_id INTEGER,
            out_dir VARCHAR NOT NULL,
            format VARCHAR NOT NULL,
            rules VARCHAR NOT NULL,              -- JSON
            counts VARCHAR NOT NULL,             -- JSON
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        """,
    ),
    (
        2,
        """
        -- Per-run facts about each sample that are not detector scores: the cross-fitting
        -- fold, the probe's prediction, and the 2-D map of the embeddings for Insights.
        CREATE TABLE run_samples (
            run_id INTEGER NOT NULL,
            sample_id VARCHAR NOT NULL,
            fold INTEGER,
            predicted_label VARCHAR,
            predicted_confidence DOUBLE,
            map_x DOUBLE,
            map_y DOUBLE
        );
        """,
    ),
    (
        3,
        """
        -- The Explore index: one wide row per (finished run, sample), built once from the
        -- long scores table so filter + sort + page is one scan. scores/issues are aligned
        -- with explore_runs.detectors (sorted names); a NULL score = that detector skipped it.
        CREATE TABLE explore_runs (
            run_id INTEGER PRIMARY KEY,
            dataset_id INTEGER NOT NULL,
            detectors VARCHAR[] NOT NULL,
            built_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE explore_rows (
            run_id INTEGER NOT NULL,
            sample_id VARCHAR NOT NULL,
            row_index INTEGER NOT NULL,
            split VARCHAR NOT NULL,
            label VARCHAR NOT NULL,
            path VARCHAR NOT NULL,
            caption VARCHAR,
            sha256 VARCHAR,
            load_error VARCHAR,
            suggested_label VARCHAR,
            scores DOUBLE[] NOT NULL,
            issues BOOLEAN[] NOT NULL,
            issue_count INTEGER NOT NULL,
            worst_score DOUBLE,
            search_text VARCHAR NOT NULL        -- lower-cased id, path and caption
        );
        """,
    ),
    (
        4,
        """
        -- What a run's stages want the user to know (unreadable samples, probe folds reduced,
        -- no pretrained CLIP ...), apart from `skipped`, which names detectors only.
        ALTER TABLE runs ADD COLUMN notes VARCHAR;
        """,
    ),
    (
        5,
        """
        -- What a run measured about itself, for the UI: the embedder that ran and why, the
        -- probe's cross-validated agreement with the labels, each detector's summary (overall:
        -- the estimated number of label errors with an interval, the weight of each signal).
        ALTER TABLE runs ADD COLUMN summary VARCHAR;
        """,
    ),
    (
        6,
        """
        -- The label each sample was audited with: the ingested label, or a reviewer's relabel
        -- when the run started from the reviewed decisions (runs.summary.decisions).
        ALTER TABLE run_samples ADD COLUMN audited_label VARCHAR;
        """,
    ),
    (
        7,
        """
        -- Dataset versions: re-ingesting a changed folder as a new version of a dataset makes a
        -- new dataset (version = its parent's + 1) that takes the name; the parent is renamed
        -- NAME@vN and keeps its runs and decisions. carried/dropped: how many of the parent's
        -- standing decisions the new version kept (unchanged samples) and did not.
        ALTER TABLE datasets ADD COLUMN version INTEGER DEFAULT 1;
        ALTER TABLE datasets ADD COLUMN parent_id INTEGER;
        ALTER TABLE datasets ADD COLUMN carried_decisions INTEGER;
        ALTER TABLE datasets ADD COLUMN dropped_decisions INTEGER;
        """,
    ),
    (
        8,
        """
        -- General job kinds (audit, ingest, export): `config` is the kind's JSON payload and
        -- `result` the JSON its runner returned (an audit's run id, an ingest's dataset id, an
        -- export's folder and counts). dataset_id is NULL for an ingest until it finishes.
        ALTER TABLE jobs ADD COLUMN result VARCHAR;
        """,
    ),
    (
        9,
        """
        -- Named saved views of Explore, per dataset: `params` is a JSON object of the view's
        -- URL parameters that differ from their defaults (filters, sort, page).
        CREATE SEQUENCE saved_view_ids START 1;
        CREATE TABLE saved_views (
            id INTEGER PRIMARY KEY DEFAULT nextval('saved_view_ids'),
            dataset_id INTEGER NOT NULL,
            name VARCHAR NOT NULL,
            params VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            UNIQUE (dataset_id, name)
        );
        """,
    ),
    (
        10,
        """
        -- Decision batches: every call that records decisions (one click, one bulk action)
        -- shares one batch id, so a bulk action can be undone as one; an undo of a whole batch
        -- names it in `undoes_batch`. Rows written before this migration have no batch.
        CREATE SEQUENCE flag_batch_ids START 1;
        ALTER TABLE flags ADD COLUMN batch_id BIGINT;
        ALTER TABLE flags ADD COLUMN undoes_batch BIGINT;
        """,
    ),
    (
        11,
        """
        -- Each sample's nearest neighbours in a run's kNN graph (the embedding the run used),
        -- nearest first, for "more like this".
        CREATE TABLE run_neighbours (
            run_id INTEGER NOT NULL,
            sample_id VARCHAR NOT NULL,
            neighbours VARCHAR[] NOT NULL,
            distances FLOAT[] NOT NULL,
            PRIMARY KEY (run_id, sample_id)
        );
        """,
    ),
    (
        12,
        """
        -- Each Explore row carries its top reason (its worst flagging detector and that
        -- detector's details.reason), made once when the index is built instead of read from
        -- `scores` for every page. Indexes built before have no such columns: they are dropped
        -- here, and rebuilt by the one rule in audit/store/explore.py when their run is next
        -- opened.
        DELETE FROM explore_rows;
        DELETE FROM explore_runs;
        ALTER TABLE explore_rows ADD COLUMN reason_detector VARCHAR;
        ALTER TABLE explore_rows ADD COLUMN top_reason VARCHAR;
        """,
    ),
    (
        13,
        """
        -- Each Explore row carries the mean of its scores and its first 16 scores each in a
        -- column of its own (score_k = scores[k]), so a sort or a threshold on one detector
        -- reads that column, not the whole scores list (at 1M rows a page's top-N sorted by one
        -- detector: 48 -> 7 ms). Indexes built before are dropped, as by migration 12, and
        -- rebuilt when their run is next opened.
        DELETE FROM explore_rows;
        DELETE FROM explore_runs;
        ALTER TABLE explore_rows ADD COLUMN mean_score DOUBLE;
        ALTER TABLE explore_rows ADD COLUMN score_1 DOUBLE;
        ALTER TABLE explore_rows ADD COLUMN score_2 DOUBLE;
        ALTER TABLE explore_rows ADD COLUMN score_3 DOUBLE;
        ALTER TABLE explore_rows ADD COLUMN score_4 DOUBLE;
        ALTER TABLE explore_rows ADD COLUMN score_5 DOUBLE;
        ALTER TABLE explore_rows ADD COLUMN score_6 DOUBLE;
        ALTER TABLE explore_rows ADD COLUMN score_7 DOUBLE;
        ALTER TABLE explore_rows ADD COLUMN score_8 DOUBLE;
        ALTER TABLE explore_rows ADD COLUMN score_9 DOUBLE;
        ALTER TABLE explore_rows ADD COLUMN score_10 DOUBLE;
        ALTER TABLE explore_rows ADD COLUMN score_11 DOUBLE;
        ALTER TABLE explore_rows ADD COLUMN score_12 DOUBLE;
        ALTER TABLE explore_rows ADD COLUMN score_13 DOUBLE;
        ALTER TABLE explore_rows ADD COLUMN score_14 DOUBLE;
        ALTER TABLE explore_rows ADD COLUMN score_15 DOUBLE;
        ALTER TABLE explore_rows ADD COLUMN score_16 DOUBLE;
        """,
    ),
]


def apply_migrations(con: duckdb.DuckDBPyConnection) -> None:
    """Bring the schema up to date; a read-only check when it already is (the common case)."""
    if _applied_count(con) == len(MIGRATIONS):
        return
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)"
    )
    applied = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    for version, sql in MIGRATIONS:
        if version in applied:
            continue
        con.begin()
        try:
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations (version) VALUES (?)", [version])
            con.commit()
        except BaseException:
            con.rollback()
            raise


def _applied_count(con: duckdb.DuckDBPyConnection) -> int:
    """How many migrations the file has (all of them, in the common case; counted rather than
    the highest number read, so a store that missed one in the middle is still brought up).
    The table is read straight away: looking it up in ``information_schema`` first cost every
    connection about 7 ms."""
    try:
        return con.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
    except duckdb.CatalogException:
        return 0


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)
