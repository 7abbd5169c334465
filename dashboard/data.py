"""Cached reads for the pages, each a thin call of an ``audit`` query API.

Every cached function takes the store and the store's ``version`` (a fingerprint that changes
whenever a decision, run or dataset is written), so a cached answer is reused only while
nothing it depends on has changed; a decision made in another tab shows up on the next rerun.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from audit.export import ExportPreview, ExportRules, preview_export
from audit.run_trust import RunTrust, run_trust
from audit.settings import Settings, load_settings
from audit.store import Store
from audit.store import explore, flags, insights, lookups, neighbours
from audit.store import run_compare
from audit.store import runs as run_store
from audit.store import saved_views as saved_view_store
from audit.store.flags import decision_log
from audit.store.run_compare import RunComparison

Version = tuple


def current_settings() -> Settings:
    return load_settings()


def current_store(settings: Settings) -> Store:
    return Store.from_settings(settings)


def version(store: Store) -> Version:
    """Read on every rerun (one tiny query): the cache key of everything below."""
    return lookups.store_version(store)


@st.cache_data(max_entries=8, show_spinner=False)
def overview(store: Store, key: Version) -> pd.DataFrame:
    return lookups.dataset_overview(store)


@st.cache_data(max_entries=32, show_spinner=False)
def runs(store: Store, key: Version, dataset_id: int) -> pd.DataFrame:
    return lookups.finished_runs(store, dataset_id)


@st.cache_data(max_entries=16, show_spinner=False)
def trust(store: Store, run_id: int) -> RunTrust:
    """What the run measured about itself; a finished run never changes, so its id is the key."""
    return run_trust(run_store.get_run(store, run_id))


def dataset_name(store: Store, key: Version, dataset_id: int) -> str:
    names = overview(store, key).set_index("id")["name"]
    return str(names.loc[dataset_id])


@st.cache_data(max_entries=32, show_spinner=False)
def classes_and_splits(store: Store, key: Version, dataset_id: int) -> tuple[list[str], list[str]]:
    return lookups.dataset_labels(store, dataset_id)


@st.cache_data(max_entries=16, show_spinner="Indexing the run for Explore ...")
def run_detectors(store: Store, run_id: int) -> list[str]:
    return explore.ensure_explore_index(store, run_id)


@st.cache_data(max_entries=128, show_spinner=False)
def explore_page(store: Store, key: Version, dataset_id: int, run_id: int,
                 filters: explore.ExploreFilters, page: int,
                 page_size: int) -> explore.ExplorePage:
    return explore.explore_page(store, dataset_id, run_id, filters, page, page_size)


@st.cache_data(max_entries=16, show_spinner=False)
def dataset_root(store: Store, dataset_id: int) -> str:
    return lookups.dataset_root(store, dataset_id)


@st.cache_data(max_entries=64, show_spinner=False)
def sample_detail(store: Store, key: Version, dataset_id: int, sample_id: str) -> dict:
    return lookups.sample_detail(store, dataset_id, sample_id)


@st.cache_data(max_entries=64, show_spinner=False)
def sample_scores(store: Store, run_id: int, sample_id: str) -> pd.DataFrame:
    return lookups.sample_scores(store, run_id, sample_id)


@st.cache_data(max_entries=16, show_spinner=False)
def detector_facts(store: Store, run_id: int) -> dict[str, dict]:
    """What the run's detectors declare (family, label suggestions ...); runs never change."""
    return run_store.run_detector_facts(store, run_id)


@st.cache_data(max_entries=64, show_spinner=False)
def sample_run_facts(store: Store, run_id: int, sample_id: str) -> dict | None:
    return lookups.sample_run_facts(store, run_id, sample_id)


@st.cache_data(max_entries=64, show_spinner=False)
def samples_by_ids(store: Store, key: Version, dataset_id: int,
                   sample_ids: tuple[str, ...]) -> pd.DataFrame:
    return lookups.samples_by_ids(store, dataset_id, list(sample_ids))


@st.cache_data(max_entries=256, show_spinner=False)
def place_in_order(store: Store, key: Version, dataset_id: int, run_id: int,
                   filters: explore.ExploreFilters, sample_id: str) -> explore.OrderPlace:
    return explore.place_in_order(store, dataset_id, run_id, filters, sample_id)


@st.cache_data(max_entries=16, show_spinner=False)
def saved_views(store: Store, key: Version, dataset_id: int) -> list[saved_view_store.SavedView]:
    return saved_view_store.list_views(store, dataset_id)


@st.cache_data(max_entries=128, show_spinner=False)
def latest_flag_ids(store: Store, key: Version, dataset_id: int,
                    sample_ids: tuple[str, ...]) -> dict[str, int]:
    return flags.latest_flag_ids(store, dataset_id, list(sample_ids))


def history(store: Store, dataset_id: int, sample_id: str) -> pd.DataFrame:
    """Not cached: the decision log must always be the one just written."""
    return decision_log(store, dataset_id, sample_id)


@st.cache_data(max_entries=16, show_spinner=False)
def detector_summary(store: Store, run_id: int) -> pd.DataFrame:
    return insights.detector_summary(store, run_id)


@st.cache_data(max_entries=16, show_spinner=False)
def score_histograms(store: Store, run_id: int, bins: int) -> pd.DataFrame:
    return insights.score_histograms(store, run_id, bins)


@st.cache_data(max_entries=16, show_spinner=False)
def issues_by_class_and_split(store: Store, run_id: int) -> pd.DataFrame:
    return insights.issues_by_class_and_split(store, run_id)


@st.cache_data(max_entries=16, show_spinner=False)
def label_matrix(store: Store, run_id: int) -> pd.DataFrame:
    return insights.label_matrix(store, run_id)


@st.cache_data(max_entries=16, show_spinner=False)
def map_points(store: Store, run_id: int, limit: int) -> pd.DataFrame:
    return insights.map_points(store, run_id, limit)


@st.cache_data(max_entries=64, show_spinner=False)
def more_like_this(store: Store, run_id: int, sample_ids: tuple[str, ...], limit: int) -> list[str]:
    return neighbours.more_like_this(store, run_id, list(sample_ids), limit)


@st.cache_data(max_entries=16, show_spinner=False)
def standing_decisions(store: Store, key: Version, dataset_id: int) -> pd.DataFrame:
    """Each decided sample's standing decision (sample_id, action, new_label, ...)."""
    return flags.current_decisions(store, dataset_id)


@st.cache_data(max_entries=16, show_spinner=False)
def run_issue_counts(store: Store, key: Version, dataset_id: int) -> pd.DataFrame:
    return insights.run_issue_counts(store, dataset_id)


@st.cache_data(max_entries=16, show_spinner="Comparing the runs ...")
def compare_runs(store: Store, run_a: int, run_b: int) -> RunComparison:
    """Runs never change once finished, so the run ids alone are the cache key."""
    return run_compare.compare_runs(store, run_a, run_b)


@st.cache_data(max_entries=16, show_spinner="Counting what the export would write ...")
def export_preview(store: Store, key: Version, dataset_id: int,
                   rules: ExportRules) -> ExportPreview:
    return preview_export(store, dataset_id, rules)
