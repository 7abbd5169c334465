"""Explore's view, kept in the page's URL and in named saved views.

Each filter, the sort and the page number is a widget whose key is its URL parameter, bound
with Streamlit's ``bind="query-params"`` (``IN_URL``): changing the widget updates the URL,
a value equal to its default is left out of it, and a reload or a copied link seeds the widget
from it; a value the widget cannot take (``?score=abc``, a detector this run lacks) is dropped
from the URL and the widget keeps its default. ``params`` lists those parameters with their
defaults and what each may hold, once, for the widgets and for the saved views.

A saved view (``audit.store.saved_views``) is the parameters that differ from their defaults;
applying one sets the widgets (through ``st.session_state``, so the URL follows), and a value
no longer valid for the shown run (a detector it lacks, a class since gone) falls back to the
default. The dataset and run are the sidebar's (``?dataset=&run=``, ``dashboard.context``),
not part of a view: a view applies to whichever run is shown.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import streamlit as st

from audit.store.explore import DECISION_STATES, SORT_SPECIAL, default_sort
from audit.store.saved_views import delete_view, save_view
from dashboard import context, data
from dashboard.errors import reported
from dashboard.widgets import plain

IN_URL = {"bind": "query-params", "persist_state": "session"}
PAGE_KEY = "page"
FILTERS_KEY = "explore_filters"     # the filters the page last showed, to know when they change
PICKED_VIEW_KEY = "saved_view"


@dataclasses.dataclass(frozen=True)
class Param:
    default: Any
    valid: Callable[[Any], bool]


def params(detectors: list[str], classes: list[str], splits: list[str]) -> dict[str, Param]:
    """Explore's URL parameters (each one a widget's key), their defaults for this run, and
    the values a saved view may give them."""
    sorts = [*SORT_SPECIAL, *detectors]
    return {
        "detector": Param(None, lambda v: v is None or v in detectors),
        "flagged": Param(True, _is_bool),
        "score": Param(1.0, lambda v: isinstance(v, float) and 0 <= v <= 1),
        "sort": Param(default_sort(detectors), lambda v: v in sorts),
        "worst_first": Param(True, _is_bool),
        "class": Param([], lambda v: _is_subset(v, classes)),
        "split": Param([], lambda v: _is_subset(v, splits)),
        "decision": Param("any", lambda v: v in DECISION_STATES),
        "search": Param("", lambda v: isinstance(v, str)),
        PAGE_KEY: Param(1, lambda v: isinstance(v, int) and not _is_bool(v) and v >= 1),
    }


def _is_bool(value) -> bool:
    return isinstance(value, bool)


def _is_subset(value, options: list[str]) -> bool:
    return isinstance(value, list) and all(v in options for v in value)


def current_page() -> int:
    """The page the grid shows: the pager's value, or on a session's first run (before the
    pager is drawn) the URL's ``?page=`` when it is a page number."""
    if PAGE_KEY in st.session_state:
        return st.session_state[PAGE_KEY]
    text = st.query_params.get(PAGE_KEY, "")
    return int(text) if text.isascii() and text.isdigit() and int(text) >= 1 else 1


# --- saved views ---------------------------------------------------------------------------

def saved_views_panel(view: context.View, spec: dict[str, Param]) -> None:
    """Pick a saved view to apply or delete; save the current view under a new name."""
    views = {v.name: v.params for v in data.saved_views(view.store, view.key, view.dataset_id)}
    with st.expander(f"Saved views ({len(views)})", icon=":material/bookmark:"):
        with st.container(horizontal=True, vertical_alignment="bottom"):
            st.selectbox("Saved view", list(views), key=PICKED_VIEW_KEY, width=260,
                         placeholder="none saved yet" if not views else "pick a view")
            st.button("Apply", key="apply_view", disabled=not views, on_click=_apply,
                      args=(views, spec))
            deleting = st.button("Delete", key="delete_view", disabled=not views)
        with st.container(horizontal=True, vertical_alignment="bottom"):
            name = st.text_input("Name", key="view_name", width=260,
                                 placeholder="e.g. label flips, test split")
            saving = st.button("Save view", key="save_view")
    with reported():
        if deleting:
            delete_view(view.store, view.dataset_id, st.session_state[PICKED_VIEW_KEY])
            st.rerun()
        if saving:
            save_view(view.store, view.dataset_id, name, _non_default(spec))
            st.toast(f"Saved the view {plain(name.strip())}")
            st.rerun()


def _non_default(spec: dict[str, Param]) -> dict:
    """The current view: each parameter whose widget holds other than its default."""
    current = {key: st.session_state.get(key, p.default) for key, p in spec.items()}
    current[PAGE_KEY] = current_page()
    return {key: value for key, value in current.items() if value != spec[key].default}


def _apply(views: dict[str, dict], spec: dict[str, Param]) -> None:
    """Set every widget to the picked view's value, or its default where the view has none or
    one not valid for this run; keep the view's page (no reset for changed filters)."""
    saved = views.get(st.session_state[PICKED_VIEW_KEY])
    if saved is None:
        return
    for key, param in spec.items():
        value = saved.get(key, param.default)
        st.session_state[key] = value if param.valid(value) else param.default
    st.session_state.pop(FILTERS_KEY, None)
