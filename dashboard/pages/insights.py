"""Insights: the shape of the problems in the chosen run, and what changed from run to run.

"This run": per-detector score histograms with the threshold, issues per class and split, the
given vs predicted label matrix, the 2-D map of the embeddings (a box or lasso selection opens
those samples in Explore). "Run to run" (``dashboard.run_to_run``): two runs of the dataset
compared per detector and class, each change one click from Explore. Only the open tab runs.
"""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from audit.store.explore import ExploreFilters
from dashboard import context, data, run_to_run, sample_set
from dashboard.widgets import chart_text, plain, sample_image

BINS = 20
MAP_POINTS = 20_000
PREVIEW = 12       # thumbnails shown of a map selection


def main() -> None:
    view = context.require_run()
    st.title("Insights")
    this_run, run_to_run_tab = _tabs()
    if this_run.open:
        with this_run:
            _this_run(view)
    if run_to_run_tab.open:
        with run_to_run_tab:
            run_to_run.section(view)


def _tabs():
    """The two tabs, opened on the one picked last (a tab's own state is dropped whenever
    another page is shown, so the pick is kept under ``OPEN_TAB_KEY`` too)."""
    st.session_state[run_to_run.TAB_KEY] = st.session_state.get(run_to_run.OPEN_TAB_KEY,
                                                                run_to_run.THIS_RUN)
    return st.tabs([run_to_run.THIS_RUN, run_to_run.RUN_TO_RUN], key=run_to_run.TAB_KEY,
                   on_change=_remember_tab)


def _remember_tab() -> None:
    st.session_state[run_to_run.OPEN_TAB_KEY] = st.session_state[run_to_run.TAB_KEY]


def _this_run(view: context.View) -> None:
    summary = data.detector_summary(view.store, view.run_id)
    st.dataframe(summary, hide_index=True)
    _histograms(view, summary)
    _issues_by_group(view)
    _label_matrix(view)
    _embedding_map(view)


def _histograms(view: context.View, summary) -> None:
    st.subheader("Score distributions (lower = more likely a problem)")
    histograms = data.score_histograms(view.store, view.run_id, BINS)
    thresholds = dict(zip(summary["detector"], summary["threshold"]))
    detectors = list(summary["detector"])
    for start in range(0, len(detectors), 3):
        for column, detector in zip(st.columns(3), detectors[start:start + 3]):
            bins = histograms[histograms["detector"] == detector]
            column.plotly_chart(_histogram(detector, bins, thresholds.get(detector)),
                                key=f"hist|{detector}")


def _histogram(detector: str, bins, threshold) -> go.Figure:
    figure = go.Figure(go.Bar(x=(bins["bin_start"] + bins["bin_end"]) / 2, y=bins["count"],
                              width=1 / BINS, marker_color="#4c78a8"))
    if threshold is not None and threshold == threshold:
        figure.add_vline(x=float(threshold), line_color="#e45756", line_dash="dash",
                         annotation_text="flagged below")
    figure.update_layout(title=detector, height=260, margin=dict(l=10, r=10, t=40, b=10),
                         xaxis_range=[0, 1], showlegend=False)
    return figure


def _issues_by_group(view: context.View) -> None:
    st.subheader("Issues per class and split")
    issues = data.issues_by_class_and_split(view.store, view.run_id)
    if issues.empty:
        st.caption("No detector flagged anything in this run.")
        return
    left, right = st.columns(2)
    issues["label"] = issues["label"].map(chart_text)
    by_class = issues.groupby(["label", "detector"], as_index=False)["issues"].sum()
    left.plotly_chart(px.bar(by_class, x="label", y="issues", color="detector",
                             title="per class"), key="issues_by_class")
    by_split = issues.groupby(["split", "detector"], as_index=False)["issues"].sum()
    right.plotly_chart(px.bar(by_split, x="split", y="issues", color="detector",
                              title="per split"), key="issues_by_split")


