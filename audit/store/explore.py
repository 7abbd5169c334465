"""The Explore page's reads: the per-run Explore index and the filtered, sorted page.

Explore answers "filter + sort + one page" from ``explore_rows``, a wide index built once per
finished run from the long ``scores`` table (runs are immutable, so the index never goes
stale): each row carries the sample's fields, its scores and issue flags as lists aligned with
``explore_runs.detectors``, its issue count and its worst score; also the mean of its scores
and the first SCORE_COLUMNS scores each in a column of its own (``score_k = scores[k]``), which
sorts and thresholds on one detector read instead of the whole list. Rows are stored worst
score first, so the pages people look at most (the worst examples) sit in the first row groups.
A query is a count, a narrow top-N that picks the page's row ids, and a read of just those rows.
The WHERE clause is assembled from constant fragments, one per active filter; every value is
a bound parameter (a detector's position, an int, is written into its fragment). Insights'
per-class, label-matrix and map queries (``audit.store.insights``) read the same index, and
build it first when no page has yet (whichever page a person opens first is right).

Each row also carries its top reason: its worst flagging detector (``reason_detector``) and
that detector's ``details.reason`` (``top_reason``). Decisions are not in the index: the
standing decision of each sample is computed from the append-only flags log in the same
transaction as every query (``flags.STANDING_DECISIONS``, the one statement of the rule, which
the export reads too) and joined in, for the page's rows only unless a filter needs them.
"""

from __future__ import annotations

import dataclasses
import threading

import pandas as pd

from audit.errors import NotFoundError
from audit.store.connection import Store
from audit.store.flags import STANDING_DECISIONS, standing_params
from audit.store.run_compare import RunChange, change_condition

DECISION_STATES = ("any", "undecided", "decided", "remove", "relabel", "keep")
SORT_SPECIAL = ("worst", "flags", "order")
PREFERRED_SORT = "overall"      # the one ranking of label problems, when the run has it
PAGE_SIZE = 48                  # samples on one page of Explore
SCORE_COLUMNS = 16              # score_1 .. score_16 of explore_rows (migration 13)
_build_guard = threading.Lock()

_BUILD_ROWS = """
INSERT INTO explore_rows
WITH detector_order AS (
    SELECT detector, row_number() OVER (ORDER BY detector) AS pos
    FROM (SELECT unnest($detectors::VARCHAR[]) AS detector)
), run_scores AS (
    SELECT sample_id, detector, score, is_issue,
        CASE WHEN is_issue THEN json_extract_string(details, '$.suggested_label') END AS suggestion,
        CASE WHEN is_issue THEN json_extract_string(details, '$.reason') END AS reason
    FROM scores WHERE run_id = $run_id
), grid AS (
    SELECT s.sample_id, d.detector, d.pos
    FROM samples s CROSS JOIN detector_order d WHERE s.dataset_id = $dataset_id
), per_sample AS (
    SELECT g.sample_id,
        list(sc.score ORDER BY g.pos) AS scores,
        list(coalesce(sc.is_issue, false) ORDER BY g.pos) AS issues,
        count(*) FILTER (WHERE sc.is_issue) AS issue_count,
        min(sc.score) AS worst_score,
        arg_min(sc.suggestion, sc.score) FILTER (WHERE sc.suggestion IS NOT NULL) AS suggestion,
        first(sc.detector ORDER BY sc.score NULLS LAST, sc.detector) FILTER (WHERE sc.is_issue)
            AS reason_detector,
        first(sc.reason ORDER BY sc.score NULLS LAST, sc.detector) FILTER (WHERE sc.is_issue)
            AS top_reason
    FROM grid g LEFT JOIN run_scores sc ON sc.sample_id = g.sample_id AND sc.detector = g.detector
    GROUP BY g.sample_id
)
SELECT $run_id, s.sample_id, s.row_index, s.split, s.label, s.path, s.caption, s.sha256,
    s.load_error, CASE WHEN p.suggestion <> s.label THEN p.suggestion END,
    coalesce(p.scores, []::DOUBLE[]), coalesce(p.issues, []::BOOLEAN[]),
    coalesce(p.issue_count, 0), p.worst_score,
    lower(concat_ws(' ', s.sample_id, s.path, coalesce(s.caption, ''))),
    p.reason_detector, p.top_reason, list_avg(coalesce(p.scores, []::DOUBLE[])),
    {score_columns}
FROM samples s LEFT JOIN per_sample p USING (sample_id)
WHERE s.dataset_id = $dataset_id
ORDER BY p.worst_score NULLS LAST, s.row_index
""".replace("{score_columns}", ", ".join(f"coalesce(p.scores, []::DOUBLE[])[{k}]"
                                          for k in range(1, SCORE_COLUMNS + 1)))

