"""Datasets: every dataset with its size, splits, classes, last run and flagged samples; add a
dataset from a folder or manifest (or a new version of one), as an ingest job followed in place;
start an audit with chosen options (run by a background worker, followed on the Jobs page);
delete a dataset, confirmed by typing its name."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from audit.corrections import WHAT_DECISIONS_DO
from audit import dataset_lifecycle
from audit.detectors import catalogue
from audit.embedders import EMBEDDER_CHOICES as EMBEDDERS
from audit.settings import EXECUTORS, Settings, field_docs
from audit.store.datasets import get_dataset
from dashboard import context, data, job_progress
from dashboard.errors import reported
from dashboard.run_to_run import compare_previous_button
from dashboard.widgets import plain
from jobs.queue import enqueue_audit, enqueue_ingest

INGEST_JOB_KEY = "ingest_job"

def main() -> None:
    view = context.view()
    st.title("Datasets")
    _show_outcome()
    datasets = data.overview(view.store, view.key)
    if datasets.empty:
        st.info("No datasets yet. Add an image folder or a manifest below, "
                "or run `python -m audit demo`.")
    else:
        st.dataframe(datasets, hide_index=True)
        _issues_of_last_run(view)
    left, right = st.columns(2)
    with left:
        _add_dataset(view)
    with right:
        _start_audit(view, datasets)
    _delete_dataset(view, datasets)


OUTCOME_KEY = "datasets_outcome"


def _show_outcome() -> None:
    """What the last add or delete said, kept across the rerun that refreshed the table."""
    shown = {"warning": st.warning, "error": st.error, "success": st.success}
    for kind, text in st.session_state.pop(OUTCOME_KEY, []):
        shown[kind](plain(text))


def _keep_outcome(kind: str, text: str) -> None:
    st.session_state.setdefault(OUTCOME_KEY, []).append((kind, text))


def _issues_of_last_run(view: context.View) -> None:
    if view.run_id is None:
        return
    counts = data.run_issue_counts(view.store, view.key, view.dataset_id)
    latest = counts[counts["run_id"] == view.run_id]
    st.caption(f"Issues per detector in run {view.run_id} of the chosen dataset")
    st.dataframe(latest[["detector", "issues", "scored"]], hide_index=True)
    compare_previous_button(view.store, view.key, view.dataset_id, "dataset_compare")


def _add_dataset(view: context.View) -> None:
    with st.form("add_dataset"):
        st.subheader("Add a dataset")
        source = st.text_input("Image folder or manifest (CSV, Parquet, JSONL) on this machine")
        name = st.text_input("Name (optional)")
        new_version = st.checkbox(
            "New version of the dataset with this name", key="add_new_version",
            help="It takes the name, the old version is renamed NAME@vN, and the decisions of "
                 "unchanged files (same path, label and content) are carried over.")
        if st.form_submit_button("Add"):
            with reported():
                job_progress.start(INGEST_JOB_KEY, enqueue_ingest(
                    view.store, view.settings, Path(source.strip()), name=name.strip() or None,
                    new_version=new_version))
    job_progress.follow(view, INGEST_JOB_KEY, lambda job: _ingest_ended(view, job))


def _ingest_ended(view: context.View, job: dict) -> None:
    """What the ingest job made (kept for the rerun that refreshes the table), or why not."""
    if job["status"] != "succeeded":
        _keep_outcome("error" if job["status"] == "failed" else "warning",
                      job["error"] or f"job {job['id']} was {job['status']}")
        return
    dataset = get_dataset(view.store, int(job["result"]["dataset_id"]))
    _keep_outcome("success", f"Added dataset {dataset.name!r} (id {dataset.id}).")
    _keep_lineage(view, dataset.id)


def _start_audit(view: context.View, datasets) -> None:
    if datasets.empty:
        return
    with st.form("start_audit"):
        st.subheader("Start an audit")
        names = dict(zip(datasets["id"].astype(int), datasets["name"]))
        dataset_id = st.selectbox("Dataset", list(names), format_func=names.get,
                                  index=list(names).index(view.dataset_id)
                                  if view.dataset_id in names else 0)
        detectors = _detector_picker()
        embedder = st.selectbox("Embedder", EMBEDDERS,
                                index=EMBEDDERS.index(view.settings.embedder)
                                if view.settings.embedder in EMBEDDERS else 0)
        cols = st.columns(3)
        k = cols[0].number_input("Neighbours (k)", 1, 200, view.settings.knn_k)
        folds = cols[1].number_input("Folds", 2, 20, view.settings.folds)
        seed = cols[2].number_input("Seed", 0, 2**31 - 1, view.settings.seed)
        use_decisions = st.checkbox("Start from the reviewed decisions", value=True,
                                    help=WHAT_DECISIONS_DO)
        executor, ray_address = _executor_picker(view.settings)
        if st.form_submit_button("Queue audit", type="primary"):
            overrides = {"embedder": embedder, "k": int(k), "folds": int(folds), "seed": int(seed),
                         "use_decisions": use_decisions, "executor": executor,
                         "ray_address": ray_address.strip()}
            if detectors:
                overrides["detectors"] = list(detectors)
            with reported():
                job_id = enqueue_audit(view.store, view.settings, int(dataset_id), overrides)
                st.success(f"Queued job {job_id}; follow it on the Jobs page.")


def _keep_lineage(view: context.View, dataset_id: int) -> None:
    dataset = get_dataset(view.store, dataset_id)
    if dataset.parent_id is not None:
        parent = get_dataset(view.store, dataset.parent_id)
        _keep_outcome("success", dataset_lifecycle.version_summary(dataset, parent))
    elif warning := dataset_lifecycle.same_source_warning(view.store, dataset):
        _keep_outcome("warning", warning)


def _delete_dataset(view: context.View, datasets) -> None:
    if datasets.empty:
        return
    with st.expander("Delete a dataset"):
        rows = datasets.set_index(datasets["id"].astype(int))
        dataset_id = st.selectbox("Dataset to delete", list(rows.index), key="delete_dataset_id",
                                  format_func=lambda key: rows.loc[key, "name"])
        dataset = get_dataset(view.store, int(dataset_id))
        samples = int(rows.loc[dataset_id, "samples"])
        st.text(dataset_lifecycle.confirmation_question(dataset, samples))
        with st.form("delete_dataset", clear_on_submit=True):
            typed = st.text_input("Type the dataset's name to confirm", key="delete_confirm")
            if st.form_submit_button("Delete", type="primary"):
                _delete_if_confirmed(view, dataset, typed)


def _delete_if_confirmed(view: context.View, dataset, typed: str) -> None:
    if typed.strip() != dataset.name:
        st.error("Nothing deleted: type the dataset's name exactly to confirm.")
        return
    with reported():
        deletion = dataset_lifecycle.delete_dataset(view.store, view.settings, dataset)
        _keep_outcome("success", deletion.summary())
        st.rerun()


def _executor_picker(settings: Settings) -> tuple[str, str]:
    """Where the audit's heavy stages run, and the Ray cluster when on Ray (the settings'
    values first; their documentation as help)."""
    docs = field_docs()
    left, right = st.columns([1, 2])
    executor = left.selectbox("Executor", EXECUTORS, key="audit_executor",
                              index=EXECUTORS.index(settings.executor), help=docs["executor"])
    address = right.text_input("Ray cluster address", value=settings.ray_address,
                               key="audit_ray_address", help=docs["ray_address"],
                               placeholder="empty: a local Ray instance for the run")
    return executor, address


def _detector_picker() -> list[str]:
    """Every registered detector (not only those a run has scored), with what it judges."""
    facts = {d["name"]: d for d in catalogue()}
    described = "\n".join(f"- **{name}**: {d['description']}" for name, d in facts.items())
    return st.multiselect("Detectors (none chosen: all)", list(facts), key="audit_detectors",
                          format_func=lambda name: f"{name} ({facts[name]['family']})",
                          help=described)


main()
