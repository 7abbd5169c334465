"""The append-only decision log. The current decision of a sample is its latest row;
an ``undo`` row withdraws the decision before it (so undo twice steps back twice)."""

from __future__ import annotations

import dataclasses

import pandas as pd

from audit.errors import InputError
from audit.store.connection import Store

ACTIONS = ("remove", "relabel", "keep", "undo")


@dataclasses.dataclass(frozen=True)
class Decision:
    sample_id: str
    action: str
    new_label: str | None = None
    note: str | None = None


def record_decisions(store: Store, dataset_id: int, decisions: list[Decision],
                     author: str = "user") -> int:
    """Append decisions in one transaction; return how many rows were written."""
    for decision in decisions:
        _check(decision)
    rows = [(dataset_id, d.sample_id, d.action, d.new_label, d.note, author) for d in decisions]
    with store.transaction() as con:
        known = _known_sample_ids(con, dataset_id, [d.sample_id for d in decisions])
        missing = sorted({d.sample_id for d in decisions} - known)
        if missing:
            raise InputError(f"dataset {dataset_id} has no sample(s) {missing[:5]}; nothing recorded")
        con.executemany(
            "INSERT INTO flags (dataset_id, sample_id, action, new_label, note, author) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
    return len(rows)


def _check(decision: Decision) -> None:
    if decision.action not in ACTIONS:
        raise InputError(f"unknown action {decision.action!r}; use one of {ACTIONS}")
    if decision.action == "relabel" and not decision.new_label:
        raise InputError(f"relabel of {decision.sample_id!r} needs a new label")


def _known_sample_ids(con, dataset_id: int, sample_ids: list[str]) -> set[str]:
    rows = con.execute(
        "SELECT sample_id FROM samples WHERE dataset_id = ? AND list_contains(?, sample_id)",
        [dataset_id, sorted(set(sample_ids))],
    ).fetchall()
    return {row[0] for row in rows}


def current_decisions(store: Store, dataset_id: int, through_id: int | None = None) -> pd.DataFrame:
    """One row per sample with a standing decision: sample_id, action, new_label, note, created_at
    (as the log stood after its row ``through_id``, when given)."""
    log = decision_log(store, dataset_id, through_id=through_id)
    standing = {}
    for row in log.itertuples(index=False):
        stack = standing.setdefault(row.sample_id, [])
        if row.action == "undo":
            if stack:
                stack.pop()
        else:
            stack.append(row)
    latest = [stack[-1] for stack in standing.values() if stack]
    columns = ["sample_id", "action", "new_label", "note", "created_at"]
    return pd.DataFrame([{c: getattr(r, c) for c in columns} for r in latest], columns=columns)


def decision_log(store: Store, dataset_id: int, sample_id: str | None = None,
                 through_id: int | None = None) -> pd.DataFrame:
    """The raw log in the order it was written, for one sample or the whole dataset, up to and
    including its row ``through_id`` when given (the log is append-only, so that is a fixed
    past state)."""
    with store.transaction() as con:
        return con.execute(
            "SELECT id, sample_id, action, new_label, note, author, created_at FROM flags "
            "WHERE dataset_id = $dataset AND ($sample IS NULL OR sample_id = $sample) "
            "AND ($through IS NULL OR id <= $through) ORDER BY id",
            {"dataset": dataset_id, "sample": sample_id, "through": through_id},
        ).df()