_PAGE_COLUMNS = (
    "r.sample_id, r.split, r.label, r.path, r.caption, r.sha256, r.load_error, "
    "r.suggested_label, r.scores, r.issues, r.issue_count, r.worst_score, r.reason_detector, "
    "r.top_reason"
)
_WITH_DECISIONS = f"WITH standing_decisions AS ({STANDING_DECISIONS}) "
_PAGE_DECISIONS = (
    f"{_WITH_DECISIONS} SELECT sample_id, action AS decision, new_label AS decision_label "
    "FROM standing_decisions"
)


# --- the Explore index ---------------------------------------------------------------------

def ensure_explore_index(store: Store, run_id: int) -> list[str]:
    """Build the run's Explore index if it is missing; return its detectors (sorted).

    The lock is taken before the transaction starts, so a second thread waiting for it sees
    the first one's committed index instead of building it again."""
    with _build_guard, store.transaction() as con:
        detectors = _indexed_detectors(con, run_id)
        if detectors is not None:
            return detectors
        dataset_id = _finished_run_dataset(con, run_id)
        detectors = [r[0] for r in con.execute(
            "SELECT DISTINCT detector FROM scores WHERE run_id = ? ORDER BY detector", [run_id]
        ).fetchall()]
        con.execute(_BUILD_ROWS, {"run_id": run_id, "dataset_id": dataset_id,
                                  "detectors": detectors})
        con.execute("INSERT INTO explore_runs (run_id, dataset_id, detectors) VALUES (?, ?, ?)",
                    [run_id, dataset_id, detectors])
    return detectors


def _indexed_detectors(con, run_id: int) -> list[str] | None:
    row = con.execute("SELECT detectors FROM explore_runs WHERE run_id = ?", [run_id]).fetchone()
    return None if row is None else list(row[0])


def _finished_run_dataset(con, run_id: int) -> int:
    row = con.execute("SELECT dataset_id, status FROM runs WHERE id = ?", [run_id]).fetchone()
    if row is None:
        raise NotFoundError(f"no run {run_id}; pick a run listed on the Datasets page")
    if row[1] != "succeeded":
        raise NotFoundError(
            f"run {run_id} is {row[1]}, not succeeded; only finished runs are shown")
    return int(row[0])


# --- Explore: filter + sort + page ---------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ExploreFilters:
    """What the Explore page asks for. ``detector`` None means any detector."""

    detector: str | None = None
    flagged_only: bool = False
    max_score: float | None = None
    classes: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()
    decision: str = "any"
    search: str = ""
    sample_ids: tuple[str, ...] | None = None
    change: RunChange | None = None     # only the samples of one run-to-run change
    sort_by: str = "worst"          # a detector name, or one of SORT_SPECIAL
    worst_first: bool = True


@dataclasses.dataclass(frozen=True)
class ExplorePage:
    rows: pd.DataFrame
    total: int
    detectors: list[str]


def explore_page(store: Store, dataset_id: int, run_id: int, filters: ExploreFilters,
                 page: int = 0, page_size: int = PAGE_SIZE) -> ExplorePage:
    """One page of samples matching the filters, sorted, with the total number of matches.
    One transaction when the run's index exists; the first call for a run builds it."""
    with store.transaction() as con:
        detectors = _indexed_detectors(con, run_id)
        if detectors is not None:
            return _query_page(con, dataset_id, run_id, detectors, filters, page, page_size)
    ensure_explore_index(store, run_id)
    return explore_page(store, dataset_id, run_id, filters, page, page_size)


