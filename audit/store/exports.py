"""Exports (the ``exports`` table) and the score read-outs an export needs.

An export reads a run's scores in the narrow shapes its rules use (flags of chosen detectors,
near-duplicate sets, suggested labels), pulling only the JSON fields it needs out of
``details`` in SQL, and records every finished export with its rules and counts. Which
detectors hold duplicate sets or suggest labels is the caller's to say, from the run's
recorded facts (``runs.run_detector_facts``).
"""

from __future__ import annotations

import json

import pandas as pd

from audit.store.connection import Store

def record_export(store: Store, dataset_id: int, run_id: int | None, out_dir: str, fmt: str,
                  rules: dict, counts: dict) -> int:
    """Append one finished export; return its id."""
    with store.transaction() as con:
        row = con.execute(
            "INSERT INTO exports (dataset_id, run_id, out_dir, format, rules, counts) "
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            [dataset_id, run_id, out_dir, fmt, json.dumps(rules, sort_keys=True),
             json.dumps(counts, sort_keys=True)],
        ).fetchone()
    return int(row[0])


def list_exports(store: Store, dataset_id: int) -> pd.DataFrame:
    """A dataset's exports, newest first."""
    with store.transaction() as con:
        return con.execute(
            "SELECT id, dataset_id, run_id, out_dir, format, rules, counts, created_at "
            "FROM exports WHERE dataset_id = ? ORDER BY id DESC",
            [dataset_id],
        ).df()


def run_detectors(store: Store, run_id: int) -> list[str]:
    """The detectors that wrote scores in a run, sorted."""
    with store.transaction() as con:
        rows = con.execute(
            "SELECT DISTINCT detector FROM scores WHERE run_id = ? ORDER BY detector", [run_id]
        ).fetchall()
    return [row[0] for row in rows]


def detector_flags(store: Store, run_id: int, detectors: list[str], flagged_only: bool = False,
                   threshold: float | None = None) -> pd.DataFrame:
    """sample_id, detector, score, is_issue and suggests_label (the details name a suggested
    label, so the flag is about the label) of the chosen detectors, in long format; with
    ``flagged_only``, just the rows flagged by is_issue, or by score < threshold."""
    with store.transaction() as con:
        return con.execute(
            """
            SELECT sample_id, detector, score, is_issue,
                   json_extract_string(details, '$.suggested_label') IS NOT NULL
                       AS suggests_label
            FROM scores
            WHERE run_id = ? AND list_contains(?, detector)
              AND (NOT ? OR CASE WHEN ? IS NULL THEN is_issue ELSE score < ? END)
            ORDER BY sample_id, detector
            """,
            [run_id, detectors, flagged_only, threshold, threshold],
        ).df()


def duplicate_sets(store: Store, run_id: int, detectors: list[str]) -> pd.DataFrame:
    """Duplicate-set members found by the chosen detectors: sample_id, set_id, duplicate_of
    (JSON list text), leak."""
    with store.transaction() as con:
        return con.execute(
            """
            SELECT sample_id,
                   json_extract_string(details, '$.set_id') AS set_id,
                   json_extract_string(details, '$.duplicate_of') AS duplicate_of,
                   coalesce(try_cast(json_extract_string(details, '$.leak') AS BOOLEAN), false)
                       AS leak
            FROM scores
            WHERE run_id = ? AND list_contains(?, detector)
              AND (json_extract_string(details, '$.set_id') IS NOT NULL
                   OR json_array_length(json_extract(details, '$.duplicate_of')) > 0)
            ORDER BY sample_id
            """,
            [run_id, detectors],
        ).df()


def label_suggestions(store: Store, run_id: int, detectors: list[str]) -> pd.DataFrame:
    """One suggestion per sample flagged by a chosen detector with a suggested label: that of
    the detector doubting the given label most (lowest score, then name), the suggestion
    Explore shows. Columns: sample_id, detector, suggested_label, suggested_confidence."""
    with store.transaction() as con:
        return con.execute(
            """
            SELECT sample_id, detector,
                   json_extract_string(details, '$.suggested_label') AS suggested_label,
                   try_cast(json_extract_string(details, '$.suggested_confidence') AS DOUBLE)
                       AS suggested_confidence
            FROM scores
            WHERE run_id = ? AND list_contains(?, detector) AND is_issue
              AND json_extract_string(details, '$.suggested_label') IS NOT NULL
            QUALIFY row_number() OVER (PARTITION BY sample_id
                                       ORDER BY score NULLS LAST, detector) = 1
            ORDER BY sample_id
            """,
            [run_id, detectors],
        ).df()
