"""Audit runs and their scores (long format: one row per run, sample and detector).

A run is created ``running``, receives its scores stage by stage, and ends in exactly one
final state. Only ``succeeded`` runs are shown as results; scores are never overwritten:
a rerun is a new run.
"""

from __future__ import annotations

import json

import pandas as pd

from audit.errors import NotFoundError
from audit.store.connection import Store, one_row

SCORE_COLUMNS = ["sample_id", "detector", "score", "is_issue", "details"]
FINAL_RUN_STATES = ("succeeded", "failed", "cancelled")
_RUN_FIELDS = (
    "id, dataset_id, job_id, status, config, model_ids, versions, code_version, "
    "timings, skipped, notes, summary, error, started_at, finished_at"
)
_SELECT_RUNS = f"SELECT {_RUN_FIELDS} FROM runs WHERE dataset_id = ? ORDER BY id"
_SELECT_RUN = f"SELECT {_RUN_FIELDS} FROM runs WHERE id = ?"


def create_run(store: Store, dataset_id: int, config: dict, job_id: int | None = None) -> int:
    with store.transaction() as con:
        row = con.execute(
            "INSERT INTO runs (dataset_id, job_id, status, config) "
            "VALUES (?, ?, 'running', ?) RETURNING id",
            [dataset_id, job_id, json.dumps(config, sort_keys=True)],
        ).fetchone()
    return int(row[0])


def write_scores(store: Store, run_id: int, scores: pd.DataFrame) -> int:
    """Append one stage's scores in one transaction; return the number of rows written."""
    frame = scores[SCORE_COLUMNS]
    with store.transaction() as con:
        # fetchall: DuckDB refuses register() while a result is only partly fetched
        status = con.execute("SELECT status FROM runs WHERE id = ?", [run_id]).fetchall()
        if not status:
            raise NotFoundError(f"no run {run_id}; scores can only be written to an existing run")
        con.register("incoming_scores", frame)
        con.execute(
            "INSERT INTO scores (run_id, sample_id, detector, score, is_issue, details) "
            "SELECT ?, sample_id, detector, score, is_issue, details FROM incoming_scores",
            [run_id],
        )
        con.unregister("incoming_scores")
    return len(frame)


RUN_SAMPLE_COLUMNS = ["sample_id", "audited_label", "fold", "predicted_label",
                      "predicted_confidence", "map_x", "map_y"]


def write_run_samples(store: Store, run_id: int, frame: pd.DataFrame) -> None:
    """Store per-sample run facts (audited label, fold, probe prediction, 2-D map) in one
    transaction; a column the frame lacks is stored as NULL."""
    columns = ", ".join(RUN_SAMPLE_COLUMNS)
    with store.transaction() as con:
        con.register("incoming_run_samples", frame.reindex(columns=RUN_SAMPLE_COLUMNS))
        con.execute(f"INSERT INTO run_samples (run_id, {columns}) "
                    f"SELECT ?, {columns} FROM incoming_run_samples", [run_id])
        con.unregister("incoming_run_samples")


def run_samples_frame(store: Store, run_id: int) -> pd.DataFrame:
    with store.transaction() as con:
        return con.execute(
            f"SELECT {', '.join(RUN_SAMPLE_COLUMNS)} FROM run_samples WHERE run_id = ? "
            "ORDER BY sample_id",
            [run_id],
        ).df()


def finish_run(store: Store, run_id: int, status: str, *, model_ids: dict | None = None,
               versions: dict | None = None, code_version: str | None = None,
               timings: dict | None = None, skipped: dict | None = None,
               notes: dict | None = None, summary: dict | None = None,
               error: str | None = None) -> None:
    """Put a run in its final state with its provenance, in one transaction."""
    if status not in FINAL_RUN_STATES:
        raise ValueError(f"final run status must be one of {FINAL_RUN_STATES}, not {status!r}")
    with store.transaction() as con:
        con.execute(
            "UPDATE runs SET status = ?, model_ids = ?, versions = ?, code_version = ?, "
            "timings = ?, skipped = ?, notes = ?, summary = ?, error = ?, "
            "finished_at = current_timestamp WHERE id = ?",
            [status, _json(model_ids), _json(versions), code_version, _json(timings),
             _json(skipped), _json(notes), _json(summary), error, run_id],
        )


def _json(value: dict | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def list_runs(store: Store, dataset_id: int) -> pd.DataFrame:
    with store.transaction() as con:
        return con.execute(_SELECT_RUNS, [dataset_id]).df()


def get_run(store: Store, run_id: int) -> dict:
    row = one_row(store, _SELECT_RUN, [run_id])
    if row is None:
        raise NotFoundError(f"no run {run_id}; list runs with `python -m audit jobs`")
    return row


# What a run records about each detector it ran (``runs.summary["detectors"]``), so export and
# pages tell kinds of detectors apart by these facts, never by name (see Detector.facts).
RUN_DETECTOR_FACTS = ("family", "suggests_labels", "belief")


def recorded_facts(facts: dict) -> dict:
    """The part of a detector's ``facts()`` a run records."""
    return {key: facts.get(key) for key in RUN_DETECTOR_FACTS}


def run_detector_facts(store: Store, run_id: int) -> dict[str, dict]:
    """Detector name -> the recorded facts of each detector whose scores the run holds. A run
    from before runs recorded them gets the facts its detectors declare today (a detector no
    longer registered: no family, no label suggestions)."""
    with store.transaction() as con:
        row = con.execute("SELECT summary FROM runs WHERE id = ?", [run_id]).fetchone()
        if row is None:
            raise NotFoundError(f"no run {run_id}; list runs with `python -m audit jobs`")
        scored = [r[0] for r in con.execute(
            "SELECT DISTINCT detector FROM scores WHERE run_id = ? ORDER BY detector", [run_id]
        ).fetchall()]
    summary = json.loads(row[0]) if row[0] else {}
    recorded = summary.get("detectors")
    return recorded if recorded is not None else _facts_declared_now(scored)


def _facts_declared_now(names: list[str]) -> dict[str, dict]:
    from audit.detectors import catalogue

    declared = {facts["name"]: facts for facts in catalogue()}
    return {name: recorded_facts(declared.get(name, {"suggests_labels": False}))
            for name in names}


def latest_finished_run(store: Store, dataset_id: int) -> int | None:
    """The newest succeeded run of a dataset, or None when it has none."""
    with store.transaction() as con:
        row = con.execute(
            "SELECT max(id) FROM runs WHERE dataset_id = ? AND status = 'succeeded'",
            [dataset_id],
        ).fetchone()
    return None if row[0] is None else int(row[0])


def scores_frame(store: Store, run_id: int, detectors: list[str] | None = None) -> pd.DataFrame:
    """A run's scores in long format, optionally limited to some detectors."""
    with store.transaction() as con:
        if detectors is None:
            return con.execute(
                "SELECT sample_id, detector, score, is_issue, details FROM scores "
                "WHERE run_id = ? ORDER BY detector, sample_id",
                [run_id],
            ).df()
        return con.execute(
            "SELECT sample_id, detector, score, is_issue, details FROM scores "
            "WHERE run_id = ? AND list_contains(?, detector) ORDER BY detector, sample_id",
            [run_id, detectors],
        ).df()


def fail_running_runs_of_job(store: Store, job_id: int, reason: str) -> None:
    """Mark a dead job's unfinished run failed, so its partial scores never look finished."""
    with store.transaction() as con:
        con.execute(
            "UPDATE runs SET status = 'failed', error = ?, finished_at = current_timestamp "
            "WHERE job_id = ? AND status = 'running'",
            [reason, job_id],
        )
