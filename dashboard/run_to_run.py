"""Run to run: Insights' second tab, which compares two finished runs of the chosen dataset
(per detector, per detector and class, the changed samples) and opens one change in Explore;
and the "Compare with the previous run" button of the Jobs and Datasets pages, which opens
that tab on the dataset's newest two runs.

A drill-down hands Explore a ``RunChange`` under ``CHANGE_KEY`` (shown there until cleared)
and makes run B the sidebar's run, so the cards show the later run's scores.
"""

from __future__ import annotations

import functools

import plotly.express as px
import streamlit as st

from audit.store.run_compare import CHANGES, RunChange, RunComparison
from dashboard import context, data
from dashboard.widgets import plain

TAB_KEY, OPEN_TAB_KEY = "insights_tab", "insights_open_tab"
THIS_RUN, RUN_TO_RUN = "This run", "Run to run"
CHANGE_KEY = "run_change"
FIRST_KEY, SECOND_KEY = "compare_first", "compare_second"
DETECTOR_KEY, CLASS_KEY = "compare_detector", "compare_class"
CHANGED_ROWS_SHOWN = 1_000


# --- the link from Jobs and Datasets -------------------------------------------------------

def compare_previous_button(store, key: data.Version, dataset_id: int, button_key: str) -> None:
    """Once the dataset has two finished runs or more: a button that opens Run to run on
    its newest two."""
    runs = data.runs(store, key, dataset_id)["id"].astype(int).tolist()  # newest first
    if len(runs) < 2:
        return
    if st.button("Compare with the previous run", key=button_key, icon=":material/compare_arrows:",
                 help=f"What changed from run {runs[1]} to run {runs[0]}",
                 on_click=_ask_for, args=(dataset_id, runs[1], runs[0])):
        st.switch_page("pages/insights.py")


def _ask_for(dataset_id: int, run_a: int, run_b: int) -> None:
    """A callback (it runs before the pickers are drawn): the dataset, runs and tab to show."""
    context.pick(dataset_id)
    st.session_state.update({FIRST_KEY: run_a, SECOND_KEY: run_b, OPEN_TAB_KEY: RUN_TO_RUN})


# --- the Insights tab ----------------------------------------------------------------------

def section(view: context.View) -> None:
    _issues_per_run(view)
    runs = sorted(data.runs(view.store, view.key, view.dataset_id)["id"].astype(int).tolist())
    if len(runs) < 2:
        st.caption("Rerun the audit (Jobs page) to compare two runs.")
        return
    run_a, run_b = _pick_runs(runs)
    if run_a == run_b:
        st.info("Pick two different runs to compare.")
        return
    comparison = data.compare_runs(view.store, run_a, run_b)
    if comparison.by_detector.empty:
        st.caption("Neither run scored any sample.")
        return
    _by_detector(comparison)
    _drill_down(view, comparison)


def _issues_per_run(view: context.View) -> None:
    counts = data.run_issue_counts(view.store, view.key, view.dataset_id)
    counts["run"] = "run " + counts["run_id"].astype(str)
    st.plotly_chart(px.bar(counts, x="detector", y="issues", color="run", barmode="group",
                           title="Issues per detector in each run"), key="run_counts")


def _pick_runs(runs: list[int]) -> tuple[int, int]:
    """Run A (before) and run B (after); the newest two until the user picks others."""
    _keep_valid(FIRST_KEY, runs, runs[-2])
    _keep_valid(SECOND_KEY, runs, runs[-1])
    left, right = st.columns(2)
    run_a = left.selectbox("Run A (before)", runs, key=FIRST_KEY, format_func=_run_name,
                           persist_state="session")
    run_b = right.selectbox("Run B (after)", runs, key=SECOND_KEY, format_func=_run_name,
                            persist_state="session")
    return run_a, run_b


