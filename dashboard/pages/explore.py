"""Explore: filter, sort and page through the chosen run's samples; pick several and decide.

It opens on what the run measured about itself (the embedder, the probe's accuracy, the
estimated number of label errors, and what to do when that signal is weak), then the samples
sorted by ``overall`` (when the run has it), worst first. The filters, sort and page live in
the page's URL and in named saved views (``dashboard.explore_view``). Every decision button
appends to the flags log at once (one click = one row), so a reload or a second tab never loses
or repeats one.
"""

from __future__ import annotations

import math

import streamlit as st

from audit.run_trust import stronger_signal_commands
from audit.store.explore import (DECISION_STATES, PAGE_SIZE, SORT_SPECIAL, ExploreFilters,
                                 undecided_suggestions)
from audit.store.flags import Decision
from audit.store.run_compare import RunChange
from dashboard import context, data, deciding, sample_set
from dashboard.explore_view import (FILTERS_KEY, IN_URL, PAGE_KEY, current_page, params,
                                    saved_views_panel)
from dashboard.run_to_run import CHANGE_KEY
from dashboard.widgets import (decision_badge, file_line, label_lines, plain, sample_image,
                               why_lines)

COLUMNS = 6
PICK_PREFIX = "pick|"
SORT_LABELS = dict(zip(SORT_SPECIAL, ("worst score (any detector)", "number of flags",
                                      "dataset order")))


def main() -> None:
    with context.current_store().reads_together():
        view = context.require_run()
        deciding.author_input()
        st.title("Explore")
        _trust_banner(view)
        detectors = data.run_detectors(view.store, view.run_id)
        filters = _filters(view, detectors)
    _reset_page_when(filters)
    _results(filters, detectors)


@st.fragment
def _results(filters: ExploreFilters, detectors: list[str]) -> None:
    """The matching samples: count, bulk bar, grid and pager. A fragment: a page change, a pick
    or a decision reruns only this part (the filters above change only by a full rerun, which
    calls it with the new ones). The view is read afresh, so its version sees the decision just
    made."""
    with context.current_store().reads_together():
        view = context.require_run()
        result = _query(view, filters)
        seen = data.latest_flag_ids(view.store, view.key, view.dataset_id,
                                    tuple(result.rows["sample_id"]))
    st.caption(f"{result.total:,} matching samples")
    rows = result.rows
    deciding.show_outcome()
    _bulk_bar(view, rows, filters, seen)
    _grid(view, rows, detectors, seen)
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
    """The filter widgets; each one's key is its URL parameter (``explore_view.params``)."""
    classes, splits = data.classes_and_splits(view.store, view.key, view.dataset_id)
    spec = params(detectors, classes, splits)
    change = _run_change()
    chosen = sample_set.banner()
    why_off = ("Off while a run-to-run change is shown" if change else
               "Off while a chosen set of samples is shown" if chosen else None)
    top = st.container(horizontal=True, vertical_alignment="center")  # never cuts a label
    detector = top.selectbox("Detector", [None, *detectors], key="detector", width=220,
                             format_func=lambda d: "any detector" if d is None else d, **IN_URL)
    flagged = top.checkbox("Flagged only", value=spec["flagged"].default, key="flagged",
                           disabled=why_off is not None, help=why_off, **IN_URL)
    max_score = top.slider("Score at most", 0.0, 1.0, spec["score"].default, 0.01, key="score",
                           width=220, **IN_URL)
    sort_options = [*SORT_LABELS, *detectors]
    sort_by = top.selectbox("Sort by", sort_options, key="sort", width=240,
                            index=sort_options.index(spec["sort"].default),
                            format_func=lambda s: SORT_LABELS.get(s, f"{s} score"), **IN_URL)
    worst_first = top.toggle("Worst first", value=spec["worst_first"].default, key="worst_first",
                             **IN_URL)
    middle = st.columns([2, 2, 1, 2])
    chosen_classes = middle[0].multiselect("Classes", classes, key="class", **IN_URL)
    chosen_splits = middle[1].multiselect("Splits", splits, key="split", **IN_URL)
    decision = middle[2].selectbox("Decision", DECISION_STATES, key="decision", **IN_URL)
    search = middle[3].text_input("Search id, path or caption", key="search", **IN_URL)
    saved_views_panel(view, spec)
    return ExploreFilters(
        detector=detector, flagged_only=flagged and why_off is None,
        max_score=None if max_score >= 1.0 else max_score,
        classes=tuple(chosen_classes), splits=tuple(chosen_splits), decision=decision,
        search=search, sample_ids=chosen, change=change, sort_by=sort_by,
        worst_first=worst_first,
    )


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
    """Back to page 1 when the filters change; not on a session's first run (its page may come
    from the URL) nor after a saved view is applied (which sets its own page)."""
    shown = st.session_state.get(FILTERS_KEY)
    st.session_state[FILTERS_KEY] = filters
    if shown is not None and shown != filters:
        st.session_state[PAGE_KEY] = 1


