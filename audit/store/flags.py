"""The append-only decision log. The current decision of a sample is its latest row;
an ``undo`` row withdraws the decision before it (so undo twice steps back twice)."""

from __future__ import annotations

import dataclasses
import getpass

import pandas as pd

from audit.errors import InputError
from audit.store.connection import Store

ACTIONS = ("remove", "relabel", "keep", "undo")
FALLBACK_AUTHOR = "user"    # when the OS names no user


class DecisionConflict(InputError):
    """Another decision was written for a sample since the caller last read its log."""


@dataclasses.dataclass(frozen=True)
class Decision:
    sample_id: str
    action: str
    new_label: str | None = None
    note: str | None = None


def default_author() -> str:
    """Who decides when no name was given: the OS user."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):     # no login name in the environment or the user database
        return FALLBACK_AUTHOR


def record_decisions(store: Store, dataset_id: int, decisions: list[Decision],
                     author: str | None = None, seen: dict[str, int | None] | None = None) -> int:
    """Append decisions in one transaction as one batch (they share a batch id), by ``author``
    (the OS user when None); return how many rows were written.

    ``seen`` maps a sample id to the id of the latest log row the caller showed for it (None:
    it showed none). When another row was written for such a sample since (another author or
    tab decided), nothing is recorded and ``DecisionConflict`` says who decided what, when."""
    for decision in decisions:
        _check(decision)
    with store.transaction() as con:
        known = _known_sample_ids(con, dataset_id, [d.sample_id for d in decisions])
        missing = sorted({d.sample_id for d in decisions} - known)
        if missing:
            raise InputError(f"dataset {dataset_id} has no sample(s) {missing[:5]}; nothing recorded")
        if seen:
            _check_unchanged(con, dataset_id, seen)
        _append(con, dataset_id, decisions, author or default_author())
    return len(decisions)


def _append(con, dataset_id: int, decisions: list[Decision], author: str,
            undoes_batch: int | None = None) -> None:
    """Write the rows, all with one fresh batch id."""
    batch_id = con.execute("SELECT nextval('flag_batch_ids')").fetchone()[0]
    con.executemany(
        "INSERT INTO flags (dataset_id, sample_id, action, new_label, note, author, batch_id, "
        "undoes_batch) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(dataset_id, d.sample_id, d.action, d.new_label, d.note, author, batch_id, undoes_batch)
         for d in decisions],
    )


def _check_unchanged(con, dataset_id: int, seen: dict[str, int | None]) -> None:
    latest = _latest_rows(con, dataset_id, list(seen))
    for row in latest.itertuples(index=False):
        if row.id != seen[row.sample_id]:
            raise DecisionConflict(_conflict_message(row))


def _conflict_message(row) -> str:
    what = f"relabel to {row.new_label}" if row.action == "relabel" else row.action
    return (f"{row.author or 'someone'} decided {what!r} on {row.sample_id} at "
            f"{row.created_at:%H:%M} since you opened it; decide again to replace it")


def _latest_rows(con, dataset_id: int, sample_ids: list[str]) -> pd.DataFrame:
    """The latest log row of each of these samples that has one."""
    return con.execute(
        "SELECT sample_id, max(id) AS id, arg_max(action, id) AS action, "
        "arg_max(new_label, id) AS new_label, arg_max(author, id) AS author, "
        "arg_max(created_at, id) AS created_at FROM flags "
        "WHERE dataset_id = ? AND list_contains(?, sample_id) GROUP BY sample_id",
        [dataset_id, sorted(set(sample_ids))],
    ).df()


def latest_flag_ids(store: Store, dataset_id: int, sample_ids: list[str]) -> dict[str, int]:
    """The id of each sample's latest log row (samples never decided are left out): what a
    page passes back as ``seen`` when it records a decision."""
    with store.transaction() as con:
        latest = _latest_rows(con, dataset_id, sample_ids)
    return {str(s): int(i) for s, i in zip(latest["sample_id"], latest["id"])}


def undo_last_bulk(store: Store, dataset_id: int, author: str | None = None) -> int:
    """Withdraw the latest bulk action (a batch of more than one decision) not undone yet: one
    ``undo`` row per sample whose standing decision is still the batch's, as one batch (a sample
    decided again since keeps that later decision). Returns how many samples it undid; 0 when
    no bulk action is left."""
    with store.transaction() as con:
        for batch_id in _bulk_batches_newest_first(con, dataset_id):
            targets = _standing_from(con, dataset_id, batch_id)
            if targets:
                undos = [Decision(s, "undo", note=f"undo of bulk action {batch_id}")
                         for s in targets]
                _append(con, dataset_id, undos, author or default_author(), undoes_batch=batch_id)
                return len(targets)
    return 0


def _bulk_batches_newest_first(con, dataset_id: int) -> list[int]:
    rows = con.execute(
        "SELECT batch_id FROM flags WHERE dataset_id = $dataset AND action <> 'undo' "
        "AND batch_id IS NOT NULL AND batch_id NOT IN (SELECT undoes_batch FROM flags "
        "WHERE dataset_id = $dataset AND undoes_batch IS NOT NULL) "
        "GROUP BY batch_id HAVING count(*) > 1 ORDER BY batch_id DESC",
        {"dataset": dataset_id},
    ).fetchall()
    return [row[0] for row in rows]


def _standing_from(con, dataset_id: int, batch_id: int) -> list[str]:
    """The batch's samples whose standing decision is still the batch's own."""
    rows = con.execute(
        f"WITH standing AS ({STANDING_DECISIONS}) SELECT s.sample_id FROM standing s "
        "JOIN flags f ON f.id = s.id WHERE f.batch_id = $batch ORDER BY s.id",
        {**standing_params(dataset_id), "batch": batch_id},
    ).fetchall()
    return [row[0] for row in rows]


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


# The standing decision of each sample (the one statement of the rule; Explore joins it in
# too): an undo withdraws the decision before it, an undo with nothing to withdraw does
# nothing. Per sample, depth = decisions standing after each row = the running sum of +1 / -1
# floored at 0, which is the running sum minus its running minimum (when negative). The
# standing decision is the last non-undo row whose depth equals the final depth, when that
# depth is above 0. Parameters (``standing_params``): $dataset_id, optionally some samples
# ($standing_samples) and the log as it stood after row $standing_through.
STANDING_DECISIONS = """
WITH walk AS (
    SELECT id, sample_id, action, new_label, note, author, created_at,
        sum(CASE WHEN action = 'undo' THEN -1 ELSE 1 END)
            OVER (PARTITION BY sample_id ORDER BY id ROWS UNBOUNDED PRECEDING) AS running
    FROM flags
    WHERE dataset_id = $dataset_id
        AND ($standing_samples::VARCHAR[] IS NULL
             OR list_contains($standing_samples::VARCHAR[], sample_id))
        AND ($standing_through::BIGINT IS NULL OR id <= $standing_through::BIGINT)
), depths AS (
    SELECT *, running - least(0, min(running)
        OVER (PARTITION BY sample_id ORDER BY id ROWS UNBOUNDED PRECEDING)) AS depth
    FROM walk
), final AS (
    SELECT sample_id, arg_max(depth, id) AS final_depth FROM depths GROUP BY sample_id
)
SELECT d.id, d.sample_id, d.action, d.new_label, d.note, d.author, d.created_at
FROM depths d JOIN final f USING (sample_id)
WHERE d.action <> 'undo' AND f.final_depth > 0 AND d.depth = f.final_depth
QUALIFY d.id = max(d.id) OVER (PARTITION BY d.sample_id)
"""


def standing_params(dataset_id: int, sample_ids: list[str] | None = None,
                    through_id: int | None = None) -> dict:
    """The bound parameters ``STANDING_DECISIONS`` takes."""
    return {"dataset_id": dataset_id, "standing_samples": sample_ids,
            "standing_through": through_id}


def current_decisions(store: Store, dataset_id: int, through_id: int | None = None) -> pd.DataFrame:
    """One row per sample with a standing decision: sample_id, action, new_label, note, created_at
    (as the log stood after its row ``through_id``, when given), in the order the samples were
    first decided."""
    with store.transaction() as con:
        return con.execute(
            f"WITH standing AS ({STANDING_DECISIONS}) SELECT s.sample_id, s.action, s.new_label, "
            "s.note, s.created_at FROM standing s ORDER BY (SELECT min(f.id) FROM flags f "
            "WHERE f.dataset_id = $dataset_id AND f.sample_id = s.sample_id)",
            standing_params(dataset_id, through_id=through_id),
        ).df()


def decision_log(store: Store, dataset_id: int, sample_id: str | None = None,
                 through_id: int | None = None) -> pd.DataFrame:
    """The raw log in the order it was written, for one sample or the whole dataset, up to and
    including its row ``through_id`` when given (the log is append-only, so that is a fixed
    past state)."""
    with store.transaction() as con:
        return con.execute(
            "SELECT id, sample_id, action, new_label, note, author, created_at, batch_id "
            "FROM flags "
            "WHERE dataset_id = $dataset AND ($sample IS NULL OR sample_id = $sample) "
            "AND ($through IS NULL OR id <= $through) ORDER BY id",
            {"dataset": dataset_id, "sample": sample_id, "through": through_id},
        ).df()
