"""A job followed in place: a page that queued an ingest or an export shows the job's progress
(and a Cancel button) until it ends, then what it made or why it failed. The work runs in the
background worker (``jobs``), never in the page; the page only enqueues and reads.

``start(key, job_id)`` after queueing; ``follow(view, key, on_end)`` where the progress should
show; ``on_end(job)`` runs once, when the job reaches a final state, before the whole page
reruns; ``ended(key)`` is that final job until the next ``start``.
"""

from __future__ import annotations

from typing import Callable

import streamlit as st

from dashboard import context
from dashboard.widgets import plain
from jobs.queue import get_job, request_cancel

REFRESH = "1s"
ACTIVE = ("queued", "running")


def start(key: str, job_id: int) -> None:
    st.session_state[key] = job_id
    st.session_state.pop(_ended_key(key), None)


def ended(key: str) -> dict | None:
    return st.session_state.get(_ended_key(key))


def follow(view: context.View, key: str, on_end: Callable[[dict], None]) -> None:
    if key in st.session_state:
        _follow(view, key, on_end)


@st.fragment(run_every=REFRESH)
def _follow(view: context.View, key: str, on_end: Callable[[dict], None]) -> None:
    job_id = st.session_state.get(key)
    if job_id is None:          # ended by an earlier tick; this one belongs to an old page run
        return
    job = get_job(view.store, job_id, settings=view.settings)
    if job["status"] in ACTIVE:
        text = f"job {job_id} ({job['kind']}) {job['status']}: {job['message'] or ''}"
        st.progress(float(job["progress"] or 0.0), text=plain(text))
        if st.button("Cancel", key=f"{key}_cancel"):
            st.toast(f"job {job_id}: {request_cancel(view.store, job_id)}")
        return
    del st.session_state[key]
    st.session_state[_ended_key(key)] = job
    on_end(job)
    st.rerun()                  # the whole page: what the job made shows everywhere


def show_failure(job: dict) -> None:
    """A failed or cancelled job's reason, escaped (it may quote a path or a value)."""
    if job["status"] == "failed":
        st.error(plain(job["error"] or "failed"), icon=":material/error:")
    elif job["status"] == "cancelled":
        st.info(plain(f"job {job['id']} was cancelled: {job['message'] or ''}"))


def _ended_key(key: str) -> str:
    return f"{key}_ended"
