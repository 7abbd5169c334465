"""Export: choose the run, splits, rules and format; preview what would be removed,
relabelled, weighted and kept per split, rule and class (the same preview
``python -m audit export --dry-run`` prints); write the cleaned dataset (an export job that the
background worker runs, followed in place) and download it as a zip. The automatic rules act only on the splits chosen under "Automatic rules act on" (train
by default); the page says so above the preview.

The preview is cached per store version and rules, and the zip is built only when the user
clicks the download button (Streamlit runs the callable then, off the script thread), so a
rerun after a large export costs no more than one before it."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from audit.export import FORMATS, ExportRules
from audit.export.archive import folder_bytes, zipped
from audit.export.rules import DEFAULT_AUTO_SPLITS, ENGINE_CONFIDENCE
from dashboard import context, data, job_progress
from dashboard.errors import reported
from dashboard.widgets import plain
from jobs.queue import enqueue_export

DOWNLOAD_LIMIT_BYTES = 200 * 1024 * 1024
DONE_KEY = "export_done"
EXPORT_JOB_KEY = "export_job"
RULES = {"decisions": "Reviewed decisions only",
         "flagged": "Also drop every example flagged by the chosen detectors"}
SUGGESTIONS = {"off": "Off",
               ENGINE_CONFIDENCE: "At the engine's threshold (confident learning, per class)",
               "number": "At a minimum confidence"}


def main() -> None:
    view = context.require_run()
    st.title("Export")
    rules = _rules(view)
    fmt = st.selectbox("Format", FORMATS, key="export_format")
    with reported():
        st.subheader("Preview")
        preview = data.export_preview(view.store, view.key, view.dataset_id, rules)
        st.caption(preview.split_rule)
        st.dataframe(preview.by_split, hide_index=True)
        st.markdown("**Per split and rule**")
        st.dataframe(preview.by_rule, hide_index=True)
        st.markdown("**Per split and class**")
        st.dataframe(preview.by_class, hide_index=True)
    _export(view, rules, fmt)


def _rules(view: context.View) -> ExportRules:
    runs = data.runs(view.store, view.key, view.dataset_id)["id"].astype(int).tolist()
    _, splits = data.classes_and_splits(view.store, view.key, view.dataset_id)
    run_id = st.selectbox("Run", runs, index=runs.index(view.run_id), key="export_run",
                          format_func=lambda r: f"run {r}")
    chosen_splits = st.multiselect("Splits", splits, default=splits, key="export_splits")
    auto_splits = st.multiselect(
        "Automatic rules act on", splits, key="export_auto_splits",
        default=[s for s in splits if s in DEFAULT_AUTO_SPLITS],
        help="Flagged drops, suggested labels, dedupe and score weights change only these "
             "splits; the others change only through reviewed decisions and the leakage "
             "side you choose. Add val or test only on purpose.")
    rule = st.radio("Rule", list(RULES), format_func=RULES.get, key="export_rule")
    flagged = rule == "flagged"
    detectors = st.multiselect("Detectors that count", data.run_detectors(view.store, run_id),
                               key="export_detectors", disabled=not flagged,
                               help="None chosen: every detector except near_duplicate")
    threshold = st.slider("Drop scores below (0 = use each detector's own flag)", 0.0, 1.0, 0.0,
                          0.01, key="export_threshold", disabled=not flagged)
    apply_suggested = _suggestions()
    cols = st.columns(3)
    dedupe = cols[0].checkbox("Keep one of each duplicate set", key="export_dedupe")
    leakage = cols[1].selectbox("Train/test leaks: drop from", ("keep", "test", "train"),
                                key="export_leakage")
    weights = cols[2].checkbox("Write sample weights instead of dropping", key="export_weights")
    return ExportRules(run_id=run_id, include_flagged=flagged,
                       detectors=list(detectors) or None if flagged else None,
                       threshold=threshold if flagged and threshold > 0 else None,
                       apply_suggested=apply_suggested, dedupe=dedupe, leakage=leakage,
                       weights=weights, splits=list(chosen_splits) or None,
                       auto_splits=list(auto_splits))


def _suggestions() -> float | str | None:
    """apply_suggested: off, the engine's confident-learning threshold, or a number."""
    choice = st.radio("Relabel flagged examples to their suggested label (as Explore shows it)",
                      list(SUGGESTIONS), format_func=SUGGESTIONS.get, key="export_suggested",
                      horizontal=True)
    minimum = st.slider("Minimum suggestion confidence", 0.5, 1.0, 0.9, 0.01,
                        key="export_suggested_min", disabled=choice != "number")
    return {"off": None, ENGINE_CONFIDENCE: ENGINE_CONFIDENCE, "number": minimum}[choice]


def _export(view: context.View, rules: ExportRules, fmt: str) -> None:
    st.subheader("Write")
    default = Path(view.settings.data_home).resolve() / "exports" / f"dataset-{view.dataset_id}"
    out_dir = st.text_input("Output folder (new or empty)", value=str(default), key="export_out")
    overwrite = st.checkbox("Replace a previous export in this folder", key="export_overwrite",
                            help="Only a folder that a Sieve export wrote and that holds "
                                 "nothing else is replaced; any other file stops the export.")
    if st.button("Export", type="primary", key="export_go"):
        with reported():
            job_progress.start(EXPORT_JOB_KEY, enqueue_export(
                view.store, view.settings, view.dataset_id, Path(out_dir), fmt, rules.to_dict(),
                overwrite=overwrite))
            st.session_state.pop(DONE_KEY, None)
    job_progress.follow(view, EXPORT_JOB_KEY, _export_ended)
    if DONE_KEY in st.session_state:
        summary, out, size = st.session_state[DONE_KEY]
        st.success(plain(summary))
        _download(out, size)
    elif ended := job_progress.ended(EXPORT_JOB_KEY):
        job_progress.show_failure(ended)


def _export_ended(job: dict) -> None:
    """Remember a finished export (its size measured once), for the download button."""
    if job["status"] == "succeeded":
        out = job["result"]["out_dir"]
        st.session_state[DONE_KEY] = (job["result"]["summary"], out, folder_bytes(Path(out)))


def _download(out_dir: str, size: int) -> None:
    folder = Path(out_dir)
    if size > DOWNLOAD_LIMIT_BYTES:
        st.caption(plain(f"The export is {size / 2**20:.0f} MiB; copy it from {folder} instead."))
        return
    st.download_button("Download as zip", lambda: zipped(folder), file_name=f"{folder.name}.zip",
                       mime="application/zip", key="export_download", on_click="ignore")


main()
