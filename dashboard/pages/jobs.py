"""Jobs: the queue and its history (audits, ingests, exports) with live progress, one job's log,
result and failure reason, cancel, and rerun of an audit with the same or a changed config. The
page only enqueues and reads; a background worker does the work (``jobs``)."""

from __future__ import annotations

import json

import streamlit as st

from audit.errors import ConfigError
from dashboard import context, data
from dashboard.errors import reported
from dashboard.run_to_run import compare_previous_button
from dashboard.widgets import plain
from audit.corrections import WHAT_DECISIONS_DO
from jobs.kinds import AUDIT
from jobs.queue import get_job, job_log, list_jobs, request_cancel, rerun

REFRESH = "2s"
ACTIVE = ("queued", "running")


def main() -> None:
    view = context.view()
    st.title("Jobs")
    jobs = list_jobs(view.store, limit=100, settings=view.settings)
    _queue(view, _states(jobs))
    if jobs.empty:
        st.info("No jobs yet: start an audit on the Datasets page.")
        return
    job_id = st.selectbox("Job", jobs["id"].tolist(), key="job_id",
                          format_func=lambda i: f"job {i}")
    _job_detail(view, int(job_id))
    _actions(view, int(job_id))


@st.fragment(run_every=REFRESH)
def _queue(view: context.View, shown: tuple) -> None:
    """The table refreshes itself every few seconds while the rest of the page stays put. When
    a job is queued or changes state, the whole app reruns instead: the job picker, the actions
    and the sidebar's runs were drawn from the jobs ``shown``."""
    jobs = list_jobs(view.store, limit=100, settings=view.settings)
    if _states(jobs) != shown:
        st.rerun()
    st.dataframe(jobs, hide_index=True, column_config={
        "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0,
                                                    format="percent"),
    })


def _states(jobs) -> tuple:
    """Each listed job's id and status: what the page outside the table was drawn from."""
    return tuple(zip(jobs["id"].tolist(), jobs["status"].tolist()))


@st.fragment(run_every=REFRESH)
def _job_detail(view: context.View, job_id: int) -> None:
    job = get_job(view.store, job_id, settings=view.settings)
    status = f"{job['status']}: {job['message'] or ''}"
    st.progress(float(job["progress"] or 0.0), text=plain(status))
    if job["status"] == "succeeded":
        st.caption(plain(_result_text(job)))
    if job["error"]:
        st.error(plain(job["error"]), icon=":material/error:")
    if job["traceback"]:
        with st.expander("Traceback"):
            st.code(job["traceback"], language=None)
    with st.expander("Log", expanded=job["status"] in ACTIVE):
        st.code("\n".join(job_log(view.store, job_id)) or "(empty)", language=None)
    if job["kind"] == AUDIT:
        # read afresh: the button appears as soon as a rerun of this dataset finishes
        compare_previous_button(view.store, data.version(view.store), job["dataset_id"],
                                "job_compare")


def _result_text(job: dict) -> str:
    """What a finished job made, in words (an export's summary, an audit's run, ...)."""
    result = job["result"]
    if "summary" in result:
        return f"{result['summary']} (in {result['out_dir']})"
    return ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in result.items())


def _actions(view: context.View, job_id: int) -> None:
    job = get_job(view.store, job_id, settings=view.settings)
    cols = st.columns(3)
    if cols[0].button("Cancel", key="job_cancel", disabled=job["status"] not in ACTIVE):
        with reported():
            st.toast(f"job {job_id}: {request_cancel(view.store, job_id)}")
    if job["kind"] != AUDIT:
        return                  # an ingest or an export is started again from its page
    if cols[1].button("Rerun with the same config", key="job_rerun"):
        _rerun(view, job_id, {"use_decisions": st.session_state.get("job_rerun_decisions", True)})
    cols[2].checkbox("Start from the reviewed decisions", value=True, key="job_rerun_decisions",
                     help=WHAT_DECISIONS_DO)
    with st.expander("Rerun with a changed config"):
        st.caption("Options to change, as JSON: e.g. {\"k\": 20, \"detectors\": [\"outlier\"]}")
        current = json.dumps(job["config"], indent=2, sort_keys=True)
        text = st.text_area("Config", value=current, height=240, key="job_config")
        if st.button("Rerun with this config", key="job_rerun_changed"):
            with reported():
                _rerun(view, job_id, _parse_overrides(text))


def _parse_overrides(text: str) -> dict:
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"the config is not valid JSON ({exc.msg} at line {exc.lineno}); "
                          "fix it and try again") from exc
    if not isinstance(overrides, dict):
        raise ConfigError("the config must be a JSON object of option: value pairs")
    return overrides


def _rerun(view: context.View, job_id: int, overrides: dict | None) -> None:
    with reported():
        new_id = rerun(view.store, view.settings, job_id, overrides)
        st.toast(f"queued job {new_id}")


main()