def _label_matrix(view: context.View) -> None:
    st.subheader("Given label vs the probe's prediction")
    matrix = data.label_matrix(view.store, view.run_id)
    if matrix.empty:
        st.caption("This run stored no probe predictions.")
        return
    matrix[["given", "predicted"]] = matrix[["given", "predicted"]].map(chart_text)
    table = matrix.pivot_table(index="given", columns="predicted", values="count", fill_value=0)
    figure = px.imshow(table, text_auto=True, color_continuous_scale="Blues",
                       labels=dict(x="predicted", y="given", color="samples"))
    st.plotly_chart(figure, key="label_matrix")


COLOURINGS = {"class": "given label", "flagged": "flagged or not", "worst_score": "worst score",
              "decision": "your decision"}


def _embedding_map(view: context.View) -> None:
    st.subheader("Map of the embeddings")
    st.caption("Samples near each other have similar embeddings (t-SNE, see audit/two_d_map.py); "
               "a sample inside another class's group is worth a look.")
    points = data.map_points(view.store, view.run_id, MAP_POINTS)
    if points.empty:
        st.caption("This run stored no 2-D map.")
        return
    colour = st.segmented_control("Colour by", list(COLOURINGS), format_func=COLOURINGS.get,
                                  default="class", key="map_colour") or "class"
    points = _with_colour_columns(view, points)
    figure = px.scatter(points, x="map_x", y="map_y", color=colour, custom_data=["sample_id"],
                        hover_data=["label", "split", "issue_count", "suggested", "decision"],
                        color_continuous_scale="RdYlBu",
                        color_discrete_map={"flagged": "#e45756", "not flagged": "#9ecae9",
                                            "undecided": "#d0d0d0"})
    figure.update_traces(marker_size=5)
    event = st.plotly_chart(figure, key="embedding_map", on_select="rerun",
                            selection_mode=("box", "lasso"))
    picked = _picked_ids(event)
    if not picked:
        st.caption("Draw a box or a lasso around points (even one) to see their images here.")
        return
    _selection_preview(view, picked)
    if st.button(f"Show the {len(picked)} selected samples in Explore",
                 key="map_to_explore", type="primary"):
        sample_set.show_in_explore(picked, "selected on the Insights map")


def _selection_preview(view: context.View, picked: list[str]) -> None:
    """The images of the first selected samples, worst first, with their labels: what a group
    of points holds, seen before opening it. Instead of images on hover: Plotly's hover label
    cannot hold an image, Streamlit gets no hover events, and a click cannot pick a point while
    a drag draws a box (Streamlit turns click selection off in box and lasso modes)."""
    only_picked = ExploreFilters(sample_ids=tuple(picked))
    rows = data.explore_page(view.store, view.key, view.dataset_id, view.run_id, only_picked,
                             0, PREVIEW).rows
    root = data.dataset_root(view.store, view.dataset_id)
    shown = min(len(picked), PREVIEW)
    with st.container(key="map_preview"):
        st.caption(f"{len(picked):,} selected" + (f"; the {shown} worst:" if len(picked) > shown
                                                  else ":"))
        for column, row in zip(st.columns(PREVIEW), rows.itertuples(index=False)):
            with column:
                sample_image(view.settings, root, row)
                suggested = row.suggested_label if isinstance(row.suggested_label, str) else None
                st.caption(plain(row.label if suggested is None else
                                 f"{row.label} (suggested: {suggested})"))


def _with_colour_columns(view: context.View, points):
    """The columns the map colours and hovers by, every dataset string made chart-safe."""
    decisions = data.standing_decisions(view.store, view.key, view.dataset_id)
    decided = dict(zip(decisions["sample_id"], decisions["action"]))
    return points.assign(
        label=points["label"].map(chart_text),
        suggested=points["suggested_label"].fillna("").map(chart_text),
        **{"class": points["label"].map(chart_text),
           "flagged": points["issue_count"].gt(0).map({True: "flagged", False: "not flagged"}),
           "decision": points["sample_id"].map(decided).fillna("undecided")})


def _picked_ids(event) -> list[str]:
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    return [str(p["customdata"][0]) for p in points if p.get("customdata")]


main()
