"""Example detail: one sample large, why each detector scored it as it did, its neighbours and
duplicates, its caption, and the decision buttons (remove, keep, accept the suggested label,
relabel, undo) with history.

It is also the review loop: previous / next walk the current Explore filter in Explore's order
(``explore.place_in_order``), each decision has a single key, and after a decision the next
sample opens (the "Next after a decision" toggle, on by default). Undo withdraws the shown
sample's decision, or, on a sample without one, goes back to this tab's last decision and
withdraws it. Every button records in its callback with the log row the page showed, so a
decision another tab made in between is shown as a conflict, not replaced (``deciding``)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from audit.store.explore import ExploreFilters, OrderPlace, opening_filters
from audit.store.flags import Decision
from audit.thumbnails import GRID_SIZE, LARGE_SIZE
from dashboard import context, data, deciding, sample_set
from dashboard.explore_view import FILTERS_KEY
from dashboard.widgets import decision_badge, plain, sample_image

NEIGHBOUR_COLUMNS = 6
SAMPLE_KEY = "example_sample"
AUTO_ADVANCE_KEY = "auto_advance"
NOTE_KEY = "decision_note"
RELABEL_KEY = "relabel_to"
SHORTCUTS = {"remove": "x", "keep": "k", "accept": "a", "relabel": "l", "undo": "u",
             "previous": "p", "next": "n"}


def main() -> None:
    sample_id = _chosen_sample()
    with context.current_store().reads_together():
        view = context.require_run()
        if sample_id is not None:
            sample = data.sample_detail(view.store, view.key, view.dataset_id, sample_id)
            scores = data.sample_scores(view.store, view.run_id, sample_id)
            card = _explore_row(view, sample_id)
            log = data.history(view.store, view.dataset_id, sample_id)
            place = data.place_in_order(view.store, view.key, view.dataset_id, view.run_id,
                                        _explore_filters(view), sample_id)
    deciding.author_input()
    if sample_id is None:
        st.info("Open an example from the Explore page.")
        st.page_link("pages/explore.py", label="Go to Explore", icon=":material/grid_view:")
        return
    deciding.show_outcome()
    st.title("Example")
    _navigation(place)
    st.text(f"id: {sample_id}")
    left, right = st.columns([3, 2])
    with left:
        sample_image(view.settings, sample["root"], _as_row(sample), LARGE_SIZE, width=LARGE_SIZE)
        _caption(sample, scores, data.detector_facts(view.store, view.run_id))
    with right:
        _facts(view, sample)
        _standing(card, log)
        _decision_panel(view, sample, card, log, place)
    _scores(scores)
    _suggestions(view, sample, scores)
    _related(view, sample["root"], scores, sample_id)
    _history(log)


def _chosen_sample() -> str | None:
    from_url = st.query_params.get("sample")
    if from_url:
        st.session_state[SAMPLE_KEY] = from_url
    return st.session_state.get(SAMPLE_KEY)


def _open(sample_id: str) -> None:
    """Show another sample (a button's callback: it runs before the page is drawn)."""
    st.session_state[SAMPLE_KEY] = sample_id
    st.query_params["sample"] = sample_id


def _explore_row(view: context.View, sample_id: str):
    """The sample as its Explore card shows it: standing decision, suggested label."""
    only_it = ExploreFilters(sample_ids=(sample_id,))
    rows = data.explore_page(view.store, view.key, view.dataset_id, view.run_id, only_it, 0, 1).rows
    return next(rows.itertuples(index=False))


def _explore_filters(view: context.View) -> ExploreFilters:
    """The filters Explore showed last; Explore's opening filters when it was not opened."""
    shown = st.session_state.get(FILTERS_KEY)
    if shown is not None:
        return shown
    return opening_filters(data.run_detectors(view.store, view.run_id))


# --- the review loop -----------------------------------------------------------------------

def _navigation(place: OrderPlace) -> None:
    """Previous / next in the Explore filter's order, and where this sample stands in it."""
    row = st.container(horizontal=True, vertical_alignment="center")
    row.button("Previous", key="review_prev", icon=":material/arrow_back:",
               shortcut=SHORTCUTS["previous"], disabled=place.previous is None,
               on_click=_open, args=(place.previous,))
    row.button("Next", key="review_next", icon=":material/arrow_forward:",
               shortcut=SHORTCUTS["next"], disabled=place.next is None,
               on_click=_open, args=(place.next,))
    if place.position is None:
        row.caption(f"Not among the {place.total:,} samples of the current Explore filter.")
    else:
        row.caption(f"{place.position:,} of {place.total:,} in the current Explore filter")
    row.page_link("pages/explore.py", label="Back to Explore", icon=":material/grid_view:")


def _standing(card, log: pd.DataFrame) -> None:
    """The standing decision, visible at once, with who wrote the log's latest row and when."""
    decision_badge(card)
    if not isinstance(card.decision, str):
        st.caption("undecided")
    if not log.empty:
        last = log.iloc[-1]
        st.caption(plain(f"last change: {last['action']} by {last['author']} "
                         f"at {last['created_at']:%Y-%m-%d %H:%M}"))


def _as_row(sample: dict):
    return pd.Series(sample)


def _facts(view: context.View, sample: dict) -> None:
    st.text(f"label: {sample['label']}")
    st.text(f"split: {sample['split']}")
    st.text(f"file: {sample['path']}")
    if sample["width"]:
        st.text(f"size: {sample['width']} x {sample['height']} px")
    if sample["load_error"]:
        st.text(f"unreadable: {sample['load_error']}")


def _caption(sample: dict, scores: pd.DataFrame, facts: dict[str, dict]) -> None:
    """The caption, and what the run's image-text consistency detectors made of it."""
    if not sample["caption"]:
        return
    st.text(f"caption: {sample['caption']}")
    consistency = [name for name, f in facts.items() if f.get("family") == "consistency"]
    for row in scores[scores["detector"].isin(consistency)].itertuples():
        reason = row.details.get("reason", "")
        st.text(f"image-text agreement ({row.detector}): {row.score:.2f} - {reason}")


# --- decisions -----------------------------------------------------------------------------

def _decision_panel(view: context.View, sample: dict, card, log: pd.DataFrame,
                    place: OrderPlace) -> None:
    classes, _ = data.classes_and_splits(view.store, view.key, view.dataset_id)
    others = [c for c in classes if c != sample["label"]]
    suggested = card.suggested_label if isinstance(card.suggested_label, str) else None
    seen = {sample["sample_id"]: int(log["id"].iloc[-1]) if not log.empty else None}
    with st.container(border=True):
        st.subheader("Decide")
        st.text_input("Note (optional)", key=NOTE_KEY)
        advance = st.toggle("Next after a decision", value=True, key=AUTO_ADVANCE_KEY,
                            persist_state="session")
        then = place.next if advance else None
        buttons = st.container(horizontal=True)  # sized to the labels: none is ever cut
        for label, key, action, new_label in (("Remove", "decide_remove", "remove", None),
                                              ("Keep", "decide_keep", "keep", None)):
            buttons.button(label, key=key, shortcut=SHORTCUTS[action],
                           type="primary" if action == "remove" else "secondary",
                           on_click=_decide, args=(view, seen, Decision(sample["sample_id"],
                                                                        action), then))
        if suggested:
            buttons.button(f"Relabel to {suggested}", key="decide_accept",
                           shortcut=SHORTCUTS["accept"], on_click=_decide,
                           args=(view, seen, Decision(sample["sample_id"], "relabel", suggested),
                                 then))
        buttons.button("Undo", key="decide_undo", shortcut=SHORTCUTS["undo"], on_click=_undo,
                       args=(view, sample["sample_id"], isinstance(card.decision, str), seen))
        index = others.index(suggested) if suggested in others else 0
        st.selectbox("Relabel to", others, index=index if others else None, key=RELABEL_KEY)
        st.button("Relabel", key="decide_relabel", disabled=not others,
                  shortcut=SHORTCUTS["relabel"], on_click=_decide,
                  args=(view, seen, Decision(sample["sample_id"], "relabel"), then))


def _decide(view: context.View, seen: dict, decision: Decision, then: str | None) -> None:
    """A decision button's callback: the note and the chosen class as they are now."""
    new_label = decision.new_label
    if decision.action == "relabel" and new_label is None:
        new_label = st.session_state.get(RELABEL_KEY)
    note = (st.session_state.get(NOTE_KEY) or "").strip() or None
    made = Decision(decision.sample_id, decision.action, new_label, note)
    if deciding.decide(view.store, view.dataset_id, [made], seen=seen):
        st.session_state[NOTE_KEY] = ""
        if then is not None:
            _open(then)


def _undo(view: context.View, sample_id: str, decided: bool, seen: dict) -> None:
    """Withdraw this sample's decision; on an undecided sample, go back to this tab's last
    decision and withdraw that one."""
    if decided:
        if deciding.decide(view.store, view.dataset_id, [Decision(sample_id, "undo")], seen=seen):
            deciding.forget(sample_id)
        return
    last = deciding.last_decided()
    if last is None:
        deciding.tell("nothing of yours to undo here")
        return
    _open(last[0])
    deciding.decide(view.store, view.dataset_id, [Decision(last[0], "undo")],
                    seen={last[0]: last[1]})


def _history(log: pd.DataFrame) -> None:
    st.subheader("Decision history")
    if log.empty:
        st.caption("No decisions yet.")
        return
    st.dataframe(log[["created_at", "action", "new_label", "note", "author"]], hide_index=True)


# --- why it was flagged --------------------------------------------------------------------

def _scores(scores: pd.DataFrame) -> None:
    st.subheader("Scores (lower = more likely a problem)")
    table = pd.DataFrame({
        "detector": scores["detector"],
        "score": scores["score"],
        "flagged": scores["is_issue"],
        "why": [d.get("reason", "") for d in scores["details"]],
    })
    st.dataframe(table, hide_index=True, column_config={
        "score": st.column_config.ProgressColumn("score", min_value=0.0, max_value=1.0,
                                                 format="%.3f"),
    })


def _suggestions(view: context.View, sample: dict, scores: pd.DataFrame) -> None:
    facts = data.sample_run_facts(view.store, view.run_id, sample["sample_id"])
    if facts and facts.get("audited_label") not in (None, sample["label"]):
        st.text(f"this run audited it as: {facts['audited_label']} (a reviewer's relabel)")
    if facts and facts.get("predicted_label") is not None:
        st.text(f"probe predicts: {facts['predicted_label']} "
                f"({facts['predicted_confidence']:.0%} confident)")
    for row in scores.itertuples():
        if row.details.get("suggested_label"):
            confidence = row.details.get("suggested_confidence")
            extra = f" ({confidence:.0%})" if isinstance(confidence, (int, float)) else ""
            st.text(f"{row.detector} suggests: {row.details['suggested_label']}{extra}")
        if row.details.get("top_classes"):
            st.caption(plain(f"{row.detector}: the probe's top classes"))
            st.dataframe(pd.DataFrame(row.details["top_classes"], columns=["class", "probability"]),
                         hide_index=True)


def _related(view: context.View, root: str, scores: pd.DataFrame, sample_id: str) -> None:
    if st.button("More like this", key="more_like_this", icon=":material/image_search:",
                 help="Explore on this sample and the samples nearest to it in the run's "
                      "embedding, flagged or not"):
        sample_set.show_more_like(view, [sample_id])
    for title, field in (("Nearest neighbours", "neighbors"), ("Duplicate set", "duplicate_of")):
        ids = _collect(scores, field)
        if ids:
            st.subheader(title)
            _thumbnails(view, root, ids, field)


def _collect(scores: pd.DataFrame, field: str) -> list[str]:
    seen: list[str] = []
    for details in scores["details"]:
        for sample_id in details.get(field) or []:
            if str(sample_id) not in seen:
                seen.append(str(sample_id))
    return seen


def _thumbnails(view: context.View, root: str, sample_ids: list[str], group: str) -> None:
    rows = data.samples_by_ids(view.store, view.key, view.dataset_id, tuple(sample_ids))
    records = list(rows.itertuples(index=False))
    for start in range(0, len(records), NEIGHBOUR_COLUMNS):
        chunk = records[start:start + NEIGHBOUR_COLUMNS]
        for column, row in zip(st.columns(NEIGHBOUR_COLUMNS), chunk):
            with column:
                sample_image(view.settings, root, row, GRID_SIZE)
                st.text(f"{row.label} ({row.split})")
                st.button("Details", key=f"{group}|{row.sample_id}", on_click=_open,
                          args=(row.sample_id,))


main()
