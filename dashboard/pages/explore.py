"""Explore: filter, sort and page through the chosen run's samples; pick several and decide.

It opens on what the run measured about itself (the embedder, the probe's accuracy, the
estimated number of label errors, and what to do when that signal is weak), then the samples
sorted by ``overall`` (when the run has it), worst first. Filters keep their values for the
session. Every decision button appends to the flags log at once (one click = one row), so a
reload or a second tab never loses or repeats one.
"""

from __future__ import annotations

import math

import streamlit as st

from audit.run_trust import stronger_signal_commands
from audit.store.explore import DECISION_STATES, SORT_SPECIAL, ExploreFilters, default_sort
from audit.store.flags import Decision, record_decisions
from audit.store.run_compare import RunChange
from dashboard import context, data
from dashboard.errors import reported
from dashboard.run_to_run import CHANGE_KEY
from dashboard.widgets import (decision_badge, file_line, flag_line, label_lines, plain,
                               reason_line, sample_image)

PAGE_SIZE = 48
COLUMNS = 6
PICK_PREFIX = "pick|"
MAP_SELECTION_KEY = "map_selection"
SORT_LABELS = dict(zip(SORT_SPECIAL, ("worst score (any detector)", "number of flags",
                                      "dataset order")))


def main() -> None:
    view = context.require_run()
    st.title("Explore")
    _trust_banner(view)
    detectors = data.run_detectors(view.store, view.run_id)
    filters = _filters(view, detectors)
    _reset_page_when(filters)
    result = _query(view, filters)
    st.caption(f"{result.total:,} matching samples")
    rows = result.rows
    _bulk_bar(view, rows)
    _grid(view, rows, detectors)
    _pager(result.total)


def _trust_banner(view: context.View) -> None:
    """What the run measured about itself, and what to do when its signal is weak. Every line
    may hold dataset strings (a model path, the dataset's name): shown escaped or as code."""
    trust = data.trust(view.store, view.run_id)
    if trust.facts:
        st.info("\n\n".join(plain(fact) for fact in trust.facts), icon=":material/fact_check:")
    if trust.weak:
        st.warning(plain(trust.advice), icon=":material/warning:")
        name = data.dataset_name(view.store, view.key, view.dataset_id)
        st.code("\n".join(stronger_signal_commands(name)), language="bash")


def _filters(view: context.View, detectors: list[str]) -> ExploreFilters:
    classes, splits = data.classes_and_splits(view.store, view.key, view.dataset_id)
    change = _run_change()
    top = st.container(horizontal=True, vertical_alignment="center")  # never cuts a label
    detector = top.selectbox("Detector", [None, *detectors], key="f_detector", width=220,
                             format_func=lambda d: "any detector" if d is None else d,
                             persist_state="session")
    flagged = top.checkbox("Flagged only", value=True, key="f_flagged", persist_state="session",
                           disabled=change is not None,
                           help="Off while a run-to-run change is shown" if change else None)
    max_score = top.slider("Score at most", 0.0, 1.0, 1.0, 0.01, key="f_max_score", width=220,
                           persist_state="session")
    sort_options = [*SORT_LABELS, *detectors]
    sort_by = top.selectbox("Sort by", sort_options, key="f_sort", width=240,
                            index=sort_options.index(default_sort(detectors)),
                            format_func=lambda s: SORT_LABELS.get(s, f"{s} score"),
                            persist_state="session")
    worst_first = top.toggle("Worst first", value=True, key="f_worst_first",
                             persist_state="session")
    middle = st.columns([2, 2, 1, 2])
    chosen_classes = middle[0].multiselect("Classes", classes, key="f_classes",
                                           persist_state="session")
    chosen_splits = middle[1].multiselect("Splits", splits, key="f_splits", persist_state="session")
    decision = middle[2].selectbox("Decision", DECISION_STATES, key="f_decision",
                                   persist_state="session")
    search = middle[3].text_input("Search id, path or caption", key="f_search",
                                  persist_state="session")
    return ExploreFilters(
        detector=detector, flagged_only=flagged and change is None,
        max_score=None if max_score >= 1.0 else max_score,
        classes=tuple(chosen_classes), splits=tuple(chosen_splits), decision=decision,
        search=search, sample_ids=_map_selection(), change=change, sort_by=sort_by,
        worst_first=worst_first,
    )


def _map_selection() -> tuple[str, ...] | None:
    """Samples picked on the Insights map, until cleared here."""
    picked = st.session_state.get(MAP_SELECTION_KEY)
    if picked is None:
        return None
    left, right = st.columns([4, 1])
    left.info(f"Showing only the {len(picked)} samples selected on the Insights map.")
    if right.button("Clear map selection", key="clear_map_selection"):
        del st.session_state[MAP_SELECTION_KEY]
        st.rerun()
    return tuple(picked)


def _run_change() -> RunChange | None:
    """The run-to-run change opened from Insights, until cleared here."""
    change = st.session_state.get(CHANGE_KEY)
    if change is None:
        return None
    left, right = st.columns([4, 1])
    left.info(plain(_describe(change)), icon=":material/compare_arrows:")
    if right.button("Clear run comparison", key="clear_run_change"):
        del st.session_state[CHANGE_KEY]
        st.rerun()
    return change