def _query(view: context.View, filters: ExploreFilters):
    page = current_page()
    result = data.explore_page(view.store, view.key, view.dataset_id, view.run_id, filters,
                               page - 1, PAGE_SIZE)
    last = max(1, math.ceil(result.total / PAGE_SIZE))
    if page > last:
        st.session_state[PAGE_KEY] = last
        result = data.explore_page(view.store, view.key, view.dataset_id, view.run_id, filters,
                                   last - 1, PAGE_SIZE)
    return result


# --- bulk decisions ------------------------------------------------------------------------

def _picked(rows) -> list[str]:
    return [s for s in rows["sample_id"] if st.session_state.get(PICK_PREFIX + s)]


def _set_picks(sample_ids, value: bool) -> None:
    for sample_id in sample_ids:
        st.session_state[PICK_PREFIX + sample_id] = value


def _bulk_bar(view: context.View, rows, filters: ExploreFilters, seen: dict[str, int]) -> None:
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
        st.selectbox("Relabel to", classes, key="bulk_label", width=200,
                     disabled=action != "relabel")
        st.text_input("Note (optional)", key="bulk_note", width=220)
        st.button(f"Apply to {len(picked)} selected", key="bulk_apply", type="primary",
                  disabled=not picked, on_click=_apply_bulk, args=(view, picked, seen))
        if st.button("More like these", key="more_like_picked", disabled=not picked,
                     icon=":material/image_search:",
                     help="Explore on the selected samples and those nearest to them"):
            sample_set.show_more_like(view, picked)
    _suggestion_bar(view, rows, picked, filters, seen)


def _apply_bulk(view: context.View, picked: list[str], seen: dict[str, int]) -> None:
    action, note = st.session_state["bulk_action"], st.session_state.get("bulk_note") or None
    new_label = st.session_state.get("bulk_label") if action == "relabel" else None
    decisions = [Decision(s, action, new_label, note) for s in picked]
    if deciding.decide(view.store, view.dataset_id, decisions, seen=_seen_of(picked, seen)):
        _set_picks(picked, False)


def _seen_of(sample_ids: list[str], seen: dict[str, int]) -> dict[str, int | None]:
    """The latest log row the page showed for each sample (None: it showed no decision)."""
    return {s: seen.get(s) for s in sample_ids}


def _suggestion_bar(view: context.View, rows, picked: list[str], filters: ExploreFilters,
                    seen: dict[str, int]) -> None:
    """Accept each suggested label (the one the cards show) for the picked samples or for every
    undecided sample of the filter, and undo the last bulk action (one undo per sample)."""
    suggested = [(s, label) for s, label in zip(rows["sample_id"], rows["suggested_label"])
                 if s in picked and isinstance(label, str)]
    with st.container(horizontal=True, vertical_alignment="center"):
        st.button(f"Accept suggested label for {len(suggested)} selected", key="accept_picked",
                  icon=":material/done_all:", disabled=not suggested, on_click=_accept,
                  args=(view, suggested, _seen_of([s for s, _ in suggested], seen)))
        st.button("Accept suggested labels in the whole filter (undecided samples)",
                  key="accept_filter", icon=":material/done_all:", on_click=_accept_filter,
                  args=(view, filters))
        st.button("Undo last bulk action", key="bulk_undo", icon=":material/undo:",
                  on_click=deciding.undo_last_bulk, args=(view.store, view.dataset_id))