def _query_page(con, dataset_id: int, run_id: int, detectors: list[str], filters: ExploreFilters,
                page: int, page_size: int) -> ExplorePage:
    """Count, pick the page's row ids with a narrow top-N, then read those rows whole.

    Reading the wide columns only for the page's rows (rather than carrying them through
    the filters, the decision join and the sort) is what keeps a million rows fast. The
    standing decisions join in only where a filter needs them."""
    where, params = _where_clause(filters, detectors, run_id)
    order = _order_clause(filters, detectors)
    prefix = _WITH_DECISIONS if "standing_decisions" in where else ""
    params.update(standing_params(dataset_id) if prefix else {})
    total = con.execute(f"{prefix}SELECT count(*) FROM explore_rows r WHERE {where}",
                        params).fetchone()[0]
    row_ids = [row[0] for row in con.execute(
        f"{prefix}SELECT r.rowid FROM explore_rows r WHERE {where} "
        f"ORDER BY {order} LIMIT $limit OFFSET $offset",
        {**params, "limit": page_size, "offset": max(page, 0) * page_size},
    ).fetchall()]
    rows = _rows_by_rowid(con, row_ids)
    return ExplorePage(_with_decisions(con, dataset_id, rows, detectors), int(total), detectors)


def _rows_by_rowid(con, row_ids: list[int]) -> pd.DataFrame:
    rows = con.execute(
        f"SELECT r.rowid AS row_id, {_PAGE_COLUMNS} FROM explore_rows r "
        "WHERE r.rowid IN (SELECT unnest($row_ids::BIGINT[]))",
        {"row_ids": row_ids},
    ).df()
    rank = {row_id: i for i, row_id in enumerate(row_ids)}
    rows = rows.sort_values("row_id", key=lambda ids: ids.map(rank)).reset_index(drop=True)
    return rows.drop(columns="row_id")


def _with_decisions(con, dataset_id: int, rows: pd.DataFrame, detectors: list[str]) -> pd.DataFrame:
    decided = con.execute(_PAGE_DECISIONS,
                          standing_params(dataset_id, rows["sample_id"].tolist())).df()
    rows = rows.merge(decided, on="sample_id", how="left")
    rows["flagged_by"] = [_flagged_names(detectors, flags) for flags in rows["issues"]]
    return rows


def _flagged_names(detectors: list[str], issues) -> list[str]:
    return [name for name, flagged in zip(detectors, issues) if flagged]


def _position(detectors: list[str], name: str) -> int:
    """1-based list position of a detector in the index; NotFoundError when absent."""
    if name not in detectors:
        raise NotFoundError(
            f"detector {name!r} has no scores in this run; choose one of {detectors}")
    return detectors.index(name) + 1


def _where_clause(filters: ExploreFilters, detectors: list[str], run_id: int):
    parts, params = ["r.run_id = $run_id"], {"run_id": run_id}
    position = _position(detectors, filters.detector) if filters.detector else None
    score = _score_of(position) if position else "r.worst_score"
    if filters.flagged_only:
        parts.append(f"coalesce(r.issues[{position}], false)" if position
                     else "r.issue_count > 0")
    if filters.max_score is not None:
        parts.append(f"{score} <= $max_score")
        params["max_score"] = float(filters.max_score)
    parts += _membership_parts(filters, params)
    return " AND ".join(parts), params


def _membership_parts(filters: ExploreFilters, params: dict) -> list[str]:
    parts = []
    if filters.classes:
        parts.append("list_contains($classes::VARCHAR[], r.label)")
        params["classes"] = list(filters.classes)
    if filters.splits:
        parts.append("list_contains($splits::VARCHAR[], r.split)")
        params["splits"] = list(filters.splits)
    if filters.search.strip():
        parts.append("contains(r.search_text, $search)")
        params["search"] = filters.search.strip().lower()
    if filters.sample_ids is not None:
        parts.append("r.sample_id IN (SELECT unnest($sample_ids::VARCHAR[]))")
        params["sample_ids"] = list(filters.sample_ids)
    if filters.change is not None:
        condition, change_params = change_condition(filters.change, "r.sample_id")
        parts.append(condition)
        params.update(change_params)
    parts += _decision_parts(filters.decision, params)
    return parts


def _decision_parts(state: str, params: dict) -> list[str]:
    if state not in DECISION_STATES:
        raise ValueError(f"decision filter must be one of {DECISION_STATES}, not {state!r}")
    if state == "any":
        return []
    decided = "r.sample_id IN (SELECT sample_id FROM standing_decisions)"
    if state in ("undecided", "decided"):
        return [f"NOT {decided}" if state == "undecided" else decided]
    params["decision"] = state
    return ["r.sample_id IN (SELECT sample_id FROM standing_decisions WHERE action = $decision)"]


def default_sort(detectors: list[str]) -> str:
    """What Explore sorts by until the user picks otherwise: ``overall`` when the run has it."""
    return PREFERRED_SORT if PREFERRED_SORT in detectors else "worst"