def _describe(change: RunChange) -> str:
    a, b = change.run_a, change.run_b
    verdicts = (f"in run {b}, not in run {a}" if change.change == "newly flagged"
                else f"in run {a}, no longer in run {b}")
    of_class = "" if change.label is None else f" of class {change.label}"
    return f"Showing only the samples{of_class} flagged by {change.detector} {verdicts}."


def _reset_page_when(filters: ExploreFilters) -> None:
    if st.session_state.get("explore_filters") != filters:
        st.session_state["explore_filters"] = filters
        st.session_state["explore_page"] = 1


def _query(view: context.View, filters: ExploreFilters):
    page = st.session_state.setdefault("explore_page", 1)
    result = data.explore_page(view.store, view.key, view.dataset_id, view.run_id, filters,
                               page - 1, PAGE_SIZE)
    last = max(1, math.ceil(result.total / PAGE_SIZE))
    if page > last:
        st.session_state["explore_page"] = last
        result = data.explore_page(view.store, view.key, view.dataset_id, view.run_id, filters,
                                   last - 1, PAGE_SIZE)
    return result


# --- bulk decisions ------------------------------------------------------------------------

def _picked(rows) -> list[str]:
    return [s for s in rows["sample_id"] if st.session_state.get(PICK_PREFIX + s)]


def _set_picks(sample_ids, value: bool) -> None:
    for sample_id in sample_ids:
        st.session_state[PICK_PREFIX + sample_id] = value


def _bulk_bar(view: context.View, rows) -> None:
    picked = _picked(rows)
    classes, _ = data.classes_and_splits(view.store, view.key, view.dataset_id)
    # A wrapping row sized to its content, so no label is ever cut (columns of fixed shares
    # cut "Select page" and "remove" on narrower windows).
    with st.container(border=True, horizontal=True, vertical_alignment="bottom"):
        st.button("Select page", key="pick_all", on_click=_set_picks,
                  args=(list(rows["sample_id"]), True))
        st.button("Clear", key="pick_none", on_click=_set_picks,
                  args=(list(rows["sample_id"]), False))
        action = st.selectbox("Action", ["remove", "keep", "relabel"], key="bulk_action",
                              width=130)
        new_label = st.selectbox("Relabel to", classes, key="bulk_label", width=200,
                                 disabled=action != "relabel")
        note = st.text_input("Note (optional)", key="bulk_note", width=220)
        if st.button(f"Apply to {len(picked)} selected", key="bulk_apply", type="primary",
                     disabled=not picked):
            _apply_bulk(view, picked, action, new_label, note)


def _apply_bulk(view: context.View, picked: list[str], action: str, new_label: str | None,
                note: str) -> None:
    decisions = [Decision(s, action, new_label if action == "relabel" else None, note or None)
                 for s in picked]
    with reported():
        record_decisions(view.store, view.dataset_id, decisions)
        _set_picks(picked, False)
        st.toast(f"{action}: {len(decisions)} samples")
        st.rerun()


# --- the grid ------------------------------------------------------------------------------

def _grid(view: context.View, rows, detectors: list[str]) -> None:
    root = data.dataset_root(view.store, view.dataset_id)
    records = list(rows.itertuples(index=False))
    for start in range(0, len(records), COLUMNS):
        for column, row in zip(st.columns(COLUMNS), records[start:start + COLUMNS]):
            with column.container(border=True):
                _card(view, root, detectors, row)


def _card(view: context.View, root: str, detectors: list[str], row) -> None:
    """Image (greyed once decided), split and file name, labels, decision badge, the flagging
    detectors with their scores and the worst one's reason in words."""
    sample_image(view.settings, root, row, faded=isinstance(row.decision, str))
    st.checkbox("select", key=PICK_PREFIX + row.sample_id)
    file_line(row)
    decision_badge(row)
    label_lines(row)
    scores = {name: s for name, s in zip(detectors, row.scores) if s is not None}
    flag_line(list(row.flagged_by), scores)
    reason_line(row)
    if st.button("Details", key="open|" + row.sample_id, help=plain(row.sample_id)):
        st.session_state["example_sample"] = row.sample_id
        st.switch_page("pages/example.py", query_params={"sample": row.sample_id})


def _pager(total: int) -> None:
    """Previous / next (PageUp / PageDown) and numbered pages. The numbered widget's key
    carries the current page, so it starts afresh whenever the page moves another way."""
    page, last = st.session_state["explore_page"], max(1, math.ceil(total / PAGE_SIZE))
    cols = st.columns([1, 4, 1])
    cols[0].button("Previous", key="page_prev", shortcut="PageUp", on_click=_go_to,
                   args=(page - 1,), disabled=page <= 1)
    with cols[1]:
        key = f"pager|{page}|{last}"
        st.pagination(last, default=page, key=key, on_change=_pick_page, args=(key,))
    cols[2].button("Next", key="page_next", shortcut="PageDown", on_click=_go_to,
                   args=(page + 1,), disabled=page >= last)


def _go_to(page: int) -> None:
    st.session_state["explore_page"] = page


def _pick_page(key: str) -> None:
    st.session_state["explore_page"] = st.session_state[key]


main()
