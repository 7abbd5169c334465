"""Run to run: what changed between two finished runs of one dataset.

A sample's verdict by a detector changes when the detector scored it in both runs and flagged
it in only one: "newly flagged" (flagged in run B, not in run A) or "no longer flagged" (the
reverse). ``COMPARED`` pairs the two runs' scores once; the counts per detector and per
detector x class, the per-sample changes and Explore's change filter all read it, so the rule
lives here only. Run A is the earlier state, run B the later one; a score move is B minus A
(positive: the sample looks less like a problem in B). Every value is a bound parameter.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from audit.errors import ConfigError, NotFoundError
from audit.store.connection import Store

CHANGES = ("newly flagged", "no longer flagged")

# Every (detector, sample) scored by either run, with both verdicts (NULL where a run did not
# score it), the sample's class and its change. Parameters: $compare_a, $compare_b.
COMPARED = """
WITH a AS (SELECT detector, sample_id, score, is_issue FROM scores WHERE run_id = $compare_a),
b AS (SELECT detector, sample_id, score, is_issue FROM scores WHERE run_id = $compare_b),
paired AS (
    SELECT coalesce(a.detector, b.detector) AS detector,
        coalesce(a.sample_id, b.sample_id) AS sample_id,
        a.score AS score_a, b.score AS score_b, a.is_issue AS flagged_a, b.is_issue AS flagged_b
    FROM a FULL OUTER JOIN b ON a.detector = b.detector AND a.sample_id = b.sample_id
), compared AS (
    SELECT p.*, s.label, s.row_index,
        CASE WHEN NOT p.flagged_a AND p.flagged_b THEN 'newly flagged'
             WHEN p.flagged_a AND NOT p.flagged_b THEN 'no longer flagged' END AS change
    FROM paired p JOIN samples s ON s.sample_id = p.sample_id
        AND s.dataset_id = (SELECT dataset_id FROM runs WHERE id = $compare_a)
)
"""

_COUNTS = """
SELECT {keys},
    count(flagged_a) AS scored_a, count(flagged_b) AS scored_b,
    count(*) FILTER (WHERE flagged_a) AS flagged_a, count(*) FILTER (WHERE flagged_b) AS flagged_b,
    count(*) FILTER (WHERE change = 'newly flagged') AS newly_flagged,
    count(*) FILTER (WHERE change = 'no longer flagged') AS no_longer_flagged,
    count(*) FILTER (WHERE flagged_a AND flagged_b) AS still_flagged,
    avg(score_b - score_a) AS mean_score_move, median(score_b - score_a) AS median_score_move
FROM compared GROUP BY {keys} ORDER BY {keys}
"""
# compare_runs pairs the runs once into a temporary table (gone with the connection) and
# reads it three times.
_PAIR_ONCE = f"CREATE OR REPLACE TEMP TABLE compared AS {COMPARED} SELECT * FROM compared"
_BY_DETECTOR = _COUNTS.format(keys="detector")
_BY_CLASS = _COUNTS.format(keys="detector, label")
_CHANGES = """
SELECT sample_id, label, detector, score_a, score_b, flagged_a, flagged_b, change
FROM compared WHERE change IS NOT NULL ORDER BY detector, change, row_index
"""


@dataclasses.dataclass(frozen=True)
class RunComparison:
    """Runs A and B of one dataset compared.

    ``by_detector`` (one row per detector either run scored) and ``by_class`` (per detector
    and class) count: samples scored and flagged in each run; newly, no longer and still
    flagged among the samples both runs scored; the mean and median score move. ``changes``
    holds one row per changed verdict: sample_id, label, detector, score_a, score_b,
    flagged_a, flagged_b, change (one of ``CHANGES``)."""

    dataset_id: int
    run_a: int
    run_b: int
    by_detector: pd.DataFrame
    by_class: pd.DataFrame
    changes: pd.DataFrame


@dataclasses.dataclass(frozen=True)
class RunChange:
    """The samples whose verdict by ``detector`` changed in one way from run A to run B,
    optionally only those of one class: what Explore shows when drilled into a comparison."""

    run_a: int
    run_b: int
    detector: str
    change: str
    label: str | None = None

    def __post_init__(self) -> None:
        if self.change not in CHANGES:
            raise ValueError(f"a run change must be one of {CHANGES}, not {self.change!r}")


def compare_runs(store: Store, run_a: int, run_b: int) -> RunComparison:
    """Compare two succeeded runs of one dataset (A the earlier state, B the later)."""
    with store.transaction() as con:
        dataset_id = _common_dataset(con, run_a, run_b)
        con.execute(_PAIR_ONCE, {"compare_a": run_a, "compare_b": run_b})
        by_detector = con.execute(_BY_DETECTOR).df()
        by_class = con.execute(_BY_CLASS).df()
        changes = con.execute(_CHANGES).df()
        con.execute("DROP TABLE compared")
    return RunComparison(dataset_id, run_a, run_b, by_detector, by_class, changes)


def _common_dataset(con, run_a: int, run_b: int) -> int:
    first, second = _succeeded_run_dataset(con, run_a), _succeeded_run_dataset(con, run_b)
    if first != second:
        raise ConfigError(
            f"run {run_a} audited dataset {first} and run {run_b} dataset {second}; "
            "compare two runs of the same dataset")
    return first


def _succeeded_run_dataset(con, run_id: int) -> int:
    row = con.execute("SELECT dataset_id, status FROM runs WHERE id = ?", [run_id]).fetchone()
    if row is None:
        raise NotFoundError(f"no run {run_id}; pick runs listed on the Datasets page")
    if row[1] != "succeeded":
        raise NotFoundError(f"run {run_id} is {row[1]}; only succeeded runs can be compared")
    return int(row[0])


def change_condition(change: RunChange, column: str) -> tuple[str, dict]:
    """A condition that ``column`` (a sample id column, e.g. Explore's ``r.sample_id``) is one
    of the samples of ``change``, with its bound parameters."""
    condition = (
        f"{column} IN ({COMPARED} SELECT sample_id FROM compared "
        "WHERE detector = $compare_detector AND change = $compare_change "
        "AND ($compare_label::VARCHAR IS NULL OR label = $compare_label::VARCHAR))"
    )
    return condition, {"compare_a": change.run_a, "compare_b": change.run_b,
                       "compare_detector": change.detector, "compare_change": change.change,
                       "compare_label": change.label}