def opening_filters(detectors: list[str]) -> ExploreFilters:
    """The filters Explore opens on: flagged samples, by the default sort, worst first."""
    return ExploreFilters(flagged_only=True, sort_by=default_sort(detectors))


def _order_clause(filters: ExploreFilters, detectors: list[str]) -> str:
    """The sort key, then a continuous tie-break in the same direction (the mean of all the
    sample's scores: among equal keys the sample more detectors doubt comes first), then
    dataset order, so equal scores never leave the order to chance."""
    direction = "ASC" if filters.worst_first else "DESC"
    tie_break = f"r.mean_score {direction} NULLS LAST, r.row_index"
    if filters.sort_by == "order":
        return "r.row_index"
    if filters.sort_by == "flags":
        return (f"r.issue_count {'DESC' if filters.worst_first else 'ASC'}, "
                f"r.worst_score {direction} NULLS LAST, {tie_break}")
    if filters.sort_by == "worst":
        return f"r.worst_score {direction} NULLS LAST, {tie_break}"
    key = _score_of(_position(detectors, filters.sort_by))
    return f"{key} {direction} NULLS LAST, {tie_break}"


def _score_of(position: int) -> str:
    """A detector's score in an Explore row, by its 1-based position in the index: its own
    column (read alone, not the whole list) for the first SCORE_COLUMNS, else the list's item.
    ``position`` is an int from ``_position``, never text from a user."""
    position = int(position)
    return f"r.score_{position}" if position <= SCORE_COLUMNS else f"r.scores[{position}]"


# --- the review loop: one sample's place in Explore's order, and bulk suggestions -----------

@dataclasses.dataclass(frozen=True)
class OrderPlace:
    """Where a sample stands in Explore's order: the samples before and after it (None at an
    end), its 1-based position and the number of matches. ``position`` is None when the
    filters leave the sample out."""

    previous: str | None
    next: str | None
    position: int | None
    total: int


def _page_clauses(store: Store, run_id: int, filters: ExploreFilters):
    """The page query's WHERE, its ORDER BY and the WHERE's parameters for these filters
    (the run indexed first if it is not yet)."""
    detectors = ensure_explore_index(store, run_id)
    where, params = _where_clause(filters, detectors, run_id)
    return where, _order_clause(filters, detectors), params


def place_in_order(store: Store, dataset_id: int, run_id: int, filters: ExploreFilters,
                   sample_id: str) -> OrderPlace:
    """The sample's neighbours in exactly the order ``explore_page`` pages through."""
    where, order, params = _page_clauses(store, run_id, filters)
    with store.transaction() as con:
        row = con.execute(
            f"{_WITH_DECISIONS}SELECT previous, next, position, total FROM ("
            "SELECT r.sample_id, lag(r.sample_id) OVER w AS previous, "
            "lead(r.sample_id) OVER w AS next, row_number() OVER w AS position, "
            f"count(*) OVER () AS total FROM explore_rows r WHERE {where} "
            f"WINDOW w AS (ORDER BY {order})) WHERE sample_id = $sample_id",
            {**standing_params(dataset_id), **params, "sample_id": sample_id},
        ).fetchone()
        if row is not None:
            return OrderPlace(row[0], row[1], int(row[2]), int(row[3]))
        total = con.execute(f"{_WITH_DECISIONS}SELECT count(*) FROM explore_rows r WHERE {where}",
                            {**standing_params(dataset_id), **params}).fetchone()[0]
    return OrderPlace(None, None, None, int(total))


def undecided_suggestions(store: Store, dataset_id: int, run_id: int,
                          filters: ExploreFilters) -> list[tuple[str, str]]:
    """(sample id, suggested label) of every sample matching the filters that has a suggested
    label (the one its cards show) and no standing decision, in Explore's order."""
    where, order, params = _page_clauses(store, run_id, filters)
    with store.transaction() as con:
        rows = con.execute(
            f"{_WITH_DECISIONS}SELECT r.sample_id, r.suggested_label FROM explore_rows r "
            f"WHERE {where} AND r.suggested_label IS NOT NULL "
            f"AND r.sample_id NOT IN (SELECT sample_id FROM standing_decisions) ORDER BY {order}",
            {**standing_params(dataset_id), **params},
        ).fetchall()
    return [(str(sample_id), str(label)) for sample_id, label in rows]
