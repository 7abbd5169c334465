"""A chosen set of samples Explore shows instead of its whole run, until cleared: those selected
on the Insights map, or those most like one sample or a selection ("more like this", from the
run's kNN graph: ``audit.store.neighbours``). "Flagged only" is off while a set is shown: a
sample like a flagged one is worth seeing whether or not it was flagged."""

from __future__ import annotations

import streamlit as st

from dashboard import context, data
from dashboard.widgets import plain

SET_KEY = "sample_set"
MORE_LIKE_THIS = 47          # with the samples asked about: one 48-card page


def show_in_explore(sample_ids: list[str], why: str) -> None:
    """Hand a set of samples to Explore (``why`` completes "Showing only the N samples ...")."""
    st.session_state[SET_KEY] = {"ids": list(sample_ids), "why": why}
    context.switch_page("pages/explore.py")


def show_more_like(view: context.View, sample_ids: list[str]) -> None:
    """Explore on the samples and those most like them, by the run's embedding."""
    similar = data.more_like_this(view.store, view.run_id, tuple(sample_ids), MORE_LIKE_THIS)
    named = sample_ids[0] if len(sample_ids) == 1 else f"the {len(sample_ids)} selected samples"
    show_in_explore([*sample_ids, *similar],
                    f"most like {named} (nearest in run {view.run_id}'s embedding), with it")


def chosen() -> dict | None:
    return st.session_state.get(SET_KEY)


def banner() -> tuple[str, ...] | None:
    """The chosen set's ids with a line saying why, and a button that clears it; None when
    Explore shows its whole run."""
    shown = chosen()
    if shown is None:
        return None
    left, right = st.columns([4, 1])
    left.info(plain(f"Showing only the {len(shown['ids'])} samples {shown['why']}."))
    if right.button("Show all samples", key="clear_sample_set"):
        del st.session_state[SET_KEY]
        st.rerun()
    return tuple(shown["ids"])
