"""Dataset strings are untrusted: labels, captions, ids and names holding HTML or script show
as the text they are, on every page, and no element is rendered with HTML allowed."""

from __future__ import annotations

import csv
import json

import pandas as pd
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from audit.ingest import ingest
from audit.settings import load_settings
from audit.store import Store
from audit.store import runs as run_store
from tests.dashboard.conftest import APP, text_lines

SCRIPT = "<script>alert(1)</script>"
BOLD = "<b>x</b>"
LABELS = [SCRIPT, BOLD, "plain"]


@pytest.fixture
def hostile(tmp_path, monkeypatch) -> dict:
    home = tmp_path / "home"
    monkeypatch.setenv("AUDIT_DATA_HOME", str(home))
    monkeypatch.setenv("AUDIT_CONFIG", str(tmp_path / "absent.toml"))
    settings = load_settings()
    store = Store.from_settings(settings)
    manifest = _write_manifest(tmp_path / "data")
    dataset_id = ingest(store, manifest, settings, name=f"{BOLD} set")
    run_id = run_store.create_run(store, dataset_id, {})
    run_store.write_scores(store, run_id, _scores())
    run_store.write_run_samples(store, run_id, pd.DataFrame({
        "sample_id": [f"s{i}" for i in range(6)], "fold": 0,
        "predicted_label": [LABELS[(i + 1) % 3] for i in range(6)], "predicted_confidence": 0.8,
        "map_x": range(6), "map_y": range(6)}))
    run_store.finish_run(store, run_id, "succeeded")
    return {"store": store, "dataset_id": dataset_id}


def _write_manifest(folder):
    folder.mkdir()
    with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["id", "path", "label", "caption"])
        for i in range(6):
            Image.new("RGB", (12, 12), (40 * i, 80, 80)).save(folder / f"{i}.png")
            writer.writerow([f"s{i}", f"{i}.png", LABELS[i % 3], f"{SCRIPT} {BOLD} caption {i}"])
    return folder / "manifest.csv"


def _scores() -> pd.DataFrame:
    details = {"reason": f"looks like {SCRIPT}", "suggested_label": BOLD,
               "top_classes": [[SCRIPT, 0.7], [BOLD, 0.3]], "neighbors": ["s1", "s2"]}
    return pd.DataFrame({
        "sample_id": [f"s{i}" for i in range(6)], "detector": "label_issue",
        "score": [0.01 * i for i in range(6)], "is_issue": True,
        "details": [json.dumps(details)] * 6,
    })


def _all_elements(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _all_elements(child)


def _assert_inert(at: AppTest) -> None:
    for element in _all_elements(at._tree):
        proto = getattr(element, "proto", None)
        assert not getattr(proto, "allow_html", False), element
    for kind in (at.markdown, at.caption, at.error, at.info, at.title, at.subheader):
        for element in kind:
            assert "<script>" not in element.value and "<b>" not in element.value, element.value


@pytest.mark.reliability
def test_explore_and_example_show_html_as_text(hostile):
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    texts = text_lines(at)
    assert f"label: {SCRIPT}" in texts and f"label: {BOLD}" in texts
    assert f"suggested: {BOLD}" in texts
    _assert_inert(at)
    at.session_state["example_sample"] = "s0"
    at.switch_page("pages/example.py").run()
    assert not at.exception, [e.value for e in at.exception]
    texts = [t.value for t in at.text]
    assert f"caption: {SCRIPT} {BOLD} caption 0" in texts
    assert f"label_issue suggests: {BOLD}" in texts
    assert at.dataframe[0].value["why"].iloc[0] == f"looks like {SCRIPT}"
    _assert_inert(at)


@pytest.mark.reliability
def test_insights_and_datasets_keep_html_inert(hostile):
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.switch_page("pages/insights.py").run()
    assert not at.exception, [e.value for e in at.exception]
    specs = " ".join(chart.proto.spec for chart in at.get("plotly_chart"))
    assert "&lt;script&gt;" in specs and SCRIPT not in specs and BOLD not in specs
    _assert_inert(at)
    at.switch_page("pages/datasets.py").run()
    assert at.dataframe[0].value.loc[0, "name"] == f"{BOLD} set"
    _assert_inert(at)