def _accept(view: context.View, suggested: list[tuple[str, str]],
            seen: dict[str, int | None] | None) -> None:
    decisions = [Decision(s, "relabel", label, "accepted the suggested label")
                 for s, label in suggested]
    if deciding.decide(view.store, view.dataset_id, decisions, seen=seen):
        _set_picks([s for s, _ in suggested], False)


def _accept_filter(view: context.View, filters: ExploreFilters) -> None:
    """Read at the click (not on every rerun, which would cost each decision a scan of the
    filter): the samples of the filter undecided now."""
    suggested = undecided_suggestions(view.store, view.dataset_id, view.run_id, filters)
    if not suggested:
        deciding.tell("no undecided sample of this filter has a suggested label")
        return
    _accept(view, suggested, None)


# --- the grid ------------------------------------------------------------------------------

def _grid(view: context.View, rows, detectors: list[str], seen: dict[str, int]) -> None:
    root = data.dataset_root(view.store, view.dataset_id)
    records = list(rows.itertuples(index=False))
    for start in range(0, len(records), COLUMNS):
        for column, row in zip(st.columns(COLUMNS), records[start:start + COLUMNS]):
            with column.container(border=True):
                _card(view, root, detectors, row, seen.get(row.sample_id))


def _card(view: context.View, root: str, detectors: list[str], row, seen: int | None) -> None:
    """Image (greyed once decided), split and file name, labels, decision badge, the buttons
    that decide it here, the flagging detectors with their scores and the worst one's reason
    in words."""
    sample_image(view.settings, root, row, faded=isinstance(row.decision, str))
    st.checkbox("select", key=PICK_PREFIX + row.sample_id)
    file_line(row)
    decision_badge(row)
    _card_buttons(view, row, seen)
    label_lines(row)
    scores = {name: s for name, s in zip(detectors, row.scores) if s is not None}
    why_lines(row, list(row.flagged_by), scores)
    if st.button("Details", key="open|" + row.sample_id, help=plain(row.sample_id)):
        st.session_state["example_sample"] = row.sample_id
        st.switch_page("pages/example.py", query_params={"sample": row.sample_id})


def _card_buttons(view: context.View, row, seen: int | None) -> None:
    """Decide without leaving the grid: remove, keep, accept the suggested label; undo."""
    choices = [("remove", ":material/delete:", None, "Remove"),
               ("keep", ":material/check:", None, "Keep")]
    if isinstance(row.suggested_label, str):
        choices.append(("relabel", ":material/edit:", row.suggested_label,
                        f"Relabel to {row.suggested_label}"))
    if isinstance(row.decision, str):
        choices.append(("undo", ":material/undo:", None, "Undo"))
    with st.container(horizontal=True, gap="small"):
        for action, icon, new_label, meaning in choices:
            st.button("", icon=icon, key=f"card_{action}|{row.sample_id}", help=plain(meaning),
                      on_click=deciding.decide,
                      args=(view.store, view.dataset_id, [Decision(row.sample_id, action,
                                                                   new_label)],
                            {row.sample_id: seen}))


def _pager(total: int) -> None:
    """Previous / next (PageUp / PageDown) and numbered pages, all setting the one page
    number (``?page=`` in the URL)."""
    page, last = current_page(), max(1, math.ceil(total / PAGE_SIZE))
    cols = st.columns([1, 4, 1])
    cols[0].button("Previous", key="page_prev", shortcut="PageUp", on_click=_go_to,
                   args=(page - 1,), disabled=page <= 1)
    with cols[1]:
        st.pagination(last, key=PAGE_KEY, **IN_URL)
    cols[2].button("Next", key="page_next", shortcut="PageDown", on_click=_go_to,
                   args=(page + 1,), disabled=page >= last)


def _go_to(page: int) -> None:
    st.session_state[PAGE_KEY] = page


main()
