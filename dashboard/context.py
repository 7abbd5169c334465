"""What every page looks at: settings, store, the store's version, and the dataset and run
picked in the sidebar (widget values kept for the whole session, and named in the page's URL,
``?dataset=ID&run=ID``, so a reload or a copied link opens them again).

``view()`` is computed afresh wherever a page asks for it, so a page is right even when it
reruns on its own (a fragment, or AppTest, which reruns only the page after the first run).
"""

from __future__ import annotations

import dataclasses
import json

import streamlit as st

from audit.settings import Settings
from audit.store import Store
from dashboard import data

DATASET_KEY = "dataset_id"
SCROLL_TO_TOP_KEY = "scroll_to_top"
# A constant script, never built from data: the page's main part keeps its scroll position
# across a switch of pages, so a page switched to opens where the page left was scrolled to.
SCROLL_TO_TOP = ("<script>document.querySelector('[data-testid=\"stMain\"]')"
                 "?.scrollTo(0, 0)</script>")


@dataclasses.dataclass(frozen=True)
class View:
    settings: Settings
    store: Store
    key: data.Version
    dataset_id: int | None
    run_id: int | None


def current_store() -> Store:
    """The store the settings name (for ``reads_together`` around a page's first reads)."""
    return data.current_store(data.current_settings())


def view() -> View:
    """The current settings, store and version, and the picked dataset and run (those the URL
    names, else the first dataset and its newest run, until the user picks others)."""
    settings = data.current_settings()
    store = data.current_store(settings)
    key = data.version(store)
    dataset_id = _chosen(_dataset_ids(store, key), _picked(DATASET_KEY, "dataset"))
    run_id = None
    if dataset_id is not None:
        picked_run = _picked(_run_key(dataset_id), "run")
        run_id = _chosen(_run_ids(store, key, dataset_id), picked_run)
    return View(settings, store, key, dataset_id, run_id)


def _picked(key: str, url_name: str) -> int | None:
    """The session's pick, else the id the page's URL names (``?dataset=ID&run=ID``, as the
    notebook API opens a result)."""
    if key in st.session_state:
        return st.session_state[key]
    text = st.query_params.get(url_name, "")
    return int(text) if text.isascii() and text.isdigit() else None


def _chosen(options: list[int], picked: int | None) -> int | None:
    if picked in options:
        return picked
    return options[0] if options else None


def _dataset_ids(store: Store, key: data.Version) -> list[int]:
    return data.overview(store, key)["id"].astype(int).tolist()


def _run_ids(store: Store, key: data.Version, dataset_id: int) -> list[int]:
    return data.runs(store, key, dataset_id)["id"].astype(int).tolist()


def _run_key(dataset_id: int) -> str:
    return f"run_id_{dataset_id}"


def pick(dataset_id: int, run_id: int | None = None) -> None:
    """Make a dataset (and one of its runs) the sidebar's pick. Call it from a widget
    callback, which runs before the pickers are drawn."""
    st.session_state[DATASET_KEY] = dataset_id
    if run_id is not None:
        st.session_state[_run_key(dataset_id)] = run_id


def switch_page(page: str) -> None:
    """Go to another page and open it at its top."""
    st.session_state[SCROLL_TO_TOP_KEY] = True
    st.switch_page(page)


def _scroll_to_top_after_a_switch() -> None:
    if st.session_state.pop(SCROLL_TO_TOP_KEY, False):
        st.sidebar.html(SCROLL_TO_TOP, unsafe_allow_javascript=True)


def sidebar_pickers() -> None:
    """The dataset and run pickers, rendered by the router on every page (which also scrolls
    a page opened by ``switch_page`` to its top), then the picks written to the URL."""
    _scroll_to_top_after_a_switch()
    _pickers()
    _name_in_url(view())


def _name_in_url(current: View) -> None:
    """``?dataset=ID&run=ID`` for the picks shown (always both, so a copied link keeps naming
    the same run after a newer one finishes); written only when they change."""
    for name, value in (("dataset", current.dataset_id), ("run", current.run_id)):
        text = None if value is None else str(value)
        if st.query_params.get(name) == text:
            continue
        if text is None:
            del st.query_params[name]
        else:
            st.query_params[name] = text


def _pickers() -> None:
    current = view()
    if current.dataset_id is None:
        st.sidebar.caption("No datasets yet: add one on the Datasets page.")
        return
    datasets = data.overview(current.store, current.key)
    names = dict(zip(datasets["id"].astype(int), datasets["name"]))
    st.sidebar.selectbox("Dataset", list(names), format_func=names.get, key=DATASET_KEY,
                         index=list(names).index(current.dataset_id), persist_state="session")
    runs = data.runs(current.store, current.key, current.dataset_id)
    if runs.empty:
        st.sidebar.caption("This dataset has no finished audit yet.")
        return
    labels = {int(r.id): f"run {int(r.id)} ({r.finished_at:%Y-%m-%d %H:%M})"
              for r in runs.itertuples()}
    st.sidebar.selectbox("Run", list(labels), format_func=labels.get,
                         key=_run_key(current.dataset_id), index=list(labels).index(current.run_id),
                         persist_state="session")
    _run_notes(runs.set_index("id").loc[view().run_id])


def _run_notes(run) -> None:
    """Which detectors this run skipped and why, and what its stages noted, as plain text."""
    skipped, notes = (json.loads(value) if isinstance(value, str) else {}   # NULL may read as NaN
                      for value in (run["skipped"], run["notes"]))
    if not skipped and not notes:
        return
    with st.sidebar.expander(f"About this run ({len(skipped)} detector(s) skipped)"):
        for name, reason in {**skipped, **notes}.items():
            st.text(f"{name}: {reason}")


def require_run() -> View:
    """The view, or stop the page with a pointer to what is missing."""
    current = view()
    if current.dataset_id is None:
        st.info("No dataset yet. Add one on the Datasets page (or run `python -m audit demo`).")
        st.page_link("pages/datasets.py", label="Go to Datasets", icon=":material/database:")
        st.stop()
    if current.run_id is None:
        st.info("This dataset has no finished audit yet. Start one on the Datasets page and "
                "follow it on the Jobs page.")
        st.page_link("pages/jobs.py", label="Go to Jobs", icon=":material/sync:")
        st.stop()
    return current
