"""Example detail: one sample large, why each detector scored it as it did, its neighbours and
duplicates, its caption, and the decision buttons (remove, relabel, keep, undo) with history."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from audit.store.flags import Decision, record_decisions
from audit.thumbnails import GRID_SIZE, LARGE_SIZE
from dashboard import context, data
from dashboard.errors import reported
from dashboard.widgets import plain, sample_image

NEIGHBOUR_COLUMNS = 6


def main() -> None:
    view = context.require_run()
    sample_id = _chosen_sample()
    if sample_id is None:
        st.info("Open an example from the Explore page.")
        st.page_link("pages/explore.py", label="Go to Explore", icon=":material/grid_view:")
        return
    sample = data.sample_detail(view.store, view.key, view.dataset_id, sample_id)
    scores = data.sample_scores(view.store, view.run_id, sample_id)
    st.title("Example")
    st.text(f"id: {sample_id}")
    left, right = st.columns([3, 2])
    with left:
        sample_image(view.settings, sample["root"], _as_row(sample), LARGE_SIZE, width=LARGE_SIZE)
        _caption(sample, scores)
    with right:
        _facts(view, sample)
        _decision_panel(view, sample, scores)
    _scores(scores)
    _suggestions(view, sample, scores)
    _related(view, sample["root"], scores)
    _history(view, sample_id)


def _chosen_sample() -> str | None:
    from_url = st.query_params.get("sample")
    if from_url:
        st.session_state["example_sample"] = from_url
    return st.session_state.get("example_sample")


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


def _caption(sample: dict, scores: pd.DataFrame) -> None:
    if not sample["caption"]:
        return
    st.text(f"caption: {sample['caption']}")
    agreement = scores[scores["detector"] == "vl_consistency"]
    for row in agreement.itertuples():
        reason = row.details.get("reason", "")
        st.text(f"CLIP agreement (vl_consistency): {row.score:.2f} - {reason}")


# --- decisions -----------------------------------------------------------------------------

def _decision_panel(view: context.View, sample: dict, scores: pd.DataFrame) -> None:
    classes, _ = data.classes_and_splits(view.store, view.key, view.dataset_id)
    others = [c for c in classes if c != sample["label"]]
    suggested = _suggested_label(scores)
    with st.container(border=True):
        st.subheader("Decide")
        note = st.text_input("Note (optional)", key="decision_note")
        buttons = st.container(horizontal=True)  # sized to the labels: none is ever cut
        if buttons.button("Remove", key="decide_remove", type="primary", shortcut="Delete"):
            _decide(view, sample["sample_id"], "remove", None, note)
        if buttons.button("Keep", key="decide_keep"):
            _decide(view, sample["sample_id"], "keep", None, note)
        if buttons.button("Undo last", key="decide_undo"):
            _decide(view, sample["sample_id"], "undo", None, note)
        index = others.index(suggested) if suggested in others else 0
        new_label = st.selectbox("Relabel to", others, index=index if others else None,
                                 key="relabel_to")
        if st.button("Relabel", key="decide_relabel", disabled=not others):
            _decide(view, sample["sample_id"], "relabel", new_label, note)


def _suggested_label(scores: pd.DataFrame) -> str | None:
    """The first suggestion of a detector that flagged the sample (scores are worst first)."""
    flagged = scores[scores["is_issue"]]
    for details in flagged["details"]:
        if details.get("suggested_label"):
            return details["suggested_label"]
    return None


def _decide(view: context.View, sample_id: str, action: str, new_label: str | None,
            note: str) -> None:
    with reported():
        record_decisions(view.store, view.dataset_id,
                         [Decision(sample_id, action, new_label, note or None)])
        st.toast(f"{action} recorded")
        st.rerun()


def _history(view: context.View, sample_id: str) -> None:
    st.subheader("Decision history")
    log = data.history(view.store, view.dataset_id, sample_id)
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


def _related(view: context.View, root: str, scores: pd.DataFrame) -> None:
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
                if st.button("Details", key=f"{group}|{row.sample_id}"):
                    st.session_state["example_sample"] = row.sample_id
                    st.query_params["sample"] = row.sample_id
                    st.rerun()


main()