def _keep_valid(key: str, options: list, default) -> None:
    """A kept pick that is not among this time's options falls back to ``default``."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = default


def _run_name(run_id: int) -> str:
    return f"run {run_id}"


def _by_detector(comparison: RunComparison) -> None:
    st.caption(f"Per detector, from run {comparison.run_a} to run {comparison.run_b}: newly, "
               "no longer and still flagged count samples both runs scored; a score move is B "
               "minus A (up: looks less like a problem). Pick a row to look closer.")
    detectors = comparison.by_detector["detector"].tolist()
    _pickable_table(comparison.by_detector, "compare_by_detector", DETECTOR_KEY, detectors)


def _pickable_table(frame, table_key: str, target_key: str, values: list) -> None:
    """A table whose picked row sets the picker ``target_key`` to that row's value."""
    st.dataframe(frame, hide_index=True, key=table_key, selection_mode="single-row",
                 on_select=functools.partial(_picked_row, table_key, target_key, values))


def _picked_row(table_key: str, target_key: str, values: list) -> None:
    """A row picked in a table sets the picker it stands for."""
    rows = st.session_state[table_key]["selection"]["rows"]
    if rows:
        st.session_state[target_key] = values[rows[0]]


def _drill_down(view: context.View, comparison: RunComparison) -> None:
    st.subheader("What changed")
    detectors = comparison.by_detector["detector"].tolist()
    classes, _ = data.classes_and_splits(view.store, view.key, view.dataset_id)
    _keep_valid(DETECTOR_KEY, detectors, detectors[0])
    _keep_valid(CLASS_KEY, [None, *classes], None)
    left, right = st.columns(2)
    detector = left.selectbox("Detector", detectors, key=DETECTOR_KEY, persist_state="session")
    label = right.selectbox("Class", [None, *classes], key=CLASS_KEY,
                            format_func=lambda c: "all classes" if c is None else c,
                            persist_state="session")
    _open_buttons(view, comparison, detector, label)
    _by_class(comparison, detector, classes)
    _changed_samples(comparison, detector, label)


def _open_buttons(view: context.View, comparison: RunComparison, detector: str,
                  label: str | None) -> None:
    counts = _change_counts(comparison, detector, label)
    for column, change in zip(st.columns(len(CHANGES)), CHANGES):
        picked = RunChange(comparison.run_a, comparison.run_b, detector, change, label)
        if column.button(f"Show the {counts[change]} {change} in Explore",
                         key=f"compare_open|{change}", disabled=counts[change] == 0,
                         on_click=_open_in_explore, args=(view.dataset_id, picked)):
            st.switch_page("pages/explore.py")


def _change_counts(comparison: RunComparison, detector: str, label: str | None) -> dict:
    table = comparison.by_detector if label is None else comparison.by_class
    rows = table[table["detector"] == detector]
    if label is not None:
        rows = rows[rows["label"] == label]
    first = rows.iloc[0] if len(rows) else None
    return {change: 0 if first is None else int(first[change.replace(" ", "_")])
            for change in CHANGES}


def _open_in_explore(dataset_id: int, change: RunChange) -> None:
    """A callback: hand the change to Explore, with run B as the run it shows."""
    st.session_state[CHANGE_KEY] = change
    context.pick(dataset_id, change.run_b)


def _by_class(comparison: RunComparison, detector: str, classes: list[str]) -> None:
    rows = comparison.by_class[comparison.by_class["detector"] == detector]
    rows = rows.set_index("label").reindex([c for c in classes if c in set(rows["label"])])
    st.caption(f"{plain(detector)} per class (pick a row to open one class)")
    _pickable_table(rows.drop(columns="detector").reset_index(), "compare_by_class", CLASS_KEY,
                    list(rows.index))


def _changed_samples(comparison: RunComparison, detector: str, label: str | None) -> None:
    changes = comparison.changes[comparison.changes["detector"] == detector]
    if label is not None:
        changes = changes[changes["label"] == label]
    shown = changes.head(CHANGED_ROWS_SHOWN)
    st.caption(f"{len(changes):,} changed verdicts" + (
        f" (the first {len(shown):,} shown)" if len(shown) < len(changes) else ""))
    st.dataframe(shown.drop(columns="detector"), hide_index=True, key="compare_changes")
